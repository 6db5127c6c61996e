"""Vector Neurons (Deng et al., ICCV 2021): SO(3)-equivariant layers on lists of 3D vectors.

A Vector-Neuron feature is a list of C vectors in R^3 per point. Here it is a tensor of shape
``(..., C, 3)``: the last axis is the xyz vector, the one before it the channel, and any leading
axes (batch, points, neighbours) are carried along. A rotation R acts on every vector,
``x[..., c, :] -> R x[..., c, :]``; flattened over the last two axes (index ``c*3 + k``) this is
``C`` copies of the vector representation of SO(3), i.e. ``kron(I_C, R)``.

Every linear map of the family acts on the channel axis only, ``y_o = Σ_c W_oc x_c``, which
commutes with any R acting on the xyz axis. Its dense matrix on the flattened features is
``kron(W, I_3)`` (:meth:`VNLinear.dense_matrix`). All linear maps are separate
:class:`VNLinear` submodules, and each declares what it acts on: ``rep_in``/``rep_out``
(``C * vector(SO(3))``), ``feature_shapes`` (``((C_in, 3), (C_out, 3))``) and
``group_actions()`` (the so(3) generators on the xyz axis), so that ``equirelax.relax`` relaxes
them with the Lie-derivative penalty of the constraint-relaxation paper without this module
knowing about relaxation. The nonlinearity, batch norm and pooling
use only rotation-invariant quantities (inner products, norms), so every module here is exactly
SO(3)-equivariant and :class:`VNPointNet` gives SO(3)-invariant logits. Cross products in the
k-NN lift make the point-cloud models SO(3)- but not O(3)-equivariant.

:class:`PointNet` is the plain (non-equivariant) baseline.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from equirelax.groups import SO
from equirelax.reps import Rep, vector

__all__ = [
    "EPS",
    "PointNet",
    "VNBatchNorm",
    "VNFeatureTransform",
    "VNLeakyReLU",
    "VNLinear",
    "VNLinearLeakyReLU",
    "VNMaxPool",
    "VNMeanPool",
    "VNPointNet",
    "VNStdFeature",
    "knn_vector_lift",
    "vector_features_rep",
    "vn_leaky_relu",
]

#: Added to norms before dividing by them.
EPS = 1e-6


@functools.cache
def vector_features_rep(channels: int) -> Rep:
    """The action of SO(3) on ``channels`` vectors flattened to index ``c*3 + k``:
    ``channels * vector(SO(3))``, the matrix ``kron(I_C, R)``."""
    _check_positive(channels, "channels")
    return channels * vector(SO(3))


class _XYZGenerator:
    """A Lie algebra element ``A`` acting on the xyz axis of ``(..., C, 3)``: ``x -> x A^T``.

    On the flattened features this is ``kron(I_C, A)``, the Lie algebra action of
    :func:`vector_features_rep`, without building a ``3C x 3C`` matrix. The so(3) basis has at
    most one non-zero entry per row, so the map is a gather of xyz components times a sign
    (cheaper than a matmul with inner size 3 over many points).
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        if (matrix != 0).sum(dim=1).max() > 1:
            raise ValueError("expected a matrix with at most one non-zero entry per row")
        self.matrix = matrix
        self.index = matrix.abs().argmax(dim=1)
        self.coef = matrix.gather(1, self.index[:, None]).squeeze(1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        index = self.index.to(x.device)
        return x.index_select(-1, index) * self.coef.to(device=x.device, dtype=x.dtype)


@functools.lru_cache(maxsize=1)
def _so3_generators() -> tuple[_XYZGenerator, ...]:
    algebra = torch.as_tensor(SO(3).lie_algebra, dtype=torch.float64)
    return tuple(_XYZGenerator(a) for a in algebra)


def _check_positive(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_vectors(x: torch.Tensor, channels: int | None, where: str, min_dim: int = 2) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where} expects a torch.Tensor, got {type(x).__name__}")
    expected = f"(..., {channels if channels is not None else 'C'}, 3)"
    if x.dim() < min_dim or x.shape[-1] != 3 or (channels is not None and x.shape[-2] != channels):
        raise ValueError(
            f"{where} expects vector features of shape {expected}, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{where} expects a floating-point tensor, got {x.dtype}")


class VNLinear(nn.Module):
    """Channel-mixing linear map ``y[..., o, :] = Σ_c W[o, c] x[..., c, :]`` (no bias).

    A bias would be a fixed vector and break equivariance, so there is none.
    Input ``(..., in_channels, 3)``, output ``(..., out_channels, 3)``.

    The layer says what it acts on, for tools that check or relax equivariant layers:
    ``rep_in``/``rep_out`` are ``C * vector(SO(3))`` on the features flattened to ``c*3 + k``,
    ``feature_shapes`` the trailing shapes ``((C_in, 3), (C_out, 3))``, and
    :meth:`group_actions` the so(3) generators acting on the xyz axis.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        _check_positive(in_channels, "in_channels")
        _check_positive(out_channels, "out_channels")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The default init of ``nn.Linear`` (uniform in ±1/sqrt(in_channels))."""
        bound = 1.0 / math.sqrt(self.in_channels)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vectors(x, self.in_channels, type(self).__name__)
        # einsum contracts the channel axis as one (M·3, C_in) x (C_in, C_out) product; a
        # broadcast matmul of the small weight over many points is far slower on CPU.
        return torch.einsum("oc,...ck->...ok", self.weight, x)

    def dense_matrix(self) -> torch.Tensor:
        """The map on flattened features (index ``c*3 + k``): ``kron(W, I_3)``, (3·out, 3·in)."""
        eye = torch.eye(3, dtype=self.weight.dtype, device=self.weight.device)
        return torch.kron(self.weight, eye)

    @property
    def rep_in(self) -> Rep:
        """SO(3) on the flattened input: ``in_channels * vector(SO(3))``."""
        return vector_features_rep(self.in_channels)

    @property
    def rep_out(self) -> Rep:
        """SO(3) on the flattened output: ``out_channels * vector(SO(3))``."""
        return vector_features_rep(self.out_channels)

    @property
    def feature_shapes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Trailing shapes of input and output features: ``((C_in, 3), (C_out, 3))``."""
        return (self.in_channels, 3), (self.out_channels, 3)

    def group_actions(self) -> dict[str, list]:
        """How SO(3) acts on the raw input and output tensors: no discrete generators, and the
        three so(3) generators ``A_k`` acting as ``x -> x A_k^T`` on the xyz axis (paired by
        position), i.e. ``kron(I_C, A_k)`` on the flattened features (``matrices_in`` /
        ``matrices_out``, which let the penalties of a dense free term use the Gram path)."""
        generators = list(_so3_generators())
        algebra = np.asarray(SO(3).lie_algebra, dtype=np.float64)
        return {"in": [], "out": [], "lie_in": generators, "lie_out": generators,
                "matrices_in": [np.kron(np.eye(self.in_channels), a) for a in algebra],
                "matrices_out": [np.kron(np.eye(self.out_channels), a) for a in algebra]}

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


def vn_leaky_relu(
    x: torch.Tensor, direction: torch.Tensor, negative_slope: float = 0.2
) -> torch.Tensor:
    """Vector-Neuron leaky ReLU of features ``x`` along learned directions ``direction``.

    Where ``<x_c, d_c> >= 0`` the vector passes; otherwise its component along ``d_c`` is removed.
    The result is mixed with the identity: ``slope·x + (1 − slope)·relu(x)``. ``direction`` has
    shape ``(..., C, 3)`` or ``(..., 1, 3)`` (one direction shared by all channels).
    """
    dot = (x * direction).sum(dim=-1, keepdim=True)
    norm_sq = (direction * direction).sum(dim=-1, keepdim=True)
    # slope·x + (1 − slope)·relu(x) = x − (1 − slope)·[dot < 0]·(dot / |d|²)·d, computed with
    # the coefficient on the small (..., C, 1) tensor to keep full-size temporaries few.
    coef = torch.where(dot < 0, dot / (norm_sq + EPS), torch.zeros_like(dot))
    return x - ((1.0 - negative_slope) * coef) * direction


class VNLeakyReLU(nn.Module):
    """VN leaky ReLU whose directions are a learned :class:`VNLinear` of the input itself."""

    def __init__(
        self, channels: int, share_nonlinearity: bool = False, negative_slope: float = 0.2
    ) -> None:
        super().__init__()
        _check_positive(channels, "channels")
        if not 0.0 <= negative_slope < 1.0:
            raise ValueError(f"negative_slope must lie in [0, 1), got {negative_slope}")
        self.channels = channels
        self.negative_slope = negative_slope
        self.map_to_dir = VNLinear(channels, 1 if share_nonlinearity else channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vectors(x, self.channels, type(self).__name__)
        return vn_leaky_relu(x, self.map_to_dir(x), self.negative_slope)


class VNBatchNorm(nn.Module):
    """Batch norm of vector lengths: each vector is rescaled to its batch-normalised norm.

    Statistics are taken per channel over every leading axis (batch, points, neighbours). The
    norms are invariant, so the rescaled vectors stay equivariant in train and eval mode.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        _check_positive(channels, "channels")
        self.channels = channels
        self.bn = nn.BatchNorm1d(channels, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vectors(x, self.channels, type(self).__name__)
        norm = x.norm(dim=-1) + EPS
        normed = self.bn(norm.reshape(-1, self.channels)).reshape(norm.shape)
        return x * (normed / norm).unsqueeze(-1)


class VNLinearLeakyReLU(nn.Module):
    """VNLinear → (VN batch norm) → VN leaky ReLU, the basic VN block.

    As in the original VN code, the directions come from the block's *input*:
    ``p = BN(W x)``, ``d = U x``, output ``vn_leaky_relu(p, d)``. Both ``map_to_feat`` (W) and
    ``map_to_dir`` (U) are :class:`VNLinear` submodules.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        share_nonlinearity: bool = False,
        batch_norm: bool = True,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if not 0.0 <= negative_slope < 1.0:
            raise ValueError(f"negative_slope must lie in [0, 1), got {negative_slope}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.negative_slope = negative_slope
        self.map_to_feat = VNLinear(in_channels, out_channels)
        self.batchnorm = VNBatchNorm(out_channels) if batch_norm else nn.Identity()
        self.map_to_dir = VNLinear(in_channels, 1 if share_nonlinearity else out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vectors(x, self.in_channels, type(self).__name__)
        p = self.batchnorm(self.map_to_feat(x))
        return vn_leaky_relu(p, self.map_to_dir(x), self.negative_slope)


class VNMaxPool(nn.Module):
    """Equivariant max pooling over axis -3 (points or neighbours) of ``(..., P, C, 3)``.

    Per channel, the vector with the largest inner product with a learned direction (a
    :class:`VNLinear` of the input) is kept; inner products are invariant, so the choice is too.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        _check_positive(channels, "channels")
        self.channels = channels
        self.map_to_dir = VNLinear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vectors(x, self.channels, type(self).__name__, min_dim=3)
        dot = (x * self.map_to_dir(x)).sum(dim=-1, keepdim=True)  # (..., P, C, 1)
        index = dot.argmax(dim=-3, keepdim=True).expand(*x.shape[:-3], 1, *x.shape[-2:])
        return x.gather(-3, index).squeeze(-3)


class VNMeanPool(nn.Module):
    """Mean over axis -3 (points or neighbours) of ``(..., P, C, 3)``: linear, so equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vectors(x, None, type(self).__name__, min_dim=3)
        return x.mean(dim=-3)


class VNStdFeature(nn.Module):
    """Invariant features: project each vector onto a learned equivariant frame.

    Two VN blocks and a :class:`VNLinear` map the ``C`` input vectors to 3 frame vectors
    (2 when ``normalize_frame``, completed to an orthonormal frame by Gram-Schmidt and a cross
    product). The output ``invariant[..., c, j] = <x_c, frame_j>`` is SO(3)-invariant. Returns
    ``(invariant (..., C, 3), frame (..., 3, 3))`` with the frame vectors as rows.
    """

    def __init__(
        self,
        channels: int,
        normalize_frame: bool = False,
        share_nonlinearity: bool = False,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 4:
            raise ValueError(
                f"channels must be an integer >= 4 (the frame net halves it twice), "
                f"got {channels!r}"
            )
        self.channels = channels
        self.normalize_frame = normalize_frame
        kwargs = {"share_nonlinearity": share_nonlinearity, "negative_slope": negative_slope}
        self.vn1 = VNLinearLeakyReLU(channels, channels // 2, **kwargs)
        self.vn2 = VNLinearLeakyReLU(channels // 2, channels // 4, **kwargs)
        self.vn_lin = VNLinear(channels // 4, 2 if normalize_frame else 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_vectors(x, self.channels, type(self).__name__)
        z = self.vn_lin(self.vn2(self.vn1(x)))
        if self.normalize_frame:
            u1 = F.normalize(z[..., 0, :], dim=-1, eps=EPS)
            v2 = z[..., 1, :] - (z[..., 1, :] * u1).sum(dim=-1, keepdim=True) * u1
            u2 = F.normalize(v2, dim=-1, eps=EPS)
            frame = torch.stack([u1, u2, torch.linalg.cross(u1, u2, dim=-1)], dim=-2)
        else:
            frame = z
        return torch.matmul(x, frame.transpose(-1, -2)), frame


def knn_vector_lift(points: torch.Tensor, k: int) -> torch.Tensor:
    """Lift a point cloud ``(B, N, 3)`` to 3 vector channels per (point, neighbour).

    For each point x_i and each of its k nearest neighbours x_j (x_i itself included, as in the
    original VN code) the channels are ``[x_j − x_i, x_i, x_j × x_i]``. Returns ``(B, N, k, 3, 3)``.
    Equivariant under rotations about the origin (the cross product makes it SO(3), not O(3)),
    and equivariant under permutations of the points.
    """
    if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[-1] != 3:
        got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"points must have shape (B, N, 3), got {got}")
    _check_positive(k, "k")
    if k > points.shape[1]:
        raise ValueError(f"k = {k} neighbours need at least {k} points, got {points.shape[1]}")
    # Direct differences, not the |x|^2 + |y|^2 - 2<x, y> expansion: its cancellation would let
    # round-off reorder near-equidistant neighbours differently for a rotated copy.
    dist = torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")
    index = dist.topk(k, dim=-1, largest=False).indices  # (B, N, k)
    batch = torch.arange(points.shape[0], device=points.device)[:, None, None]
    neighbours = points[batch, index]  # (B, N, k, 3)
    centre = points.unsqueeze(2).expand_as(neighbours)
    cross = torch.linalg.cross(neighbours, centre, dim=-1)
    return torch.stack([neighbours - centre, centre, cross], dim=-2)


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
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"{where} expects a torch.Tensor, got {type(points).__name__}")
    if points.dim() != 3 or points.shape[-1] != 3 or points.shape[1] < 1:
        raise ValueError(f"{where} expects points of shape (B, N, 3), got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise TypeError(f"{where} expects a floating-point tensor, got {points.dtype}")


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
        _check_vectors(x, self.channels, type(self).__name__, min_dim=3)
        x = self.pool(self.conv3(self.conv2(self.conv1(x))))
        return self.fc3(self.fc2(self.fc1(x)))


class VNPointNet(nn.Module):
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
