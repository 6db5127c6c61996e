"""The prediction-matrix codebook ``M^(i)(delta)`` of the equivariance constraint.

For every module ``i`` the codebook stores an ``l x l`` matrix at each node of a grid over
``delta = (d_x, d_y[, theta])``: the sub-stride offsets ``d_x, d_y`` in ``[-0.5, 0.5]`` feature
units (``n_t`` nodes each, end points included) and, for the translation-rotation branch, the angle
``theta`` in ``[0, 2 pi)`` on ``n_r`` nodes that wrap around (periodic). A query between nodes is
answered by (tri)linear interpolation, so ``M`` is a learned, continuous, steerable interpolation
kernel: ``f'^(i)(p) = M^(i)(d(p), theta) f^(i)(n(p))`` predicts a module's transformed features
from the same module's features only (block-diagonal: modules are independent).

The table is initialised (``init="identity"``, default) to the identity plus uniform noise of
half-width ``init_noise``, or (``init="random"``) to that noise alone, as the published code does.
The identity start lets the translation part agree with the data from step 0, which matters on a
short CPU budget; the random start is the faithful one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

CODEBOOK_INITS = ("identity", "random")


def translation_weights(offset: torch.Tensor, n_t: int) -> torch.Tensor:
    """Dense ``(N, n_t * n_t)`` bilinear weights of ``N`` offsets ``(d_x, d_y)`` (clamped to
    ``[-0.5, 0.5]``) on an ``n_t x n_t`` node grid, flattened ``y``-major; 4 non-zeros per row."""
    if offset.dim() != 2 or offset.shape[-1] != 2:
        raise ValueError(f"offset must be (N, 2), got {tuple(offset.shape)}")
    u = (offset.clamp(-0.5, 0.5) + 0.5) * (n_t - 1)
    i0 = u.floor().clamp(0, n_t - 2)
    w1 = u - i0
    i0 = i0.long()
    idx = [(i0[:, 1] + dy) * n_t + i0[:, 0] + dx for dy in (0, 1) for dx in (0, 1)]
    wts = [(w1[:, 1] if dy else 1 - w1[:, 1]) * (w1[:, 0] if dx else 1 - w1[:, 0])
           for dy in (0, 1) for dx in (0, 1)]
    out = offset.new_zeros(offset.shape[0], n_t * n_t)
    return out.scatter_add_(1, torch.stack(idx, 1), torch.stack(wts, 1))


def rotation_weights(theta: torch.Tensor, n_r: int) -> torch.Tensor:
    """Dense ``(N, n_r)`` periodic linear weights of ``N`` angles on ``n_r`` nodes
    ``2 pi k / n_r``; 2 non-zeros per row."""
    r = (theta.reshape(-1) % (2 * math.pi)) * (n_r / (2 * math.pi))
    r0 = r.floor()
    idx = torch.stack([r0.long() % n_r, (r0.long() + 1) % n_r], 1)
    out = theta.new_zeros(r.shape[0], n_r)
    return out.scatter_add_(1, idx, torch.stack([1 - (r - r0), r - r0], 1))


class PredictionCodebook(nn.Module):
    """Per-module ``units x units`` prediction matrices on a ``(d_x, d_y[, theta])`` grid.

    ``n_r = 0`` gives a translation-only codebook (2-D grid); ``n_r >= 1`` adds the periodic
    rotation axis. Table layout: ``(n_r or 1, n_t, n_t, modules, units, units)``.
    """

    def __init__(self, modules: int, units: int, n_t: int = 5, n_r: int = 8,
                 init_noise: float = 0.01, init: str = "identity") -> None:
        super().__init__()
        if init not in CODEBOOK_INITS:
            raise ValueError(f"init must be one of {CODEBOOK_INITS}, got {init!r}")
        if init_noise < 0:
            raise ValueError(f"init_noise must be >= 0, got {init_noise}")
        if n_t < 2:
            raise ValueError(f"n_t must be >= 2 (grid end points), got {n_t}")
        if n_r < 0:
            raise ValueError(f"n_r must be >= 0, got {n_r}")
        if modules < 1 or units < 1:
            raise ValueError(f"need modules, units >= 1, got {modules}, {units}")
        self.modules_, self.units, self.n_t, self.n_r = modules, units, n_t, n_r
        eye = torch.eye(units).expand(max(n_r, 1), n_t, n_t, modules, units, units)
        noise = (torch.rand(eye.shape) * 2 - 1) * init_noise
        self.table = nn.Parameter(eye + noise if init == "identity" else noise)

    @property
    def rotates(self) -> bool:
        """Whether the codebook has a rotation axis."""
        return self.n_r > 0

    def identity_distance(self) -> torch.Tensor:
        """Per module, the mean over all grid nodes of ``||M(node) - I||_F``: how far the learned
        transformations moved from the identity (identity start: about
        ``init_noise * units / sqrt(3)``)."""
        eye = torch.eye(self.units, dtype=self.table.dtype, device=self.table.device)
        diff = (self.table.detach() - eye).flatten(0, 2)  # (nodes, K, l, l)
        return diff.pow(2).sum((-1, -2)).sqrt().mean(0)

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
        weights = self.interpolation_weights(offset.reshape(-1, 2),
                                             None if theta is None else theta.reshape(-1))
        flat = self.table.reshape(-1, self.modules_ * self.units * self.units)
        return (weights @ flat).reshape(*batch_shape, self.modules_, self.units, self.units)

    def interpolation_weights(self, offset: torch.Tensor, theta: torch.Tensor | None = None
                              ) -> torch.Tensor:
        """Dense ``(N, nodes)`` (tri)linear interpolation weights of ``N`` query points.

        Row ``p`` holds the (at most 8) non-zero weights of point ``p`` on the flattened node
        grid ``(n_r or 1, n_t, n_t)``, so a lookup is one matrix product with the flattened table.
        A product is much cheaper on CPU, forward and backward, than gathering and
        scatter-adding the 8 corner matrices of every point (``index`` / ``index_put``).
        """
        wt = translation_weights(offset, self.n_t).to(self.table.dtype)  # (N, n_t^2)
        if not self.rotates:
            return wt
        assert theta is not None
        wr = rotation_weights(theta, self.n_r).to(self.table.dtype)  # (N, n_r)
        return (wr[:, :, None] * wt[:, None, :]).reshape(offset.shape[0], -1)

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
        if self.rotates and (theta is None or theta.shape != (b,)):
            raise ValueError(f"this codebook rotates: theta must be ({b},), got "
                             f"{None if theta is None else tuple(theta.shape)}")
        if theta is not None and not self.rotates:
            raise ValueError("this codebook is translation-only: theta must be None")
        # theta is one per image: interpolate the table along theta once per image, then along
        # the offsets per location (a batched product with 4 non-zero weights per row) -- far
        # cheaper than trilinear weights over all n_r * n_t^2 nodes at every location
        n2, kll = self.n_t * self.n_t, self.modules_ * self.units * self.units
        table = self.table.reshape(max(self.n_r, 1), n2 * kll)
        if self.rotates:
            assert theta is not None
            wr = rotation_weights(theta, self.n_r).to(table.dtype)
            per_image = (wr @ table).reshape(b, n2, kll)
        else:
            per_image = table.reshape(1, n2, kll).expand(b, n2, kll)
        wt = translation_weights(offset.reshape(-1, 2), self.n_t).reshape(b, h * w, n2)
        M = torch.bmm(wt.to(table.dtype), per_image).reshape(
            b, h, w, self.modules_, self.units, self.units)
        f = source.reshape(b, self.modules_, 1, self.units, h, w).permute(0, 4, 5, 1, 2, 3)
        # a broadcast product and a sum: a batched matmul of millions of tiny l x l matrices is
        # several times slower on CPU
        pred = (M * f).sum(-1)  # (B, h, w, K, l)
        return pred.permute(0, 3, 4, 1, 2).reshape(b, c, h, w)
