"""Hessian diagnostics at a point of E_ρ: equivariant and non-equivariant curvature.

With G-symmetric data the loss of the plain MLP is invariant under the parameter action T_g of
the twisted diagonal {(ρ(g), g)}, so at a point θ ∈ E_ρ the Hessian commutes with every T_g
(Xie & Smidt, 2025; the notes' section 2.3). It is then block diagonal in the isotypic
decomposition of the parameter space: the trivial block is tangent to E_ρ (the curvature seen by
constrained training), the other blocks are the non-equivariant directions. A critical point of
the constrained loss with a negative eigenvalue in a non-trivial block is a saddle of the
unconstrained loss that relaxation can escape; if every block is positive semi-definite it is a
minimum of the unconstrained loss too, and relaxing alone will not leave it.

The isotypic components are found without a character table: the class sums Σ_{g∈K} T_g span
the centre of the group algebra, so a random combination of them (symmetrised) has one
eigenvalue per real isotypic component, and its eigenspaces are those components.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from equirelax.groups.subgroups import group_table
from equirelax.landscape.slice import EquivariantSubspace, MLPLayout

LossFn = Callable[[torch.Tensor], torch.Tensor]


def mse_loss(layout: MLPLayout, x: torch.Tensor, y: torch.Tensor) -> LossFn:
    """θ -> mean((f_θ(x) − y)²): the full-batch MSE of the MLP as a function of θ (float64)."""
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    if y.dim() == x.dim() - 1:
        y = y.unsqueeze(-1)
    if y.shape[-1] != layout.widths[-1]:
        raise ValueError(f"targets must have {layout.widths[-1]} outputs, got {tuple(y.shape)}")

    def loss(theta: torch.Tensor) -> torch.Tensor:
        return torch.mean((layout.forward(theta, x) - y) ** 2)

    return loss


def gradient_and_hessian(loss: LossFn, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The full gradient (D,) and Hessian (D, D) of ``loss`` at θ, in float64 (small D only)."""
    theta = theta.detach().to(torch.float64)
    if theta.dim() != 1:
        raise ValueError(f"θ must be a flat vector, got shape {tuple(theta.shape)}")
    t = theta.clone().requires_grad_(True)
    grad = torch.autograd.grad(loss(t), t)[0].detach()
    hess = torch.autograd.functional.hessian(loss, theta)
    return grad, 0.5 * (hess + hess.T)


@dataclass
class IsotypicBlock:
    """One isotypic component of the parameter space under the Δ_ρ action.

    ``basis``: orthonormal (D, dim) columns; ``character``: tr(T_g | block) on each conjugacy
    class of G (identity first); ``label``: ``trivial`` for the tangent block E_ρ, otherwise
    the irreducible character (per conjugacy class) of the block's irreducible constituent.
    """

    label: str
    basis: torch.Tensor
    character: list[float]
    eigenvalues: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def dim(self) -> int:
        return int(self.basis.shape[1])

    @property
    def min_eigenvalue(self) -> float:
        return float(self.eigenvalues.min()) if self.eigenvalues.size else float("inf")


def _irrep_label(character: np.ndarray, class_sizes: np.ndarray, order: int) -> str:
    """The irreducible character of an isotypic block from the block's character."""
    norm = float((class_sizes * character**2).sum()) / order
    for kind, mult_sq in (("real", norm), ("complex pair", norm / 2)):
        m = np.sqrt(mult_sq)
        if m > 0.5 and abs(m - round(m)) < 1e-6:
            chi = character / round(m)
            values = ",".join(f"{v:g}" for v in np.round(chi, 3) + 0.0)
            suffix = "" if kind == "real" else ", complex pair"
            return f"chi=({values}){suffix}"
    values = ",".join(f"{v:g}" for v in np.round(character, 3) + 0.0)
    return f"block character ({values})"


