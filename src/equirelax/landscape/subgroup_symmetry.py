"""The largest subgroup of G under which a plain MLP's weights are equivariant.

A relaxed network that leaves its slice E_ρ need not land on the slice of another hidden rep of
G: it can be caught on the fixed-point set of a subgroup H < G, where every layer is
H-equivariant under some hidden permutation rep of H but no hidden rep of G fits.
:func:`~equirelax.landscape.detect.detect_hidden_rep` asks about G only and answers "none"
there. :func:`detect_subgroup_symmetry` asks the same question of the subgroups of G, largest
order first, and stops at the first order where some subgroup admits a hidden rep.

Within a conjugacy class every conjugate gHg⁻¹ is tried: the actions on input and output,
restricted to H, are fixed, so H and gHg⁻¹ ask for different weights (a network equivariant
under the transposition (0 1) need not be under (1 2)). Weights equivariant under H with a
hidden rep are equivariant under every subgroup of H with the restricted rep, so the search
always ends, at the trivial group at the latest (every network is equivariant under it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from equirelax.groups.permutation import PermutationGroup
from equirelax.groups.subgroups import SubgroupClass, group_table, subgroup_classes
from equirelax.landscape.detect import (
    DEFAULT_TOL,
    HiddenRepDetection,
    checked_mlp,
    detect_hidden_rep,
)
from equirelax.reps.base import MatrixRep, PermRep, Rep


@dataclass(frozen=True)
class SubgroupTrial:
    """One conjugacy class of subgroups tried by :func:`detect_subgroup_symmetry`.

    ``conjugates``: how many subgroups of the class were tried; ``residual``: the smallest
    detection residual among them (relative to the weight norm, as in ``detect_hidden_rep``);
    ``success``: whether one of them admits a hidden rep within the tolerance.
    """

    name: str
    order: int
    conjugates: int
    residual: float
    success: bool


@dataclass
class SubgroupSymmetry:
    """The result of :func:`detect_subgroup_symmetry`.

    ``subgroup``: the subgroup H found, named by its conjugacy class in G; ``subgroup_class``:
    that class (its order, its number of conjugates, whether it is normal); ``detection``: the
    hidden-rep detection under H (its hidden reps, split into transitive pieces ``[H/K]``, its
    residual and distance, in the coordinates of ``detection.canonical``); ``matches``: how
    many subgroups of H's order pass (more than one when several conjugates or classes do; H is
    the one with the smallest residual); ``trials``: every class tried, largest order first,
    down to the order of H.
    """

    group: PermutationGroup
    subgroup: PermutationGroup
    subgroup_class: SubgroupClass
    detection: HiddenRepDetection
    tol: float
    matches: int
    trials: list[SubgroupTrial] = field(default_factory=list)

    @property
    def order(self) -> int:
        """|H|."""
        return self.subgroup_class.order

    @property
    def name(self) -> str:
        """The name of H's conjugacy class in G (``S4``, ``V4b``, ``C2a``, ``1``, ...)."""
        return self.subgroup_class.name

    @property
    def is_full(self) -> bool:
        """True when the weights are equivariant under all of G."""
        return self.order == self.group.order

    @property
    def is_trivial(self) -> bool:
        """True when no subgroup but the trivial one fits."""
        return self.order == 1

    @property
    def residual(self) -> float:
        """The detection residual under H, relative to the weight norm."""
        return self.detection.residual

    @property
    def decomposition(self) -> str:
        """The hidden reps of H, layer by layer, e.g. ``[V4b/1]`` or ``2*[C2a/C2a] + [C2a/1]``."""
        return self.detection.decomposition

    @property
    def hidden_reps(self) -> list[Rep] | None:
        """The hidden reps of H found (in the coordinates of ``detection.canonical``)."""
        return self.detection.hidden_reps

    @property
    def generators(self) -> list[list[int]]:
        """H's generators as images of the points 0..n-1 of G's action."""
        return [[int(i) for i in g] for g in self.subgroup.generators]

    def describe(self) -> str:
        """One line: H, its order, its generators, the hidden rep of H and the residual."""
        return (
            f"largest subgroup {self.name} (order {self.order} of {self.group.order}, "
            f"generators {self.generators}): hidden rep {self.decomposition}; residual "
            f"{self.residual:.2e} (tol {self.tol:g}, relative to the weight norm)"
        )


def _restrict(rep: Rep, H: PermutationGroup) -> Rep:
    """``rep`` as a representation of its group's subgroup H (the same matrices on H)."""
    name = f"{rep.name}|{H.name}"
    if isinstance(rep, PermRep):
        return PermRep(H, [rep.perm(h) for h in H.generators], name=name, check=False)
    return MatrixRep(H, [rep.matrix(h) for h in H.generators], name=name, check=False)


def _conjugates(G: PermutationGroup, cls: SubgroupClass) -> list[PermutationGroup]:
    """Every subgroup of the class, as PermutationGroups named after the class (fixed order)."""
    table = group_table(G)
    members = {table.conjugate(cls.members, g) for g in range(table.order)}
    return [table.subgroup(m, name=cls.name) for m in sorted(members, key=sorted)]


def detect_subgroup_symmetry(
    mlp: nn.Module,
    G: PermutationGroup,
    rep_in: Rep,
    rep_out: Rep,
    activation: str | None = None,
    tol: float = DEFAULT_TOL,
    x: torch.Tensor | None = None,
) -> SubgroupSymmetry:
    """The largest subgroup H ≤ G under which ``mlp`` is equivariant with a hidden rep of H.

    Arguments as for :func:`~equirelax.landscape.detect.detect_hidden_rep`, with the same
    tolerance: a subgroup fits when its detection residual (relative to the norm of all the
    network's weights) is at most ``tol`` and the neuron permutations found define a
    representation of it; the residual of the answer is reported. Subgroups are searched up to
    conjugacy from the largest order down (G itself first), every conjugate of a class tried;
    among the subgroups of the largest order that fit, the one with the smallest residual is
    returned. ``x``: optional inputs for the function-level equivariance error under H.
    """
    layout, theta = checked_mlp(
        "detect_subgroup_symmetry", mlp, G, rep_in, rep_out, activation, tol
    )
    plain = layout.module(theta)
    classes = subgroup_classes(G)
    trials: list[SubgroupTrial] = []
    for order in sorted({c.order for c in classes}, reverse=True):
        fits: list[tuple[float, SubgroupClass, PermutationGroup]] = []
        for cls in (c for c in classes if c.order == order):
            residuals, passed = [], False
            for H in _conjugates(G, cls):
                det = detect_hidden_rep(
                    plain, H, _restrict(rep_in, H), _restrict(rep_out, H), tol=tol
                )
                residuals.append(det.residual)
                if det.success:
                    passed = True
                    fits.append((det.residual, cls, H))
            trials.append(SubgroupTrial(cls.name, order, len(residuals), min(residuals), passed))
        if fits:
            _, cls, H = min(fits, key=lambda f: f[0])
            detection = detect_hidden_rep(
                plain, H, _restrict(rep_in, H), _restrict(rep_out, H), tol=tol, x=x
            )
            return SubgroupSymmetry(G, H, cls, detection, tol, len(fits), trials)
    raise AssertionError("unreachable: every network is equivariant under the trivial group")
