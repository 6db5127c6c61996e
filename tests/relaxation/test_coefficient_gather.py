"""W_eq as one gather of the coefficients (relaxation.expansion) and the output-only fused node
(relaxation.fused.relaxed_affine): the gather is the hom space's own map (values and adjoint)
on orbit and Schur-block spaces, refused where an entry mixes coefficients, and a relaxed layer
whose penalties are recorded apart (or not at all) has the plain path's output and gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.relaxation import relax
from equirelax.relaxation.expansion import CoefficientGather
from equirelax.relaxation.fused import new_step
from tests.helpers.rep_strategies import matrix_rep_pairs, permutation_rep_pairs
from tests.relaxation.test_fused_training import THETAS, _gradients, _layer


def _agrees_with_space(space) -> None:
    gather = CoefficientGather.of(space.weight, space.dim)
    assert gather is not None
    torch.manual_seed(0)
    c = torch.randn(space.dim, dtype=torch.float64, requires_grad=True)
    w = space.weight(c)
    torch.testing.assert_close(gather.expand_add(c.detach()), w.detach().reshape(-1), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(gather.expand(c.detach()), w.detach().reshape(-1), rtol=0,
                               atol=1e-12)
    other = torch.randn(w.shape, dtype=torch.float64)
    torch.testing.assert_close(gather.expand_add(c.detach(), other, -0.7),
                               (w.detach() - 0.7 * other).reshape(-1), rtol=1e-12, atol=1e-12)
    g = torch.randn(w.shape, dtype=torch.float64)
    (want,) = torch.autograd.grad(w, c, g)
    torch.testing.assert_close(gather.adjoint(g), want, rtol=1e-12, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(permutation_rep_pairs())
def test_gather_is_the_orbit_space_map(reps):
    space = er.hom(*reps)
    if space.dim:
        _agrees_with_space(space)


@settings(max_examples=20, deadline=None)
@given(matrix_rep_pairs(("O(3)", "SO(3)")))
def test_gather_is_the_block_space_map(reps):
    space = er.hom(*reps)
    if space.dim:
        _agrees_with_space(space)


def test_gather_of_a_map_without_coefficients_is_zero():
    S = er.groups.SO(3)
    bias = er.nn.EquivariantLinear(er.reps.trivial(S), er.reps.vector(S)).bias_space
    gather = CoefficientGather.of(bias.weight, bias.dim)
    assert bias.dim == 0 and gather is not None
    empty = torch.zeros(0, dtype=torch.float64)
    assert torch.equal(gather.expand_add(empty), torch.zeros(3, dtype=torch.float64))
    assert gather.adjoint(torch.ones(3, dtype=torch.float64)).shape == (0,)


@pytest.mark.parametrize("mixing", ["dense", "sum of two"])
def test_gather_is_refused_where_an_entry_mixes_coefficients(mixing):
    rng = np.random.default_rng(0)
    if mixing == "dense":
        m = torch.from_numpy(rng.normal(size=(6, 4)))
    else:  # every entry one coefficient but the last, which is the sum of two
        m = torch.zeros(6, 4, dtype=torch.float64)
        m[torch.arange(4), torch.arange(4)] = 1.0
        m[5, 1] = m[5, 2] = 1.0
    assert CoefficientGather.of(lambda c: m @ c, 4) is None


def test_gather_is_refused_where_coefficients_have_too_many_entries():
    # one coefficient for a 200 x 200 weight: a scatter-add into one slot
    assert CoefficientGather.of(lambda c: c.expand(200 * 200), 1) is None


# -- the output-only node ----------------------------------------------------------------------
def _check_without_penalties(rep_in, rep_out, theta, seed):
    """Every gradient of a relaxed layer recording no penalties, eagerly (the output node) and
    under ``torch.func.grad`` (ordinary operations), to 1e-10 in float64."""
    r = _layer(rep_in, rep_out, theta, {})
    r.record_penalties = False
    torch.manual_seed(seed + 100)
    x = torch.randn(12, rep_in.dim, dtype=torch.float64)
    g = torch.randn(12, rep_out.dim, dtype=torch.float64)
    node = _gradients(r, x, g, (0.0, 0.0), seed, plain=False)
    plain = _gradients(r, x, g, (0.0, 0.0), seed, plain=True)
    assert node.keys() == plain.keys()
    for name in plain:
        torch.testing.assert_close(node[name], plain[name], rtol=1e-10, atol=1e-10, msg=name)


@settings(max_examples=15, deadline=None)
@given(permutation_rep_pairs(quotient=False), THETAS.filter(bool), st.integers(0, 2**16))
def test_output_node_gradients_equal_plain_path_on_permutation_reps(reps, theta, seed):
    _check_without_penalties(*reps, theta, seed)


@settings(max_examples=10, deadline=None)
@given(matrix_rep_pairs(("O(3)", "SO(3)")), THETAS.filter(bool), st.integers(0, 2**16))
def test_output_node_gradients_equal_plain_path_on_o3_and_so3_reps(reps, theta, seed):
    _check_without_penalties(*reps, theta, seed)


@pytest.mark.parametrize("fixture", ["s4_model", "so3_model"])
def test_a_model_without_penalties_takes_the_output_node(fixture, request):
    relaxed = relax(request.getfixturevalue(fixture), total_steps=10, lie_weight=0.0,
                    norm_weight=0.0).train()
    relaxed.t = 4
    relaxed.step()
    layer = next(iter(relaxed.relaxed_layers().values()))
    x = torch.randn(7, layer.rep_in.dim, dtype=torch.float64)
    assert layer(x).grad_fn.name() == "_RelaxedAffineBackward"
    with torch.no_grad():
        assert layer(x).grad_fn is None


def test_second_derivatives_through_the_output_node():
    """create_graph=True: a gradient penalty has the gradients of ordinary operations."""
    S = er.groups.SO(3)
    v, t = er.reps.vector(S), er.reps.trivial(S)
    torch.manual_seed(0)
    layer = er.nn.EquivariantLinear(v + t, 2 * v + t).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    r = er.relaxation.Relaxed(layer, init_std=0.5).double().train()
    r.record_penalties = False
    r.theta = 0.7
    x = torch.randn(9, 4, dtype=torch.float64)

    def grads(node: bool) -> list[torch.Tensor]:
        for p in r.parameters():
            p.grad = None
        if not node:
            r._eager_node = lambda *args: False
        new_step()
        xg = x.clone().requires_grad_()
        y = r(xg)
        assert (y.grad_fn.name() == "_RelaxedAffineBackward") == node
        (dx,) = torch.autograd.grad(y.tanh().sum(), xg, create_graph=True)
        dx.pow(2).sum().backward()
        r.__dict__.pop("_eager_node", None)
        return [p.grad for p in r.parameters()]

    for a, b in zip(grads(True), grads(False)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_gathers_are_not_pickled_and_found_again(so3_model):
    import copy
    import pickle

    relaxed = relax(so3_model, total_steps=10, penalty_sketch=3).train()
    relaxed.t = 4
    relaxed.step()
    layer = next(iter(relaxed.relaxed_layers().values()))
    assert layer._coefficient_gathers() is not None
    loaded = pickle.loads(pickle.dumps(layer))
    assert "_gathers" not in loaded.__dict__
    x = torch.randn(6, layer.rep_in.dim, dtype=torch.float64)
    for other in (loaded, copy.deepcopy(layer)):
        other.record_penalties = False
        layer.record_penalties = False
        y = other(x)
        assert y.grad_fn.name() == "_RelaxedAffineBackward"
        torch.testing.assert_close(y, layer(x), rtol=0, atol=0)
