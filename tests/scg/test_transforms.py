"""Rigid transforms: warps, feature correspondences and masks."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equirelax.scg.transforms import (
    RigidTransform,
    feature_correspondence,
    gather_features,
    image_mask,
    warp_images,
)


def _tr(theta=0.0, tx=0.0, ty=0.0):
    return RigidTransform(torch.tensor([theta]), torch.tensor([tx]), torch.tensor([ty]))


@settings(max_examples=20, deadline=None)
@given(sx=st.integers(-3, 3), sy=st.integers(-3, 3))
def test_integer_translation_is_a_shift_and_correspondence_finds_it(sx, sy):
    size = 12
    x = torch.randn(1, 2, size, size)
    tr = _tr(tx=2 * sx / size, ty=2 * sy / size)
    y = warp_images(x, tr)
    # I'(p) = I(p + s): compare on the region where p + s is inside
    ys = slice(max(0, -sy), size - max(0, sy))
    xs = slice(max(0, -sx), size - max(0, sx))
    shifted = x[..., max(0, sy) : size + min(0, sy), max(0, sx) : size + min(0, sx)]
    torch.testing.assert_close(y[..., ys, xs], shifted, atol=1e-5, rtol=1e-5)
    corr = feature_correspondence(size, size, 1, tr, radius=1.0)
    assert corr.offset.abs().max() < 1e-4
    g = gather_features(x, corr.index)
    m = corr.mask.bool().expand_as(y)
    torch.testing.assert_close(g[m], y[m], atol=1e-5, rtol=1e-5)


def test_quarter_turn_is_exact_on_pixel_centres():
    x = torch.randn(1, 1, 8, 8)
    tr = _tr(theta=math.pi / 2)
    y = warp_images(x, tr)
    torch.testing.assert_close(y, torch.rot90(x, k=1, dims=(-2, -1)), atol=1e-5, rtol=1e-5)
    corr = feature_correspondence(8, 8, 1, tr, radius=1.0)
    torch.testing.assert_close(gather_features(x, corr.index), y, atol=1e-5, rtol=1e-5)


def test_stride_offsets_lie_in_half_open_range_and_masks():
    tr = RigidTransform.sample(16, 0.3, rotate=True, generator=torch.Generator().manual_seed(0))
    corr = feature_correspondence(32, 16, 2, tr)
    assert corr.index.shape == (16, 16, 16) and corr.offset.shape == (16, 16, 16, 2)
    assert corr.offset.abs().max() <= 0.5
    assert 0 < corr.mask.mean() < 1
    identity = feature_correspondence(32, 16, 2, _tr(), radius=0.9)
    assert identity.offset.abs().max() < 1e-5
    assert torch.equal(identity.index[0].flatten(), torch.arange(256))
    m = image_mask(32, _tr(), radius=0.9)[0, 0]
    assert m[16, 16] == 1 and m[0, 0] == 0


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        warp_images(torch.zeros(1, 3, 8, 9), _tr())
    with pytest.raises(ValueError, match="expected 16"):
        feature_correspondence(32, 15, 2, _tr())
    with pytest.raises(ValueError, match="max_translation"):
        RigidTransform.sample(2, 1.5)
