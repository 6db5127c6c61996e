"""Equivariant layers: the module protocol (:mod:`equirelax.nn.module`), layers built from
hom-spaces (linear, MLP, activations, pooling, normalisation) and geometric layers (group
convolutions, Vector Neurons, EGNN and steerable SEGNN layers). Whole models are in
:mod:`equirelax.models`.

The steerable layers need the optional e3nn and are imported on first access
(``er.nn.SteerableLinear``), so ``import equirelax.nn`` works without it.
"""

from __future__ import annotations

import importlib

from equirelax.nn.activation import (
    InvariantPool,
    NormActivation,
    PointwiseActivation,
    activation_function,
)
from equirelax.nn.egnn import (
    EGNNLayer,
    EGNNNodeUpdate,
    check_particle_inputs,
    fully_connected_edges,
)
from equirelax.nn.gconv import (
    FreeFieldConv2d,
    GroupBatchNorm,
    GroupConv2d,
    GroupInvariantPooling,
    LiftingConv2d,
    grid_act,
    grid_transform,
    project_kernel,
    transform_kernel,
)
from equirelax.nn.linear import EquivariantLinear
from equirelax.nn.mlp import EquivariantMLP
from equirelax.nn.module import Equivariant, EquivariantModule, check_features, input_reps
from equirelax.nn.normalization import EntryBatchNorm
from equirelax.nn.vn import (
    VNBatchNorm,
    VNLeakyReLU,
    VNLinear,
    VNLinearLeakyReLU,
    VNMaxPool,
    VNMeanPool,
    VNStdFeature,
    knn_vector_lift,
    vector_features_rep,
    vn_leaky_relu,
)

#: Names of layers with an optional dependency: name -> module, imported on first access.
_LAZY = {
    "SEGNNLayer": "equirelax.nn.segnn",
    "SteerableGatedLinear": "equirelax.nn.segnn",
    "SteerableLinear": "equirelax.nn.segnn",
    "balanced_hidden_irreps": "equirelax.nn.segnn",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'equirelax.nn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "EGNNLayer",
    "EGNNNodeUpdate",
    "EntryBatchNorm",
    "Equivariant",
    "EquivariantLinear",
    "EquivariantMLP",
    "EquivariantModule",
    "FreeFieldConv2d",
    "GroupBatchNorm",
    "GroupConv2d",
    "GroupInvariantPooling",
    "InvariantPool",
    "LiftingConv2d",
    "NormActivation",
    "PointwiseActivation",
    "SEGNNLayer",
    "SteerableGatedLinear",
    "SteerableLinear",
    "VNBatchNorm",
    "VNLeakyReLU",
    "VNLinear",
    "VNLinearLeakyReLU",
    "VNMaxPool",
    "VNMeanPool",
    "VNStdFeature",
    "activation_function",
    "balanced_hidden_irreps",
    "check_features",
    "check_particle_inputs",
    "fully_connected_edges",
    "grid_act",
    "grid_transform",
    "input_reps",
    "knn_vector_lift",
    "project_kernel",
    "transform_kernel",
    "vector_features_rep",
    "vn_leaky_relu",
]
