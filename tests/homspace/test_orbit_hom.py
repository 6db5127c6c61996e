"""Orbit (weight-sharing) hom-spaces between permutation representations.

Random small groups (1-3 random generators in S_n, n <= 7) and random permutation reps (sums of
natural, trivial, quotient, regular and tensor reps) are checked against references that do not
use the library's construction: the Burnside count of the dimension, the equivariance of random
layers on every element (elements and their actions found by Cayley-graph enumeration), and the
group average (Reynolds operator) for the projection.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.groups import PermutationGroup, symmetric
from equirelax.homspace import OrbitHomSpace
from equirelax.reps import Rep, natural, quotient, regular, trivial

# scaled with the active hypothesis profile (tests/conftest.py)
PROFILE_EXAMPLES = settings().max_examples


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same torch RNG state, whatever ran before it."""
    torch.manual_seed(0)


MAX_DIM = 40


@st.composite
def random_groups(draw, max_degree: int = 7) -> PermutationGroup:
    n = draw(st.integers(2, max_degree))
    k = draw(st.integers(1, 3))
    return PermutationGroup([draw(st.permutations(range(n))) for _ in range(k)])


def perm_rep_terms(G: PermutationGroup) -> dict[str, Rep]:
    """Building blocks of random permutation reps, those small enough for the tests."""
    V = natural(G)
    terms: dict[str, Rep] = {"natural": V, "trivial": trivial(G), "natural*natural": V * V}
    point = G.stabilizer(0)
    terms["quotient(G/Stab(0))"] = quotient(G, point)
    pair = point.stabilizer(1)
    if G.order // pair.order <= MAX_DIM:
        terms["quotient(G/Stab(0,1))"] = quotient(G, pair)
    if G.order <= MAX_DIM:
        terms["regular"] = regular(G)
    return {name: rep for name, rep in terms.items() if rep.dim <= MAX_DIM}


@st.composite
def random_perm_rep(draw, G: PermutationGroup) -> Rep:
    """A random sum of 1-3 building blocks, at most ``MAX_DIM`` in total."""
    terms = perm_rep_terms(G)
    names = sorted(terms)
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3))
    parts, total = [], 0
    for name in chosen:
        if total + terms[name].dim <= MAX_DIM:
            parts.append(terms[name])
            total += terms[name].dim
    return er.reps.direct_sum(parts)


@st.composite
def group_and_two_reps(draw):
    G = draw(random_groups())
    return G, draw(random_perm_rep(G)), draw(random_perm_rep(G))


def actions(cayley, G: PermutationGroup, rep: Rep) -> tuple[np.ndarray, np.ndarray]:
    """Every element and the permutation by which ``rep`` makes it act (Cayley enumeration)."""
    return cayley(G.generators, rep.images)


def relative_error_all_elements(layer, x, perms_in, perms_out) -> float:
    """max_g ||f(ρ_in(g) x) - ρ_out(g) f(x)|| / ||f(x)|| over all elements, in float64.

    (ρ(g) x)[p[i]] = x[i], i.e. ρ(g) x = x[..., p^-1]: one gather per element, vectorised.
    """
    inv_in = np.argsort(perms_in, axis=1)
    inv_out = np.argsort(perms_out, axis=1)
    with torch.no_grad():
        fx = layer(x).double()
        gx = x[:, torch.from_numpy(inv_in)].transpose(0, 1)  # (|G|, batch, d_in)
        fgx = layer(gx).double()
        gfx = fx[:, torch.from_numpy(inv_out)].transpose(0, 1)
        diff = (fgx - gfx).reshape(len(perms_in), -1).norm(dim=1)
    return float(diff.max() / fx.norm())


def random_layer(rep_in: Rep, rep_out: Rep, seed: int) -> er.nn.EquivariantLinear:
    torch.manual_seed(seed)
    layer = er.nn.EquivariantLinear(rep_in, rep_out, bias=True)
    with torch.no_grad():
        layer.coefficients.normal_()
        layer.bias_coefficients.normal_()
    return layer


@settings(max_examples=2 * PROFILE_EXAMPLES)
@given(group_and_two_reps())
def test_dimension_is_the_burnside_count(cayley, data):
    G, rep_in, rep_out = data
    _, p_in = actions(cayley, G, rep_in)
    _, p_out = actions(cayley, G, rep_out)
    fix_in = (p_in == np.arange(rep_in.dim)).sum(axis=1)
    fix_out = (p_out == np.arange(rep_out.dim)).sum(axis=1)
    burnside = (fix_in * fix_out).sum()
    assert burnside % G.order == 0
    assert er.hom(rep_in, rep_out).dim == burnside // G.order


