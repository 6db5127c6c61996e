"""EquivariantMLP: equivariant for finite and Lie groups, Deep Sets as a special case, training."""

from __future__ import annotations

import pytest
import torch

import equirelax as er
from equirelax.groups import SO, O, cyclic, dihedral, symmetric
from equirelax.nn import EquivariantLinear, EquivariantMLP, NormActivation, PointwiseActivation
from equirelax.reps import natural, quotient, regular, standard, trivial, vector


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same torch RNG state, whatever ran before it."""
    torch.manual_seed(0)


def finite_models():
    S5, D4 = symmetric(5), dihedral(4)
    V, T = natural(S5), trivial(S5)
    return {
        "S5 invariant": EquivariantMLP(V, [2 * V + T, V * V], T, activation="tanh"),
        "S5 equivariant": EquivariantMLP(V + T, [3 * V], V, activation="silu"),
        "D4 regular": EquivariantMLP(natural(D4), [2 * regular(D4)], natural(D4) + trivial(D4)),
        "C6 quotient": EquivariantMLP(natural(cyclic(6)),
                                      [quotient(cyclic(6), cyclic(6).subgroup([[3, 4, 5, 0, 1,
                                                                               2]]))],
                                      trivial(cyclic(6)), activation="gelu"),
        "S4 standard hidden": EquivariantMLP(natural(symmetric(4)),
                                             [standard(symmetric(4)) + trivial(symmetric(4))],
                                             natural(symmetric(4))),
    }


def lie_models():
    so3, o3, so2 = SO(3), O(3), SO(2)
    v, t = vector(so3), trivial(so3)
    w, s = vector(o3), trivial(o3)
    u = vector(so2)
    # input V + V⊗V: the trace of the matrix part gives a nonzero invariant output (with vector
    # input alone every invariant linear output would be zero and the relative error undefined)
    return {
        "SO3": EquivariantMLP(v + v * v, [t + v + v * v, 2 * t + v], t + v),
        "O3": EquivariantMLP(2 * w + s, [3 * w + 2 * s], w + s, activation="silu"),
        "SO2": EquivariantMLP(2 * u, [3 * u + trivial(so2)], u + trivial(so2)),
    }


@pytest.mark.parametrize("name", list(finite_models()))
def test_finite_group_mlp_is_equivariant_on_every_element(name):
    torch.manual_seed(0)
    model = finite_models()[name]
    randomise_biases(model)
    errors = er.testing.assert_equivariant(model, batch=6)
    assert errors[torch.float64] < 1e-12
    assert errors[torch.float32] < 1e-5


@pytest.mark.parametrize("name", list(lie_models()))
def test_lie_group_mlp_is_equivariant_on_samples_and_algebra(name):
    torch.manual_seed(0)
    model = lie_models()[name]
    randomise_biases(model)
    x = torch.randn(6, model.rep_in.dim, dtype=torch.float64)
    errors = er.testing.assert_equivariant(model, x)
    assert errors[torch.float64] < 1e-12
    assert er.lie_derivative_error(model, x) < 1e-12
    samples = model.rep_in.group.sample(100, seed=1)
    assert er.equivariance_error(model, x, elements=samples) < 1e-12


def randomise_biases(model: EquivariantMLP) -> None:
    """Biases start at zero; random ones make sure they are equivariant too."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, EquivariantLinear) and m.bias_coefficients is not None:
                m.bias_coefficients.normal_()
            if isinstance(m, NormActivation):
                m.bias.normal_()


def test_layers_and_activations_follow_the_reps():
    G = symmetric(4)
    V, T, St = natural(G), trivial(G), standard(G)
    model = EquivariantMLP(V, [2 * V, St + T], T, activation="relu")
    kinds = [type(m) for m in model.layers]
    assert kinds == [EquivariantLinear, PointwiseActivation, EquivariantLinear, NormActivation,
                     EquivariantLinear]
    assert [m.rep_out for m in model.linears] == [2 * V, St + T, T]
    assert model.rep_in is V and model.rep_out is T
    with pytest.raises(ValueError, match="only equivariant on a permutation representation"):
        EquivariantMLP(V, [St], T, norm_activation=False)


def test_single_hidden_rep_may_be_passed_without_a_list():
    G = cyclic(5)
    model = EquivariantMLP(natural(G), regular(G), trivial(G))
    assert len(model.linears) == 2


def test_wrong_input_size_names_both_sizes():
    model = EquivariantMLP(natural(symmetric(4)), [natural(symmetric(4))],
                           trivial(symmetric(4)))
    with pytest.raises(ValueError, match=r"EquivariantMLP expects inputs of shape \(\.\.\., 4\)"
                                         r".*got shape \(2, 3\)"):
        model(torch.randn(2, 3))


@pytest.mark.parametrize("n", [4, 9])
def test_deep_sets_is_the_special_case(n):
    G = symmetric(n)
    V, T = natural(G), trivial(G)
    model = EquivariantMLP(V, [V, V], T, activation="relu").double()
    hidden = model.linears[:-1]
    assert all(layer.hom.dim == 2 for layer in hidden)  # a x + b sum(x) per layer
    assert model.linears[-1].hom.dim == 1  # the readout sums the set
    x = torch.randn(3, n, dtype=torch.float64)
    # by hand: DeepSets layers λ x + γ sum(x) + β, then a sum readout
    h = x
    for layer in hidden:
        W = layer.weight.detach()
        a, b = W[0, 0] - W[0, 1], W[0, 1]
        h = torch.relu(a * h + b * h.sum(-1, keepdim=True) + layer.bias.detach()[0])
    readout = model.linears[-1]
    expected = readout.weight.detach()[0, 0] * h.sum(-1, keepdim=True) + readout.bias.detach()
    torch.testing.assert_close(model(x).detach(), expected, atol=1e-12, rtol=1e-12)


def test_mlp_trains_on_a_symmetric_task():
    torch.manual_seed(0)
    G = symmetric(6)
    V, T = natural(G), trivial(G)
    model = EquivariantMLP(V, [4 * V], T, activation="tanh").double()
    x = torch.randn(256, 6, dtype=torch.float64)
    y = (x**2).sum(-1, keepdim=True) / 6 - x.mean(-1, keepdim=True) ** 2  # the set's variance
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < 0.2 * first
    assert er.equivariance_error(model, x[:8]) < 1e-12  # still exact after training


# -- serialisation -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_so3_mlp_pickles_and_copies_with_identical_outputs(mode):
    import copy
    import pickle

    G = SO(3)
    v, t = vector(G), trivial(G)
    model = EquivariantMLP(v + v * v, [2 * v + t + v * v], v + t).double().train(mode == "train")
    for layer in model.modules():
        if isinstance(layer, EquivariantLinear):
            with torch.no_grad():
                layer.bias_coefficients.normal_()
    x = torch.randn(5, model.rep_in.dim, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)  # in eval mode this also fills the weight caches
    for loaded in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert loaded.training == model.training
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), expected, atol=0, rtol=0)
        assert er.equivariance_error(loaded, x) < 1e-12
