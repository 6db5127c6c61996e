"""Layers we did not write, taught to ``relax``: their actions, free term, dense weight, folding.

The relaxation machinery knows nothing about architectures. A module takes part because it
follows the equivariant-module protocol (:mod:`equirelax.nn.module`: it declares
``rep_in``/``rep_out`` and offers hooks such as ``dense_map``/``fold_equivariant`` as methods,
found by duck typing), or because its type was registered here with functions that say the same
from outside: ``torch.nn.Linear`` below, and the layers of optional libraries (e3nn's
``o3.Linear`` and tensor products), registered when the library is first seen loaded. equirelax's
own layers are never registered.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from equirelax.relaxation.actions import FeatureAction, pair_actions
from equirelax.reps.base import Rep


class FreeLinear(nn.Module):
    """The unconstrained term W x (+ b) on flattened features, initialised small and random."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        init_std: float = 1e-3,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * init_std)
        self.bias = nn.Parameter(torch.randn(out_features) * init_std) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


class FreeLowRank(nn.Module):
    """The unconstrained term W x (+ b) with W = U Vᵀ of rank ``rank``: (d_in + d_out) · rank
    parameters instead of d_in · d_out, for layers whose dense free term would not fit (a
    2-index set layer with n = 200 has d = 40,000). Entries of W start with std ``init_std``
    as those of :class:`FreeLinear`; W itself is never formed."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = False,
                 init_std: float = 1e-3) -> None:
        super().__init__()
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"the rank of a low-rank free term must be a positive integer, "
                             f"got {rank!r}")
        scale = math.sqrt(init_std / math.sqrt(rank))  # Var(Σ_r u v) = rank · scale⁴ = init_std²
        self.u = nn.Parameter(torch.randn(out_features, rank) * scale)
        self.v = nn.Parameter(torch.randn(in_features, rank) * scale)
        self.bias = nn.Parameter(torch.randn(out_features) * init_std) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x @ self.v) @ self.u.T
        return y + self.bias if self.bias is not None else y

    def weight_sq_norm(self) -> torch.Tensor:
        """||U Vᵀ||²_F = Σ (UᵀU) ∘ (VᵀV), without forming U Vᵀ."""
        return ((self.u.T @ self.u) * (self.v.T @ self.v)).sum()


@dataclass
class Registration:
    """How to relax one layer type. Every function takes the layer as its first argument.

    reps:   layer -> (rep_in, rep_out)                        (default: its attributes)
    shapes: layer -> (input feature shape, output feature shape) trailing axes (default flat)
    free:   (layer, rep_in, rep_out, init_std, bias) -> module computing W x
    actions: (layer, rep_in, rep_out) -> (input FeatureAction, output FeatureAction)
    dense:  layer -> (W, b) when the layer is the affine map x -> W x + b (enables the fused
            forward and ``harden(mode="project")``)
    fold:   (layer, W, b) -> None: add an equivariant (W, b) into the layer's own parameters
    by_default: whether ``relax(model)`` picks the type by itself (given ``reps``); False: only
            when ``layers=`` selects it (e.g. tensor products, where which input is the feature
            and which the attribute held fixed is the user's choice)
    """

    reps: Callable[[nn.Module], tuple[Rep, Rep]] | None = None
    shapes: Callable[[nn.Module], tuple[tuple[int, ...], tuple[int, ...]]] | None = None
    free: Callable[..., nn.Module] | None = None
    actions: Callable[..., tuple[FeatureAction, FeatureAction]] | None = None
    dense: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]] | None = None
    fold: Callable[[nn.Module, torch.Tensor, torch.Tensor | None], None] | None = None
    by_default: bool = True


_REGISTRY: dict[type, Registration] = {}

#: Layers of optional libraries, registered when the library is first seen loaded: the module
#: that must be in ``sys.modules``, and the "module:function" that registers its layers. Looking
#: them up this way keeps the library optional (nothing imports it) and needs no import order.
_DEFERRED: dict[str, str] = {
    "e3nn.o3": "equirelax.relaxation.e3nn_layers:register_e3nn_layers",
}


def register(
    layer_type: type,
    reps: Callable[[nn.Module], tuple[Rep, Rep]] | None = None,
    shapes: Callable[[nn.Module], tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
    free: Callable[..., nn.Module] | None = None,
    actions: Callable[..., tuple[FeatureAction, FeatureAction]] | None = None,
    dense: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]] | None = None,
    fold: Callable[[nn.Module, torch.Tensor, torch.Tensor | None], None] | None = None,
    *,
    by_default: bool = True,
    replace: bool = True,
) -> Registration:
    """Teach ``relax`` about a layer type (see :class:`Registration` for each function).

    ``replace=False`` keeps an existing registration of the type (and returns it).
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"register() needs an nn.Module subclass, got {layer_type!r}")
    if not replace and layer_type in _REGISTRY:
        return _REGISTRY[layer_type]
    entry = Registration(reps, shapes, free, actions, dense, fold, by_default)
    _REGISTRY[layer_type] = entry
    return entry


