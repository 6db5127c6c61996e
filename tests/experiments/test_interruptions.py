"""Study commands stopped by a scheduler or by Ctrl-C, and damaged checkpoints.

A real ``equirelax nbody`` process gets SIGTERM while it trains: it must exit non-zero (a
cluster requeues only failed jobs) with one line saying where it stopped, leave a checkpoint,
and the same command must resume from it. The exactness of such a resume is tested on the
runner (tests/experiments/test_runner.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from equirelax.cli import main as cli_main
from equirelax.experiments.kit import guards
from equirelax.experiments.nbody import epochs_checkpointed
from tests.helpers.nbody_study import ROOT, run_json, tiny

NAME = "egnn-L2-n40-exact-s0"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nbody-cache")


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_WAIT_POLICY": "PASSIVE"}
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.Popen([sys.executable, "-m", "equirelax", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended before {path} appeared:\n{(out + err)[-3000:]}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


def test_sigterm_during_training_exits_non_zero_and_the_same_command_resumes(tmp_path, cache):
    args = tiny(tmp_path, cache, "--variants", "exact", "--epochs", "200", "--tag", "term")
    run_dir = tmp_path / "runs" / "term" / NAME
    proc = _start(args, tmp_path)
    _wait_for(run_dir / "checkpoints" / "last.ckpt", proc, timeout=240)  # epoch 0 is done
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, (out + err)[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("equirelax nbody:")]
    assert len(lines) == 1, err[-3000:]
    found = re.fullmatch(r"equirelax nbody: interrupted at epoch (\d+); rerun the same command "
                         r"to resume", lines[0])
    assert found, lines[0]
    epoch = int(found.group(1))
    assert 1 <= epoch < 200
    assert "Traceback" not in err
    # the checkpoint is where training stopped (or at the epoch boundary before it)
    assert epochs_checkpointed(run_dir) == epoch
    assert not (tmp_path / "res" / "term" / "runs" / f"{NAME}.json").exists()
    # rerunning the same command resumes (here for one more epoch)
    assert cli_main([*args, "--stop-after", "1"]) == 0
    result = run_json(tmp_path, "term", NAME)
    assert result["resumed_from"] and result["epochs_done"] == epoch + 1
    assert [e for e, _ in result["val_curve"]] == list(range(epoch + 1))


def test_a_truncated_checkpoint_names_the_file_and_how_to_start_afresh(tmp_path, cache, capsys):
    args = tiny(tmp_path, cache, "--variants", "exact", "--epochs", "2", "--tag", "broken")
    assert cli_main([*args, "--stop-after", "1"]) == 0
    last = tmp_path / "runs" / "broken" / NAME / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    capsys.readouterr()
    assert cli_main(args) == 1
    err = capsys.readouterr().err
    assert f"equirelax nbody: cannot read the checkpoint {last}" in err
    assert "truncated or corrupt. Delete it to train this run afresh" in err
    assert "Traceback" not in err


def test_ctrl_c_outside_the_runner_reports_where_the_study_was(monkeypatch, capsys):
    """A study's own loop (here: a fake one) stopped by Ctrl-C or by SIGTERM (Terminated):
    one line, status 130 / 143, the position it recorded; studies that cannot resume say so."""
    from equirelax.experiments import relax_study

    def stopped_by(exc):
        def main(args):
            guards.mark("seed 2")
            raise exc
        return main

    monkeypatch.setattr(relax_study, "main", stopped_by(KeyboardInterrupt()))
    assert cli_main(["relax"]) == 130
    assert capsys.readouterr().err.strip() == (
        "equirelax relax: interrupted at seed 2; rerun the same command to start again")
    monkeypatch.setattr(relax_study, "main", stopped_by(guards.Terminated()))
    assert cli_main(["relax"]) == 143
