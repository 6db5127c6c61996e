"""Groups: finite permutation groups (with a stabiliser chain) and matrix Lie groups."""

from equirelax.groups.base import Group
from equirelax.groups.catalogue import alternating, cyclic, dihedral, direct_product, symmetric
from equirelax.groups.lie import SO, MatrixLieGroup, O
from equirelax.groups.permutation import MAX_ELEMENTS, PermutationGroup

__all__ = [
    "MAX_ELEMENTS",
    "SO",
    "Group",
    "MatrixLieGroup",
    "O",
    "PermutationGroup",
    "alternating",
    "cyclic",
    "dihedral",
    "direct_product",
    "symmetric",
]
