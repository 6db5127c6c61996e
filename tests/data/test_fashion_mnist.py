"""Rotated Fashion-MNIST, on small IDX files written by the tests (nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from equirelax.data import fashion_mnist as fm
from equirelax.data.idx import write_idx
from tests.helpers.fake_fashion_mnist import write_fake_fashion_mnist


@pytest.mark.parametrize("compress", [True, False])
def test_reads_the_published_layout(tmp_path, compress: bool) -> None:
    root = write_fake_fashion_mnist(tmp_path, compress=compress)
    images, labels = fm.upright_fashion_mnist("train", root)
    assert images.shape == (60, 28, 28) and images.dtype == np.float64
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(labels, np.arange(60) % 10)
    assert fm.find_fashion_mnist(root)["test", "labels"].name.endswith(".gz") == compress


def test_missing_files_name_the_package_and_the_install_command(tmp_path) -> None:
    with pytest.raises(fm.FashionMNISTMissingError) as err:
        fm.find_fashion_mnist(tmp_path)
    message = str(err.value)
    assert "dataset-fashion-mnist" in message and "apt-get install" in message
    assert "train-images-idx3-ubyte" in message and str(tmp_path) in message
    # one missing file is named, the others are not
    write_fake_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(fm.FashionMNISTMissingError, match="missing t10k-labels-idx1-ubyte"):
        fm.load_rotated_fashion_mnist(root=tmp_path)


def test_environment_variable_points_to_the_data(tmp_path, monkeypatch) -> None:
    write_fake_fashion_mnist(tmp_path)
    monkeypatch.setenv("EQUIRELAX_FASHION_MNIST", str(tmp_path))
    assert fm.default_fashion_mnist_dir() == tmp_path
    assert fm.find_fashion_mnist()["train", "images"].parent == tmp_path


def test_mismatched_files_are_refused(tmp_path) -> None:
    root = write_fake_fashion_mnist(tmp_path)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(59, dtype=np.uint8))
    with pytest.raises(ValueError, match="must hold 60 labels"):
        fm.upright_fashion_mnist("train", root)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.full(60, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labels 0\.\.9, got 10\.\.10"):
        fm.upright_fashion_mnist("train", root)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        fm.upright_fashion_mnist("val", root)


def test_splits_are_disjoint_deterministic_and_nested(tmp_path) -> None:
    root = write_fake_fashion_mnist(tmp_path)
    data = fm.load_rotated_fashion_mnist(root=root, val_size=12, train_size=20, seed=3)
    train, val = set(data.train.source.tolist()), set(data.val.source.tolist())
    assert len(train) == 20 and len(val) == 12 and not train & val
    assert len(data.test) == 20 and data.num_classes == 10
    again = fm.load_rotated_fashion_mnist(root=root, val_size=12, train_size=20, seed=3)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(again, name).images, getattr(data, name).images)
        assert torch.equal(getattr(again, name).angles, getattr(data, name).angles)
    # a larger training split holds the smaller one; the validation split does not move
    larger = fm.load_rotated_fashion_mnist(root=root, val_size=12, train_size=40, seed=3)
    assert train <= set(larger.train.source.tolist())
    assert torch.equal(larger.val.source, data.val.source)
    everything = fm.load_rotated_fashion_mnist(root=root, val_size=12, seed=3)
    assert len(everything.train) == 48
    other = fm.load_rotated_fashion_mnist(root=root, val_size=12, train_size=20, seed=4)
    assert set(other.val.source.tolist()) != val


def test_rotations_of_each_split(tmp_path) -> None:
    root = write_fake_fashion_mnist(tmp_path)
    images, labels = fm.upright_fashion_mnist("train", root)
    test_images, _ = fm.upright_fashion_mnist("test", root)
    data = fm.load_rotated_fashion_mnist(
        root=root, val_size=10, train_rotation="c4", test_rotation="none", test_size=8
    )
    for image, angle, src in zip(
        data.train.images[:, 0].numpy(), data.train.angles, data.train.source
    ):
        turns = int(angle) // 90
        np.testing.assert_allclose(image, np.rot90(images[src], turns), atol=1e-6)
    assert set(data.val.angles.tolist()) <= {0.0, 90.0, 180.0, 270.0}  # rotated as training
    np.testing.assert_allclose(data.test.images[:, 0].numpy(), test_images[:8], atol=1e-6)
    np.testing.assert_array_equal(data.train.labels.numpy(), labels[data.train.source])
    rotated = fm.load_rotated_fashion_mnist(root=root, val_size=10, test_rotation="continuous")
    assert ((rotated.test.angles > 0) & (rotated.test.angles < 360)).all()
    assert not np.allclose(rotated.test.images[:, 0].numpy(), test_images, atol=1e-3)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"val_size": 0}, "val_size must be an integer >= 1"),
        ({"train_size": 0}, "train_size must be an integer >= 1 or None"),
        ({"train_rotation": "d4"}, "train_rotation must be one of"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_bad_settings_fail_early(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fm.FashionMNISTConfig(**overrides)


def test_sizes_beyond_the_files_are_refused(tmp_path) -> None:
    root = write_fake_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="train_size must be at most 50"):
        fm.load_rotated_fashion_mnist(root=root, val_size=10, train_size=51)
    with pytest.raises(ValueError, match="leaves no training image"):
        fm.load_rotated_fashion_mnist(root=root, val_size=60)
    with pytest.raises(ValueError, match="test_size must be at most 20"):
        fm.load_rotated_fashion_mnist(root=root, val_size=10, test_size=21)
    with pytest.raises(ValueError, match="unknown FashionMNISTConfig fields"):
        fm.load_rotated_fashion_mnist(root=root, val_fraction=0.1)


@pytest.mark.skipif(
    not (fm.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="the package dataset-fashion-mnist is not installed",
)
def test_installed_package_has_the_published_sizes() -> None:
    images, labels = fm.upright_fashion_mnist("test")
    assert images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 1000))
