"""Equivariant linear maps between two representations: orbit bases and null-space bases."""

from equirelax.homspace.space import (
    BlockHomSpace,
    HomSpace,
    OrbitHomSpace,
    atomic_basis,
    fixed_space,
    hom,
)

__all__ = ["BlockHomSpace", "HomSpace", "OrbitHomSpace", "atomic_basis", "fixed_space", "hom"]
