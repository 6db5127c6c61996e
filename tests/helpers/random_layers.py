"""Layers with random parameters, and a dense twin to compare a structured or shaped layer with."""

from __future__ import annotations

import torch

from equirelax.nn import EquivariantLinear


def randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``module`` with every parameter drawn from N(0, 1) in float32 (seeded, in the order of
    ``parameters()``): nonzero biases too, which start at 0, so that their gradients count."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return module


def dense_twin(rep_in, rep_out, dtype: torch.dtype = torch.float64, seed: int = 0,
               **options) -> tuple[EquivariantLinear, EquivariantLinear]:
    """An ``EquivariantLinear(rep_in, rep_out, **options)`` with random parameters and a flat
    dense one (``structured=False``) with the same parameters, both in ``dtype``."""
    layer = randomised(EquivariantLinear(rep_in, rep_out, **options), seed).to(dtype)
    dense = EquivariantLinear(rep_in, rep_out, bias=options.get("bias", True),
                              structured=False).to(dtype)
    dense.load_state_dict(layer.state_dict())
    return layer, dense
