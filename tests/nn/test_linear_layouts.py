"""EquivariantLinear on features shaped as tensors (``layout``): copies of one tensor power
V^⊗k of S_n's natural rep as (..., n, n) ("tensor"), (..., C, n, n) ("channels_first") or
(..., n, n, C) ("channels_last"). Same map and gradients as the flat dense path, exactly
equivariant under permutations of the set axes, clear errors for wrong shapes and reps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from equirelax.groups import dihedral, symmetric
from equirelax.nn import EquivariantLinear
from equirelax.reps import natural, regular, trivial
from tests.helpers.random_layers import dense_twin

N = 6
G = symmetric(N)
V, T = natural(G), trivial(G)
VV = V * V

#: (rep_in, rep_out, layout): every pair of orders, one and several copies
CASES = {
    "VV -> VV tensor": (VV, VV, "tensor"),
    "V -> V tensor": (V, V, "tensor"),
    "VV -> T tensor": (VV, T, "tensor"),
    "V -> VV tensor": (V, VV, "tensor"),
    "3VV -> 2VV first": (3 * VV, 2 * VV, "channels_first"),
    "3VV -> 2VV last": (3 * VV, 2 * VV, "channels_last"),
    "2VV -> 3V last": (2 * VV, 3 * V, "channels_last"),
    "2V -> 3VV last": (2 * V, 3 * VV, "channels_last"),
    "2VV -> 3T first": (2 * VV, 3 * T, "channels_first"),
    "4V -> 3V first": (4 * V, 3 * V, "channels_first"),
    "4V -> 3V last": (4 * V, 3 * V, "channels_last"),
    "2V -> 3T last": (2 * V, 3 * T, "channels_last"),
    "2T -> 3V last": (2 * T, 3 * V, "channels_last"),
    "2T -> 3T first": (2 * T, 3 * T, "channels_first"),
}


def to_flat(t: torch.Tensor, order: int, layout: str, lead: int) -> torch.Tensor:
    """Shaped features -> flat (..., C·n^k) in the reps' order (copy by copy)."""
    if layout == "channels_last":
        t = t.movedim(-1, -1 - order)
    return t.reshape(*t.shape[:lead], -1)


@pytest.mark.parametrize("structured", [True, False])
@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_shaped_features_give_the_flat_dense_map_and_gradients(case, structured, dtype, tol):
    rep_in, rep_out, layout = CASES[case]
    layer, dense = dense_twin(rep_in, rep_out, dtype, structured=structured, layout=layout)
    assert layer.structured == structured and layer.layout == layout
    shape = layer.tensor_layout
    x = torch.randn(4, 2, *shape.shape_in, dtype=dtype, requires_grad=True)  # two batch axes
    y = layer(x)
    assert y.shape == (4, 2, *shape.shape_out)
    y_flat = dense(to_flat(x, shape.order_in, layout, 2))
    torch.testing.assert_close(to_flat(y, shape.order_out, layout, 2), y_flat, atol=tol, rtol=tol)
    grad = torch.randn_like(y)
    params = list(layer.parameters())
    got = torch.autograd.grad(y, [x, *params], grad)
    want = torch.autograd.grad(
        y_flat, [x, *dense.parameters()], to_flat(grad, shape.order_out, layout, 2))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=10 * tol, rtol=tol)


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_one_sample_without_batch_axes(case):
    rep_in, rep_out, layout = CASES[case]
    layer, dense = dense_twin(rep_in, rep_out, torch.float64, layout=layout)
    shape = layer.tensor_layout
    x = torch.randn(*shape.shape_in, dtype=torch.float64)
    y = layer(x)
    assert y.shape == shape.shape_out
    torch.testing.assert_close(
        to_flat(y[None], shape.order_out, layout, 1),
        dense(to_flat(x[None], shape.order_in, layout, 1)), atol=1e-12, rtol=0)


