"""Null-space hom-spaces for non-permutation representations (finite groups and Lie groups).

The dimension is checked against the character inner product: an exact average over the elements
for finite groups (matrices found by Cayley-graph enumeration, not by the library's evaluation),
closed-form values and a Monte-Carlo Haar average for Lie groups. Bases are checked to be
orthonormal and equivariant, layers on every element (finite) or on samples and along the Lie
algebra (Lie groups), and projections to be idempotent, orthogonal and equal to the group average.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.groups import SO, O, PermutationGroup, symmetric
from equirelax.homspace import BlockHomSpace, atomic_basis
from equirelax.reps import Rep, natural, sign, standard, trivial, vector

# scaled with the active hypothesis profile (tests/conftest.py)
PROFILE_EXAMPLES = settings().max_examples


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same torch RNG state, whatever ran before it."""
    torch.manual_seed(0)


MAX_DIM = 20


# -- finite groups ---------------------------------------------------------------------------
def matrix_terms(G: PermutationGroup) -> dict[str, Rep]:
    St, Sg, V = standard(G), sign(G), natural(G)
    terms = {
        "standard": St,
        "sign": Sg,
        "natural": V,
        "trivial": trivial(G),
        "sign*standard": Sg * St,
        "sign*natural": Sg * V,
    }
    if St.dim <= 3:  # keeps every atomic null-space solve small (at most 9 x 9 maps)
        terms["standard*standard"] = St * St
    return terms


@st.composite
def group_and_two_matrix_reps(draw):
    n = draw(st.integers(2, 5))
    k = draw(st.integers(1, 2))
    G = PermutationGroup([draw(st.permutations(range(n))) for _ in range(k)])
    terms = matrix_terms(G)
    names = sorted(terms)

    def rep() -> Rep:
        chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3))
        parts = [terms["standard"]]  # at least one non-permutation summand
        for name in chosen:
            if sum(p.dim for p in parts) + terms[name].dim <= MAX_DIM:
                parts.append(terms[name])
        rest = parts[1:]
        if any(not p.is_permutation for p in rest) and draw(st.booleans()):
            parts = rest  # still not a permutation rep
        return er.reps.direct_sum(parts)

    return G, rep(), rep()


def element_matrices(cayley, G: PermutationGroup, rep: Rep) -> np.ndarray:
    """Matrices of every element, by following generator matrices through the Cayley graph."""
    _, mats = cayley(G.generators, rep.generator_matrices(), multiply=np.matmul)
    return mats


