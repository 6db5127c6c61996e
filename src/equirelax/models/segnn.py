"""SEGNN (Brandstetter, Hesselink, van der Pol, Bekkers & Welling, ICLR 2022) for charged
N-body, built from the steerable layers of :mod:`equirelax.nn.segnn` (see there for the
architecture and what relaxation relaxes). Needs e3nn.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from equirelax.groups import lie as lie_groups
from equirelax.nn.egnn import check_particle_inputs, fully_connected_edges
from equirelax.nn.module import EquivariantModule
from equirelax.nn.segnn import SEGNNLayer, SteerableGatedLinear, SteerableLinear
from equirelax.reps import trivial, vector

__all__ = ["SEGNN"]


class SEGNN(EquivariantModule):
    """SEGNN for the charged N-body task: predict particle positions after a fixed time.

    ``forward(loc, vel, charges)`` takes positions and velocities ``(B, N, 3)`` and charges
    ``(B, N)`` (or ``(B, N, 1)``) of B fully connected graphs and returns predicted positions
    ``(B, N, 3)`` (input position plus a predicted ``1x1o`` displacement).

    Defaults are the paper's N-body configuration: hidden irreps ``32x0e+32x1o``, attributes up
    to l = 1, 4 layers.

    A multi-input module: ``reps_in = (vector, vector, trivial)`` of O(3) for ``(loc, vel,
    charges)``, each acting on its argument's last axis, and ``rep_out = vector``. (It is also
    equivariant to translations and to permuting the particles.)
    """

    input_irreps = o3.Irreps("1x1o+1x1o+1x0e")
    output_irreps = o3.Irreps("1x1o")

    def __init__(
        self,
        hidden_irreps: o3.Irreps | str = "32x0e+32x1o",
        num_layers: int = 4,
        lmax_attr: int = 1,
    ) -> None:
        super().__init__()
        if num_layers < 1 or lmax_attr < 1:
            raise ValueError(
                "num_layers and lmax_attr must be >= 1, got "
                f"num_layers={num_layers}, lmax_attr={lmax_attr}"
            )
        self.hidden_irreps = o3.Irreps(hidden_irreps)
        self.num_layers = num_layers
        self.lmax_attr = lmax_attr
        group = lie_groups.O(3)
        self.reps_in = (vector(group), vector(group), trivial(group))
        self.rep_out = vector(group)
        self.attr_irreps = o3.Irreps.spherical_harmonics(lmax_attr)
        attr = self.attr_irreps
        self.embedding = SteerableLinear(
            self.input_irreps, self.hidden_irreps, attr, relaxable=False
        )
        self.layers = nn.ModuleList(
            SEGNNLayer(self.hidden_irreps, attr, attr, message_scalars=2)
            for _ in range(num_layers)
        )
        self.head_gated = SteerableGatedLinear(
            self.hidden_irreps, self.hidden_irreps, attr, relaxable=False
        )
        self.head = SteerableLinear(self.hidden_irreps, self.output_irreps, attr, relaxable=False)

    def node_update_layers(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` of every node-update map (two per layer), in order."""
        return [
            (name, module)
            for name, module in self.named_modules()
            if name.endswith((".update_gated", ".update"))
        ]

    def _spherical_harmonics(self, vectors: torch.Tensor) -> torch.Tensor:
        return o3.spherical_harmonics(
            self.attr_irreps, vectors, normalize=True, normalization="integral"
        )

    def forward(self, loc: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor) -> torch.Tensor:
        """Predicted positions (B, N, 3) from positions, velocities (B, N, 3), charges (B, N)."""
        charges = check_particle_inputs(loc, vel, charges)
        batch, n = loc.shape[:2]
        receivers, senders = fully_connected_edges(batch, n, device=loc.device)
        centred = (loc - loc.mean(dim=1, keepdim=True)).reshape(batch * n, 3)
        v = vel.reshape(batch * n, 3)
        q = charges.reshape(batch * n, 1)
        rel = centred[receivers] - centred[senders]
        edge_attr = self._spherical_harmonics(rel)
        incoming = torch.zeros(batch * n, edge_attr.shape[-1], dtype=loc.dtype, device=loc.device)
        node_attr = incoming.index_add_(0, receivers, edge_attr) / (n - 1)
        node_attr = node_attr + self._spherical_harmonics(v)
        message_scalars = torch.cat(
            [rel.norm(dim=-1, keepdim=True), q[receivers] * q[senders]], dim=-1
        )
        x = torch.cat([centred, v, v.norm(dim=-1, keepdim=True)], dim=-1)
        h = self.embedding(x, node_attr)
        for layer in self.layers:
            h = layer(h, node_attr, edge_attr, message_scalars, receivers, senders)
        h = self.head_gated(h, node_attr)
        displacement = self.head(h, node_attr)
        return loc + displacement.reshape(batch, n, 3)
