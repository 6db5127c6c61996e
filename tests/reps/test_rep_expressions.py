"""reps.parse: representations written as text ('2*natural+trivial')."""

from __future__ import annotations

import numpy as np
import pytest

import equirelax as er


def test_sums_and_multiplicities():
    G = er.groups.symmetric(4)
    rep = er.reps.parse(G, "2*natural+trivial")
    assert rep == er.reps.direct_sum([2 * er.reps.natural(G), 1 * er.reps.trivial(G)])
    assert rep.dim == 9 and rep.is_permutation
    assert er.reps.parse(G, " 3 * trivial ").dim == 3


def test_pairs_is_the_action_on_ordered_pairs_of_distinct_points():
    G = er.groups.symmetric(4)
    rep = er.reps.parse(G, "pairs")
    assert rep.dim == 4 * 3
    assert rep == er.reps.quotient(G, G.stabilizer(0).stabilizer(1))


def test_regular_and_lie_group_names():
    assert er.reps.parse(er.groups.dihedral(4), "regular").dim == 8
    v = er.reps.parse(er.groups.SO(3), "2*vector+trivial")
    assert v.dim == 7
    g = er.groups.SO(3).sample(1, seed=0)[0]
    assert np.allclose(v.matrix(g)[:3, :3], g)


def test_unknown_names_are_refused_naming_what_is_accepted():
    G = er.groups.symmetric(3)
    with pytest.raises(ValueError, match=r"unknown rep 'cubic' in '2\*cubic'; use trivial, "
                                         r"natural, regular, pairs"):
        er.reps.parse(G, "2*cubic")
    with pytest.raises(ValueError, match="unknown rep ''"):
        er.reps.parse(G, "natural+")


@pytest.mark.parametrize("spec", ["x*natural", "0*natural", "-1*natural", "1.5*natural"])
def test_bad_multiplicities_are_refused(spec):
    with pytest.raises(ValueError, match=r"must be a positive integer, got"):
        er.reps.parse(er.groups.symmetric(3), spec)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="needs a group first"):
        er.reps.parse("S3", "natural")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a string"):
        er.reps.parse(er.groups.symmetric(3), 3)  # type: ignore[arg-type]


def test_pairs_needs_a_permutation_group():
    with pytest.raises(TypeError, match="'pairs' needs a permutation group"):
        er.reps.parse(er.groups.SO(3), "pairs")