@settings(max_examples=3 * PROFILE_EXAMPLES // 2)
@given(group_and_two_matrix_reps())
def test_finite_dimension_is_the_character_inner_product(cayley, data):
    G, rep_in, rep_out = data
    chi_in = np.trace(element_matrices(cayley, G, rep_in), axis1=1, axis2=2)
    chi_out = np.trace(element_matrices(cayley, G, rep_out), axis1=1, axis2=2)
    inner = float(np.mean(chi_in * chi_out))
    assert abs(inner - round(inner)) < 1e-9
    assert er.hom(rep_in, rep_out).dim == round(inner)


@settings(max_examples=3 * PROFILE_EXAMPLES // 2)
@given(group_and_two_matrix_reps(), st.integers(0, 2**16))
def test_finite_random_layers_are_equivariant_on_every_element(cayley, data, seed):
    G, rep_in, rep_out = data
    m_in = torch.from_numpy(element_matrices(cayley, G, rep_in))
    m_out = torch.from_numpy(element_matrices(cayley, G, rep_out))
    torch.manual_seed(seed)
    layer = er.nn.EquivariantLinear(rep_in, rep_out)
    with torch.no_grad():
        layer.coefficients.normal_()
        layer.bias_coefficients.normal_()
    x = torch.randn(3, rep_in.dim, dtype=torch.float64)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        f = layer.to(dtype)
        with torch.no_grad():
            fx = f(x.to(dtype)).double()
            if fx.norm() == 0:  # nothing to compare (e.g. hom and bias both zero)
                assert er.hom(rep_in, rep_out).dim == 0
                continue
            fgx = f(torch.einsum("gij,bj->gbi", m_in.to(dtype), x.to(dtype))).double()
            gfx = torch.einsum("gij,bj->gbi", m_out, fx)
        err = (fgx - gfx).reshape(len(m_in), -1).norm(dim=1).max() / fx.norm()
        assert err < tol, (dtype, float(err))


@settings(max_examples=3 * PROFILE_EXAMPLES // 2)
@given(group_and_two_matrix_reps())
def test_finite_basis_is_orthonormal_and_commutes_with_generators(data):
    _, rep_in, rep_out = data
    H = er.hom(rep_in, rep_out)
    assert isinstance(H, BlockHomSpace)
    B = H.basis.numpy()
    gram = np.einsum("aij,bij->ab", B, B)
    np.testing.assert_allclose(gram, np.eye(H.dim), atol=1e-12)
    for g_in, g_out in zip(rep_in.generator_matrices(), rep_out.generator_matrices()):
        np.testing.assert_allclose(g_out @ B, B @ g_in, atol=1e-12)


@settings(max_examples=3 * PROFILE_EXAMPLES // 2)
@given(group_and_two_matrix_reps(), st.integers(0, 2**16))
def test_finite_projection_is_the_group_average(cayley, data, seed):
    G, rep_in, rep_out = data
    m_in = element_matrices(cayley, G, rep_in)
    m_out = element_matrices(cayley, G, rep_out)
    W = np.random.default_rng(seed).standard_normal((rep_out.dim, rep_in.dim))
    reynolds = np.einsum("gij,jk,glk->il", m_out, W, m_in) / len(m_in)
    H = er.hom(rep_in, rep_out)
    P = H.project(W)
    np.testing.assert_allclose(P, reynolds, atol=1e-12)
    np.testing.assert_allclose(H.project(P), P, atol=1e-12)
    residual = W - P
    assert np.abs(np.einsum("ij,kij->k", residual, H.basis.numpy())).max(initial=0.0) < 1e-12


@pytest.mark.parametrize(
    ("make_in", "make_out", "dim"),
    [
        (lambda G: standard(G), lambda G: standard(G), 1),
        (lambda G: standard(G) * standard(G), lambda G: standard(G) * standard(G), 4),
        (lambda G: natural(G) + standard(G), lambda G: natural(G) + standard(G), 5),
        (lambda G: sign(G) * standard(G), lambda G: standard(G), 0),
        (lambda G: sign(G), lambda G: trivial(G), 0),
        (lambda G: standard(G), lambda G: natural(G), 1),
    ],
    ids=["St->St", "St2->St2", "V+St->V+St", "sign*St->St", "sign->T", "St->V"],
)
def test_s4_known_dimensions(make_in, make_out, dim):
    G = symmetric(4)
    assert er.hom(make_in(G), make_out(G)).dim == dim


# -- Lie groups ------------------------------------------------------------------------------
def lie_rep(G, spec: str) -> Rep:
    V, T, S = vector(G), trivial(G), sign(G)
    return {"V": V, "T": T, "S": S, "VV": V * V, "VVV": V * V * V, "V+T": V + T,
            "2V": 2 * V, "V+VV": V + V * V}[spec]


def lie_character(G, spec: str, g: np.ndarray) -> np.ndarray:
    """Characters written from the definitions: tr g, 1, det g, and their products and sums."""
    tr = np.trace(g, axis1=1, axis2=2)
    det = np.linalg.det(g)
    return {"V": tr, "T": np.ones_like(tr), "S": det, "VV": tr**2, "VVV": tr**3, "V+T": tr + 1,
            "2V": 2 * tr, "V+VV": tr + tr**2}[spec]


KNOWN = [
    # (group, in, out, dim): SO(3) irreps 0,1,2 in V⊗V; O(3) adds parity; SO(2) is abelian
    ("SO(3)", "V", "V", 1),
    ("SO(3)", "VV", "VV", 3),
    ("SO(3)", "VV", "V", 1),  # the cross product
    ("SO(3)", "VV", "T", 1),  # the trace
    ("SO(3)", "V", "T", 0),
    ("SO(3)", "VVV", "T", 1),  # the determinant (triple product)
    ("SO(3)", "V+VV", "V+VV", 6),  # 1 + 1 + 1 + 3
    ("SO(3)", "2V", "V", 2),
    ("O(3)", "VV", "V", 0),  # a product of two vectors is parity-even
    ("O(3)", "VV", "VV", 3),
    ("O(3)", "VVV", "T", 0),
    ("O(3)", "VVV", "S", 1),  # the triple product is a pseudo-scalar
    ("O(3)", "V+T", "V+T", 2),
    ("SO(2)", "V", "V", 2),  # a I + b J
    ("SO(2)", "VV", "VV", 6),
    ("SO(2)", "VV", "V", 0),
    ("O(2)", "V", "V", 1),
    ("O(2)", "VV", "VV", 3),
    ("O(2)", "S", "T", 0),
]
LIE_GROUPS = {"SO(2)": SO(2), "O(2)": O(2), "SO(3)": SO(3), "O(3)": O(3)}


@pytest.mark.parametrize(("group", "a", "b", "dim"), KNOWN,
                         ids=[f"{g}:{a}->{b}" for g, a, b, _ in KNOWN])
def test_lie_dimension_known_and_monte_carlo(group, a, b, dim):
    G = LIE_GROUPS[group]
    H = er.hom(lie_rep(G, a), lie_rep(G, b))
    assert H.dim == dim
    g = G.sample(20000, seed=0)
    estimate = float(np.mean(lie_character(G, a, g) * lie_character(G, b, g)))
    assert abs(estimate - dim) < 0.35, estimate  # standard error below 0.07 for these pairs


@pytest.mark.parametrize(("group", "a", "b", "dim"), KNOWN,
                         ids=[f"{g}:{a}->{b}" for g, a, b, _ in KNOWN])
def test_lie_basis_is_orthonormal_and_equivariant(group, a, b, dim):
    G = LIE_GROUPS[group]
    rep_in, rep_out = lie_rep(G, a), lie_rep(G, b)
    B = er.hom(rep_in, rep_out).basis.numpy()
    np.testing.assert_allclose(np.einsum("aij,bij->ab", B, B), np.eye(dim), atol=1e-12)
    for g in G.sample(10, seed=1):
        np.testing.assert_allclose(rep_out.matrix(g) @ B, B @ rep_in.matrix(g), atol=1e-12)
    for A_in, A_out in zip(rep_in.lie_matrices(), rep_out.lie_matrices()):
        np.testing.assert_allclose(A_out @ B, B @ A_in, atol=1e-12)


@pytest.mark.parametrize("group", LIE_GROUPS)
def test_lie_random_layers_equivariant_on_samples_and_algebra(group):
    G = LIE_GROUPS[group]
    rep_in, rep_out = lie_rep(G, "V+VV"), lie_rep(G, "V+T") + lie_rep(G, "VV")
    torch.manual_seed(0)
    layer = er.nn.EquivariantLinear(rep_in, rep_out)
    with torch.no_grad():
        layer.coefficients.normal_()
        layer.bias_coefficients.normal_()
    x = torch.randn(4, rep_in.dim, dtype=torch.float64)
    samples = G.sample(50, seed=2)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        assert er.equivariance_error(layer, x, elements=samples, dtype=dtype) < tol
        assert er.lie_derivative_error(layer, x, dtype=dtype) < tol


@pytest.mark.parametrize("group", LIE_GROUPS)
def test_lie_projection_idempotent_orthogonal_equivariant(group):
    G = LIE_GROUPS[group]
    rep_in, rep_out = lie_rep(G, "V+VV"), lie_rep(G, "V+T")
    H = er.hom(rep_in, rep_out)
    W = torch.randn(3, *H.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    P = H.project(W)
    torch.testing.assert_close(H.project(P), P, atol=1e-12, rtol=0)
    inner = torch.einsum("bij,kij->bk", W - P, H.basis)
    assert inner.abs().max() < 1e-12
    for g in G.sample(5, seed=3):
        m_in, m_out = torch.from_numpy(rep_in.matrix(g)), torch.from_numpy(rep_out.matrix(g))
        torch.testing.assert_close(m_out @ P, P @ m_in, atol=1e-12, rtol=0)
    # for a finite-dimensional check of "orthogonal": P is the nearest equivariant matrix
    other = P + 0.1 * torch.einsum("k,kij->ij", torch.randn(H.dim, dtype=torch.float64),
                                   H.basis)
    assert (W - P).norm() <= (W - other).norm()


def test_mixed_permutation_and_matrix_summands():
    G = symmetric(4)
    rep = natural(G) + standard(G) + trivial(G)
    H = er.hom(rep, rep)
    # natural = trivial + standard, so rep = 2 trivial + 2 standard: 2^2 + 2^2 = 8
    assert H.dim == 8
    B = H.basis.numpy()
    np.testing.assert_allclose(np.einsum("aij,bij->ab", B, B), np.eye(8), atol=1e-12)
    for g in G.elements():
        np.testing.assert_allclose(rep.matrix(g) @ B, B @ rep.matrix(g), atol=1e-12)


def test_multiplicities_cost_one_atomic_solve_and_are_cached():
    G = SO(3)
    V = vector(G)
    atom = atomic_basis(V, V)
    assert atomic_basis(V, V) is atom
    H = er.hom(10 * V, 7 * V)
    assert H.dim == 70 and H.shape == (21, 30)
    assert len(H.blocks) == 1  # one block for all copies of the pair of types


def test_zero_dimensional_space_has_an_empty_basis_and_projects_to_zero():
    G = SO(3)
    H = er.hom(vector(G), trivial(G))  # no invariant linear functional of a vector
    assert H.dim == 0
    assert tuple(H.basis.shape) == (0, 1, 3)
    W = torch.randn(2, 1, 3, dtype=torch.float64)
    torch.testing.assert_close(H.project(W), torch.zeros_like(W))


def test_batched_weights_match_one_at_a_time():
    G = symmetric(4)
    rep = 2 * standard(G) + natural(G) + standard(G) * standard(G)
    H = er.hom(rep, rep)
    c = torch.randn(3, H.dim, dtype=torch.float64)
    one_by_one = torch.stack([H.weight(row) for row in c])
    torch.testing.assert_close(H.weight_batched(c), one_by_one, atol=1e-14, rtol=0)
