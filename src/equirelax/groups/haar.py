"""Haar-random rotations: the one place equirelax draws uniform elements of SO(2) and SO(3).

Every rotation sampler of the library is here: ``MatrixLieGroup.sample`` (and so the sampled
equivariance checks), the rotated point-cloud data sets, training-time augmentation and the
N-body study draw through these functions. Each is Haar (uniform) on the rotation group:

* SO(2): a uniform angle in [0, 2π).
* SO(3) from quaternions: a standard Gaussian vector in R^4, normalised, is uniform on the unit
  3-sphere, and the unit quaternions double-cover SO(3) with the Haar measure as image.
* SO(3) by QR (``method="qr"``, torch): the Q factor of a Gaussian 3x3 matrix with the signs of
  R's diagonal moved into Q is Haar on O(3); flipping one column when det = -1 keeps it Haar on
  SO(3).

Two readings of the same Gaussian quaternion draw exist side by side because committed results
were measured on each and must reproduce bit for bit: ``scalar_first=True`` (the data sets and
augmentation; the matrix formula of :func:`quaternions_to_matrices`) and ``scalar_first=False``
(``MatrixLieGroup.sample``; scipy's conversion of (x, y, z, w)). Both give the same distribution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.transform import Rotation

from equirelax.groups.base import rng_from

if TYPE_CHECKING:  # the torch samplers import torch when called: groups itself needs numpy only
    import torch

#: The ways the torch sampler can turn Gaussian draws into rotations.
TORCH_METHODS = ("quaternion", "qr")


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"the number of rotations n must be a non-negative integer, got {n!r}")


def quaternions_to_matrices(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` of quaternions ``(..., 4)`` ordered (w, x, y, z).

    The quaternions are normalised first; ``q`` and ``-q`` give the same matrix.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"quaternions need a last axis of size 4, got shape {q.shape}")
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def haar_rotations(
    n: int,
    seed: int | np.random.Generator | None = None,
    *,
    dim: int = 3,
    scalar_first: bool = True,
) -> np.ndarray:
    """``n`` rotation matrices drawn uniformly (Haar measure) from SO(dim), shape ``(n, dim, dim)``.

    ``seed``: an int, a numpy Generator (which is advanced) or None (fresh entropy). ``dim`` is 2
    (a uniform angle per matrix) or 3 (a Gaussian quaternion per matrix, read as (w, x, y, z)
    when ``scalar_first``, else as (x, y, z, w) and converted by scipy; see the module notes).
    """
    _check_count(n)
    if dim not in (2, 3):
        raise ValueError(f"Haar rotations are drawn in dimension 2 or 3, got dim={dim!r}")
    rng = rng_from(seed)
    if dim == 2:
        t = rng.uniform(0.0, 2 * np.pi, size=n)
        c, s = np.cos(t), np.sin(t)
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    q = rng.standard_normal((n, 4))
    if scalar_first:
        return quaternions_to_matrices(q)
    if n == 0:
        return np.zeros((0, 3, 3))
    return Rotation.from_quat(q / np.linalg.norm(q, axis=1, keepdims=True)).as_matrix()


def _quaternion_rotations(n: int, generator: torch.Generator | None) -> torch.Tensor:
    import torch

    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        dim=-2,
    )


def _qr_rotations(n: int, generator: torch.Generator | None) -> torch.Tensor:
    import torch

    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    improper = torch.linalg.det(q) < 0
    q[improper, :, 0] = -q[improper, :, 0]
    return q


def haar_rotations_torch(
    n: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    method: str = "quaternion",
) -> torch.Tensor:
    """``n`` Haar-random rotations of SO(3) drawn from a torch generator, shape ``(n, 3, 3)``.

    For training-time augmentation, where the stream must come from a ``torch.Generator``.
    ``method``: ``"quaternion"`` (Gaussian quaternions read as (w, x, y, z)) or ``"qr"`` (QR of
    a Gaussian matrix). The matrices are built in float64 and then cast, so they are orthogonal
    to the precision of ``dtype`` (float32 when None).
    """
    import torch

    _check_count(n)
    if method not in TORCH_METHODS:
        raise ValueError(f"method must be one of {TORCH_METHODS}, got {method!r}")
    draw = _quaternion_rotations if method == "quaternion" else _qr_rotations
    return draw(int(n), generator).to(dtype=dtype or torch.float32, device=device)


def haar_orthogonal_torch(
    n: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    method: str = "quaternion",
) -> torch.Tensor:
    """``n`` Haar-random elements of O(3): rotations from :func:`haar_rotations_torch`, each
    times the parity -I with probability 1/2 (drawn after the rotations, one uniform per matrix).
    """
    import torch

    rot = haar_rotations_torch(n, generator=generator, dtype=torch.float64, method=method)
    flip = torch.rand(int(n), generator=generator) < 0.5
    rot[flip] = -rot[flip]
    return rot.to(dtype=dtype or torch.float32, device=device)


__all__ = [
    "TORCH_METHODS",
    "haar_orthogonal_torch",
    "haar_rotations",
    "haar_rotations_torch",
    "quaternions_to_matrices",
]

