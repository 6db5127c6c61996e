"""Nonlinearities: pointwise only on permutation reps, norm gates elsewhere, invariant pooling."""

from __future__ import annotations

import pytest
import torch

import equirelax as er
from equirelax.groups import SO, O, dihedral, symmetric
from equirelax.nn import InvariantPool, NormActivation, PointwiseActivation, activation_function
from equirelax.reps import natural, quotient, regular, sign, standard, trivial, vector


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same torch RNG state, whatever ran before it."""
    torch.manual_seed(0)


# -- pointwise ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rep",
    [standard(symmetric(4)), sign(symmetric(3)), vector(SO(3)), natural(symmetric(3))
     + standard(symmetric(3))],
    ids=["standard", "sign", "SO3 vector", "natural+standard"],
)
def test_pointwise_activation_is_refused_on_non_permutation_reps(rep):
    with pytest.raises(ValueError, match=r"only equivariant on a permutation representation.*"
                                         r"use NormActivation"):
        PointwiseActivation(rep, "relu")


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu", "silu", "leaky_relu"])
def test_pointwise_activation_is_equivariant_on_permutation_reps(name):
    G = dihedral(5)
    rep = natural(G) + regular(G) + natural(G) * natural(G)
    act = PointwiseActivation(rep, name)
    assert act.rep_in is rep and act.rep_out is rep
    errors = er.testing.assert_equivariant(act)
    assert errors[torch.float64] == 0.0  # permuting and applying σ entrywise commute exactly


def test_pointwise_activation_applies_the_function_and_checks_sizes():
    rep = natural(symmetric(4))
    x = torch.randn(3, 4)
    torch.testing.assert_close(PointwiseActivation(rep, "tanh")(x), torch.tanh(x))
    torch.testing.assert_close(PointwiseActivation(rep, torch.sin)(x), torch.sin(x))
    with pytest.raises(ValueError, match=r"PointwiseActivation expects inputs of shape "
                                         r"\(\.\.\., 4\).*got shape \(3, 5\)"):
        PointwiseActivation(rep)(torch.randn(3, 5))


def test_unknown_activation_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown activation 'swishy'; expected one of \[.*relu"):
        activation_function("swishy")


def test_pointwise_on_a_lie_group_perm_rep():
    G = O(3)
    rep = trivial(G) + er.reps.PermRep(G, [[1, 0]])  # parity swaps the last two channels
    act = PointwiseActivation(rep, "relu")
    er.testing.assert_equivariant(act)


# -- norm gates --------------------------------------------------------------------------------
NORM_REPS = {
    "SO3 V+VV": vector(SO(3)) + vector(SO(3)) * vector(SO(3)),
    "O3 V+sign": 2 * vector(O(3)) + sign(O(3)),
    "SO2 V": 3 * vector(SO(2)),
    "S4 standard+sign": standard(symmetric(4)) + sign(symmetric(4)) + natural(symmetric(4)),
}


@pytest.mark.parametrize("name", NORM_REPS, ids=NORM_REPS.keys())
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "softplus"])
def test_norm_activation_is_equivariant(name, activation):
    rep = NORM_REPS[name]
    act = NormActivation(rep, activation)
    with torch.no_grad():
        act.bias.normal_()  # nonzero biases: the gate is not the identity
    errors = er.testing.assert_equivariant(act)
    assert errors[torch.float64] < 1e-12


def test_norm_activation_gates_each_summand_by_its_norm():
    v = vector(SO(3))
    rep = v + v
    act = NormActivation(rep, "relu").double()
    with torch.no_grad():
        act.bias.copy_(torch.tensor([-1.0, 0.5], dtype=torch.float64))
    x = torch.tensor([[0.3, 0.0, 0.4, 1.0, 2.0, 2.0]], dtype=torch.float64)  # norms 0.5 and 3
    y = act(x)
    torch.testing.assert_close(y[0, :3], torch.zeros(3, dtype=torch.float64))  # relu(0.5-1)=0
    expected = x[0, 3:] * (3.0 + 0.5) / 3.0  # relu(3+0.5)/3, up to eps in the norm
    torch.testing.assert_close(y[0, 3:], expected, atol=1e-8, rtol=1e-8)
    assert set(act.state_dict()) == {"bias"}
    assert act.rep_in is rep and act.rep_out is rep


def test_norm_activation_keeps_sign_representations_equivariant():
    G = symmetric(3)
    act = NormActivation(sign(G) + sign(G), "sigmoid")
    x = torch.tensor([[0.7, -2.0]], dtype=torch.float64)
    y = act.double()(x)
    y_neg = act(-x)  # an odd permutation flips both signs
    torch.testing.assert_close(y_neg, -y)


# -- invariant pooling -------------------------------------------------------------------------
def test_invariant_pool_is_the_orbit_mean_and_invariant():
    G = dihedral(6)
    rep = natural(G) + 2 * trivial(G) + quotient(G, G.stabilizer(0).stabilizer(1))
    pool = InvariantPool(rep)
    assert pool.rep_out.dim == len(pool.counts) == 4  # natural, 2 trivials, one orbit of pairs
    assert pool.rep_out.is_trivial
    x = torch.randn(5, rep.dim, dtype=torch.float64)
    y = pool(x)
    torch.testing.assert_close(y[:, 0], x[:, :6].mean(dim=1))
    torch.testing.assert_close(y[:, 1:3], x[:, 6:8])
    torch.testing.assert_close(y[:, 3], x[:, 8:].mean(dim=1))
    errors = er.testing.assert_equivariant(pool)
    assert errors[torch.float64] < 1e-14


def test_invariant_pool_refuses_non_permutation_reps_and_wrong_sizes():
    with pytest.raises(ValueError, match="needs a permutation representation"):
        InvariantPool(vector(SO(3)))
    pool = InvariantPool(natural(symmetric(3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\).*got shape \(2, 4\)"):
        pool(torch.randn(2, 4))
