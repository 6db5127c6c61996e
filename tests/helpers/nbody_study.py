"""Tiny runs of the N-body study's command line, shared by its tests (the study, the command-line
options, interruptions): their arguments, folders and per-run results."""

from __future__ import annotations

import json
from pathlib import Path

#: The repository root (where ``docs/`` and ``runs/`` live).
ROOT = Path(__file__).resolve().parents[2]


def tiny(tmp: Path, cache: Path, *extra: str) -> list[str]:
    """Arguments of a tiny CLI run (EGNN, 40 training simulations) writing its results under
    ``tmp/res/<tag>`` and its checkpoints under ``tmp/runs/<tag>`` (``--tag`` in ``extra``
    names them, default ``quick``)."""
    words = list(extra)
    tag = "quick"
    if "--tag" in words:
        at_tag = words.index("--tag")
        tag = words[at_tag + 1]
        del words[at_tag:at_tag + 2]
    return ["nbody", "--quick", "--model", "egnn", "--egnn-hidden", "16", "--layers", "2",
            "--segnn-hidden", "4x0e+4x1o", "--train-size", "40", "--val-size", "20",
            "--test-size", "20", "--batch-size", "10", "--eval-batch-size", "20",
            *folders(tmp, tag), "--cache-dir", str(cache), "--no-progress", *words]


def folders(tmp: Path, tag: str) -> list[str]:
    """``--out tmp/res/<tag> --runs-dir tmp/runs/<tag>``."""
    return ["--out", str(tmp / "res" / tag), "--runs-dir", str(tmp / "runs" / tag)]


def at(tmp: Path, args: list[str], tag: str) -> list[str]:
    """``args`` of :func:`tiny` with its folders moved to ``tmp/res/<tag>``, ``tmp/runs/<tag>``."""
    words = list(args)
    for flag, new in zip(("--out", "--runs-dir"), folders(tmp, tag)[1::2]):
        words[words.index(flag) + 1] = new
    return words


def run_json(tmp: Path, tag: str, name: str) -> dict:
    return json.loads((tmp / "res" / tag / "runs" / f"{name}.json").read_text())
