"""The point-cloud study: its pieces, the verdict on the claim, and a tiny end-to-end run."""

from __future__ import annotations

import argparse
import json
import shlex

import pytest
import torch

from equirelax.cli import build_parser
from equirelax.data.shapes import load_shapes
from equirelax.experiments import pointcloud as pc
from equirelax.experiments.classification import claim_sentence
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE
from equirelax.models import PointNet, VNPointNet
from tests.helpers.three_way import (
    assert_exact_relaxed_baseline,
    assert_same_batches,
    assert_same_dropout,
    record_training,
)

#: torch on one thread, and seed 0 before each test (fixtures of tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread", "seed_zero")


TINY = {"channels": (4, 6, 8), "k": 4, "head_hidden": (8,), "dropout": 0.0}
#: the VN-PointNet of the quick/standard/large presets
LIGHT = {"feature_transform": False, "negative_slope": 0.2, "point_pooling": "mean"}


def test_paper_relaxed_layers_leave_out_the_frame_output_map() -> None:
    model = VNPointNet(3, pooling="max", **TINY, **LIGHT)
    names = pc.paper_relaxed_layers(model)
    assert "std_feature.vn_lin" not in names and "neighbour_pool.map_to_dir" not in names
    assert {"conv_pos.map_to_feat", "conv_pos.map_to_dir", "conv3",
            "std_feature.vn1.map_to_feat", "std_feature.vn2.map_to_dir"} <= set(names)
    assert len(names) == 11  # 13 VNLinear maps with max pooling, two left out


def test_paper_relaxed_layers_of_the_paper_model() -> None:
    """As in the paper's code: every VN map of the feature transform is relaxed too; the
    frame's output map and the direction maps of max poolings are not."""
    model = VNPointNet(3, **TINY)
    names = pc.paper_relaxed_layers(model)
    assert len(names) == 22  # 23 VNLinear maps, the frame's output map left out
    assert {"feature_transform.conv1.map_to_dir", "feature_transform.fc3"} <= set(names)
    pooled = VNPointNet(3, pooling="max", **TINY)
    names = pc.paper_relaxed_layers(pooled)
    assert "feature_transform.pool.map_to_dir" not in names
    assert "neighbour_pool.map_to_dir" not in names and len(names) == 22


@pytest.mark.parametrize("preset", ["quick", "standard", "large"])
def test_earlier_presets_keep_their_model(preset: str) -> None:
    """The committed results of these presets were made with the light VN-PointNet; the
    class's defaults moved to the paper's settings, the presets did not."""
    cfg = pc.PointCloudStudyConfig(**pc.PRESETS[preset])
    model = pc.build_model("exact", cfg, 15)
    assert model.feature_transform is None and model.point_pooling == "mean"
    assert model.conv1.negative_slope == 0.2 and model.pooling == "mean"


def test_paper_preset_builds_the_paper_model() -> None:
    cfg = pc.PointCloudStudyConfig(**pc.PRESETS["paper"])
    assert (cfg.num_points, cfg.batch_size, cfg.lr, cfg.epochs) == (300, 24, 1e-3, 200)
    assert cfg.weight_decay == 1e-4 and cfg.lie_weight == cfg.norm_weight == 0.01
    model = pc.build_model("exact", cfg, 40)
    assert model.feature_transform is not None and model.point_pooling == "max"
    assert model.conv1.negative_slope == 0.0 and model.k == 20


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
                           difference="acc")
    assert summary["variants"]["exact"]["acc"]["mean"] == pytest.approx(0.6)
    assert summary["variants"]["exact"]["acc"]["std"] == pytest.approx(0.1)
    assert summary["variants"]["relaxed"]["acc"]["max"] == pytest.approx(0.79)
    claim = summary["claim"]
    assert claim["differences"] == pytest.approx([0.1, 0.11, 0.09])
    assert claim["wins"] == 3 and claim["losses"] == 0
    assert "improved" in claim_sentence(claim)
    worse = pc.summarise(_records([0.6, 0.7, 0.8], [0.5, 0.61, 0.69]), ["acc"],
                         difference="acc")["claim"]
    assert "worse" in claim_sentence(worse) and worse["losses"] == 3
    mixed = pc.summarise(_records([0.6, 0.7, 0.8], [0.65, 0.66, 0.8]), ["acc"],
                         difference="acc")["claim"]
    assert "does not show" in claim_sentence(mixed)
    single = pc.summarise(_records([0.6], [0.7]), ["acc"], difference="acc")["claim"]
    assert "Too few seeds" in claim_sentence(single)


def _parse(argv: list[str]) -> argparse.Namespace:
    """The namespace of ``equirelax pointcloud ARGV``, with the words the command line keeps."""
    args = build_parser("pointcloud").parse_args(["pointcloud", *argv])
    args.argv = ["pointcloud", *argv]
    return args


