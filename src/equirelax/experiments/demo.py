"""``equirelax demo``: the README's main job, a few minutes on 2 CPU cores.

Builds S3-equivariant MLP students and trains them from the same seeds on a generated,
exactly permutation-symmetric teacher–student task (progress bars): exact; relaxed with the
paper's schedule and hardened by dropping the free terms; the same two with the teacher's hidden
rep (the baselines: a ``3*trivial`` student can only compute functions of Σx, so the first two
fail by construction); and exact, then relaxed, then hardened onto the hidden representation the
relaxed weights satisfy. That last arm is equirelax's own extension of Xie & Smidt (2025), who
report that relaxation lands on another hidden rep; hardening onto it is ours. Prints per seed
the test loss and the measured equivariance error of every final model, with a summary. Results
go to ``runs/demo`` (the full studies, ``equirelax relax``, write ``docs/results/relaxation``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from equirelax.experiments.kit.argtypes import non_negative_int, positive_int
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.options import add_common_options
from equirelax.experiments.kit.runs import prepare_folders
from equirelax.experiments.teacher_student import (
    TeacherStudentConfig,
    relax_comparison,
    table,
    write_outputs,
)

#: What rerunning an interrupted command does (it keeps no partial results).
ON_RERUN = "rerun the same command to start again"

#: The demo's setting: a teacher of type S3/S2 and students with three trivial hidden neurons,
#: which exact training leaves at a saddle (a short version of the kept escape study).
DEMO = TeacherStudentConfig(
    group="S3", teacher_rep="natural", student_rep="3*trivial", n_base=128, steps=2000,
    escape_steps=8000, seeds=list(range(5)), lie_weight=1e-4, norm_weight=1e-4,
    relax_fraction=0.7,
)


#: What the demo prints first: what the arms are and whose idea each is.
INTRO = (
    "S3 teacher–student: the teacher's hidden rep is `natural`; the students have three "
    "trivial hidden neurons, which can only compute functions of Σx, so `exact` and the paper's "
    "relax → drop fail by construction. The baselines train students with the teacher's hidden "
    "rep. The escape arm is equirelax's extension of Xie & Smidt (2025): they report that "
    "relaxation lands on a different hidden rep; detecting that rep and hardening onto it "
    "(harden(mode=\"detected\")) is ours."
)


#: Where the demo writes its table, curves and plot unless told otherwise.
DEFAULT_OUT = Path("runs/demo")


def configure(parser: argparse.ArgumentParser) -> None:
    """The kit's options (``--seeds``, ``--out``, ``--no-progress``, ``--threads``) and the
    demo's step counts."""
    add_common_options(parser, "demo", training=False, lightning=False,
                       seeds_default=DEMO.seeds, threads_default=0, out_default=str(DEFAULT_OUT))
    parser.add_argument("--steps", type=positive_int, default=DEMO.steps, help="exact steps")
    parser.add_argument("--escape-steps", type=non_negative_int, default=DEMO.escape_steps,
                        help="relaxed steps of the escape arm (0: leave it out)")


def config_from_options(args: argparse.Namespace) -> TeacherStudentConfig:
    """The demo's setting with the seeds and step counts of the command line."""
    return TeacherStudentConfig(**{**DEMO.__dict__, "seeds": list(args.seeds),
                                   "steps": args.steps, "escape_steps": args.escape_steps})


def main(args: argparse.Namespace) -> int:
    """Train the demo's arms, print the table and write it (with curves and a plot) into
    ``--out``."""
    cfg = config_from_options(args)
    args.out = args.out or DEFAULT_OUT
    out, _ = prepare_folders(args, "demo", "demo", training=False)
    print(INTRO, flush=True)
    result = relax_comparison(cfg, progress=args.progress)
    write_outputs(result, out, command=record_command(args))
    print(table(result))
    print(f"\n(results, curves and a plot in {out}/)")
    return 0
