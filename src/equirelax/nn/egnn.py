"""EGNN (Satorras, Hoogeboom & Welling, ICML 2021), the N-body variant with velocities.

E(n)-equivariant message passing on fully connected graphs of point particles. Each layer
(``EGNNLayer``) updates invariant node features ``h`` and positions ``x``:

    m_ij = phi_e(h_i, h_j, |x_i - x_j|^2, a_ij)                    (edge message)
    x_i <- x_i + mean_j (x_i - x_j) phi_x(m_ij) + phi_v(h_i) v_i  (position update)
    h_i <- h_i + phi_h(h_i, sum_j m_ij)                           (node update, residual)

``v_i`` is the input velocity (the same in every layer) and ``a_ij`` the edge attributes:
the product of charges ``q_i q_j`` and the squared distance at the input. The initial node
feature is the speed ``|v_i|``. Only differences of positions, norms and the velocity enter,
so the predicted positions move with the input under rotations, reflections and translations
of (positions, velocities) and under permutations of the particles; no centring is needed.

Batching: a batch of B graphs with the same number N of particles is passed as dense tensors
``(B, N, 3)``; internally nodes are flattened to ``B * N`` rows and the directed edges of every
graph are listed once, messages are summed with ``index_add_``.
"""

from __future__ import annotations

import torch
from torch import nn

from equirelax.groups import lie as lie_groups
from equirelax.reps import trivial, vector

__all__ = [
    "EGNN",
    "EGNNLayer",
    "EGNNNodeUpdate",
    "check_particle_inputs",
    "fully_connected_edges",
]


