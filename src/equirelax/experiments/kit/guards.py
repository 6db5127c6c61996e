"""What every study command shares around its training: failing early, stopping cleanly.

* Output folders are checked before any training (:func:`require_writable`): a run whose
  results folder cannot be written fails in its first second, not after hours of training.
* Failures a user can act on are :class:`StudyError` exceptions with a one-line message and
  an exit status; the command line (``equirelax.cli``) prints the line instead of a traceback.
* Interruptions (SIGTERM from a cluster scheduler, Ctrl-C) end a command with a non-zero status
  and the line ``interrupted at epoch k; rerun the same command to resume``: a scheduler that
  requeues failed jobs must not mistake a killed run for a finished one (exit status 0).
  Training through the shared runner stops at the end of a batch and writes a checkpoint it can
  resume from (see ``runner.fit``); the command line turns SIGTERM into :class:`Terminated`
  elsewhere, so studies with their own loops stop the same way Ctrl-C stops them.

This module imports nothing heavy: the command line uses it before any study is loaded.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

#: The line written by ``--quick`` runs to the terminal and into their results files.
SMOKE_TEST_NOTE = (
    "SMOKE TEST (--quick): this preset only checks that the pipeline runs end to end; its "
    "numbers are not results (accuracies are near chance level, losses far from converged)."
)


class StudyError(Exception):
    """A study cannot go on; the command line prints the message and exits with ``status``."""

    status = 1


class UsageError(StudyError):
    """Options that are each valid but do not fit together, or a run folder that does not fit
    them (exit status 2, as argparse's usage errors)."""

    status = 2


class OutputError(StudyError):
    """An output or run folder cannot be created or written (a usage error: status 2)."""

    status = 2


class CheckpointError(StudyError):
    """A checkpoint cannot be read (truncated or corrupt)."""

    status = 1


class RunInterruptedError(StudyError):
    """Training was stopped by a signal; rerunning the same command resumes it.

    ``where`` names the position (``"epoch 3"``); ``signum`` the signal (the exit status is
    128 + signum, the shell's convention for a process ended by a signal); ``resume`` says
    what rerunning does."""

    def __init__(self, where: str | None, signum: int = signal.SIGTERM,
                 resume: str = "rerun the same command to resume") -> None:
        self.where, self.signum, self.resume = where, int(signum), resume
        at = f" at {where}" if where else ""
        super().__init__(f"interrupted{at}; {resume}")
        self.status = 128 + self.signum


class Terminated(KeyboardInterrupt):
    """Raised by the command line's SIGTERM handler: a termination request handled like
    Ctrl-C (``finally`` blocks run, progress bars close) but reported as SIGTERM."""


# -- where a study is, for the interruption message -------------------------------------------
_position: dict[str, str | None] = {"where": None}


def mark(where: str | None) -> None:
    """Record where the running study is (``"epoch 3"``, ``"seed 2"``): an interruption that
    arrives outside the shared runner reports it."""
    _position["where"] = where


def position() -> str | None:
    """The last position recorded with :func:`mark` (``None`` if none)."""
    return _position["where"]


def interrupted(exc: KeyboardInterrupt, resume: str = "rerun the same command to resume"
                ) -> RunInterruptedError:
    """The :class:`RunInterruptedError` report of a Ctrl-C or a :class:`Terminated`."""
    signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
    return RunInterruptedError(position(), signum, resume)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def terminate_raises() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` in the main thread (instead of ending
    the process silently); the previous handler is restored afterwards. A no-op outside the
    main thread (signal handlers can only be set there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- output folders ---------------------------------------------------------------------------
def require_writable(folders: Mapping[str, str | os.PathLike | None]) -> None:
    """Create every folder (``{option: path}``; ``None`` skipped) and check that a file can be
    written in it; raise :class:`OutputError` naming the option, the folder and the reason.

    A real file is written and removed, so read-only mounts and permissions are caught for
    every user, root included."""
    for option, folder in folders.items():
        if folder is None:
            continue
        path = Path(folder)
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()),
                       None)
        if blocker is not None:
            raise OutputError(f"{option} {path}: cannot create this folder, {blocker} is a "
                              "file; choose another folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
                pass
        except OSError as err:
            reason = err.strerror or str(err)
            raise OutputError(f"{option} {path}: folder is not writable ({reason}); choose "
                              "another folder or fix its permissions") from err


__all__ = [
    "SMOKE_TEST_NOTE",
    "CheckpointError",
    "OutputError",
    "RunInterruptedError",
    "StudyError",
    "Terminated",
    "UsageError",
    "interrupted",
    "mark",
    "position",
    "require_writable",
    "terminate_raises",
]
