"""The command that reproduces a run, as every study writes it at the head of its results.

``equirelax.cli.main`` stores the words it parsed on the namespace (``args.argv``, the study's
name first); :func:`record_command` writes them back as one shell-quoted line,
``equirelax <study> ...``, with every option as it was typed, output folders included. A
namespace built another way (a test calling a study's ``main`` directly) gets its command
rebuilt from the parser that made it: every option whose value differs from its default.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def record_command(args: argparse.Namespace) -> str:
    """``equirelax <study> ...``: the words the command line parsed for ``args``; without
    them (``args.argv`` unset), the options rebuilt from ``args`` itself."""
    argv: Sequence[str] | None = getattr(args, "argv", None)
    if argv is not None:
        return shlex.join(["equirelax", *argv])
    return shlex.join(["equirelax", *rebuilt_words(args)])


def _words(flag: str, value: Any) -> list[str]:
    if value is True:
        return [flag]
    if isinstance(value, (list, tuple)):
        return [flag, *map(str, value)]
    return [flag, str(value)]


def rebuilt_words(args: argparse.Namespace) -> list[str]:
    """The study's name and an option for every value of ``args`` that is set: not ``None``,
    ``False``, or a default recorded in ``args.defaults`` (a dict the study may store)."""
    defaults: dict[str, Any] = getattr(args, "defaults", {}) or {}
    words = [args.study] if getattr(args, "study", None) else []
    for key, value in sorted(vars(args).items()):
        if key == "progress":  # --no-progress stores progress=False; True is the default
            words += [] if value else ["--no-progress"]
            continue
        if key in ("study", "argv", "defaults") or value is None or value is False:
            continue
        if key in defaults and defaults[key] == value:
            continue
        if isinstance(value, Path):
            value = str(value)
        words += _words("--" + key.replace("_", "-"), value)
    return words


__all__ = ["rebuilt_words", "record_command"]
