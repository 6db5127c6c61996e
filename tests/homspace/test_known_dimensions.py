"""Hom-space dimensions known in closed form, checked for ranges of n.

Each is also the Burnside count |orbits of G on index pairs|, and the reason is given per test.
"""

from __future__ import annotations

import pytest

import equirelax as er
from equirelax.groups import alternating, cyclic, dihedral, symmetric
from equirelax.reps import natural, regular, trivial


@pytest.mark.parametrize("n", [2, 3, 5, 10, 50])
def test_deep_sets_is_two_dimensional(n):
    # S_n on pairs (i, j): the diagonal and the off-diagonal orbit -> W = a I + b 11^T
    V = natural(symmetric(n))
    assert er.hom(V, V).dim == 2


@pytest.mark.parametrize(("n", "dim"), [(1, 1), (2, 8), (3, 14), (4, 15), (5, 15), (7, 15),
                                        (12, 15)])
def test_symmetric_tensor_square_to_itself(n, dim):
    # orbits of S_n on 4-tuples of points = set partitions of 4 labels into at most n blocks:
    # sum_{k <= n} S(4, k) = 1, 1+7, 1+7+6, then the Bell number 15 for n >= 4
    T = natural(symmetric(n)) * natural(symmetric(n))
    assert er.hom(T, T).dim == dim


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_cyclic_regular_to_regular_is_n(n):
    # hom(reg, reg) is the group algebra (group convolutions): one coefficient per element
    R = regular(cyclic(n))
    assert er.hom(R, R).dim == n


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_dihedral_regular_to_regular_is_2n(n):
    R = regular(dihedral(n))
    assert er.hom(R, R).dim == 2 * n


@pytest.mark.parametrize(("n", "dim"), [(3, 2), (4, 3), (5, 3), (6, 4), (7, 4), (8, 5), (9, 5),
                                        (10, 6)])
def test_dihedral_natural_to_natural_is_floor_half_n_plus_one(n, dim):
    # orbits of D_n on vertex pairs (i, j) are the distances min(|i-j|, n-|i-j|) = 0..floor(n/2),
    # so the dimension is floor(n/2) + 1. (The "3 for odd n, 4 for even n" holds only for
    # n = 5 and n = 6; D_3 = S_3 gives 2, D_4 gives 3, D_7 gives 4, D_8 gives 5.)
    V = natural(dihedral(n))
    assert er.hom(V, V).dim == dim == n // 2 + 1


@pytest.mark.parametrize("n", [3, 5, 6])
def test_cyclic_natural_to_natural_is_n(n):
    # C_n acts regularly on its n points: natural = regular
    V = natural(cyclic(n))
    assert er.hom(V, V).dim == n


@pytest.mark.parametrize(("n", "dim"), [(3, 3), (4, 2), (5, 2), (6, 2)])
def test_alternating_natural_to_natural(n, dim):
    # A_n is 2-transitive for n >= 4 (two orbits on pairs); A_3 = C_3 acts regularly
    V = natural(alternating(n))
    assert er.hom(V, V).dim == dim


@pytest.mark.parametrize("G", [symmetric(4), dihedral(6), cyclic(5)], ids=["S4", "D6", "C5"])
def test_invariant_maps_count_orbits(G):
    V, T = natural(G), trivial(G)
    assert er.hom(V, T).dim == len(G.orbits()) == 1
    assert er.hom(T, V).dim == 1
    assert er.hom(T, T).dim == 1
    assert er.hom(2 * V + T, T).dim == 3


def test_direct_product_natural_splits_into_blocks():
    G = er.groups.direct_product(symmetric(3), symmetric(4))
    V = natural(G)
    # blocks: Deep Sets on each factor (2 + 2) and a constant map between the factors (1 + 1)
    assert er.hom(V, V).dim == 6
