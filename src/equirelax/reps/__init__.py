"""Representations: permutation reps, matrix reps, direct sums, tensor products, multiplicities."""

from equirelax.reps.base import (
    MatrixRep,
    PermRep,
    Rep,
    direct_sum,
    multiple,
    permutation_matrix,
    tensor_product,
)
from equirelax.reps.catalogue import (
    natural,
    quotient,
    regular,
    sign,
    standard,
    trivial,
    vector,
)
from equirelax.reps.irreps import irrep, irreps
from equirelax.reps.spec import as_reps, is_rep_spec

__all__ = [
    "MatrixRep",
    "PermRep",
    "Rep",
    "as_reps",
    "direct_sum",
    "irrep",
    "irreps",
    "is_rep_spec",
    "multiple",
    "natural",
    "permutation_matrix",
    "quotient",
    "regular",
    "sign",
    "standard",
    "tensor_product",
    "trivial",
    "vector",
]
