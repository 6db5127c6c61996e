"""Property tests: the three ways of evaluating the relaxation penalties agree on random groups
and representations, and all give exactly zero for an equivariant affine free term.

Random permutation groups (1-3 random generators in S_n, n <= 6) with random sums of natural,
trivial, quotient and regular reps; random sums of O(3) irreps. The reference is the generic
path (each generator applied to the rows, then the free term), which shares no code with the
weight-space (Gram) evaluation.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.relaxation import FreeLinear, Relaxed
from equirelax.relaxation.actions import LinearMap
from equirelax.relaxation.squares import linear_squares
from tests.helpers.rep_strategies import (
    action_matrix,
    matrix_rep_pairs,
    permutation_rep_pairs,
)


def _check(rep_in, rep_out, bias, rows, seed):
    torch.manual_seed(seed)
    layer = er.nn.EquivariantLinear(rep_in, rep_out).double()
    ways = {}
    for method in ("data", "gram"):
        ways[method] = Relaxed(layer, free_bias=bias, init_std=0.5).train()
        ways[method].penalty_method = method
    free = FreeLinear(rep_in.dim, rep_out.dim, bias=bias, init_std=0.5).double()
    ways["generic"] = Relaxed(layer, free=copy.deepcopy(free)).train()
    for r in ways.values():
        r.free.load_state_dict(free.state_dict())
    x = torch.randn(rows, rep_in.dim, dtype=torch.float64)
    squares = {}
    for name, r in ways.items():
        r(x)
        squares[name] = r.take_squares()
    lie_ref, norm_ref = squares["generic"]
    _check_gradients(squares, ways)
    for name in ("data", "gram"):
        lie, norm = squares[name]
        assert torch.allclose(norm, norm_ref, rtol=1e-9)
        assert (lie is None) == (lie_ref is None)
        if lie is not None:
            assert torch.allclose(lie, lie_ref, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        for r in ways.values():
            r.free.weight.copy_(er.hom(rep_in, rep_out).project(r.free.weight))
            if bias:
                fixed = er.homspace.fixed_space(rep_out)
                r.free.bias.copy_(fixed.project(r.free.bias.reshape(-1, 1)).reshape(-1))
    for r in ways.values():
        r(x)
        lie, _ = r.take_squares()
        assert lie is None or float(lie.detach()) < 1e-20


def _check_gradients(squares, ways):
    """The free weight's gradient of lie² + norm² agrees on every path (the data path of a free
    term without bias has a hand-written backward, relaxation.squares)."""
    grads = {}
    for name, (lie, norm) in squares.items():
        total = norm if lie is None else lie + norm
        (grads[name],) = torch.autograd.grad(total, ways[name].free.weight, retain_graph=True)
    for name in ("data", "gram"):
        assert torch.allclose(grads[name], grads["generic"], rtol=1e-9, atol=1e-10)


@settings(deadline=None)
@given(permutation_rep_pairs(), st.booleans(), st.integers(1, 40), st.integers(0, 2**16))
def test_penalty_paths_agree_on_random_permutation_reps(reps, bias, rows, seed):
    _check(*reps, bias, rows, seed)


@settings(deadline=None)
@given(matrix_rep_pairs(), st.booleans(), st.integers(1, 40), st.integers(0, 2**16))
def test_penalty_paths_agree_on_random_o3_reps(reps, bias, rows, seed):
    _check(*reps, bias, rows, seed)


@settings(deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.sampled_from(["gather", "sparse", "dense"]),
       st.integers(0, 2**16))
def test_linear_map_adjoint_is_the_transpose(rows, cols, kind, seed):
    """<m x, g> = <x, adjoint(g)> for gather, sparse and dense maps."""
    rng = np.random.default_rng(seed)
    m = action_matrix(rng, rows, cols, kind)
    linear = LinearMap(m)
    assert linear.gather == (kind == "gather")
    x = torch.from_numpy(rng.normal(size=(3, m.shape[1])))
    g = torch.from_numpy(rng.normal(size=(3, m.shape[0])))
    assert torch.allclose(linear.adjoint(g), g @ torch.from_numpy(m), atol=1e-12)
    assert torch.allclose((linear(x) * g).sum(), (x * linear.adjoint(g)).sum(), atol=1e-10)


def test_linear_squares_refuses_rows_with_gradient():
    G = er.groups.symmetric(3)
    act = Relaxed(er.nn.EquivariantLinear(er.reps.natural(G), er.reps.natural(G)))
    rows = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(ValueError, match="without gradient"):
        linear_squares(act.free.weight, rows, act.act_in.prepare((3,), identity=True),
                       act.act_out.prepare((3,)))
