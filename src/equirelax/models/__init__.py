"""Whole geometric models built from the layers of :mod:`equirelax.nn`: the C4/D4 group CNN
(:class:`GCNN`, with the plain :class:`CNN` baseline), VN-PointNet (:class:`VNPointNet`, with
the plain :class:`PointNet` baseline), EGNN and SEGNN for N-body, and the invariant graph
network (:class:`InvariantGraphNetwork`).

Each equivariant model follows the module protocol of :mod:`equirelax.nn.module` (``rep_in`` /
``rep_out``, or ``reps_in`` for the multi-input N-body models). :class:`SEGNN` needs the
optional e3nn and is imported on first access.
"""

from __future__ import annotations

import importlib

from equirelax.models.egnn import EGNN
from equirelax.models.gcnn import CNN, GCNN
from equirelax.models.ign import InvariantGraphNetwork
from equirelax.models.pointnet import PointNet, VNFeatureTransform, VNPointNet

#: Models with an optional dependency: name -> module, imported on first access.
_LAZY = {"SEGNN": "equirelax.models.segnn"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'equirelax.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CNN",
    "EGNN",
    "GCNN",
    "SEGNN",
    "InvariantGraphNetwork",
    "PointNet",
    "VNFeatureTransform",
    "VNPointNet",
]
