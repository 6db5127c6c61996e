"""Group convolutions on images for C4 (rotations by 90°) and D4 (rotations and reflections).

Feature maps on the group carry a group axis: ``(B, C, |G|, H, W)``, one map per group element
(the regular representation). A group element ``g`` acts on images by moving pixels
(:meth:`ImageGroup.transform`, exact on a square grid: ``torch.rot90`` and ``torch.flip``), and
on group feature maps by moving pixels *and* permuting the group axis,
``(g·f)[h] = T_g f[g⁻¹h]`` (:meth:`ImageGroup.act_regular`).

* :class:`LiftingConv2d` maps an image ``(B, C_in, H, W)`` to ``(B, C_out, |G|, H, W)``: output
  map ``g`` is the cross-correlation with the transformed filter ``T_g ψ``.
* :class:`GroupConv2d` maps ``(B, C_in, |G|, H, W)`` to ``(B, C_out, |G|, H, W)``: output map
  ``g`` uses the filter bank ``T_g ψ[:, :, g⁻¹h]`` (filters rotated/flipped, group axis permuted).

Both build one dense ``conv2d`` kernel from their free filters (:meth:`expanded_weight`) and run
a single convolution, with stride 1 and "same" padding, so that ``layer(g·x) = g·layer(x)``
holds exactly (to float round-off) for every group element on any square image. Pointwise
nonlinearities, :class:`GroupBatchNorm` (statistics shared over the group axis) and 2x2 spatial
pooling of even-sized maps keep that property; :class:`GroupInvariantPooling` (max over the group
axis, then mean over space) gives invariant features. :class:`GCNN` is a small classifier built
from them and :class:`CNN` the plain baseline with the same topology.

:meth:`ImageGroup.transform_kernel` acts on any ``conv2d`` kernel between trivial (image) and
regular (group) fields; a kernel gives an equivariant convolution exactly when it is fixed by
the generators, and :meth:`ImageGroup.project_kernel` averages a kernel onto that subspace.

Built with an ``image_size``, the two convolutions declare what they act on, for tools that check
or relax equivariant layers (``equirelax.relax``) without this module knowing about them:
``rep_in``/``rep_out`` (:meth:`ImageGroup.field_rep`, the permutation of pixels and group axis
as a representation of ``er.groups.cyclic(4)`` / ``dihedral(4)``), ``feature_shapes``,
``free_term`` (an unconstrained :class:`FreeFieldConv2d` with the same layout) and
``group_actions`` (the generators moving pixels and permuting the group axis).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from equirelax.groups import PermutationGroup, cyclic, dihedral
from equirelax.reps import PermRep

__all__ = [
    "CNN",
    "GCNN",
    "FreeFieldConv2d",
    "GroupBatchNorm",
    "GroupConv2d",
    "GroupInvariantPooling",
    "ImageGroup",
    "LiftingConv2d",
    "image_group",
]


def _rotate(x: torch.Tensor, turns: int) -> torch.Tensor:
    return torch.rot90(x, turns % 4, dims=(-2, -1)) if turns % 4 else x


def _apply(x: torch.Tensor, flip: int, turns: int) -> torch.Tensor:
    """T_(flip, turns)(x) = F^flip (R^turns x): rotate by 90°·turns, then mirror left-right."""
    x = _rotate(x, turns)
    return torch.flip(x, dims=(-1,)) if flip else x


class ImageGroup:
    """C4 or D4 acting on square pixel grids (the last two axes of a tensor).

    Elements are indexed ``0 .. order-1``; element ``i`` is ``(flip, turns) = elements[i]`` and
    acts as "rotate counter-clockwise by ``turns`` quarter turns (``torch.rot90``), then mirror
    left-right if ``flip``". Index 0 is the identity. The multiplication table is computed from
    these actions, so ``transform(transform(x, j), i) == transform(x, multiply(i, j))``.
    """

    def __init__(self, name: str) -> None:
        key = name.upper() if isinstance(name, str) else name
        if key not in ("C4", "D4"):
            raise ValueError(f"image groups are 'C4' or 'D4', got {name!r}")
        self.name = key
        flips = (0,) if key == "C4" else (0, 1)
        self.elements: tuple[tuple[int, int], ...] = tuple((f, r) for f in flips for r in range(4))
        self.order = len(self.elements)
        #: generators: the quarter turn (and the mirror for D4)
        self.generators: tuple[int, ...] = (1,) if key == "C4" else (1, 4)
        probe = torch.arange(9.0).reshape(3, 3)  # no symmetry: every element moves it differently
        images = [_apply(probe, f, r) for f, r in self.elements]
        table = np.empty((self.order, self.order), dtype=np.int64)
        for i, (fi, ri) in enumerate(self.elements):
            for j in range(self.order):
                composed = _apply(images[j], fi, ri)
                table[i, j] = next(k for k, im in enumerate(images) if torch.equal(im, composed))
        self.cayley = table
        self.inverse = np.array([int(np.flatnonzero(table[i] == 0)[0]) for i in range(self.order)])

    def __repr__(self) -> str:
        return f"ImageGroup({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageGroup) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("ImageGroup", self.name))

    def _check_element(self, g: int) -> int:
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or not 0 <= g < self.order:
            raise ValueError(f"{self.name} elements are indices 0..{self.order - 1}, got {g!r}")
        return int(g)

    def multiply(self, g: int, h: int) -> int:
        """Index of the product ``g h`` (first ``h``, then ``g``)."""
        return int(self.cayley[self._check_element(g), self._check_element(h)])

    def transform(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Move the pixels of ``x (..., H, W)`` (square) by element ``g``."""
        g = self._check_element(g)
        if x.dim() < 2 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"group actions need square images (..., H, H), got {tuple(x.shape)}")
        return _apply(x, *self.elements[g])

    def act_regular(self, f: torch.Tensor, g: int) -> torch.Tensor:
        """Act on a group feature map ``(..., |G|, H, W)``: ``(g·f)[h] = T_g f[g⁻¹h]``."""
        g = self._check_element(g)
        if f.dim() < 3 or f.shape[-3] != self.order:
            raise ValueError(
                f"{self.name} feature maps have shape (..., {self.order}, H, W), "
                f"got {tuple(f.shape)}"
            )
        index = torch.as_tensor(self.cayley[self.inverse[g]], device=f.device)
        return self.transform(f.index_select(-3, index), g)

    def transform_kernel(
        self, kernel: torch.Tensor, g: int, in_regular: bool, out_regular: bool
    ) -> torch.Tensor:
        """Act by ``g`` on a ``conv2d`` kernel between trivial or regular fields.

        ``kernel`` has shape ``(C_out·n_out, C_in·n_in, k, k)`` with ``n = |G|`` for regular
        fields (group axis fastest) and 1 for trivial ones (plain image channels). The result is
        ``(g·K)[o, a, c, b](δ) = K[o, g⁻¹a, c, g⁻¹b](g⁻¹δ)``. ``conv2d`` with ``K`` is
        equivariant exactly when ``g·K = K`` for the generators; the penalty ``‖g·K − K‖`` over
        :attr:`generators` is the generator penalty for C4/D4.
        """
        g = self._check_element(g)
        n_out = self.order if out_regular else 1
        n_in = self.order if in_regular else 1
        if kernel.dim() != 4 or kernel.shape[0] % n_out or kernel.shape[1] % n_in:
            raise ValueError(
                f"kernel must have shape (C_out*{n_out}, C_in*{n_in}, k, k), "
                f"got {tuple(kernel.shape)}"
            )
        k = kernel.reshape(kernel.shape[0] // n_out, n_out, kernel.shape[1] // n_in, n_in,
                           *kernel.shape[2:])  # fmt: skip
        index = torch.as_tensor(self.cayley[self.inverse[g]], device=kernel.device)
        if out_regular:
            k = k.index_select(1, index)
        if in_regular:
            k = k.index_select(3, index)
        return self.transform(k, g).reshape(kernel.shape)

    def project_kernel(
        self, kernel: torch.Tensor, in_regular: bool, out_regular: bool
    ) -> torch.Tensor:
        """Orthogonal projection of a kernel onto the equivariant ones: the group average."""
        total = sum(
            self.transform_kernel(kernel, g, in_regular, out_regular) for g in range(self.order)
        )
        return total / self.order

    def act(self, x: torch.Tensor, g: int, regular: bool) -> torch.Tensor:
        """:meth:`act_regular` on group feature maps, :meth:`transform` on images."""
        return self.act_regular(x, g) if regular else self.transform(x, g)

    def permutation_group(self) -> PermutationGroup:
        """The same group as an equirelax permutation group: ``cyclic(4)`` or ``dihedral(4)``.

        Its generators (rotation, then reflection of the square's vertices) correspond to
        :attr:`generators` in order (quarter turn, then mirror), so representations built from
        the pixel actions of :attr:`generators` (:meth:`field_rep`) are representations of it.
        """
        return cyclic(4) if self.name == "C4" else dihedral(4)

    def field_rep(self, channels: int, size: int, regular: bool) -> PermRep:
        """The action on ``channels`` fields of side ``size`` as a permutation representation.

        Features are ``(channels, size, size)`` images (``regular=False``) or
        ``(channels, |G|, size, size)`` group feature maps (``regular=True``), flattened in C
        order; the images of the generators are the permutations by which :meth:`transform` /
        :meth:`act_regular` move the flattened entries. The representation is of
        :meth:`permutation_group`, whose constructor checks that these images satisfy its
        relations.
        """
        return _field_rep(self.name, channels, size, regular)


