"""Shared pieces of the EGNN and SEGNN tests: random O(3) elements, particle batches, errors,
and a one-thread fixture (autouse in every test module that imports it)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small graphs: one thread is fastest and avoids oversubscribing shared cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
