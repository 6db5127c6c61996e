"""A pytest-friendly equivariance assertion that users call on their own modules.

It runs the measurements of :mod:`equirelax.checks` (one checker for single- and multi-input
models) in several dtypes against per-dtype tolerances.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from equirelax.checks import (
    ArgumentType,
    ChannelsLast,
    Positions,
    ZeroOutputWarning,
    declared_type,
    equivariance_error,
    lie_derivative_error,
)
from equirelax.reps.base import Rep

#: Relative tolerances by dtype (the error is computed in float64 from the model's outputs).
TOLERANCES: dict[torch.dtype, float] = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 3e-2,
}


def assert_equivariant(
    model: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    x: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    rep_in: Rep | Positions | tuple[ArgumentType, ...] | None = None,
    rep_out: Rep | Positions | tuple[ArgumentType, ...] | None = None,
    elements: np.ndarray | None = None,
    dtypes: tuple[torch.dtype, ...] = (torch.float64, torch.float32),
    tolerance: float | dict[torch.dtype, float] | None = None,
    batch: int = 8,
    seed: int = 0,
) -> dict[torch.dtype, float]:
    """Assert ``model`` is equivariant in each dtype; return the measured relative errors.

    Checks every element of small finite groups (a sample otherwise) and, for Lie groups, the
    Lie derivative along every algebra generator. ``x`` defaults to a seeded Gaussian batch for
    a single-input model; a multi-input model gets a tuple ``x`` and one type per argument in
    ``rep_in``/``rep_out`` (see :func:`equirelax.checks.equivariance_error`).

    A NaN or inf in the input, the output or a transformed output raises ``ValueError`` (a
    non-finite model is never reported equivariant); an identically zero output passes but warns
    with :class:`ZeroOutputWarning`, since its relative error is meaningless.
    """
    rep_in = rep_in if rep_in is not None else declared_type(model, "rep_in")
    rep_out = rep_out if rep_out is not None else declared_type(model, "rep_out")
    if rep_in is None or rep_out is None:
        raise ValueError("pass rep_in and rep_out, or give the model rep_in/rep_out attributes")
    if x is None:
        if not isinstance(rep_in, Rep | ChannelsLast):
            raise ValueError(f"pass x for a model whose rep_in is {rep_in!r}: a default input "
                             "is drawn only for a single Rep")
        gen = torch.Generator().manual_seed(seed)
        # a layer that reads shaped features (layout=...) says their trailing shape
        shape = getattr(getattr(model, "tensor_layout", None), "shape_in", None)
        rep = rep_in.rep if isinstance(rep_in, ChannelsLast) else rep_in
        dims = tuple(shape) if shape is not None else (rep.dim,)
        x = torch.randn(batch, *dims, generator=gen, dtype=torch.float64)
    errors: dict[torch.dtype, float] = {}
    for dtype in dtypes:
        if isinstance(tolerance, dict):
            tol = tolerance[dtype]
        else:
            tol = tolerance if tolerance is not None else TOLERANCES[dtype]
        err = equivariance_error(model, x, rep_in, rep_out, elements=elements, dtype=dtype)
        lie = lie_derivative_error(model, x, rep_in, rep_out, dtype=dtype)
        worst = max(err, lie)
        errors[dtype] = worst
        if not worst <= tol:
            raise AssertionError(
                f"{type(model).__name__} is not equivariant in {dtype}: relative error "
                f"{err:.3e} over group elements, {lie:.3e} Lie derivative; tolerance {tol:.1e}"
            )
    return errors


__all__ = ["TOLERANCES", "ChannelsLast", "Positions", "ZeroOutputWarning", "assert_equivariant"]
