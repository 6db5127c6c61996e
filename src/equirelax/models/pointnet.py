"""VN-PointNet (Deng et al., ICCV 2021), an SO(3)-invariant point-cloud classifier built from
the Vector-Neuron layers of :mod:`equirelax.nn.vn`, and the plain PointNet baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from equirelax.groups import SO
from equirelax.nn.module import EquivariantModule, check_features
from equirelax.nn.vn import (
    VNBatchNorm,
    VNLinear,
    VNLinearLeakyReLU,
    VNMaxPool,
    VNMeanPool,
    VNStdFeature,
    knn_vector_lift,
)
from equirelax.reps import trivial, vector

__all__ = ["PointNet", "VNFeatureTransform", "VNPointNet"]


def _check_positive(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_vectors(x: torch.Tensor, channels: int, where: str) -> None:
    check_features(x, ("P", channels, 3), where, floating=True)


def _classifier_head(
    in_features: int, hidden: Sequence[int], num_classes: int, dropout: float
) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _check_cloud(points: torch.Tensor, where: str) -> None:
    check_features(points, ("N", 3), where, leading=1, floating=True)
    if points.shape[1] < 1:
        raise ValueError(f"{where} expects points of shape (B, N, 3) with N >= 1, got "
                         f"{tuple(points.shape)}")


def _check_widths(widths: Sequence[int], name: str, count: int) -> tuple[int, ...]:
    widths = tuple(widths)
    if len(widths) != count or any(
        isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths
    ):
        raise ValueError(f"{name} must be {count} positive integers, got {widths!r}")
    return widths


def _check_pooling(pooling: str, name: str) -> None:
    if pooling not in ("mean", "max"):
        raise ValueError(f"{name} must be 'mean' or 'max', got {pooling!r}")


def _vn_pool(pooling: str, channels: int) -> nn.Module:
    return VNMeanPool() if pooling == "mean" else VNMaxPool(channels)


class VNFeatureTransform(nn.Module):
    """The VN-PointNet feature transform: a global equivariant feature of ``channels`` vectors
    computed from the per-point features ``(B, N, channels, 3)``, returned as
    ``(B, channels, 3)``.

    VN-PointNet concatenates it to every point's features (the equivariant form of PointNet's
    feature transform network). Layers, with ``widths = (W1, W2, W3, W4, W5)``: three per-point
    VN blocks (channels → W1 → W2 → W3), pooling over the points (``"mean"``, or
    :class:`VNMaxPool`), two VN blocks on the pooled vectors (W3 → W4 → W5) and a
    :class:`VNLinear` back to ``channels``. The original's widths are 64/3, 128/3, 1024/3,
    512/3, 256/3 = (21, 42, 341, 170, 85), with ``negative_slope = 0`` (ReLU).
    """

    def __init__(
        self,
        channels: int,
        widths: Sequence[int] = (21, 42, 341, 170, 85),
        pooling: str = "mean",
        negative_slope: float = 0.0,
        share_nonlinearity: bool = False,
    ) -> None:
        super().__init__()
        _check_positive(channels, "channels")
        w1, w2, w3, w4, w5 = _check_widths(widths, "widths", 5)
        _check_pooling(pooling, "pooling")
        self.channels, self.pooling = channels, pooling
        kwargs = {"share_nonlinearity": share_nonlinearity, "negative_slope": negative_slope}
        self.conv1 = VNLinearLeakyReLU(channels, w1, **kwargs)
        self.conv2 = VNLinearLeakyReLU(w1, w2, **kwargs)
        self.conv3 = VNLinearLeakyReLU(w2, w3, **kwargs)
        self.pool = _vn_pool(pooling, w3)
        self.fc1 = VNLinearLeakyReLU(w3, w4, **kwargs)
        self.fc2 = VNLinearLeakyReLU(w4, w5, **kwargs)
        self.fc3 = VNLinear(w5, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vectors(x, self.channels, type(self).__name__)
        x = self.pool(self.conv3(self.conv2(self.conv1(x))))
        return self.fc3(self.fc2(self.fc1(x)))


class VNPointNet(EquivariantModule):
    """VN-PointNet classifier with SO(3)-invariant logits, as in the Vector Neurons code.

    ``points (B, N, 3) -> logits (B, num_classes)``. Layers, with ``channels = (C1, C2, C3)``:

    1. centre each cloud at its centroid (translation invariance; optional);
    2. k-NN lift to 3 vector channels per edge (:func:`knn_vector_lift`), ``conv_pos``
       (VN block 3 → C1) per edge, pooling over the k neighbours (``pooling``);
    3. ``conv1`` (C1 → C1); with ``feature_transform``, the global feature of a
       :class:`VNFeatureTransform` (widths C1, C2, C3, C3/2, C3/4, pooling ``pooling`` over
       points) concatenated to every point (2·C1 channels);
    4. ``conv2`` (→ C2), ``conv3`` (:class:`VNLinear` C2 → C3 with :class:`VNBatchNorm`);
    5. concatenation with the cloud mean (2·C3 channels), :class:`VNStdFeature` to invariant
       features (2·C3·3 per point), ``point_pooling`` over points;
    6. an MLP head (``head_hidden``, batch norm, ReLU, dropout).

    The defaults are the Vector Neurons classifier that the constraint-relaxation paper
    relaxes: widths (21, 42, 341) (64/3, 128/3, 1024/3), k = 20, the feature transform on,
    ``negative_slope = 0`` (VN-ReLU) in every VN block, mean pooling over neighbours and in the
    feature transform (the code's ``--pooling mean``), max over points of the invariant
    features. ``feature_transform=False``, ``negative_slope=0.2``, ``point_pooling="mean"`` give
    the lighter model of equirelax's earlier studies; ``pooling="max"`` uses
    :class:`VNMaxPool`.

    It declares ``rep_in = vector(SO(3))``, acting on the last axis of the points (every point
    rotated alike; the model is also invariant to permuting them), and ``rep_out =
    num_classes * trivial(SO(3))``: invariant logits.
    """

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int] = (21, 42, 341),
        k: int = 20,
        pooling: str = "mean",
        head_hidden: Sequence[int] = (512, 256),
        dropout: float = 0.4,
        negative_slope: float = 0.0,
        share_nonlinearity: bool = False,
        center: bool = True,
        feature_transform: bool = True,
        point_pooling: str = "max",
    ) -> None:
        super().__init__()
        _check_positive(num_classes, "num_classes")
        _check_positive(k, "k")
        c1, c2, c3 = _check_widths(channels, "channels", 3)
        head_hidden = _check_widths(head_hidden, "head_hidden", len(tuple(head_hidden)))
        _check_pooling(pooling, "pooling")
        _check_pooling(point_pooling, "point_pooling")
        if 2 * c3 < 4:
            raise ValueError(f"channels[2] must be >= 2 for the invariant frame, got {c3}")
        if feature_transform and c3 < 4:
            raise ValueError(
                f"channels[2] must be >= 4 for the feature transform (widths C3/2, C3/4), "
                f"got {c3}"
            )
        self.num_classes, self.k, self.pooling, self.center = num_classes, k, pooling, center
        self.point_pooling = point_pooling
        self.rep_in = vector(SO(3))
        self.rep_out = num_classes * trivial(SO(3))
        kwargs = {"share_nonlinearity": share_nonlinearity, "negative_slope": negative_slope}
        self.conv_pos = VNLinearLeakyReLU(3, c1, **kwargs)
        self.neighbour_pool = _vn_pool(pooling, c1)
        self.conv1 = VNLinearLeakyReLU(c1, c1, **kwargs)
        self.feature_transform = (
            VNFeatureTransform(c1, (c1, c2, c3, c3 // 2, c3 // 4), pooling, **kwargs)
            if feature_transform
            else None
        )
        self.conv2 = VNLinearLeakyReLU(2 * c1 if feature_transform else c1, c2, **kwargs)
        self.conv3 = VNLinear(c2, c3)
        self.bn3 = VNBatchNorm(c3)
        self.std_feature = VNStdFeature(2 * c3, normalize_frame=False, **kwargs)
        self.head = _classifier_head(2 * c3 * 3, head_hidden, num_classes, dropout)

    def invariant_features(self, points: torch.Tensor) -> torch.Tensor:
        """The pooled SO(3)-invariant global feature ``(B, 6·C3)`` fed to the head."""
        _check_cloud(points, type(self).__name__)
        if points.shape[1] < self.k:
            raise ValueError(
                f"{type(self).__name__} with k = {self.k} needs at least {self.k} points per "
                f"cloud, got {points.shape[1]}"
            )
        if self.center:
            points = points - points.mean(dim=1, keepdim=True)
        x = self.neighbour_pool(self.conv_pos(knn_vector_lift(points, self.k)))  # (B, N, C1, 3)
        x = self.conv1(x)
        if self.feature_transform is not None:
            glob = self.feature_transform(x).unsqueeze(1).expand_as(x)  # (B, N, C1, 3)
            x = torch.cat([x, glob], dim=-2)
        x = self.conv2(x)
        x = self.bn3(self.conv3(x))  # (B, N, C3, 3)
        x = torch.cat([x, x.mean(dim=1, keepdim=True).expand_as(x)], dim=-2)
        invariant, _ = self.std_feature(x)  # (B, N, 2·C3, 3)
        invariant = invariant.flatten(-2)
        if self.point_pooling == "mean":
            return invariant.mean(dim=1)
        return invariant.amax(dim=1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(self.invariant_features(points))


class PointNet(nn.Module):
    """Plain PointNet classifier (not rotation-invariant), the baseline for :class:`VNPointNet`.

    ``points (B, N, 3) -> logits (B, num_classes)``: a shared per-point MLP with batch norm
    (``channels``), max pooling over points, and the same head as :class:`VNPointNet`. It is
    invariant to permutations of the points only; rotation robustness has to come from
    augmentation.
    """

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int] = (64, 128, 1024),
        head_hidden: Sequence[int] = (512, 256),
        dropout: float = 0.4,
        center: bool = True,
    ) -> None:
        super().__init__()
        _check_positive(num_classes, "num_classes")
        channels = _check_widths(channels, "channels", len(tuple(channels)))
        head_hidden = _check_widths(head_hidden, "head_hidden", len(tuple(head_hidden)))
        if not channels:
            raise ValueError("channels must name at least one width, got ()")
        self.num_classes, self.center = num_classes, center
        layers: list[nn.Module] = []
        width = 3
        for i, c in enumerate(channels):
            layers += [nn.Linear(width, c), nn.BatchNorm1d(c)]
            if i < len(channels) - 1:
                layers.append(nn.ReLU())
            width = c
        self.point_mlp = nn.Sequential(*layers)
        self.head = _classifier_head(width, head_hidden, num_classes, dropout)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        _check_cloud(points, type(self).__name__)
        if self.center:
            points = points - points.mean(dim=1, keepdim=True)
        b, n, _ = points.shape
        features = self.point_mlp(points.reshape(b * n, 3)).reshape(b, n, -1)
        return self.head(features.amax(dim=1))
