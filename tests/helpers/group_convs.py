"""Shared pieces of the group-convolution and GCNN tests: the groups, tolerances, seeded
tensors, relative errors and random free terms of a relaxed model."""

from __future__ import annotations

import torch

GROUPS = ["C4", "D4"]
#: group-axis indices of the generators: the quarter turn (and the mirror)
GENERATORS = {"C4": (1,), "D4": (1, 4)}
DTYPES = [torch.float64, torch.float32]
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def randn(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def randomise_free(relaxed, scale: float = 0.3) -> None:
    """Normal entries (std ``scale``, seed 0) in every parameter of every free term."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            for p in layer.free.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
