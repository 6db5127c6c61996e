"""The lean partition path (every order <= 1: copies of V and trivial summands) and the fold
of orbit coefficients: same map as the dense path, exact gradients, exactly equivariant."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import equirelax.homspace.partition as partition
from equirelax.groups import symmetric
from equirelax.homspace.partition import PartitionHomSpace
from equirelax.homspace.space import OrbitHomSpace
from equirelax.reps import natural, trivial
from tests.helpers.random_layers import dense_twin

pytestmark = pytest.mark.usefixtures("fresh_dynamo")  # a fixture of tests/conftest.py

G = symmetric(6)
V, T = natural(G), trivial(G)

LEAN = {
    "V -> V": (V, V),
    "3V -> 2V": (3 * V, 2 * V),
    "V + T -> V + T": (V + T, V + T),
    "T + 2V + T -> V + 3T": (T + 2 * V + T, V + 3 * T),
    "2T -> 3V": (2 * T, 3 * V),
    "V + T -> T + 2V + T": (V + T, T + 2 * V + T),
    "2V -> T": (2 * V, T),
    "T -> 2T": (T, 2 * T),
}


@pytest.mark.parametrize("case", LEAN, ids=LEAN.keys())
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_lean_path_equals_the_dense_path(case, dtype, tol):
    rep_in, rep_out = LEAN[case]
    fast, dense = dense_twin(rep_in, rep_out, dtype, structured=True)
    assert fast.hom.lean
    x = torch.randn(2, 3, rep_in.dim, dtype=dtype)  # leading batch axes
    grad = torch.randn(2, 3, rep_out.dim, dtype=dtype)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    ys = [layer(xi) for layer, xi in zip((fast, dense), xs)]
    assert ys[0].shape == (2, 3, rep_out.dim)
    torch.testing.assert_close(ys[0], ys[1], atol=tol, rtol=tol)
    for y in ys:
        y.backward(grad)
    torch.testing.assert_close(xs[0].grad, xs[1].grad, atol=tol, rtol=tol)
    for p, q in zip(fast.parameters(), dense.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=10 * tol, rtol=tol)


@pytest.mark.parametrize("case", ["3V -> 2V", "T + 2V + T -> V + 3T", "V -> V"])
def test_lean_path_gradients_pass_gradcheck(case):
    rep_in, rep_out = LEAN[case]
    space = PartitionHomSpace(rep_in, rep_out)
    c = torch.randn(space.dim, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, space.shape[1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(space.apply, (c, x))
    assert torch.autograd.gradgradcheck(space.apply, (c, x))


@pytest.mark.parametrize("case", LEAN, ids=LEAN.keys())
def test_lean_path_is_exactly_equivariant(case):
    rep_in, rep_out = LEAN[case]
    fast, _ = dense_twin(rep_in, rep_out, torch.float64, seed=1, structured=True)
    x = torch.randn(5, rep_in.dim, dtype=torch.float64)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        y = fast(x)
        for _ in range(4):
            g = rng.permutation(6)
            m_in, m_out = (torch.from_numpy(rep.matrix(g)) for rep in (rep_in, rep_out))
            torch.testing.assert_close(fast(x @ m_in.T), y @ m_out.T, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "reps",
    [(3 * V + T, 2 * V + T), (2 * (V * V) + V, V * V + 2 * T)],
    ids=["lean", "generic"],
)
def test_the_gather_fold_equals_the_matrix_fold(monkeypatch, reps):
    """Above FOLD_DENSE_UP_TO coefficients the fold is a gather and weighted sum: the same
    folded coefficients, map and gradients as the (dim, dim) matrix."""
    space = PartitionHomSpace(*reps)
    c = torch.randn(space.dim, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, space.shape[1], dtype=torch.float64, requires_grad=True)
    matrix = space.index_tensors(torch.float64)
    assert matrix["fold_index"] is None
    monkeypatch.setattr(partition, "FOLD_DENSE_UP_TO", 0)
    gathered = space.index_tensors(torch.float64)
    assert gathered["fold_index"] is not None
    torch.testing.assert_close(
        space._fold(c, gathered), space._fold(c, matrix), atol=1e-12, rtol=0
    )
    dense = OrbitHomSpace(*reps).weight(c.detach())
    torch.testing.assert_close(space.apply(c, x, gathered), x @ dense.T, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(lambda c, x: space.apply(c, x, gathered), (c, x))


def test_lean_path_compiles_to_one_graph_and_vmaps():
    fast, _ = dense_twin(T + 2 * V, V + T, torch.float64, structured=True)
    x = torch.randn(5, fast.in_features, dtype=torch.float64)
    explained = torch._dynamo.explain(fast)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    compiled = torch.compile(copy.deepcopy(fast))
    torch.testing.assert_close(compiled(x), fast(x), atol=1e-12, rtol=0)
    per_row = torch.func.vmap(fast)(x)
    torch.testing.assert_close(per_row, fast(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("case", ["V + T -> T + 2V + T", "T + 2V + T -> V + 3T", "V -> V"])
def test_lean_bias_joins_the_copy_constants_and_apply_adds_any_bias(case):
    """The layer's bias is added inside the lean map (bias_fold puts it in type order);
    ``apply(..., bias=)`` adds the same b = fixed_space(rep_out).weight(bias) on any path."""
    rep_in, rep_out = LEAN[case]
    fast, dense = dense_twin(rep_in, rep_out, torch.float64, seed=3, structured=True)
    assert (fast.partition_bias_fold is None) == (case != "V + T -> T + 2V + T")
    x = torch.randn(4, rep_in.dim, dtype=torch.float64)
    torch.testing.assert_close(fast(x), dense(x), atol=1e-12, rtol=0)
    no_bias, _ = dense_twin(rep_in, rep_out, torch.float64, seed=3, bias=False, structured=True)
    b = dense.bias
    torch.testing.assert_close(no_bias(x) + b, dense(x), atol=1e-12, rtol=0)
    generic = PartitionHomSpace(V * V + V, rep_out)
    c = torch.randn(generic.dim, dtype=torch.float64)
    xg = torch.randn(3, generic.shape[1], dtype=torch.float64)
    torch.testing.assert_close(
        generic.apply(c, xg, bias=fast.bias_coefficients.detach()),
        generic.apply(c, xg) + b,
        atol=1e-12,
        rtol=0,
    )


def test_spaces_pickled_before_the_fold_are_rebuilt():
    space = PartitionHomSpace(V + T, T + 2 * V)
    old = {k: v for k, v in space.__dict__.items() if k not in ("lean_dims", "lean", "_fold_rows")}
    old["_device_cache"] = {}
    revived = PartitionHomSpace.__new__(PartitionHomSpace)
    revived.__setstate__(old)
    c = torch.randn(space.dim, dtype=torch.float64)
    x = torch.randn(2, space.shape[1], dtype=torch.float64)
    torch.testing.assert_close(revived.apply(c, x), space.apply(c, x), atol=0, rtol=0)
