"""The training forward of a fused relaxed dense layer as one autograd node (relaxation.fused):
the output, the penalty squares and every gradient equal the plain-operations path (the one
compiled code and ``torch.func`` transforms take), on random permutation groups and reps and
on O(3)/SO(3) reps; and one sketch S per step is shared by the layers sketching the same rows.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.relaxation import Relaxed, relax
from equirelax.relaxation import fused as fused_module
from equirelax.relaxation.fused import new_step, relaxed_linear, sketch_signs
from tests.helpers.rep_strategies import (
    matrix_rep_pairs,
    permutation_rep_pairs,
)

#: How the penalties see the rows: all of them, a few sampled, a sketch.
ROWS = [{}, {"penalty_rows": 5}, {"penalty_sketch": 3}]


def _layer(rep_in, rep_out, theta: float, options: dict, dtype=torch.float64) -> Relaxed:
    torch.manual_seed(0)
    layer = er.nn.EquivariantLinear(rep_in, rep_out).to(dtype)
    with torch.no_grad():  # a free term far from equivariant, and a non-zero bias
        for p in layer.parameters():
            p.normal_()
    r = Relaxed(layer, init_std=0.5, **options).to(dtype).train()
    r.penalty_method = "data"  # the Gram path is not fused
    r.theta = theta
    return r


def _loss(r: Relaxed, x: torch.Tensor, g: torch.Tensor, weights: tuple[float, float]
          ) -> torch.Tensor:
    """A loss with the output and the two penalty squares (weight 0: a penalty recorded but not
    in the loss)."""
    y = r(x)
    lie, norm = r.take_squares()
    loss = (y * g).sum()
    for w, sq in zip(weights, (lie, norm)):
        if w and sq is not None:
            loss = loss + w * sq
    return loss


def _gradients(r: Relaxed, x: torch.Tensor, g: torch.Tensor, weights, seed: int, plain: bool
               ) -> dict[str, torch.Tensor]:
    """Every parameter's gradient and x's, by the eager path (plain=False) or under
    ``torch.func.grad``, where the layer takes ordinary operations (plain=True)."""
    params = {k: v.detach() for k, v in r.named_parameters()}
    new_step()
    torch.manual_seed(seed)
    if plain:
        def f(params, x):
            return _loss(_Call(r, params), x, g, weights)

        grads, grad_x = torch.func.grad(f, argnums=(0, 1))(params, x)
        return {**grads, "x": grad_x}
    for p in r.parameters():
        p.grad = None
    x = x.clone().requires_grad_()
    _loss(r, x, g, weights).backward()
    return {**{k: v.grad for k, v in r.named_parameters()}, "x": x.grad}


class _Call:
    """``r`` called with the given parameters (torch.func.functional_call), whose penalty
    squares are taken from ``r`` itself."""

    def __init__(self, r: Relaxed, params: dict) -> None:
        self.r, self.params = r, params

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.r, self.params, (x,))

    def take_squares(self):
        return self.r.take_squares()


def _check(rep_in, rep_out, theta, options, weights, seed, dtype=torch.float64, tol=1e-10,
           lead=(12,)):
    r = _layer(rep_in, rep_out, theta, options, dtype)
    torch.manual_seed(seed + 100)
    x = torch.randn(*lead, rep_in.dim, dtype=dtype)
    g = torch.randn(*lead, rep_out.dim, dtype=dtype)
    fused = _gradients(r, x, g, weights, seed, plain=False)
    plain = _gradients(r, x, g, weights, seed, plain=True)
    assert fused.keys() == plain.keys()
    for name in plain:
        # not reached by the loss (W at θ = 0 without penalties): None eagerly, zeros in torch.func
        got = torch.zeros_like(plain[name]) if fused[name] is None else fused[name]
        torch.testing.assert_close(got, plain[name], rtol=tol, atol=tol, msg=name)


#: θ = 0, a θ below fused.PRESCALE_MIN_THETA (G formed as it is), and two above it (θ·G
#: formed by the product, the coefficients' gradient divided by θ).
THETAS = st.sampled_from([0.0, 1e-8, 0.3, -1.7])
WEIGHTS = st.sampled_from([(1.0, 1.0), (0.0, 2.0), (0.5, 0.0), (0.0, 0.0)])


@settings(max_examples=25, deadline=None)
@given(permutation_rep_pairs(quotient=False), THETAS, st.sampled_from(ROWS), WEIGHTS,
       st.integers(0, 2**16))
def test_fused_gradients_equal_plain_path_on_random_permutation_reps(reps, theta, options,
                                                                     weights, seed):
    _check(*reps, theta, options, weights, seed)


@settings(max_examples=15, deadline=None)
@given(matrix_rep_pairs(("O(3)", "SO(3)")), THETAS, st.sampled_from(ROWS), WEIGHTS,
       st.integers(0, 2**16))
def test_fused_gradients_equal_plain_path_on_o3_and_so3_reps(reps, theta, options, weights,
                                                             seed):
    _check(*reps, theta, options, weights, seed)


@pytest.mark.parametrize("options", ROWS)
def test_fused_gradients_in_float32(options):
    G = er.groups.symmetric(4)
    V, T = er.reps.natural(G), er.reps.trivial(G)
    _check(V + T, 2 * V + T, 0.4, options, (1.0, 1.0), 3, dtype=torch.float32, tol=1e-4)


@pytest.mark.parametrize("options", ROWS)
def test_fused_gradients_with_leading_axes(options):
    G = er.groups.O(3)
    v, t = er.reps.vector(G), er.reps.trivial(G)
    _check(v + t, 2 * v + t, 0.4, options, (1.0, 0.5), 4, lead=(3, 5))


def test_the_fused_node_is_used_in_training_and_not_otherwise():
    G = er.groups.symmetric(4)
    V = er.reps.natural(G)
    r = _layer(V, 2 * V, 0.5, {"penalty_sketch": 3})
    x = torch.randn(10, 4, dtype=torch.float64)
    assert r(x).grad_fn.name() == "_RelaxedLinearImagesBackward"
    assert r.take_squares()[0].grad_fn.name() == "_ImageSquaresBackward"
    with torch.no_grad():
        assert r(x).grad_fn is None
    assert r.take_squares() == (None, None)
    r.theta = 0.0  # the layer alone, its squares recorded apart
    assert r(x).grad_fn.name() != "_RelaxedLinearImagesBackward"
    r.take_squares()
    r.record_penalties = False
    r.theta = 0.5
    assert r(x).grad_fn.name() != "_RelaxedLinearImagesBackward"
    r.record_penalties = True
    r.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # F.linear in bfloat16, as before
        y = r(x.float())
    assert y.dtype == torch.bfloat16 and y.grad_fn.name() != "_RelaxedLinearImagesBackward"


def test_second_derivatives_through_the_fused_node():
    """create_graph=True: the backward evaluates the plain expression, so a gradient penalty
    (|d loss / d x|²) has the gradients of ordinary operations."""
    G = er.groups.symmetric(4)
    V, T = er.reps.natural(G), er.reps.trivial(G)
    r = _layer(V + T, 2 * V + T, 0.7, {"penalty_sketch": 3})
    torch.manual_seed(1)
    x = torch.randn(10, 5, dtype=torch.float64)

    def grads(fused: bool) -> list[torch.Tensor]:
        for p in r.parameters():
            p.grad = None
        if not fused:  # the plain operations (the penalty squares do not depend on x)
            r._fuses_penalties = lambda *args: False
        new_step()
        torch.manual_seed(2)
        xg = x.clone().requires_grad_()
        y = r(xg)
        lie, norm = r.take_squares()
        (dx,) = torch.autograd.grad(y.tanh().sum() + lie + norm, xg, create_graph=True)
        dx.pow(2).sum().backward()
        r.__dict__.pop("_fuses_penalties", None)
        return [p.grad for p in r.parameters()]

    for a, b in zip(grads(True), grads(False)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_relaxed_linear_refuses_rows_with_gradient():
    G = er.groups.symmetric(3)
    V = er.reps.natural(G)
    r = _layer(V, V, 0.5, {})
    w = r.free.weight
    rows = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="without gradient"):
        relaxed_linear(torch.randn(2, 3, dtype=torch.float64), w, None, w, 0.5, rows,
                       r.act_in.prepare(r.shape_in, identity=True),
                       r.act_out.prepare(r.shape_out))


# -- one sketch per step ----------------------------------------------------------------------
def test_sketch_signs_are_shared_within_a_step_and_fresh_for_each_step():
    new_step()
    a, b = object(), object()
    s = sketch_signs(a, 20, 4, torch.float64, torch.device("cpu"), None)
    assert sorted(s.unique().tolist()) == [-0.5, 0.5]  # ±1/√p
    assert sketch_signs(b, 20, 4, torch.float64, torch.device("cpu"), None) is s
    # another size, dtype or generator: another S
    assert sketch_signs(b, 20, 5, torch.float64, torch.device("cpu"), None).shape == (20, 5)
    assert sketch_signs(b, 20, 4, torch.float32, torch.device("cpu"), None) is not s
    gen = torch.Generator().manual_seed(0)
    assert sketch_signs(b, 20, 4, torch.float64, torch.device("cpu"), gen) is not s
    # a layer that comes back to the S it used starts a new step: a fresh draw
    fresh = sketch_signs(a, 20, 4, torch.float64, torch.device("cpu"), None)
    assert fresh is not s and not torch.equal(fresh, s)
    assert sketch_signs(b, 20, 4, torch.float64, torch.device("cpu"), None) is fresh
    new_step()  # as the penalties are taken
    assert sketch_signs(b, 20, 4, torch.float64, torch.device("cpu"), None) is not fresh


def test_layers_of_a_model_share_one_sketch_per_step(monkeypatch, s4_model):
    drawn: list[tuple[int, torch.Tensor]] = []

    def spy(owner, *args):
        s = sketch_signs(owner, *args)
        drawn.append((id(owner), s))
        return s

    monkeypatch.setattr("equirelax.relaxation.relaxed.sketch_signs", spy)
    relaxed = relax(s4_model, total_steps=10, penalty_sketch=3).train()
    relaxed.t = 3
    relaxed.step()
    x = torch.randn(30, 4, dtype=torch.float64)
    steps = []
    for _ in range(2):
        drawn.clear()
        relaxed(x)
        relaxed.penalty().backward()
        steps.append(list(drawn))
    layers = len(relaxed.relaxed_layers())
    for step in steps:
        assert len(step) == layers and len({owner for owner, _ in step}) == layers
        assert all(s is step[0][1] for _, s in step)  # every layer the same 30 x 3 S
    assert not torch.equal(steps[0][0][1], steps[1][0][1])
    assert not fused_module._SIGNS.by_key  # taking the penalties forgot it


# -- the sketched penalty of the fused node against its definition ----------------------------
def _fused_sketch_layer(kind: str, dtype: torch.dtype) -> Relaxed:
    """A fused relaxed layer (default dense free term, no bias) sketching its rows to 5."""
    if kind == "S5":
        G = er.groups.symmetric(5)
        rep_in, rep_out = er.reps.natural(G), er.reps.regular(G)
    else:
        S = er.groups.SO(3)
        v, t = er.reps.vector(S), er.reps.trivial(S)
        rep_in, rep_out = 2 * v + t, 3 * v + 2 * t
    torch.manual_seed(0)
    r = Relaxed(er.nn.EquivariantLinear(rep_in, rep_out), init_std=0.5,
                penalty_sketch=5).to(dtype).train()
    r.penalty_method = "data"
    r.theta = 0.6
    return r


def _squares_with_the_drawn_sketch(monkeypatch, r: Relaxed, x: torch.Tensor):
    """The fused node's (lie², norm²) of ``x`` and the sign matrix S it drew."""
    drawn = []

    def spy(owner, *args):
        s = sketch_signs(owner, *args)
        drawn.append(s)
        return s

    monkeypatch.setattr("equirelax.relaxation.relaxed.sketch_signs", spy)
    new_step()
    y = r(x)
    assert y.grad_fn.name() == "_RelaxedLinearImagesBackward"
    lie, norm = r.take_squares()
    assert len(drawn) == 1 and drawn[0].shape == (x.shape[0], 5)
    return lie, norm, drawn[0]


