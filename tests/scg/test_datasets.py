"""Image sources: shapes, ranges, reproducibility, train/held-out separation, background photos."""

import numpy as np
import pytest
import torch
from PIL import Image

from equirelax.scg import datasets
from equirelax.scg.datasets import (
    BACKGROUND_PACKAGES,
    HELD_OUT_PHOTOS,
    TRAIN_PHOTOS,
    CropSampler,
    background_photos,
    dead_leaves,
    load_photo,
    split_backgrounds,
)


def _write_photos(folder, n: int, size: tuple[int, int] = (80, 60)) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"photo{i:02d}.jpg"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    (folder / "art.svg").write_text("<svg/>")  # not a photograph: ignored
    return paths


def test_photo_splits_are_disjoint_and_natural():
    assert not set(TRAIN_PHOTOS) & set(HELD_OUT_PHOTOS)
    assert not {"hubble_deep_field", "immunohistochemistry", "retina"} & set(
        TRAIN_PHOTOS + HELD_OUT_PHOTOS)
    assert len(HELD_OUT_PHOTOS) >= 3


@pytest.mark.parametrize("name", ["motorcycle", "grace_hopper"])
def test_new_bundled_photos_load_as_colour(name):
    img = load_photo(name)
    assert img.ndim == 3 and img.shape[-1] == 3 and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    assert min(img.shape[:2]) <= datasets.MAX_SIDE
    assert np.abs(img[..., 0] - img[..., 2]).mean() > 0.01  # colour, not grey


def test_background_photos_are_found_split_and_used(tmp_path):
    paths = _write_photos(tmp_path / "bg", 8)
    found = background_photos([tmp_path / "bg", tmp_path / "missing"])
    assert found == paths
    train, held = split_backgrounds(found)
    assert len(held) == 2 and not set(train) & set(held) and set(train) | set(held) == set(paths)
    s_train = CropSampler(size=16, weights=(1, 0, 0), background_dirs=(tmp_path / "bg",))
    s_held = CropSampler(size=16, weights=(1, 0, 0), split="held_out",
                         background_dirs=(tmp_path / "bg",))
    assert len(s_train.photo_names) == len(TRAIN_PHOTOS) + 6
    assert len(s_held.photo_names) == len(HELD_OUT_PHOTOS) + 2
    assert not set(s_train.photo_names) & set(s_held.photo_names)
    assert s_train.sample(4).shape == (4, 3, 16, 16)


def test_large_background_photos_are_downscaled(tmp_path):
    _write_photos(tmp_path, 1, size=(1200, 900))
    img = datasets.load_image_file(tmp_path / "photo00.jpg")
    assert img.shape == (datasets.MAX_SIDE, round(1200 * datasets.MAX_SIDE / 900), 3)


def test_missing_backgrounds_name_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_warned_no_backgrounds", False)
    with pytest.warns(UserWarning, match=BACKGROUND_PACKAGES[0]) as rec:
        CropSampler(size=16, weights=(1, 0, 0), background_dirs=(tmp_path / "none",))
    assert "apt-get install" in str(rec[0].message)


def test_dead_leaves_range_and_variety():
    img = dead_leaves(48, np.random.default_rng(0))
    assert img.shape == (48, 48, 3) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 5  # several discs visible


def test_sampler_shapes_and_reproducible():
    kw = dict(size=16, weights=(0.5, 0.3, 0.2), seed=3, n_leaf_images=2, background_dirs=())
    a = CropSampler(**kw).sample(6)
    b = CropSampler(**kw).sample(6)
    assert a.shape == (6, 3, 16, 16) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b)


def test_digits_only_stream_is_grey():
    x = CropSampler(size=16, weights=(0, 0, 1), seed=0).sample(4)
    torch.testing.assert_close(x[:, 0], x[:, 1])
    assert x.max() > 0.5


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        CropSampler(split="test", weights=(0, 0, 1))
    with pytest.raises(ValueError, match="weights"):
        CropSampler(weights=(1.0, 0.0))
    with pytest.raises(ValueError, match="crop size"):
        CropSampler(size=4, weights=(0, 0, 1))
    _write_photos(tmp_path, 1, size=(20, 12))
    with pytest.raises(ValueError, match="smaller than the crop"):
        CropSampler(size=16, weights=(1, 0, 0), background_dirs=(tmp_path,))