@functools.lru_cache(maxsize=64)
def _field_rep(name: str, channels: int, size: int, regular: bool) -> PermRep:
    _check_positive(channels, "channels")
    _check_positive(size, "size")
    group = ImageGroup(name)
    shape = (channels, group.order, size, size) if regular else (channels, size, size)
    index = torch.arange(math.prod(shape)).reshape(shape)
    images = []
    for s in group.generators:
        source = group.act(index, s, regular).flatten().numpy()
        # (P x)[p[i]] = x[i] for a PermRep; the action gives y[j] = x[source[j]], so p = source⁻¹
        images.append(np.argsort(source))
    kind = "regular" if regular else "trivial"
    return PermRep(group.permutation_group(), images,
                   name=f"{name} {kind} fields ({channels}, {size}x{size})")


def image_group(group: str | ImageGroup) -> ImageGroup:
    """An :class:`ImageGroup` from its name (``"C4"``/``"D4"``), or the group itself."""
    return group if isinstance(group, ImageGroup) else ImageGroup(group)


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


def _check_square(x: torch.Tensor, leading: tuple[int, ...], where: str) -> None:
    """``x`` must be ``(B, *leading, H, H)``; the message names the expected and received shape."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where} expects a torch.Tensor, got {type(x).__name__}")
    ok = x.dim() == len(leading) + 3 and tuple(x.shape[1 : 1 + len(leading)]) == leading
    if not ok or x.shape[-1] != x.shape[-2]:
        expected = ", ".join(["B", *map(str, leading), "H", "H"])
        raise ValueError(f"{where} expects input of shape ({expected}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{where} expects a floating-point tensor, got {x.dtype}")


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")


def _check_side(x: torch.Tensor, image_size: int | None, where: str) -> None:
    if image_size is not None and x.shape[-1] != image_size:
        raise ValueError(
            f"{where} was built for image_size = {image_size} (its declared representations "
            f"act on {image_size}x{image_size} maps), got a map of side {x.shape[-1]}"
        )


class FreeFieldConv2d(nn.Module):
    """An unconstrained ``conv2d`` between trivial or regular fields (no weight sharing).

    Input ``(B, C_in, H, W)`` (``in_regular=False``) or ``(B, C_in, |G|, H, W)``; output
    ``(B, C_out, |G|, H, W)`` (or ``(B, C_out, H, W)``), with the layout of
    :class:`LiftingConv2d` / :class:`GroupConv2d`: one dense kernel
    ``(C_out·n_out, C_in·n_in, k, k)`` with the group axis fastest, stride 1, "same" padding.
    It is the free term ``W`` of a relaxed group convolution; its kernel is equivariant exactly
    when ``ImageGroup.transform_kernel`` fixes it. Weights start ``N(0, init_std²)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | ImageGroup,
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
        self.group = image_group(group)
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
        _check_square(x, lead, type(self).__name__)
        out = self.conv(x.flatten(1, 2) if self.in_regular else x)
        return out.unflatten(1, (self.out_channels, self.n_out)) if self.out_regular else out


