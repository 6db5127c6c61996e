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
from equirelax.reps.expression import NAMED_REPS, parse
from equirelax.reps.grid import grid
from equirelax.reps.irrep_decomposition import Decomposition, decompose, split_into_irreps
from equirelax.reps.irreps import irrep, irreps
from equirelax.reps.real_irreps import IrrepLabel, standard_irrep
from equirelax.reps.spec import as_reps, is_rep_spec

__all__ = [
    "NAMED_REPS",
    "Decomposition",
    "IrrepLabel",
    "MatrixRep",
    "PermRep",
    "Rep",
    "as_reps",
    "decompose",
    "direct_sum",
    "grid",
    "irrep",
    "irreps",
    "is_rep_spec",
    "multiple",
    "natural",
    "parse",
    "permutation_matrix",
    "quotient",
    "regular",
    "sign",
    "split_into_irreps",
    "standard",
    "standard_irrep",
    "tensor_product",
    "trivial",
    "vector",
]
