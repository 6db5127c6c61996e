"""Kernel parameterisations of the modular autoencoder's single linear convolution.

Both produce one effective kernel ``W`` of shape ``(channels, 3, k, k)`` that the tied
encoder/decoder uses. ``FreeKernel`` stores ``W`` directly. ``CompositeKernel`` is the "bipolar"
form of the SCG extractor: ``W = c2 o c1 + c2 o c1b o c1a`` built from small 5x5 linear
convolutions (no non-linearity), where ``c2`` is grouped per module so that the units of one module
share their two input pathways. With the default sizes it has 4,400 parameters and an effective
21x21 kernel, as the published extractor. The composition is computed exactly as a kernel (not
by pushing an identity through the layers): a cross-correlation with ``A`` followed by one with
``B`` at dilation ``d`` equals one cross-correlation with the full convolution of ``A`` with the
``d``-dilated ``B``, which ``conv_transpose2d`` computes.

Why the composite form: a free 21x21 kernel has 12,348 parameters per 64 channels and, on a short
CPU budget, stays noise-like; the composite form is a strong smoothness prior that lets
centre-surround and colour-opponent structure emerge within a few thousand steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def compose_kernels(inner: torch.Tensor, outer: torch.Tensor, dilation: int = 1,
                    groups: int = 1) -> torch.Tensor:
    """Effective kernel of ``outer`` (at ``dilation``) applied after ``inner``.

    ``inner``: ``(a, c, ka, ka)``; ``outer``: ``(b, a // groups, kb, kb)``. Returns
    ``(b, c, ka + dilation * (kb - 1), ...)`` such that
    ``conv2d(conv2d(x, inner), outer, dilation=dilation, groups=groups)`` equals
    ``conv2d(x, result)`` for valid (unpadded) convolutions.
    """
    if inner.dim() != 4 or outer.dim() != 4:
        raise ValueError(f"kernels must be 4-D, got {tuple(inner.shape)}, {tuple(outer.shape)}")
    a = inner.shape[0]
    b = outer.shape[0]
    if a % groups or b % groups or outer.shape[1] * groups != a:
        raise ValueError(
            f"outer kernel {tuple(outer.shape)} with groups={groups} does not match inner "
            f"kernel with {a} output channels"
        )
    # conv_transpose2d weight layout: (in = a, out / groups, kb, kb).
    weight = outer.reshape(groups, b // groups, a // groups, *outer.shape[2:])
    weight = weight.transpose(1, 2).reshape(a, b // groups, *outer.shape[2:])
    out = F.conv_transpose2d(inner.transpose(0, 1), weight, dilation=dilation, groups=groups)
    return out.transpose(0, 1).contiguous()


def _pad_to(kernel: torch.Tensor, size: int) -> torch.Tensor:
    p = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, (p, p, p, p))


class FreeKernel(nn.Module):
    """A free ``(modules * units, 3, size, size)`` kernel, Kaiming-normal initialised."""

    def __init__(self, modules: int, units: int, size: int = 21, in_channels: int = 3) -> None:
        super().__init__()
        if size % 2 == 0 or size < 1:
            raise ValueError(f"kernel size must be odd and positive, got {size}")
        self.size = size
        w = torch.empty(modules * units, in_channels, size, size)
        nn.init.normal_(w, std=1.0 / math.sqrt(in_channels * size * size))
        self.weight = nn.Parameter(w)

    def forward(self) -> torch.Tensor:
        """Return the kernel."""
        return self.weight


class CompositeKernel(nn.Module):
    """The "bipolar" composite kernel: two linear pathways into a per-module 5x5 layer.

    Pathway 1: ``c1`` (3 -> ``modules`` maps, ``base x base``). Pathway 2: ``c1a``
    (3 -> ``modules``) then a depth-wise ``c1b``. Both feed ``c2``, grouped so that module
    ``i``'s ``units`` outputs read only map ``i``. ``c1b`` and ``c2`` act at dilation 2 (as if
    after a stride-2 layer), so with ``base = 5`` the effective kernel is 21x21.
    """

    def __init__(self, modules: int, units: int, base: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        if base % 2 == 0 or base < 1:
            raise ValueError(f"base kernel size must be odd and positive, got {base}")
        self.modules_, self.units, self.base = modules, units, base
        self.size = base + 4 * (base - 1)
        std_in = 1.0 / math.sqrt(in_channels * base * base)
        self.c1 = nn.Parameter(torch.randn(modules, in_channels, base, base) * std_in)
        self.c1a = nn.Parameter(torch.randn(modules, in_channels, base, base) * std_in)
        self.c1b = nn.Parameter(torch.randn(modules, 1, base, base) / base)
        self.c2 = nn.Parameter(torch.randn(modules * units, 1, base, base) / base)

    def forward(self) -> torch.Tensor:
        """Return the effective ``(modules * units, 3, size, size)`` kernel."""
        m = self.modules_
        path1 = compose_kernels(self.c1, self.c2, dilation=2, groups=m)
        inner2 = compose_kernels(self.c1a, self.c1b, dilation=2, groups=m)
        path2 = compose_kernels(inner2, self.c2, dilation=2, groups=m)
        return _pad_to(path1, self.size) + path2
