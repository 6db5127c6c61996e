"""Command-line options shared by the classification studies (point clouds, images)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import torch


def add_run_options(parser: argparse.ArgumentParser, study: str, penalty_rows_help: str) -> None:
    """Training, relaxation, parallelism and output options, with ``None`` meaning "the
    preset's value"; results default to ``docs/results/<study>/<preset>``."""
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lie-weight", dest="lie_weight", type=float, default=None)
    parser.add_argument("--norm-weight", dest="norm_weight", type=float, default=None)
    parser.add_argument("--penalty-rows", dest="penalty_rows", type=int, default=None,
                        help=penalty_rows_help)
    parser.add_argument("--devices", type=int, default=None,
                        help="processes for data-parallel training (DDP)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default docs/results/{study}/<preset>)")
    parser.add_argument("--runs-dir", dest="runs_dir", type=Path, default=None,
                        help=f"checkpoints and logs (default runs/{study}/<preset>)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete earlier checkpoints of these runs instead of resuming")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def config_values(args: argparse.Namespace, presets: dict[str, dict], options: dict[str, str],
                  baseline_model: str) -> dict[str, Any]:
    """A study's configuration fields: the preset, then every option given on the command line
    (``options`` maps config fields to flags); ``--model`` picks one variant (``baseline_model``
    names the unconstrained baseline's choice) and ``--relax`` the schedule, or ``none`` for the
    exact model."""
    values: dict[str, Any] = dict(presets["quick" if args.quick else args.preset])
    for key in options:
        value = getattr(args, key, None)
        if value is not None and key != "schedule":
            values[key] = value
    if args.model is not None:
        if args.model == baseline_model:
            values["variants"] = ("baseline",)
        else:
            values["variants"] = ("exact",) if args.relax == "none" else ("relaxed",)
    if args.relax not in (None, "none"):
        values["schedule"] = args.relax
    return values


def prepare_run(args: argparse.Namespace, study: str, name: str) -> tuple[Path, Path]:
    """The results and checkpoint folders of a run (``docs/results/<study>/<name>`` and
    ``runs/<study>/<name>`` unless given), earlier checkpoints removed with ``--fresh``, and the
    torch thread count set."""
    out = args.out or Path("docs/results") / study / name
    runs = args.runs_dir or Path("runs") / study / name
    if args.fresh and runs.exists():
        shutil.rmtree(runs)
    torch.set_num_threads(args.threads)
    return out, runs
