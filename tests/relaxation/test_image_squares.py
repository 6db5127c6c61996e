"""The penalty squares of several layers from their images in one node
(relaxation.image_squares): values and gradients equal the plain sums for output actions that
are gathers, a few weighted entries per row, or dense; second derivatives; and a relaxed
model's penalty (every layer's squares at once) equals the sum of its layers' own squares.
The weighted roots of those sums in one node (image_penalty) equal the plain expression too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.relaxation import relax
from equirelax.relaxation.actions import StackedMatrixMap
from equirelax.relaxation.fused import new_step
from equirelax.relaxation.image_squares import (
    ImageLayout,
    image_penalty,
    image_squares,
    indexable,
)
from tests.helpers.rep_strategies import action_matrix


def _stack(rng: np.random.Generator, k: int, d: int, kind: str) -> StackedMatrixMap:
    """K random maps of d features (``kind`` as in ``action_matrix``, sparse ones cut to d
    columns so that they act on d features)."""
    mats = []
    for _ in range(k):
        m = action_matrix(rng, d, d, kind)
        mats.append(m[:, :d] if kind == "sparse" else m)
    return StackedMatrixMap(mats)


def _plain(zs, stacks):
    lie = norm = 0.0
    for z, stack in zip(zs, stacks):
        d = stack.apply.shape[1]
        images = torch.cat([z[:, :d] @ torch.as_tensor(m, dtype=z.dtype).T
                            for m in np.split(stack.apply._matrix(), stack.k)], 1)
        residual = z[:, d:] - images
        lie = lie + residual.pow(2).sum()
        norm = norm + z[:, :d].pow(2).sum()
    return lie, norm


def _check(stacks, rows: int, dtype=torch.float64, tol: float = 1e-10) -> None:
    torch.manual_seed(0)
    zs = [torch.randn(rows, (s.k + 1) * s.apply.shape[1], dtype=dtype, requires_grad=True)
          for s in stacks]
    g_lie, g_norm = 0.7, 1.3
    got = image_squares(zs, stacks)
    grads = torch.autograd.grad(g_lie * got[0] + g_norm * got[1], zs)
    want = _plain(zs, stacks)
    want_grads = torch.autograd.grad(g_lie * want[0] + g_norm * want[1], zs)
    for a, b in zip((*got, *grads), (*want, *want_grads)):
        assert torch.allclose(a, b, rtol=tol, atol=tol)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 6),
                          st.sampled_from(["gather", "sparse", "dense"])), min_size=1, max_size=4),
       st.integers(1, 5), st.integers(0, 2**16))
def test_values_and_gradients_equal_the_plain_sums(layers, rows, seed):
    rng = np.random.default_rng(seed)
    _check([_stack(rng, k, d, kind) for k, d, kind in layers], rows)


@pytest.mark.parametrize("kind", ["gather", "sparse", "dense"])
def test_float32(kind):
    rng = np.random.default_rng(1)
    _check([_stack(rng, 2, 5, kind), _stack(rng, 3, 4, kind)], 4, torch.float32, 1e-4)


def test_dense_actions_with_many_entries_per_row_are_applied_as_matrices():
    rng = np.random.default_rng(2)
    dense, gather = _stack(rng, 2, 9, "dense"), _stack(rng, 2, 9, "gather")
    assert not indexable(dense) and indexable(gather)
    assert not ImageLayout.of((gather, dense)).indexed
    _check([gather, dense], 3)


def test_second_derivatives():
    rng = np.random.default_rng(3)
    stacks = [_stack(rng, 2, 4, "gather"), _stack(rng, 2, 3, "sparse")]
    zs = [torch.randn(3, (s.k + 1) * s.apply.shape[1], dtype=torch.float64,
                      requires_grad=True) for s in stacks]

    def hessian_vector(squares):
        lie, norm = squares(zs, stacks)
        grads = torch.autograd.grad(lie + 2 * norm, zs, create_graph=True)
        return torch.autograd.grad(sum((g * g).sum() for g in grads), zs)

    for a, b in zip(hessian_vector(image_squares), hessian_vector(_plain)):
        assert torch.allclose(a, b, atol=1e-10)


def test_refuses_images_of_another_shape_or_row_count():
    rng = np.random.default_rng(4)
    stack = _stack(rng, 2, 3, "gather")
    with pytest.raises(ValueError, match=r"expected images of shape \(m, 9\)"):
        image_squares([torch.zeros(2, 8)], [stack])
    with pytest.raises(ValueError, match="one number of rows"):
        image_squares([torch.zeros(2, 9), torch.zeros(3, 9)], [stack, stack])
    with pytest.raises(ValueError, match="one output action per layer"):
        image_squares([torch.zeros(2, 9)], [stack, stack])


@pytest.mark.parametrize("options", [{"penalty_sketch": 3}, {"penalty_rows": 5}, {}])
@pytest.mark.parametrize("group", ["S4", "O3"])
def test_model_penalty_equals_the_layers_own_squares(options, group):
    """RelaxedModel.penalty() forms every layer's squares in one node; the same model's layers
    taken one by one (take_squares) give the same penalty and gradients."""
    if group == "S4":
        G = er.groups.symmetric(4)
        a, b = er.reps.natural(G), er.reps.trivial(G)
        reps = (a + b, [2 * a + b, 3 * a], a)
    else:
        G = er.groups.O(3)
        a, b = er.reps.vector(G), er.reps.trivial(G)
        reps = (a + b, [2 * a + b, 3 * a + b], a + b)
    torch.manual_seed(0)
    net = er.nn.EquivariantMLP(reps[0], reps[1], reps[2]).double()
    model = relax(net, total_steps=100, **options)
    model.t = 30
    model.step()
    for layer in model.relaxed_layers().values():
        layer.penalty_method = "data"
        with torch.no_grad():
            layer.free.weight.normal_()
    x = torch.randn(12, reps[0].dim, dtype=torch.float64)

    def penalty_and_grads(batched: bool):
        model.zero_grad(set_to_none=True)
        new_step()
        torch.manual_seed(7)
        y = model(x)
        if batched:
            p = model.penalty()
        else:
            squares = [layer.take_squares() for layer in model.relaxed_layers().values()]
            lie = torch.stack([s[0] for s in squares]).sum()
            norm = torch.stack([s[1] for s in squares]).sum()
            p = (model.lie_weight * torch.sqrt(lie + model.epsilon)
                 + model.norm_weight * torch.sqrt(norm + model.epsilon))
        (y.sum() + p).backward()
        return p.detach(), [q.grad.clone() for q in model.parameters()]

    p1, g1 = penalty_and_grads(True)
    p2, g2 = penalty_and_grads(False)
    assert torch.allclose(p1, p2, rtol=1e-10)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


def _plain_penalty(zs, stacks, weights):
    lie_weight, norm_weight, epsilon, factor = weights
    lie, norm = _plain(zs, stacks)
    return (lie_weight * torch.sqrt(lie * factor + epsilon)
            + norm_weight * torch.sqrt(norm * factor + epsilon))


def _images(stacks, rows: int, dtype=torch.float64):
    return [torch.randn(rows, (s.k + 1) * s.apply.shape[1], dtype=dtype, requires_grad=True)
            for s in stacks]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 6),
                          st.sampled_from(["gather", "sparse"])), min_size=1, max_size=4),
       st.integers(1, 5), st.integers(0, 2**16),
       st.tuples(st.sampled_from([0.0, 0.01, 1.7]), st.sampled_from([0.0, 0.02, 0.9]),
                 st.sampled_from([0.0, 1e-12, 0.5]), st.sampled_from([1.0, 0.25, 3.0])))
def test_image_penalty_equals_the_plain_expression(layers, rows, seed, weights):
    rng = np.random.default_rng(seed)
    stacks = [_stack(rng, k, d, kind) for k, d, kind in layers]
    torch.manual_seed(seed)
    zs = _images(stacks, rows)
    got = image_penalty(zs, stacks, *weights)
    want = _plain_penalty(zs, stacks, weights)
    assert got.shape == () and got.dtype == torch.float64
    assert got.grad_fn.name() == "_ImagePenaltyBackward"
    grads = torch.autograd.grad(1.5 * got, zs)
    want_grads = torch.autograd.grad(1.5 * want, zs)
    for a, b in zip((got, *grads), (want, *want_grads)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["gather", "sparse"])
def test_image_penalty_float32(kind):
    rng = np.random.default_rng(5)
    stacks = [_stack(rng, 2, 5, kind), _stack(rng, 3, 4, kind)]
    torch.manual_seed(5)
    zs = _images(stacks, 4, torch.float32)
    weights = (0.3, 0.7, 1e-12, 1.0)
    got = image_penalty(zs, stacks, *weights)
    want = _plain_penalty(zs, stacks, weights)
    assert got.dtype == torch.float32
    for a, b in zip((got, *torch.autograd.grad(got, zs)),
                    (want, *torch.autograd.grad(want, zs))):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_image_penalty_second_derivatives():
    rng = np.random.default_rng(6)
    stacks = [_stack(rng, 2, 4, "gather"), _stack(rng, 2, 3, "sparse")]
    zs = _images(stacks, 3)
    weights = (0.4, 0.6, 1e-9, 2.0)

    def hessian_vector(penalty):
        grads = torch.autograd.grad(penalty(zs, stacks), zs, create_graph=True)
        return torch.autograd.grad(sum((g * g).sum() for g in grads), zs)

    got = hessian_vector(lambda z, s: image_penalty(z, s, *weights))
    want = hessian_vector(lambda z, s: _plain_penalty(z, s, weights))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-10)


def test_image_penalty_refuses_dense_actions_bad_weights_and_mismatched_images():
    rng = np.random.default_rng(7)
    gather, dense = _stack(rng, 2, 3, "gather"), _stack(rng, 2, 9, "dense")
    with pytest.raises(ValueError, match="dense matrix"):
        image_penalty([torch.zeros(2, 9), torch.zeros(2, 27)], [gather, dense], 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"lie_weight must be a finite number >= 0, got -1\.0"):
        image_penalty([torch.zeros(2, 9)], [gather], -1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="factor must be a finite number >= 0, got nan"):
        image_penalty([torch.zeros(2, 9)], [gather], 1.0, 1.0, 0.0, float("nan"))
    with pytest.raises(ValueError, match="one number of rows"):
        image_penalty([torch.zeros(2, 9), torch.zeros(3, 9)], [gather, gather], 1.0, 1.0, 0.0)
