"""Permutation representations: homomorphism property, algebra, and refusal of bad images."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.groups import PermutationGroup, cyclic, dihedral, symmetric
from equirelax.reps import PermRep, natural, permutation_matrix, quotient, regular, trivial

# scaled with the active hypothesis profile (tests/conftest.py)
PROFILE_EXAMPLES = settings().max_examples


def is_permutation_matrix(m: np.ndarray) -> bool:
    return bool(
        np.all((m == 0) | (m == 1)) and np.all(m.sum(axis=0) == 1) and np.all(m.sum(axis=1) == 1)
    )


def pairs(G: PermutationGroup, count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` random pairs of elements, plus (e, e) and (g, g^-1)."""
    g, h = G.sample(count, seed=seed), G.sample(count, seed=seed + 1)
    out = list(zip(g, h))
    out.append((G.identity(), G.identity()))
    out.append((g[0], G.inverse(g[0])))
    return out


def named_reps(G: PermutationGroup) -> dict[str, er.reps.Rep]:
    V, T = natural(G), trivial(G)
    reps = {
        "natural": V,
        "trivial": T,
        "quotient": quotient(G, G.stabilizer(0)),
        "sum": V + T + V,
        "tensor": V * V,
        "mixed": (V * T) + 2 * V,
    }
    if G.order <= 60:
        reps["regular"] = regular(G)
    return reps


GROUPS = {"S4": symmetric(4), "D5": dihedral(5), "C6": cyclic(6), "A5": er.groups.alternating(5)}


@pytest.mark.parametrize("G", GROUPS.values(), ids=GROUPS.keys())
def test_homomorphism_property(G):
    for name, rep in named_reps(G).items():
        assert rep.is_permutation, name
        for g, h in pairs(G, 15):
            m_gh = rep.matrix(G.compose(g, h))
            np.testing.assert_array_equal(m_gh, rep.matrix(g) @ rep.matrix(h), err_msg=name)
        np.testing.assert_array_equal(rep.matrix(G.identity()), np.eye(rep.dim))


@pytest.mark.parametrize("G", GROUPS.values(), ids=GROUPS.keys())
def test_perm_reps_act_by_permutation_matrices(G):
    for name, rep in named_reps(G).items():
        for g in G.sample(5, seed=2):
            m = rep.matrix(g)
            assert is_permutation_matrix(m), name
            np.testing.assert_array_equal(m, permutation_matrix(rep.perm(g)))


def test_rep_matches_cayley_enumeration(cayley):
    G = dihedral(6)
    for name, rep in named_reps(G).items():
        elements, perms = cayley(G.generators, rep.images)
        for g, p in zip(elements, perms):
            np.testing.assert_array_equal(rep.perm(g), p, err_msg=name)


def test_natural_is_the_defining_action():
    G = symmetric(5)
    for g in G.sample(10, seed=0):
        np.testing.assert_array_equal(natural(G).perm(g), g)
    assert natural(G).dim == 5


def test_regular_is_free_and_has_the_regular_character():
    G = dihedral(4)
    R = regular(G)
    assert R.dim == G.order
    for g in G.elements():
        fixed = int(np.sum(R.perm(g) == np.arange(R.dim)))
        assert fixed == (G.order if np.array_equal(g, G.identity()) else 0)


def test_quotient_by_point_stabiliser_is_the_natural_character():
    G = symmetric(4)
    Q = quotient(G, G.stabilizer(0))
    assert Q.dim == 4
    for g in G.elements():
        assert Q.character(g) == natural(G).character(g)


def test_quotient_dimension_is_the_index():
    G = dihedral(6)
    H = G.subgroup([G.generators[1]])  # a reflection: index 6
    assert quotient(G, H).dim == G.order // H.order == 6
    assert quotient(G, G).dim == 1


def test_quotient_refuses_non_subgroups():
    G = cyclic(4)
    with pytest.raises(ValueError, match="is not a subgroup"):
        quotient(G, symmetric(4))
    with pytest.raises(TypeError, match="PermutationGroup"):
        quotient(G, er.groups.SO(3))


def test_sums_and_tensors_stay_permutation_reps_with_the_right_dims():
    G = symmetric(3)
    V, T = natural(G), trivial(G)
    assert (V + T).dim == 4 and (V + T).is_permutation
    assert (V * V).dim == 9 and (V * V).is_permutation
    assert ((V + T) * V).dim == 12 and ((V + T) * V).is_permutation
    assert isinstance(V * V, PermRep)
    assert [p.dim for p in (V + T + V).parts] == [3, 1, 3]
    # tensor index convention: (i, j) -> i * dim_b + j
    g = np.array([1, 2, 0])
    expected = np.kron(V.matrix(g), V.matrix(g))
    np.testing.assert_array_equal((V * V).matrix(g), expected)


