"""Image sources: shapes, ranges, reproducibility, train/held-out separation."""

import numpy as np
import pytest
import torch

from equirelax.scg.datasets import HELD_OUT_PHOTOS, TRAIN_PHOTOS, CropSampler, dead_leaves


def test_photo_splits_are_disjoint():
    assert not set(TRAIN_PHOTOS) & set(HELD_OUT_PHOTOS)


def test_dead_leaves_range_and_variety():
    img = dead_leaves(48, np.random.default_rng(0))
    assert img.shape == (48, 48, 3) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 5  # several discs visible


def test_sampler_shapes_and_reproducible():
    a = CropSampler(size=16, weights=(0.5, 0.3, 0.2), seed=3, n_leaf_images=2).sample(6)
    b = CropSampler(size=16, weights=(0.5, 0.3, 0.2), seed=3, n_leaf_images=2).sample(6)
    assert a.shape == (6, 3, 16, 16) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b)


def test_digits_only_stream_is_grey():
    x = CropSampler(size=16, weights=(0, 0, 1), seed=0).sample(4)
    torch.testing.assert_close(x[:, 0], x[:, 1])
    assert x.max() > 0.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        CropSampler(split="test", weights=(0, 0, 1))
    with pytest.raises(ValueError, match="weights"):
        CropSampler(weights=(1.0, 0.0))
    with pytest.raises(ValueError, match="crop size"):
        CropSampler(size=4, weights=(0, 0, 1))
