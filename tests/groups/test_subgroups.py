import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import equirelax as er
from equirelax.groups.subgroups import (
    GroupTable,
    evaluate_images,
    group_table,
    identify_subgroup,
    normaliser,
    subgroup_classes,
    transitive_pieces,
)

# (group, number of subgroups, number of conjugacy classes of subgroups): standard tables
KNOWN = [
    (er.groups.symmetric(3), 6, 4),
    (er.groups.cyclic(6), 4, 4),
    (er.groups.dihedral(4), 10, 8),
    (er.groups.alternating(4), 10, 5),
    (er.groups.symmetric(4), 30, 11),
]


@pytest.mark.parametrize(("G", "n_subgroups", "n_classes"), KNOWN, ids=lambda v: str(v))
def test_subgroup_counts_match_the_tables(G, n_subgroups, n_classes):
    classes = subgroup_classes(G)
    assert len(classes) == n_classes
    assert sum(c.conjugates for c in classes) == n_subgroups
    for c in classes:
        assert G.order % c.order == 0  # Lagrange
        assert c.conjugates * c.normaliser_order == G.order  # orbit-stabiliser
        assert c.normaliser_order % c.order == 0
        assert c.representative.order == c.order
        assert identify_subgroup(G, c.representative) is c
    assert classes[0].order == 1 and classes[-1].order == G.order


def test_names_of_the_subgroups_of_s4():
    names = [c.name for c in subgroup_classes(er.groups.symmetric(4))]
    assert names == ["1", "C2a", "C2b", "C3", "V4a", "V4b", "C4", "S3", "D4", "A4", "S4"]


def test_stabilisers_of_natural_actions_are_identified_up_to_conjugacy():
    G = er.groups.symmetric(4)
    for point in range(4):
        cls = identify_subgroup(G, G.stabilizer(point))
        assert cls.name == "S3" and cls.coset_count == 4
    assert normaliser(G, G.stabilizer(0)).order == 6  # S3 is self-normalising in S4


def test_transitive_pieces_of_standard_reps():
    G = er.groups.symmetric(3)
    nat = transitive_pieces(G, er.reps.natural(G).images)
    assert [(p.points, p.stabiliser.order, p.label) for p in nat] == [((0, 1, 2), 2, "[S3/C2]")]
    reg = transitive_pieces(G, er.reps.regular(G).images)
    assert len(reg) == 1 and reg[0].stabiliser.order == 1
    triv = transitive_pieces(G, (3 * er.reps.trivial(G)).images)
    assert [p.points for p in triv] == [(0,), (1,), (2,)]
    assert all(p.stabiliser.order == 6 for p in triv)


def test_images_that_are_no_homomorphism_are_reported():
    G = er.groups.symmetric(3)  # generators: a transposition and a 3-cycle
    table = group_table(G)
    swap = np.array([1, 0])
    assert evaluate_images(table, [swap, np.arange(2)]) is not None  # the sign rep
    assert evaluate_images(table, [np.arange(2), swap]) is None  # a 3-cycle cannot swap
    with pytest.raises(ValueError, match="do not define a representation"):
        transitive_pieces(G, [np.arange(2), swap])


def test_large_groups_are_refused_with_their_order():
    with pytest.raises(ValueError, match="order 5040"):
        GroupTable(er.groups.symmetric(7))


@given(st.sampled_from(["C5", "D5", "S3", "D4", "A4"]), st.integers(0, 10_000))
def test_coset_actions_decompose_into_their_own_subgroup(name, seed):
    G = er.groups.from_name(name)
    classes = subgroup_classes(G)
    cls = classes[seed % len(classes)]
    rep = er.reps.quotient(G, cls.representative)
    pieces = transitive_pieces(G, rep.images)
    assert len(pieces) == 1
    assert pieces[0].stabiliser is cls
    assert len(pieces[0].points) == G.order // cls.order == cls.coset_count