def test_config_from_args_and_the_reproducing_command() -> None:
    args = _parse(["--quick", "--epochs", "3", "--seeds", "4", "5", "--channels", "4", "6", "8",
                   "--noise", "0.05"])
    cfg = pc.config_from_args(args)
    assert cfg.epochs == 3 and cfg.seeds == (4, 5) and cfg.channels == (4, 6, 8)
    assert cfg.noise_std == 0.05 and cfg.train_size == pc.PRESETS["quick"]["train_size"]
    words = shlex.split(record_command(args))
    assert words[:3] == ["equirelax", "pointcloud", "--quick"]
    assert pc.config_from_args(_parse(words[2:])) == cfg  # the command reproduces the config
    one = pc.config_from_args(_parse(["--model", "vn-pointnet", "--relax", "linear"]))
    assert one.variants == ("relaxed",) and one.schedule == "linear"
    assert pc.config_from_args(_parse(["--model", "pointnet"])).variants == ("baseline",)
    assert pc.config_from_args(_parse(["--model", "vn-pointnet", "--relax", "none"])).variants \
        == ("exact",)


def test_data_selects_the_paper_preset_and_its_results_folder(tmp_path) -> None:
    args = _parse(["--data", str(tmp_path), "--points", "300"])
    assert pc.preset_name(args) == "paper"
    cfg = pc.config_from_args(args)
    assert cfg.data == str(tmp_path) and cfg.num_points == 300 and cfg.feature_transform
    assert pc.results_name("paper", cfg) == "paper_modelnet40"
    assert pc.preset_name(_parse([])) == "standard"
    assert pc.results_name("standard", pc.PointCloudStudyConfig()) == "standard"
    # the VN settings are flags, and the reproducing command carries them both ways
    light_args = _parse(["--data", str(tmp_path), "--no-feature-transform",
                         "--negative-slope", "0.2", "--point-pooling", "mean", "--pooling", "max"])
    light = pc.config_from_args(light_args)
    assert not light.feature_transform and light.pooling == "max"
    words = shlex.split(record_command(light_args))
    assert "--no-feature-transform" in words and "--data" in words
    assert pc.config_from_args(_parse(words[2:])) == light
    on_args = _parse(["--quick", "--feature-transform"])
    on = pc.config_from_args(on_args)
    words = shlex.split(record_command(on_args))
    assert "--feature-transform" in words and pc.config_from_args(_parse(words[2:])) == on


def test_missing_modelnet40_fails_at_once(tmp_path, capsys) -> None:
    from equirelax.cli import main as cli_main

    out, runs = tmp_path / "out", tmp_path / "runs"
    status = cli_main(["pointcloud", "--data", str(tmp_path / "nowhere"), "--out", str(out),
                       "--runs-dir", str(runs)])
    assert status == 1
    assert "modelnet40_ply_hdf5_2048" in capsys.readouterr().err
    assert not out.exists() and not runs.exists()


def test_tiny_modelnet40_comparison_end_to_end(tmp_path) -> None:
    """``--data PATH --points N`` runs the three arms on ModelNet40's HDF5 layout (a tiny file
    written here) with the paper's VN-PointNet settings, SO(3) rotations in train and test."""
    pytest.importorskip("h5py")
    from tests.helpers.fake_modelnet40 import write_fake_modelnet40

    folder = write_fake_modelnet40(tmp_path / "data", {"train": [24, 16], "test": [12]},
                                   points=64)
    argv = ["--data", str(folder), "--points", "16", "--seeds", "0", "--epochs", "1",
            "--k", "4", "--channels", "4", "6", "8", "--batch-size", "16",
            "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs"),
            "--threads", "1", "--no-progress"]
    assert pc.main(_parse(argv)) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert_exact_relaxed_baseline({r["variant"]: r for r in result["records"]})
    settings = result["settings"]
    assert settings["data"] == str(folder) and settings["feature_transform"]
    assert settings["protocol"] == "so3/so3" and settings["num_points"] == 16
    table = (tmp_path / "out" / "results.md").read_text()
    assert table.startswith("# ModelNet40") and "32/8/12 train/val/test clouds" in table
    assert "feature transform on" in table and "smoke_test" not in result
    words = shlex.split(result["command"])
    assert words[:4] == ["equirelax", "pointcloud", "--data", str(folder)]
    assert pc.config_from_args(_parse(words[2:])) == pc.config_from_args(_parse(argv))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"pooling": "sum"}, "pooling must be one of"),
        ({"point_pooling": "sum"}, "point_pooling must be one of"),
        ({"negative_slope": 1.0}, r"negative_slope must lie in \[0, 1\)"),
        ({"val_fraction": 1.0}, "val_fraction must lie strictly between 0 and 1"),
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
    assert "| relaxed |" in table and "equirelax pointcloud --quick --seeds 0" in table
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
    from equirelax.experiments.kit.guards import RunInterruptedError

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
