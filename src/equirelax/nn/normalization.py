"""Normalisation of permutation-representation features that keeps equivariance."""

from __future__ import annotations

import torch
from torch import nn

from equirelax.nn.module import EquivariantModule, check_features
from equirelax.reps.base import Rep

__all__ = ["EntryBatchNorm"]


class EntryBatchNorm(EquivariantModule):
    """Batch normalisation of c equal channels of a permutation representation (e.g. c copies of
    V ⊗ V): each channel is standardised with the mean and variance of its entries over the
    batch (running estimates in eval mode).

    The statistics of a channel are invariant under relabelling the nodes, so the map is
    equivariant. It keeps 2 → 2 features at unit scale: the orbit basis's sums over rows,
    columns and the whole matrix multiply a feature's mean by up to n², which at n = 50 made
    the untrained network's outputs orders of magnitude larger than the target."""

    relaxable = False  # an affine map per channel: constraint relaxation leaves it alone

    def __init__(self, rep: Rep, channels: int) -> None:
        super().__init__()
        if rep.dim % channels:
            raise ValueError(f"{rep!r} (dim {rep.dim}) is not {channels} equal channels")
        self.rep_in = self.rep_out = rep
        self.channels = channels
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.rep_in, type(self).__name__)
        lead = x.shape[:-1]
        y = self.norm(x.reshape(-1, self.channels, self.rep_in.dim // self.channels))
        return y.reshape(*lead, -1)
