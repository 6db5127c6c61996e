"""One command-line vocabulary for every study: the options each study shares, spelt once.

Every study that trains calls :func:`add_common_options` (seeds, folders, resuming, progress,
threads, and where Lightning trains, its parallelism), :func:`add_preset_options` (``--preset``
and ``--quick``) and, where it relaxes, :func:`add_relax_option` (``--relax`` with the schedule
names read from the relaxation schedule registry) and :func:`add_variants_option`
(``--variants``). The same words mean the same thing in every study:

* ``--seeds 0 1 2`` (or ``--seeds 0-29``): the seed values, never a count;
* ``--out``: the results folder (tables, JSON, plots), default ``docs/results/<study>/<preset>``;
* ``--runs-dir``: checkpoints and logs, default ``runs/<study>/<preset>``;
* ``--fresh``: delete earlier checkpoints of these runs instead of resuming them (rerunning a
  command without it resumes every unfinished run);
* ``--no-progress``, ``--threads``; ``--devices``, ``--accelerator``, ``--num-nodes``.

Values are checked by argparse (``type=`` functions of :mod:`~equirelax.experiments.kit.
argtypes`): a bad value is a usage error with exit status 2 naming the option. Help texts show
every default (:class:`DefaultsHelpFormatter`); an option whose default comes from the preset
says "the preset's value".
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from equirelax.experiments.kit.argtypes import (
    SeedsAction,
    non_negative_int,
    positive_int,
    seed_values,
)

#: Marks an option whose default is the chosen preset's value (see :func:`preset_default`).
PRESET_VALUE = "the preset's value"


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's formatter that shows defaults, for every option whose default means
    something: ``(default: X)`` for a value, ``(default: the preset's value)`` for an option
    marked with :func:`preset_default`; nothing for flags and for options whose help already
    says what their default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if getattr(action, "preset_value", False):
            return f"{text} (default: {PRESET_VALUE})".strip()
        default = action.default
        if (not action.option_strings or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or "default" in text or "%(default)" in text):
            return text
        if isinstance(default, (list, tuple)):
            shown = " ".join(map(str, default))
            return f"{text} (default: {shown})".strip()
        return f"{text} (default: %(default)s)".strip()


def preset_default(action: argparse.Action) -> argparse.Action:
    """Mark ``action`` (as returned by ``add_argument``) as defaulting to the preset's value:
    its default stays ``None`` ("not given") and its help says "the preset's value"."""
    action.preset_value = True  # type: ignore[attr-defined]
    return action


def schedule_names() -> tuple[str, ...]:
    """The relaxation schedules a study can be asked for: the registry's names, sorted."""
    from equirelax.relaxation import SCHEDULES

    return tuple(sorted(SCHEDULES))


def add_common_options(
    parser: argparse.ArgumentParser,
    study: str,
    *,
    training: bool = True,
    lightning: bool = True,
    seeds_default: Sequence[int] | None = (0,),
    threads_default: int = 2,
    folder_name: str = "<preset>",
    out_default: str | None = None,
) -> None:
    """Add the shared options of ``equirelax <study>``.

    ``seeds_default=None`` makes ``--seeds`` default to the preset's seeds.
    ``training=False`` (a study that trains nothing) leaves out ``--runs-dir`` and ``--fresh``;
    ``lightning=False`` leaves out ``--devices``, ``--accelerator`` and ``--num-nodes``.
    ``folder_name`` is how the help names the last part of the default folders
    (``docs/results/<study>/<preset>``, ``runs/<study>/<preset>``); ``out_default`` names a
    results folder of another form (the demo writes to ``runs/demo``)."""
    seeds = parser.add_argument(
        "--seeds", nargs="+", type=seed_values, action=SeedsAction, metavar="SEED",
        default=None if seeds_default is None else tuple(seeds_default),
        help="seed values (not a count): --seeds 0 1 2, or a range --seeds 0-29")
    if seeds_default is None:
        preset_default(seeds)
    parser.add_argument(
        "--out", type=Path, default=None,
        help="results folder: tables, JSON, plots (default: "
             f"{out_default or f'docs/results/{study}/{folder_name}'})")
    if training:
        parser.add_argument(
            "--runs-dir", dest="runs_dir", type=Path, default=None,
            help=f"checkpoints and logs (default: runs/{study}/{folder_name})")
        parser.add_argument(
            "--fresh", action="store_true",
            help="delete earlier checkpoints of these runs instead of resuming them")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide progress bars")
    parser.add_argument("--threads", type=non_negative_int, default=threads_default,
                        help="torch CPU threads per process (0: torch's own choice)")
    if lightning:
        add_parallel_options(parser)


def add_parallel_options(parser: argparse.ArgumentParser) -> None:
    """``--devices``, ``--num-nodes``, ``--accelerator`` (Lightning; DDP when more than one
    process)."""
    parser.add_argument("--devices", type=positive_int, default=1,
                        help="processes (or GPUs) per node: DDP when > 1")
    parser.add_argument("--num-nodes", dest="num_nodes", type=positive_int, default=1,
                        help="nodes for multi-node DDP")
    parser.add_argument("--accelerator", default="auto",
                        help="Lightning accelerator: auto, cpu, gpu")


def add_preset_options(parser: argparse.ArgumentParser, presets: Mapping[str, Any],
                       default: str | None, default_help: str | None = None) -> None:
    """``--preset {..}`` (``default``, or ``None`` when the study picks it from other options:
    ``default_help`` then says how) and ``--quick`` (the same as ``--preset quick``)."""
    parser.add_argument(
        "--preset", choices=sorted(presets), default=default,
        help="sizes and budget" + (f" (default: {default_help})" if default_help else ""))
    if "quick" in presets:
        parser.add_argument("--quick", action="store_true",
                            help="the same as --preset quick: a smoke test of a few minutes")


def chosen_preset(args: argparse.Namespace, default: str) -> str:
    """The preset a command runs: ``quick`` with ``--quick``, else ``--preset``, else
    ``default``."""
    if getattr(args, "quick", False):
        return "quick"
    return getattr(args, "preset", None) or default


def add_relax_option(parser: argparse.ArgumentParser, *, none: bool = True,
                     help_text: str = "relaxation schedule θ(t) of the relaxed variant; none: "
                                      "train the exact model only") -> None:
    """``--relax {none,<schedules>}``: the schedule of the relaxed variant, or ``none`` for no
    relaxation. The choices are the schedule registry's (``equirelax.relaxation.SCHEDULES``);
    the default is the preset's (``triangular`` in every preset)."""
    choices = (("none",) if none else ()) + schedule_names()
    preset_default(parser.add_argument("--relax", choices=choices, default=None,
                                       help=help_text))


def add_variants_option(parser: argparse.ArgumentParser, variants: Sequence[str],
                        help_text: str = "the arms of the comparison",
                        default: Sequence[str] | None = None) -> None:
    """``--variants A B ..``: which arms of the study to train (``default``, else the
    preset's)."""
    action = parser.add_argument("--variants", nargs="+", choices=tuple(variants),
                                 default=None if default is None else tuple(default),
                                 help=help_text)
    if default is None:
        preset_default(action)


__all__ = [
    "PRESET_VALUE",
    "DefaultsHelpFormatter",
    "add_common_options",
    "add_parallel_options",
    "add_preset_options",
    "add_relax_option",
    "add_variants_option",
    "chosen_preset",
    "preset_default",
    "schedule_names",
]