def _register_deferred() -> None:
    """Register the layers of every optional library in ``_DEFERRED`` that is loaded by now."""
    for needed, target in list(_DEFERRED.items()):
        if needed in sys.modules:
            del _DEFERRED[needed]
            module, _, function = target.partition(":")
            getattr(importlib.import_module(module), function)()


def registration(layer: nn.Module) -> Registration | None:
    """How to relax the layer: the registration of its type (or of its closest registered base
    class), else the affine hooks it offers itself (``dense_map``/``fold_equivariant``, see
    :mod:`equirelax.nn.module`) as a registration, else None."""
    if _DEFERRED:
        _register_deferred()
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    dense = getattr(type(layer), "dense_map", None)
    fold = getattr(type(layer), "fold_equivariant", None)
    if dense is None and fold is None:
        return None
    return Registration(dense=dense, fold=fold)


def declares_reps(layer: nn.Module) -> bool:
    """True when a module says what it acts on (``rep_in``/``rep_out``; for a multi-input layer
    ``rep_in`` is its feature argument's) and does not opt out of relaxation."""
    return (
        isinstance(getattr(layer, "rep_in", None), Rep)
        and isinstance(getattr(layer, "rep_out", None), Rep)
        and getattr(layer, "relaxable", True)
    )


def default_free(layer: nn.Module, rep_in: Rep, rep_out: Rep, init_std: float, bias: bool,
                 rank: int | None = None):
    """The default free term: a dense linear map on the flattened features, or of rank
    ``rank`` (:class:`FreeLowRank`) when given."""
    if rank is not None:
        return FreeLowRank(rep_in.dim, rep_out.dim, rank, bias=bias, init_std=init_std)
    return FreeLinear(rep_in.dim, rep_out.dim, bias=bias, init_std=init_std)


def default_actions(layer: nn.Module, rep_in: Rep, rep_out: Rep, shapes=None):
    """Actions of the reps' generators and Lie algebra on (possibly shaped) features."""
    shape_in, shape_out = shapes if shapes is not None else (None, None)
    return pair_actions(rep_in, rep_out, shape_in, shape_out)


def _fold_linear(layer: nn.Linear, w: torch.Tensor, b: torch.Tensor | None) -> None:
    with torch.no_grad():
        layer.weight.add_(w.to(layer.weight.dtype))
        if b is not None:
            if layer.bias is None:
                raise ValueError("cannot fold a bias into nn.Linear(bias=False)")
            layer.bias.add_(b.to(layer.bias.dtype))


# A torch.nn.Linear declares no actions, so relax() never picks one up by itself; wrapping one
# with Relaxed(layer, rep_in, rep_out) uses these hooks for the fused forward and folding.
def _dense_linear(layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    return layer.weight, layer.bias


register(nn.Linear, dense=_dense_linear, fold=_fold_linear)