def permute_sets(t: torch.Tensor, g: np.ndarray, order: int, layout: str) -> torch.Tensor:
    """g acting on shaped features: every set axis (of size n) permuted by g."""
    index = torch.from_numpy(np.argsort(g))
    first_set = t.dim() - order - (1 if layout == "channels_last" else 0)
    for axis in range(first_set, first_set + order):
        t = t.index_select(axis, index)
    return t


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_exactly_equivariant_under_permutations_in_every_layout(case, dtype, tol):
    rep_in, rep_out, layout = CASES[case]
    layer, _ = dense_twin(rep_in, rep_out, dtype, structured=True, layout=layout)
    shape = layer.tensor_layout
    x = torch.randn(3, *shape.shape_in, dtype=dtype)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        y = layer(x)
        scale = y.abs().max()
        for g in [*G.generators, *(rng.permutation(N) for _ in range(6))]:
            moved = layer(permute_sets(x, g, shape.order_in, layout))
            err = (moved - permute_sets(y, g, shape.order_out, layout)).abs().max() / scale
            assert err < tol, (g, err)


def test_channels_last_reads_the_input_where_it_lies():
    """The partition path runs on a movedim of channels-last input and hands back a view of
    its channels-first result: no transposed copy of the input, the output or their
    gradients, forward or backward."""
    layer = EquivariantLinear(3 * VV, 2 * VV, structured=True, layout="channels_last")
    x = torch.randn(4, N, N, 3, requires_grad=True)
    copied: list[int] = []

    class Watch(TorchDispatchMode):
        """Records every copying op (clone, copy_, _to_copy) of a full-size tensor."""

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name in ("clone", "copy_", "_to_copy") and out.numel() == x.numel():
                copied.append(name)
            return out

    with Watch():
        y = layer(x)
        # autograd.grad: .backward() would copy the input gradient into x.grad's strides,
        # autograd's own rule for leaves, not the layer's work
        torch.autograd.grad(y, [x, *layer.parameters()], torch.randn_like(y))
    assert not copied, copied
    assert y.shape == (4, N, N, 2) and y.movedim(-1, 1).is_contiguous()


def test_wrong_shapes_name_the_expected_and_received_shapes():
    layer = EquivariantLinear(3 * VV, 2 * VV, layout="channels_last")
    with pytest.raises(ValueError, match=r"expects inputs of shape \(\.\.\., 6, 6, 3\), got "
                                         r"\(4, 3, 6, 6\)"):
        layer(torch.randn(4, 3, N, N))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 6, 6\), got \(4, 108\)"):
        EquivariantLinear(3 * VV, VV, layout="channels_first")(torch.randn(4, 3 * N * N))
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\), got \(2, 7\)"):
        EquivariantLinear(V, V, layout="tensor")(torch.randn(2, N + 1))
    with pytest.raises(TypeError, match=r"expects a torch\.Tensor"):
        EquivariantLinear(V, V, layout="tensor")(np.zeros((2, N)))


def test_layouts_need_copies_of_one_tensor_power():
    with pytest.raises(ValueError, match="layout must be one of"):
        EquivariantLinear(V, V, layout="channels")
    with pytest.raises(ValueError, match=r"copies of one tensor power.*rep_in is"):
        EquivariantLinear(V + VV, V, layout="channels_first")
    with pytest.raises(ValueError, match="copies of one tensor power"):
        EquivariantLinear(regular(dihedral(4)), regular(dihedral(4)), layout="channels_last")
    with pytest.raises(ValueError, match=r"rep_out has 2 copies.*'channels_first'"):
        EquivariantLinear(VV, 2 * VV, layout="tensor")


def test_flat_stays_the_default_and_forward_flat_takes_flat_features():
    layer, dense = dense_twin(2 * VV, VV, torch.float64, layout="channels_first")
    assert EquivariantLinear(V, V).layout == "flat"
    x = torch.randn(5, 2 * N * N, dtype=torch.float64)
    torch.testing.assert_close(layer.forward_flat(x), dense(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        layer(x.view(5, 2, N, N)).flatten(-3), dense(x), atol=1e-12, rtol=0)
