"""Real irreducible representations of SO(3) and O(3) in e3nn's conventions, as equirelax reps.

``irreps(G, "32x0e+32x1o")`` gives the representation on which e3nn modules with those irreps
act, so e3nn layers can declare ``rep_in``/``rep_out`` and be checked and relaxed like any other.
The Lie algebra acts by e3nn's ``so3_generators(l)`` (e3nn writes rotations as
Y(α) X(β) Y(γ), so its X, Y, Z generators are the images of our L_x, L_y, L_z); parity acts
as p · I on an irrep of parity p. Elements are evaluated exactly from these (expm of the
algebra), not through Euler angles. Requires the optional dependency ``e3nn``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from equirelax.groups.lie import MatrixLieGroup
from equirelax.reps.base import MatrixRep, Rep, direct_sum


@lru_cache(maxsize=64)
def _generators(l: int) -> np.ndarray:
    try:
        from e3nn import o3
    except ImportError as err:  # pragma: no cover - exercised only without e3nn
        raise ImportError("irreps() needs e3nn: pip install 'equirelax[e3nn]'") from err
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds them in the default dtype
    try:
        return o3.so3_generators(l).numpy().copy()
    finally:
        torch.set_default_dtype(previous)


def irrep(G: MatrixLieGroup, l: int, p: int = 1) -> MatrixRep:
    """The irrep of degree ``l`` (dim 2l+1) and parity ``p`` (±1; O(3) only, SO(3) ignores it)."""
    if not isinstance(G, MatrixLieGroup) or G.name not in ("SO(3)", "O(3)"):
        raise ValueError(f"irreps are defined here for SO(3) and O(3), got {G!r}")
    if l < 0:
        raise ValueError(f"l must be >= 0, got {l}")
    if p not in (1, -1):
        raise ValueError(f"parity must be +1 or -1, got {p}")
    gens = _generators(l)
    discrete = [p * np.eye(2 * l + 1) for _ in G.generators]
    suffix = ("e" if p == 1 else "o") if G.generators else ""
    return MatrixRep(G, discrete, list(gens), name=f"{l}{suffix}")


def irreps(G: MatrixLieGroup, spec) -> Rep:
    """The direct sum described by an e3nn irreps string or ``o3.Irreps`` (e.g. '8x0e+4x1o')."""
    from e3nn import o3

    parts = []
    for mul, ir in o3.Irreps(spec):
        if mul:
            parts.extend([irrep(G, ir.l, ir.p)] * mul)
    if not parts:
        raise ValueError(f"irreps {spec!r} are empty")
    return direct_sum(parts)
