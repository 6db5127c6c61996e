"""The prediction-matrix codebook ``M^(i)(delta)`` of the equivariance constraint.

For every module ``i`` the codebook stores an ``l x l`` matrix at each node of a grid over
``delta = (d_x, d_y[, theta])``: the sub-stride offsets ``d_x, d_y`` in ``[-0.5, 0.5]`` feature
units (``n_t`` nodes each, end points included) and, for the translation-rotation branch, the angle
``theta`` in ``[0, 2 pi)`` on ``n_r`` nodes that wrap around (periodic). A query between nodes is
answered by (tri)linear interpolation, so ``M`` is a learned, continuous, steerable interpolation
kernel: ``f'^(i)(p) = M^(i)(d(p), theta) f^(i)(n(p))`` predicts a module's transformed features
from the same module's features only (block-diagonal: modules are independent).

The table is initialised to the identity plus uniform noise of half-width ``init_noise``
(the published code starts from pure noise; the identity start lets the translation part agree
with the data from step 0, which matters on a short CPU budget).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PredictionCodebook(nn.Module):
    """Per-module ``units x units`` prediction matrices on a ``(d_x, d_y[, theta])`` grid.

    ``n_r = 0`` gives a translation-only codebook (2-D grid); ``n_r >= 1`` adds the periodic
    rotation axis. Table layout: ``(n_r or 1, n_t, n_t, modules, units, units)``.
    """

    def __init__(self, modules: int, units: int, n_t: int = 5, n_r: int = 8,
                 init_noise: float = 0.01) -> None:
        super().__init__()
        if n_t < 2:
            raise ValueError(f"n_t must be >= 2 (grid end points), got {n_t}")
        if n_r < 0:
            raise ValueError(f"n_r must be >= 0, got {n_r}")
        if modules < 1 or units < 1:
            raise ValueError(f"need modules, units >= 1, got {modules}, {units}")
        self.modules_, self.units, self.n_t, self.n_r = modules, units, n_t, n_r
        eye = torch.eye(units).expand(max(n_r, 1), n_t, n_t, modules, units, units)
        noise = (torch.rand(eye.shape) * 2 - 1) * init_noise
        self.table = nn.Parameter(eye + noise)

    @property
    def rotates(self) -> bool:
        """Whether the codebook has a rotation axis."""
        return self.n_r > 0

    def node_offsets(self) -> torch.Tensor:
        """The ``n_t`` translation node positions in ``[-0.5, 0.5]``."""
        return torch.linspace(-0.5, 0.5, self.n_t)

    def node_angles(self) -> torch.Tensor:
        """The ``n_r`` rotation node angles ``2 pi k / n_r``."""
        return torch.arange(max(self.n_r, 1)) * (2 * math.pi / max(self.n_r, 1))

    def lookup(self, offset: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Interpolated matrices for query points.

        ``offset``: ``(..., 2)`` ``(d_x, d_y)`` in ``[-0.5, 0.5]`` (clamped); ``theta``: ``(...)``
        angles (any real number; taken modulo ``2 pi``), required iff the codebook rotates.
        Returns ``(..., modules, units, units)``.
        """
        if offset.shape[-1] != 2:
            raise ValueError(f"offset must end in 2 (d_x, d_y), got {tuple(offset.shape)}")
        if self.rotates and theta is None:
            raise ValueError("this codebook rotates: theta is required")
        if theta is not None and not self.rotates:
            raise ValueError("this codebook is translation-only: theta must be None")
        if theta is not None and theta.shape != offset.shape[:-1]:
            raise ValueError(f"theta shape {tuple(theta.shape)} != offset points "
                             f"{tuple(offset.shape[:-1])}")
        batch_shape = offset.shape[:-1]
        n_t = self.n_t
        u = ((offset.reshape(-1, 2).clamp(-0.5, 0.5) + 0.5) * (n_t - 1))
        i0 = u.floor().clamp(0, n_t - 2)
        w1 = u - i0  # (N, 2) weight of the upper node
        i0 = i0.long()
        if self.rotates:
            r = (theta.reshape(-1) % (2 * math.pi)) * (self.n_r / (2 * math.pi))
            r0 = r.floor()
            wr1 = r - r0
            r0 = r0.long() % self.n_r
            r_nodes = [(r0, 1 - wr1), ((r0 + 1) % self.n_r, wr1)]
        else:
            zero = torch.zeros(u.shape[0], dtype=torch.long, device=u.device)
            r_nodes = [(zero, torch.ones(u.shape[0], device=u.device))]
        flat = self.table.reshape(-1, self.modules_ * self.units * self.units)
        out = 0.0
        for r_idx, r_w in r_nodes:
            for dy in (0, 1):
                wy = w1[:, 1] if dy else 1 - w1[:, 1]
                for dx in (0, 1):
                    wx = w1[:, 0] if dx else 1 - w1[:, 0]
                    idx = (r_idx * n_t + i0[:, 1] + dy) * n_t + i0[:, 0] + dx
                    out = out + (r_w * wy * wx)[:, None] * flat[idx]
        return out.reshape(*batch_shape, self.modules_, self.units, self.units)

    def predict(self, source: torch.Tensor, offset: torch.Tensor,
                theta: torch.Tensor | None = None) -> torch.Tensor:
        """Predict transformed features module by module.

        ``source``: ``(B, modules * units, h, w)`` features gathered at the nearest source
        locations; ``offset``: ``(B, h, w, 2)``; ``theta``: ``(B,)`` per-image angle or ``None``.
        Returns ``(B, modules * units, h, w)``.
        """
        b, c, h, w = source.shape
        if c != self.modules_ * self.units:
            raise ValueError(f"expected {self.modules_ * self.units} channels, got {c}")
        if offset.shape != (b, h, w, 2):
            raise ValueError(f"offset must be {(b, h, w, 2)}, got {tuple(offset.shape)}")
        th = None
        if theta is not None:
            th = theta.reshape(b, 1, 1).expand(b, h, w)
        M = self.lookup(offset, th)  # (B, h, w, K, l, l)
        f = source.reshape(b, self.modules_, self.units, h, w).permute(0, 3, 4, 1, 2)
        pred = torch.einsum("bhwkij,bhwkj->bhwki", M, f)
        return pred.permute(0, 3, 4, 1, 2).reshape(b, c, h, w)
