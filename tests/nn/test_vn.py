"""Vector Neurons layers: exact SO(3) equivariance of every module, their declared actions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.groups.haar import quaternions_to_matrices
from equirelax.nn.vn import (
    VNBatchNorm,
    VNLeakyReLU,
    VNLinear,
    VNLinearLeakyReLU,
    VNMaxPool,
    VNMeanPool,
    VNStdFeature,
    knn_vector_lift,
    vector_features_rep,
    vn_leaky_relu,
)
from tests.helpers.vector_neurons import (
    DTYPES,
    MODEL_TOL,
    TOL,
    features,
    prepare,
    relative_error,
    rotate,
    rotations,
)

#: Tiny tensors: torch on one thread (tests/conftest.py); a fixed seed makes module
#: initialisations independent of the order in which tests run.
pytestmark = pytest.mark.usefixtures("one_thread", "seed_zero")



EQUIVARIANT_CASES: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...]]] = {
    "linear": (lambda: VNLinear(5, 7), (4, 10, 5, 3)),
    "leaky_relu": (lambda: VNLeakyReLU(5), (4, 10, 5, 3)),
    "leaky_relu_shared": (lambda: VNLeakyReLU(5, share_nonlinearity=True), (4, 10, 5, 3)),
    "batch_norm": (lambda: VNBatchNorm(5), (4, 10, 5, 3)),
    "linear_leaky_relu": (lambda: VNLinearLeakyReLU(5, 6), (4, 10, 5, 3)),
    "linear_leaky_relu_plain": (
        lambda: VNLinearLeakyReLU(5, 6, share_nonlinearity=True, batch_norm=False),
        (4, 10, 5, 3),
    ),
    "max_pool": (lambda: VNMaxPool(5), (4, 10, 5, 3)),
    "mean_pool": (lambda: VNMeanPool(), (4, 10, 5, 3)),
    "linear_edges": (lambda: VNLinearLeakyReLU(3, 4), (3, 8, 6, 3, 3)),
    "linear_relu": (lambda: VNLinearLeakyReLU(5, 6, negative_slope=0.0), (4, 10, 5, 3)),
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", sorted(EQUIVARIANT_CASES))
def test_module_is_rotation_equivariant(case: str, dtype: torch.dtype, train: bool) -> None:
    factory, shape = EQUIVARIANT_CASES[case]
    module = prepare(factory(), dtype, train)
    x = features(shape, dtype)
    if not train:
        module.train()
        with torch.no_grad():
            module(features(shape, dtype, seed=5) * 2 + 0.5)  # move the running statistics
        module.eval()
    rot = rotations(shape[0], seed=1, dtype=dtype)
    with torch.no_grad():
        out = module(x)
        out_rot = module(rotate(x, rot))
    assert out.shape[-1] == 3
    assert relative_error(out_rot, rotate(out, rot)) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("normalize_frame", [False, True])
def test_std_feature_is_invariant_and_frame_equivariant(
    dtype: torch.dtype, normalize_frame: bool
) -> None:
    module = prepare(VNStdFeature(8, normalize_frame=normalize_frame), dtype, train=False)
    x = features((4, 10, 8, 3), dtype)
    rot = rotations(4, seed=2, dtype=dtype)
    with torch.no_grad():
        inv, frame = module(x)
        inv_rot, frame_rot = module(rotate(x, rot))
    assert inv.shape == (4, 10, 8, 3) and frame.shape == (4, 10, 3, 3)
    assert relative_error(inv_rot, inv) < MODEL_TOL[dtype]
    assert relative_error(frame_rot, rotate(frame, rot)) < MODEL_TOL[dtype]
    if normalize_frame and dtype == torch.float64:
        eye = torch.eye(3, dtype=dtype).expand_as(frame)
        torch.testing.assert_close(frame @ frame.transpose(-1, -2), eye, atol=1e-10, rtol=0)
        torch.testing.assert_close(
            torch.linalg.det(frame), torch.ones(4, 10, dtype=dtype), atol=1e-10, rtol=0
        )
    # The invariant features are really the coordinates of x in the frame.
    torch.testing.assert_close(inv, torch.einsum("bncj,bnfj->bncf", x, frame))


@settings(max_examples=25, deadline=None)
@given(
    quaternion=st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
        lambda q: np.linalg.norm(q) > 0.1
    ),
    leading=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    channels=st.integers(1, 6),
    slope=st.floats(0.0, 0.9),
    seed=st.integers(0, 1000),
)
def test_leaky_relu_equivariance_property(
    quaternion: list[float], leading: list[int], channels: int, slope: float, seed: int
) -> None:
    rot = torch.from_numpy(quaternions_to_matrices(np.array(quaternion)))
    x = features((*leading, channels, 3), torch.float64, seed)
    d = features((*leading, channels, 3), torch.float64, seed + 1)
    out = vn_leaky_relu(x, d, slope)
    torch.testing.assert_close(vn_leaky_relu(x @ rot.T, d @ rot.T, slope), out @ rot.T)


def test_leaky_relu_acts_as_described() -> None:
    x = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 2.0, 0.0]], dtype=torch.float64)
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    out = vn_leaky_relu(x, d, negative_slope=0.0)
    # <x, d> >= 0 keeps x; < 0 removes the component along d (up to EPS in |d|^2 + EPS).
    expected = torch.tensor([[1.0, 2.0, 0.0], [0.0, 2.0, 0.0]]).double()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    out = vn_leaky_relu(x, d, negative_slope=0.2)
    expected = torch.tensor([-0.2, 2.0, 0.0]).double()
    torch.testing.assert_close(out[1], expected, atol=1e-5, rtol=0)


def test_batch_norm_normalises_lengths_in_train_mode() -> None:
    bn = VNBatchNorm(4).double()
    x = features((64, 4, 3), torch.float64) * torch.tensor([1.0, 3.0, 0.5, 2.0]).double()[:, None]
    out = bn(x)
    # Each output vector is its input's direction times the batch-normalised length (up to
    # the EPS = 1e-6 that VNBatchNorm adds to the norms).
    signed_length = (out * x).sum(-1) / x.norm(dim=-1)
    torch.testing.assert_close(
        signed_length.mean(dim=0), torch.zeros(4).double(), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        signed_length.var(dim=0, unbiased=False), torch.ones(4).double(), atol=1e-3, rtol=0
    )
    cross = torch.linalg.cross(out, x, dim=-1)
    assert cross.abs().max() < 1e-12


def test_max_pool_picks_a_whole_input_vector_per_channel() -> None:
    pool = VNMaxPool(3).double()
    x = features((2, 7, 3, 3), torch.float64)
    out = pool(x)
    for b in range(2):
        for c in range(3):
            assert ((x[b, :, c] - out[b, c]).norm(dim=-1) < 1e-14).any()


def test_vn_linear_dense_matrix_uses_the_flat_layout() -> None:
    """Flattened over (channel, xyz) the map is kron(W, I3): index c*3 + k."""
    layer = VNLinear(4, 5).double()
    x = features((6, 4, 3), torch.float64)
    flat = x.flatten(-2) @ layer.dense_matrix().T
    torch.testing.assert_close(flat, layer(x).flatten(-2))
    assert layer.dense_matrix().shape == (15, 12)


def test_vn_linear_is_equivariant_for_the_library_check() -> None:
    """With rep_in = C_in copies of the SO(3) vector rep, the library's own check passes."""
    layer = VNLinearLeakyReLU(4, 5, batch_norm=False).double()
    vector = er.reps.vector(er.groups.SO(3))

    def flat(x: torch.Tensor) -> torch.Tensor:
        return layer(x.unflatten(-1, (4, 3))).flatten(-2)

    errors = er.testing.assert_equivariant(
        flat, rep_in=4 * vector, rep_out=5 * vector, dtypes=(torch.float64,)
    )
    assert errors[torch.float64] < 1e-10


