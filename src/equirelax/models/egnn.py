"""EGNN (Satorras, Hoogeboom & Welling, ICML 2021) for the charged N-body task, built from the
layers of :mod:`equirelax.nn.egnn` (see there for the message passing and batching).
"""

from __future__ import annotations

import torch
from torch import nn

from equirelax.groups import lie as lie_groups
from equirelax.nn.egnn import EGNNLayer, check_particle_inputs, fully_connected_edges
from equirelax.nn.module import EquivariantModule
from equirelax.reps import trivial, vector

__all__ = ["EGNN"]


class EGNN(EquivariantModule):
    """EGNN for the charged N-body task: predict particle positions after a fixed time.

    ``forward(loc, vel, charges)`` takes positions and velocities ``(B, N, 3)`` and charges
    ``(B, N)`` (or ``(B, N, 1)``) of B fully connected graphs and returns the predicted positions
    ``(B, N, 3)``. Defaults follow the paper's N-body setting: 64 hidden features, 4 layers.

    A multi-input module: ``reps_in = (vector, vector, trivial)`` of O(3) for ``(loc, vel,
    charges)``, each acting on its argument's last axis, and ``rep_out = vector``. (It is also
    equivariant to translating the positions and to permuting the particles, which these
    representations do not state.)
    """

    def __init__(self, hidden_features: int = 64, num_layers: int = 4) -> None:
        super().__init__()
        if hidden_features < 1 or num_layers < 1:
            raise ValueError(
                "hidden_features and num_layers must be >= 1, got "
                f"hidden_features={hidden_features}, num_layers={num_layers}"
            )
        self.hidden_features = hidden_features
        self.num_layers = num_layers
        group = lie_groups.O(3)
        self.reps_in = (vector(group), vector(group), trivial(group))
        self.rep_out = vector(group)
        self.embedding = nn.Linear(1, hidden_features)
        self.layers = nn.ModuleList(
            EGNNLayer(hidden_features, edge_features=2) for _ in range(num_layers)
        )

    def forward(self, loc: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor) -> torch.Tensor:
        """Predicted positions (B, N, 3) from positions, velocities (B, N, 3), charges (B, N)."""
        charges = check_particle_inputs(loc, vel, charges)
        batch, n = loc.shape[:2]
        receivers, senders = fully_connected_edges(batch, n, device=loc.device)
        x = loc.reshape(batch * n, 3)
        v = vel.reshape(batch * n, 3)
        q = charges.reshape(batch * n, 1)
        squared_distance = (x[receivers] - x[senders]).square().sum(dim=-1, keepdim=True)
        edge_attr = torch.cat([q[receivers] * q[senders], squared_distance], dim=-1)
        h = self.embedding(v.norm(dim=-1, keepdim=True))
        for layer in self.layers:
            h, x = layer(h, x, v, edge_attr, receivers, senders)
        return x.reshape(batch, n, 3)