def fully_connected_edges(
    batch_size: int, n_nodes: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Receivers and senders of all directed edges i != j of ``batch_size`` graphs.

    Nodes are numbered ``b * n_nodes + i``. Returns two int64 tensors of length
    ``batch_size * n_nodes * (n_nodes - 1)``; edge e goes from ``senders[e]`` to
    ``receivers[e]``.
    """
    idx = torch.arange(n_nodes, device=device)
    recv, send = torch.meshgrid(idx, idx, indexing="ij")
    mask = recv != send
    recv, send = recv[mask], send[mask]
    offsets = (torch.arange(batch_size, device=device) * n_nodes)[:, None]
    return (recv[None] + offsets).reshape(-1), (send[None] + offsets).reshape(-1)


def check_particle_inputs(
    loc: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor
) -> torch.Tensor:
    """Validate ``loc``/``vel`` (B, N, 3) and ``charges`` (B, N) or (B, N, 1); return (B, N)."""
    if loc.dim() != 3 or loc.shape[-1] != 3:
        raise ValueError(f"loc must have shape (batch, particles, 3), got {tuple(loc.shape)}")
    if vel.shape != loc.shape:
        raise ValueError(f"vel must have shape {tuple(loc.shape)} like loc, got {tuple(vel.shape)}")
    if loc.shape[1] < 2:
        raise ValueError(f"need at least 2 particles per graph, got {loc.shape[1]}")
    if charges.dim() == 3 and charges.shape[-1] == 1:
        charges = charges[..., 0]
    if charges.shape != loc.shape[:2]:
        raise ValueError(
            f"charges must have shape {tuple(loc.shape[:2])} or {(*loc.shape[:2], 1)}, "
            f"got {tuple(charges.shape)}"
        )
    if not (loc.dtype == vel.dtype and loc.is_floating_point()):
        raise ValueError(
            f"loc and vel must share one floating dtype, got {loc.dtype} and {vel.dtype}"
        )
    return charges.to(loc.dtype)


class EGNNNodeUpdate(nn.Module):
    """The node part of an EGNN layer as one map on per-node features, with its O(3) actions.

    Input, per node, the concatenation ``[h_i, sum_j m_ij, v_i, a_i]`` of ``2 * hidden``
    invariant scalars and two vectors (the velocity ``v_i`` and the aggregated relative position
    ``a_i = mean_j (x_i - x_j) phi_x(m_ij)``); output ``[phi_h(h_i, sum_j m_ij),
    a_i + phi_v(h_i) v_i]``: the node-feature update and the position increment.

    It declares ``rep_in = 2H x trivial + 2 x vector`` and ``rep_out = H x trivial + vector`` of
    O(3) (scalars first, vectors as x, y, z), the actions under which it is equivariant, so that a
    relaxed term ``W [h, m, v, a]`` can be measured against them: its Lie-derivative and
    reflection penalties vanish exactly when W sends vectors to vectors by multiples of the
    identity and never mixes scalars with vectors. Everything it sees is translation-invariant,
    so any such term keeps the layer translation-equivariant.
    """

    def __init__(self, hidden_features: int) -> None:
        super().__init__()
        hidden = hidden_features
        self.hidden_features = hidden
        self.vel_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.node_mlp = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        group = lie_groups.O(3)
        scalar, vector_rep = trivial(group), vector(group)
        self.rep_in = (2 * hidden) * scalar + 2 * vector_rep
        self.rep_out = hidden * scalar + vector_rep

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., 2H + 6) -> (..., H + 3)``: ``[h, sum_j m, v, a] -> [dh, dx]``."""
        hidden = self.hidden_features
        if features.shape[-1] != 2 * hidden + 6:
            raise ValueError(
                f"features must have last dimension 2 * {hidden} + 6 = {2 * hidden + 6} "
                f"([h, sum_j m_ij, v, a]), got {tuple(features.shape)}"
            )
        h, messages = features[..., :hidden], features[..., : 2 * hidden]
        v, a = features[..., 2 * hidden : 2 * hidden + 3], features[..., 2 * hidden + 3 :]
        dh = self.node_mlp(messages)
        dx = a + self.vel_mlp(h) * v
        return torch.cat([dh, dx], dim=-1)


class EGNNLayer(nn.Module):
    """One E(n)-equivariant graph convolution with a velocity term (E_GCL_vel in the paper).

    ``hidden_features``: width of h and of the messages; ``edge_features``: number of edge
    attributes a_ij. The last layer of phi_x has no bias and a tiny Xavier init (gain 0.001),
    so at initialisation positions move mostly through the velocity term. The node and position
    updates (phi_h, phi_v) form the submodule ``update`` (:class:`EGNNNodeUpdate`), the part of
    the layer that declares its O(3) actions and that constraint relaxation relaxes.
    """

    def __init__(
        self, hidden_features: int, edge_features: int = 2, *, residual: bool = True
    ) -> None:
        super().__init__()
        hidden = hidden_features
        self.hidden_features = hidden
        self.residual = residual
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * hidden + 1 + edge_features, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
        )
        last = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), last)
        self.update = EGNNNodeUpdate(hidden)

    def forward(
        self,
        h: torch.Tensor,
        x: torch.Tensor,
        vel: torch.Tensor,
        edge_attr: torch.Tensor,
        receivers: torch.Tensor,
        senders: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update flattened node features ``h`` (M, hidden) and positions ``x`` (M, 3).

        ``vel`` (M, 3); ``edge_attr`` (E, edge_features); edges from ``senders`` to
        ``receivers`` (E,). Positions are aggregated by the mean over each node's incoming
        edges, messages by the sum.
        """
        diff = x[receivers] - x[senders]
        radial = diff.square().sum(dim=-1, keepdim=True)
        m = self.edge_mlp(torch.cat([h[receivers], h[senders], radial, edge_attr], dim=-1))
        trans = diff * self.coord_mlp(m)
        agg_x = torch.zeros_like(x).index_add_(0, receivers, trans)
        degree = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
        degree.index_add_(0, receivers, torch.ones_like(radial))
        agg_h = torch.zeros_like(h).index_add_(0, receivers, m)
        features = torch.cat([h, agg_h, vel, agg_x / degree.clamp(min=1)], dim=-1)
        out = self.update(features)
        dh, dx = out[:, : self.hidden_features], out[:, self.hidden_features :]
        h = h + dh if self.residual else dh
        return h, x + dx


class EGNN(nn.Module):
    """EGNN for the charged N-body task: predict particle positions after a fixed time.

    ``forward(loc, vel, charges)`` takes positions and velocities ``(B, N, 3)`` and charges
    ``(B, N)`` (or ``(B, N, 1)``) of B fully connected graphs and returns the predicted positions
    ``(B, N, 3)``. Defaults follow the paper's N-body setting: 64 hidden features, 4 layers.
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
