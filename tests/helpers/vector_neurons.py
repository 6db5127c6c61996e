"""Shared pieces of the Vector Neurons layer and VN-PointNet tests: tolerances, random rotations
of point clouds, relative errors, seeded features and modules prepared for a dtype and mode."""

from __future__ import annotations

import torch

from equirelax.groups.haar import haar_rotations_torch

#: Relative error allowed per dtype (float32 round-off through a few layers is ~1e-7).
TOL = {torch.float64: 1e-11, torch.float32: 1e-5}


#: Whole networks. The VN nonlinearity divides by |d|^2 of learned directions d; where a d is
#: short compared with its inputs, float32 round-off in its direction is amplified (~1e3 on
#: random inits: ~1e-4 relative in float32, ~1e-13 in float64). Float64 pins exactness.
MODEL_TOL = {torch.float64: 1e-10, torch.float32: 1e-3}


DTYPES = [torch.float64, torch.float32]


def rotations(n: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    return haar_rotations_torch(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rotate(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate the xyz (last) axis of ``x (B, ..., 3)`` by per-sample rotations ``rot (B, 3, 3)``."""
    return torch.einsum("bij,b...j->b...i", rot, x)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def features(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def prepare(module: torch.nn.Module, dtype: torch.dtype, train: bool) -> torch.nn.Module:
    """Cast to ``dtype``; a high batch-norm momentum makes one warm-up pass move the running
    statistics far from their (0, 1) init, so eval mode is tested with non-trivial statistics."""
    module = module.to(dtype)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.momentum = 0.5
    return module.train(train)
