"""EGNN layers (Satorras, Hoogeboom & Welling, ICML 2021), the N-body variant with velocities.

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
graph are listed once, messages are summed with ``index_add_``. The whole model is
:class:`equirelax.models.EGNN`.
"""

from __future__ import annotations

import torch
from torch import nn

from equirelax.groups import lie as lie_groups
from equirelax.nn.module import EquivariantModule, check_features
from equirelax.reps import trivial, vector

__all__ = [
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
    check_features(loc, ("N", 3), "loc (positions)", leading=1, floating=True)
    batch, n = loc.shape[:2]
    check_features(vel, (n, 3), "vel (velocities, shaped like loc)", leading=1)
    if vel.shape[0] != batch:
        raise ValueError(f"vel must have shape {tuple(loc.shape)} like loc, got {tuple(vel.shape)}")
    if n < 2:
        raise ValueError(f"need at least 2 particles per graph, got {n}")
    if isinstance(charges, torch.Tensor) and charges.dim() == 3 and charges.shape[-1] == 1:
        charges = charges[..., 0]
    check_features(charges, (n,), "charges", leading=1)
    if charges.shape[0] != batch:
        raise ValueError(
            f"charges must have shape {(batch, n)} or {(batch, n, 1)}, got {tuple(charges.shape)}"
        )
    if loc.dtype != vel.dtype:
        raise ValueError(
            f"loc and vel must share one floating dtype, got {loc.dtype} and {vel.dtype}"
        )
    return charges.to(loc.dtype)


class EGNNNodeUpdate(EquivariantModule):
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
        check_features(features, self.rep_in, f"{type(self).__name__} ([h, sum_j m_ij, v, a])")
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
