"""torch.compile and torch.export of equivariant layers: one graph, no recompiles, same numbers.

The gather that builds an orbit-basis weight is an autograd.Function with a custom jvp in eager
mode, which Dynamo cannot trace; under compile it is a custom operator or plain ops, and the
gather indices are buffers, so compiled code neither breaks its graph nor guards on a cache.
"""

from __future__ import annotations

import copy

import pytest
import torch

import equirelax as er
from equirelax.groups import symmetric
from equirelax.nn import EquivariantLinear, EquivariantMLP
from equirelax.reps import natural, regular, trivial
from tests.helpers.compiling import CountingBackend
from tests.helpers.random_layers import randomised

pytestmark = pytest.mark.usefixtures("fresh_dynamo")  # a fixture of tests/conftest.py

G = symmetric(3)


def linear() -> EquivariantLinear:
    return EquivariantLinear(2 * regular(G), 2 * regular(G))


def mlp() -> EquivariantMLP:
    return EquivariantMLP(natural(G), [2 * regular(G), regular(G)], trivial(G))


def blockwise() -> EquivariantLinear:
    """A layer between O(3) reps in irreps form: applied block by block (no dense weight)."""
    O3 = er.groups.O(3)
    scalar = er.reps.standard_irrep(O3, er.reps.IrrepLabel(0))
    vector = er.reps.vector(O3)
    layer = EquivariantLinear(3 * scalar + 2 * vector + scalar, 2 * scalar + 3 * vector)
    assert layer.blockwise
    return layer


def blockwise_so2() -> EquivariantLinear:
    """SO(2) irreps of frequency 1: blocks of two basis maps each (I and the quarter turn).

    Not cheaper than the dense weight (the commutant is 2-dimensional), so the layer would not
    choose blocks itself: they are switched on to compile the general block path.
    """
    S = er.groups.SO(2)
    layer = EquivariantLinear(4 * er.reps.vector(S) + trivial(S), 3 * er.reps.vector(S))
    assert not layer.blockwise
    layer.blockwise = True
    return layer


MODELS = {"linear": linear, "mlp": mlp, "blockwise": blockwise, "blockwise SO(2)": blockwise_so2}


def inputs(model: torch.nn.Module, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    return torch.randn(5, model.rep_in.dim, dtype=dtype,
                       generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_forward_is_one_graph(make, mode):
    model = randomised(make()).train(mode == "train")
    explained = torch._dynamo.explain(model)(inputs(model, torch.float32))
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_no_recompiles_for_repeated_calls_and_train_eval_switches(make):
    model = randomised(make())
    # a cold device cache in the hom space must not matter: forward reads no cache
    for m in model.modules():
        if isinstance(m, EquivariantLinear):
            m.hom._device_cache.clear()
    backend = CountingBackend()
    net = torch.compile(model, backend=backend)
    x = inputs(model, torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        model.train()
        for _ in range(3):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for _ in range(3):
                net(x)
    assert backend.graphs == 2  # one per mode, each compiled once


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)],
                         ids=["float64", "float32"])
def test_inductor_outputs_and_gradients_equal_eager(make, dtype, tol):
    model = randomised(make()).to(dtype)
    twin = copy.deepcopy(model)
    net = torch.compile(twin)
    x = inputs(model, dtype)
    y, y_c = model(x), net(x)
    torch.testing.assert_close(y_c, y, rtol=tol, atol=tol)
    y.pow(2).sum().backward()
    y_c.pow(2).sum().backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=tol, atol=tol, msg=name)
    model.eval()
    twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=tol, atol=tol)


