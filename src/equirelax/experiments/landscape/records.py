"""What the landscape study records at a point of weight space, as JSON-able dicts: the Hessian
split into equivariant and non-equivariant blocks and its kind, the largest subgroup of G that
the weights respect (with its generators in cycle notation), and the types of a hidden rep's
transitive pieces (to compare a detected rep with the teacher's)."""

from __future__ import annotations

from dataclasses import asdict

import torch

from equirelax.landscape import (
    EquivariantSubspace,
    MLPLayout,
    detect_subgroup_symmetry,
    hessian_split,
    mse_loss,
)


def hessian_record(
    space: EquivariantSubspace,
    layout: MLPLayout,
    theta: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    rel_grad_tol: float,
) -> dict:
    """The Hessian split at θ and its kind; critical means a gradient norm at most
    ``rel_grad_tol`` · Var(y) (the loss scale of the MSE)."""
    split = hessian_split(mse_loss(layout, x, y), theta, space)
    c = split.classify(rel_grad_tol=rel_grad_tol, loss_scale=float(y.var()))
    return {
        "kind": c.kind,
        "gradient_norm": split.gradient_norm,
        "gradient_tangent": split.gradient_tangent,
        "gradient_normal": split.gradient_normal,
        "min_tangent": c.min_tangent,
        "min_normal": c.min_normal,
        "n_negative_tangent": c.n_negative_tangent,
        "n_negative_normal": c.n_negative_normal,
        "tol": c.tol,
        "grad_tol": c.grad_tol,
        "coupling": split.coupling,
        "blocks": [
            {
                "label": b.label,
                "dim": b.dim,
                "min": b.min_eigenvalue,
                "eigenvalues": b.eigenvalues.tolist(),
            }
            for b in split.blocks
        ],
    }


def _cycles(perm: list[int]) -> str:
    """A permutation in cycle notation, e.g. ``(0 1)(2 3)``; ``()`` for the identity."""
    seen, cycles = set(), []
    for start in range(len(perm)):
        if start in seen or perm[start] == start:
            continue
        cycle, i = [], start
        while i not in seen:
            seen.add(i)
            cycle.append(str(i))
            i = perm[i]
        cycles.append(f"({' '.join(cycle)})")
    return "".join(cycles) or "()"


def subgroup_record(plain: torch.nn.Module, data: dict, tol: float) -> dict:
    """The largest subgroup of G under which the plain MLP ``plain`` is equivariant, as a
    JSON-able record (its class name, order, generators, the hidden rep of H, the residual)."""
    found = detect_subgroup_symmetry(plain, data["G"], data["rep_in"], data["rep_out"], tol=tol)
    return {
        "name": found.name,
        "order": found.order,
        "group_order": found.group.order,
        "generators": found.generators,
        "cycles": ", ".join(_cycles(g) for g in found.generators),
        "conjugates": found.subgroup_class.conjugates,
        "decomposition": found.decomposition,
        "residual": found.residual,
        "distance": found.detection.distance,
        "matches": found.matches,
        "trials": [asdict(t) for t in found.trials],
    }


def piece_types(pieces) -> list[int]:
    """The stabilisers K of a hidden rep's transitive pieces [G/K] as subgroup classes (their
    positions in ``subgroup_classes``), sorted: the type on which a detected rep is compared
    with the teacher's."""
    return sorted(p.stabiliser.index for p in pieces)
