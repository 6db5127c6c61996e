"""The penalty squares of several relaxed layers from their images, as one autograd node.

A fused relaxed layer (:mod:`relaxation.fused`) hands over z = [W x̂, W A_1 x̂, ..., W A_K x̂]
for its penalty rows x̂ (m, (K + 1) d_out: each row's block, then its K images' blocks). The
penalties need, summed over the rows,

* lie² = Σ_k ||W A_k x̂ − B_k W x̂||², where B_k is the output action of generator k,
* norm² = ||W x̂||²,

and a model sums both over its layers. Per layer these are a gather (B_k on W x̂), a
subtraction and two dot products, and in the backward as many operations again: on a sketch's
few rows each one costs its dispatch, not its arithmetic. :func:`image_squares` takes every
layer's z at once (layers with the same number of rows): their blocks are read from the
concatenation of the z's by one gather of fixed column indices (an output action that is a
permutation, or a few signed entries per row, is such a gather), so the operations no longer
grow with the number of layers. Output actions given as dense matrices are applied layer by
layer within the same node.

A relaxed model's penalty is then lie_weight · sqrt(lie² + ε) + norm_weight · sqrt(norm² + ε).
:func:`image_penalty` takes it from the images in one node as well: the two sums are read as
Python floats, so the roots and the weighted sum cost no tensor operations, and the backward
scales the residuals by the roots' derivatives directly (one scatter-add of a concatenation),
where a squares node followed by a roots node ran a dozen operations on scalars and slices.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import numpy as np
import torch

from equirelax.relaxation.actions import LinearMap, StackedMatrixMap, row_entries

#: Output actions whose rows combine at most this many entries are read by gathers (one per
#: entry); denser ones are applied as matrices, layer by layer.
MAX_TERMS = 4


def _terms(linear: LinearMap) -> tuple[np.ndarray, np.ndarray] | None:
    """The map as weighted gathers: (columns, weights), each (terms, rows), the rows' non-zero
    entries padded with weight 0; None for a map with more than :data:`MAX_TERMS` per row."""
    if linear.gather:
        cols = linear.arrays[0][None, :]
        return cols, np.ones(cols.shape)
    if linear.sparse:
        cols, vals = linear.arrays
        return cols, vals
    cols, vals = row_entries(linear.arrays[0])
    return (cols, vals) if cols.shape[0] <= MAX_TERMS else None


def indexable(stack: StackedMatrixMap) -> bool:
    """Whether :func:`image_squares` reads this output action by gathers."""
    found = stack.__dict__.get("_indexable")
    if found is None:
        found = stack.__dict__["_indexable"] = _terms(stack.apply) is not None
    return found


class ImageLayout:
    """Where each layer's blocks sit in the concatenation of the layers' z (columns), and the
    column indices that read every image block, every identity block and, for each image
    column, the entries its output action combines (``terms`` of them, padded with weight 0).

    Built once per list of output actions (:meth:`of` keeps them by the actions' identity,
    holding only weak references to the actions), for :func:`image_squares`.
    """

    def __init__(self, stacks: Sequence[StackedMatrixMap]) -> None:
        self.refs = tuple(weakref.ref(s) for s in stacks)
        self.widths = [(s.k + 1) * s.apply.shape[1] for s in stacks]
        self._tensors: dict[tuple, tuple[torch.Tensor, ...]] = {}
        found = [_terms(s.apply) for s in stacks]
        self.indexed = all(t is not None for t in found)
        if not self.indexed:
            return
        images, identities, columns, weights = [], [], [], []
        offset = 0
        terms = max(t[0].shape[0] for t in found)  # type: ignore[index]
        for stack, width, (cols, vals) in zip(stacks, self.widths, found):  # type: ignore[misc]
            d = stack.apply.shape[1]
            images.append(np.arange(offset + d, offset + width))
            identities.append(np.arange(offset, offset + d))
            pad = terms - cols.shape[0]
            columns.append(offset + np.concatenate([cols, np.zeros((pad, cols.shape[1]),
                                                                   dtype=cols.dtype)]))
            weights.append(np.concatenate([vals, np.zeros((pad, vals.shape[1]))]))
            offset += width
        self.images = np.concatenate(images)
        self.identities = np.concatenate(identities)
        self.columns = np.concatenate(columns, axis=1)  # (terms, R)
        self.weights = np.concatenate(weights, axis=1)
        self.plain = bool(np.all(self.weights[0] == 1) and np.all(self.weights[1:] == 0))
        self.n_images = len(self.images)

    @classmethod
    def of(cls, stacks: Sequence[StackedMatrixMap]) -> ImageLayout:
        """The layout of these output actions (built on first use, then kept)."""
        key = tuple(id(s) for s in stacks)
        layout = _LAYOUTS.get(key)
        if layout is None or any(ref() is not s for ref, s in zip(layout.refs, stacks)):
            if len(_LAYOUTS) >= MAX_LAYOUTS:  # actions of models no longer in use
                _LAYOUTS.clear()
            layout = _LAYOUTS[key] = cls(stacks)
        return layout

    def tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """(gather index, extra term indices, their weights) on ``device`` in ``dtype``: the
        gather reads [images | output action's first term | identity blocks]; the extra terms
        (a weighted gather each) complete the output action where an image column combines
        several entries, and the first term's weights are None where they are all 1."""
        key = (device, dtype)
        found = self._tensors.get(key)
        if found is None:
            index = np.concatenate([self.images, self.columns[0], self.identities])
            extra = self.columns[1:] if not self.plain else self.columns[:0]
            found = self._tensors[key] = (
                torch.as_tensor(index, dtype=torch.long, device=device),
                torch.as_tensor(extra, dtype=torch.long, device=device),
                None if self.plain else torch.as_tensor(self.weights, dtype=dtype,
                                                        device=device))
        return found


#: Layouts by the ids of their output actions (checked against weak references on use).
_LAYOUTS: dict[tuple[int, ...], ImageLayout] = {}
#: How many layouts are kept before the cache starts afresh.
MAX_LAYOUTS = 256


def _residual_and_rows(layout: ImageLayout, zs: Sequence[torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the residuals z_k − B_k z_0 of every image block, the identity blocks z_0), each
    (m, columns) over all layers, read from the images by the layout's gathers."""
    index, extra, weights = layout.tensors(zs[0].device, zs[0].dtype)
    r = layout.n_images
    z = zs[0] if len(zs) == 1 else torch.cat(zs, 1)
    picked = z.index_select(1, index)  # (m, 2R + N)
    if weights is None:  # every output action a gather: images minus the gathered entries
        residual = torch.sub(picked[:, :r], picked[:, r:2 * r])
    else:
        action = picked[:, r:2 * r] * weights[0]
        for j in range(extra.shape[0]):
            action.addcmul_(z.index_select(1, extra[j]), weights[j + 1])
        residual = picked[:, :r] - action
    return residual, picked[:, 2 * r:]


def _sums(residual: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ residual², Σ rows²) as two 0-d tensors."""
    flat = residual.view(-1)
    rows_flat = rows.reshape(-1)
    return torch.dot(flat, flat), torch.dot(rows_flat, rows_flat)


def _images_gradient(layout: ImageLayout, residual: torch.Tensor, rows: torch.Tensor,
                     lie_factor: float | torch.Tensor, norm_factor: float | torch.Tensor
                     ) -> tuple[torch.Tensor, ...]:
    """The images' gradients (one per layer) of lie_factor / 2 · Σ residual² + norm_factor / 2
    · Σ rows²: lie_factor · residual on the image blocks, minus it (through the output
    action's entries) on the blocks it reads, norm_factor · rows on the identity blocks; one
    scatter-add of their concatenation (and one per further entry of a weighted action)."""
    index, extra, weights = layout.tensors(residual.device, residual.dtype)
    m = residual.shape[0]
    scaled = residual * lie_factor
    back = scaled.neg() if weights is None else scaled * -weights[0]
    parts = torch.cat((scaled, back, rows * norm_factor), 1)
    grad_z = torch.zeros(m, sum(layout.widths), dtype=parts.dtype, device=parts.device)
    grad_z.scatter_add_(1, index.expand(m, -1), parts)
    for j in range(extra.shape[0]):
        grad_z.scatter_add_(1, extra[j].expand(m, -1), scaled * -weights[j + 1])
    if len(layout.widths) == 1:
        return (grad_z,)
    return torch.split_with_sizes(grad_z, layout.widths, 1)


class _ImageSquares(torch.autograd.Function):
    """(lie², norm²) summed over layers, from their images z; see :func:`image_squares`."""

    @staticmethod
    def forward(ctx, layout: ImageLayout, stacks: tuple[StackedMatrixMap, ...],
                *zs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.layout, ctx.stacks = layout, stacks
        ctx.save_for_backward(*zs)
        if not layout.indexed:  # dense output actions: layer by layer
            lie, norm = _plain(stacks, zs)
            return lie, norm
        ctx.residual, ctx.rows = _residual_and_rows(layout, zs)
        return _sums(ctx.residual, ctx.rows)

    @staticmethod
    def backward(ctx, grad_lie: torch.Tensor, grad_norm: torch.Tensor):
        layout = ctx.layout
        zs = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: the gradients of the same sums in ordinary operations, so that
            # they can be differentiated again
            lie, norm = _plain(ctx.stacks, zs)
            grads = torch.autograd.grad((lie, norm), zs, (grad_lie, grad_norm),
                                        create_graph=True)
            return (None, None, *grads)
        if not layout.indexed:  # dense output actions: autograd of the plain sums
            with torch.enable_grad():
                inputs = [z.detach().requires_grad_() for z in zs]
                lie, norm = _plain(ctx.stacks, inputs)
            return (None, None, *torch.autograd.grad((lie, norm), inputs,
                                                     (grad_lie, grad_norm)))
        # d/dz of g Σ residual² + g' Σ rows²
        return (None, None, *_images_gradient(layout, ctx.residual, ctx.rows, 2.0 * grad_lie,
                                              2.0 * grad_norm))


def _root_derivative(weight: float, root: float) -> float:
    """d/ds of weight · sqrt(s + ε) at root = sqrt(s + ε), times 2 (the factor of
    :func:`_images_gradient`): weight / root (0 for weight 0; infinite at root 0, as the
    derivative of a square root at 0 is)."""
    if weight == 0.0:
        return 0.0
    return weight / root if root > 0.0 else math.inf


class _ImagePenalty(torch.autograd.Function):
    """lie_weight · sqrt(f lie² + ε) + norm_weight · sqrt(f norm² + ε) from the layers' images;
    see :func:`image_penalty`."""

    @staticmethod
    def forward(ctx, layout: ImageLayout, stacks: tuple[StackedMatrixMap, ...],
                lie_weight: float, norm_weight: float, epsilon: float, factor: float,
                *zs: torch.Tensor) -> torch.Tensor:
        residual, rows = _residual_and_rows(layout, zs)
        lie, norm = _sums(residual, rows)
        # the roots in Python floats (float64): no operations on 0-d tensors
        root_lie = math.sqrt(float(lie) * factor + epsilon)
        root_norm = math.sqrt(float(norm) * factor + epsilon)
        ctx.layout, ctx.stacks, ctx.residual, ctx.rows = layout, stacks, residual, rows
        ctx.constants = (lie_weight, norm_weight, epsilon, factor)
        ctx.factors = (_root_derivative(lie_weight * factor, root_lie),
                       _root_derivative(norm_weight * factor, root_norm))
        ctx.save_for_backward(*zs)
        return torch.scalar_tensor(lie_weight * root_lie + norm_weight * root_norm,
                                   dtype=residual.dtype, device=residual.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if torch.is_grad_enabled():
            # create_graph=True: the same gradient from ordinary operations on the images
            zs = ctx.saved_tensors
            lie_weight, norm_weight, epsilon, factor = ctx.constants
            lie, norm = _plain(ctx.stacks, zs)
            value = (lie_weight * torch.sqrt(lie * factor + epsilon)
                     + norm_weight * torch.sqrt(norm * factor + epsilon))
            grads = torch.autograd.grad(value, zs, grad, create_graph=True)
            return (None,) * 6 + tuple(grads)
        g = float(grad)
        lie_factor, norm_factor = ctx.factors
        return (None,) * 6 + _images_gradient(ctx.layout, ctx.residual, ctx.rows,
                                              g * lie_factor, g * norm_factor)


def _plain(stacks: Sequence[StackedMatrixMap], zs: Sequence[torch.Tensor]
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The two sums in ordinary operations, layer by layer."""
    lie = norm = None
    for stack, z in zip(stacks, zs):
        d = stack.apply.shape[1]
        residual = z[:, d:] - stack.apply(z[:, :d])
        a, b = residual.pow(2).sum(), z[:, :d].pow(2).sum()
        lie, norm = (a, b) if lie is None else (lie + a, norm + b)
    return lie, norm  # type: ignore[return-value]


def image_squares(zs: Sequence[torch.Tensor], stacks: Sequence[StackedMatrixMap]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ_l Σ_k ||z_l,k − B_l,k z_l,0||², Σ_l ||z_l,0||²)`` in one autograd node.

    ``zs``: each layer's images z (m, (K + 1) d_out), the block of its rows W x̂ first, then
    the blocks W A_k x̂ (as :func:`~equirelax.relaxation.fused.relaxed_linear_images` gives
    them); ``stacks``: each layer's output action (``FeatureAction.prepare(shape)``: K maps of
    d_out features). Every z must have the same number of rows, dtype and device. The values
    and gradients are those of the plain expression; with ``create_graph=True`` the backward
    evaluates it in ordinary operations.
    """
    _check_images(zs, stacks)
    return squares_of_images(zs, stacks)


def _check_images(zs: Sequence[torch.Tensor], stacks: Sequence[StackedMatrixMap]) -> None:
    """Refuse images and output actions that do not pair up, or images of other shapes,
    numbers of rows, dtypes or devices than their first."""
    if len(zs) != len(stacks) or not zs:
        raise ValueError(f"image_squares takes one output action per layer, got {len(zs)} "
                         f"images and {len(stacks)} actions")
    rows = zs[0].shape[0]
    for z, stack in zip(zs, stacks):
        width = (stack.k + 1) * stack.apply.shape[1]
        if z.dim() != 2 or z.shape[1] != width:
            raise ValueError(f"expected images of shape (m, {width}) for an output action of "
                             f"{stack.k} maps on {stack.apply.shape[1]} features, got "
                             f"{tuple(z.shape)}")
        if z.shape[0] != rows or z.dtype != zs[0].dtype or z.device != zs[0].device:
            raise ValueError("image_squares takes images of one number of rows, dtype and "
                             f"device, got {tuple(zs[0].shape)} {zs[0].dtype} {zs[0].device} "
                             f"and {tuple(z.shape)} {z.dtype} {z.device}")


def squares_of_images(zs: Sequence[torch.Tensor], stacks: Sequence[StackedMatrixMap]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`image_squares` without checking its arguments (for callers that built them)."""
    stacks = tuple(stacks)
    return _ImageSquares.apply(ImageLayout.of(stacks), stacks, *zs)


def image_penalty(zs: Sequence[torch.Tensor], stacks: Sequence[StackedMatrixMap],
                  lie_weight: float, norm_weight: float, epsilon: float, factor: float = 1.0
                  ) -> torch.Tensor:
    """``lie_weight · sqrt(f · lie² + ε) + norm_weight · sqrt(f · norm² + ε)`` (0-d) for the
    sums lie², norm² of :func:`image_squares` and the rows' factor f, in one autograd node.

    What a relaxed model's penalty is when all its squares come from fused layers' images
    (:meth:`~equirelax.relaxation.RelaxedModel.penalty`). The arguments are those of
    :func:`image_squares`, whose conditions they meet; every output action must be read by
    gathers (:func:`indexable`), and the images must be on the CPU: the sums are read as
    Python floats (float64), which on an accelerator would wait for it. Values and gradients
    are those of the plain expression; with ``create_graph=True`` the backward evaluates it in
    ordinary operations.
    """
    _check_images(zs, stacks)
    if not all(indexable(stack) for stack in stacks):
        raise ValueError("image_penalty reads output actions by gathers; an action given as a "
                         "dense matrix with more than "
                         f"{MAX_TERMS} entries per row is not (use image_squares)")
    if zs[0].device.type != "cpu":
        raise ValueError(f"image_penalty takes images on the CPU, got {zs[0].device}")
    for name, value in (("lie_weight", lie_weight), ("norm_weight", norm_weight),
                        ("epsilon", epsilon), ("factor", factor)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return penalty_of_images(zs, stacks, lie_weight, norm_weight, epsilon, factor)


def penalty_of_images(zs: Sequence[torch.Tensor], stacks: Sequence[StackedMatrixMap],
                      lie_weight: float, norm_weight: float, epsilon: float,
                      factor: float = 1.0) -> torch.Tensor:
    """:func:`image_penalty` without checking its arguments (for callers that built them)."""
    stacks = tuple(stacks)
    return _ImagePenalty.apply(ImageLayout.of(stacks), stacks, float(lie_weight),
                               float(norm_weight), float(epsilon), float(factor), *zs)
