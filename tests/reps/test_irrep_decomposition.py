"""Decomposition of SO(2), O(2), SO(3), O(3) representations into real irreps (no e3nn needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import equirelax as er
from equirelax.groups import SO, O
from equirelax.reps import IrrepLabel, decompose, split_into_irreps, standard_irrep, vector
from equirelax.reps.irrep_decomposition import is_irreducible
from tests.helpers.lie_tensor_powers import GROUPS, tensor_power


def so3_multiplicity(k: int, l: int) -> int:
    """Multiplicity of the degree-l irrep in V^⊗k from characters alone (Weyl's integration
    formula on rotation angles θ: χ_V = 1 + 2cos θ, χ_l = sin((l+½)θ) / sin(θ/2))."""
    theta = (np.arange(4096) + 0.5) * 2 * np.pi / 4096  # exact for these trigonometric sums
    chi = (1 + 2 * np.cos(theta)) ** k
    chi_l = np.sin((l + 0.5) * theta) / np.sin(theta / 2)
    value = 2 * np.mean(chi * chi_l * np.sin(theta / 2) ** 2)
    assert abs(value - np.rint(value)) < 1e-9, value
    return int(np.rint(value))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("name", ["SO(3)", "O(3)"])
def test_so3_multiplicities_are_the_character_counts(name, k):
    G = GROUPS[name]
    found = decompose(tensor_power(G, k)).multiplicities
    parity = (-1) ** k if name == "O(3)" else 1  # the inversion acts on V^⊗k by (-1)^k
    expected = {IrrepLabel(l, parity): so3_multiplicity(k, l) for l in range(k + 1)}
    assert found == {label: m for label, m in expected.items() if m}


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_so2_multiplicities_are_the_binomial_counts(k):
    # V = e^{iθ} + e^{-iθ}: frequency |k - 2j| with multiplicity C(k, j); real irreps pair ±f
    found = decompose(tensor_power(SO(2), k)).multiplicities
    expected: dict[IrrepLabel, int] = {}
    for j in range(k + 1):
        f = abs(k - 2 * j)
        expected[IrrepLabel(f)] = expected.get(IrrepLabel(f), 0) + math.comb(k, j)
    expected = {lab: (m if lab.degree == 0 else m // 2) for lab, m in expected.items()}
    assert found == expected


def check_decomposition(rep: er.reps.Rep, atol: float = 1e-12) -> None:
    """Q orthogonal and Q ρ Qᵀ = ⊕ standard irreps on the algebra, generators and samples."""
    dec = decompose(rep)
    q = dec.change_of_basis
    irr = er.reps.direct_sum(list(dec.parts))
    np.testing.assert_allclose(q @ q.T, np.eye(rep.dim), atol=atol)
    for a, b in zip(rep.lie_matrices(), irr.lie_matrices()):
        np.testing.assert_allclose(q @ a @ q.T, b, atol=atol)
    for a, b in zip(rep.generator_matrices(), irr.generator_matrices()):
        np.testing.assert_allclose(q @ a @ q.T, b, atol=atol)
    for g in rep.group.sample(3, seed=0):
        np.testing.assert_allclose(q @ rep.matrix(g) @ q.T, irr.matrix(g), atol=1e-10)
    # the copies of an irrep are adjacent; degrees ascend
    runs = [lab for i, lab in enumerate(dec.labels) if i == 0 or dec.labels[i - 1] != lab]
    assert len(runs) == len(set(runs))
    assert [lab.degree for lab in runs] == sorted(lab.degree for lab in runs)


@pytest.mark.parametrize("name", GROUPS)
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_tensor_powers_become_standard_irreps(name, k):
    check_decomposition(tensor_power(GROUPS[name], k))


@pytest.mark.parametrize("name", GROUPS)
def test_sums_products_and_signs_decompose(name):
    G = GROUPS[name]
    V, S = vector(G), er.reps.sign(G)
    check_decomposition(V * V + S + V * S + er.reps.trivial(G))
    check_decomposition(V * V * V * V * V, atol=1e-11)


@pytest.mark.parametrize("name", GROUPS)
def test_standard_irreps_are_irreducible_orthogonal_representations(name):
    G = GROUPS[name]
    labels = [IrrepLabel(d, p) for d in range(5) for p in (1, -1)]
    labels = [
        lab
        for lab in labels
        if lab.parity == 1 or name == "O(3)" or (name == "O(2)" and lab.degree == 0)
    ]
    a, b = G.sample(2, seed=1)
    for label in labels:
        rep = standard_irrep(G, label)
        assert rep.dim == label.dim(G) and is_irreducible(rep)
        assert standard_irrep(G, label) is rep
        np.testing.assert_allclose(rep.matrix(a @ b), rep.matrix(a) @ rep.matrix(b), atol=1e-12)
        np.testing.assert_allclose(rep.matrix(a) @ rep.matrix(a).T, np.eye(rep.dim), atol=1e-12)
        dec = decompose(rep)
        assert dec.labels == (label,)


def test_so3_generators_satisfy_the_algebra_and_degree_one_is_the_vector_rep():
    from equirelax.reps.real_irreps import so3_generators

    for l in range(7):
        x, y, z = so3_generators(l)
        for a, b, c in ((x, y, z), (y, z, x), (z, x, y)):
            np.testing.assert_allclose(a @ b - b @ a, c, atol=1e-13)
        np.testing.assert_allclose(
            -(x @ x + y @ y + z @ z), l * (l + 1) * np.eye(2 * l + 1), atol=1e-12
        )
    assert standard_irrep(O(3), IrrepLabel(1, -1)) == vector(O(3))
    assert standard_irrep(SO(3), IrrepLabel(1)) == vector(SO(3))


def test_reps_in_irreps_form_keep_their_coordinates():
    G = O(3)
    rep = 3 * standard_irrep(G, IrrepLabel(0)) + 2 * vector(G) + standard_irrep(G, IrrepLabel(2))
    parts, q = split_into_irreps(rep)
    assert q is None and parts == rep.parts
    parts, q = split_into_irreps(vector(G) + vector(G) * vector(G))
    assert len(parts) == 4 and q is not None and q.shape == (12, 12)
    np.testing.assert_allclose(q[:3, :3], np.eye(3))  # the vector summand is left alone


def test_decomposition_is_cached():
    rep = tensor_power(SO(3), 3)
    assert decompose(rep) is decompose(tensor_power(SO(3), 3))


def test_e3nn_irreps_of_degree_zero_and_one_are_standard():
    pytest.importorskip("e3nn")
    for G in (SO(3), O(3)):
        for l, p in ((0, 1), (1, -1)):
            standard = standard_irrep(G, IrrepLabel(l, p if G.name == "O(3)" else 1))
            assert er.reps.irrep(G, l, p) == standard
    check_decomposition(er.reps.irreps(O(3), "2x2e+1o") * vector(O(3)), atol=1e-11)


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="real irreps are known for"):
        decompose(er.reps.natural(er.groups.symmetric(3)))
    G = SO(3)
    halved = er.reps.MatrixRep(G, [], [0.5 * a for a in G.lie_algebra], check=False)
    with pytest.raises(ValueError, match=r"eigenvalue 0.5, expected l\(l\+1\)"):
        decompose(halved)
    with pytest.raises(ValueError, match="parity -1"):
        standard_irrep(SO(3), IrrepLabel(1, -1))
    with pytest.raises(ValueError, match="degree"):
        standard_irrep(O(3), IrrepLabel(-1))
    with pytest.raises(TypeError, match="needs a Rep"):
        decompose(np.eye(3))
