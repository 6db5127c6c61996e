"""Matrix representations: standard and sign reps of finite groups, vector reps of Lie groups,
their sums and tensor products, and refusal of matrices that define no orthogonal representation.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import equirelax as er
from equirelax.groups import SO, O, cyclic, dihedral, symmetric
from equirelax.reps import MatrixRep, natural, sign, standard, trivial, vector


def parity(p: np.ndarray) -> int:
    """Sign of a permutation by counting inversions (independent of the library's cycle count)."""
    inversions = sum(int(p[i] > p[j]) for i in range(len(p)) for j in range(i + 1, len(p)))
    return -1 if inversions % 2 else 1


# -- finite groups ---------------------------------------------------------------------------
def finite_reps(G):
    St, Sg, V = standard(G), sign(G), natural(G)
    return {
        "standard": St,
        "sign": Sg,
        "standard+natural": St + V,
        "sign*standard": Sg * St,
        "standard*standard": St * St,
        "2*standard+sign": 2 * St + Sg,
    }


@pytest.mark.parametrize("G", [symmetric(4), dihedral(5), er.groups.alternating(4)],
                         ids=["S4", "D5", "A4"])
def test_finite_matrix_reps_are_orthogonal_homomorphisms(G):
    elements = G.elements()
    rng = np.random.default_rng(0)
    for name, rep in finite_reps(G).items():
        assert not rep.is_permutation, name
        mats = {i: rep.matrix(elements[i]) for i in range(len(elements))}
        for i in range(len(elements)):
            np.testing.assert_allclose(mats[i] @ mats[i].T, np.eye(rep.dim), atol=1e-12)
        for i, j in rng.integers(0, len(elements), size=(40, 2)):
            gh = G.compose(elements[i], elements[j])
            np.testing.assert_allclose(rep.matrix(gh), mats[i] @ mats[j], atol=1e-12,
                                       err_msg=name)


def test_finite_matrix_rep_matches_cayley_enumeration(cayley):
    G = symmetric(4)
    for name, rep in finite_reps(G).items():
        elements, mats = cayley(G.generators, rep.generator_matrices(), multiply=np.matmul)
        for g, m in zip(elements, mats):
            np.testing.assert_allclose(rep.matrix(g), m, atol=1e-12, err_msg=name)


def test_standard_character_is_natural_minus_one_and_sign_is_parity():
    G = symmetric(5)
    St, Sg, V = standard(G), sign(G), natural(G)
    assert St.dim == 4 and Sg.dim == 1
    for g in G.sample(30, seed=0):
        assert St.character(g) == pytest.approx(V.character(g) - 1, abs=1e-12)
        assert Sg.character(g) == parity(g)


def test_standard_restricts_natural_to_the_sum_zero_subspace():
    G = dihedral(6)
    St, V = standard(G), natural(G)
    basis = scipy.linalg.null_space(np.ones((1, 6)))
    for g in G.elements():
        # the standard matrix is the natural one expressed in an orthonormal basis of 1^⊥
        projector = basis @ St.matrix(g) @ basis.T
        np.testing.assert_allclose(projector, V.matrix(g) - np.ones((6, 6)) / 6, atol=1e-12)


def test_sign_of_a_cyclic_group_of_odd_order_is_trivial():
    G = cyclic(5)
    assert sign(G).is_trivial
    assert not sign(cyclic(4)).is_trivial


def test_matrix_rep_from_generator_matrices():
    G = cyclic(4)
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])  # a quarter turn: a faithful 2-d rep of C4
    rep = MatrixRep(G, [rot])
    np.testing.assert_allclose(rep.matrix(G.compose(G.generators[0], G.generators[0])),
                               rot @ rot, atol=1e-15)
    assert rep.dim == 2 and not rep.is_permutation


def test_matrices_that_are_not_orthogonal_raise():
    with pytest.raises(ValueError, match="must be orthogonal"):
        MatrixRep(cyclic(2), [np.array([[2.0]])])


def test_matrices_that_are_not_a_homomorphism_raise():
    G = symmetric(3)  # generators: a transposition and a 3-cycle (order 3)
    with pytest.raises(ValueError, match="do not define a representation of S3"):
        MatrixRep(G, [np.array([[1.0]]), np.array([[-1.0]])])  # (-1)^3 != 1
    c, s = np.cos(2 * np.pi / 3), np.sin(2 * np.pi / 3)
    with pytest.raises(ValueError, match="do not define a representation of C4"):
        MatrixRep(cyclic(4), [np.array([[c, -s], [s, c]])])  # a third of a turn: R^4 != I


def test_matrix_rep_argument_counts_and_shapes_raise():
    with pytest.raises(ValueError, match="expected 2 generator matrices for S3, got 1"):
        MatrixRep(symmetric(3), [np.eye(2)])
    with pytest.raises(ValueError, match=r"expected \(2, 2\) matrices, got \(3, 3\)"):
        MatrixRep(symmetric(3), [np.eye(2), np.eye(3)])
    with pytest.raises(ValueError, match="expected 3 Lie algebra matrices for SO\\(3\\), got 0"):
        MatrixRep(SO(3), [])
    with pytest.raises(ValueError, match="antisymmetric"):
        MatrixRep(SO(2), [], [np.eye(2)])