def test_inductor_gradient_of_a_large_orbit_layer():
    # many entries per orbit: the gather is the custom operator and its labels are spread
    from equirelax.homspace.space import OPAQUE_GATHER_ABOVE

    n = 200
    layer = randomised(EquivariantLinear(natural(symmetric(n)), natural(symmetric(n)))).double()
    assert layer.hom.spread > 1 and n * n >= OPAQUE_GATHER_ABOVE
    twin = copy.deepcopy(layer)
    x = torch.randn(3, n, dtype=torch.float64)
    layer(x).pow(2).sum().backward()
    torch.compile(twin)(x).pow(2).sum().backward()
    for p, q in zip(layer.parameters(), twin.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_torch_export_gives_the_eager_outputs_with_plain_aten_ops(make, mode):
    model = randomised(make()).train(mode == "train")
    program = torch.export.export(model, (inputs(model, torch.float32),))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    # portable: the program runs without equirelax's custom operators registered
    assert not any("equirelax" in t for t in targets), targets
    x = inputs(model, torch.float32, seed=2)  # other values than those traced
    # eager cached inference of a small blockwise layer takes the cached dense weight, the
    # program the blocks: the same map, summed in another order
    blockwise = mode == "eval" and any(getattr(m, "blockwise", False) for m in model.modules())
    tol = 1e-5 if blockwise else 0.0
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=tol, atol=tol)


def test_gather_indices_are_buffers_outside_the_state_dict_and_shared_by_copies():
    layer = linear()
    names = {name for name, _ in layer.named_buffers()}
    assert names == {"weight_index", "bias_index"}
    assert not names & set(layer.state_dict())
    twin = copy.deepcopy(layer)
    assert twin.weight_index is layer.weight_index  # read-only: not duplicated
    assert twin.coefficients is not layer.coefficients
    meta = copy.deepcopy(layer).to("meta")
    assert meta.weight_index.device.type == "meta"
    assert layer.weight_index.device.type == "cpu"


def test_block_hom_layers_have_no_gather_buffers():
    S = er.groups.SO(3)
    layer = EquivariantLinear(er.reps.vector(S), er.reps.vector(S))
    assert layer.weight_index is None and layer.bias_index is None
    y = layer(torch.randn(2, 3))
    assert y.shape == (2, 3)


# -- compiled inference: the operator with its own weight cache --------------------------------
def _sgd_step(layer: EquivariantLinear) -> None:
    layer.train()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(3, layer.in_features)).pow(2).sum().backward()
    opt.step()
    layer.eval()


def _load_state_dict(layer: EquivariantLinear) -> None:
    layer.load_state_dict(randomised(linear(), seed=7).state_dict())


def _assign_data(layer: EquivariantLinear) -> None:
    layer.coefficients.data = torch.randn_like(layer.coefficients)


EDITS = {
    "data.mul_": lambda layer: layer.coefficients.data.mul_(2.0),
    "data[0] = ": lambda layer: layer.coefficients.data.__setitem__(0, 5.0),
    "data = t": _assign_data,
    "bias data.add_": lambda layer: layer.bias_coefficients.data.add_(1.0),
    "copy_ under no_grad": lambda layer: layer.coefficients.detach().copy_(
        torch.randn_like(layer.coefficients)),
    "load_state_dict": _load_state_dict,
    "SGD step": _sgd_step,
}


@pytest.mark.parametrize("how", EDITS, ids=EDITS.keys())
def test_compiled_inference_never_serves_stale_weights(how):
    from equirelax.nn.linear import _INFERENCE_CACHE

    layer = randomised(linear()).eval()
    net = torch.compile(layer, backend="aot_eager")
    x = inputs(layer, torch.float32)
    with torch.no_grad():
        before = net(x)
        assert id(layer.coefficients) in _INFERENCE_CACHE  # the operator's cache is in use
        torch.testing.assert_close(before, layer(x), atol=0, rtol=0)
    EDITS[how](layer)
    with torch.no_grad():
        after = net(x)
        w, b = layer._materialise()
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, torch.nn.functional.linear(x, w, b), atol=0, rtol=0)


