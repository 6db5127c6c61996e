"""EquivariantMLP: equivariant linear layers with nonlinearities between them."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from equirelax.nn.activation import NormActivation, PointwiseActivation
from equirelax.nn.linear import EquivariantLinear
from equirelax.nn.module import EquivariantModule, check_features
from equirelax.reps.base import Rep
from equirelax.reps.spec import as_reps, is_rep_spec


class EquivariantMLP(EquivariantModule):
    """rep_in -> hidden_reps[0] -> ... -> rep_out, each step an :class:`EquivariantLinear`.

    Hidden layers use a pointwise ``activation`` when their rep is a permutation rep (the common
    case: regular, quotient or trivial summands) and a :class:`NormActivation` otherwise, unless
    ``norm_activation=False``, in which case non-permutation hidden reps are refused. An invariant
    output (``rep_out`` trivial) makes the last layer an orbit-wise pooling: the weight of an
    equivariant map into trivial reps is constant on orbits.
    """

    def __init__(
        self,
        rep_in: Rep,
        hidden_reps: Sequence[Rep],
        rep_out: Rep,
        activation: str | Callable = "relu",
        bias: bool = True,
        norm_activation: bool = True,
    ) -> None:
        super().__init__()
        hidden_reps = [hidden_reps] if is_rep_spec(hidden_reps) else list(hidden_reps)
        # Reps, or e3nn irreps (strings, o3.Irreps) of O(3)
        rep_in, *hidden_reps, rep_out = as_reps(
            rep_in, *hidden_reps, rep_out, where="EquivariantMLP",
            names=["rep_in", *(f"hidden_reps[{i}]" for i in range(len(hidden_reps))), "rep_out"])
        self.rep_in, self.rep_out = rep_in, rep_out
        self.hidden_reps = list(hidden_reps)
        reps = [rep_in, *self.hidden_reps, rep_out]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(reps)):
            layers.append(EquivariantLinear(a, b, bias=bias))
            if i < len(reps) - 2:
                if b.is_permutation or not norm_activation:
                    layers.append(PointwiseActivation(b, activation))
                else:
                    layers.append(NormActivation(b, activation))
        self.layers = nn.Sequential(*layers)

    @property
    def linears(self) -> list[EquivariantLinear]:
        """The equivariant linear layers in order."""
        return [m for m in self.layers if isinstance(m, EquivariantLinear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.rep_in, type(self).__name__)
        return self.layers(x)
