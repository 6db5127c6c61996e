import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import equirelax as er
from equirelax.landscape import (
    EquivariantSubspace,
    centraliser_generators,
    hidden_symmetry_group,
    permute_hidden,
    read_mlp,
)


@pytest.mark.parametrize("group", ["S3", "C4", "C5", "D4", "A4", "S4"])
def test_regular_rep_has_the_right_translations(group):
    G = er.groups.from_name(group)
    hs = hidden_symmetry_group(er.reps.regular(G))
    assert hs.order == hs.formula_order == G.order


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_m_trivial_neurons_can_be_permuted_freely(m):
    G = er.groups.dihedral(4)
    hs = hidden_symmetry_group(m * er.reps.trivial(G))
    assert hs.order == hs.formula_order == math.factorial(m)
    assert hs.n_hyperplanes == 1  # every permutation keeps E_rho in place
    assert hs.signed_order == math.factorial(m) * 2**m


@pytest.mark.parametrize("n", [3, 4, 5])
def test_natural_action_of_sn_has_no_hidden_symmetry(n):
    G = er.groups.symmetric(n)
    hs = hidden_symmetry_group(er.reps.natural(G))
    assert hs.order == 1
    assert hs.n_hyperplanes == math.factorial(n)


def test_counts_of_the_notes_for_s3():
    # distinct hyperplanes in the orbit of E_rho: natural 6, 3 x trivial 1, regular 120
    G = er.groups.symmetric(3)
    counts = [hidden_symmetry_group(er.reps.parse(G, s)).n_hyperplanes
              for s in ("natural", "3*trivial", "regular")]
    assert counts == [6, 1, 120]


def test_several_regular_channels_give_a_wreath_product():
    G = er.groups.cyclic(3)
    hs = hidden_symmetry_group(2 * er.reps.regular(G))
    assert hs.order == 3**2 * 2  # C3 wr S2


def test_two_hidden_layers_multiply():
    G = er.groups.symmetric(3)
    reps = [er.reps.regular(G), 2 * er.reps.trivial(G)]
    assert hidden_symmetry_group(reps).order == 6 * 2


@given(st.sampled_from(["S3", "C4", "D4", "A4", "C6"]),
       st.lists(st.sampled_from(["natural", "trivial", "regular", "pairs"]), min_size=1,
                max_size=3))
def test_centraliser_commutes_with_the_rep_and_matches_the_closed_form(group, terms):
    G = er.groups.from_name(group)
    rep = er.reps.parse(G, "+".join(terms))
    if rep.dim > 30:
        return
    hs = hidden_symmetry_group(rep)
    assert hs.order == hs.formula_order
    for sigma in centraliser_generators(rep):
        for img in rep.images:
            assert np.array_equal(sigma[img], img[sigma])  # σ ρ(s) = ρ(s) σ


def test_hidden_symmetries_map_the_slice_to_itself_and_keep_the_function(planted):
    _, rep_in, rep_out, model = planted("S3", "regular+2*trivial")
    layout, theta = read_mlp(model)
    space = EquivariantSubspace(rep_in, model.hidden_reps, rep_out)
    x = torch.randn(10, 3, dtype=torch.float64)
    for sigma in centraliser_generators(model.hidden_reps[0]):
        moved = permute_hidden(layout, theta, [sigma])
        assert not torch.allclose(moved, theta)
        assert space.distance(moved) < 1e-13
        assert torch.allclose(layout.forward(moved, x), layout.forward(theta, x), atol=1e-13)
    # a neuron permutation that does not commute with the rep moves the slice
    swap = np.arange(8)
    swap[[0, 6]] = [6, 0]
    assert space.distance(permute_hidden(layout, theta, [swap])) > 1e-3


def test_refuses_non_permutation_reps():
    G = er.groups.symmetric(3)
    with pytest.raises(TypeError, match="permutation reps"):
        hidden_symmetry_group(er.reps.standard(G))
