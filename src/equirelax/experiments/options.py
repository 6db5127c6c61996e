"""Command-line options shared by the classification studies (point clouds, images)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import torch

from equirelax.experiments.argtypes import non_negative_float, positive_float, positive_int
from equirelax.experiments.guards import SMOKE_TEST_NOTE, require_writable


def add_run_options(parser: argparse.ArgumentParser, study: str, penalty_rows_help: str) -> None:
    """Training, relaxation, parallelism and output options, with ``None`` meaning "the
    preset's value"; results default to ``docs/results/<study>/<preset>``."""
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--batch-size", dest="batch_size", type=positive_int, default=None)
    parser.add_argument("--lr", type=positive_float, default=None)
    parser.add_argument("--lie-weight", dest="lie_weight", type=non_negative_float, default=None)
    parser.add_argument("--norm-weight", dest="norm_weight", type=non_negative_float,
                        default=None)
    parser.add_argument("--penalty-rows", dest="penalty_rows", type=positive_int, default=None,
                        help=penalty_rows_help)
    parser.add_argument("--devices", type=positive_int, default=None,
                        help="processes (or GPUs) per node: DDP when > 1")
    parser.add_argument("--num-nodes", dest="num_nodes", type=positive_int, default=None,
                        help="nodes for multi-node DDP")
    parser.add_argument("--accelerator", default=None,
                        help="Lightning accelerator: auto (default), cpu, gpu")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default docs/results/{study}/<preset>)")
    parser.add_argument("--runs-dir", dest="runs_dir", type=Path, default=None,
                        help=f"checkpoints and logs (default runs/{study}/<preset>)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete earlier checkpoints of these runs instead of resuming")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
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


def folder_flags(args: argparse.Namespace) -> str:
    """The ``--out`` / ``--runs-dir`` words of a recorded command, for the folders given on the
    command line (a rerun without them would write into the preset's default folders)."""
    words = []
    for flag, value in (("--out", args.out), ("--runs-dir", args.runs_dir)):
        if value is not None:
            words += [flag, str(value)]
    return (" " + shlex.join(words)) if words else ""


def prepare_run(args: argparse.Namespace, study: str, name: str) -> tuple[Path, Path]:
    """The results and checkpoint folders of a run (``docs/results/<study>/<name>`` and
    ``runs/<study>/<name>`` unless given), checked writable before anything trains, earlier
    checkpoints removed with ``--fresh``, and the torch thread count set. A ``--quick`` run
    says that it is a smoke test."""
    out = args.out or Path("docs/results") / study / name
    runs = args.runs_dir or Path("runs") / study / name
    require_writable({"--out": out, "--runs-dir": runs})
    if args.quick:
        print(SMOKE_TEST_NOTE, flush=True)
    # DDP processes started by Lightning run this command too, after rank 0 began training
    first_process = int(os.environ.get("NODE_RANK", 0) or 0) + int(
        os.environ.get("LOCAL_RANK", 0) or 0) == 0
    if args.fresh and runs.exists() and first_process:
        shutil.rmtree(runs)
    torch.set_num_threads(args.threads)
    return out, runs
