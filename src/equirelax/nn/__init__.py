"""Equivariant layers built from hom-spaces (and, in their own modules, geometric layers)."""

from equirelax.nn.activation import (
    InvariantPool,
    NormActivation,
    PointwiseActivation,
    activation_function,
)
from equirelax.nn.linear import EquivariantLinear, check_features
from equirelax.nn.mlp import EquivariantMLP

__all__ = [
    "EquivariantLinear",
    "EquivariantMLP",
    "InvariantPool",
    "NormActivation",
    "PointwiseActivation",
    "activation_function",
    "check_features",
]
