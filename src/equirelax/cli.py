"""Command line: ``equirelax <study> [options]`` (or ``python -m equirelax``).

Each study lives in ``equirelax.experiments.<module>`` and defines ``configure(parser)`` and
``main(args) -> int``; this file only maps names to modules, so an optional study whose
dependencies are missing fails when it is asked for, not when another one runs.

``equirelax --version`` prints the version; every study's ``--help`` shows the defaults.
The words of the command are kept on the parsed namespace (``args.argv``): each study records
them with its results (:func:`~equirelax.experiments.kit.commands.record_command`).

Every study gets the same endings here: bad options are usage errors (status 2, from argparse);
a :class:`~equirelax.experiments.kit.guards.StudyError` prints its one-line message and exits
with its status; SIGTERM and Ctrl-C end the command with status 143 / 130 and the line
``interrupted at ...; rerun the same command to resume`` instead of a traceback (or, under
SIGTERM, a silent exit with status 0). A study module may set ``ON_RERUN`` to say what rerunning
does when it cannot resume.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from equirelax import __version__
from equirelax.experiments.kit import guards
from equirelax.experiments.kit.options import DefaultsHelpFormatter

STUDIES: dict[str, tuple[str, str]] = {
    "demo": ("equirelax.experiments.demo", "short demo: exact vs relaxed training, with a table"),
    "relax": ("equirelax.experiments.relax_study",
              "teacher–student comparison of exact and relaxed-then-hardened training"),
    "landscape": ("equirelax.experiments.landscape", "loss landscape and hidden symmetries"),
    "nbody": ("equirelax.experiments.nbody", "charged N-body with EGNN/SEGNN, exact vs relaxed"),
    "pointcloud": ("equirelax.experiments.pointcloud",
                   "rotation-invariant point-cloud classification with Vector Neurons"),
    "images": ("equirelax.experiments.images",
               "rotated digits or Fashion-MNIST with C4/D4 group convolutions"),
    "scg": ("equirelax.experiments.scg", "modular autoencoder and pattern completion (SCG)"),
    "graphs": ("equirelax.experiments.graphs",
               "invariant graph network on random graphs, exact vs relaxed (low-rank)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; imports only the study that is asked for."""
    parser = argparse.ArgumentParser(prog="equirelax", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"equirelax {__version__}")
    sub = parser.add_subparsers(dest="study", metavar="STUDY")
    for name, (module, help_text) in STUDIES.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=DefaultsHelpFormatter)
        if only == name:
            importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen study; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    study = next((a for a in argv if not a.startswith("-")), None)
    if study is not None and study not in STUDIES:
        print(f"equirelax: unknown study {study!r}; expected one of {', '.join(STUDIES)}",
              file=sys.stderr)
        return 2
    if study is not None:
        try:
            importlib.import_module(STUDIES[study][0])
        except ModuleNotFoundError as err:
            print(f"equirelax {study}: not available ({err})", file=sys.stderr)
            return 2
    try:
        args = build_parser(study).parse_args(argv)
    except SystemExit as done:  # a usage error (status 2) or --help (status 0)
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    if args.study is None:
        build_parser().print_help()
        return 0
    args.argv = argv  # the words as typed: the command each study records with its results
    module = importlib.import_module(STUDIES[args.study][0])
    prefix = f"equirelax {args.study}"
    guards.mark(None)
    try:
        with guards.terminate_raises():
            return int(module.main(args) or 0)
    except guards.StudyError as err:
        print(f"{prefix}: {err}", file=sys.stderr, flush=True)
        return err.status
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM outside the runner (Terminated)
        resume = getattr(module, "ON_RERUN", "rerun the same command to resume")
        err = guards.interrupted(stop, resume)
        print(f"\n{prefix}: {err}", file=sys.stderr, flush=True)
        return err.status


if __name__ == "__main__":
    raise SystemExit(main())
