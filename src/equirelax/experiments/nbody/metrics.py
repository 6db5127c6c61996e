"""What the N-body study measures besides the test MSE: the E(3) equivariance error of a
trained model, the size of its free terms, and the profile of its per-sample test errors.

:func:`e3_equivariance_error` measures this multi-input model (positions, velocities, charges)
with the library's checker, ``er.equivariance_error``, declaring one type per argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

import equirelax as er
from equirelax.checks import Positions
from equirelax.data.nbody import NBodyDataset
from equirelax.experiments.nbody.sampler import random_orthogonal


@torch.no_grad()
def e3_equivariance_error(
    model: nn.Module,
    loc: torch.Tensor,
    vel: torch.Tensor,
    charges: torch.Tensor,
    trials: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Largest relative errors of ``model`` under random E(3) elements, in the input's dtype.

    ``trials`` orthogonal matrices (rotations, and every other one a reflection) with a random
    translation each (standard deviation 3), through ``er.equivariance_error`` with the types
    (positions, vector, untouched charges) -> positions: ``positions`` compares f(g x) with
    g f(x) relative to ||f(x)||; ``displacement`` compares the predicted moves f(g x) − g x with
    R (f(x) − x), the stricter measure (translations do not inflate its denominator).
    """
    vector = er.reps.vector(er.groups.O(3))
    model = model.eval()
    elements = np.stack([((-1) ** k * random_orthogonal(seed * 31 + k)).numpy()
                         for k in range(trials)])
    args = (loc, vel, charges)
    rep_in = (Positions(vector), vector, None)
    common = {"elements": elements, "dtype": loc.dtype, "translation_scale": 3.0, "seed": seed}

    def displacement(loc: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor
                     ) -> torch.Tensor:
        return model(loc, vel, charges) - loc

    return {
        "positions": er.equivariance_error(model, args, rep_in, Positions(vector), **common),
        "displacement": er.equivariance_error(displacement, args, rep_in, vector, **common),
    }


@torch.no_grad()
def free_term_sizes(
    relaxed: nn.Module, loc: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor
) -> dict[str, float]:
    """``||W x|| / ||F_eq(x)||`` of every relaxed layer on a batch: how large the free terms
    are next to the equivariant maps they are added to (with weight θ) at the end of training."""
    from equirelax.relaxation import Relaxed

    sizes: dict[str, float] = {}
    hooks = []
    for name, module in relaxed.named_modules():
        if isinstance(module, Relaxed):

            def record(mod, args, output, name=name):
                x, rest = args[0], args[1:]
                eq = mod.layer(x, *rest)
                sizes[name.removeprefix("model.")] = float(mod.apply_free(x).norm() / eq.norm())

            hooks.append(module.register_forward_hook(record))
    was_training = relaxed.training
    try:
        relaxed.eval()
        first = next(relaxed.parameters())
        relaxed(loc.to(first), vel.to(first), charges.to(first))
    finally:
        relaxed.train(was_training)
        for hook in hooks:
            hook.remove()
    return sizes


#: Share of the worst test samples left out of the trimmed test MSE.
TRIM = 0.01


@torch.no_grad()
def test_error_profile(model: nn.Module, data: NBodyDataset,
                       batch_size: int = 500) -> dict[str, Any]:
    """Per-sample test errors of the selected model: the mean of the per-sample MSEs once the
    worst ``TRIM`` of them are left out, their median, and the worst ones.

    The test MSE of a model trained on few samples can be dominated by one simulation on which
    it fails badly (a close encounter of two particles: one sample's MSE of 80 moves the mean
    over 2000 by 0.04, as much as the whole comparison); the trimmed mean shows whether a
    difference between arms is broad or comes from such outliers."""
    model = model.eval()
    first = next(model.parameters())
    per_sample = []
    full = data.tensors()
    for i in range(0, len(data), batch_size):
        part = [t[i:i + batch_size].to(first) for t in (full.loc, full.vel, full.charges,
                                                        full.target)]
        pred = model(*part[:3])
        per_sample.append(((pred - part[3]) ** 2).mean(dim=(1, 2)).double().cpu())
    errors = torch.cat(per_sample)
    keep = max(1, round(len(errors) * (1 - TRIM)))
    ordered = torch.sort(errors).values
    return {
        "test_mse_trimmed": float(ordered[:keep].mean()),
        "test_sample_mse_median": float(ordered[len(ordered) // 2]),
        "test_worst_sample_mse": [float(v) for v in ordered[-5:].flip(0)],
    }
