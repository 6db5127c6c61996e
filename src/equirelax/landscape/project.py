"""Projecting a network back onto an equivariant slice: the original one, or the detected one.

After relaxation, the weights of a network that escaped a constrained critical point typically
satisfy a *different* hidden representation ρ' than the one it was built with (Xie & Smidt,
2025). Projecting onto the original slice E_ρ can then destroy the solution, while projecting
onto the detected slice E_ρ' keeps it. This module offers both projections on plain MLPs, reads
the effective plain MLP out of a relaxed EquivariantMLP, and registers the hardening mode
``"detected"`` of :func:`equirelax.relaxation.harden`: relax, then project onto the detected
representation. ``harden`` names this function in its table of modes and imports it when the
mode is asked for (no import side effect; relaxation never imports landscape at import time).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from equirelax.groups.permutation import PermutationGroup
from equirelax.landscape.detect import DEFAULT_TOL, HiddenRepDetection, detect_hidden_rep
from equirelax.landscape.slice import (
    EquivariantSubspace,
    MLPLayout,
    equivariant_mlp,
    read_mlp,
)
from equirelax.nn.activation import PointwiseActivation
from equirelax.nn.linear import EquivariantLinear
from equirelax.nn.mlp import EquivariantMLP
from equirelax.relaxation.registry import registration
from equirelax.relaxation.relaxed import Relaxed
from equirelax.relaxation.relaxed_model import RelaxedModel
from equirelax.reps.base import Rep


def project_onto(
    mlp: nn.Module, rep_in: Rep, hidden_reps: Sequence[Rep], rep_out: Rep
) -> nn.Sequential:
    """The orthogonal projection of a plain MLP's parameters onto E_ρ, as a plain MLP."""
    layout, theta = read_mlp(mlp)
    space = EquivariantSubspace(rep_in, hidden_reps, rep_out)
    if space.widths != layout.widths:
        raise ValueError(f"the MLP has widths {layout.widths} but the reps give {space.widths}")
    return layout.module(space.project(theta))


def project_onto_detected(
    detection: HiddenRepDetection, rep_in: Rep, rep_out: Rep
) -> nn.Sequential:
    """The projection of the detected network (its canonical form) onto E_ρ' for the detected ρ'.

    Raises ``ValueError`` when detection found no representation.
    """
    if detection.hidden_reps is None:
        raise ValueError(f"no hidden representation was detected: {detection.reason}")
    space = EquivariantSubspace(rep_in, detection.hidden_reps, rep_out)
    return detection.layout.module(space.project(detection.canonical_theta))


def effective_mlp(relaxed: RelaxedModel) -> nn.Sequential:
    """The plain MLP that a relaxed EquivariantMLP computes at its current θ.

    Each relaxed layer contributes W_eq + θ W_free and b_eq + θ b_free (θ as in training, so the
    free terms count even when the model runs its exact θ = 0 forward in eval mode).
    """
    if not isinstance(relaxed, RelaxedModel):
        raise TypeError(f"expected the RelaxedModel returned by relax(), got "
                        f"{type(relaxed).__name__}")
    inner = relaxed.model
    layers = getattr(inner, "layers", None)
    if not isinstance(inner, EquivariantMLP) or not isinstance(layers, nn.Sequential):
        raise TypeError(f"effective_mlp reads relaxed EquivariantMLPs, got "
                        f"{type(inner).__name__}")
    weights, names = [], set()
    for module in layers:
        if isinstance(module, PointwiseActivation):
            names.add(module.name)
            continue
        weights.append(_dense(module))
    if len(names) > 1:
        raise ValueError(f"expected one activation, found {sorted(names)}")
    widths = (weights[0][0].shape[1], *(w.shape[0] for w, _ in weights))
    layout = MLPLayout(widths, names.pop() if names else "identity")
    return layout.module(layout.join(weights))


def _dense(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        if isinstance(module, Relaxed):
            reg = registration(module.layer)
            if reg is None or reg.dense is None:
                raise TypeError(f"cannot read a dense weight from {type(module.layer).__name__}")
            w, b = reg.dense(module.layer)
            w, b = w.detach().double(), _bias(b, w.shape[0])
            fw, fb = module.free_dense()
            theta = float(module.theta)
            w = w + theta * fw.detach().double()
            if fb is not None:
                b = b + theta * fb.detach().double()
            return w, b
        if isinstance(module, EquivariantLinear | nn.Linear):
            w, b = (module.weight_and_bias() if isinstance(module, EquivariantLinear)
                    else (module.weight, module.bias))
            return w.detach().double(), _bias(b, w.shape[0])
    raise TypeError(f"unexpected layer {type(module).__name__} in an EquivariantMLP")


def _bias(b: torch.Tensor | None, n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.float64) if b is None else b.detach().double()


def harden_detected(
    relaxed: RelaxedModel, tol: float = DEFAULT_TOL, x: torch.Tensor | None = None
) -> EquivariantMLP:
    """Relax, then project onto the detected representation: an exactly equivariant
    EquivariantMLP whose hidden reps are those the relaxed weights satisfy.

    Reads the effective plain MLP of the relaxed model (:func:`effective_mlp`), detects its
    hidden reps (:func:`detect_hidden_rep`), and projects onto E_ρ'. The result has the same
    class, widths and activation as the original model but, in general, other hidden reps (in
    the network's own neuron order). Raises ``ValueError`` when no permutation representation is
    found within ``tol`` (the weights are on no slice), naming the reason.
    """
    inner = relaxed.model
    if not isinstance(inner, EquivariantMLP):
        raise TypeError(f"harden_detected works on relaxed EquivariantMLPs, got "
                        f"{type(inner).__name__}")
    G = inner.rep_in.group
    if not isinstance(G, PermutationGroup):
        raise ValueError(f"harden(mode='detected') needs a finite permutation group, got {G!r}")
    # detection reads hidden neurons a permutation can move; a norm nonlinearity (used for
    # non-permutation hidden reps) mixes each block's neurons, so there is nothing to detect
    for module in inner.layers:
        if not isinstance(module, PointwiseActivation | Relaxed | EquivariantLinear | nn.Linear):
            rep_in = getattr(module, "rep_in", None)
            raise ValueError(f"harden(mode='detected') needs pointwise activations on "
                             f"permutation hidden reps; expected PointwiseActivation, got "
                             f"{type(module).__name__}" + (f" on {rep_in!r}" if rep_in else ""))
    plain = effective_mlp(relaxed)
    detection = detect_hidden_rep(plain, G, inner.rep_in, inner.rep_out, tol=tol, x=x)
    if not detection.success or detection.hidden_reps is None:
        raise ValueError(f"harden(mode='detected'): no hidden permutation representation fits "
                         f"the relaxed weights within tol={tol:g} (residual "
                         f"{detection.residual:.2e}): {detection.reason}")
    if not detection.is_permutation:
        raise ValueError("harden(mode='detected'): the relaxed weights satisfy a signed "
                         f"permutation rep ({detection.decomposition}) that no sign flip turns "
                         "into a permutation rep; use project_onto_detected for a plain MLP")
    exact = equivariant_mlp(detection.canonical, inner.rep_in, detection.hidden_reps,
                            inner.rep_out)
    ref = next(iter(inner.parameters()), None)
    return exact.to(dtype=ref.dtype, device=ref.device) if ref is not None else exact