def test_named_matrix_reps_refuse_the_wrong_kind_of_group():
    with pytest.raises(TypeError, match="matrix Lie group"):
        vector(symmetric(3))
    with pytest.raises(TypeError, match="finite PermutationGroup"):
        standard(SO(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="degree at least 2"):
        standard(symmetric(1))


# -- Lie groups ------------------------------------------------------------------------------
LIE = {"SO(2)": SO(2), "O(2)": O(2), "SO(3)": SO(3), "O(3)": O(3)}


def lie_reps(G):
    V, T, S = vector(G), trivial(G), sign(G)
    return {
        "vector": V,
        "V*V": V * V,
        "V+T": V + T,
        "V*V+V": V * V + V,
        "sign": S,
        "sign*V": S * V,
        "(V+T)*V": (V + T) * V,
    }


def expected_matrix(name: str, g: np.ndarray) -> np.ndarray:
    """The matrices each rep should give, written down directly from the definitions."""
    det = np.array([[np.linalg.det(g)]])
    return {
        "vector": g,
        "V*V": np.kron(g, g),
        "V+T": scipy.linalg.block_diag(g, np.eye(1)),
        "V*V+V": scipy.linalg.block_diag(np.kron(g, g), g),
        "sign": np.sign(det),
        "sign*V": np.sign(det) * g,
        "(V+T)*V": np.kron(scipy.linalg.block_diag(g, np.eye(1)), g),
    }[name]


@pytest.mark.parametrize("G", LIE.values(), ids=LIE.keys())
def test_lie_reps_evaluate_as_defined_and_are_homomorphisms(G):
    g, h = G.sample(10, seed=0), G.sample(10, seed=1)
    for name, rep in lie_reps(G).items():
        for a, b in zip(g, h):
            np.testing.assert_allclose(rep.matrix(a), expected_matrix(name, a), atol=1e-12,
                                       err_msg=name)
            np.testing.assert_allclose(rep.matrix(a @ b), rep.matrix(a) @ rep.matrix(b),
                                       atol=1e-12, err_msg=name)


@pytest.mark.parametrize("G", LIE.values(), ids=LIE.keys())
def test_lie_algebra_matrices_are_derivatives_of_the_rep(G):
    t = 1e-6
    for name, rep in lie_reps(G).items():
        for A, dA in zip(G.lie_algebra, rep.lie_matrices()):
            np.testing.assert_allclose(dA, -dA.T, atol=1e-15)
            plus = rep.matrix(scipy.linalg.expm(t * A))
            minus = rep.matrix(scipy.linalg.expm(-t * A))
            np.testing.assert_allclose((plus - minus) / (2 * t), dA, atol=1e-8, err_msg=name)


def test_generic_lie_rep_from_algebra_matrices_uses_the_exponential():
    G = SO(2)
    # the rep of SO(2) by rotation through 2θ, given only by its Lie algebra matrix
    rep = MatrixRep(G, [], [2 * G.lie_algebra[0]])
    for g in G.sample(5, seed=0):
        np.testing.assert_allclose(rep.matrix(g), g @ g, atol=1e-12)


def test_parity_acts_through_the_discrete_generator():
    G = O(3)
    V = vector(G)
    np.testing.assert_array_equal(V.generator_matrices()[0], -np.eye(3))
    assert sign(G).matrix(-np.eye(3))[0, 0] == -1.0
    assert (V * V).matrix(-np.eye(3)) == pytest.approx(np.eye(9))


def test_natural_of_a_lie_group_is_its_vector_rep():
    assert natural(SO(3)) == vector(SO(3))
    assert natural(SO(3)).dim == 3


def test_mixing_lie_groups_raises():
    with pytest.raises(ValueError, match=r"different groups: SO\(3\) and O\(3\)"):
        vector(SO(3)) + vector(O(3))
    with pytest.raises(ValueError, match="different groups"):
        vector(SO(3)) * natural(symmetric(3))


# -- serialisation -----------------------------------------------------------------------------
def test_sums_and_products_of_lie_group_reps_pickle_and_copy():
    """Users pickle models (DataLoader workers, Ray, joblib); the matrices of sums and products
    were closures, which pickle cannot save."""
    import copy
    import pickle

    G = SO(3)
    v, t = vector(G), trivial(G)
    rep = v + 2 * (v * v) + t * v
    g = G.sample(3, seed=1)
    for loaded in (pickle.loads(pickle.dumps(rep)), copy.deepcopy(rep)):
        assert loaded == rep and loaded.dim == rep.dim
        np.testing.assert_array_equal(loaded.matrices(g), rep.matrices(g))
        for a, b in zip(loaded.lie_matrices(), rep.lie_matrices()):
            np.testing.assert_array_equal(a, b)
