"""The point-cloud study: its pieces, the verdict on the claim, and a tiny end-to-end run."""

from __future__ import annotations

import argparse
import json
import shlex

import pytest
import torch
from three_way import (
    assert_exact_relaxed_baseline,
    assert_same_batches,
    assert_same_dropout,
    record_training,
)

from equirelax.cli import build_parser
from equirelax.data.shapes import load_shapes
from equirelax.experiments import pointcloud as pc
from equirelax.experiments.guards import SMOKE_TEST_NOTE
from equirelax.nn.vn import PointNet, VNPointNet


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


TINY = {"channels": (4, 6, 8), "k": 4, "head_hidden": (8,), "dropout": 0.0}


def test_paper_relaxed_layers_leave_out_the_frame_output_map() -> None:
    model = VNPointNet(3, pooling="max", **TINY)
    names = pc.paper_relaxed_layers(model)
    assert "std_feature.vn_lin" not in names and "neighbour_pool.map_to_dir" not in names
    assert {"conv_pos.map_to_feat", "conv_pos.map_to_dir", "conv3",
            "std_feature.vn1.map_to_feat", "std_feature.vn2.map_to_dir"} <= set(names)
    assert len(names) == 11  # 13 VNLinear maps with max pooling, two left out


def test_augmenters_rotate_as_named() -> None:
    points = torch.randn(5, 7, 3)
    for kind in ("so3", "z"):
        moved = pc.augmenter(kind)(points)
        torch.testing.assert_close(moved.norm(dim=-1), points.norm(dim=-1))
        assert not torch.allclose(moved, points)
    torch.testing.assert_close(pc.augmenter("z")(points)[..., 2], points[..., 2])
    assert pc.augmenter("none")(points) is points
    with pytest.raises(ValueError, match="'so3', 'z' or 'none'"):
        pc.augmenter("x")


def test_rotated_test_sets_are_rotations_of_the_canonical_clouds(tmp_path) -> None:
    data = load_shapes(num_points=20, train_size=3, val_size=3, test_size=6, protocol="z/so3",
                       cache_dir=tmp_path, progress=False)
    sets = pc.rotated_test_sets(data)
    assert set(sets) == {"so3", "z", "none"}
    upright = sets["none"].tensors[0]
    # data.test.points = canonical @ R^T
    expected = torch.einsum("npj,nij->npi", upright, data.test.rotations)
    torch.testing.assert_close(expected, data.test.points, atol=1e-5, rtol=0)
    for kind in ("so3", "z"):
        pts = sets[kind].tensors[0]
        torch.testing.assert_close(pts.norm(dim=-1), upright.norm(dim=-1), atol=1e-5, rtol=0)
        assert torch.equal(sets[kind].tensors[1], data.test.labels)
    torch.testing.assert_close(sets["z"].tensors[0][..., 2], upright[..., 2], atol=1e-5, rtol=0)


def test_invariance_error_tells_vn_pointnet_from_pointnet() -> None:
    points = torch.randn(4, 12, 3)
    vn = VNPointNet(3, **TINY).eval()
    plain = PointNet(3, channels=(8, 16), head_hidden=(8,), dropout=0.0).eval()
    assert pc.invariance_error(vn, points, 3, num_rotations=4) < 1e-12
    assert pc.invariance_error(plain, points, 3, num_rotations=4) > 1e-3
    assert next(vn.parameters()).dtype == torch.float32  # measured on a float64 copy


def _records(exact: list[float], relaxed: list[float]) -> list[dict]:
    return [{"variant": v, "seed": s, "acc": a}
            for v, accs in (("exact", exact), ("relaxed", relaxed))
            for s, a in enumerate(accs)]