@settings(max_examples=2 * PROFILE_EXAMPLES)
@given(group_and_two_reps(), st.integers(0, 2**16))
def test_random_layers_are_equivariant_on_every_element(cayley, data, seed):
    G, rep_in, rep_out = data
    _, p_in = actions(cayley, G, rep_in)
    _, p_out = actions(cayley, G, rep_out)
    layer = random_layer(rep_in, rep_out, seed)
    x = torch.randn(3, rep_in.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    err64 = relative_error_all_elements(layer.double(), x, p_in, p_out)
    assert err64 < 1e-12
    err32 = relative_error_all_elements(layer.float(), x.float(), p_in, p_out)
    assert err32 < 1e-5


@settings(max_examples=2 * PROFILE_EXAMPLES)
@given(group_and_two_reps())
def test_orbit_basis_is_an_exact_zero_one_partition(cayley, data):
    _, rep_in, rep_out = data
    H = er.hom(rep_in, rep_out)
    assert isinstance(H, OrbitHomSpace)
    B = H.basis.numpy()
    assert B.shape == (H.dim, rep_out.dim, rep_in.dim)
    assert set(np.unique(B)) <= {0.0, 1.0}
    np.testing.assert_array_equal(B.sum(axis=0), np.ones(H.shape))  # every entry in one orbit
    # each basis matrix commutes with the generators' actions (exactly: integers)
    for m_in, m_out in zip(rep_in.generator_matrices(), rep_out.generator_matrices()):
        np.testing.assert_array_equal(m_out @ B, B @ m_in)


@settings(max_examples=2 * PROFILE_EXAMPLES)
@given(group_and_two_reps(), st.integers(0, 2**16))
def test_projection_is_the_group_average(cayley, data, seed):
    G, rep_in, rep_out = data
    if G.order > 720:  # the brute-force average is O(|G| d^2); smaller groups suffice here
        return
    _, p_in = actions(cayley, G, rep_in)
    _, p_out = actions(cayley, G, rep_out)
    W = np.random.default_rng(seed).standard_normal((rep_out.dim, rep_in.dim))
    inv_in, inv_out = np.argsort(p_in, axis=1), np.argsort(p_out, axis=1)
    # (ρ_out(g) W ρ_in(g)^T)[a, b] = W[q^-1(a), p^-1(b)]
    reynolds = W[inv_out[:, :, None], inv_in[:, None, :]].mean(axis=0)
    P = er.hom(rep_in, rep_out).project(W)
    assert isinstance(P, np.ndarray)
    np.testing.assert_allclose(P, reynolds, atol=1e-12)


@settings(max_examples=2 * PROFILE_EXAMPLES)
@given(group_and_two_reps(), st.integers(0, 2**16))
def test_projection_is_orthogonal_and_idempotent(data, seed):
    _, rep_in, rep_out = data
    H = er.hom(rep_in, rep_out)
    W = torch.randn(2, *H.shape, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))
    P = H.project(W)
    assert P.shape == W.shape  # leading batch axes are kept
    torch.testing.assert_close(H.project(P), P, atol=1e-13, rtol=0)
    residual = W - P
    inner = torch.einsum("bij,kij->bk", residual, H.basis)
    assert inner.abs().max() < 1e-12  # residual orthogonal to every basis matrix


def test_orbit_basis_for_s20_tensor_square_is_fast_and_needs_no_group_enumeration():
    G = symmetric(20)
    T = natural(G) * natural(G)
    start = time.perf_counter()
    H = OrbitHomSpace(T, T)  # built directly: the hom() cache cannot help
    elapsed = time.perf_counter() - start
    assert H.dim == 15
    assert H.shape == (400, 400)
    assert "chain" not in G.__dict__  # no stabiliser chain, let alone an enumeration
    assert elapsed < 1.0, f"S_20 basis took {elapsed:.3f} s"
    # stored sparsely: one label per weight entry, not a dense (15, 400, 400) basis
    assert H.labels.shape == (400, 400) and H.labels.dtype == np.int64
    assert np.bincount(H.labels.ravel()).sum() == 400 * 400