class _FieldConvDescription:
    """The common part of the lifting and group convolutions (mixed into both): argument checks,
    the kernel, its init, the forward (one ``conv2d`` with :meth:`expanded_weight`), and what a
    layer built with an ``image_size`` acts on.

    Subclasses call ``_setup`` and set the class attribute ``in_regular``; outputs are regular
    fields.
    """

    in_regular: bool

    def _setup(
        self,
        in_channels: int,
        out_channels: int,
        group: str | ImageGroup,
        kernel_size: int,
        image_size: int | None,
        bias: bool,
    ) -> None:
        """Check the arguments and create the kernel ``(C_out, C_in, [|G|,] k, k)`` (the group
        axis for regular-field inputs)."""
        _check_positive(in_channels, "in_channels")
        _check_positive(out_channels, "out_channels")
        _check_kernel_size(kernel_size)
        _check_image_size(image_size)
        self.image_size = image_size
        self.group = image_group(group)
        self.in_channels, self.out_channels, self.kernel_size = (
            in_channels,
            out_channels,
            kernel_size,
        )
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

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, group={self.group.name}, "
            f"kernel_size={self.kernel_size}, bias={self.bias is not None}"
            + (f", image_size={self.image_size}" if self.image_size is not None else "")
        )

    @property
    def rep_in(self) -> PermRep | None:
        """Pixels (and group axis) of the input as a representation; None without image_size."""
        if self.image_size is None:
            return None
        return self.group.field_rep(self.in_channels, self.image_size, self.in_regular)

    @property
    def rep_out(self) -> PermRep | None:
        """Pixels and group axis of the output as a representation; None without image_size."""
        if self.image_size is None:
            return None
        return self.group.field_rep(self.out_channels, self.image_size, True)

    @property
    def feature_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """Trailing input and output shapes, e.g. ``((C_in, H, H), (C_out, |G|, H, H))``."""
        if self.image_size is None:
            return None
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
        if self.in_regular:
            _check_square(x, (self.in_channels, n), f"{name} ({self.group.name})")
        else:
            _check_square(x, (self.in_channels,), name)
        _check_side(x, self.image_size, name)
        out = F.conv2d(x.flatten(1, 2) if self.in_regular else x, weight, bias,
                       padding=self.kernel_size // 2)
        return out.unflatten(1, (self.out_channels, n))

    def group_actions(self) -> dict[str, list]:
        """The generators on the raw input and output tensors, paired by position: pixel moves
        (and the group-axis permutation on regular fields). No Lie algebra."""
        group, regular = self.group, self.in_regular
        return {
            "in": [functools.partial(group.act, g=s, regular=regular) for s in group.generators],
            "out": [functools.partial(group.act, g=s, regular=True) for s in group.generators],
            "lie_in": [],
            "lie_out": [],
        }


class LiftingConv2d(_FieldConvDescription, nn.Module):
    """Lifting convolution Z² → G: ``(B, C_in, H, W) -> (B, C_out, |G|, H, W)``.

    ``out[:, o, g] = conv2d(x, T_g ψ[o]) + b[o]``; stride 1, "same" zero padding. With
    ``image_size`` the layer accepts only maps of that side and declares ``rep_in``/``rep_out``,
    ``feature_shapes``, ``free_term`` and ``group_actions`` (see the module docstring).
    """

    in_regular = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | ImageGroup,
        kernel_size: int = 3,
        bias: bool = True,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        self._setup(in_channels, out_channels, group, kernel_size, image_size, bias)
        self.reset_parameters()

    def expanded_weight(self) -> torch.Tensor:
        """The dense kernel ``(C_out·|G|, C_in, k, k)`` with output index ``o·|G| + g``."""
        g = self.group
        stacked = torch.stack([g.transform(self.weight, i) for i in range(g.order)], dim=1)
        return stacked.reshape(self.out_channels * g.order, *self.weight.shape[1:])



class GroupConv2d(_FieldConvDescription, nn.Module):
    """Regular-representation group convolution G → G.

    ``(B, C_in, |G|, H, W) -> (B, C_out, |G|, H, W)`` with
    ``out[:, o, g] = Σ_{c,h} conv2d(f[:, c, h], T_g ψ[o, c, g⁻¹h]) + b[o]``. With
    ``image_size`` the layer accepts only maps of that side and declares what it acts on, as
    :class:`LiftingConv2d` does.
    """

    in_regular = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | ImageGroup,
        kernel_size: int = 3,
        bias: bool = True,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        self._setup(in_channels, out_channels, group, kernel_size, image_size, bias)
        # perm[g, h] = index of g⁻¹h: the group-axis permutation of the filters of output g.
        perm = self.group.cayley[self.group.inverse]
        self.register_buffer("_perm", torch.as_tensor(perm), persistent=False)
        self.reset_parameters()

    def expanded_weight(self) -> torch.Tensor:
        """The dense kernel ``(C_out·|G|, C_in·|G|, k, k)``; indices ``o·|G|+g`` and ``c·|G|+h``."""
        g, n, k = self.group, self.group.order, self.kernel_size
        stacked = torch.stack(
            [g.transform(self.weight.index_select(2, self._perm[i]), i) for i in range(n)], dim=1
        )  # (C_out, |G|, C_in, |G|, k, k)
        return stacked.reshape(self.out_channels * n, self.in_channels * n, k, k)



class GroupBatchNorm(nn.Module):
    """Batch norm of group feature maps ``(B, C, |G|, H, W)``, statistics shared over ``|G|``.

    One mean/variance/affine per channel (not per group element), so it commutes with the
    group-axis permutation and the pixel moves.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        _check_positive(channels, "channels")
        self.channels = channels
        self.bn = nn.BatchNorm3d(channels, eps=eps, momentum=momentum)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if f.dim() != 5 or f.shape[1] != self.channels:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.channels}, |G|, H, W), "
                f"got {tuple(f.shape)}"
            )
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
        if f.dim() != 5:
            raise ValueError(f"expected group feature maps (B, C, |G|, H, W), got {tuple(f.shape)}")
        f = f.amax(dim=2) if self.group_reduce == "max" else f.mean(dim=2)
        return f.amax(dim=(-2, -1)) if self.spatial_reduce == "max" else f.mean(dim=(-2, -1))


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


def _block_sides(
    image_size: int | None, blocks: int, pool_after: tuple[int, ...]
) -> list[int | None]:
    """The side of the maps entering each block, given the image side (None: any side)."""
    if image_size is None:
        return [None] * blocks
    sides: list[int | None] = []
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


class GCNN(nn.Module):
    """A small C4- or D4-invariant image classifier: ``(B, C_in, H, H) -> logits (B, classes)``.

    Blocks ``i = 0..len(channels)-1``: convolution (lifting for block 0, :class:`GroupConv2d`
    after) → :class:`GroupBatchNorm` → ReLU, with 2x2 max pooling after the blocks listed in
    ``pool_after``; then :class:`GroupInvariantPooling` and a linear head. Logits are exactly
    invariant under every group element acting on the input image (the side must be divisible by
    ``2**len(pool_after)``).

    With ``image_size`` the model accepts only images of that side, and every convolution is
    built with the side of the maps it sees, so that it declares its representations and can be
    relaxed by ``equirelax.relax``.
    """

    def __init__(
        self,
        group: str | ImageGroup = "C4",
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (8, 16, 32),
        kernel_size: int = 3,
        pool_after: Sequence[int] = (0, 1),
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        _check_positive(in_channels, "in_channels")
        _check_positive(num_classes, "num_classes")
        channels, self.pool_after = _check_channels(channels, pool_after)
        _check_image_size(image_size)
        self.group = image_group(group)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.image_size = image_size
        sides = _block_sides(image_size, len(channels), self.pool_after)
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
        _check_square(x, (self.in_channels,), type(self).__name__)
        f = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            f = F.relu(norm(conv(f)))
            if i in self.pool_after:
                f = _halve(f, type(self).__name__, i)
        return self.pool(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.invariant_features(x))


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
        _check_square(x, (self.in_channels,), type(self).__name__)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = F.relu(norm(conv(x)))
            if i in self.pool_after:
                x = F.max_pool2d(x, 2)
        return self.head(x.mean(dim=(-2, -1)))