def isotypic_blocks(space: EquivariantSubspace, seed: int = 0) -> list[IsotypicBlock]:
    """The real isotypic components of the parameter space under T_g, the trivial one (E_ρ,
    with ``space.basis`` as its basis) first."""
    G = space.group
    table = group_table(G)  # type: ignore[arg-type]
    classes = table.conjugacy_classes()
    actions = [space.action(g) for g in table.elements]
    rng = np.random.default_rng(seed)
    coeff = rng.uniform(1.0, 2.0, size=len(classes))
    z = sum(float(c) * sum(actions[int(g)] for g in cls) for c, cls in zip(coeff, classes))
    sym = 0.5 * (z + z.T)
    values, vectors = torch.linalg.eigh(sym)
    values_np = values.numpy()
    scale = float(np.abs(values_np).max()) or 1.0
    cuts = np.flatnonzero(np.diff(values_np) > 1e-7 * scale) + 1
    groups = np.split(np.arange(len(values_np)), cuts)
    trivial_value = float(sum(c * len(cls) for c, cls in zip(coeff, classes)))
    class_sizes = np.array([len(c) for c in classes], dtype=float)
    reps = [int(c[0]) for c in classes]
    blocks = [IsotypicBlock("trivial", space.basis, [])]
    for idx in groups:
        if abs(float(values_np[idx].mean()) - trivial_value) < 1e-7 * scale:
            if len(idx) != space.dim:
                raise AssertionError("the trivial isotypic block does not match E_rho")
            continue
        basis = vectors[:, torch.from_numpy(idx)]
        blocks.append(IsotypicBlock("", basis, []))
    for block in blocks:
        chars = np.array([float(torch.trace(block.basis.T @ actions[r] @ block.basis))
                          for r in reps])
        block.character = chars.tolist()
        if block.label != "trivial":
            block.label = _irrep_label(chars, class_sizes, table.order)
    return blocks


@dataclass
class Classification:
    """What kind of point θ ∈ E_ρ is, for the constrained and for the unconstrained loss.

    ``kind``:

    * ``"not critical"``: the gradient norm exceeds ``grad_tol`` (relative to the loss scale,
      see :meth:`HessianSplit.classify`): training is still moving, so the point is no saddle
      and no minimum, whatever the curvature;
    * ``"escapable saddle"``: critical, and a non-equivariant block has an eigenvalue below −tol.
      With G-symmetric data the gradient has no non-equivariant part (it is reported as
      ``gradient_normal``), so the loss falls quadratically along ``escape_directions``:
      relaxation can leave E_ρ;
    * ``"saddle in E_rho"``: critical, no such direction, negative curvature along E_ρ;
    * ``"minimum"``: critical and no eigenvalue below −tol in any block: relaxation alone will
      not leave it.
    """

    kind: str
    tol: float
    grad_tol: float
    gradient_tangent: float
    gradient_normal: float
    min_tangent: float
    min_normal: float
    n_negative_tangent: int
    n_negative_normal: int
    escape_directions: torch.Tensor

    @property
    def relaxation_can_escape(self) -> bool:
        return self.kind == "escapable saddle"


