"""torch.compile of relaxed models: one graph with its penalties, θ changes without recompiling,
and the compiled step computes what the eager one does."""

from __future__ import annotations

import copy

import pytest
import torch

import equirelax as er
from equirelax.groups import symmetric
from equirelax.nn import EquivariantMLP
from equirelax.reps import natural, regular, trivial
from tests.helpers.compiling import CountingBackend

pytestmark = pytest.mark.usefixtures("fresh_dynamo")  # a fixture of tests/conftest.py


def relaxed_mlp(penalty_method: str = "auto", dtype: torch.dtype = torch.float32,
                hidden: int = 2):
    G = symmetric(3)
    torch.manual_seed(0)
    reps = [2 * regular(G), regular(G)][:hidden]
    mlp = EquivariantMLP(natural(G), reps, trivial(G)).to(dtype)
    return er.relax(mlp, total_steps=20, lie_weight=1e-1, norm_weight=1e-1, free_bias=True,
                    penalty_method=penalty_method)


def so3_relaxed():
    S = er.groups.SO(3)
    v, t = er.reps.vector(S), er.reps.trivial(S)
    torch.manual_seed(0)
    mlp = EquivariantMLP(v + t, [3 * v + 2 * t], v, activation="silu")
    return er.relax(mlp, total_steps=20)


def loss_fn(relaxed):
    def loss(x: torch.Tensor) -> torch.Tensor:
        return relaxed(x).pow(2).mean() + relaxed.penalty()

    return loss


@pytest.mark.parametrize("method", ["data", "gram"])
def test_forward_and_penalty_are_one_graph(method):
    relaxed = relaxed_mlp(method)
    relaxed.step()  # θ > 0: the free terms and the penalties are all there
    explained = torch._dynamo.explain(loss_fn(relaxed))(torch.randn(6, 3))
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


def test_lie_group_relaxed_model_is_one_graph_and_compiles_once():
    relaxed = so3_relaxed()
    relaxed.step()
    for m in relaxed.modules():  # cold caches must not matter
        if hasattr(m, "hom"):
            m.hom._device_cache.clear()
    x = torch.randn(4, 4)
    explained = torch._dynamo.explain(loss_fn(relaxed))(x)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    torch._dynamo.reset()
    backend = CountingBackend()
    net = torch.compile(relaxed, backend=backend)
    for _ in range(3):
        (net(x).pow(2).mean() + relaxed.penalty()).backward()
        relaxed.step()
    assert backend.graphs == 1


def test_schedule_steps_do_not_recompile():
    relaxed = relaxed_mlp()
    backend = CountingBackend()
    net = torch.compile(relaxed, backend=backend)
    opt = torch.optim.Adam(relaxed.parameters(), lr=1e-2)
    x = torch.randn(6, 3)
    thetas = []
    for _ in range(2):
        relaxed.train()
        for _ in range(5):
            opt.zero_grad()
            (net(x).pow(2).mean() + relaxed.penalty()).backward()
            opt.step()
            thetas.append(relaxed.theta)
            relaxed.step()
        relaxed.eval()
        with torch.no_grad():
            net(x)
            net(x)
    assert thetas[0] == 0.0 and len(set(thetas)) == len(thetas)  # a new θ every step
    # θ = 0 (no free term), θ > 0, and eval: compiled once each, whatever θ's value
    assert backend.graphs == 3


@pytest.mark.slow  # inductor compiles forward and backward: 10-25 s on two shared cores
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)],
                         ids=["float64", "float32"])
def test_inductor_step_equals_eager(dtype, tol):
    relaxed = relaxed_mlp(dtype=dtype, hidden=1)  # small: inductor compiles for seconds
    for _ in range(3):
        relaxed.step()
    twin = copy.deepcopy(relaxed)
    net = torch.compile(twin)
    x = torch.randn(6, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    losses = []
    for model, forward in ((relaxed, relaxed), (twin, net)):
        loss = forward(x).pow(2).mean() + model.penalty()
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=tol, atol=tol)
    for (name, p), q in zip(relaxed.named_parameters(), twin.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=tol, atol=tol, msg=name)


def test_theta_survives_pickles_of_layers_saved_with_a_plain_attribute():
    import pickle

    relaxed = relaxed_mlp()
    layer = next(iter(relaxed.relaxed_layers().values()))
    layer.theta = 0.25
    state = layer.__getstate__()
    state["theta"] = state.pop("_theta")  # as pickled before θ was a property
    old = type(layer).__new__(type(layer))
    old.__setstate__(state)
    assert old.theta == 0.25 and old._theta_nonzero and float(old._theta_tensor) == 0.25
    assert pickle.loads(pickle.dumps(layer)).theta == 0.25


def test_compiled_inference_of_a_relaxed_model_is_the_exact_model():
    relaxed = relaxed_mlp()
    for _ in range(3):
        relaxed.step()
    relaxed.eval()  # projected_eval: θ = 0, the layers run alone
    x = torch.randn(6, 3)
    with torch.no_grad():
        explained = torch._dynamo.explain(relaxed)(x)
        assert explained.graph_break_count == 0
        torch._dynamo.reset()
        y = torch.compile(relaxed, backend="aot_eager")(x)
        torch.testing.assert_close(y, relaxed(x), atol=0, rtol=0)
        torch.testing.assert_close(y, er.harden(relaxed)(x), atol=0, rtol=0)