def test_compiled_inference_is_one_graph_and_its_cache_goes_with_training_and_the_layer():
    import gc

    from equirelax.nn.linear import _INFERENCE_CACHE

    model = randomised(mlp()).eval()
    x = inputs(model, torch.float32)
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0
    torch._dynamo.reset()
    keys = [id(m.coefficients) for m in model.linears]
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, backend="aot_eager")(x), model(x),
                                   atol=0, rtol=0)
    assert all(k in _INFERENCE_CACHE for k in keys)
    model.train()  # stale from the first step on: dropped
    assert not any(k in _INFERENCE_CACHE for k in keys)
    model.eval()
    with torch.no_grad():
        torch.compile(model, backend="aot_eager")(x)
    torch._dynamo.reset()
    del model
    gc.collect()
    assert not any(k in _INFERENCE_CACHE for k in keys)  # freed with the coefficients


def test_compiled_eval_with_gradients_builds_the_weight_in_the_graph():
    from equirelax.nn.linear import _INFERENCE_CACHE

    layer = randomised(linear()).eval()
    x = inputs(layer, torch.float32).requires_grad_(True)
    y = torch.compile(layer, backend="aot_eager")(x)
    y.sum().backward()
    assert id(layer.coefficients) not in _INFERENCE_CACHE
    assert layer.coefficients.grad is not None and x.grad is not None


def test_compiled_inference_runs_every_layer_through_the_cached_operator():
    from equirelax.nn.linear import _INFERENCE_CACHE

    # 5 -> 480 and 480 -> 1 too (their traced gathers cost more than the operator's call),
    # with the same outputs as eager inference, bit for bit
    big = 4 * regular(symmetric(5))
    model = randomised(EquivariantMLP(natural(symmetric(5)), [big, big], trivial(symmetric(5))))
    model.eval()
    x = torch.randn(3, model.rep_in.dim, dtype=torch.float64)
    model.double()
    with torch.no_grad():
        assert all(m._compiled_inference() for m in model.linears)
        torch.testing.assert_close(torch.compile(model, backend="aot_eager")(x), model(x),
                                   atol=0, rtol=0)
    assert all(id(m.coefficients) in _INFERENCE_CACHE for m in model.linears)


def test_compiled_inference_sees_data_replaced_by_a_view_of_the_same_storage():
    layer = randomised(linear()).eval()
    net = torch.compile(layer, backend="aot_eager")
    x = inputs(layer, torch.float32)
    with torch.no_grad():
        before = net(x)
        doubled = torch.cat([layer.coefficients.detach(), torch.randn_like(layer.coefficients)])
        layer.coefficients.data = doubled[layer.coefficients.shape[0]:]  # same dtype and shape
        after = net(x)
        w, b = layer._materialise()
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, torch.nn.functional.linear(x, w, b), atol=0, rtol=0)


def test_compiled_inference_with_inductor_freezing_folds_the_traced_weight():
    from torch._inductor import config as inductor_config

    from equirelax.homspace.space import inductor_freezes
    from equirelax.nn.linear import _INFERENCE_CACHE

    model = randomised(mlp()).eval()
    x = inputs(model, torch.float32)
    assert not inductor_freezes()
    with torch.no_grad(), inductor_config.patch(freezing=True):
        assert inductor_freezes()
        assert not any(m._compiled_inference() for m in model.linears)
        y = torch.compile(model)(x)
    torch.testing.assert_close(y, model(x), atol=1e-5, rtol=1e-5)
    assert not any(id(m.coefficients) in _INFERENCE_CACHE for m in model.linears)


def test_torch_export_of_a_large_layer_in_inference_gives_plain_aten_ops():
    # compiled inference would use the cached operator; an exported program must not (it
    # runs without equirelax's operators)
    big = 4 * regular(symmetric(5))
    model = randomised(EquivariantMLP(big, [big], trivial(symmetric(5)))).eval()
    x = torch.randn(3, big.dim)
    with torch.no_grad():
        program = torch.export.export(model, (x,))
        torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=1e-5)
    namespaces = {str(n.target).split(".")[0] for n in program.graph.nodes
                  if n.op == "call_function"}
    assert namespaces == {"aten"}
