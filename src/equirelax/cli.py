"""Command line: ``equirelax <study> [options]`` (or ``python -m equirelax``).

Each study lives in ``equirelax.experiments.<module>`` and defines ``configure(parser)`` and
``main(args) -> int``; this file only maps names to modules, so an optional study whose
dependencies are missing fails when it is asked for, not when another one runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

STUDIES: dict[str, tuple[str, str]] = {
    "demo": ("equirelax.experiments.demo", "short demo: exact vs relaxed training, with a table"),
    "relax": ("equirelax.experiments.relax_study",
              "teacher–student comparison of exact and relaxed-then-hardened training"),
    "landscape": ("equirelax.experiments.landscape", "loss landscape and hidden symmetries"),
    "nbody": ("equirelax.experiments.nbody", "charged N-body with EGNN/SEGNN, exact vs relaxed"),
    "pointcloud": ("equirelax.experiments.pointcloud",
                   "rotation-invariant point-cloud classification with Vector Neurons"),
    "images": ("equirelax.experiments.images", "rotated digits with C4/D4 group convolutions"),
    "scg": ("equirelax.experiments.scg", "modular autoencoder and pattern completion (SCG)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; imports only the study that is asked for."""
    parser = argparse.ArgumentParser(prog="equirelax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="study", metavar="STUDY")
    for name, (module, help_text) in STUDIES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
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
    args = build_parser(study).parse_args(argv)
    if args.study is None:
        build_parser().print_help()
        return 0
    return int(importlib.import_module(STUDIES[args.study][0]).main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
