"""Command-line options shared by the classification studies (point clouds, images)."""

from __future__ import annotations

import argparse
from pathlib import Path


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
