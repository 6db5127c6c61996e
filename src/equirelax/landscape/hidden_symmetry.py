"""Hidden symmetries: the neuron permutations of the plain MLP that keep E_ρ in place.

Permuting the hidden neurons of a plain MLP (W_l -> σ_l W_l σ_{l-1}⁻¹, b_l -> σ_l b_l) never
changes its function. Such a σ maps the equivariant slice E_ρ to E_{σρσ⁻¹}, so it maps E_ρ to
itself exactly when σ commutes with every ρ(g): σ lies in the centraliser C(ρ) of ρ(G) in the
hidden-neuron permutations S_h. These are symmetries of the *constrained* loss that a
weight-shared implementation hides (Xie & Smidt, 2025). For ρ = ⊕_i m_i [G/H_i] with the H_i
pairwise non-conjugate, C(ρ) ≅ ∏_i (N_G(H_i)/H_i) ≀ S_{m_i}: a regular rep gives |G| (right
translations), m trivial neurons give m!, S_n acting on n points gives 1. The distinct slices in
the S_h-orbit of E_ρ number [S_h : C(ρ)].

Here C(ρ) is built from its generators (equivariant bijections between isomorphic orbits) and
its order read off a stabiliser chain; ``formula_order`` is the closed form, for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from equirelax.groups.permutation import PermutationGroup
from equirelax.groups.subgroups import TransitivePiece, describe_pieces, transitive_pieces
from equirelax.landscape.slice import MLPLayout
from equirelax.reps.base import PermRep, Rep


def _orbit_map(images: list[np.ndarray], source: int, target: int, dim: int) -> dict | None:
    """The map of the orbit of ``source`` that sends source -> target and commutes with every
    generator, or None when there is none (the stabiliser of target is smaller)."""
    psi = {source: target}
    frontier = [source]
    while frontier:
        new = []
        for a in frontier:
            for img in images:
                b, image = int(img[a]), int(img[psi[a]])
                if b not in psi:
                    psi[b] = image
                    new.append(b)
                elif psi[b] != image:
                    return None
        frontier = new
    if len(set(psi.values())) != len(psi):
        return None
    return psi


def centraliser_generators(rep: PermRep) -> list[np.ndarray]:
    """Generators of the centraliser of ρ(G) in the permutations of ρ's points (may be empty).

    Within each orbit: every equivariant bijection of the orbit (its automorphisms, N(H)/H);
    between consecutive isomorphic orbits: one equivariant swap (together these generate the
    wreath products).
    """
    if not isinstance(rep, PermRep):
        raise TypeError(f"hidden symmetries are defined for permutation reps, got {rep!r}")
    dim = rep.dim
    images = [np.asarray(p) for p in rep.images] or [np.arange(dim)]
    labels = -np.ones(dim, dtype=np.int64)
    starts: list[int] = []
    for p in range(dim):
        if labels[p] < 0:
            psi = _orbit_map(images, p, p, dim)
            assert psi is not None
            labels[list(psi)] = len(starts)
            starts.append(p)
    orbits = [np.flatnonzero(labels == k) for k in range(len(starts))]
    gens: list[np.ndarray] = []
    for i, p in enumerate(starts):
        for q in orbits[i]:
            if q == p:
                continue
            psi = _orbit_map(images, p, int(q), dim)
            if psi is not None:
                g = np.arange(dim)
                for a, b in psi.items():
                    g[a] = b
                gens.append(g)
        # one equivariant swap with the next isomorphic orbit (isomorphism is transitive, so
        # these swaps link every class of isomorphic orbits into a chain)
        for j in range(i + 1, len(starts)):
            if len(orbits[j]) != len(orbits[i]):
                continue
            found = next((m for q in orbits[j]
                          if (m := _orbit_map(images, p, int(q), dim)) is not None), None)
            if found is not None:
                g = np.arange(dim)
                for a, b in found.items():
                    g[a], g[b] = b, a
                gens.append(g)
                break
    return gens


@dataclass
class HiddenSymmetry:
    """The hidden-symmetry group C(ρ) of one choice of hidden reps (all hidden layers).

    ``group`` permutes all hidden neurons (layer 1 first); ``order`` is |C(ρ)| from its
    stabiliser chain and ``formula_order`` the closed form ∏ |N(H)/H|^m m!; ``signed_order``
    adds the sign flips of whole orbits that odd activations allow (2^#orbits);
    ``n_hyperplanes`` = [S_h : C(ρ)], the number of distinct slices conjugate to E_ρ.
    """

    hidden_reps: list[Rep]
    group: PermutationGroup
    order: int
    formula_order: int
    signed_order: int
    n_hyperplanes: int
    pieces: list[list[TransitivePiece]] = field(default_factory=list)

    def describe(self) -> str:
        """One line per hidden layer: its decomposition and the structure of C(ρ)."""
        lines = []
        for k, pieces in enumerate(self.pieces):
            lines.append(f"layer {k + 1}: {describe_pieces(pieces)}")
        lines.append(f"|C(rho)| = {self.order} (signed: {self.signed_order}); "
                     f"{self.n_hyperplanes} conjugate hyperplanes")
        return "\n".join(lines)


def hidden_symmetry_group(hidden_reps: Rep | Sequence[Rep]) -> HiddenSymmetry:
    """C(ρ) for the hidden permutation reps of an MLP (one rep per hidden layer).

    >>> import equirelax as er
    >>> G = er.groups.symmetric(3)
    >>> hidden_symmetry_group(3 * er.reps.trivial(G)).order
    6
    """
    reps = [hidden_reps] if isinstance(hidden_reps, Rep) else list(hidden_reps)
    if not reps:
        raise ValueError("expected at least one hidden rep")
    gens: list[np.ndarray] = []
    all_pieces = []
    offset = 0
    total = sum(r.dim for r in reps)
    formula = 1
    n_orbits = 0
    hyperplanes = 1
    for rep in reps:
        if not isinstance(rep, PermRep):
            raise TypeError(f"hidden symmetries are defined for permutation reps, got {rep!r}")
        if not isinstance(rep.group, PermutationGroup):
            raise TypeError(f"expected a rep of a finite permutation group, got {rep.group!r}")
        for g in centraliser_generators(rep):
            full = np.arange(total)
            full[offset : offset + rep.dim] = g + offset
            gens.append(full)
        pieces = transitive_pieces(rep.group, rep.images)
        all_pieces.append(pieces)
        n_orbits += len(pieces)
        counts: dict[int, int] = {}
        for piece in pieces:
            counts[piece.stabiliser.index] = counts.get(piece.stabiliser.index, 0) + 1
        layer_order = 1
        for piece in {p.stabiliser.index: p for p in pieces}.values():
            m = counts[piece.stabiliser.index]
            layer_order *= piece.stabiliser.automorphism_order**m * math.factorial(m)
        formula *= layer_order
        offset += rep.dim
    group = PermutationGroup(gens, degree=total, name="C(rho)")
    order = group.order
    for rep in reps:
        hyperplanes *= math.factorial(rep.dim)
    return HiddenSymmetry(
        hidden_reps=reps,
        group=group,
        order=order,
        formula_order=formula,
        signed_order=order * 2**n_orbits,
        n_hyperplanes=hyperplanes // order,
        pieces=all_pieces,
    )


def permute_hidden(
    layout: MLPLayout,
    theta: torch.Tensor,
    perms: Sequence[np.ndarray],
    signs: Sequence[np.ndarray] | None = None,
) -> torch.Tensor:
    """Apply a hidden-neuron (signed) permutation to θ: neuron i of layer l moves to position
    perms[l][i], multiplied by signs[l][i] (sign flips keep the function only for odd
    activations). The MLP's function is unchanged."""
    hidden = layout.widths[1:-1]
    if len(perms) != len(hidden):
        raise ValueError(f"expected one permutation per hidden layer ({len(hidden)}), "
                         f"got {len(perms)}")
    if signs is None:
        signs = [np.ones(n) for n in hidden]
    mats = [torch.eye(layout.widths[0], dtype=torch.float64)]
    for n, p, s in zip(hidden, perms, signs):
        p = np.asarray(p)
        if p.shape != (n,) or not np.array_equal(np.sort(p), np.arange(n)):
            raise ValueError(f"expected a permutation of 0..{n - 1}, got {p.tolist()}")
        m = torch.zeros(n, n, dtype=torch.float64)
        m[torch.from_numpy(p), torch.arange(n)] = torch.as_tensor(s, dtype=torch.float64)
        mats.append(m)
    mats.append(torch.eye(layout.widths[-1], dtype=torch.float64))
    weights = []
    for k, (w, b) in enumerate(layout.split(theta.to(torch.float64))):
        weights.append((mats[k + 1] @ w @ mats[k].T, mats[k + 1] @ b))
    return layout.join(weights)
