"""Groups: finite permutation groups (with a stabiliser chain and, for small groups, their
subgroups up to conjugacy), matrix Lie groups, groups by name, and Haar samplers."""

from equirelax.groups.base import Group
from equirelax.groups.catalogue import (
    alternating,
    cyclic,
    dihedral,
    direct_product,
    from_name,
    symmetric,
)
from equirelax.groups.haar import (
    haar_orthogonal_torch,
    haar_rotations,
    haar_rotations_torch,
    quaternions_to_matrices,
)
from equirelax.groups.lie import SO, MatrixLieGroup, O
from equirelax.groups.permutation import MAX_ELEMENTS, PermutationGroup
from equirelax.groups.subgroups import (
    GroupTable,
    SubgroupClass,
    TransitivePiece,
    describe_pieces,
    identify_subgroup,
    normaliser,
    subgroup_classes,
    transitive_pieces,
)

__all__ = [
    "MAX_ELEMENTS",
    "SO",
    "Group",
    "GroupTable",
    "MatrixLieGroup",
    "O",
    "PermutationGroup",
    "SubgroupClass",
    "TransitivePiece",
    "alternating",
    "cyclic",
    "describe_pieces",
    "dihedral",
    "direct_product",
    "from_name",
    "haar_orthogonal_torch",
    "haar_rotations",
    "haar_rotations_torch",
    "identify_subgroup",
    "normaliser",
    "quaternions_to_matrices",
    "subgroup_classes",
    "symmetric",
    "transitive_pieces",
]
