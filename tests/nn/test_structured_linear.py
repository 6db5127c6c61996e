"""EquivariantLinear applied by partitions (S_n tensor powers): same map as the dense path,
exactly equivariant, no dense weight in training or inference, compiled as one graph."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.groups import dihedral, symmetric
from equirelax.homspace.partition import PartitionHomSpace, tensor_orders
from equirelax.homspace.space import OrbitHomSpace
from equirelax.nn import EquivariantLinear
from equirelax.reps import natural, regular, trivial
from tests.helpers.random_layers import dense_twin, randomised

pytestmark = pytest.mark.usefixtures("fresh_dynamo")  # a fixture of tests/conftest.py


def power(G, k):
    if k == 0:
        return trivial(G)
    return natural(G) if k == 1 else natural(G) * natural(G)


def summed(G, orders):
    return sum((power(G, k) for k in orders[1:]), power(G, orders[0]))


def act(rep, g: np.ndarray) -> np.ndarray:
    """The permutation of basis vectors by which g ∈ S_n acts on a sum of tensor powers:
    the entry at index (i_1, ..., i_k) of a summand moves to (g i_1, ..., g i_k)."""
    n = g.shape[0]
    images, offset = [], 0
    for part, k in zip(rep.parts, tensor_orders(rep)):
        image = np.zeros(1, dtype=np.int64)
        for _ in range(k):
            image = (image[:, None] * n + g[None, :]).reshape(-1)
        images.append(image + offset)
        offset += part.dim
    return np.concatenate(images)


def transform(x: torch.Tensor, perm: np.ndarray) -> torch.Tensor:
    """ρ(g) x: entry i of x goes to position perm[i]."""
    out = torch.empty_like(x)
    out[..., torch.from_numpy(perm)] = x
    return out


def test_act_is_the_representation():
    G = symmetric(4)
    rep = natural(G) + trivial(G) + natural(G) * natural(G)
    for g, m in zip(G.generators, rep.generator_matrices()):
        x = torch.randn(3, rep.dim, dtype=torch.float64)
        torch.testing.assert_close(transform(x, act(rep, g)), x @ torch.from_numpy(m).T)


def test_automatic_choice_by_cost():
    big = natural(symmetric(512))
    assert isinstance(EquivariantLinear(big, big).hom, PartitionHomSpace)
    small = natural(symmetric(8))
    assert isinstance(EquivariantLinear(small, small).hom, OrbitHomSpace)
    assert EquivariantLinear(small, small, structured=True).structured
    assert not EquivariantLinear(big, big, structured=False).structured
    reg = 64 * regular(dihedral(4))  # no S_n tensor structure: always dense
    assert not EquivariantLinear(reg, reg).structured


def test_structured_true_is_refused_where_it_cannot_apply():
    reg = regular(dihedral(4))
    with pytest.raises(ValueError, match="structured=True needs sums of tensor powers"):
        EquivariantLinear(reg, reg, structured=True)
    V = natural(symmetric(3))
    with pytest.raises(ValueError, match="n >= the sum of the orders"):
        EquivariantLinear(V * V, V * V, structured=True)
    with pytest.raises(TypeError, match="structured must be True, False or None"):
        EquivariantLinear(V, V, structured="yes")


ORDERS = st.lists(st.integers(0, 2), min_size=1, max_size=4)


@settings(max_examples=20)
@given(
    n=st.integers(4, 9),
    orders_in=ORDERS,
    orders_out=ORDERS,
    seed=st.integers(0, 2**16),
    bias=st.booleans(),
)
def test_outputs_and_gradients_equal_the_dense_path(n, orders_in, orders_out, seed, bias):
    G = symmetric(n)
    rep_in, rep_out = summed(G, orders_in), summed(G, orders_out)
    fast, dense = dense_twin(rep_in, rep_out, torch.float64, seed, bias=bias, structured=True)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, rep_in.dim, dtype=torch.float64, generator=gen)
    grad = torch.randn(2, 3, rep_out.dim, dtype=torch.float64, generator=gen)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    ys = [layer(xi) for layer, xi in zip((fast, dense), xs)]
    torch.testing.assert_close(ys[0], ys[1], atol=1e-12, rtol=0)
    for y in ys:
        y.backward(grad)
    torch.testing.assert_close(xs[0].grad, xs[1].grad, atol=1e-12, rtol=0)
    for p, q in zip(fast.parameters(), dense.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-10, rtol=1e-12)


CASES = {
    "V -> V": lambda G: (natural(G), natural(G)),
    "VV -> VV": lambda G: (natural(G) * natural(G), natural(G) * natural(G)),
    "mixed": lambda G: (
        2 * natural(G) + trivial(G) + natural(G) * natural(G),
        natural(G) * natural(G) + 3 * natural(G),
    ),
}


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_exactly_equivariant_over_every_element_of_s5(case):
    rep_in, rep_out = CASES[case](symmetric(5))
    layer = randomised(EquivariantLinear(rep_in, rep_out, structured=True))
    errors = er.testing.assert_equivariant(layer)
    assert errors[torch.float64] < 1e-12 and errors[torch.float32] < 1e-5


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_exactly_equivariant_for_large_n_on_generators_and_samples(case, dtype, tol):
    G = symmetric(40)
    rep_in, rep_out = CASES[case](G)
    layer = randomised(EquivariantLinear(rep_in, rep_out, structured=True)).to(dtype)
    x = torch.randn(3, rep_in.dim, dtype=dtype)
    rng = np.random.default_rng(0)
    elements = [*G.generators, *(rng.permutation(40) for _ in range(5))]
    with torch.no_grad():
        y = layer(x)
        for g in elements:
            moved = layer(transform(x, act(rep_in, g)))
            err = (moved - transform(y, act(rep_out, g))).abs().max() / y.abs().max()
            assert err < tol, (g, err)


def test_training_and_inference_never_build_the_dense_weight(monkeypatch):
    V = natural(symmetric(200))
    layer = EquivariantLinear(V * V, V * V)  # d = 40000: a dense weight would take 6.4 GB
    assert layer.structured

    def refuse(*args, **kwargs):
        raise AssertionError("the dense weight was built")

    monkeypatch.setattr(PartitionHomSpace, "weight", refuse)
    x = torch.randn(2, 40000)
    layer(x).pow(2).sum().backward()
    assert layer.coefficients.grad.shape == (15,)
    layer.eval()
    with torch.no_grad():
        assert layer(x).shape == (2, 40000)


def test_weight_and_export_on_demand_equal_the_dense_layer():
    G = symmetric(6)
    fast, dense = dense_twin(natural(G) + natural(G) * natural(G), natural(G) * natural(G),
                             structured=True)
    torch.testing.assert_close(fast.weight, dense.weight, atol=1e-12, rtol=0)
    torch.testing.assert_close(fast.bias, dense.bias, atol=0, rtol=0)
    x = torch.randn(4, fast.in_features, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fast.export()(x), dense(x), atol=1e-12, rtol=0)


def test_state_dicts_move_between_the_two_paths():
    G = symmetric(6)
    fast, dense = dense_twin(2 * natural(G), natural(G) * natural(G) + trivial(G), structured=True)
    assert fast.state_dict().keys() == dense.state_dict().keys()
    for key, value in fast.state_dict().items():
        torch.testing.assert_close(value, dense.state_dict()[key], atol=0, rtol=0)


def test_batch_and_set_shapes():
    """(batch, n) for V; (batch, n, n) for V ⊗ V, flattened; channels first (batch, C, n, n)
    for C copies; any leading axes."""
    n, C = 10, 3
    V = natural(symmetric(n))
    layer = randomised(EquivariantLinear(C * (V * V), V * V, structured=True)).double()
    x = torch.randn(4, C, n, n, dtype=torch.float64)
    y = layer(x.flatten(-3)).unflatten(-1, (n, n))
    assert y.shape == (4, n, n)
    g = np.random.default_rng(1).permutation(n)
    moved = layer(x[:, :, np.argsort(g)][:, :, :, np.argsort(g)].flatten(-3))
    torch.testing.assert_close(
        moved.unflatten(-1, (n, n)), y[:, np.argsort(g)][:, :, np.argsort(g)], atol=1e-12, rtol=0
    )
    lead = layer(x.flatten(-3).reshape(2, 2, -1))
    torch.testing.assert_close(lead.reshape(4, -1), y.flatten(-2), atol=1e-12, rtol=0)


def test_copies_share_the_partition_tensors_and_pickles_apply_the_same_map():
    V = natural(symmetric(6))
    layer = randomised(EquivariantLinear(V + V * V, 2 * (V * V), structured=True))
    twin = copy.deepcopy(layer)
    assert twin.partition_fold is layer.partition_fold
    assert twin.coefficients is not layer.coefficients
    clone = pickle.loads(pickle.dumps(layer))
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), layer(x), atol=0, rtol=0)
        torch.testing.assert_close(twin(x), layer(x), atol=0, rtol=0)
    assert "partition_fold" not in layer.state_dict()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_compiled_forward_is_one_graph_and_equals_eager(mode):
    V = natural(symmetric(6))
    layer = randomised(EquivariantLinear(2 * V + V * V, V * V + V, structured=True)).double()
    layer.train(mode == "train")
    x = torch.randn(5, layer.in_features, dtype=torch.float64)
    explained = torch._dynamo.explain(layer)(x)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1
    twin = copy.deepcopy(layer)
    compiled = torch.compile(twin)
    torch.testing.assert_close(compiled(x), layer(x), atol=1e-12, rtol=0)
    if mode == "train":
        layer(x).pow(2).sum().backward()
        compiled(x).pow(2).sum().backward()
        for p, q in zip(layer.parameters(), twin.parameters()):
            torch.testing.assert_close(q.grad, p.grad, atol=1e-10, rtol=1e-12)


@pytest.mark.parametrize("channels", [1, 2])
def test_torch_func_transforms_equal_eager(channels):
    """vmap over samples and grad through functional_call give the eager outputs and
    gradients (the order-2 assembly adds in place into tensors it made)."""
    V = natural(symmetric(5))
    layer = randomised(
        EquivariantLinear(channels * (V * V) + V, V * V + trivial(V.group), structured=True)
    ).double()
    x = torch.randn(4, layer.in_features, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. an in-place op with no batching rule
        torch.testing.assert_close(torch.func.vmap(layer)(x), layer(x), atol=1e-12, rtol=0)
    params = dict(layer.named_parameters())

    def loss(p, xs):
        return torch.func.functional_call(layer, p, (xs,)).pow(2).sum()

    grads = torch.func.grad(loss)(params, x)
    layer(x).pow(2).sum().backward()
    for name, p in layer.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, atol=1e-10, rtol=1e-12)
    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x[:, None])
    total = sum(per_sample["coefficients"])
    torch.testing.assert_close(total, grads["coefficients"], atol=1e-10, rtol=1e-12)


def test_an_unpickled_structured_layer_rebuilds_its_partition_buffers():
    """The partition buffers are derived from the hom space: a pickle carrying buffers of an
    older layout (here: scrambled) must not feed them to the forward."""
    import pickle

    v = er.reps.natural(er.groups.symmetric(6))
    layer = EquivariantLinear(2 * (v * v), v * v, structured=True).double()
    x = torch.randn(3, 2 * 36, dtype=torch.float64)
    want = layer(x)
    fold = layer.partition_fold
    layer.partition_fold = torch.flip(fold, dims=[0])  # an "old layout" the pickle carries
    twin = pickle.loads(pickle.dumps(layer))
    assert twin.partition_fold.dtype == torch.float64
    torch.testing.assert_close(twin(x), want, atol=1e-12, rtol=0)