def test_vn_linear_declares_its_action() -> None:
    """rep_in/rep_out are C copies of the SO(3) vector rep on the c*3 + k layout, and the Lie
    algebra maps of group_actions() are that rep's Lie algebra matrices kron(I_C, A_k)."""
    layer = VNLinear(4, 5)
    vector = er.reps.vector(er.groups.SO(3))
    assert layer.rep_in == 4 * vector and layer.rep_out == 5 * vector
    assert layer.rep_in is vector_features_rep(4)  # cached: built once per width
    assert layer.feature_shapes == ((4, 3), (5, 3))
    actions = layer.group_actions()
    assert actions["in"] == [] and actions["out"] == []
    x = features((7, 4, 3), torch.float64)
    for act, a in zip(actions["lie_in"], layer.rep_in.lie_matrices(), strict=True):
        expected = x.flatten(-2) @ torch.from_numpy(a).T
        torch.testing.assert_close(act(x).flatten(-2), expected, rtol=0, atol=1e-15)
    assert len(actions["lie_out"]) == 3
    for mats, rep in ((actions["matrices_in"], layer.rep_in),
                      (actions["matrices_out"], layer.rep_out)):
        for m, a in zip(mats, rep.lie_matrices(), strict=True):
            np.testing.assert_array_equal(m, a)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_knn_lift_is_rotation_and_permutation_equivariant(dtype: torch.dtype) -> None:
    points = features((3, 30, 3), dtype)
    lift = knn_vector_lift(points, k=5)
    assert lift.shape == (3, 30, 5, 3, 3)
    # The first neighbour of each point is the point itself: x_j - x_i = 0, x_j × x_i = 0.
    assert lift[:, :, 0, 0].abs().max() == 0 and lift[:, :, 0, 2].abs().max() < 1e-5
    rot = rotations(3, seed=3, dtype=dtype)
    lifted_rot = knn_vector_lift(rotate(points, rot), k=5)
    # Neighbour order may differ only between exact ties; compare neighbour-order-free sums.
    assert relative_error(lifted_rot.sum(2), rotate(lift.sum(2), rot)) < TOL[dtype]
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(knn_vector_lift(points[:, perm], k=5).sum(2), lift[:, perm].sum(2))


#: Init seeds of the toy task. One trajectory is chaotic (Adam at lr 1e-2, float32): another
#: CPU or BLAS kernel gives another one, so the assertions hold for every seed with slack.


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: VNLinear(3, 4)(torch.randn(2, 5, 3)), ValueError, r"\(\.\.\., 3, 3\)"),
        (lambda: VNLinear(3, 4)(torch.randn(2, 3, 2)), ValueError, "got"),
        (lambda: VNLinear(3, 4)(torch.ones(2, 3, 3, dtype=torch.int64)), TypeError, "floating"),
        (lambda: VNLinear(0, 4), ValueError, "in_channels"),
        (lambda: VNLeakyReLU(3, negative_slope=1.0), ValueError, "negative_slope"),
        (lambda: VNMaxPool(3)(torch.randn(3, 3)), ValueError, "shape"),
        (lambda: VNStdFeature(3), ValueError, ">= 4"),
        (lambda: knn_vector_lift(torch.randn(2, 4, 3), k=5), ValueError, "at least 5"),
        (lambda: knn_vector_lift(torch.randn(2, 4), k=2), ValueError, r"\(B, N, 3\)"),
    ],
)
def test_bad_input_fails_early(call: Callable[[], object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()
