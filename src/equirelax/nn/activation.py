"""Nonlinearities that keep equivariance: pointwise (permutation reps only) and norm-based."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from equirelax.groups.permutation import point_orbits
from equirelax.nn.module import EquivariantModule, check_features
from equirelax.reps.base import Rep
from equirelax.reps.catalogue import trivial


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,
    "softplus": nn.functional.softplus,
    "leaky_relu": nn.functional.leaky_relu,
    "elu": nn.functional.elu,
    "identity": _identity,  # a named function, not a lambda: modules holding it pickle
}


def activation_function(name: str | Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    """Look up a pointwise activation by name (or pass a callable through)."""
    if callable(name):
        return name
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class PointwiseActivation(EquivariantModule):
    """σ applied entrywise. Equivariant only when ``rep`` permutes coordinates, so other reps are
    refused: use :class:`NormActivation` for them."""

    relaxable = False  # no weights: constraint relaxation leaves it alone

    def __init__(self, rep: Rep, activation: str | Callable = "relu") -> None:
        super().__init__()
        if not rep.is_permutation:
            raise ValueError(
                f"a pointwise activation ({activation!r}) is only equivariant on a permutation "
                f"representation, but {rep!r} is not one; use NormActivation (or a gated "
                "nonlinearity) for non-permutation representations"
            )
        self.rep_in = self.rep_out = rep
        fallback = getattr(activation, "__name__", "f")
        self.name = activation if isinstance(activation, str) else fallback
        self.fn = activation_function(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.rep_in, type(self).__name__)
        return self.fn(x)

    def extra_repr(self) -> str:
        return f"{self.name} on {self.rep_in!r}"


class NormActivation(EquivariantModule):
    """x_i ↦ x_i · σ(||x_i|| + b_i) / ||x_i|| on each summand i of an orthogonal rep.

    The norm of each summand is invariant, so the gate is invariant and the map is equivariant
    for any orthogonal representation (1-d summands are gated by their absolute value, which
    keeps sign representations equivariant too).
    """

    relaxable = False

    def __init__(self, rep: Rep, activation: str | Callable = "relu", eps: float = 1e-8) -> None:
        super().__init__()
        self.rep_in = self.rep_out = rep
        sizes = [p.dim for p in rep.parts]
        index = np.repeat(np.arange(len(sizes)), sizes)
        self.register_buffer("segment", torch.from_numpy(index), persistent=False)
        self.n_parts = len(sizes)
        self.bias = nn.Parameter(torch.zeros(len(sizes)))
        self.fn = activation_function(activation)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.rep_in, type(self).__name__)
        sq = torch.zeros(*x.shape[:-1], self.n_parts, dtype=x.dtype, device=x.device)
        sq = sq.index_add(-1, self.segment, x * x)
        norm = torch.sqrt(sq + self.eps)
        gate = self.fn(norm + self.bias.to(x.dtype)) / norm
        return x * gate[..., self.segment]


class InvariantPool(EquivariantModule):
    """Mean over each orbit of a permutation rep: an invariant vector, one entry per orbit."""

    relaxable = False

    def __init__(self, rep: Rep) -> None:
        super().__init__()
        if not rep.is_permutation:
            raise ValueError(f"InvariantPool needs a permutation representation, got {rep!r}")
        inverse = point_orbits(rep.images, rep.dim)  # type: ignore[attr-defined]
        counts = np.bincount(inverse)
        self.register_buffer("orbit", torch.from_numpy(inverse), persistent=False)
        self.register_buffer("counts", torch.from_numpy(counts), persistent=False)
        self.rep_in = rep
        self.rep_out = len(counts) * trivial(rep.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.rep_in, type(self).__name__)
        out = torch.zeros(*x.shape[:-1], self.counts.shape[0], dtype=x.dtype, device=x.device)
        return out.index_add(-1, self.orbit, x) / self.counts.to(x.dtype)
