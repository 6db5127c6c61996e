"""``equirelax relax``: exact vs relaxed-then-hardened students in the teacher–student setting.

Every field of :class:`~equirelax.experiments.teacher_student.TeacherStudentConfig` is an
option (the study kit's :func:`~equirelax.experiments.kit.config.add_config_options`); a preset
(``standard``, or ``quick``: a smoke test of a few minutes) gives the values not given. The
relaxed arms' schedule is ``--relax`` (``none`` leaves the relaxed arms out). Writes
``relax_teacher_student_<group>.{json,md,png}`` into ``--out`` (default
``docs/results/relaxation/<preset>``) and prints the table.
"""

from __future__ import annotations

import argparse

from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.config import add_config_options, config_from_args
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE
from equirelax.experiments.kit.options import (
    add_common_options,
    add_preset_options,
    add_relax_option,
    chosen_preset,
)
from equirelax.experiments.kit.runs import prepare_folders
from equirelax.experiments.teacher_student import (
    TeacherStudentConfig,
    relax_comparison,
    table,
    write_outputs,
)

#: What rerunning an interrupted command does (it keeps no partial results).
ON_RERUN = "rerun the same command to start again"

#: The presets: ``standard`` is the config's defaults (the S3 case of the notes); ``quick`` a
#: smoke test with 5 seeds and fewer steps and samples.
PRESETS: dict[str, dict] = {
    "standard": {},
    "quick": {"seeds": list(range(5)), "steps": 2000, "n_base": 128},
}
DEFAULT_PRESET = "standard"


def configure(parser: argparse.ArgumentParser) -> None:
    """The kit's options (``--seeds``, ``--out``, ``--no-progress``, ``--threads``), presets,
    ``--relax`` and one option per config field."""
    add_preset_options(parser, PRESETS, DEFAULT_PRESET)
    add_common_options(parser, "relaxation", training=False, lightning=False,
                       seeds_default=None, threads_default=0)
    add_relax_option(parser, help_text="schedule θ(t) of the relaxed arms; none: leave them "
                                       "out (exact arms only)")
    add_config_options(parser, TeacherStudentConfig, exclude=("seeds", "schedule", "drop_arm"))


def config_from_options(args: argparse.Namespace) -> TeacherStudentConfig:
    """The config of a command: the preset's values, then every option given (``--relax none``
    drops the relaxed arms)."""
    overrides: dict = {}
    if args.seeds is not None:
        overrides["seeds"] = list(args.seeds)
    if args.relax == "none":
        overrides["drop_arm"] = False
    elif args.relax is not None:
        overrides["schedule"] = args.relax
    return config_from_args(args, TeacherStudentConfig, PRESETS,
                            chosen_preset(args, DEFAULT_PRESET), **overrides)


def main(args: argparse.Namespace) -> int:
    """Run the comparison (``--out`` checked writable first) and write its outputs; a
    ``--quick`` run says, on the terminal and in them, that it is a smoke test."""
    preset = chosen_preset(args, DEFAULT_PRESET)
    cfg = config_from_options(args)
    out, _ = prepare_folders(args, "relaxation", preset, training=False)
    result = relax_comparison(cfg, progress=args.progress)
    if preset == "quick":
        result = {"smoke_test": SMOKE_TEST_NOTE, **result}
    write_outputs(result, out, command=record_command(args))
    print(table(result))
    print(f"\nwrote {out}/relax_teacher_student_{cfg.group}.{{md,json,png}}")
    return 0


__all__ = ["PRESETS", "config_from_options", "configure", "main"]