@pytest.mark.parametrize("kind", ["S5", "SO3"])
def test_fused_sketch_equals_the_definition_for_the_drawn_signs(monkeypatch, kind):
    """Σ_k ||W A_k Sᵀx − B_k W Sᵀx||² and ||W Sᵀx||², from the dense action matrices, for the
    S the layer drew (float64, to 1e-12)."""
    r = _fused_sketch_layer(kind, torch.float64)
    torch.manual_seed(3)
    x = torch.randn(40, r.rep_in.dim, dtype=torch.float64)
    lie, norm, s = _squares_with_the_drawn_sketch(monkeypatch, r, x)
    w = r.free.weight.detach()
    rows = s.T @ x
    wx = rows @ w.T
    want_lie = sum(
        ((rows @ torch.from_numpy(np.asarray(a)).T) @ w.T
         - wx @ torch.from_numpy(np.asarray(b)).T).pow(2).sum()
        for a, b in zip(r.act_in.matrices, r.act_out.matrices))
    torch.testing.assert_close(lie.detach(), want_lie, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(norm.detach(), wx.pow(2).sum(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["S5", "SO3"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_sketch_is_exactly_zero_for_an_equivariant_free_term(monkeypatch, kind, dtype):
    r = _fused_sketch_layer(kind, dtype)
    with torch.no_grad():
        w = er.hom(r.rep_in, r.rep_out).project(r.free.weight.double())
        r.free.weight.copy_(w.to(dtype))
    x = torch.randn(40, r.rep_in.dim, dtype=dtype)
    lie, norm, _ = _squares_with_the_drawn_sketch(monkeypatch, r, x)
    lie, norm = float(lie.detach()), float(norm.detach())
    assert norm > 1e-2
    # zero up to the round-off of the projection and of the products (sums in another order)
    assert lie < (1e-20 if dtype == torch.float64 else 1e-8) * norm


# -- the penalty products on one thread ---------------------------------------------------------
def test_penalty_threads_chooses_one_thread_only_for_small_products_on_the_cpu(monkeypatch):
    cpu, small = torch.device("cpu"), fused_module.ONE_THREAD_BELOW_MACS - 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert fused_module.penalty_threads(cpu, small, enabled=True) == 4
    assert fused_module.penalty_threads(cpu, small, enabled=False) is None
    assert fused_module.penalty_threads(cpu, small + 1, enabled=True) is None
    assert fused_module.penalty_threads(torch.device("meta"), small, enabled=True) is None
    monkeypatch.setattr(fused_module, "ONE_THREAD_PENALTIES", True)  # the default: the flag
    assert fused_module.penalty_threads(cpu, small) == 4
    monkeypatch.setattr(fused_module, "ONE_THREAD_PENALTIES", False)
    assert fused_module.penalty_threads(cpu, small) is None
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # nothing to narrow
    assert fused_module.penalty_threads(cpu, small, enabled=True) is None


def test_the_rule_is_on_exactly_where_idle_threads_sleep():
    passive = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
    assert fused_module.ONE_THREAD_PENALTIES is passive


@pytest.mark.parametrize("kind", ["S5", "SO3"])
def test_the_rule_runs_the_penalty_products_on_one_thread_with_the_same_results(monkeypatch,
                                                                              kind):
    """With the rule on the node narrows torch to one thread around its penalty products,
    forward and backward, restores the count, and computes the same squares and gradients."""
    r = _fused_sketch_layer(kind, torch.float64)
    torch.manual_seed(5)
    x = torch.randn(40, r.rep_in.dim, dtype=torch.float64)
    g = torch.randn(40, r.rep_out.dim, dtype=torch.float64)
    threads = torch.get_num_threads()
    original = torch.set_num_threads
    results, calls = {}, []
    for rule in (False, True):
        monkeypatch.setattr(fused_module, "ONE_THREAD_PENALTIES", rule)
        monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
        monkeypatch.setattr(torch, "set_num_threads", calls.append)
        grads = _gradients(r, x, g, (1.0, 0.5), seed=7, plain=False)
        new_step()
        torch.manual_seed(7)
        lie, norm = (r(x), r.take_squares())[1]
        monkeypatch.setattr(torch, "set_num_threads", original)
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        results[rule] = {**grads, "lie": lie.detach(), "norm": norm.detach()}
        # off: never touched; on: one thread and back, in the forward and in the backward,
        # then once more in the second forward
        assert calls == ([] if not rule else [1, 3, 1, 3, 1, 3]), calls
    for name, want in results[False].items():
        torch.testing.assert_close(results[True][name], want, rtol=1e-12, atol=1e-12, msg=name)
    assert torch.get_num_threads() == threads


def test_the_thread_count_is_restored_when_the_penalty_products_fail(monkeypatch):
    r = _fused_sketch_layer("S5", torch.float64)
    monkeypatch.setattr(fused_module, "ONE_THREAD_PENALTIES", True)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)

    def broken(rows):
        raise RuntimeError("action failed")

    x = torch.randn(10, r.rep_in.dim, dtype=torch.float64)
    w = r.free.weight.detach()
    stack = _BrokenStack(broken)
    with pytest.raises(RuntimeError, match="action failed"):
        relaxed_linear(x, torch.zeros_like(w), None, w, 0.5, None, stack, stack,
                       sketch=torch.ones(10, 2, dtype=torch.float64))
    assert calls == [1, 3]


class _BrokenStack:
    """A stacked action of two matrices whose application fails."""

    k = 2

    def __init__(self, apply) -> None:
        self.apply = apply
