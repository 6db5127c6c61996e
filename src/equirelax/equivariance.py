"""Measuring equivariance: f(ρ_in(g) x) against ρ_out(g) f(x), and Lie derivatives.

Errors are relative (divided by ||f(x)||) and computed in float64 whatever dtype the model runs in,
so the same call tells a float32 round-off error (~1e-7) from a real violation (~1e-1).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from equirelax.groups.base import Group
from equirelax.reps.base import Rep

#: Finite groups up to this order are checked on every element by default; larger ones on a sample.
ALL_ELEMENTS_LIMIT = 5000
#: Elements sampled when a group is too large (or infinite) to check every element.
DEFAULT_SAMPLES = 64


def _reps_of(model: Callable, rep_in: Rep | None, rep_out: Rep | None) -> tuple[Rep, Rep]:
    rep_in = rep_in if rep_in is not None else getattr(model, "rep_in", None)
    rep_out = rep_out if rep_out is not None else getattr(model, "rep_out", None)
    if rep_in is None or rep_out is None:
        raise ValueError(
            "the model declares no rep_in/rep_out: pass rep_in=... and rep_out=... explicitly"
        )
    if rep_in.group != rep_out.group:
        raise ValueError(f"rep_in and rep_out act by different groups: {rep_in.group!r}, "
                         f"{rep_out.group!r}")
    return rep_in, rep_out


def default_elements(group: Group, seed: int = 0) -> np.ndarray:
    """Every element of a small finite group; a Haar sample otherwise."""
    if group.is_finite and group.order <= ALL_ELEMENTS_LIMIT:  # type: ignore[attr-defined]
        return group.elements()  # type: ignore[attr-defined]
    return group.sample(DEFAULT_SAMPLES, seed=seed)


def _in_dtype(model: Callable, dtype: torch.dtype) -> Callable:
    if isinstance(model, nn.Module):
        params = list(model.parameters()) + list(model.buffers())
        floating = [p for p in params if p.is_floating_point()]
        if floating and any(p.dtype != dtype for p in floating):
            return copy.deepcopy(model).to(dtype)
    return model


def equivariance_error(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    rep_in: Rep | None = None,
    rep_out: Rep | None = None,
    elements: np.ndarray | None = None,
    dtype: torch.dtype = torch.float64,
    chunk: int = 64,
) -> float:
    """max_g ||f(ρ_in(g) x) − ρ_out(g) f(x)|| / ||f(x)||, norms over the whole batch ``x``.

    ``elements=None`` checks every element of a finite group up to ``ALL_ELEMENTS_LIMIT``
    elements, and a sample otherwise. The model runs in ``dtype`` (a float64 copy by default);
    the comparison is always made in float64. Reps default to the model's own.
    """
    rep_in, rep_out = _reps_of(model, rep_in, rep_out)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.shape[-1] != rep_in.dim:
        raise ValueError(
            f"x must have shape (..., {rep_in.dim}) for rep_in {rep_in!r}, got {tuple(x.shape)}"
        )
    group = rep_in.group
    els = default_elements(group) if elements is None else np.asarray(elements)
    f = _in_dtype(model, dtype)
    device = x.device
    with torch.no_grad():
        x = x.to(dtype)
        fx = f(x).to(torch.float64)
        if fx.shape[-1] != rep_out.dim:
            raise ValueError(
                f"model output has last axis {fx.shape[-1]}, but rep_out {rep_out!r} has "
                f"dim {rep_out.dim}"
            )
        scale = max(float(fx.norm()), torch.finfo(torch.float64).tiny)
        worst = 0.0
        for start in range(0, len(els), chunk):
            batch = els[start : start + chunk]
            m_in = torch.from_numpy(rep_in.matrices(batch)).to(device)
            m_out = torch.from_numpy(rep_out.matrices(batch)).to(device)
            gx = torch.einsum("gij,...j->g...i", m_in.to(dtype), x)
            fgx = f(gx)
            gfx = torch.einsum("gij,...j->g...i", m_out, fx)
            diff = (fgx.to(torch.float64) - gfx).reshape(len(batch), -1).norm(dim=1)
            worst = max(worst, float(diff.max()) / scale)
    return worst


def lie_derivative_error(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    rep_in: Rep | None = None,
    rep_out: Rep | None = None,
    dtype: torch.dtype = torch.float64,
) -> float:
    """max_k ||J_f(x)[dρ_in(A_k) x] − dρ_out(A_k) f(x)|| / ||f(x)|| over the Lie algebra basis.

    Zero for every k exactly when f is equivariant to the identity component of a Lie group.
    Returns 0.0 for finite groups (no Lie algebra).
    """
    rep_in, rep_out = _reps_of(model, rep_in, rep_out)
    lie_in, lie_out = rep_in.lie_matrices(), rep_out.lie_matrices()
    if not lie_in:
        return 0.0
    f = _in_dtype(model, dtype)
    x = x.to(dtype)
    worst = 0.0
    for a_in, a_out in zip(lie_in, lie_out):
        a_in_t = torch.from_numpy(a_in).to(dtype=dtype, device=x.device)
        a_out_t = torch.from_numpy(a_out).to(device=x.device)
        tangent = x @ a_in_t.T
        fx, dfx = torch.func.jvp(f, (x,), (tangent,))
        fx = fx.detach().to(torch.float64)
        scale = max(float(fx.norm()), torch.finfo(torch.float64).tiny)
        err = dfx.detach().to(torch.float64) - fx @ a_out_t.T
        worst = max(worst, float(err.norm()) / scale)
    return worst
