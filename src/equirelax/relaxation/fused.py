"""A relaxed dense layer's training forward as one autograd node, and one sketch per step.

A relaxed dense layer in training computes y = x (W_eq + θ W)ᵀ + b and, on a few detached rows
x̂ (a sketch SᵀX, sampled rows, or all of them), the penalty squares Σ_k ||W A_k x̂ − B_k W x̂||²
and ||W x̂||². Written as separate operations, autograd records the sum W_eq + θ W (whose
backward scales the gradient by θ), the linear map, and the penalties' node, and then adds the
two gradients W receives (from y and from the penalties) in one more pass over d_out × d_in.
On the small layers of an MLP those operations, not their arithmetic, are what the relaxed step
pays over the exact one.

:func:`relaxed_linear_images` computes the output and z = W on the rows and their images,
[W x̂, W A_1 x̂, ..., W A_K x̂], in one node; the squares are read from z by
:func:`~equirelax.relaxation.image_squares.image_squares`, which a relaxed model runs once for
all its layers (the gathers, subtractions and dot products of the squares then no longer
repeat per layer). The node's backward gets the output's gradient g and z's gradient E
together, so

* grad x = g (W_eq + θ W) (the summed weight saved by the forward),
* grad W_eq = G = gᵀ x, grad b = Σ_rows g,
* grad W = θ G + Eᵀ · images: one ``addmm``.

:func:`relaxed_linear` is that node followed by the squares of its one layer.

The residuals are taken on the p sketched rows, ρ_out(g)(W Z) − W(ρ_in(g) Z) for Z = Sᵀx: the
generators act on p × d rows (gathers), never on the d_out × d_in weight. With a sketch the
node also forms Z itself, from the input it already holds, so no detached copy or reshape of
the input is recorded around it.

For an :class:`~equirelax.nn.EquivariantLinear` the node takes the layer's coefficients instead
of its dense weight and bias, with their gathers (:mod:`relaxation.expansion`): it forms
W_eq + θ W as one gather and one in-place add, and the coefficients' gradient from G by the
gather's adjoint (a scatter-add), so neither the hom space's weight construction nor its
backward (an einsum and a scatter per Schur block on SO(3)/O(3) irreps) runs in a training step.
:func:`relaxed_affine` is the same node without penalties, for a layer whose penalties are off
or recorded apart (there W's gradient is θ G, scaled in place).

:func:`sketch_signs` shares one random sign matrix S between the layers of a step that sketch
the same number of rows, so it is drawn (and scaled) once per step instead of once per layer;
it is drawn as Sᵀ (p × m, contiguous), the operand the products take.

The penalties' products on a sketch are small (p (K + 1) rows). Under
``OMP_WAIT_POLICY=PASSIVE`` OpenMP's idle threads sleep, and waking them for a parallel region
costs more than a small product gains from them: the node then runs its penalty products on
the calling thread (see :func:`penalty_threads`). With threads that spin between regions (the
default policy) the measured training steps moved both ways with it, and the rule is off.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading

import torch
from torch.autograd.function import FunctionCtx

from equirelax.relaxation.actions import StackedMatrixMap
from equirelax.relaxation.expansion import CoefficientGather
from equirelax.relaxation.image_squares import image_squares

#: How the node builds W_eq and the bias from coefficients: their gathers (weight, bias or None)
Expansion = tuple[CoefficientGather, CoefficientGather | None]

#: Penalty products below this many multiply-adds run on the calling thread where the rule is on
#: (``benchmarks/bench_penalty_threads.py`` times the training steps at several thresholds).
ONE_THREAD_BELOW_MACS = 10_000_000

#: Whether the fused node runs its small penalty products on one thread: on where OpenMP's idle
#: threads sleep (``OMP_WAIT_POLICY=PASSIVE``, read once at import, as OpenMP does); set it to
#: turn the rule on or off.
ONE_THREAD_PENALTIES = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def penalty_threads(device: torch.device, macs: int, enabled: bool | None = None) -> int | None:
    """The thread count torch had, when the penalty products of ``macs`` multiply-adds should
    run on one thread instead (None: leave the thread count alone).

    One thread is chosen only on the CPU, with more than one thread, for products below
    :data:`ONE_THREAD_BELOW_MACS`, and while the rule is ``enabled`` (default:
    :data:`ONE_THREAD_PENALTIES`, on under ``OMP_WAIT_POLICY=PASSIVE``). There waking a
    sleeping thread for each small product cost more than the thread saved; with spinning
    threads (the default policy) the all-relaxed MLPs' sketched steps moved both ways with the
    rule (``benchmarks/results/penalty_threads.md``).
    """
    if enabled is None:
        enabled = ONE_THREAD_PENALTIES
    if not enabled or device.type != "cpu" or macs >= ONE_THREAD_BELOW_MACS:
        return None
    threads = torch.get_num_threads()
    return threads if threads > 1 else None


class _PenaltyThreads:
    """``with _PenaltyThreads(device, macs):`` runs its body on one thread where
    :func:`penalty_threads` says so, and restores torch's thread count after it (also on an
    error); elsewhere it does nothing."""

    __slots__ = ("threads",)

    def __init__(self, device: torch.device, macs: int) -> None:
        self.threads = penalty_threads(device, macs)

    def __enter__(self) -> None:
        if self.threads is not None:
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)


#: What the node's ``with`` takes while the one-thread rule is off: nothing to do (and no
#: thread count to look up) around every penalty product
_SAME_THREADS = contextlib.nullcontext()


def _penalty_context(device: torch.device, macs: int
                     ) -> _PenaltyThreads | contextlib.nullcontext:
    """What the node runs its penalty products of ``macs`` multiply-adds in: on one thread
    where :func:`penalty_threads` says so; while the rule is off, a shared context that does
    nothing (the size of the products is then not looked at)."""
    return _PenaltyThreads(device, macs) if ONE_THREAD_PENALTIES else _SAME_THREADS


def _sketched(x: torch.Tensor, sketch: torch.Tensor) -> torch.Tensor:
    """The sketched rows Sᵀx of a layer input x (..., d_in), without gradient: (p, d_in)."""
    flat = x.detach().reshape(-1, x.shape[-1])
    return torch.mm(sketch.T, flat)


#: For |θ| below this the weight gradient G = gᵀx is formed as it is and scaled for W
#: afterwards; from it on, the product forms θ·G directly (see :func:`_weight_gradient`).
PRESCALE_MIN_THETA = 1e-6


def _weight_gradient(g: torch.Tensor, x: torch.Tensor, theta: float, gather: CoefficientGather,
                     coefficients: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """(θ·G or G, the coefficients' gradient (None unless ``coefficients``), whether the first
    is θ·G) for G = gᵀx, the gradient of W_eq + θ W.

    For |θ| ≥ :data:`PRESCALE_MIN_THETA` the product forms θ·G (the scale rides in the matmul's
    alpha) and the coefficients' gradient is the gather's adjoint of θ·G divided by θ (a
    vector of the coefficients' size): W's gradient then needs no scaling pass over
    d_out × d_in, neither alone nor inside a later ``addmm`` (whose β ∉ {0, 1} is one more
    pass over its output). Smaller θ would lose G's digits below θ·G's range, and θ = 0 has
    no inverse: there G is formed as it is."""
    d_out, d_in = g.shape[1], x.shape[1]
    if abs(theta) >= PRESCALE_MIN_THETA:
        scaled = torch.empty(d_out, d_in, dtype=g.dtype, device=g.device).addmm_(
            g.T, x, beta=0.0, alpha=theta)
        return scaled, gather.adjoint(scaled).div_(theta) if coefficients else None, True
    gram = torch.mm(g.T, x)
    return gram, gather.adjoint(gram) if coefficients else None, False


def _plain(x: torch.Tensor, w_eq: torch.Tensor, bias: torch.Tensor | None, w_free: torch.Tensor,
           theta: float, rows: torch.Tensor | None, stack_in: StackedMatrixMap,
           sketch: torch.Tensor | None = None, expansion: Expansion | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same two outputs with ordinary differentiable operations (the reference, and the
    backward used when a second derivative is asked for)."""
    if expansion is not None:  # w_eq and bias are coefficients
        w_eq = expansion[0].expand(w_eq).view(w_free.shape)
        bias = None if bias is None else expansion[1].expand(bias)  # type: ignore[union-attr]
    y = torch.nn.functional.linear(x, w_eq + theta * w_free, bias)
    if sketch is not None:
        rows = _sketched(x, sketch)
    images = stack_in.apply(rows)  # (m, (K + 1) d_in)
    z = (images.view(-1, w_free.shape[1]) @ w_free.T).view(images.shape[0], -1)
    return y, z


class _RelaxedLinearImages(torch.autograd.Function):
    """(y, z) of a relaxed dense layer; see :func:`relaxed_linear_images`."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, w_eq: torch.Tensor,
                bias: torch.Tensor | None, w_free: torch.Tensor, theta: float,
                rows: torch.Tensor | None, stack_in: StackedMatrixMap,
                sketch: torch.Tensor | None, expansion: Expansion | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        d_out, d_in = w_free.shape
        dense_bias = bias
        if expansion is None:
            w = torch.add(w_eq, w_free, alpha=theta)
        else:  # W_eq(c) + θ W: one gather of the coefficients, added in place
            w = expansion[0].expand_add(w_eq, w_free, theta).view(d_out, d_in)
            if bias is not None:
                dense_bias = expansion[1].expand_add(bias)  # type: ignore[union-attr]
        flat_x = x if x.dim() == 2 else x.reshape(-1, d_in)
        y = (torch.mm(flat_x, w.T) if bias is None else torch.addmm(dense_bias, flat_x, w.T))
        m = sketch.shape[1] if sketch is not None else rows.shape[0]
        # the penalty products' size: W on the rows and their K images (as in the backward)
        with _penalty_context(x.device, m * stack_in.k * d_in * d_out):
            if sketch is not None:  # the rows Sᵀx: S (m, p) is a transposed view, Sᵀ contiguous
                rows = torch.mm(sketch.T, flat_x)
            # 2-D throughout (fewer view operations): each row, then its K images, side by side
            images = stack_in.apply(rows)  # (m, (K + 1) d_in)
            z = torch.mm(images.view(-1, d_in), w_free.T).view(m, -1)  # (m, (K + 1) d_out)
        ctx.theta = theta
        ctx.stack_in = stack_in
        ctx.has_bias = bias is not None
        ctx.expansion = expansion
        ctx.save_for_backward(x, w_eq, bias, w_free, rows, w, images)
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], d_out), z

    @staticmethod
    def backward(ctx: FunctionCtx, grad_y: torch.Tensor, grad_z: torch.Tensor):
        x, w_eq, bias, w_free, rows, w, images = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():
            # create_graph=True: the gradients must themselves be differentiable; take them
            # from the same expression in ordinary operations
            inputs = [t for t, n in zip((x, w_eq, bias, w_free), needs[:4]) if n]
            outputs = _plain(x, w_eq, bias, w_free, ctx.theta, rows, ctx.stack_in, None,
                             ctx.expansion)
            found = iter(torch.autograd.grad(outputs, inputs, (grad_y, grad_z),
                                             create_graph=True, allow_unused=True))
            return (*(next(found) if n else None for n in needs[:4]),
                    None, None, None, None, None)
        d_out, d_in = w.shape
        flat = x.dim() == 2  # else: leading axes, flattened here and restored on grad x
        g = grad_y if flat else grad_y.reshape(-1, d_out)
        grad_x = None
        if needs[0]:
            grad_x = torch.mm(g, w) if flat else torch.mm(g, w).reshape(x.shape)
        grad_w_eq = grad_w_free = None
        scaled = False  # whether gram is θ G (formed so by the product)
        if needs[1] or needs[3]:
            # G = gᵀ x, the gradient of W_eq + θ W
            flat_x = x if flat else x.reshape(-1, d_in)
            if ctx.expansion is None:
                gram = torch.mm(g.T, flat_x)
                grad_w_eq = gram if needs[1] else None
            else:
                gram, grad_w_eq, scaled = _weight_gradient(g, flat_x, ctx.theta,
                                                           ctx.expansion[0], needs[1])
        if needs[3]:
            # θ G + (d/dz)ᵀ images in one pass (beta = 0 ignores G: θ = 0 gives the second
            # term); into G itself when G is not W_eq's gradient (the gather's adjoint has
            # read it)
            with _penalty_context(w.device, images.numel() * d_out):
                flat_z = grad_z.reshape(-1, d_out)
                grad_w_free = (torch.addmm(gram, flat_z.T, images.view(-1, d_in),
                                           beta=ctx.theta) if ctx.expansion is None
                               else gram.addmm_(flat_z.T, images.view(-1, d_in),
                                                beta=1.0 if scaled else ctx.theta))
        grad_b = None
        if needs[2] and ctx.has_bias:
            grad_b = g.sum(0)
            if ctx.expansion is not None:
                grad_b = ctx.expansion[1].adjoint(grad_b)
        return grad_x, grad_w_eq, grad_b, grad_w_free, None, None, None, None, None


def _check_node_inputs(rows: torch.Tensor | None, sketch: torch.Tensor | None,
                       bias: torch.Tensor | None, expansion: Expansion | None) -> None:
    if (rows is None) == (sketch is None):
        raise ValueError("relaxed_linear takes either rows or a sketch, got "
                         f"{'both' if rows is not None else 'neither'}")
    if rows is not None and rows.requires_grad:
        raise ValueError("relaxed_linear takes rows without gradient (detach them)")
    if sketch is not None and sketch.requires_grad:
        raise ValueError("relaxed_linear takes a sketch without gradient (detach it)")
    if expansion is not None and (bias is None) != (expansion[1] is None):
        raise ValueError("relaxed_linear needs bias coefficients exactly when the expansion has "
                         f"a bias gather, got bias={'None' if bias is None else 'a tensor'} and "
                         f"a bias gather {'None' if expansion[1] is None else 'given'}")


def relaxed_linear_images(x: torch.Tensor, w_eq: torch.Tensor, bias: torch.Tensor | None,
                          w_free: torch.Tensor, theta: float, rows: torch.Tensor | None,
                          stack_in: StackedMatrixMap, sketch: torch.Tensor | None = None,
                          expansion: Expansion | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (W_eq + θ W)ᵀ + b, z)`` in one autograd node, z = W on the penalty rows x̂ and
    their images: (m, (K + 1) d_out), each row's block W x̂ then its blocks W A_k x̂.

    ``x`` (..., d_in): the layer's input; ``w_eq`` (d_out, d_in), ``bias`` (d_out,) or None:
    the equivariant layer's dense weight and bias; ``w_free``: the free weight W; ``rows``
    (m, d_in): the detached rows x̂ the penalties are evaluated on, or None with ``sketch``, an
    (n, p) sign matrix S for the n rows of x: then the rows are Sᵀx (formed inside the node,
    with no autograd bookkeeping for them); ``stack_in`` maps rows to (m, (K + 1) d_in), the
    rows and their K images (identity first). With ``expansion`` (the gathers of the layer's
    weight and bias, see :mod:`relaxation.expansion`), ``w_eq`` and ``bias`` are the layer's
    coefficients and bias coefficients instead, expanded inside the node (W_eq is never formed
    apart from the sum W_eq + θ W) and given their gradients by the gathers' adjoints.

    The penalty squares are then read from z (:func:`~equirelax.relaxation.image_squares.
    image_squares`, for several layers at once). Every tensor must have one dtype. The values
    and gradients are those of the plain expression (:func:`_plain`); the backward runs in
    closed form, W's two gradients (through y and through z) formed in one ``addmm``. With
    ``create_graph=True`` the backward evaluates the plain expression instead, so second
    derivatives are those of ordinary operations. Callers keep compiled code and ``torch.func``
    transforms on the plain operations (a Function with a Python backward breaks a compiled
    graph and has no batching rule).
    """
    _check_node_inputs(rows, sketch, bias, expansion)
    return linear_images(x, w_eq, bias, w_free, float(theta), rows, stack_in, sketch,
                         expansion)


def linear_images(x: torch.Tensor, w_eq: torch.Tensor, bias: torch.Tensor | None,
                  w_free: torch.Tensor, theta: float, rows: torch.Tensor | None,
                  stack_in: StackedMatrixMap, sketch: torch.Tensor | None = None,
                  expansion: Expansion | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`relaxed_linear_images` without checking its arguments, θ a float (for a relaxed
    layer, which builds them itself at every training forward)."""
    return _RelaxedLinearImages.apply(x, w_eq, bias, w_free, theta, rows, stack_in, sketch,
                                      expansion)


def relaxed_linear(x: torch.Tensor, w_eq: torch.Tensor, bias: torch.Tensor | None,
                   w_free: torch.Tensor, theta: float, rows: torch.Tensor | None,
                   stack_in: StackedMatrixMap, stack_out: StackedMatrixMap,
                   sketch: torch.Tensor | None = None, expansion: Expansion | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x (W_eq + θ W)ᵀ + b, Σ_k ||W A_k x̂ − B_k W x̂||², Σ ||W x̂||²)`` of one layer: its
    output and W on the penalty rows by :func:`relaxed_linear_images`, then the penalty
    squares by :func:`~equirelax.relaxation.image_squares.image_squares`; ``stack_out`` maps
    outputs to their K images. The arguments are those of :func:`relaxed_linear_images`."""
    y, z = relaxed_linear_images(x, w_eq, bias, w_free, theta, rows, stack_in, sketch,
                                 expansion)
    lie, norm = image_squares((z,), (stack_out,))
    return y, lie, norm


class _RelaxedAffine(torch.autograd.Function):
    """x (W_eq(c) + θ W)ᵀ + b(c_b) of a relaxed layer whose penalties are not in its node;
    see :func:`relaxed_affine`."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, coefficients: torch.Tensor,
                bias_coefficients: torch.Tensor | None, w_free: torch.Tensor, theta: float,
                expansion: Expansion) -> torch.Tensor:
        d_out, d_in = w_free.shape
        w = expansion[0].expand_add(coefficients, w_free, theta).view(d_out, d_in)
        flat_x = x if x.dim() == 2 else x.reshape(-1, d_in)
        if bias_coefficients is None:
            y = torch.mm(flat_x, w.T)
        else:
            y = torch.addmm(expansion[1].expand_add(bias_coefficients),  # type: ignore[union-attr]
                            flat_x, w.T)
        ctx.theta, ctx.expansion = theta, expansion
        ctx.has_bias = bias_coefficients is not None
        ctx.save_for_backward(x, coefficients, bias_coefficients, w_free, w)
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], d_out)

    @staticmethod
    def backward(ctx: FunctionCtx, grad_y: torch.Tensor):
        x, coefficients, bias_coefficients, w_free, w = ctx.saved_tensors
        needs = ctx.needs_input_grad
        expansion = ctx.expansion
        if torch.is_grad_enabled():  # create_graph=True: the plain expression's gradients
            inputs = [t for t, n in zip((x, coefficients, bias_coefficients, w_free), needs[:4])
                      if n]
            b = (None if bias_coefficients is None
                 else expansion[1].expand(bias_coefficients))
            w_eq = expansion[0].expand(coefficients).view(w_free.shape)
            y = torch.nn.functional.linear(x, w_eq + ctx.theta * w_free, b)
            found = iter(torch.autograd.grad(y, inputs, grad_y, create_graph=True,
                                             allow_unused=True))
            return (*(next(found) if n else None for n in needs[:4]), None, None)
        d_out, d_in = w.shape
        flat = x.dim() == 2
        g = grad_y if flat else grad_y.reshape(-1, d_out)
        grad_x = grad_c = grad_w_free = grad_b = None
        if needs[0]:
            grad_x = torch.mm(g, w) if flat else torch.mm(g, w).reshape(x.shape)
        if needs[1] or needs[3]:
            gram, grad_c, scaled = _weight_gradient(
                g, x if flat else x.reshape(-1, d_in), ctx.theta, expansion[0], needs[1])
            if needs[3]:  # θ G (in place when the product did not form it: the adjoint has
                # read G)
                grad_w_free = gram if scaled else gram.mul_(ctx.theta)
        if needs[2] and ctx.has_bias:
            grad_b = expansion[1].adjoint(g.sum(0))
        return grad_x, grad_c, grad_b, grad_w_free, None, None


def relaxed_affine(x: torch.Tensor, coefficients: torch.Tensor,
                   bias_coefficients: torch.Tensor | None, w_free: torch.Tensor, theta: float,
                   expansion: Expansion) -> torch.Tensor:
    """``x (W_eq + θ W)ᵀ + b`` in one autograd node, for W_eq and b given by their
    coefficients and gathers (``expansion``, see :mod:`relaxation.expansion`): the output of a
    relaxed layer whose penalties are recorded apart (or not at all).

    Written as ordinary operations, the weight's gather, the sum with θ W and the product are
    three nodes, and W's gradient one more pass (θ G); here the backward forms W_eq's
    coefficient gradient from G by the gather's adjoint, then scales G into W's gradient in
    place. With ``create_graph=True`` the backward evaluates the plain expression.
    """
    if (bias_coefficients is None) != (expansion[1] is None):
        raise ValueError("relaxed_affine needs bias coefficients exactly when the expansion has "
                         "a bias gather, got bias coefficients "
                         f"{'None' if bias_coefficients is None else 'given'} and a bias gather "
                         f"{'None' if expansion[1] is None else 'given'}")
    return _RelaxedAffine.apply(x, coefficients, bias_coefficients, w_free, float(theta),
                                expansion)


class _Signs(threading.local):
    """The sign matrices of the current step, per thread: key -> (S, ids of its users)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple, tuple[torch.Tensor, set[int]]] = {}


_SIGNS = _Signs()


def sketch_signs(owner: object, m: int, p: int, dtype: torch.dtype, device: torch.device,
                 generator: torch.Generator | None) -> torch.Tensor:
    """An m × p matrix S of independent random signs ±1/√p (E[S Sᵀ] = I), shared by the layers
    of one step.

    The first layer of a step that sketches m rows to p draws S (from ``generator``, or
    torch's default generator); the other layers with the same m, p, dtype, device and
    generator use the same S, instead of drawing and scaling one each. Each layer's estimate
    stays unbiased: S is independent of that layer's rows, and E[S Sᵀ] = I holds for it as for
    a draw of its own (the layers' estimates are correlated with each other, which the
    expectation of their sum does not see). A layer never sees one S twice: when a layer
    (``owner``) comes back to an S it has used, that is a new step, and it draws a fresh one;
    :func:`new_step` (called as the penalties are taken) also starts afresh.
    """
    key = (m, p, dtype, device, None if generator is None else id(generator))
    entry = _SIGNS.by_key.get(key)
    me = id(owner)
    if entry is not None and me not in entry[1]:
        entry[1].add(me)
        return entry[0]
    signs = draw_signs(m, p, dtype, device, generator)
    _SIGNS.by_key[key] = (signs, {me})
    return signs


#: The constant −1/√p (p × m) that turns random bits into signs, per (p, m, dtype, device)
_OFFSETS: dict[tuple, torch.Tensor] = {}
#: How many such constants are kept before the cache starts afresh
MAX_OFFSETS = 64


def draw_signs(m: int, p: int, dtype: torch.dtype, device: torch.device,
               generator: torch.Generator | None) -> torch.Tensor:
    """A fresh m × p matrix of independent signs ±1/√p, as the transposed view of a
    contiguous p × m tensor, so that Sᵀx is a product of contiguous matrices.

    The same values as :func:`signs_from_bits` of the same bits (−1/√p + b · 2/√p is
    b · 2/√p − 1/√p to the last bit), in one operation after the draw instead of two: the
    constant −1/√p is kept per shape, dtype and device."""
    if generator is None:
        bits = torch.randint(0, 2, (p, m), device=device, dtype=dtype)
    else:
        bits = torch.randint(0, 2, (p, m), generator=generator, device=generator.device,
                             dtype=dtype).to(device)
    key = (p, m, dtype, device)
    offset = _OFFSETS.get(key)
    if offset is None:
        if len(_OFFSETS) >= MAX_OFFSETS:
            _OFFSETS.clear()
        offset = _OFFSETS[key] = torch.full((p, m), -1.0 / math.sqrt(p), dtype=dtype,
                                            device=device)
    return torch.add(offset, bits, alpha=2.0 / math.sqrt(p)).T


def signs_from_bits(bits: torch.Tensor, p: int) -> torch.Tensor:
    """The m × p signs ±1/√p of p × m random bits in {0, 1} (floating, overwritten): each bit b
    becomes (2b − 1)/√p in place, two ops on the p × m tensor, returned transposed."""
    return bits.mul_(2.0 / math.sqrt(p)).sub_(1.0 / math.sqrt(p)).T


def new_step() -> None:
    """Forget the shared sign matrices: the next sketching layer draws a fresh S."""
    if _SIGNS.by_key:
        _SIGNS.by_key.clear()
