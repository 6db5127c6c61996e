"""Tests of the N-body study (``equirelax nbody``): presets and options, seeded data order and
rotations, summaries, end-to-end CLI runs with exact resume, sweeps, hardened E(3)
equivariance of both models, and DDP on two CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from equirelax.cli import build_parser
from equirelax.cli import main as cli_main
from equirelax.data.nbody import NBodyDataset, NBodySample
from equirelax.experiments.kit.runner import EpochShuffle
from equirelax.experiments.kit.tables import mean_std
from equirelax.experiments.nbody import (
    RandomRotations,
    build_model,
    e3_equivariance_error,
    random_orthogonal,
    resolve,
    summarise,
)
from equirelax.relaxation import harden, relax
from tests.helpers.nbody_study import ROOT, at, run_json, tiny


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One data cache for the module: the tiny splits are generated once."""
    return tmp_path_factory.mktemp("nbody-cache")


def parse(*argv: str):
    return build_parser("nbody").parse_args(["nbody", *argv])


# -- options ----------------------------------------------------------------------------------
def test_presets_and_overrides():
    paper = resolve(parse())
    assert (paper.epochs, paper.train_size, paper.val_size, paper.test_size) == (1000, 3000,
                                                                               2000, 2000)
    assert paper.seeds == (0, 1, 2) and paper.models == ("egnn", "segnn")
    assert paper.variants == ("exact", "relaxed") and paper.schedule == "triangular"
    assert (paper.out, paper.runs_dir) == ("docs/results/nbody/paper", "runs/nbody/paper")
    assert (paper.lr, paper.batch_size, paper.lie_weight, paper.norm_weight) == (5e-4, 100,
                                                                                 1e-2, 1e-2)
    quick = resolve(parse("--quick", "--epochs", "7", "--seeds", "5", "6"))
    assert quick.preset == "quick" and quick.epochs == 7 and quick.seeds == (5, 6)
    assert quick.out == "docs/results/nbody/quick"
    assert resolve(parse("--seeds", "0-4", "--tag", "t")).seeds == (0, 1, 2, 3, 4)
    assert resolve(parse("--tag", "t")).runs_dir == "runs/nbody/t"
    assert resolve(parse("--relax", "none")).variants == ("exact",)
    sweep = resolve(parse("--preset", "cpu", "--sweep", "train-size"))
    assert sweep.sweep_values == (100, 300, 1000)
    assert sweep.out == "docs/results/nbody/cpu-sweep-train-size"


@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "0"], "argument --epochs: must be an integer > 0, got '0'"),
    (["--sweep-values", "1", "2"], "--sweep-values needs --sweep"),
    (["--sweep", "train-size", "--sweep-values", "20000"], "training sizes must be <= 10000"),
    (["--lie-weight", "-1"], "argument --lie-weight: must be a number >= 0, got '-1'"),
])
def test_bad_options_fail_early_with_a_message(argv, message, capsys):
    assert cli_main(["nbody", *argv]) == 2
    assert message in capsys.readouterr().err


# -- seeded data order, rotations, summaries --------------------------------------------------
def test_epoch_shuffle_depends_only_on_seed_and_epoch():
    a, b = EpochShuffle(50, seed=3), EpochShuffle(50, seed=3)
    assert sorted(a) == list(range(50)) and len(a) == 50
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(EpochShuffle(50, seed=4)) != first


