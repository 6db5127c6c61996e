"""Partition hom spaces: the orbit basis of S_n tensor powers, applied without a dense weight.

The reference is the dense orbit basis (``OrbitHomSpace``), built from orbit labels of every
weight entry: the partition space must have the same dimension, the same coefficient order and
orbit sizes, the same weight, and the same projection.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equirelax.groups import PermutationGroup, alternating, cyclic, dihedral, symmetric
from equirelax.homspace.partition import (
    PartitionHomSpace,
    mobius,
    partition_hom,
    set_partitions,
    tensor_orders,
)
from equirelax.homspace.space import OrbitHomSpace, fixed_space
from equirelax.reps import natural, regular, standard, trivial

BELL = [1, 1, 2, 5, 15]


def power(G, k):
    """V^⊗k of the natural rep (k = 0: trivial)."""
    if k == 0:
        return trivial(G)
    rep = natural(G)
    for _ in range(k - 1):
        rep = rep * natural(G)
    return rep


def summed(G, orders):
    return sum((power(G, k) for k in orders[1:]), power(G, orders[0]))


def test_set_partitions_are_the_bell_numbers_in_lexicographic_order():
    for k, bell in enumerate(BELL):
        parts = set_partitions(k)
        assert len(parts) == bell and list(parts) == sorted(parts)
        for rgs in parts:  # restricted growth: each block is at most one past the largest so far
            assert all(b <= max(rgs[:t], default=-1) + 1 for t, b in enumerate(rgs))


def test_mobius_inverts_the_coarsening_matrix():
    for k in range(5):
        parts = set_partitions(k)
        coarsens = np.array(
            [
                [
                    all(p[s] == p[t] for s in range(k) for t in range(s) if q[s] == q[t])
                    for p in parts
                ]
                for q in parts
            ],
            float,
        )
        np.testing.assert_array_equal(coarsens @ mobius(k), np.eye(len(parts)))


def test_tensor_orders_recognise_sums_of_tensor_powers_only():
    G = symmetric(5)
    V, T = natural(G), trivial(G)
    assert tensor_orders(V + T + V * V + V) == [1, 0, 2, 1]
    assert tensor_orders(3 * (V * V)) == [2, 2, 2]
    assert tensor_orders(V * V * V) is None  # order 3: not applied by partitions
    assert tensor_orders(regular(symmetric(3))) is None
    assert tensor_orders(standard(G)) is None
    assert tensor_orders(natural(cyclic(6))) is None  # not the full symmetric group
    swapped = relabelled_square(G)
    assert tensor_orders(swapped) is None


def relabelled_square(G):
    """V ⊗ V with its two factors' roles mixed up by a relabelling of the points: a perm rep
    of S_n of dimension n² that is not laid out as V ⊗ V (i * n + j)."""
    from equirelax.reps.base import PermRep

    n = G.degree
    relabel = np.roll(np.arange(n * n), 1)
    back = np.argsort(relabel)
    images = [relabel[p][back] for p in (natural(G) * natural(G)).images]
    return PermRep(G, images, check=False)


@pytest.mark.parametrize("n", range(1, 13))
def test_symmetric_groups_are_recognised(n):
    assert symmetric(n).is_full_symmetric


def test_full_symmetric_groups_given_otherwise_and_proper_subgroups():
    n = 10
    cycle = np.roll(np.arange(n), -1)
    swap03 = np.arange(n)
    swap03[[0, 3]] = [3, 0]  # 3 steps apart on the cycle, gcd(3, 10) = 1
    assert PermutationGroup([cycle, swap03]).is_full_symmetric
    swap02 = np.arange(n)
    swap02[[0, 2]] = [2, 0]  # gcd(2, 10) = 2: the group keeps the parity classes apart
    assert not PermutationGroup([cycle, swap02]).is_full_symmetric
    for G in (alternating(9), dihedral(9), cyclic(9), alternating(5)):
        assert not G.is_full_symmetric


ORDERS = st.lists(st.integers(0, 2), min_size=1, max_size=3)


@settings(max_examples=25)
@given(n=st.integers(4, 6), orders_in=ORDERS, orders_out=ORDERS, seed=st.integers(0, 2**16))
def test_partition_space_is_the_dense_orbit_space(n, orders_in, orders_out, seed):
    G = symmetric(n)
    rep_in, rep_out = summed(G, orders_in), summed(G, orders_out)
    space, dense = PartitionHomSpace(rep_in, rep_out), OrbitHomSpace(rep_in, rep_out)
    assert space.dim == dense.dim
    np.testing.assert_array_equal(space.counts, dense.counts)
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(space.dim, dtype=torch.float64, generator=gen)
    w = dense.weight(c)
    torch.testing.assert_close(space.weight(c), w, atol=1e-12, rtol=0)
    x = torch.randn(3, 2, rep_in.dim, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(space.apply(c, x), x @ w.T, atol=1e-12, rtol=0)
    other = torch.randn(2, *space.shape, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(
        space.coefficients(other), dense.coefficients(other), atol=1e-12, rtol=0
    )
    u = torch.randn(rep_out.dim, 3, dtype=torch.float64, generator=gen)
    v = torch.randn(rep_in.dim, 3, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(
        space.coefficients_low_rank(u, v), dense.coefficients(u @ v.T), atol=1e-12, rtol=0
    )


def test_counts_are_falling_factorials_and_cover_every_entry():
    G = symmetric(7)
    V = natural(G)
    space = PartitionHomSpace(V * V, V * V)
    assert sorted(space.counts.tolist()) == sorted(
        math.perm(7, max(r) + 1) for r in set_partitions(4)
    )
    assert space.counts.sum() == space.shape[0] * space.shape[1] == space.basis_sq_norm()


def assert_node_gradients_equal_recorded_ops(space, c, x):
    """The gradients of ``space.apply``'s one autograd node equal those of recording every op
    (``space._forward``), to 1e-12 in float64, for a random output gradient."""
    grad = torch.randn(x.shape[0], space.shape[0], dtype=torch.float64)
    fused = torch.autograd.grad(space.apply(c, x), (c, x), grad)
    plain_y = space._forward(c, x, space.index_tensors(torch.float64))  # every op recorded
    plain = torch.autograd.grad(plain_y, (c, x), grad)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_apply_is_linear_in_the_coefficients_and_gradients_flow():
    G = symmetric(5)
    V = natural(G)
    space = PartitionHomSpace(2 * V + V * V, V * V + V)
    c = torch.randn(space.dim, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, space.shape[1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(space.apply, (c, x))
    assert torch.autograd.gradgradcheck(space.apply, (c, x))
    # the one-node backward gives what recording every op gives
    assert_node_gradients_equal_recorded_ops(space, c, x)


def test_one_copy_groups_reading_the_same_reductions_are_bundled_with_exact_gradients():
    """V ⊗ V -> V ⊗ V (one copy each side): the diagonal, row and column placements read the
    same three reductions and the two scalar ones the same two, so each set is one bundle
    (one stacked product) whose forward, gradients and second derivatives match the dense
    weight and the op-by-op backward."""
    G = symmetric(5)
    V = natural(G)
    space = PartitionHomSpace(V * V, V * V)
    (pair,) = space.pairs
    bundled = [[g.kind for g in pair.groups[a:b]] for a, b in pair.bundles]
    assert sorted(map(sorted, bundled)) == sorted(
        [["cols", "diag", "rows"], ["diag_scalar", "scalar"], ["full"]]
    )
    c = torch.randn(space.dim, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, space.shape[1], dtype=torch.float64, requires_grad=True)
    w = OrbitHomSpace(V * V, V * V).weight(c.detach())
    torch.testing.assert_close(space.apply(c, x), x @ w.T, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(space.apply, (c, x))
    assert torch.autograd.gradgradcheck(space.apply, (c, x))
    assert_node_gradients_equal_recorded_ops(space, c, x)


@pytest.mark.parametrize("shaped", [False, True])
def test_the_bias_joins_the_assembly_with_exact_gradients(shaped):
    """The generic path adds the bias as per-copy constants and diagonals (no pass over the
    output): the same as adding the dense bias, with gradients that pass gradcheck (twice)."""
    G = symmetric(5)
    V = natural(G)
    rep_in, rep_out = (2 * (V * V), 3 * (V * V)) if shaped else (2 * V + V * V,
                                                                  V * V + V + trivial(G))
    space = PartitionHomSpace(rep_in, rep_out)
    bias_space = fixed_space(rep_out)
    c = torch.randn(space.dim, dtype=torch.float64, requires_grad=True)
    b = torch.randn(bias_space.dim, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, space.shape[1], dtype=torch.float64, requires_grad=True)
    if shaped:
        x = x.detach().view(3, 2, 5, 5).requires_grad_()

        def apply(c, x, b):
            return space.apply_shaped(c, x, bias=b)
    else:

        def apply(c, x, b):
            return space.apply(c, x, bias=b)

    dense_bias = bias_space.weight(b).reshape(-1)
    want = space.apply(c, x.reshape(3, -1)) + dense_bias
    torch.testing.assert_close(apply(c, x, b).reshape(3, -1), want, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(apply, (c, x, b))
    assert torch.autograd.gradgradcheck(apply, (c, x, b))


def test_too_small_n_and_other_reps_are_refused():
    G = symmetric(3)
    V = natural(G)
    assert partition_hom(V * V, V * V) is None  # needs n >= 4
    with pytest.raises(ValueError, match="needs n >= 4, got n = 3"):
        PartitionHomSpace(V * V, V * V)
    assert partition_hom(V, V) is not None
    D = dihedral(4)
    assert partition_hom(natural(D), natural(D)) is None
    with pytest.raises(ValueError, match="full symmetric group"):
        PartitionHomSpace(natural(D), natural(D))


def test_wrong_shapes_name_expected_and_received():
    G = symmetric(5)
    V = natural(G)
    space = PartitionHomSpace(V, V * V)
    with pytest.raises(ValueError, match=r"expected 5 coefficients, got \(4,\)"):
        space.apply(torch.zeros(4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"expected features of shape \(\.\.\., 5\), got \(2, 6\)"):
        space.apply(torch.zeros(5), torch.zeros(2, 6))
    with pytest.raises(ValueError, match=r"expected factors of shapes \(25, r\) and \(5, r\)"):
        space.coefficients_low_rank(torch.zeros(25, 2), torch.zeros(4, 2))