def test_summary_and_claim_verdicts() -> None:
    summary = pc.summarise(_records([0.5, 0.6, 0.7], [0.6, 0.71, 0.79]), ["acc"],
                           claim_metric="acc")
    assert summary["variants"]["exact"]["acc"]["mean"] == pytest.approx(0.6)
    assert summary["variants"]["exact"]["acc"]["std"] == pytest.approx(0.1)
    assert summary["variants"]["relaxed"]["acc"]["max"] == pytest.approx(0.79)
    claim = summary["claim"]
    assert claim["differences"] == pytest.approx([0.1, 0.11, 0.09])
    assert claim["wins"] == 3 and claim["losses"] == 0
    assert "improved" in pc.claim_sentence(claim)
    worse = pc.summarise(_records([0.6, 0.7, 0.8], [0.5, 0.61, 0.69]), ["acc"],
                         claim_metric="acc")["claim"]
    assert "worse" in pc.claim_sentence(worse) and worse["losses"] == 3
    mixed = pc.summarise(_records([0.6, 0.7, 0.8], [0.65, 0.66, 0.8]), ["acc"],
                         claim_metric="acc")["claim"]
    assert "does not show" in pc.claim_sentence(mixed)
    single = pc.summarise(_records([0.6], [0.7]), ["acc"], claim_metric="acc")["claim"]
    assert "Too few seeds" in pc.claim_sentence(single)


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser("pointcloud").parse_args(["pointcloud", *argv])


