"""Hypothesis strategies for pairs of representations (rep_in, rep_out) of a random group, and
random action matrices, shared by the property tests of the relaxation penalties and the fused
training node."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st

import equirelax as er
from equirelax.groups import PermutationGroup


@st.composite
def permutation_rep_pairs(draw, quotient: bool = True):
    """Two sums of natural, trivial (with ``quotient``: G/Stab(0)) and, for groups of order at
    most 24, regular reps of a random permutation group on 2-6 points."""
    n = draw(st.integers(2, 6))
    G = PermutationGroup([draw(st.permutations(range(n))) for _ in range(draw(st.integers(1, 3)))])
    blocks = [er.reps.natural(G), er.reps.trivial(G)]
    if quotient:
        blocks.append(er.reps.quotient(G, G.stabilizer(0)))
    if G.order <= 24:
        blocks.append(er.reps.regular(G))

    def rep():
        parts = draw(st.lists(st.sampled_from(range(len(blocks))), min_size=1, max_size=3))
        return er.reps.direct_sum([blocks[i] for i in parts])

    return rep(), rep()


@st.composite
def matrix_rep_pairs(draw, groups: Sequence[str] = ("O(3)",)):
    """Two sums of 1-4 trivial and vector reps of one of the Lie groups named in ``groups``."""
    G = er.groups.from_name(draw(st.sampled_from(list(groups))))
    blocks = [er.reps.trivial(G), er.reps.vector(G)]

    def rep():
        parts = draw(st.lists(st.sampled_from(range(2)), min_size=1, max_size=4))
        return er.reps.direct_sum([blocks[i] for i in parts])

    return rep(), rep()


def action_matrix(rng: np.random.Generator, rows: int, cols: int, kind: str) -> np.ndarray:
    """A matrix for ``relaxation.actions.LinearMap`` of the given ``kind``: ``"gather"`` (one 1
    per row), ``"sparse"`` (one random entry per row, 4·cols columns) or ``"dense"``."""
    if kind == "gather":
        return np.eye(cols)[rng.integers(0, cols, size=rows)]
    if kind == "sparse":
        m = np.zeros((rows, 4 * cols))
        m[np.arange(rows), rng.integers(0, 4 * cols, size=rows)] = rng.normal(size=rows)
        return m
    return rng.normal(size=(rows, cols))
