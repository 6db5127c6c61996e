"""Rotated digits: upsampling, exact C4 and continuous rotations, stratified seeded splits."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from equirelax.data.digits import (
    DigitsConfig,
    load_rotated_digits,
    rotate_images,
    upright_digits,
)
from equirelax.nn.gconv import grid_transform


@pytest.fixture(scope="module")
def upright() -> tuple[np.ndarray, np.ndarray]:
    return upright_digits()


def test_upright_digits_are_upsampled_and_centred(upright) -> None:
    images, labels = upright
    assert images.shape == (1797, 28, 28) and labels.shape == (1797,)
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.99
    assert set(np.unique(labels)) == set(range(10))
    # The 20x20 digit sits in the middle: a 4-pixel black frame.
    frame = np.ones((28, 28), dtype=bool)
    frame[4:24, 4:24] = False
    assert images[:, frame].max() == 0.0
    # ... and inside the inscribed circle, so rotations never cut it off.
    yy, xx = np.mgrid[:28, :28]
    outside = np.hypot(yy - 13.5, xx - 13.5) > 14.0
    assert images[:, outside].sum() < 1e-3 * images.sum()


def test_other_sizes(upright) -> None:
    images, _ = upright_digits(image_size=17, digit_size=12)
    assert images.shape == (1797, 17, 17)
    assert images[:, :2].max() == 0.0 and images[:, -3:].max() == 0.0
    assert images[:, 2].max() > 0.0 and images[:, -4].max() > 0.0


def test_default_split_is_stratified_and_disjoint(upright) -> None:
    data = load_rotated_digits()
    _, labels = upright
    assert len(data.train) + len(data.test) == 1797
    assert len(data.test) == pytest.approx(0.25 * 1797, abs=1)
    assert set(data.train.source.tolist()).isdisjoint(data.test.source.tolist())
    train_counts = np.bincount(data.train.labels.numpy(), minlength=10)
    all_counts = np.bincount(labels, minlength=10)
    np.testing.assert_allclose(train_counts / all_counts, 0.75, atol=0.01)
    np.testing.assert_array_equal(data.train.labels.numpy(), labels[data.train.source.numpy()])
    image, label = data.train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and label.ndim == 0
    assert data.num_classes == 10


def test_c4_rotations_are_exact_quarter_turns(upright) -> None:
    images, _ = upright
    data = load_rotated_digits(train_rotation="c4", test_rotation="c4")
    for split in (data.train, data.test):
        angles = split.angles.numpy()
        assert set(np.unique(angles)) == {0.0, 90.0, 180.0, 270.0}
        turns = (angles // 90).astype(int)
        expected = np.stack(
            [np.rot90(images[s], t) for s, t in zip(split.source.numpy(), turns)]
        ).astype(np.float32)
        np.testing.assert_array_equal(split.images[:, 0].numpy(), expected)
        # Same convention as the group convolutions' quarter turn.
        source = torch.from_numpy(images[split.source.numpy()[:20]]).float()
        moved = torch.stack([grid_transform(source[i], "C4", int(turns[i])) for i in range(20)])
        torch.testing.assert_close(split.images[:20, 0], moved)


def test_continuous_rotations(upright) -> None:
    images, _ = upright
    data = load_rotated_digits(train_rotation="continuous", test_rotation="none")
    angles = data.train.angles.numpy()
    assert angles.min() >= 0.0 and angles.max() < 360.0
    assert angles.min() < 10.0 and angles.max() > 350.0
    assert np.histogram(angles, bins=4, range=(0, 360))[0].min() > 0.2 * len(angles)
    # Bilinear rotation moves the digit but roughly keeps its ink.
    source = images[data.train.source.numpy()]
    mass_ratio = data.train.images[:, 0].numpy().sum(axis=(1, 2)) / source.sum(axis=(1, 2))
    assert 0.9 < np.median(mass_ratio) < 1.1
    assert (data.train.images[:, 0].numpy() - source).std() > 0.05
    # The upright test split is the upsampled digits themselves.
    assert (data.test.angles == 0).all()
    np.testing.assert_array_equal(
        data.test.images[:, 0].numpy(), images[data.test.source.numpy()].astype(np.float32)
    )


def test_interpolated_and_exact_rotations_turn_the_same_way(upright) -> None:
    images, _ = upright
    batch = images[:10]
    exact = rotate_images(batch, np.full(10, 90.0))
    interpolated = rotate_images(batch, np.full(10, 90.0 + 1e-6))
    np.testing.assert_array_equal(exact, np.rot90(batch, 1, axes=(1, 2)))
    np.testing.assert_allclose(interpolated, exact, atol=1e-4)
    # Counter-clockwise: the top row moves to the left column.
    marker = np.zeros((1, 5, 5))
    marker[0, 0, 4] = 1.0  # top right
    assert rotate_images(marker, np.array([90.0]))[0, 0, 0] == 1.0  # top left
    assert rotate_images(marker, np.array([90.0 + 1e-9]))[0, 0, 0] == pytest.approx(1.0)


def test_seeds_repeats_and_determinism() -> None:
    a = load_rotated_digits(seed=1, test_fraction=0.5)
    b = load_rotated_digits(seed=1, test_fraction=0.5)
    c = load_rotated_digits(seed=2, test_fraction=0.5)
    torch.testing.assert_close(a.train.images, b.train.images)
    torch.testing.assert_close(a.test.angles, b.test.angles)
    assert not torch.equal(a.train.source, c.train.source)
    # The split does not depend on the rotation protocol.
    d = load_rotated_digits(seed=1, test_fraction=0.5, train_rotation="c4")
    torch.testing.assert_close(d.train.source, a.train.source)
    r = load_rotated_digits(seed=1, test_fraction=0.5, repeats=3)
    assert len(r.train) == 3 * len(a.train)
    n = len(a.train)
    torch.testing.assert_close(r.train.source[:n], r.train.source[n : 2 * n])
    assert not torch.equal(r.train.angles[:n], r.train.angles[n : 2 * n])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_rotation": "so2"}, "train_rotation"),
        ({"test_rotation": "C4"}, "test_rotation"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"image_size": 10}, "image_size"),
        ({"digit_size": 4}, "digit_size"),
        ({"repeats": 0}, "repeats"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_config_fails_early(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DigitsConfig(**kwargs)


def test_bad_arguments_fail_early() -> None:
    with pytest.raises(ValueError, match="unknown DigitsConfig fields"):
        load_rotated_digits(rotation="c4")
    with pytest.raises(ValueError, match=r"\(n, S, S\)"):
        rotate_images(np.zeros((2, 4, 5)), np.zeros(2))
    with pytest.raises(ValueError, match=r"angles must have shape \(2,\)"):
        rotate_images(np.zeros((2, 4, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        rotate_images(np.zeros((1, 4, 4)), np.array([np.nan]))


def test_import_does_not_load_scikit_learn_or_scikit_image() -> None:
    """The optional packages load only when the data are asked for (in a fresh interpreter:
    this one has imported them already)."""
    code = (
        "import sys, equirelax.data.digits\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'skimage')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "package"),
    [("sklearn.datasets", "scikit-learn"), ("skimage.transform", "scikit-image")],
)
def test_missing_optional_package_is_named_when_data_are_asked_for(
    monkeypatch, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import of it fails as if not installed
    with pytest.raises(ModuleNotFoundError, match=rf"needs {package} .*equirelax\[data\]"):
        upright_digits()


def test_right_angles_need_no_scikit_image(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage.transform", None)
    images = np.arange(32.0).reshape(2, 4, 4)
    out = rotate_images(images, np.array([90.0, -180.0]))
    np.testing.assert_array_equal(out, np.stack([np.rot90(images[0]), np.rot90(images[1], 2)]))
    with pytest.raises(ModuleNotFoundError, match="scikit-image"):
        rotate_images(images, np.array([0.0, 45.0]))
