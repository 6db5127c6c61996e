"""The Haar rotation samplers: orthogonality, uniformity, conventions, and pinned streams.

Committed results (point-cloud data and augmentation, the N-body study's rotations, sampled
equivariance errors) were drawn from these streams, so a few values are pinned bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.groups.haar import (
    haar_orthogonal_torch,
    haar_rotations,
    haar_rotations_torch,
    quaternions_to_matrices,
)


def _assert_rotations(rot: np.ndarray, atol: float = 1e-12) -> None:
    eye = np.broadcast_to(np.eye(rot.shape[-1]), rot.shape)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), eye, atol=atol)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=atol)


def _haar_moments(rot: np.ndarray) -> tuple[float, float, np.ndarray]:
    trace = np.trace(rot, axis1=-2, axis2=-1)
    return float(trace.mean()), float((trace**2).mean()), rot.mean(axis=0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.floats(-10, 10, allow_nan=False, allow_infinity=False), min_size=4, max_size=4
    ).filter(lambda q: np.linalg.norm(q) > 1e-3)
)
def test_quaternions_give_rotations_and_double_cover(q: list[float]) -> None:
    q = np.array(q)
    rot = quaternions_to_matrices(q)
    _assert_rotations(rot[None])
    np.testing.assert_allclose(quaternions_to_matrices(-q), rot, atol=1e-12)


def test_quaternion_axis_angle_convention() -> None:
    angle = 0.7
    rot = quaternions_to_matrices(np.array([math.cos(angle / 2), 0, 0, math.sin(angle / 2)]))
    expected = np.array(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]]
    )
    np.testing.assert_allclose(rot, expected, atol=1e-12)


@pytest.mark.parametrize("scalar_first", [True, False])
def test_haar_rotations_are_haar(scalar_first: bool) -> None:
    rot = haar_rotations(40000, np.random.default_rng(0), scalar_first=scalar_first)
    _assert_rotations(rot)
    # Haar on SO(3): E[tr R] = 0, E[(tr R)^2] = 1 (one trivial irrep in V⊗V), E[R] = 0.
    mean_tr, mean_tr2, mean_rot = _haar_moments(rot)
    assert abs(mean_tr) < 0.03 and abs(mean_tr2 - 1.0) < 0.05
    assert np.abs(mean_rot).max() < 0.02
    # The rotation angle has density (1 - cos θ)/π, so P(θ < π/2) = (π/2 - 1)/π.
    angle = np.arccos(np.clip((np.trace(rot, axis1=1, axis2=2) - 1) / 2, -1, 1))
    expected = (math.pi / 2 - 1) / math.pi
    assert abs((angle < math.pi / 2).mean() - expected) < 0.01


def test_the_two_quaternion_readings_are_the_same_draw_in_another_order() -> None:
    q = np.random.default_rng(5).standard_normal((50, 4))
    np.testing.assert_allclose(haar_rotations(50, 5, scalar_first=False),
                               quaternions_to_matrices(q[:, [3, 0, 1, 2]]), atol=1e-14)


def test_plane_rotations_have_uniform_angles() -> None:
    rot = haar_rotations(20000, 0, dim=2)
    _assert_rotations(rot)
    angle = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
    assert abs(angle.mean()) < 0.05 and abs((angle > 0).mean() - 0.5) < 0.01


@pytest.mark.parametrize("method", ["quaternion", "qr"])
def test_torch_rotations_are_haar(method: str) -> None:
    rot = haar_rotations_torch(40000, generator=torch.Generator().manual_seed(0), method=method)
    assert rot.dtype == torch.float32 and rot.shape == (40000, 3, 3)
    rot64 = haar_rotations_torch(
        40000, generator=torch.Generator().manual_seed(0), dtype=torch.float64, method=method
    ).numpy()
    _assert_rotations(rot64)
    np.testing.assert_allclose(rot.numpy(), rot64, atol=1e-6)
    mean_tr, mean_tr2, mean_rot = _haar_moments(rot64)
    assert abs(mean_tr) < 0.03 and abs(mean_tr2 - 1.0) < 0.05
    assert np.abs(mean_rot).max() < 0.02


def test_torch_orthogonal_elements_are_rotations_or_their_negatives() -> None:
    out = haar_orthogonal_torch(2000, generator=torch.Generator().manual_seed(1),
                                dtype=torch.float64).numpy()
    det = np.linalg.det(out)
    np.testing.assert_allclose(np.abs(det), 1.0, atol=1e-12)
    assert abs((det < 0).mean() - 0.5) < 0.05


def _qr_reference(seed: int, reflections: bool) -> torch.Tensor:
    """The N-body study's original draw: one QR rotation per seed, then -I with prob. 1/2."""
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflections and torch.rand((), generator=gen) < 0.5:
        q = -q
    return q


@pytest.mark.parametrize("reflections", [False, True])
def test_the_qr_stream_is_the_n_body_studys_draw_bit_for_bit(reflections: bool) -> None:
    draw = haar_orthogonal_torch if reflections else haar_rotations_torch
    for seed in range(30):
        got = draw(1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64,
                   method="qr")[0]
        assert torch.equal(got, _qr_reference(seed, reflections)), seed


def test_pinned_values_of_the_committed_streams() -> None:
    assert haar_rotations(2, 0)[1, 0].tolist() == [
        -0.7229301445056033, 0.6492995964149654, -0.2361822183409888]
    assert haar_rotations(2, 0, scalar_first=False)[1, 0].tolist() == [
        -0.21467588841836388, -0.9476983816971072, -0.2361822183409888]
    assert haar_rotations(2, 0, dim=2)[1, 0].tolist() == [
        -0.12400357169577353, -0.9922817715783613]
    torch_rot = haar_rotations_torch(2, generator=torch.Generator().manual_seed(0),
                                     dtype=torch.float64)
    assert torch_rot[1, 0].tolist() == [0.5672123857285758, 0.1724888688660337,
                                        -0.8053059664459301]
    qr = haar_rotations_torch(1, generator=torch.Generator().manual_seed(4), dtype=torch.float64,
                              method="qr")
    np.testing.assert_allclose(qr[0, 0].numpy(), [-0.6954299402946797, 0.025545569749900545,
                                                  0.7181396953294614], rtol=0, atol=1e-15)


def test_lie_group_samples_draw_through_the_sampler() -> None:
    np.testing.assert_array_equal(er.groups.SO(3).sample(5, seed=3),
                                  haar_rotations(5, 3, scalar_first=False))
    np.testing.assert_array_equal(er.groups.SO(2).sample(5, seed=3), haar_rotations(5, 3, dim=2))
    assert er.groups.O(3).sample(3, seed=2)[2, 0].tolist() == [
        0.7558565608475016, -0.20564832521298687, -0.6216024660189828]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative integer, got -1"):
        haar_rotations(-1, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"non-negative integer, got 2\.5"):
        haar_rotations_torch(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dimension 2 or 3, got dim=4"):
        haar_rotations(1, 0, dim=4)
    with pytest.raises(ValueError, match=r"method must be one of .*, got .svd."):
        haar_rotations_torch(1, method="svd")
