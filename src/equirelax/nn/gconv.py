"""Group convolutions on images for C4 (rotations by 90°) and D4 (rotations and reflections).

The groups are ``er.groups.cyclic(4)`` and ``er.groups.dihedral(4)`` (pass them, or their names
``"C4"``/``"D4"``); their action on pixel grids is the permutation representation
:func:`equirelax.reps.grid.grid`, and the group axis of feature maps follows
:func:`~equirelax.reps.grid.grid_elements` (element ``i`` is ``(flip, turns)``: rotate by
``turns`` quarter turns, then mirror left-right if ``flip``; the identity first).

Feature maps on the group carry a group axis: ``(B, C, |G|, H, W)``, one map per group element
(the regular representation). A group element ``g`` acts on images by moving pixels
(:func:`grid_transform`, exact on a square grid: ``torch.rot90`` and ``torch.flip``), and on
group feature maps by moving pixels *and* permuting the group axis,
``(g·f)[h] = T_g f[g⁻¹h]`` (:func:`grid_act` with ``regular=True``).

* :class:`LiftingConv2d` maps an image ``(B, C_in, H, W)`` to ``(B, C_out, |G|, H, W)``: output
  map ``g`` is the cross-correlation with the transformed filter ``T_g ψ``.
* :class:`GroupConv2d` maps ``(B, C_in, |G|, H, W)`` to ``(B, C_out, |G|, H, W)``: output map
  ``g`` uses the filter bank ``T_g ψ[:, :, g⁻¹h]`` (filters rotated/flipped, group axis permuted).

Both build one dense ``conv2d`` kernel from their free filters (:meth:`expanded_weight`) and run
a single convolution, with stride 1 and "same" padding, so that ``layer(g·x) = g·layer(x)``
holds exactly (to float round-off) for every group element. They are built for one
``image_size`` and declare what they act on (the equivariant-module protocol,
:mod:`equirelax.nn.module`): ``rep_in``/``rep_out`` (``reps.grid(G, image_size, channels,
regular)``), ``feature_shapes``, ``free_term`` (an unconstrained :class:`FreeFieldConv2d` with
the same layout), ``relaxed_forward`` and ``group_actions`` (the generators moving pixels and
permuting the group axis), so that ``equirelax.relax`` relaxes them.
Pointwise nonlinearities, :class:`GroupBatchNorm` (statistics shared over the group axis) and
2x2 spatial pooling of even-sized maps keep equivariance on maps of any side;
:class:`GroupInvariantPooling` (max over the group axis, then mean over space) gives invariant
features. The classifier built from them is :class:`equirelax.models.GCNN`.

:func:`transform_kernel` acts on any ``conv2d`` kernel between trivial (image) and regular
(group) fields; a kernel gives an equivariant convolution exactly when it is fixed by the
generators, and :func:`project_kernel` averages a kernel onto that subspace.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from equirelax.groups import PermutationGroup
from equirelax.nn.module import EquivariantModule, check_features
from equirelax.reps import PermRep
from equirelax.reps.grid import grid, grid_cayley, grid_elements, grid_group, grid_name

__all__ = [
    "FreeFieldConv2d",
    "GroupBatchNorm",
    "GroupConv2d",
    "GroupInvariantPooling",
    "LiftingConv2d",
    "grid_act",
    "grid_transform",
    "project_kernel",
    "transform_kernel",
]

GridGroup = str | PermutationGroup


def _move(x: torch.Tensor, flip: int, turns: int) -> torch.Tensor:
    """T_(flip, turns)(x) = F^flip (R^turns x): rotate by 90°·turns, then mirror left-right."""
    if turns % 4:
        x = torch.rot90(x, turns % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def _element(group: GridGroup, g: int) -> tuple[int, int]:
    elements = grid_elements(group)
    if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < len(elements):
        raise ValueError(f"{grid_name(group)} elements are indices 0..{len(elements) - 1}, "
                         f"got {g!r}")
    return elements[g]


def grid_transform(x: torch.Tensor, group: GridGroup, g: int) -> torch.Tensor:
    """Move the pixels of ``x (..., H, H)`` (square) by element ``g`` (an index in
    :func:`~equirelax.reps.grid.grid_elements` order)."""
    flip, turns = _element(group, g)
    if x.dim() < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"group actions need square images (..., H, H), got {tuple(x.shape)}")
    return _move(x, flip, turns)


def _axis_permutation(group: GridGroup, g: int, device: torch.device) -> torch.Tensor:
    """The group-axis indices ``g⁻¹h`` for every ``h``: ``(g·f)[h] = T_g f[g⁻¹h]``."""
    table, inverse = grid_cayley(group)
    return torch.tensor(table[inverse[g]], device=device)


def grid_act(x: torch.Tensor, group: GridGroup, g: int, regular: bool) -> torch.Tensor:
    """Element ``g`` acting on images ``(..., H, H)`` (``regular=False``: pixel moves) or on group
    feature maps ``(..., |G|, H, H)`` (``regular=True``: ``(g·f)[h] = T_g f[g⁻¹h]``)."""
    _element(group, g)
    if regular:
        order = len(grid_elements(group))
        if x.dim() < 3 or x.shape[-3] != order:
            raise ValueError(f"{grid_name(group)} feature maps have shape (..., {order}, H, W), "
                             f"got {tuple(x.shape)}")
        x = x.index_select(-3, _axis_permutation(group, g, x.device))
    return grid_transform(x, group, g)


def transform_kernel(kernel: torch.Tensor, group: GridGroup, g: int, in_regular: bool,
                     out_regular: bool) -> torch.Tensor:
    """Act by ``g`` on a ``conv2d`` kernel between trivial or regular fields.

    ``kernel`` has shape ``(C_out·n_out, C_in·n_in, k, k)`` with ``n = |G|`` for regular
    fields (group axis fastest) and 1 for trivial ones (plain image channels). The result is
    ``(g·K)[o, a, c, b](δ) = K[o, g⁻¹a, c, g⁻¹b](g⁻¹δ)``. ``conv2d`` with ``K`` is
    equivariant exactly when ``g·K = K`` for the generators.
    """
    _element(group, g)
    order = len(grid_elements(group))
    n_out = order if out_regular else 1
    n_in = order if in_regular else 1
    if kernel.dim() != 4 or kernel.shape[0] % n_out or kernel.shape[1] % n_in:
        raise ValueError(
            f"kernel must have shape (C_out*{n_out}, C_in*{n_in}, k, k), "
            f"got {tuple(kernel.shape)}"
        )
    k = kernel.reshape(kernel.shape[0] // n_out, n_out, kernel.shape[1] // n_in, n_in,
                       *kernel.shape[2:])  # fmt: skip
    index = _axis_permutation(group, g, kernel.device)
    if out_regular:
        k = k.index_select(1, index)
    if in_regular:
        k = k.index_select(3, index)
    return grid_transform(k, group, g).reshape(kernel.shape)


def project_kernel(kernel: torch.Tensor, group: GridGroup, in_regular: bool,
                   out_regular: bool) -> torch.Tensor:
    """Orthogonal projection of a kernel onto the equivariant ones: the group average."""
    order = len(grid_elements(group))
    total = sum(transform_kernel(kernel, group, g, in_regular, out_regular)
                for g in range(order))
    return total / order


def _check_positive(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_kernel_size(kernel_size: int) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd so the filter has a centre pixel, got {kernel_size}"
        )


def _check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer (the side of the maps the "
                         f"layer acts on), got {image_size!r}")


class FreeFieldConv2d(nn.Module):
    """An unconstrained ``conv2d`` between trivial or regular fields (no weight sharing).

    Input ``(B, C_in, H, W)`` (``in_regular=False``) or ``(B, C_in, |G|, H, W)``; output
    ``(B, C_out, |G|, H, W)`` (or ``(B, C_out, H, W)``), with the layout of
    :class:`LiftingConv2d` / :class:`GroupConv2d`: one dense kernel
    ``(C_out·n_out, C_in·n_in, k, k)`` with the group axis fastest, stride 1, "same" padding.
    It is the free term ``W`` of a relaxed group convolution; its kernel is equivariant exactly
    when :func:`transform_kernel` fixes it. Weights start ``N(0, init_std²)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: GridGroup,
        in_regular: bool,
        out_regular: bool = True,
        kernel_size: int = 3,
        bias: bool = False,
        init_std: float = 1e-3,
    ) -> None:
        super().__init__()
        _check_positive(in_channels, "in_channels")
        _check_positive(out_channels, "out_channels")
        _check_kernel_size(kernel_size)
        if not (isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std >= 0):
            raise ValueError(f"init_std must be a finite number >= 0, got {init_std!r}")
        self.group = grid_group(group)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_regular, self.out_regular = in_regular, out_regular
        n = self.group.order
        self.n_in, self.n_out = (n if in_regular else 1), (n if out_regular else 1)
        self.conv = nn.Conv2d(in_channels * self.n_in, out_channels * self.n_out, kernel_size,
                              padding=kernel_size // 2, bias=bias)
        with torch.no_grad():
            self.conv.weight.normal_(0.0, init_std)
            if self.conv.bias is not None:
                self.conv.bias.normal_(0.0, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = (self.in_channels, self.group.order) if self.in_regular else (self.in_channels,)
        check_features(x, (*lead, "H", "H"), type(self).__name__, leading=1, square=True,
                       floating=True)
        out = self.conv(x.flatten(1, 2) if self.in_regular else x)
        return out.unflatten(1, (self.out_channels, self.n_out)) if self.out_regular else out


class _GroupConv(EquivariantModule):
    """The common part of the lifting and group convolutions: argument checks, the kernel, its
    init, the forward (one ``conv2d`` with :meth:`expanded_weight`), the representations they
    act on and the relaxation hooks.

    Subclasses call ``_setup`` and set the class attribute ``in_regular``; outputs are regular
    fields.
    """

    in_regular: bool

    def _setup(
        self,
        in_channels: int,
        out_channels: int,
        group: GridGroup,
        kernel_size: int,
        image_size: int,
        bias: bool,
    ) -> None:
        """Check the arguments, declare the representations and create the kernel
        ``(C_out, C_in, [|G|,] k, k)`` (the group axis for regular-field inputs)."""
        _check_positive(in_channels, "in_channels")
        _check_positive(out_channels, "out_channels")
        _check_kernel_size(kernel_size)
        _check_image_size(image_size)
        self.image_size = image_size
        self.group = grid_group(group)
        self.in_channels, self.out_channels, self.kernel_size = (
            in_channels,
            out_channels,
            kernel_size,
        )
        #: pixels (and group axis) of the input and output as permutation representations
        self.rep_in: PermRep = grid(self.group, image_size, in_channels, self.in_regular)
        self.rep_out: PermRep = grid(self.group, image_size, out_channels, True)
        group_axis = (self.group.order,) if self.in_regular else ()
        shape = (out_channels, in_channels, *group_axis, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None

    def reset_parameters(self) -> None:
        """He-uniform init for a ReLU network (fan-in = C_in·(|G| for regular inputs)·k²)."""
        fan_in = self.weight[0].numel()
        bound = math.sqrt(6.0 / fan_in)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.zero_()

    def expanded_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, group={grid_name(self.group)}, "
            f"kernel_size={self.kernel_size}, bias={self.bias is not None}, "
            f"image_size={self.image_size}"
        )

    @property
    def feature_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Trailing input and output shapes, e.g. ``((C_in, H, H), (C_out, |G|, H, H))``."""
        side = (self.image_size, self.image_size)
        n = self.group.order
        shape_in = (self.in_channels, n, *side) if self.in_regular else (self.in_channels, *side)
        return shape_in, (self.out_channels, n, *side)

    def free_term(self, init_std: float = 1e-3, bias: bool = False) -> FreeFieldConv2d:
        """An unconstrained convolution with this layer's input and output layout."""
        return FreeFieldConv2d(self.in_channels, self.out_channels, self.group, self.in_regular,
                               True, self.kernel_size, bias=bias, init_std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._convolve(x, self.expanded_weight())
        return out if self.bias is None else out + self.bias[:, None, None, None]

    def relaxed_forward(self, x: torch.Tensor, free: nn.Module, theta: float) -> torch.Tensor:
        """``self(x) + theta * free(x)`` for the free term of :meth:`free_term`, as one
        convolution: the two kernels share a layout, so their sum costs what the layer costs."""
        n = self.group.order
        shape = (self.out_channels * n, self.in_channels * (n if self.in_regular else 1),
                 self.kernel_size, self.kernel_size)
        if not isinstance(free, FreeFieldConv2d) or tuple(free.conv.weight.shape) != shape:
            return self(x) + theta * free(x)
        free_bias = None if free.conv.bias is None else theta * free.conv.bias
        out = self._convolve(x, self.expanded_weight() + theta * free.conv.weight, free_bias)
        return out if self.bias is None else out + self.bias[:, None, None, None]

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
        """Check ``x`` and convolve it with a dense kernel of :meth:`expanded_weight`'s layout:
        ``(B, C_out, |G|, H, W)``."""
        n, name = self.group.order, type(self).__name__
        side = self.image_size
        if self.in_regular:
            check_features(x, (self.in_channels, n, side, side),
                           f"{name} ({grid_name(self.group)})", leading=1, floating=True)
        else:
            check_features(x, (self.in_channels, side, side), name, leading=1, floating=True)
        out = F.conv2d(x.flatten(1, 2) if self.in_regular else x, weight, bias,
                       padding=self.kernel_size // 2)
        return out.unflatten(1, (self.out_channels, n))

    def group_actions(self) -> dict[str, list]:
        """The generators on the raw input and output tensors, paired by position: pixel moves
        (and the group-axis permutation on regular fields). No Lie algebra."""
        name, regular = grid_name(self.group), self.in_regular
        generators = (1,) if name == "C4" else (1, 4)  # the quarter turn (and the mirror)
        return {
            "in": [functools.partial(grid_act, group=name, g=s, regular=regular)
                   for s in generators],
            "out": [functools.partial(grid_act, group=name, g=s, regular=True)
                    for s in generators],
            "lie_in": [],
            "lie_out": [],
        }


class LiftingConv2d(_GroupConv):
    """Lifting convolution Z² → G: ``(B, C_in, H, H) -> (B, C_out, |G|, H, H)``, H = image_size.

    ``out[:, o, g] = conv2d(x, T_g ψ[o]) + b[o]``; stride 1, "same" zero padding. Declares
    ``rep_in = grid(G, H, C_in)`` and ``rep_out = grid(G, H, C_out, regular=True)`` and the
    relaxation hooks (see the module docstring).
    """

    in_regular = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: GridGroup,
        kernel_size: int = 3,
        bias: bool = True,
        *,
        image_size: int,
    ) -> None:
        super().__init__()
        self._setup(in_channels, out_channels, group, kernel_size, image_size, bias)
        self.reset_parameters()

    def expanded_weight(self) -> torch.Tensor:
        """The dense kernel ``(C_out·|G|, C_in, k, k)`` with output index ``o·|G| + g``."""
        n = self.group.order
        stacked = torch.stack([_move(self.weight, *e) for e in grid_elements(self.group)], dim=1)
        return stacked.reshape(self.out_channels * n, *self.weight.shape[1:])


class GroupConv2d(_GroupConv):
    """Regular-representation group convolution G → G.

    ``(B, C_in, |G|, H, H) -> (B, C_out, |G|, H, H)`` with
    ``out[:, o, g] = Σ_{c,h} conv2d(f[:, c, h], T_g ψ[o, c, g⁻¹h]) + b[o]``; H = image_size.
    Declares its representations and relaxation hooks as :class:`LiftingConv2d` does.
    """

    in_regular = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: GridGroup,
        kernel_size: int = 3,
        bias: bool = True,
        *,
        image_size: int,
    ) -> None:
        super().__init__()
        self._setup(in_channels, out_channels, group, kernel_size, image_size, bias)
        # perm[g, h] = index of g⁻¹h: the group-axis permutation of the filters of output g.
        table, inverse = grid_cayley(self.group)
        self.register_buffer("_perm", torch.as_tensor(table[inverse]), persistent=False)
        self.reset_parameters()

    def expanded_weight(self) -> torch.Tensor:
        """The dense kernel ``(C_out·|G|, C_in·|G|, k, k)``; indices ``o·|G|+g`` and ``c·|G|+h``."""
        n, k = self.group.order, self.kernel_size
        stacked = torch.stack(
            [_move(self.weight.index_select(2, self._perm[i]), *e)
             for i, e in enumerate(grid_elements(self.group))], dim=1
        )  # (C_out, |G|, C_in, |G|, k, k)
        return stacked.reshape(self.out_channels * n, self.in_channels * n, k, k)


class GroupBatchNorm(nn.Module):
    """Batch norm of group feature maps ``(B, C, |G|, H, W)``, statistics shared over ``|G|``.

    One mean/variance/affine per channel (not per group element), so it commutes with the
    group-axis permutation and the pixel moves, on maps of any side. (It declares no
    representations: it acts the same way on every side and group.)
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        _check_positive(channels, "channels")
        self.channels = channels
        self.bn = nn.BatchNorm3d(channels, eps=eps, momentum=momentum)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        check_features(f, (self.channels, "|G|", "H", "W"), type(self).__name__, leading=1)
        return self.bn(f)


class GroupInvariantPooling(nn.Module):
    """``(B, C, |G|, H, W) -> (B, C)``: reduce the group axis, then space; invariant features.

    ``group_reduce`` ("max" or "mean") over the group axis gives maps that transform only by
    pixel moves; ``spatial_reduce`` over all pixels then removes those too.
    """

    def __init__(self, group_reduce: str = "max", spatial_reduce: str = "mean") -> None:
        super().__init__()
        for name, value in (("group_reduce", group_reduce), ("spatial_reduce", spatial_reduce)):
            if value not in ("max", "mean"):
                raise ValueError(f"{name} must be 'max' or 'mean', got {value!r}")
        self.group_reduce, self.spatial_reduce = group_reduce, spatial_reduce

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        check_features(f, ("C", "|G|", "H", "W"), type(self).__name__, leading=1)
        f = f.amax(dim=2) if self.group_reduce == "max" else f.mean(dim=2)
        return f.amax(dim=(-2, -1)) if self.spatial_reduce == "max" else f.mean(dim=(-2, -1))
