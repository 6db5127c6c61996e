"""Shared pieces of the EGNN and SEGNN tests: random O(3) elements, particle batches, errors,
a short fit and the free terms of a relaxed model. (The tests run on one thread: the
``one_thread`` fixture of ``tests/conftest.py``.)"""

from __future__ import annotations

import torch

import equirelax as er


def orthogonal(seed: int, reflect: bool, dtype: torch.dtype) -> torch.Tensor:
    """A Haar-random rotation, times -1 (a reflection, det -1) when ``reflect``."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return (-q if reflect else q).to(dtype)


def particles(batch: int, n: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(batch, n, 3, generator=g, dtype=dtype)
    vel = 0.5 * torch.randn(batch, n, 3, generator=g, dtype=dtype)
    charges = torch.randint(0, 2, (batch, n), generator=g).to(dtype) * 2 - 1
    return loc, vel, charges


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def assert_e3_equivariant(model: torch.nn.Module, rot_seed: int, reflect: bool,
                          shift: torch.Tensor) -> None:
    """``model`` (float32) maps rotated/reflected and shifted inputs to its outputs moved alike,
    its prediction and its displacement (the prediction less the positions) alike to 1e-4
    relative, on 16 five-particle systems."""
    loc, vel, charges = particles(16, 5, torch.float32, seed=1)
    rot = orthogonal(rot_seed, reflect, torch.float32)
    with torch.no_grad():
        base = model(loc, vel, charges)
        moved = model(loc @ rot.T + shift, vel @ rot.T, charges)
    assert relative_error(moved, base @ rot.T + shift) <= 1e-4
    assert relative_error(moved - (loc @ rot.T + shift), (base - loc) @ rot.T) <= 1e-4


def fit_losses(model: torch.nn.Module, steps: int) -> list[float]:
    """Training losses of ``model`` fitting 8 five-particle systems (target: one Euler step
    plus noise) with Adam."""
    loc, vel, charges = particles(8, 5, torch.float32, seed=5)
    target = loc + vel + 0.1 * torch.randn(8, 5, 3, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(loc, vel, charges) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def randomise_free(relaxed, std: float = 1.0) -> None:
    """Normal entries (std ``std``) in every free term of a relaxed model."""
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            layer.free.weight.normal_(std=std)


def make_free_equivariant(relaxed) -> None:
    """Project every free term of a relaxed model onto the equivariant maps."""
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            space = er.hom(layer.rep_in, layer.rep_out)
            layer.free.weight.copy_(space.project(layer.free.weight))
