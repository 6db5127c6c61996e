"""Measuring equivariance: f(ρ_in(g) x) against ρ_out(g) f(x), and Lie derivatives.

Errors are relative (divided by ||f(x)||) and computed in float64 whatever dtype the model runs in,
so the same call tells a float32 round-off error (~1e-7) from a real violation (~1e-1).

The checks cannot be fooled by degenerate outputs: a NaN or inf in the input, the output or a
transformed output raises ``ValueError`` (``max(0.0, nan)`` is 0.0, so a NaN model would otherwise
"pass"), and an identically zero output warns with :class:`ZeroOutputWarning` (its relative error
is round-off divided by round-off).
"""

from __future__ import annotations

import copy
import math
import warnings
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


class ZeroOutputWarning(RuntimeWarning):
    """The model's output is identically zero, so a relative equivariance error means nothing."""


def _check_finite(t: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` when ``t`` holds a NaN or an infinity."""
    if t.is_floating_point() or t.is_complex():
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            n_nan = int(torch.isnan(t).sum())
            n_inf = int(bad.sum()) - n_nan
            raise ValueError(
                f"{what} must be finite, got {n_nan} NaN and {n_inf} inf of {t.numel()} "
                f"entries: an equivariance error of non-finite values means nothing"
            )


def _output_scale(fx: torch.Tensor, where: str) -> float:
    """||f(x)|| (float64) to divide by, after checking f(x) is finite; warns when it is zero."""
    _check_finite(fx, "the model output f(x)")
    norm = float(fx.norm())
    if not math.isfinite(norm):
        raise ValueError(f"the norm of the model output f(x) overflowed to {norm} in float64")
    if norm == 0.0:
        warnings.warn(
            f"{where}: the model output f(x) is identically zero, so its relative error is "
            "meaningless; give the model an input with invariant content or nonzero biases",
            ZeroOutputWarning,
            stacklevel=3,
        )
    return max(norm, torch.finfo(torch.float64).tiny)


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
    if x.dim() == 0 or x.shape[-1] != rep_in.dim:
        raise ValueError(
            f"x must have shape (..., {rep_in.dim}) for rep_in {rep_in!r}, got {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(f"x must hold at least one sample, got shape {tuple(x.shape)}")
    _check_finite(x, "the input x")
    group = rep_in.group
    els = default_elements(group) if elements is None else np.asarray(elements)
    if len(els) == 0:
        raise ValueError("elements must hold at least one group element, got none")
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
        scale = _output_scale(fx, "equivariance_error")
        worst = 0.0
        for start in range(0, len(els), chunk):
            batch = els[start : start + chunk]
            m_in = torch.from_numpy(rep_in.matrices(batch)).to(device)
            m_out = torch.from_numpy(rep_out.matrices(batch)).to(device)
            gx = torch.einsum("gij,...j->g...i", m_in.to(dtype), x)
            fgx = f(gx).to(torch.float64)
            if not bool(torch.isfinite(fgx).all()):
                k = int((~torch.isfinite(fgx)).reshape(len(batch), -1).any(dim=1).nonzero()[0])
                element = np.array2string(np.asarray(batch[k]), threshold=20, precision=4)
                _check_finite(fgx[k], f"the transformed output f(ρ_in(g) x) for element "
                                      f"{start + k} of the checked elements, g = {element},")
            gfx = torch.einsum("gij,...j->g...i", m_out, fx)
            diff = (fgx - gfx).reshape(len(batch), -1).norm(dim=1)
            worst = max(worst, float(diff.max()) / scale)
    if not math.isfinite(worst):
        raise ValueError(f"the equivariance error overflowed to {worst} (outputs too large for "
                         "float64 norms)")
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
    Returns 0.0 for finite groups (no Lie algebra). Non-finite inputs, outputs or derivatives
    raise ``ValueError``; an identically zero output warns (:class:`ZeroOutputWarning`).
    """
    rep_in, rep_out = _reps_of(model, rep_in, rep_out)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    lie_in, lie_out = rep_in.lie_matrices(), rep_out.lie_matrices()
    if not lie_in:
        return 0.0
    _check_finite(x, "the input x")
    f = _in_dtype(model, dtype)
    x = x.to(dtype)
    worst = 0.0
    scale = None
    for k, (a_in, a_out) in enumerate(zip(lie_in, lie_out)):
        a_in_t = torch.from_numpy(a_in).to(dtype=dtype, device=x.device)
        a_out_t = torch.from_numpy(a_out).to(device=x.device)
        tangent = x @ a_in_t.T
        fx, dfx = torch.func.jvp(f, (x,), (tangent,))
        fx = fx.detach().to(torch.float64)
        if scale is None:  # f(x) is the same for every k: check and warn once
            scale = _output_scale(fx, "lie_derivative_error")
        dfx = dfx.detach().to(torch.float64)
        _check_finite(dfx, f"the derivative of f along Lie algebra element {k}")
        err = dfx - fx @ a_out_t.T
        worst = max(worst, float(err.norm()) / scale)
    if not math.isfinite(worst):
        raise ValueError(f"the Lie derivative error overflowed to {worst} (outputs too large "
                         "for float64 norms)")
    return worst
