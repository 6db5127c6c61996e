"""``equirelax graphs``: a tiny end-to-end run, resuming it, refused options, the summary."""

from __future__ import annotations

import json

import pytest
import torch

from equirelax.cli import main
from equirelax.experiments import graphs
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


TINY = [
    "--nodes", "8", "--degree-range", "1", "4",
    "--train-size", "24", "--val-size", "8", "--test-size", "8",
    "--channels", "2", "--invariant-channels", "3", "--head-hidden", "4",
    "--epochs", "2", "--batch-size", "8", "--free-rank", "2", "--seeds", "0", "1",
    "--threads", "1", "--no-progress",
]  # fmt: skip


def tiny(tmp_path, *extra: str) -> list[str]:
    return ["graphs", "--quick", *TINY, "--out", str(tmp_path / "out"),
            "--runs-dir", str(tmp_path / "runs"), *extra]  # fmt: skip


def test_tiny_run_writes_the_report_and_resumes(tmp_path, capsys):
    assert main(tiny(tmp_path)) == 0
    out = tmp_path / "out"
    payload = json.loads((out / "results.json").read_text())
    assert payload["smoke_test"] == SMOKE_TEST_NOTE
    assert payload["command"].startswith("equirelax graphs --quick")
    assert "--nodes 8" in payload["command"] and "--free-rank 2" in payload["command"]
    records = payload["records"]
    assert sorted((r["variant"], r["seed"]) for r in records) == [
        ("exact", 0), ("exact", 1), ("relaxed", 0), ("relaxed", 1)]  # fmt: skip
    for r in records:
        assert r["invariance_error_float64"] < 1e-10 and r["invariance_error_float32"] < 1e-4
        assert len(r["curves"]["val_loss"]) == 2 and not r["resumed"]
        # the deployed model is the exact architecture in both arms
        assert r["parameters"] == records[0]["parameters"]
    relaxed = [r for r in records if r["variant"] == "relaxed"]
    assert all(r["trained_parameters"] > r["parameters"] for r in relaxed)
    paired = payload["summary"]["paired"]["test_rel_mse"]
    assert len(paired["ratios"]) == 2 and paired["seeds"] == [0, 1]
    report = (out / "results.md").read_text()
    assert payload["command"] in report and "95% t-interval" in report
    assert (out / "curves.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "relaxed / exact test MSE" in printed

    # rerunning the same command resumes every finished run instead of training it again
    assert main(tiny(tmp_path)) == 0
    again = json.loads((out / "results.json").read_text())["records"]
    assert all(r["resumed"] for r in again)
    for before, after in zip(records, again):
        assert after["test_rel_mse"] == pytest.approx(before["test_rel_mse"], rel=1e-6)

    # other settings on the same run folder are refused; --fresh starts afresh
    assert main(tiny(tmp_path, "--lr", "0.01")) == 2
    assert "holds runs trained with other settings" in capsys.readouterr().err
    assert main(tiny(tmp_path, "--lr", "0.01", "--fresh", "--seeds", "0",
                     "--variants", "exact")) == 0  # fmt: skip


def test_paired_arms_start_from_the_same_weights_and_see_the_same_batches():
    cfg = graphs.GraphStudyConfig(nodes=8, train_size=24, val_size=8, test_size=8,
                                  channels=(2,), invariant_channels=3, head_hidden=(4,),
                                  batch_size=8, degree_range=(1.0, 4.0))  # fmt: skip
    torch.manual_seed(3)
    first = graphs.build_model(cfg).state_dict()
    torch.manual_seed(3)
    second = graphs.build_model(cfg).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    a, b = graphs.make_splits(cfg), graphs.make_splits(cfg)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert abs(float(a.train.tensors[1].mean())) < 1e-5  # standardised on the training set


@pytest.mark.parametrize(
    "options, message",
    [
        (["--epochs", "0"], "argument --epochs: must be an integer > 0"),
        (["--seeds", "-1"], "argument --seeds: must be an integer >= 0"),
        (["--target", "cliques"], "argument --target: invalid choice"),
        (["--relax", "sawtooth"], "argument --relax: invalid choice"),
        (["--degree-range", "5", "2"], "degree_range must satisfy 0 < low <= high"),
        (["--nodes", "6", "--degree-range", "1", "8"], "nodes - 1 = 5"),
        (["--batch-size", "64"], "batch_size (64) must be <= train_size (24)"),
        (["--nodes", "3"], "nodes must be >= 4"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(tmp_path, capsys, options, message):
    assert main(tiny(tmp_path, *options)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before anything was trained


def test_summary_ratios_interval_and_reading():
    records = [
        {"variant": arm, "seed": seed, **dict.fromkeys(
            ("test_mae", "invariance_error_float64", "invariance_error_float32",
             "parameters", "trained_parameters", "fit_seconds"), 1.0),
         "test_rel_mse": value, "best_val_loss": value}
        for arm, values in (("exact", (1.0, 2.0, 4.0)), ("relaxed", (0.5, 1.1, 2.0)))
        for seed, value in enumerate(values)
    ]  # fmt: skip
    paired = graphs.summarise(records)["paired"]["test_rel_mse"]
    assert paired["ratios"] == pytest.approx([0.5, 0.55, 0.5])
    low, high = paired["ci95"]
    assert low < paired["geometric_mean"] < high < 1 and paired["verdict"] == "better"
    assert paired["relaxed_lower"] == 3
