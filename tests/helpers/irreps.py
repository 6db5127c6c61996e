"""The O(3) representation matrices of e3nn irreps, accurate in float64: the reference the
SEGNN layer and model tests check equivariance against."""

from __future__ import annotations

import torch
from e3nn import o3


def irreps_matrix(irreps: o3.Irreps, g: torch.Tensor) -> torch.Tensor:
    """The representation matrix of the O(3) element ``g`` on ``irreps``, accurate in float64.

    (e3nn's ``D_from_matrix`` goes through Euler angles and is only accurate to ~1e-7.) Each
    Wigner block is fitted from spherical harmonics, Y_l(R x) = D_l(R) Y_l(x), for the rotation
    R = det(g) g; the inversion acts on an irrep of parity p by p.
    """
    det = torch.det(g).sign()
    rot = det * g
    points = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    blocks = []
    for mul, ir in irreps:
        y = o3.spherical_harmonics(ir.l, points, normalize=True)
        y_rot = o3.spherical_harmonics(ir.l, points @ rot.T, normalize=True)
        d = torch.linalg.lstsq(y, y_rot).solution.T
        sign = ir.p if det < 0 else 1
        blocks += [sign * d] * mul
    return torch.block_diag(*blocks)
