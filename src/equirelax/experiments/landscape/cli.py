"""The command line of ``equirelax landscape``: the ``teacher-student`` subcommand (the study
kit's options, presets and one option per config field) and the ``symmetries`` subcommand, the
config a command resolves to, and the entry point (also ``python -m
equirelax.experiments.landscape``, see ``__main__``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from equirelax.experiments.kit import guards
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.config import add_config_options, config_from_args
from equirelax.experiments.kit.options import (
    DefaultsHelpFormatter,
    add_common_options,
    add_preset_options,
    chosen_preset,
)
from equirelax.experiments.kit.runs import prepare_folders
from equirelax.experiments.landscape.config import DEFAULT_PRESET, PRESETS, StudyConfig
from equirelax.experiments.landscape.study import run_study
from equirelax.experiments.landscape.symmetries import symmetries_table
from equirelax.experiments.landscape.tables import table, write_index, write_outputs


def configure(parser: argparse.ArgumentParser) -> None:
    """``teacher-student`` (the kit's options, presets and one option per
    :class:`StudyConfig` field) and ``symmetries`` subcommands."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    ts = sub.add_parser("teacher-student", help="exact vs relaxed students, detection, Hessians",
                        description="exact vs relaxed students, detection, Hessians",
                        formatter_class=DefaultsHelpFormatter)
    add_preset_options(ts, PRESETS, DEFAULT_PRESET)
    add_common_options(ts, "landscape", lightning=False, seeds_default=None, threads_default=1)
    add_config_options(ts, StudyConfig, exclude=("seeds",))
    sy = sub.add_parser("symmetries", help="hidden-symmetry groups of hidden reps",
                        description="hidden-symmetry groups of hidden reps",
                        formatter_class=DefaultsHelpFormatter)
    sy.add_argument("--group", default="S3", help="S3, A4, C5, D4, ...")
    sy.add_argument("--reps", nargs="+", default=["natural", "3*trivial", "regular"],
                    help="hidden reps, e.g. natural '3*trivial' regular pairs")
    sy.add_argument("--out", type=Path, default=None,
                    help="also write symmetries_<group>.md (and the index) here")


def config_from_options(args: argparse.Namespace) -> StudyConfig:
    """The config of a ``teacher-student`` command: the preset's values, then every option
    given."""
    overrides = {"seeds": tuple(args.seeds)} if args.seeds is not None else {}
    return config_from_args(args, StudyConfig, PRESETS, chosen_preset(args, DEFAULT_PRESET),
                            **overrides)


def main(args: argparse.Namespace) -> int:
    """Run a landscape subcommand."""
    if args.command == "symmetries":
        guards.require_writable({"--out": args.out})
        text = symmetries_table(args.group, args.reps, record_command(args))
        print(text)
        if args.out:
            (args.out / f"symmetries_{args.group}.md").write_text(text + "\n")
            write_index(args.out)
        return 0
    preset = chosen_preset(args, DEFAULT_PRESET)
    cfg = config_from_options(args)
    threads = torch.get_num_threads()
    # --fresh deletes this study's checkpoints only (run_study), not the other settings' ones
    # that share the runs folder
    out, runs_dir = prepare_folders(argparse.Namespace(**{**vars(args), "fresh": False}),
                                    "landscape", preset)
    try:
        result = run_study(cfg, runs_dir, fresh=args.fresh, command=record_command(args),
                           progress=args.progress)
    finally:
        torch.set_num_threads(threads)
    if preset == "quick":
        result = {"smoke_test": guards.SMOKE_TEST_NOTE, **result}
    paths = write_outputs(result, out)
    print(table(result))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0

