"""An invariant graph network (Maron et al., 2019) built from S_n-equivariant linear layers.

The input is a graph's adjacency matrix, one channel of V ⊗ V (V the natural rep of S_n acting
on the nodes), flattened to ``(..., n * n)``. Hidden layers map c channels of V ⊗ V to c'
channels (2 → 2 layers, 15 basis maps per channel pair), each followed by a batch
normalisation per channel (statistics over all entries, hence equivariant) and a pointwise
nonlinearity, which commutes with relabelling the nodes because V ⊗ V permutes coordinates. A
2 → 0 layer (the diagonal's sum and the total sum, per channel pair) makes the features
invariant, and a small MLP on them (batch-normalised first) predicts graph-level targets.

Every linear map is an :class:`~equirelax.nn.EquivariantLinear`; at graph sizes where a dense
weight would be large (n ≳ 16) it is applied by partitions (sums, diagonals, broadcasts) and
no dense weight is formed. The model declares ``rep_in``/``rep_out``, so ``er.relax`` finds and
relaxes its equivariant layers, and ``er.equivariance_error`` checks it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from equirelax.groups import symmetric
from equirelax.nn.activation import PointwiseActivation
from equirelax.nn.linear import EquivariantLinear
from equirelax.nn.module import EquivariantModule, check_features
from equirelax.nn.normalization import EntryBatchNorm
from equirelax.reps import natural, trivial


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class InvariantGraphNetwork(EquivariantModule):
    """S_n-invariant regression on n-node graphs: 2 → 2 layers, a 2 → 0 layer and an MLP head.

    ``channels`` are the widths of the 2 → 2 layers (at least one), ``invariant_channels`` the
    width of the 2 → 0 layer, ``head_hidden`` the hidden widths of the head. Inputs are
    adjacency matrices flattened to ``(..., n * n)`` (``adjacency.flatten(-2)``); outputs are
    ``(..., out_features)``. ``structured`` is passed to every equivariant layer (None: the
    partition path wherever it is cheaper).
    """

    def __init__(
        self,
        n: int,
        channels: Sequence[int] = (8, 8),
        invariant_channels: int = 16,
        head_hidden: Sequence[int] = (32,),
        out_features: int = 1,
        activation: str = "relu",
        structured: bool | None = None,
    ) -> None:
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 4:
            raise ValueError(f"n must be an integer >= 4 (nodes per graph), got {n!r}")
        channels = [_positive("channels", c) for c in channels]
        if not channels:
            raise ValueError("channels must name at least one 2 -> 2 layer width, got ()")
        invariant_channels = _positive("invariant_channels", invariant_channels)
        head_hidden = [_positive("head_hidden", h) for h in head_hidden]
        out_features = _positive("out_features", out_features)
        self.n, self.invariant_channels = n, invariant_channels
        group = symmetric(n)
        pairs = natural(group) * natural(group)
        self.rep_in = pairs
        self.rep_out = out_features * trivial(group)
        layers: list[nn.Module] = []
        width_in = 1
        for width in channels:
            layers.append(EquivariantLinear(width_in * pairs, width * pairs, structured=structured))
            layers.append(EntryBatchNorm(width * pairs, width))
            layers.append(PointwiseActivation(width * pairs, activation))
            width_in = width
        self.equivariant = nn.Sequential(*layers)
        self.pool = EquivariantLinear(
            width_in * pairs, invariant_channels * trivial(group), structured=structured
        )
        head: list[nn.Module] = [nn.BatchNorm1d(invariant_channels), nn.ReLU()]
        width_in = invariant_channels
        for width in head_hidden:
            head += [nn.Linear(width_in, width), nn.ReLU()]
            width_in = width
        head.append(nn.Linear(width_in, out_features))
        self.head = nn.Sequential(*head)

    @property
    def equivariant_layers(self) -> list[EquivariantLinear]:
        """The S_n-equivariant linear maps, input to output (the 2 → 0 map last)."""
        return [m for m in self.modules() if isinstance(m, EquivariantLinear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.rep_in, type(self).__name__)
        lead = x.shape[:-1]
        y = self.head(self.pool(self.equivariant(x)).reshape(-1, self.invariant_channels))
        return y.reshape(*lead, -1)


__all__ = ["InvariantGraphNetwork"]