def test_config_from_args_and_the_reproducing_command() -> None:
    args = _parse(["--quick", "--epochs", "3", "--seeds", "4", "5", "--channels", "4", "6", "8",
                   "--noise", "0.05"])
    cfg = pc.config_from_args(args)
    assert cfg.epochs == 3 and cfg.seeds == (4, 5) and cfg.channels == (4, 6, 8)
    assert cfg.noise_std == 0.05 and cfg.train_size == pc.PRESETS["quick"]["train_size"]
    command = pc.command_line("pointcloud", "quick", cfg, pc.PRESETS, pc.OPTIONS)
    words = shlex.split(command)
    assert words[:4] == ["equirelax", "pointcloud", "--preset", "quick"]
    assert pc.config_from_args(_parse(words[2:])) == cfg  # the command reproduces the config
    one = pc.config_from_args(_parse(["--model", "vn-pointnet", "--relax", "linear"]))
    assert one.variants == ("relaxed",) and one.schedule == "linear"
    assert pc.config_from_args(_parse(["--model", "pointnet"])).variants == ("baseline",)
    assert pc.config_from_args(_parse(["--model", "vn-pointnet", "--relax", "none"])).variants \
        == ("exact",)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"variants": ("exact", "fancy")}, "variants must be some of"),
        ({"seeds": ()}, "at least one seed"),
        ({"k": 40, "num_points": 30}, "num_points >= k"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"protocol": "so3/x"}, "x"),
    ],
)
def test_bad_settings_fail_early(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pc.PointCloudStudyConfig(**overrides)


def test_tiny_comparison_end_to_end(tmp_path, monkeypatch) -> None:
    """Every variant trains through the runner; the report, records and curves are written;
    the exact and the hardened relaxed models are invariant, the PointNet is not."""
    monkeypatch.setenv("EQUIRELAX_CACHE", str(tmp_path / "cache"))
    argv = ["--quick", "--seeds", "0", "--epochs", "1", "--num-points", "16", "--k", "4",
            "--train-size", "30", "--val-size", "15", "--test-size", "15",
            "--channels", "4", "6", "8", "--batch-size", "15", "--out", str(tmp_path / "out"),
            "--runs-dir", str(tmp_path / "runs"), "--threads", "1", "--no-progress"]
    assert pc.main(_parse(argv)) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    records = {r["variant"]: r for r in result["records"]}
    assert_exact_relaxed_baseline(records)
    for r in records.values():
        assert 0 <= r["test_acc_so3"] <= 1 and r["curves"]["val_acc"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| relaxed |" in table and "equirelax pointcloud --preset quick" in table
    assert "paper's claim" in table
    # a --quick run says, in its report and its JSON, that it is a smoke test
    assert f"**{SMOKE_TEST_NOTE}**" in table and result["smoke_test"] == SMOKE_TEST_NOTE
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0
    assert (tmp_path / "runs" / "relaxed" / "seed0" / "checkpoints" / "last.ckpt").exists()
    # Running the same command again resumes every finished run from its checkpoint: same
    # results, and the reported training time still counts the first training.
    assert pc.main(_parse(argv)) == 0
    again = {r["variant"]: r for r in
             json.loads((tmp_path / "out" / "results.json").read_text())["records"]}
    for name, r in again.items():
        assert r["resumed"] and r["test_acc_so3"] == records[name]["test_acc_so3"]
        assert r["fit_seconds"] >= records[name]["fit_seconds"]


@pytest.mark.slow
def test_quick_preset_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EQUIRELAX_CACHE", str(tmp_path / "cache"))
    argv = ["--quick", "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs"),
            "--no-progress"]
    assert pc.main(_parse(argv)) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(result["records"]) == 3 * len(pc.PRESETS["quick"]["seeds"])
    assert "claim" in result["summary"]


def test_config_defaults_are_the_standard_preset() -> None:
    assert pc.PointCloudStudyConfig() == pc.PointCloudStudyConfig(**pc.PRESETS["standard"])


def test_arms_see_the_same_batches_and_a_resumed_comparison_equals_an_uninterrupted_one(
        tmp_path, monkeypatch) -> None:
    """Batch order, rotations and dropout masks are functions of (seed, epoch, step): the
    exact and relaxed arms of a seed see identical batches and masks (relaxing a model draws
    random numbers, which used to shift the global generator), and a comparison interrupted in
    the middle of an epoch and rerun ends exactly like an uninterrupted one."""
    import os
    import signal

    import lightning.pytorch as pl

    from equirelax.experiments import classification
    from equirelax.experiments.guards import RunInterruptedError

    monkeypatch.setenv("EQUIRELAX_CACHE", str(tmp_path / "cache"))

    def argv(name: str) -> list[str]:
        return ["--quick", "--seeds", "3", "--epochs", "2", "--num-points", "16", "--k", "4",
                "--train-size", "30", "--val-size", "15", "--test-size", "15",
                "--channels", "4", "6", "8", "--batch-size", "15", "--variants", "exact",
                "relaxed", "--out", str(tmp_path / name / "out"),
                "--runs-dir", str(tmp_path / name / "runs"), "--threads", "1", "--no-progress"]

    batches, masks = record_training(monkeypatch)
    assert pc.main(_parse(argv("whole"))) == 0
    assert len(batches["exact"]) == 4  # 2 epochs of 2 batches
    assert_same_batches(batches["relaxed"], batches["exact"])
    assert len(masks["exact"]) == len(masks["relaxed"]) == 4  # one dropout layer
    assert_same_dropout(masks["relaxed"], masks["exact"])
    assert not torch.equal(masks["exact"][0][0], masks["exact"][1][0])  # fresh masks each step
    first, again = batches["exact"][0][0], batches["exact"][2][0]  # epoch 0 and 1, batch 0
    assert first.shape == again.shape and not torch.equal(first, again)
    whole = {name: list(b) for name, b in batches.items()}

    class SignalAtStep3(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    fit = classification.fit
    calls = []

    def interrupted_once(*args, callbacks=(), **kwargs):
        calls.append(1)
        extra = [SignalAtStep3()] if len(calls) == 1 else []
        return fit(*args, callbacks=[*callbacks, *extra], **kwargs)

    monkeypatch.setattr(classification, "fit", interrupted_once)
    batches.clear()
    with pytest.raises(RunInterruptedError, match="interrupted at epoch 1"):
        pc.main(_parse(argv("cut")))
    assert_same_batches(batches["exact"], whole["exact"][:3])
    batches.clear()
    assert pc.main(_parse(argv("cut"))) == 0
    assert_same_batches(batches["exact"], whole["exact"][3:])  # the rest of epoch 1 only
    assert_same_batches(batches["relaxed"], whole["relaxed"])
    for variant in ("exact", "relaxed"):
        ckpts = [torch.load(tmp_path / name / "runs" / variant / "seed3" / "checkpoints" /
                            "last.ckpt", weights_only=False)["state_dict"]
                 for name in ("whole", "cut")]
        for key, value in ckpts[0].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(ckpts[1][key], value), (variant, key)
    records = [{r["variant"]: r for r in json.loads(
        (tmp_path / name / "out" / "results.json").read_text())["records"]}
        for name in ("whole", "cut")]
    for variant in ("exact", "relaxed"):
        for key in ("test_acc_so3", "test_acc_z", "test_acc_none"):
            assert records[1][variant][key] == records[0][variant][key]
        assert records[1][variant]["curves"]["val_loss"] == \
            records[0][variant]["curves"]["val_loss"]
