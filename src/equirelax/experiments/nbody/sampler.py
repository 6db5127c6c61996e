"""Random rotations of the N-body study's training batches.

:func:`random_orthogonal` names the element of each seed, drawn by the library's Haar sampler
(``equirelax.groups.haar``). :class:`RandomRotations` rotates every training batch by the
element of its step.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from equirelax.data.nbody import NBodySample
from equirelax.groups.haar import haar_orthogonal_torch, haar_rotations_torch


def random_orthogonal(
    seed: int, *, reflections: bool = False, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The element of SO(3) (with ``reflections``: of O(3)) that the study draws for ``seed``:
    the library's Haar sampler (QR method) on a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    draw = haar_orthogonal_torch if reflections else haar_rotations_torch
    return draw(1, generator=gen, dtype=dtype, method="qr")[0]


class RandomRotations(pl.Callback):
    """Rotate each training batch (positions, velocities, targets) by one random element.

    The paper trains on randomly rotated batches, since a relaxed model is not equivariant while
    it trains. The element depends only on (seed, global step), so both arms of a comparison see
    the same rotations and a resumed run continues the same sequence. ``group``: ``"so3"``
    (rotations, as in the paper) or ``"o3"`` (rotations and reflections).
    """

    def __init__(self, seed: int, group: str = "so3") -> None:
        if group not in ("so3", "o3"):
            raise ValueError(f"group must be 'so3' or 'o3', got {group!r}")
        self.seed, self.group = seed, group

    def rotate(self, batch: NBodySample, step: int) -> None:
        """Rotate ``batch`` in place by the element of optimiser step ``step``."""
        rot = random_orthogonal(
            self.seed * 7_919 + 104_729 * step + 1,
            reflections=self.group == "o3",
        ).to(device=batch.loc.device, dtype=batch.loc.dtype)
        for tensor in (batch.loc, batch.vel, batch.target):
            tensor.copy_(tensor @ rot.T)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rotate(batch, trainer.global_step)
