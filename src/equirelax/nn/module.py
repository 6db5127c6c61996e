"""The equivariant-module protocol: what every equivariant layer and model of equirelax says
about itself, and the one input check they share.

A module is equivariant *with respect to* actions on its input and output; it states them as
representations, set once in ``__init__`` as plain attributes:

* single-input modules: ``rep_in`` and ``rep_out`` (:class:`~equirelax.reps.Rep`);
* multi-input modules (a steerable layer ``f(x, attr)``, an N-body model
  ``f(loc, vel, charges)``): ``reps_in``, one representation per tensor argument, acting on its
  last axis (as e3nn's ``assert_equivariant`` takes one type per argument), and ``rep_out``.
  A multi-input *layer* whose first argument is its feature (and the others conditioning held
  fixed) also sets ``rep_in = reps_in[0]``, which is what relaxation acts on.

Features that are not flat vectors say how the representation's flat index is laid out with
``feature_shapes`` (trailing input and output shapes, e.g. ``((C_in, 3), (C_out, 3))`` for
vector neurons; flat ``((rep_in.dim,), (rep_out.dim,))`` by default).

Relaxation (``equirelax.relax``) finds everything else it needs by duck typing, so a layer
takes part without importing it. Each hook is optional:

* ``relaxable = False``: never pick this module by itself (no weights, or not the layer a user
  relaxes);
* ``free_term(init_std, bias) -> nn.Module``: the layer's own unconstrained term W (e.g. a
  convolution), applied to the raw input; without it, a dense matrix on the flat features;
* ``relaxed_forward(x, free, theta)``: ``self(x) + theta * free(x)`` in one go;
* ``group_actions() -> {"in", "out", "lie_in", "lie_out"[, "matrices_in", "matrices_out"]}``:
  the generators and Lie algebra as maps on the raw input and output tensors (default: the
  representations' matrices on the flattened features);
* ``dense_map() -> (W, b)``: the dense ``(d_out, d_in)`` weight and bias of an affine layer
  (enables the fused relaxed forward and ``harden(mode="project")``);
* ``fold_equivariant(W, b)``: add an equivariant ``(W, b)`` into the layer's own parameters.

Layers we did not write (``torch.nn.Linear``, e3nn layers) get the same hooks through
``equirelax.relaxation.register``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from equirelax.reps.base import Rep

__all__ = ["Equivariant", "EquivariantModule", "check_features", "input_reps"]

Shape = Sequence[int | str | None]


@runtime_checkable
class Equivariant(Protocol):
    """Anything that declares the representations on its input and output (``rep_in`` and
    ``rep_out``); see the module docstring for multi-input modules (``reps_in``)."""

    rep_in: Rep
    rep_out: Rep


class EquivariantModule(nn.Module):
    """Base class of equirelax's equivariant layers and models.

    Subclasses set ``rep_in``/``rep_out`` (or ``reps_in``/``rep_out`` for several inputs) as
    plain attributes in ``__init__`` and validate their input with :func:`check_features`.
    Layers whose features are not flat vectors add a ``feature_shapes`` property; without it,
    or when it is None, the features are flat.
    """

    #: whether ``equirelax.relax`` may pick this module by itself
    relaxable: bool = True


def input_reps(module: object) -> tuple[Rep, ...]:
    """The representations a module declares on its inputs: ``reps_in``, or ``(rep_in,)``.

    Raises ``TypeError`` naming the module when it declares neither."""
    reps = getattr(module, "reps_in", None)
    if reps is None:
        rep = getattr(module, "rep_in", None)
        reps = (rep,) if rep is not None else None
    if reps is None or not all(isinstance(r, Rep) for r in reps):
        raise TypeError(f"{type(module).__name__} declares no input representations (rep_in or "
                        f"reps_in), got {reps!r}")
    return tuple(reps)


def _shape_text(shape: Sequence[int | str | None], leading: int | None) -> str:
    lead = ["..."] if leading is None else ["B"] * leading
    return "(" + ", ".join([*lead, *("?" if s is None else str(s) for s in shape)]) + ")"


def check_features(
    x: object,
    expected: Rep | Shape,
    where: str,
    *,
    leading: int | None = None,
    square: bool = False,
    floating: bool = False,
) -> None:
    """Fail early, naming the expected and received shapes, when ``x`` is not a tensor whose
    trailing axes are ``expected``.

    ``expected``: a representation (one trailing axis of its dim) or a trailing shape whose
    ``None`` or named (``"N"``) entries accept any size. ``leading``: the exact number of
    leading (batch) axes, or None for any number. ``square``: the last two axes must be equal
    (pixel grids). ``floating``: the dtype must be floating point.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where} expects a torch.Tensor, got {type(x).__name__}")
    rep = isinstance(expected, Rep)
    if rep and leading is None and not square:
        # the common case, on every forward of every layer: one comparison
        ok = x.dim() >= 1 and x.shape[-1] == expected.dim
        shape = (expected.dim,)
    else:
        shape = (expected.dim,) if rep else tuple(expected)
        axes = len(shape)
        ok = x.dim() >= axes + (leading or 0) and (leading is None or x.dim() == axes + leading)
        ok = ok and all(not isinstance(s, int) or x.shape[x.dim() - axes + i] == s
                        for i, s in enumerate(shape))
        ok = ok and (not square or x.shape[-1] == x.shape[-2])
    if not ok:
        what = f" for {expected!r}" if rep else ""  # a rep's repr is built only for the message
        raise ValueError(f"{where} expects inputs of shape {_shape_text(shape, leading)}{what}, "
                         f"got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{where} expects a floating-point tensor, got {x.dtype}")
