"""Matrix Lie groups SO(2), O(2), SO(3), O(3): samples, Haar measure, Lie algebra, decomposition."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from equirelax.groups import SO, O

GROUPS = {"SO(2)": SO(2), "O(2)": O(2), "SO(3)": SO(3), "O(3)": O(3)}
ids = list(GROUPS)
groups = list(GROUPS.values())


@pytest.mark.parametrize("G", groups, ids=ids)
def test_samples_are_orthogonal_with_the_right_determinants(G):
    g = G.sample(2000, seed=0)
    assert g.shape == (2000, G.n, G.n)
    eye = np.broadcast_to(np.eye(G.n), g.shape)
    np.testing.assert_allclose(g @ np.swapaxes(g, 1, 2), eye, atol=1e-12)
    det = np.linalg.det(g)
    np.testing.assert_allclose(np.abs(det), 1.0, atol=1e-12)
    if G.name.startswith("SO"):
        assert np.all(det > 0)
    else:  # both components, about equally often
        assert 0.45 < np.mean(det < 0) < 0.55
    assert all(G.contains(x) for x in g[:50])


@pytest.mark.parametrize("G", groups, ids=ids)
def test_haar_sanity_mean_and_character_norm(G):
    g = G.sample(20000, seed=1)
    # E[g] = 0: the vector rep contains no trivial summand
    assert np.abs(g.mean(axis=0)).max() < 0.03
    # E[tr(g)^2] = <chi_V, chi_V> = dim hom(V, V): 1 for SO(3), O(3), O(2); 2 for SO(2), where
    # the rotations by θ commute with every rotation (a·I + b·J)
    expected = 2.0 if G.name == "SO(2)" else 1.0
    assert abs(np.mean(np.trace(g, axis1=1, axis2=2) ** 2) - expected) < 0.05


def test_so3_rotation_angle_follows_the_haar_density():
    g = SO(3).sample(20000, seed=2)
    angle = np.arccos(np.clip((np.trace(g, axis1=1, axis2=2) - 1) / 2, -1, 1))
    # Haar density of the angle on [0, π] is (1 - cos θ)/π: mean = π/2 + 2/π
    assert abs(angle.mean() - (np.pi / 2 + 2 / np.pi)) < 0.02


@pytest.mark.parametrize("G", groups, ids=ids)
def test_samples_are_reproducible(G):
    np.testing.assert_array_equal(G.sample(3, seed=7), G.sample(3, seed=7))
    assert not np.allclose(G.sample(3, seed=7), G.sample(3, seed=8))


@pytest.mark.parametrize("G", groups, ids=ids)
def test_lie_algebra_is_antisymmetric_and_exponentiates_into_the_group(G):
    A = G.lie_algebra
    assert A.shape == ((1 if G.n == 2 else 3), G.n, G.n)
    np.testing.assert_array_equal(A, -np.swapaxes(A, 1, 2))
    for a in A:
        g = scipy.linalg.expm(0.7 * a)
        assert G.contains(g)
        assert np.linalg.det(g) > 0


def test_so3_algebra_commutators():
    Lx, Ly, Lz = SO(3).lie_algebra
    np.testing.assert_allclose(Lx @ Ly - Ly @ Lx, Lz, atol=1e-15)
    np.testing.assert_allclose(Ly @ Lz - Lz @ Ly, Lx, atol=1e-15)
    np.testing.assert_allclose(Lz @ Lx - Lx @ Lz, Ly, atol=1e-15)


@pytest.mark.parametrize("G", groups, ids=ids)
def test_decompose_round_trip(G):
    for g in G.sample(30, seed=3):
        word, coords = G.decompose(g)
        rebuilt = np.eye(G.n)
        for i in word:
            rebuilt = rebuilt @ G.generators[i]
        rebuilt = rebuilt @ scipy.linalg.expm(np.einsum("k,kij->ij", coords, G.lie_algebra))
        np.testing.assert_allclose(rebuilt, g, atol=1e-12)
        assert len(word) == int(np.linalg.det(g) < 0)


def test_decompose_refuses_wrong_shape_and_wrong_component():
    with pytest.raises(ValueError, match=r"3x3 matrices, got \(2, 2\)"):
        SO(3).decompose(np.eye(2))
    with pytest.raises(ValueError, match="no matrix of determinant -1"):
        SO(3).decompose(-np.eye(3))


def test_o3_parity_and_o2_reflection():
    (parity,) = O(3).generators
    np.testing.assert_array_equal(parity, -np.eye(3))
    assert O(3).contains(-np.eye(3))
    assert not SO(3).contains(-np.eye(3))
    assert SO(3).generators == []
    (reflection,) = O(2).generators
    np.testing.assert_array_equal(reflection, np.diag([1.0, -1.0]))
    assert not SO(2).contains(reflection)
    # parity commutes with every rotation: O(3) = SO(3) x {±I}
    for g in SO(3).sample(5, seed=4):
        np.testing.assert_allclose(parity @ g, g @ parity)


@pytest.mark.parametrize("G", groups, ids=ids)
def test_lie_groups_are_infinite_and_refuse_enumeration(G):
    assert not G.is_finite
    assert G.order == float("inf")
    with pytest.raises(ValueError, match="infinite: use sample"):
        G.elements()


def test_contains_rejects_non_orthogonal_and_wrong_shape():
    assert not SO(3).contains(2 * np.eye(3))
    assert not SO(3).contains(np.eye(2))
    assert -np.eye(3) in O(3)


@pytest.mark.parametrize("make", [SO, O])
def test_unsupported_dimension_raises(make):
    with pytest.raises(ValueError, match="n = 2 or 3, got 4"):
        make(4)


def test_lie_groups_compare_by_name():
    assert SO(3) == SO(3)
    assert SO(3) != O(3)
    assert hash(O(2)) == hash(O(2))
