"""The rotated-digits study: its pieces and a tiny end-to-end run."""

from __future__ import annotations

import argparse
import json
import shlex

import numpy as np
import pytest
import torch

from equirelax.cli import build_parser
from equirelax.data.digits import upright_digits
from equirelax.experiments import images as im
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE
from equirelax.models import CNN, GCNN
from tests.helpers.fake_fashion_mnist import write_fake_fashion_mnist
from tests.helpers.three_way import (
    assert_exact_relaxed_baseline,
    assert_same_batches,
    record_training,
)

#: torch on one thread, and seed 0 before each test (fixtures of tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread", "seed_zero")


def test_rotate_batch_kinds() -> None:
    x = torch.rand(6, 1, 12, 12)
    assert im.rotate_batch(x, "none") is x
    turned = im.rotate_batch(x, "c4")
    for a, b in zip(turned, x):  # each image is one exact quarter-turn power of its input
        assert any(torch.equal(a, torch.rot90(b, k, dims=(-2, -1))) for k in range(4))
    # A disc is (nearly) unchanged by any rotation about the centre; a bar is not.
    yy, xx = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    r2 = (yy - 5.5) ** 2 + (xx - 5.5) ** 2
    disc = (r2 < 16).float().expand(4, 1, 12, 12)
    moved = im.rotate_batch(disc, "continuous")
    assert (moved - disc).abs().mean() < 0.05
    bar = torch.zeros(64, 1, 12, 12)
    bar[..., 5:7, 1:11] = 1.0
    assert (im.rotate_batch(bar, "continuous") - bar).abs().mean() > 0.05
    with pytest.raises(ValueError, match="rotation kind"):
        im.rotate_batch(x, "c8")


def test_split_by_source_keeps_copies_of_a_digit_together() -> None:
    source = torch.as_tensor(np.tile(np.arange(100), 2))  # two rotated copies per digit
    train, val = im.split_by_source(source, val_fraction=0.2, train_fraction=0.5, seed=0)
    src = source.numpy()
    assert not set(src[train]) & set(src[val])
    assert len(set(src[val])) == 20 and len(set(src[train])) == 40
    assert len(train) == 80 and len(val) == 40
    again = im.split_by_source(source, 0.2, 0.5, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)


def test_rotated_test_sets() -> None:
    source = torch.arange(0, 40, 4)
    sets = im.rotated_test_sets(source)
    images, labels = upright_digits()
    upright = sets["none"].tensors[0][:, 0].numpy()
    assert np.allclose(upright, images[source.numpy()], atol=1e-6)
    assert np.array_equal(sets["c4"].tensors[1].numpy(), labels[source.numpy()])
    for img, up in zip(sets["c4"].tensors[0][:, 0].numpy(), upright):
        assert any(np.allclose(img, np.rot90(up, k), atol=1e-6) for k in range(4))
    assert set(sets) == {"none", "c4", "continuous"}


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_invariance_error_tells_gcnn_from_cnn(group: str) -> None:
    x = torch.rand(3, 1, 8, 8)
    gcnn = GCNN(group, 1, 10, channels=(2, 3), pool_after=(0,), image_size=8).eval()
    cnn = CNN(1, 10, channels=(4, 4), pool_after=(0,)).eval()
    assert im.invariance_error(gcnn, x, group) < 1e-12
    assert im.invariance_error(cnn, x, group) > 1e-3


def _parse(argv: list[str]) -> argparse.Namespace:
    """The namespace of ``equirelax images ARGV``, with the words the command line keeps."""
    args = build_parser("images").parse_args(["images", *argv])
    args.argv = ["images", *argv]
    return args


