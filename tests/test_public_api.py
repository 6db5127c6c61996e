"""The public API contract of the design document, call by call: every name users (and our own
studies) rely on, with the behaviour the contract states. A refactor that renames or moves one of
them fails here first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import equirelax as er


def test_groups():
    G = er.groups.symmetric(4)
    assert (G.order, G.degree) == (24, 4)
    for make, order in ((er.groups.cyclic, 5), (er.groups.dihedral, 10),
                        (er.groups.alternating, 60)):
        assert make(5).order == order
    H = er.groups.PermutationGroup([[1, 2, 0, 3], [1, 0, 2, 3]])
    assert H.order == 6 and len(H.generators) == 2
    assert er.groups.direct_product(er.groups.cyclic(2), er.groups.cyclic(3)).order == 6
    elements = G.elements()
    assert len(elements) == 24 and all(sorted(g) == [0, 1, 2, 3] for g in elements)
    assert G.subgroup([[1, 0, 2, 3]]).order == 2
    for lie in (er.groups.SO(3), er.groups.O(3), er.groups.SO(2)):
        assert len(lie.lie_algebra) >= 1
        sample = lie.sample(3)
        assert len(sample) == 3
        for g in sample:
            assert np.allclose(g @ g.T, np.eye(g.shape[0]), atol=1e-12)


def test_representations():
    G = er.groups.symmetric(4)
    H = G.subgroup([[1, 0, 2, 3]])
    dims = {"trivial": er.reps.trivial(G).dim, "natural": er.reps.natural(G).dim,
            "regular": er.reps.regular(G).dim, "quotient": er.reps.quotient(G, H).dim}
    assert dims == {"trivial": 1, "natural": 4, "regular": 24, "quotient": 12}
    V = er.reps.natural(G)
    assert V.is_permutation and (V + V).dim == 8 and (V * V).dim == 16 and (3 * V).dim == 12
    g = G.elements()[5]
    m = (V * V).matrix(g)
    assert np.allclose(m, np.kron(V.matrix(g), V.matrix(g)))
    assert er.reps.vector(er.groups.SO(3)).dim == 3


def test_equivariant_linear_maps():
    G = er.groups.symmetric(4)
    V = er.reps.natural(G)
    H = er.hom(V, V)
    assert H.dim == 2 and H.basis.shape == (2, 4, 4)
    W = torch.randn(4, 4, dtype=torch.float64)
    P = H.project(W)
    assert torch.allclose(H.project(P), P, atol=1e-12)
    for g in G.elements():
        R = torch.as_tensor(V.matrix(g), dtype=torch.float64)
        assert torch.allclose(R @ P, P @ R, atol=1e-12)


def test_layers_declare_their_actions_and_are_equivariant():
    G = er.groups.symmetric(4)
    V, T = er.reps.natural(G), er.reps.trivial(G)
    layer = er.nn.EquivariantLinear(V, 2 * V, bias=True)
    assert layer.weight.shape == (8, 4)
    assert (layer.rep_in, layer.rep_out) == (V, 2 * V)
    mlp = er.nn.EquivariantMLP(V, [2 * V, 2 * V], T, activation="relu")
    x = torch.randn(16, 4)
    assert mlp(x).shape == (16, 1)
    assert er.equivariance_error(mlp, x) < 1e-12
    assert er.equivariance_error(layer, x, rep_in=V, rep_out=2 * V,
                                 elements=G.elements()[:3]) < 1e-12


def test_relax_harden_and_friends():
    G = er.groups.symmetric(4)
    V, T = er.reps.natural(G), er.reps.trivial(G)
    torch.manual_seed(0)
    model = er.nn.EquivariantMLP(V, [2 * V], T)
    relaxed = er.relax(model, schedule="triangular", total_steps=10, lie_weight=1e-2,
                       norm_weight=1e-2)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    relaxed.step()
    loss = (relaxed(x) - y).pow(2).mean() + relaxed.penalty()
    loss.backward()
    exact = er.harden(relaxed)
    assert type(exact) is type(model)
    assert er.equivariance_error(exact, x) < 1e-12
    assert issubclass(er.relaxation.LightningCallback, object)
    layer = er.nn.EquivariantLinear(V, V)
    assert isinstance(er.relaxation.Relaxed(layer, V, V), torch.nn.Module)
    assert callable(er.relaxation.register)


@pytest.mark.parametrize("name", ["nn", "models", "landscape", "scg", "relaxation", "checks",
                                  "testing", "groups", "reps", "homspace"])
def test_every_floor_is_an_attribute(name):
    assert getattr(er, name).__name__ == f"equirelax.{name}"