def test_projection_refuses_wrong_shapes():
    G = symmetric(4)
    H = er.hom(natural(G), natural(G) + trivial(G))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 5, 4\).*got \(4, 4\)"):
        H.project(np.zeros((4, 4)))
    with pytest.raises(TypeError, match=r"torch\.Tensor or numpy array, got list"):
        H.project([[0.0] * 4] * 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expected 2 coefficients, got \(3,\)"):
        er.hom(natural(G), natural(G)).weight(torch.zeros(3))


def test_hom_is_cached_by_representation():
    G = symmetric(5)
    assert er.hom(natural(G), natural(G)) is er.hom(natural(G), natural(G))


def test_hom_refuses_mixed_groups_and_non_reps():
    with pytest.raises(ValueError, match="representations of one group, got S3 and S4"):
        er.hom(natural(symmetric(3)), natural(symmetric(4)))
    with pytest.raises(TypeError, match="rep_out to be a Rep, got int"):
        er.hom(natural(symmetric(3)), 3)  # type: ignore[arg-type]


def test_weight_gradient_is_the_orbit_sum_of_the_dense_gradient():
    G = er.groups.dihedral(5)
    rep_in, rep_out = natural(G) + trivial(G), natural(G) * natural(G)
    H = er.hom(rep_in, rep_out)
    c = torch.randn(H.dim, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(H.shape, dtype=torch.float64)
    (H.weight(c) * upstream).sum().backward()
    expected = torch.einsum("kij,ij->k", H.basis, upstream)
    torch.testing.assert_close(c.grad, expected, atol=1e-12, rtol=0)
    small = er.hom(natural(symmetric(3)), natural(symmetric(3)))
    c3 = torch.randn(small.dim, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(small.weight, (c3,))
    assert torch.autograd.gradgradcheck(lambda v: small.weight(v) ** 2, (c3,))


@pytest.mark.parametrize("n", [3, 20])
def test_gather_is_differentiable_under_autograd_and_torch_func(n):
    # n = 20: 400 entries in 2 orbits, so the gather spreads its labels (see _OrbitGather)
    H = er.hom(natural(symmetric(n)), natural(symmetric(n)))
    assert (H.spread > 1) == (n == 20)
    c = torch.randn(H.dim, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(H.weight, (c,))
    assert torch.autograd.gradgradcheck(lambda v: H.weight(v) ** 2, (c,))
    expected = H.basis  # d W / d c_k = B_k
    jac_rev = torch.func.jacrev(H.weight)(c)
    jac_fwd = torch.func.jacfwd(H.weight)(c)
    torch.testing.assert_close(jac_rev, expected.permute(1, 2, 0), atol=0, rtol=0)
    torch.testing.assert_close(jac_fwd, expected.permute(1, 2, 0), atol=0, rtol=0)
    batch = torch.randn(4, H.dim, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(torch.func.vmap(H.weight)(batch), H.weight_batched(batch))
    with torch.no_grad():
        torch.testing.assert_close(H.weight(c), torch.einsum("k,kij->ij", c, expected))


def test_orbit_labels_are_numbered_in_order_of_first_appearance():
    from equirelax.homspace.orbit import _in_order_of_first_appearance, orbit_labels

    G = er.groups.dihedral(5)
    labels = orbit_labels([natural(G).images[0], natural(G).images[1]],
                          [natural(G).images[0], natural(G).images[1]]).ravel()
    running = np.maximum.accumulate(labels)
    assert labels[0] == 0 and np.all(np.diff(running) <= 1)
    # the renumbering itself, on labels that are not canonical yet
    np.testing.assert_array_equal(_in_order_of_first_appearance(np.array([2, 0, 2, 1, 0])),
                                  [0, 1, 0, 2, 1])
    np.testing.assert_array_equal(_in_order_of_first_appearance(np.array([0, 1, 0, 2])),
                                  [0, 1, 0, 2])


@pytest.mark.parametrize("copies_out", [24, 12])
def test_tiled_labels_gather_by_rows_with_the_same_weight_gradient_and_tangent(copies_out):
    # 24 copies of regular(D_4) each side: 36864 entries in a 24 x 24 grid of 8 x 8 tiles, so the
    # weight is gathered by tile rows; 24 -> 12 copies is below the size that does
    G = er.groups.dihedral(4)
    H = er.hom(24 * er.reps.regular(G), copies_out * er.reps.regular(G))
    assert (H.tile_columns is not None) == (copies_out == 24)
    labels = torch.from_numpy(H.labels)
    c = torch.randn(H.dim, dtype=torch.float64, requires_grad=True)
    w = H.weight(c)
    assert torch.equal(w, c.detach()[labels])
    with torch.no_grad():
        assert torch.equal(H.weight(c), c[labels])
    upstream = torch.randn(H.shape, dtype=torch.float64)
    (w * upstream).sum().backward()
    expected = torch.zeros(H.dim, dtype=torch.float64).index_add_(
        0, labels.reshape(-1), upstream.reshape(-1))
    torch.testing.assert_close(c.grad, expected, atol=1e-12, rtol=0)
    tangent = torch.randn(H.dim, dtype=torch.float64)
    _, jvp = torch.func.jvp(H.weight, (c.detach(),), (tangent,))
    assert torch.equal(jvp, tangent[labels])


def test_tiled_labels_are_found_only_for_a_grid_of_equal_tiles():
    G = er.groups.dihedral(4)
    H = er.hom(24 * er.reps.regular(G), 24 * er.reps.regular(G))
    assert H.tile_columns is not None and H.tile_columns.shape == (8 * H.shape[1],)
    # a sum of two different reps on the input side: the tiles differ, no row gather
    mixed = er.hom(12 * er.reps.regular(G) + 96 * er.reps.trivial(G),
                   24 * er.reps.regular(G))
    assert mixed.tile_columns is None
    torch.testing.assert_close(mixed.weight(torch.arange(mixed.dim, dtype=torch.float64)),
                               torch.from_numpy(mixed.labels).to(torch.float64))


def test_an_orbit_space_pickled_before_tiled_gathers_finds_its_tiles_again():
    import pickle

    G = er.groups.dihedral(4)
    H = er.hom(24 * er.reps.regular(G), 24 * er.reps.regular(G))
    state = H.__dict__.copy()
    del state["tile_columns"]
    old = OrbitHomSpace.__new__(OrbitHomSpace)
    old.__setstate__(state)
    np.testing.assert_array_equal(old.tile_columns, H.tile_columns)
    copy = pickle.loads(pickle.dumps(H))
    c = torch.randn(H.dim, dtype=torch.float64)
    assert torch.equal(copy.weight(c), H.weight(c))
