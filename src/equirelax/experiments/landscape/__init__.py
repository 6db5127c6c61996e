"""``equirelax landscape``: loss landscape and hidden symmetries in the teacher–student setting.

Subcommands:

* ``teacher-student``: a teacher with hidden rep ρ_T; per seed, an exact student with hidden rep
  ρ_S trained on exactly G-symmetric data and refined to a critical point inside E_ρS; the
  Hessian at that point split into equivariant and non-equivariant blocks and classified
  (saddle that relaxation can escape, or minimum); a relaxed student started from that point
  (``er.relax`` with a constant schedule: every weight free, the free terms' random
  initialisation being the symmetry-breaking noise); detection of the hidden rep the relaxed
  weights satisfy; projection back onto the original E_ρS (``harden(mode="project")``) and onto
  the detected E_ρ' (``harden(mode="detected")``); the largest subgroup H of G under which the
  relaxed weights are equivariant with some hidden rep of H (a student that leaves its slice
  without reaching another slice of G is often caught on the fixed points of a subgroup). Writes
  a markdown table, JSON and plots into ``--out`` and an index of every study there
  (``README.md``).
* ``symmetries``: the hidden-symmetry groups of some hidden reps of a group (orders, structure,
  number of conjugate slices), as a table.

``teacher-student`` speaks the study kit's vocabulary: ``--seeds`` (seed values), presets
(``standard``; ``--quick``, a smoke test), one option per :class:`StudyConfig` field (the relaxed
student's schedule is ``--relax``), ``--out`` for results (default
``docs/results/landscape/<preset>``) and ``--runs-dir`` for checkpoints (default
``runs/landscape/<preset>``): each seed's record is saved there as soon as the seed is done and
a rerun with the same settings resumes from there (``--fresh`` deletes them first).

The package, by concern: :mod:`.config` (the configuration, presets, output stems and
checkpoint keys), :mod:`.records` (the Hessian and subgroup records of a point),
:mod:`.symmetries` (hidden-symmetry facts of a rep and the ``symmetries`` table),
:mod:`.study` (shared data, one seed, every seed with resume), :mod:`.summary` (thresholds,
counts and medians over seeds), :mod:`.tables` (the study's page, results files and the
index), :mod:`.plots` and :mod:`.cli`.
"""

from equirelax.experiments.landscape.cli import config_from_options, configure, main
from equirelax.experiments.landscape.config import (
    DEFAULT_PRESET,
    PRESETS,
    RESULT_KIND,
    StudyConfig,
)
from equirelax.experiments.landscape.plots import plot
from equirelax.experiments.landscape.records import hessian_record, subgroup_record
from equirelax.experiments.landscape.study import prepare, run_seed, run_study
from equirelax.experiments.landscape.summary import summarise, thresholds
from equirelax.experiments.landscape.symmetries import symmetries_table, symmetry_info
from equirelax.experiments.landscape.tables import table, write_index, write_outputs

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "RESULT_KIND",
    "StudyConfig",
    "config_from_options",
    "configure",
    "hessian_record",
    "main",
    "plot",
    "prepare",
    "run_seed",
    "run_study",
    "subgroup_record",
    "summarise",
    "symmetries_table",
    "symmetry_info",
    "table",
    "thresholds",
    "write_index",
    "write_outputs",
]
