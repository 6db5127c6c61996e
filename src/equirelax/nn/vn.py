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
SO(3)-equivariant, and the classifier built from them, :class:`equirelax.models.VNPointNet`,
gives SO(3)-invariant logits. Cross products in the k-NN lift make the point-cloud models
SO(3)- but not O(3)-equivariant.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from equirelax.groups import SO
from equirelax.nn.module import EquivariantModule, check_features
from equirelax.reps import Rep, vector

__all__ = [
    "EPS",
    "VNBatchNorm",
    "VNLeakyReLU",
    "VNLinear",
    "VNLinearLeakyReLU",
    "VNMaxPool",
    "VNMeanPool",
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
    """``x`` must be vector features ``(..., C, 3)`` (``min_dim`` = 3: with an axis to pool)."""
    shape = ("P",) * (min_dim - 2) + ("C" if channels is None else channels, 3)
    check_features(x, shape, where, floating=True)


class _VectorFeatures(EquivariantModule):
    """SO(3) acting on vector features ``(..., C, 3)``: ``rep_in``/``rep_out`` are
    ``C * vector(SO(3))`` on the features flattened to ``c*3 + k`` (set by :meth:`_declare`),
    ``feature_shapes`` the trailing shapes ``((C_in, 3), (C_out, 3))``."""

    def _declare(self, in_channels: int, out_channels: int) -> None:
        self.rep_in: Rep = vector_features_rep(in_channels)
        self.rep_out: Rep = vector_features_rep(out_channels)

    @property
    def feature_shapes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Trailing shapes of input and output features: ``((C_in, 3), (C_out, 3))``."""
        return (self.rep_in.dim // 3, 3), (self.rep_out.dim // 3, 3)


class VNLinear(_VectorFeatures):
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
        self._declare(in_channels, out_channels)
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


class VNLeakyReLU(_VectorFeatures):
    """VN leaky ReLU whose directions are a learned :class:`VNLinear` of the input itself."""

    def __init__(
        self, channels: int, share_nonlinearity: bool = False, negative_slope: float = 0.2
    ) -> None:
        super().__init__()
        _check_positive(channels, "channels")
        if not 0.0 <= negative_slope < 1.0:
            raise ValueError(f"negative_slope must lie in [0, 1), got {negative_slope}")
        self.channels = channels
        self._declare(channels, channels)
        self.negative_slope = negative_slope
        self.map_to_dir = VNLinear(channels, 1 if share_nonlinearity else channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vectors(x, self.channels, type(self).__name__)
        return vn_leaky_relu(x, self.map_to_dir(x), self.negative_slope)


class VNBatchNorm(_VectorFeatures):
    """Batch norm of vector lengths: each vector is rescaled to its batch-normalised norm.

    Statistics are taken per channel over every leading axis (batch, points, neighbours). The
    norms are invariant, so the rescaled vectors stay equivariant in train and eval mode.
    """

    relaxable = False  # a per-channel rescaling: constraint relaxation leaves it alone

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        _check_positive(channels, "channels")
        self.channels = channels
        self._declare(channels, channels)
        self.bn = nn.BatchNorm1d(channels, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vectors(x, self.channels, type(self).__name__)
        norm = x.norm(dim=-1) + EPS
        normed = self.bn(norm.reshape(-1, self.channels)).reshape(norm.shape)
        return x * (normed / norm).unsqueeze(-1)


class VNLinearLeakyReLU(_VectorFeatures):
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
        self._declare(in_channels, out_channels)
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
