"""Run folders: checked before training, resumed unless ``--fresh``, with the settings and the
training time of every run kept beside its checkpoints.

A study's checkpoints and logs live under ``--runs-dir`` (default ``runs/<study>/<name>``), its
tables under ``--out`` (default ``docs/results/<study>/<name>``). :func:`prepare_folders`
checks both can be written before anything trains, deletes the earlier checkpoints with
``--fresh`` and sets the torch thread count. Rerunning a command resumes each unfinished run
from its last checkpoint; :func:`check_run_settings` refuses to resume a folder trained with
other settings, and :class:`TrainingClock` adds up the training time over every (re)start.

Lightning starts the DDP processes of a run by running the same command again; only the first
process (:func:`launch_rank` 0) deletes or writes shared files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE, UsageError, require_writable


class SettingsChangedError(UsageError):
    """A run folder holds runs trained with other settings (a usage error: status 2)."""


def launch_rank() -> int:
    """0 in the process the user started; the rank of a process Lightning started for DDP."""
    return int(os.environ.get("NODE_RANK", 0) or 0) + int(os.environ.get("LOCAL_RANK", 0) or 0)


def default_folders(study: str, name: str) -> tuple[Path, Path]:
    """``docs/results/<study>/<name>`` and ``runs/<study>/<name>``."""
    return Path("docs/results") / study / name, Path("runs") / study / name


def prepare_folders(args: argparse.Namespace, study: str, name: str, *,
                    training: bool = True, smoke_test: bool | None = None) -> tuple[Path, Path]:
    """The results and checkpoint folders of a command (``--out`` and ``--runs-dir``, else
    :func:`default_folders`), checked writable before anything trains (``training=False``:
    only the results folder); with ``--fresh``, the earlier checkpoints are deleted. Sets the
    torch thread count (``--threads``, 0: torch's own choice) and says when a ``--quick`` run is
    a smoke test (``smoke_test``, default ``--quick``)."""
    out_default, runs_default = default_folders(study, name)
    out = Path(args.out) if getattr(args, "out", None) is not None else out_default
    runs = (Path(args.runs_dir) if getattr(args, "runs_dir", None) is not None
            else runs_default)
    require_writable({"--out": out, "--runs-dir": runs} if training else {"--out": out})
    if getattr(args, "quick", False) if smoke_test is None else smoke_test:
        print(SMOKE_TEST_NOTE, flush=True)
    if training and getattr(args, "fresh", False) and runs.exists() and launch_rank() == 0:
        shutil.rmtree(runs)
    threads = getattr(args, "threads", 0)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return out, runs


def check_run_settings(run_dir: str | Path, settings: Mapping[str, Any]) -> None:
    """Refuse to resume a run folder trained with other ``settings`` (its checkpoints would be
    continued silently), naming what changed; record the settings of a new folder
    (``study_settings.json``). Only the first process checks and writes."""
    if launch_rank() != 0:
        return
    run_dir = Path(run_dir)
    path = run_dir / "study_settings.json"
    settings = json.loads(json.dumps(dict(settings), default=str))
    if path.exists():
        saved = json.loads(path.read_text())
        changed = [f"{k}: {saved.get(k)!r} then, {v!r} now" for k, v in settings.items()
                   if saved.get(k) != v]
        if changed:
            raise SettingsChangedError(
                f"the run folder {run_dir} holds runs trained with other settings "
                f"({'; '.join(changed)}); use --fresh to delete them, or another --runs-dir")
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings, indent=1) + "\n")
    tmp.replace(path)


class TrainingClock:
    """The training time of one run over every invocation that trained it, kept in its folder
    (``training_seconds.json``): a resumed run reports its whole time, not the last part."""

    FILE = "training_seconds.json"

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / self.FILE

    def before(self) -> float:
        """Seconds spent by earlier invocations (0 for a new run)."""
        if self.path.exists():
            return float(json.loads(self.path.read_text())["seconds"])
        return 0.0

    def set(self, total: float) -> float:
        """Record the run's total training time (written whole: a reader never sees half a
        file); returns it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seconds": float(total)}) + "\n")
        tmp.replace(self.path)
        return float(total)


__all__ = [
    "SettingsChangedError",
    "TrainingClock",
    "check_run_settings",
    "default_folders",
    "launch_rank",
    "prepare_folders",
]
