"""The Lie groups and their tensor powers V^⊗k that the irrep-decomposition and the Schur-block
hom-space tests both check against character formulas."""

from __future__ import annotations

import equirelax as er
from equirelax.groups import SO, O
from equirelax.reps import vector

GROUPS = {"SO(2)": SO(2), "O(2)": O(2), "SO(3)": SO(3), "O(3)": O(3)}


def tensor_power(G, k: int) -> er.reps.Rep:
    """V ⊗ ... ⊗ V (k factors) of the defining rep V of G."""
    rep = vector(G)
    for _ in range(k - 1):
        rep = rep * vector(G)
    return rep