def test_config_and_the_reproducing_command() -> None:
    args = _parse(["--quick", "--group", "D4", "--epochs", "3", "--channels", "2", "4",
                   "--augment", "c4"])
    cfg = im.config_from_args(args)
    assert cfg.group == "D4" and cfg.channels == (2, 4) and cfg.augment == "c4"
    words = shlex.split(record_command(args))
    assert im.config_from_args(_parse(words[2:])) == cfg
    assert im.config_from_args(_parse(["--model", "cnn"])).variants == ("baseline",)
    one = im.config_from_args(_parse(["--model", "gcnn", "--relax", "cosine"]))
    assert one.variants == ("relaxed",) and one.schedule == "cosine"
    model = im.build_model("relaxed", cfg)
    assert isinstance(model, GCNN) and model.image_size == 28 and model.group.name == "D4"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"group": "C8"}, "'C4' or 'D4'"),
        ({"variants": ()}, "variants must be some of"),
        ({"augment": "tilt"}, "augment must be one of"),
        ({"train_fraction": 0.0}, r"train_fraction must lie in \(0, 1\]"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_settings_fail_early(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        im.ImageStudyConfig(**overrides)


def test_tiny_comparison_end_to_end(tmp_path, monkeypatch) -> None:
    """The three arms train and are reported; all of them see the same batches, rotated by
    the same angles (drawn from seed and step, not from the global generator that relaxing
    a model advances)."""
    argv = ["--quick", "--group", "D4", "--seeds", "0", "--epochs", "1",
            "--train-fraction", "0.03", "--channels", "2", "3", "--cnn-channels", "4", "4",
            "--batch-size", "16", "--out", str(tmp_path / "out"),
            "--runs-dir", str(tmp_path / "runs"), "--threads", "1", "--no-progress"]
    batches, _ = record_training(monkeypatch)
    assert im.main(_parse(argv)) == 0
    assert len(batches["exact"]) > 1
    assert_same_batches(batches["relaxed"], batches["exact"])
    assert_same_batches(batches["baseline"], batches["exact"])
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    records = {r["variant"]: r for r in result["records"]}
    assert_exact_relaxed_baseline(records)
    table = (tmp_path / "out" / "results.md").read_text()
    assert "D4 invariance error" in table and "equirelax images --quick --group D4" in table
    # a --quick run says, in its report and its JSON, that it is a smoke test
    assert f"**{SMOKE_TEST_NOTE}**" in table and result["smoke_test"] == SMOKE_TEST_NOTE
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0


@pytest.mark.slow
def test_quick_preset_runs(tmp_path) -> None:
    argv = ["--quick", "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs"),
            "--no-progress"]
    assert im.main(_parse(argv)) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(result["records"]) == 3 * len(im.PRESETS["quick"]["seeds"])


def test_config_defaults_are_the_standard_preset() -> None:
    assert im.ImageStudyConfig() == im.ImageStudyConfig(**im.PRESETS["standard"])


def test_fashion_preset_and_results_folder() -> None:
    """``--dataset fashion-mnist`` alone runs the fashion preset; the digits keep theirs; a
    data set other than the preset's own gets its own results folder."""
    args = _parse(["--dataset", "fashion-mnist"])
    assert im.preset_name(args) == "fashion"
    cfg = im.config_from_args(args)
    assert cfg == im.ImageStudyConfig(**im.PRESETS["fashion"])
    assert cfg.dataset == "fashion-mnist" and cfg.train_size == 12000
    assert im.results_name("fashion", cfg) == "fashion"
    assert im.preset_name(_parse([])) == "standard"
    assert im.config_from_args(_parse([])).dataset == "digits"
    quick_args = _parse(["--quick", "--dataset", "fashion-mnist", "--group", "D4"])
    quick = im.config_from_args(quick_args)
    assert im.results_name("quick", quick) == "quick_d4_fashion-mnist"
    assert im.results_name("standard", im.ImageStudyConfig()) == "standard"
    words = shlex.split(record_command(quick_args))
    assert im.config_from_args(_parse(words[2:])) == quick


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"dataset": "mnist"}, "dataset must be one of"),
        ({"train_size": 100}, "train_size counts images of --dataset fashion-mnist"),
        ({"dataset": "fashion-mnist", "val_size": 0}, "val_size must be a positive integer"),
        ({"data_dir": "/tmp/x"}, "data_dir is a folder of IDX files"),
    ],
)
def test_bad_data_settings_fail_early(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        im.ImageStudyConfig(**overrides)


def test_missing_fashion_mnist_fails_at_once(tmp_path, capsys) -> None:
    """Before any folder is made or anything trains: status 1, the package and how to get it."""
    from equirelax.cli import main as cli_main

    out, runs = tmp_path / "out", tmp_path / "runs"
    status = cli_main(["images", "--dataset", "fashion-mnist", "--data-dir",
                       str(tmp_path / "nowhere"), "--out", str(out), "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert status == 1
    assert "dataset-fashion-mnist" in err and "apt-get install" in err
    assert not out.exists() and not runs.exists()


def test_fashion_sets_split_and_test_rotations(tmp_path) -> None:
    root = write_fake_fashion_mnist(tmp_path, n_train=50, n_test=12)
    cfg = im.ImageStudyConfig(dataset="fashion-mnist", data_dir=str(root), train_size=30,
                              val_size=8, test_size=10, train_rotation="none")
    sets = im.fashion_sets(cfg)
    assert len(sets.train) == 30 and len(sets.val) == 8 and sets.image_size == 28
    assert set(sets.tests) == {"none", "c4", "continuous"}
    upright = sets.tests["none"].tensors[0]
    assert upright.shape == (10, 1, 28, 28)
    for img, up in zip(sets.tests["c4"].tensors[0][:, 0], upright[:, 0]):
        assert any(torch.equal(img, torch.rot90(up, k)) for k in range(4))
    assert not torch.allclose(sets.tests["continuous"].tensors[0], upright, atol=1e-3)
    assert "30 training and 8 validation images" in sets.description
    # fractions apply where no count is given: val 25% of 50, train half of the other 38
    halves = im.fashion_sets(im.ImageStudyConfig(dataset="fashion-mnist", data_dir=str(root),
                                                 val_fraction=0.25, train_fraction=0.5))
    assert len(halves.val) == 12 and len(halves.train) == 19


def test_tiny_fashion_comparison_end_to_end(tmp_path, monkeypatch) -> None:
    """The three arms train on Fashion-MNIST files as published (tiny ones written here) and
    see the same rotated batches; the report names the data set and reproduces the run."""
    root = write_fake_fashion_mnist(tmp_path / "fashion", n_train=60, n_test=20)
    argv = ["--dataset", "fashion-mnist", "--data-dir", str(root), "--seeds", "0",
            "--epochs", "1", "--train-size", "40", "--val-size", "10", "--channels", "2", "3",
            "--cnn-channels", "4", "4", "--batch-size", "16", "--out", str(tmp_path / "out"),
            "--runs-dir", str(tmp_path / "runs"), "--threads", "1", "--no-progress"]
    batches, _ = record_training(monkeypatch)
    assert im.main(_parse(argv)) == 0
    assert len(batches["exact"]) == 2
    assert_same_batches(batches["relaxed"], batches["exact"])
    assert_same_batches(batches["baseline"], batches["exact"])
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert_exact_relaxed_baseline({r["variant"]: r for r in result["records"]})
    assert result["settings"]["dataset"] == "fashion-mnist"
    table = (tmp_path / "out" / "results.md").read_text()
    assert "Rotated Fashion-MNIST" in table and "40 training and 10 validation" in table
    assert "equirelax images --dataset fashion-mnist" in table and "smoke_test" not in result
    command = shlex.split(result["command"])
    assert im.config_from_args(_parse(command[2:])) == im.config_from_args(_parse(argv))
