"""``equirelax scg``: the SCG study (modular autoencoder + pattern completion), end to end.

Subcommands, each with ``--quick`` (minutes on 2 CPU cores) or the default full preset:

* ``train-autoencoder``: train the modular autoencoder and its ablations (no ``L_equ``, no
  ``L_sym``, no rotation branch, and a free kernel with and without ``L_equ``); loss curves.
* ``probe``: probe every trained variant and a PCA baseline; one comparison table, per-module
  tables, kernel mosaics, per-module reconstructions, tuning curves; module groups for stage 2.
* ``train-completion``: pre-train the small diffusion model, then one control branch per module
  group and one on Canny edges.
* ``evaluate``: PSNR/SSIM of generations against held-out sources beside four baselines (grey
  image, the module group's own decode, the unconditional model, Canny), with paired bootstrap
  intervals; a noise-robustness curve, zero-shot conditions (line drawings, low resolution,
  haze); tables and figure grids.
* ``generate``: complete one image file (``--image``) from one condition with the generator file
  that ``train-completion`` writes (one self-contained file: configs and weights); ``--device``.

Every subcommand speaks the study kit's vocabulary: ``--seeds`` (seed values; several for the
stage-1 ablations, one for stage 2), ``--out`` for results (default ``docs/results/scg/<preset>``:
small files, committed), ``--runs-dir`` for checkpoints (default ``runs/scg/<preset>``; every
training resumes from them, ``--fresh`` deletes them first), ``--no-progress``, ``--threads``.
Every table names the command that produced it (:func:`~equirelax.experiments.kit.commands.
record_command`).

The package, by concern: :mod:`.config` (variants, presets, file names, what a subcommand reads
from its command), :mod:`.stage1` (``train-autoencoder``), :mod:`.probe`, :mod:`.stage2`
(``train-completion`` and the conditions it shares with ``evaluate``), :mod:`.evaluate`,
:mod:`.generate`, :mod:`.tables`, :mod:`.plots` and :mod:`.cli`; ``python -m
equirelax.experiments.scg`` runs :mod:`.__main__`.
"""

from equirelax.experiments.scg.cli import COMMANDS, configure, main
from equirelax.experiments.scg.config import (
    ABLATION_COLUMNS,
    DEFAULT_PRESET,
    DEFAULT_VARIANTS,
    GENERATOR_FILE,
    PRESETS,
    PROBE_GROUP,
    VARIANTS,
    Preset,
)

__all__ = [
    "ABLATION_COLUMNS",
    "COMMANDS",
    "DEFAULT_PRESET",
    "DEFAULT_VARIANTS",
    "GENERATOR_FILE",
    "PRESETS",
    "PROBE_GROUP",
    "VARIANTS",
    "Preset",
    "configure",
    "main",
]
