"""Run folders, resuming and the recorded command (``experiments.kit.runs``, ``commands``)."""

from __future__ import annotations

import argparse

import pytest
import torch

from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.guards import OutputError, UsageError
from equirelax.experiments.kit.runs import (
    TrainingClock,
    check_run_settings,
    prepare_folders,
)

#: prepare_folders sets torch's thread count (--threads 1): the one_thread fixture of
#: tests/conftest.py gives it back to the other modules afterwards
pytestmark = pytest.mark.usefixtures("one_thread")


def _args(**values) -> argparse.Namespace:
    base = {"out": None, "runs_dir": None, "fresh": False, "threads": 1, "quick": False}
    return argparse.Namespace(**{**base, **values})


def test_default_folders_and_fresh(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # the thread count asked for, recorded: EQUIRELAX_TEST_THREADS may pin the count itself
    asked: list[int] = []
    set_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (asked.append(n), set_threads(n)))
    out, runs = prepare_folders(_args(quick=True), "toy", "quick")
    assert (out, runs) == (tmp_path.joinpath("docs/results/toy/quick").relative_to(tmp_path),
                           tmp_path.joinpath("runs/toy/quick").relative_to(tmp_path))
    assert "SMOKE TEST" in capsys.readouterr().out and asked == [1]
    (runs / "old.ckpt").write_text("x")
    prepare_folders(_args(), "toy", "quick")
    assert (runs / "old.ckpt").exists()  # resumed, not deleted
    prepare_folders(_args(fresh=True), "toy", "quick")
    assert not runs.exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="--out"):
        prepare_folders(_args(out=blocker / "x"), "toy", "quick")


def test_run_settings_are_recorded_and_checked(tmp_path):
    check_run_settings(tmp_path / "run", {"lr": 0.1, "rows": None})
    check_run_settings(tmp_path / "run", {"lr": 0.1, "rows": None})
    with pytest.raises(UsageError, match=r"lr: 0.1 then, 0.2 now\); use --fresh") as err:
        check_run_settings(tmp_path / "run", {"lr": 0.2, "rows": None})
    assert err.value.status == 2


def test_training_time_adds_up_over_restarts(tmp_path):
    clock = TrainingClock(tmp_path / "run")
    assert clock.before() == 0.0
    assert clock.set(clock.before() + 2.5) == 2.5
    again = TrainingClock(tmp_path / "run")  # a restart reads what the last one kept
    assert again.set(again.before() + 1.0) == 3.5


def test_the_recorded_command_is_the_one_typed():
    args = argparse.Namespace(argv=["toy", "--quick", "--out", "a b"], study="toy")
    assert record_command(args) == "equirelax toy --quick --out 'a b'"
    rebuilt = argparse.Namespace(study="toy", seeds=(0, 1), quick=True, progress=False, x=None)
    assert record_command(rebuilt) == "equirelax toy --no-progress --quick --seeds 0 1"