@dataclass
class HessianSplit:
    """The Hessian at θ split into the tangent block (E_ρ) and the non-equivariant blocks.

    ``coupling``: the largest off-diagonal block norm relative to ||H|| (round-off when the data
    is G-symmetric and θ ∈ E_ρ; large values mean the split does not apply);
    ``gradient_tangent``/``gradient_normal``: norms of the gradient's parts in and out of E_ρ.
    """

    eigenvalues: np.ndarray
    blocks: list[IsotypicBlock]
    coupling: float
    gradient_norm: float
    gradient_tangent: float
    gradient_normal: float
    hessian: torch.Tensor

    @property
    def tangent(self) -> IsotypicBlock:
        return self.blocks[0]

    @property
    def normal_blocks(self) -> list[IsotypicBlock]:
        return self.blocks[1:]

    @property
    def min_tangent(self) -> float:
        return self.tangent.min_eigenvalue

    @property
    def min_normal(self) -> float:
        return min((b.min_eigenvalue for b in self.normal_blocks), default=float("inf"))

    def classify(
        self,
        tol: float | None = None,
        rel_tol: float = 1e-3,
        grad_tol: float | None = None,
        rel_grad_tol: float = 1e-5,
        loss_scale: float | None = None,
    ) -> Classification:
        """Classify θ (see :class:`Classification`); eigenvalues within ``tol`` (default
        ``rel_tol`` · max |λ|, at least 1e-10) of zero count as flat.

        θ is critical when the gradient norm is at most ``grad_tol``; by default
        ``rel_grad_tol`` · ``loss_scale`` (at least 1e-12), with ``loss_scale`` the size of the
        loss, e.g. the target variance of an MSE (default 1), so that the same setting judges a
        target of variance 68 and one of variance 0.5 alike. Non-critical points are labelled
        ``"not critical"`` before any curvature is looked at: negative curvature at a point the
        gradient is leaving does not make it a saddle.
        """
        for name, value in (("rel_tol", rel_tol), ("rel_grad_tol", rel_grad_tol),
                            ("tol", tol), ("grad_tol", grad_tol), ("loss_scale", loss_scale)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if grad_tol is None:
            grad_tol = max(rel_grad_tol * (1.0 if loss_scale is None else loss_scale), 1e-12)
        scale = float(np.abs(self.eigenvalues).max()) if self.eigenvalues.size else 0.0
        tol = max(rel_tol * scale, 1e-10) if tol is None else tol
        n_tan = int((self.tangent.eigenvalues < -tol).sum())
        n_norm = sum(int((b.eigenvalues < -tol).sum()) for b in self.normal_blocks)
        escape = []
        for block in self.normal_blocks:
            values, vectors = torch.linalg.eigh(block.basis.T @ self.hessian @ block.basis)
            neg = values < -tol
            if bool(neg.any()):
                escape.append(block.basis @ vectors[:, neg])
        directions = (torch.cat(escape, dim=1) if escape
                      else torch.zeros(self.hessian.shape[0], 0, dtype=torch.float64))
        if self.gradient_norm > grad_tol:
            kind = "not critical"
        elif n_norm:
            kind = "escapable saddle"
        elif n_tan:
            kind = "saddle in E_rho"
        else:
            kind = "minimum"
        return Classification(kind, tol, grad_tol, self.gradient_tangent, self.gradient_normal,
                              self.min_tangent, self.min_normal, n_tan, n_norm, directions)


def split_hessian(
    hessian: torch.Tensor, gradient: torch.Tensor, space: EquivariantSubspace
) -> HessianSplit:
    """Split a Hessian (and gradient) at a point of E_ρ into isotypic blocks."""
    d = space.n_params
    if hessian.shape != (d, d) or gradient.shape != (d,):
        raise ValueError(f"expected a ({d}, {d}) Hessian and a ({d},) gradient for {space!r}, "
                         f"got {tuple(hessian.shape)} and {tuple(gradient.shape)}")
    hessian = hessian.to(torch.float64)
    gradient = gradient.to(torch.float64)
    blocks = isotypic_blocks(space)
    norm = float(torch.linalg.matrix_norm(hessian, ord=2)) or 1.0
    coupling = 0.0
    for i, a in enumerate(blocks):
        sub = a.basis.T @ hessian @ a.basis
        a.eigenvalues = torch.linalg.eigvalsh(0.5 * (sub + sub.T)).numpy()
        for b in blocks[i + 1 :]:
            off = float(torch.linalg.matrix_norm(a.basis.T @ hessian @ b.basis, ord=2))
            coupling = max(coupling, off / norm)
    tangent = space.project(gradient)
    return HessianSplit(
        eigenvalues=torch.linalg.eigvalsh(hessian).numpy(),
        blocks=blocks,
        coupling=coupling,
        gradient_norm=float(gradient.norm()),
        gradient_tangent=float(tangent.norm()),
        gradient_normal=float((gradient - tangent).norm()),
        hessian=hessian,
    )


def hessian_split(loss: LossFn, theta: torch.Tensor, space: EquivariantSubspace) -> HessianSplit:
    """Full Hessian of ``loss`` at θ, split into the tangent and non-equivariant blocks."""
    grad, hess = gradient_and_hessian(loss, theta)
    return split_hessian(hess, grad, space)