def test_multiplicity():
    G = cyclic(5)
    V = natural(G)
    assert (3 * V).dim == 15
    assert 3 * V == V + V + V == V * 3
    assert (1 * V) == V
    assert sum([V, V]) == 2 * V
    with pytest.raises(ValueError, match="positive integer, got 0"):
        0 * V
    with pytest.raises(ValueError, match="positive integer, got -2"):
        V * -2


def test_mixing_groups_raises():
    V3, V4 = natural(symmetric(3)), natural(symmetric(4))
    with pytest.raises(ValueError, match="different groups: S3 and S4"):
        V3 + V4
    with pytest.raises(ValueError, match="different groups: S3 and S4"):
        V3 * V4
    with pytest.raises(ValueError, match="different groups"):
        natural(cyclic(3)) + V3  # same degree, different group
    with pytest.raises(TypeError, match="needs a Rep, got str"):
        V3 * "V"  # type: ignore[operator]


def test_reps_compare_by_action():
    G = symmetric(4)
    assert natural(G) == natural(G)
    assert hash(natural(G) * natural(G)) == hash(natural(G) * natural(G))
    assert natural(G) != trivial(G)
    assert natural(G) != natural(symmetric(5))


# -- bad images ------------------------------------------------------------------------------
def test_image_that_is_not_a_permutation_raises():
    G = symmetric(3)
    with pytest.raises(ValueError, match=r"permutation of 0\.\.2, got \[0, 0, 1\]"):
        PermRep(G, [[0, 0, 1], [0, 1, 2]])
    with pytest.raises(ValueError, match=r"one image per generator of S3 \(2\), got 1"):
        PermRep(G, [[0, 1, 2]])
    with pytest.raises(ValueError, match=r"permutation of 0\.\.2"):
        PermRep(G, [[0, 1, 2], [0, 1]])


def test_images_that_are_not_a_homomorphism_raise():
    G = symmetric(3)  # generators: a transposition s and a 3-cycle c, with s c s = c^-1
    with pytest.raises(ValueError, match="do not define a representation of S3"):
        PermRep(G, [[0, 1, 2], [1, 2, 0]])  # s -> e, c -> c breaks s c s = c^-1
    with pytest.raises(ValueError, match="do not define a representation of S3"):
        PermRep(G, [[1, 0], [1, 0]])  # c -> a transposition breaks c^3 = e
    sign_action = PermRep(G, [[1, 0], [0, 1]])  # the sign, acting on two points: a true rep
    assert sign_action.dim == 2


@st.composite
def group_and_images(draw):
    n = draw(st.integers(2, 5))
    k = draw(st.integers(1, 2))
    gens = [draw(st.permutations(range(n))) for _ in range(k)]
    m = draw(st.integers(1, 4))
    images = [draw(st.permutations(range(m))) for _ in range(k)]
    return PermutationGroup(gens), images


@settings(max_examples=3 * PROFILE_EXAMPLES)
@given(group_and_images())
def test_homomorphism_check_agrees_with_enumeration(cayley, not_a_homomorphism, data):
    G, images = data
    try:
        cayley(G.generators, images)
        is_hom = True
    except not_a_homomorphism:
        is_hom = False
    event(f"homomorphism: {is_hom}")
    if is_hom:
        rep = PermRep(G, images)
        elements, perms = cayley(G.generators, images)
        for g, p in zip(elements, perms):
            np.testing.assert_array_equal(rep.perm(g), p)
    else:
        with pytest.raises(ValueError, match="do not define a representation"):
            PermRep(G, images)


def test_matrix_of_a_non_member_raises():
    G = cyclic(4)
    with pytest.raises(ValueError, match=r"\[1, 0, 2, 3\] is not an element of C4"):
        natural(G).matrix(np.array([1, 0, 2, 3]))


def test_named_reps_refuse_lie_groups_where_they_need_finite_ones():
    with pytest.raises(TypeError, match="finite PermutationGroup"):
        regular(er.groups.SO(3))


def test_permutation_rep_of_a_lie_group_via_its_component_group():
    G = er.groups.O(3)
    swap = PermRep(G, [[1, 0]])  # parity swaps two channels, rotations fix them
    assert swap.is_permutation
    for g in G.sample(20, seed=0):
        expected = np.eye(2)[::-1] if np.linalg.det(g) < 0 else np.eye(2)
        np.testing.assert_array_equal(swap.matrix(g), expected)
    assert all(np.all(m == 0) for m in swap.lie_matrices())
    assert trivial(G).dim == 1 and trivial(G).is_trivial
