"""from_name: the groups that configs and command lines name."""

from __future__ import annotations

import re

import pytest

import equirelax as er


@pytest.mark.parametrize(
    ("name", "order", "degree"),
    [("S3", 6, 3), ("s4", 24, 4), ("A4", 12, 4), ("A5", 60, 5), ("C5", 5, 5), ("D4", 8, 4)],
)
def test_finite_names_give_the_catalogue_groups(name, order, degree):
    G = er.groups.from_name(name)
    assert isinstance(G, er.groups.PermutationGroup)
    assert (G.order, G.degree) == (order, degree)
    family = {"S": er.groups.symmetric, "A": er.groups.alternating, "C": er.groups.cyclic,
              "D": er.groups.dihedral}[name[0].upper()]
    assert family(int(name[1:])) == G


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("SO(2)", "SO(2)"), ("SO(3)", "SO(3)"), ("O(2)", "O(2)"), ("O(3)", "O(3)"), ("so3", "SO(3)")],
)
def test_lie_group_names(name, canonical):
    G = er.groups.from_name(name)
    assert isinstance(G, er.groups.MatrixLieGroup) and G.name == canonical


@pytest.mark.parametrize("name", ["Q8", "S", "3", "", "SO(4)", "D4x"])
def test_unknown_names_are_refused_naming_the_value_and_what_is_accepted(name):
    expected = rf"unknown group name {re.escape(repr(name))}.*S<n>, A<n>, C<n> or D<n>.*SO\(3\)"
    with pytest.raises(ValueError, match=expected):
        er.groups.from_name(name)


def test_a_non_string_is_refused():
    with pytest.raises(TypeError, match=r"must be a string.*got int 4"):
        er.groups.from_name(4)  # type: ignore[arg-type]


def test_a_family_too_small_names_its_bound():
    with pytest.raises(ValueError, match=r"dihedral\(n\) needs an integer n >= 3, got 2"):
        er.groups.from_name("D2")
