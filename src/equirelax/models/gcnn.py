"""A small C4- or D4-invariant image classifier (:class:`GCNN`) and its plain-CNN baseline.

Built from the group convolutions of :mod:`equirelax.nn.gconv`; see there for the groups'
action on pixel grids (``er.reps.grid``) and the layout of group feature maps.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from equirelax.groups import PermutationGroup
from equirelax.nn.gconv import (
    GroupBatchNorm,
    GroupConv2d,
    GroupInvariantPooling,
    LiftingConv2d,
    _check_kernel_size,
    _check_positive,
)
from equirelax.nn.module import EquivariantModule, check_features
from equirelax.reps import trivial
from equirelax.reps.grid import grid, grid_group

__all__ = ["CNN", "GCNN"]


def _check_channels(channels: Sequence[int], pool_after: Sequence[int]) -> tuple[tuple, tuple]:
    channels, pool_after = tuple(channels), tuple(pool_after)
    if not channels or any(
        isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels
    ):
        raise ValueError(f"channels must be one or more positive integers, got {channels!r}")
    if any(not isinstance(i, int) or not 0 <= i < len(channels) for i in pool_after):
        raise ValueError(f"pool_after must index blocks 0..{len(channels) - 1}, got {pool_after!r}")
    return channels, pool_after


def _halve(x: torch.Tensor, where: str, block: int) -> torch.Tensor:
    """2x2 max pooling of the last two axes; the side must be even for exact equivariance."""
    side = x.shape[-1]
    if side % 2:
        raise ValueError(
            f"{where}: block {block} pools a map of side {side}; 2x2 pooling is only equivariant "
            f"on even sides (use an image side divisible by 2^(number of pools))"
        )
    lead = x.shape[:-2]
    return F.max_pool2d(x.reshape(-1, 1, side, side), 2).reshape(*lead, side // 2, side // 2)


def _block_sides(image_size: int, blocks: int, pool_after: tuple[int, ...]) -> list[int]:
    """The side of the maps entering each block, given the image side."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    sides: list[int] = []
    side = image_size
    for i in range(blocks):
        sides.append(side)
        if i in pool_after:
            if side % 2:
                raise ValueError(
                    f"image_size = {image_size} gives a map of side {side} at block {i}, which "
                    f"pools it; 2x2 pooling is only equivariant on even sides (use a side "
                    f"divisible by 2^{len(pool_after)})"
                )
            side //= 2
    return sides


class GCNN(EquivariantModule):
    """A small C4- or D4-invariant image classifier: ``(B, C_in, H, H) -> logits (B, classes)``.

    Blocks ``i = 0..len(channels)-1``: convolution (lifting for block 0, :class:`GroupConv2d`
    after) → :class:`GroupBatchNorm` → ReLU, with 2x2 max pooling after the blocks listed in
    ``pool_after``; then :class:`GroupInvariantPooling` and a linear head. Logits are exactly
    invariant under every group element acting on the input image (the side must be divisible by
    ``2**len(pool_after)``).

    The model is built for images of side ``image_size`` (28 by default, the side of the
    studies' digits and Fashion-MNIST): every convolution is built with the side of the maps it
    sees, so that it declares its representations (``rep_in = er.reps.grid(G, image_size,
    in_channels)``, ``rep_out`` ``num_classes`` invariant logits) and ``equirelax.relax`` finds
    and relaxes its convolutions.
    """

    def __init__(
        self,
        group: str | PermutationGroup = "C4",
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (8, 16, 32),
        kernel_size: int = 3,
        pool_after: Sequence[int] = (0, 1),
        image_size: int = 28,
    ) -> None:
        super().__init__()
        _check_positive(in_channels, "in_channels")
        _check_positive(num_classes, "num_classes")
        channels, self.pool_after = _check_channels(channels, pool_after)
        self.group = grid_group(group)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.image_size = image_size
        sides = _block_sides(image_size, len(channels), self.pool_after)
        self.rep_in = grid(self.group, image_size, in_channels)
        self.rep_out = num_classes * trivial(self.group)
        convs: list[nn.Module] = []
        width = in_channels
        for i, c in enumerate(channels):
            conv_type = LiftingConv2d if i == 0 else GroupConv2d
            convs.append(conv_type(width, c, self.group, kernel_size, bias=False,
                                   image_size=sides[i]))
            width = c
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(GroupBatchNorm(c) for c in channels)
        self.pool = GroupInvariantPooling()
        self.head = nn.Linear(width, num_classes)

    def invariant_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled invariant features ``(B, channels[-1])`` fed to the head."""
        side = self.image_size
        check_features(x, (self.in_channels, side, side), type(self).__name__, leading=1,
                       floating=True)
        f = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            f = F.relu(norm(conv(f)))
            if i in self.pool_after:
                f = _halve(f, type(self).__name__, i)
        return self.pool(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.invariant_features(x))

    @property
    def feature_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Images ``(C_in, H, H)`` in, logits ``(num_classes,)`` out."""
        side = self.image_size
        return (self.in_channels, side, side), (self.num_classes,)


class CNN(nn.Module):
    """The plain CNN baseline with the topology of :class:`GCNN` (no group axis).

    Conv → BatchNorm → ReLU blocks, 2x2 max pooling after ``pool_after``, global mean pooling,
    linear head. Not invariant to rotations; robustness has to come from augmentation.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32, 64),
        kernel_size: int = 3,
        pool_after: Sequence[int] = (0, 1),
    ) -> None:
        super().__init__()
        _check_positive(in_channels, "in_channels")
        _check_positive(num_classes, "num_classes")
        _check_kernel_size(kernel_size)
        channels, self.pool_after = _check_channels(channels, pool_after)
        self.in_channels, self.num_classes = in_channels, num_classes
        widths = (in_channels, *channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2, bias=False)
            for a, b in itertools.pairwise(widths)
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in channels)
        self.head = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, (self.in_channels, "H", "H"), type(self).__name__, leading=1,
                       square=True, floating=True)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = F.relu(norm(conv(x)))
            if i in self.pool_after:
                x = F.max_pool2d(x, 2)
        return self.head(x.mean(dim=(-2, -1)))