def test_batched_epoch_order_gives_the_batches_of_per_sample_loading(cache):
    """The study gathers whole batches at once (EpochShuffle with batch_size, batch_size=None
    in the DataLoader); they are exactly the batches per-sample loading and stacking give."""
    from torch.utils.data import DataLoader

    data = NBodyDataset("train", 23, cache_dir=cache, progress=False)
    for epoch in (0, 3):
        slow_sampler, fast_sampler = EpochShuffle(23, 5), EpochShuffle(23, 5, batch_size=10)
        slow_sampler.set_epoch(epoch)
        fast_sampler.set_epoch(epoch)
        slow = list(DataLoader(data, batch_size=10, sampler=slow_sampler))
        fast = list(DataLoader(data, batch_size=None, sampler=fast_sampler))
        assert len(fast) == len(fast_sampler) == 3
        for a, b in zip(slow, fast, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_random_orthogonal_and_the_rotation_callback():
    dets = []
    for seed in range(20):
        q = random_orthogonal(seed, reflections=True)
        torch.testing.assert_close(q @ q.T, torch.eye(3, dtype=torch.float64))
        dets.append(round(float(torch.det(q))))
    assert set(dets) == {-1, 1}
    assert all(torch.det(random_orthogonal(s)) > 0 for s in range(5))

    def batch() -> NBodySample:
        g = torch.Generator().manual_seed(0)
        loc, vel, tgt = (torch.randn(4, 5, 3, generator=g) for _ in range(3))
        return NBodySample(loc, vel, torch.ones(4, 5), torch.ones(4, 5, 5), tgt)

    original, rotated, again, later = batch(), batch(), batch(), batch()
    callback = RandomRotations(seed=1)
    callback.on_train_batch_start(SimpleNamespace(global_step=3), None, rotated, 0)
    callback.on_train_batch_start(SimpleNamespace(global_step=3), None, again, 0)
    callback.on_train_batch_start(SimpleNamespace(global_step=4), None, later, 0)
    torch.testing.assert_close(rotated.loc, again.loc)  # a function of (seed, step)
    assert not torch.allclose(rotated.loc, later.loc)
    # one rotation for positions, velocities and targets: the solution R^T maps all back
    rot = torch.linalg.lstsq(original.loc.reshape(-1, 3), rotated.loc.reshape(-1, 3)).solution
    torch.testing.assert_close(original.vel.reshape(-1, 3) @ rot, rotated.vel.reshape(-1, 3))
    torch.testing.assert_close(original.target.reshape(-1, 3) @ rot,
                               rotated.target.reshape(-1, 3))
    torch.testing.assert_close(rot @ rot.T, torch.eye(3), atol=1e-5, rtol=0)
    assert torch.equal(rotated.charges, original.charges)


def test_e3_equivariance_error_detects_a_broken_model():
    loc, vel = torch.randn(6, 5, 3), torch.randn(6, 5, 3)
    charges = torch.ones(6, 5)
    exact = build_model("egnn", 2, egnn_hidden=8)
    assert e3_equivariance_error(exact, loc, vel, charges)["displacement"] <= 1e-4

    class Drift(torch.nn.Module):  # moves every particle along a fixed axis: not equivariant
        def forward(self, loc, vel, charges):
            return loc + vel + torch.tensor([0.3, 0.0, 0.0])

    assert e3_equivariance_error(Drift(), loc, vel, charges)["displacement"] > 1e-2


def _run(model, arm, seed, test, val=1.0, completed=True, key=None):
    return {"model": model, "arm": arm, "seed": seed, "test_mse": test, "best_val_mse": val,
            "completed": completed, "fit_seconds": 1.0, "train_size": key,
            "hardened_e3_error_float32": {"displacement": 1e-7}}


def test_summarise_means_stds_ratios_and_paired_wins():
    assert mean_std([1.0]) == (1.0, 0.0)
    runs = [_run("egnn", "exact", 0, 4.0), _run("egnn", "exact", 1, 6.0),
            _run("egnn", "relaxed", 0, 3.0), _run("egnn", "relaxed", 1, 7.0),
            _run("egnn", "relaxed", 2, 0.1, completed=False)]
    rows = summarise(runs)
    assert [(r["arm"], r["seeds"]) for r in rows] == [("exact", [0, 1]), ("relaxed", [0, 1])]
    exact, relaxed = rows
    assert exact["test_mse_mean"] == 5.0 and exact["test_mse_std"] == pytest.approx(2 ** 0.5)
    assert relaxed["relaxed_over_exact"] == 1.0 and relaxed["relaxed_wins"] == "1/2"
    sweep = summarise([_run("segnn", "exact", 0, 2.0, key=100), _run("segnn", "relaxed", 0, 1.0,
                                                                     key=100),
                       _run("segnn", "exact", 0, 1.0, key=300)], key="train_size")
    assert [(r["value"], r["arm"]) for r in sweep] == [(100, "exact"), (100, "relaxed"),
                                                       (300, "exact")]
    assert sweep[1]["relaxed_over_exact"] == 0.5 and sweep[1]["relaxed_wins"] == "1/1"


# -- end to end -------------------------------------------------------------------------------
def test_cli_interrupted_run_resumes_exactly(tmp_path, cache, capsys):
    """A relaxed run stopped after 2 of 4 epochs and resumed by rerunning the same command ends
    exactly where an uninterrupted run ends (weights, schedule, validation curve)."""
    name = "egnn-L2-n40-relaxed-s0"
    args = tiny(tmp_path, cache, "--variants", "relaxed", "--epochs", "4")
    assert cli_main([*at(tmp_path, args, "whole")]) == 0
    assert cli_main([*at(tmp_path, args, "sliced"), "--stop-after", "2"]) == 0
    part = run_json(tmp_path, "sliced", name)
    assert part["epochs_done"] == 2 and not part["completed"]
    ckpt = tmp_path / "runs" / "sliced" / name / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["state_dict"]["net._extra_state"]["t"] == 2
    assert cli_main([*at(tmp_path, args, "sliced")]) == 0
    whole, resumed = run_json(tmp_path, "whole", name), run_json(tmp_path, "sliced", name)
    assert resumed["completed"] and resumed["resumed_from"] and not whole["resumed_from"]
    assert torch.load(ckpt, weights_only=False)["state_dict"]["net._extra_state"]["t"] == 4
    assert resumed["fit_seconds"] > part["fit_seconds"]  # both slices counted
    sizes = resumed["free_term_relative_size"]
    assert list(sizes) == ["layers.0.update", "layers.1.update"] and min(sizes.values()) > 0
    assert [e for e, _ in resumed["val_curve"]] == [0, 1, 2, 3]
    curve = [v for _, v in resumed["val_curve"]]
    assert curve == pytest.approx([v for _, v in whole["val_curve"]], rel=1e-6)
    assert resumed["test_mse"] == pytest.approx(whole["test_mse"], rel=1e-6)
    # rerunning a finished command only tests again: same numbers, no training time added
    assert cli_main([*at(tmp_path, args, "sliced")]) == 0
    again = run_json(tmp_path, "sliced", name)
    assert again["test_mse"] == resumed["test_mse"]
    assert again["fit_seconds"] == resumed["fit_seconds"]
    # the folder remembers its settings: resuming it with others is refused
    assert cli_main([*at(tmp_path, args, "sliced"), "--lr", "1e-3"]) == 2
    assert "trained with other settings (lr: 0.0005 then, 0.001 now)" in capsys.readouterr().err
    # outputs of the run: table with the command, plot, CSV and TensorBoard logs
    table = (tmp_path / "res" / "sliced" / "results.md").read_text()
    assert "Written by `equirelax nbody" in table and "| egnn | relaxed |" in table
    assert (tmp_path / "res" / "sliced" / "val_mse_egnn.png").stat().st_size > 0
    run_dir = tmp_path / "runs" / "sliced" / name
    assert list(run_dir.glob("csv/version_*/metrics.csv")) and list(run_dir.glob("tb/*/events*"))


def test_both_models_are_e3_equivariant_after_relaxed_training_and_hardening(tmp_path, cache):
    """Relaxed training (constant θ = 0.1, so the free terms act throughout) of EGNN and SEGNN
    through the CLI; the hardened best models are E(3)-equivariant in float32."""
    args = tiny(tmp_path, cache, "--model", "egnn", "segnn", "--layers", "1", "--variants",
                "relaxed", "--relax", "constant", "--epochs", "2", "--tag", "hard")
    assert cli_main(args) == 0
    test = NBodyDataset("test", 20, cache_dir=cache, progress=False).tensors()
    for model_name in ("egnn", "segnn"):
        name = f"{model_name}-L1-n40-relaxed-s0"
        result = run_json(tmp_path, "hard", name)
        assert result["hardened_e3_error_float32"]["displacement"] <= 1e-4
        assert result["parameters_while_training"] > result["parameters"]
        # independently: load the best checkpoint, harden, and check E(3) equivariance
        model = build_model(model_name, 1, egnn_hidden=16, segnn_hidden="4x0e+4x1o")
        relaxed = relax(model, schedule="constant")
        best = tmp_path / "runs" / "hard" / name / "checkpoints" / "best.ckpt"
        state = torch.load(best, weights_only=False)["state_dict"]
        relaxed.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
        free = [layer.free.weight for layer in relaxed.relaxed_layers().values()]
        assert all(w.abs().max() > 0 for w in free)
        hard = harden(relaxed).eval()
        assert type(hard) is type(model)
        rot = random_orthogonal(11, dtype=torch.float32)
        for g in (rot, -rot):  # a rotation and a reflection, a translation per graph
            shift = torch.randn(20, 1, 3, generator=torch.Generator().manual_seed(3))
            with torch.no_grad():
                base = hard(test.loc, test.vel, test.charges)
                moved = hard(test.loc @ g.T + shift, test.vel @ g.T, test.charges)
            err = (moved - (base @ g.T + shift)).norm() / (base @ g.T + shift).norm()
            assert err <= 1e-4


def test_cli_layer_sweep_writes_table_and_plot(tmp_path, cache, capsys):
    args = tiny(tmp_path, cache, "--sweep", "layers", "--sweep-values", "1", "2", "--epochs", "1")
    assert cli_main(args) == 0
    out = tmp_path / "res" / "quick"
    rows = json.loads((out / "sweep_layers.json").read_text())["rows"]
    assert [(r["value"], r["arm"]) for r in rows] == [(1, "exact"), (1, "relaxed"),
                                                       (2, "exact"), (2, "relaxed")]
    assert all(r["test_mse_mean"] > 0 for r in rows)
    assert "| egnn | 2 | relaxed |" in (out / "sweep_layers.md").read_text()
    assert (out / "sweep_layers.png").stat().st_size > 0
    assert len(list((out / "runs").glob("*.json"))) == 4
    # tables and plots can be redrawn from the per-run files without training
    (out / "sweep_layers.png").unlink()
    assert cli_main([*args, "--report-only"]) == 0
    assert (out / "sweep_layers.png").exists()
    redrawn = json.loads((out / "sweep_layers.json").read_text())
    assert redrawn["rows"] == rows and "--report-only" in redrawn["redrawn_by"]
    # a study still under way: the table holds what has finished and names what has not
    assert cli_main([*args, "--report-only", "--sweep-values", "1", "3"]) == 0
    assert "no results yet for 2 run(s)" in capsys.readouterr().err
    table = (out / "sweep_layers.md").read_text()
    assert "Not in the table yet (2 of the study's 4 runs" in table
    assert "egnn-L3-n40-exact-s0, egnn-L3-n40-relaxed-s0" in table
    assert cli_main([*args, "--report-only", "--sweep-values", "5", "6"]) == 2
    assert "--report-only found no results for 4 run(s)" in capsys.readouterr().err


def test_ddp_on_two_cpu_processes_through_the_cli(tmp_path, cache):
    """``--devices 2``: Lightning re-launches the command for rank 1, both train under DDP
    (gloo) and rank 0 alone writes the results."""
    cmd = [sys.executable, "-m", "equirelax",
           *tiny(tmp_path, cache, "--variants", "relaxed", "--epochs", "1", "--devices", "2",
                 "--accelerator", "cpu", "--tag", "ddp")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log and "distributed_backend=gloo" in log
    result = run_json(tmp_path, "ddp", "egnn-L2-n40-relaxed-s0")
    assert result["completed"] and result["test_mse"] > 0
    assert result["hardened_e3_error_float32"]["displacement"] <= 1e-4
    assert log.count("[nbody] egnn-L2-n40-relaxed-s0") == 1  # only rank 0 reports


def test_jobs_train_runs_in_parallel_processes_with_the_same_results(tmp_path, cache):
    """``--jobs 2`` trains the runs in two processes at once (each run as it would be trained
    alone), then writes the same table as one process."""
    args = tiny(tmp_path, cache, "--epochs", "2", "--seeds", "0", "1")
    assert cli_main([*at(tmp_path, args, "serial")]) == 0
    assert cli_main([*at(tmp_path, args, "parallel"), "--jobs", "2"]) == 0
    serial = json.loads((tmp_path / "res" / "serial" / "results.json").read_text())
    parallel = json.loads((tmp_path / "res" / "parallel" / "results.json").read_text())
    assert parallel["invocation"]["jobs"] == 2 and parallel["invocation"]["runs"] == 4
    for a, b in zip(serial["rows"], parallel["rows"], strict=True):
        assert (a["arm"], a["seeds"]) == (b["arm"], b["seeds"])
        assert b["test_mse_mean"] == pytest.approx(a["test_mse_mean"], rel=1e-5)
    assert cli_main([*at(tmp_path, args, "x"), "--jobs", "2", "--devices", "2"]) == 2


def test_test_error_profile_is_recorded_and_redrawn(tmp_path, cache):
    """Each run records its trimmed test MSE (worst 1% of test samples left out) and median
    per-sample MSE; the tables redrawn from the per-run files keep them."""
    args = tiny(tmp_path, cache, "--epochs", "1", "--tag", "trim")
    assert cli_main(args) == 0
    name = "egnn-L2-n40-relaxed-s0"
    run = run_json(tmp_path, "trim", name)
    assert run["test_sample_mse_median"] > 0
    assert 0 < run["test_mse_trimmed"] <= run["test_mse"] * (1 + 1e-4)
    assert run["test_worst_sample_mse"] == sorted(run["test_worst_sample_mse"], reverse=True)
    assert cli_main([*args, "--report-only"]) == 0
    rows = json.loads((tmp_path / "res" / "trim" / "results.json").read_text())["rows"]
    assert all("test_mse_trimmed_mean" in r for r in rows)
    assert "paired_trimmed_geomean" in rows[1]


def test_paired_interval_and_verdict():
    from equirelax.experiments.kit.tables import paired_interval, verdict

    geo, low, high = paired_interval([0.5, 2.0])
    assert geo == pytest.approx(1.0) and low < 1 < high
    geo, low, high = paired_interval([0.8, 0.82, 0.84])
    assert high < 1 and verdict(low, high, 3) == "better"
    assert verdict(1.1, 1.3, 3) == "worse" and verdict(0.9, 1.1, 3) == "no difference shown"
    assert verdict(*paired_interval([0.7])[1:], 1) == "one seed"


def test_penalty_sketch_reaches_the_run_settings():
    """A relaxed run's folder records whether its penalties were sketched (resuming it with
    another sketch is refused)."""
    from equirelax.experiments.kit.guards import UsageError
    from equirelax.experiments.nbody import run_settings

    plain = resolve(parse())
    assert plain.penalty_sketch is None
    assert run_settings(plain, "egnn", "relaxed")["penalty_sketch"] is None
    sketched = resolve(parse("--penalty-sketch", "16"))
    assert sketched.penalty_sketch == 16
    assert run_settings(sketched, "egnn", "relaxed")["penalty_sketch"] == 16
    assert "penalty_sketch" not in run_settings(sketched, "egnn", "exact")
    with pytest.raises(UsageError, match="--penalty-rows 8 and --penalty-sketch 16 cannot be "
                                         "used together"):
        resolve(parse("--penalty-rows", "8", "--penalty-sketch", "16"))
    with pytest.raises(SystemExit):  # argparse refuses it, naming the value
        parse("--penalty-sketch", "0")


def test_arms_set_the_schedule_and_penalty_weights():
    from equirelax.experiments.nbody import arm_relaxation

    cfg = resolve(parse("--lie-weight", "0.02", "--norm-weight", "0.04"))
    assert arm_relaxation(cfg, "exact") is None
    assert arm_relaxation(cfg, "relaxed") == {"schedule": "triangular", "lie_weight": 0.02,
                                              "norm_weight": 0.04}
    assert arm_relaxation(cfg, "no-schedule")["schedule"] == "constant"
    assert arm_relaxation(cfg, "no-lie")["lie_weight"] == 0.0
    weak = arm_relaxation(cfg, "weak-penalty")
    assert weak["lie_weight"] == pytest.approx(0.002)
    assert weak["norm_weight"] == pytest.approx(0.004)
    assert arm_relaxation(cfg, "no-penalty") == {"schedule": "triangular", "lie_weight": 0.0,
                                                 "norm_weight": 0.0}
