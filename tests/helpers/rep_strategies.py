"""Hypothesis strategies for pairs of representations (rep_in, rep_out) of a random group,
shared by the property tests of the relaxation penalties and the fused training node."""

from __future__ import annotations

from collections.abc import Sequence

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
