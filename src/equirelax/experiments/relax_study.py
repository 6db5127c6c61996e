"""``equirelax relax``: exact vs relaxed-then-hardened students in the teacher–student setting.

Writes ``relax_teacher_student_<group>.{json,md,png}`` into ``--out`` (default
``docs/results/relaxation``) and prints the table.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from equirelax.experiments.kit.argtypes import (
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE, require_writable
from equirelax.experiments.teacher_student import (
    TeacherStudentConfig,
    relax_comparison,
    table,
    write_outputs,
)

DEFAULTS = TeacherStudentConfig()

#: What rerunning an interrupted command does (it keeps no partial results).
ON_RERUN = "rerun the same command to start again"


def configure(parser: argparse.ArgumentParser) -> None:
    """Options mirror :class:`TeacherStudentConfig`."""
    parser.add_argument("--group", default=DEFAULTS.group, help="S3, A4, C5, D4, ...")
    parser.add_argument("--teacher-rep", default=DEFAULTS.teacher_rep)
    parser.add_argument("--student-rep", default=DEFAULTS.student_rep)
    parser.add_argument("--activation", default=DEFAULTS.activation)
    parser.add_argument("--seeds", type=positive_int, default=len(DEFAULTS.seeds),
                        help="number of seeds (0..N-1)")
    parser.add_argument("--steps", type=positive_int, default=DEFAULTS.steps)
    parser.add_argument("--n-base", type=positive_int, default=DEFAULTS.n_base,
                        help="base samples (each appears with all its group images)")
    parser.add_argument("--lr", type=positive_float, default=DEFAULTS.lr)
    parser.add_argument("--schedule", default=DEFAULTS.schedule)
    parser.add_argument("--lie-weight", type=non_negative_float, default=DEFAULTS.lie_weight)
    parser.add_argument("--norm-weight", type=non_negative_float, default=DEFAULTS.norm_weight)
    parser.add_argument("--free-init-std", type=non_negative_float,
                        default=DEFAULTS.free_init_std)
    parser.add_argument("--relax-fraction", type=fraction, default=DEFAULTS.relax_fraction,
                        help="fraction of the steps the schedule spans (then θ = 0)")
    parser.add_argument("--escape-steps", type=non_negative_int, default=DEFAULTS.escape_steps,
                        help="> 0 adds the arm: exact, then relaxed with θ = 1, hardened onto "
                             "the detected hidden rep")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 5 seeds, fewer steps and samples")
    parser.add_argument("--out", type=Path, default=Path("docs/results/relaxation"))


def config_from_args(args: argparse.Namespace) -> TeacherStudentConfig:
    """Build the config; ``--quick`` shrinks seeds, steps and data for a run of a few minutes."""
    cfg = TeacherStudentConfig(
        group=args.group, teacher_rep=args.teacher_rep, student_rep=args.student_rep,
        activation=args.activation, n_base=args.n_base, steps=args.steps, lr=args.lr,
        seeds=list(range(args.seeds)), lie_weight=args.lie_weight, norm_weight=args.norm_weight,
        schedule=args.schedule, free_init_std=args.free_init_std,
        relax_fraction=args.relax_fraction, escape_steps=args.escape_steps,
    )
    if args.quick:
        cfg.seeds = cfg.seeds[:5]
        cfg.steps = min(cfg.steps, 2000)
        cfg.escape_steps = min(cfg.escape_steps, 2000)
        cfg.n_base = min(cfg.n_base, 128)
    return cfg


def main(args: argparse.Namespace) -> int:
    """Run the comparison (``--out`` checked writable first) and write its outputs; a
    ``--quick`` run says, on the terminal and in them, that it is a smoke test."""
    cfg = config_from_args(args)
    require_writable({"--out": args.out})
    if args.quick:
        print(SMOKE_TEST_NOTE, flush=True)
    result = relax_comparison(cfg)
    if args.quick:
        result = {"smoke_test": SMOKE_TEST_NOTE, **result}
    command = "equirelax " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_outputs(result, args.out, command=command)
    print(table(result))
    print(f"\nwrote {args.out}/relax_teacher_student_{cfg.group}.{{md,json,png}}")
    return 0


__all__ = ["config_from_args", "configure", "main"]
