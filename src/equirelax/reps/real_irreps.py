"""The real irreducible representations of SO(2), O(2), SO(3) and O(3), built without e3nn.

These are the standard forms into which :func:`equirelax.reps.irrep_decomposition.decompose`
splits any representation of these groups. Each is labelled by an :class:`IrrepLabel`:

* SO(3), O(3): degree ``l`` (dimension 2l+1) and, for O(3), the parity ``p`` = ±1 by which the
  inversion -I acts. The Lie algebra acts by real antisymmetric matrices obtained from the
  angular-momentum matrices of the complex basis |l, m> by the unitary change to a real basis.
  For l = 0 and l = 1 the matrices are exactly those of e3nn's ``0e``/``1o`` irreps (for l = 1:
  the vector representation itself), so such summands of ``er.reps.irreps`` and ``vector`` are
  recognised as already standard.
* SO(2): frequency ``k`` >= 0; k = 0 is the trivial rep, k >= 1 the rotation by kθ on R².
* O(2): k = 0 with the reflection acting by ``p`` = ±1 (trivial, determinant), and k >= 1, the
  rotation by kθ with the reflection diag(1, -1).

For SO(3) and O(3) every real irrep is absolutely irreducible (its commutant is the scalars); the
2-dimensional irreps of SO(2) have the commutant span{I, J} (complex multiplication).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from equirelax.groups.lie import SO, MatrixLieGroup
from equirelax.reps.base import MatrixRep, Rep

#: The groups whose irreps this module knows, by ``group.name``.
GROUPS = ("SO(2)", "O(2)", "SO(3)", "O(3)")


@dataclass(frozen=True, order=True)
class IrrepLabel:
    """An irrep of one of :data:`GROUPS`: its degree (l or k) and parity (+1 where none applies)."""

    degree: int
    parity: int = 1

    def dim(self, group: MatrixLieGroup) -> int:
        """Dimension of the irrep: 2l+1 for SO(3)/O(3); 1 for k = 0, else 2, for SO(2)/O(2)."""
        if group.name in ("SO(3)", "O(3)"):
            return 2 * self.degree + 1
        return 1 if self.degree == 0 else 2


def check_group(group: object) -> MatrixLieGroup:
    """``group`` when it is one of :data:`GROUPS`, else a ValueError naming what it got."""
    if not isinstance(group, MatrixLieGroup) or group.name not in GROUPS:
        raise ValueError(f"real irreps are known for {', '.join(GROUPS)}; got {group!r}")
    return group


def check_label(group: MatrixLieGroup, label: IrrepLabel) -> None:
    """Fail early on a label that names no irrep of ``group``."""
    if label.degree < 0:
        raise ValueError(f"the degree of an irrep must be >= 0, got {label.degree}")
    if label.parity not in (1, -1):
        raise ValueError(f"the parity of an irrep must be +1 or -1, got {label.parity}")
    has_parity = group.name == "O(3)" or (group.name == "O(2)" and label.degree == 0)
    if not has_parity and label.parity != 1:
        raise ValueError(
            f"{group.name} has no irrep of degree {label.degree} with parity -1 "
            "(parity exists for O(3), and for the degree-0 irreps of O(2))"
        )


@lru_cache(maxsize=64)
def so3_generators(l: int) -> np.ndarray:
    """Real antisymmetric (3, 2l+1, 2l+1) matrices of L_x, L_y, L_z on the irrep of degree l.

    They satisfy the commutation relations of ``SO(3).lie_algebra`` ([L_x, L_y] = L_z, ...). For
    l = 1 they are that algebra itself (the vector representation).
    """
    if l < 0:
        raise ValueError(f"l must be >= 0, got {l}")
    if l == 1:
        return SO(3).lie_algebra
    m = np.arange(-l, l + 1, dtype=float)
    # the Hermitian angular momentum J_k in the complex basis |l, m>, m = -l..l
    raising = np.diag(np.sqrt(l * (l + 1) - m[:-1] * (m[:-1] + 1)), -1)  # J_+ |m> ∝ |m+1>
    jx = (raising + raising.T) / 2
    jy = (raising - raising.T) / 2j
    jz = np.diag(m).astype(complex)
    # the unitary change to a real basis: cos-like (m > 0), sin-like (m < 0), |0>
    u = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    u[l, l] = 1.0
    for mu in range(1, l + 1):
        sign = (-1.0) ** mu
        u[l + mu, l - mu], u[l + mu, l + mu] = 1 / np.sqrt(2), sign / np.sqrt(2)
        u[l - mu, l - mu], u[l - mu, l + mu] = 1j / np.sqrt(2), -1j * sign / np.sqrt(2)
    # the anti-Hermitian L_k = -i J_k (exp(θ L_z) rotates by θ about z), in the real basis
    mats = np.stack([u @ (-1j * j) @ u.conj().T for j in (jx, jy, jz)])
    if np.abs(mats.imag).max() > 1e-12:  # pragma: no cover - a convention error, not input
        raise AssertionError("the real form of the SO(3) generators is not real")
    return np.ascontiguousarray(mats.real)


@lru_cache(maxsize=256)
def _standard_irrep(group: MatrixLieGroup, label: IrrepLabel) -> MatrixRep:
    name = group.name
    if name in ("SO(3)", "O(3)"):
        lie = list(so3_generators(label.degree))
        size = 2 * label.degree + 1
        gens = [label.parity * np.eye(size) for _ in group.generators]
        suffix = ("e" if label.parity == 1 else "o") if name == "O(3)" else ""
        return MatrixRep(group, gens, lie, name=f"D{label.degree}{suffix}", check=False)
    k = label.degree
    if k == 0:
        gens = [np.array([[float(label.parity)]]) for _ in group.generators]
        suffix = ("+" if label.parity == 1 else "-") if name == "O(2)" else ""
        return MatrixRep(group, gens, [np.zeros((1, 1))], name=f"R0{suffix}", check=False)
    rotation = np.array([[0.0, -k], [k, 0.0]])
    gens = [np.diag([1.0, -1.0]) for _ in group.generators]
    return MatrixRep(group, gens, [rotation], name=f"R{k}", check=False)


#: The standard irreps made so far, by ``key``: what :func:`standard_label` recognises.
_LABELS: dict[Hashable, tuple[Hashable, IrrepLabel]] = {}


def standard_label(rep: Rep) -> IrrepLabel | None:
    """The label of ``rep`` when it is one of this module's standard irreps (same matrices), else
    None."""
    found = _LABELS.get(rep.key)
    return found[1] if found is not None and found[0] == rep.group.key else None


def commutant_basis(group: MatrixLieGroup, label: IrrepLabel) -> np.ndarray:
    """Orthonormal basis (k, d, d) of the equivariant maps from the standard irrep to itself.

    Schur's lemma for real irreps: the scalars (k = 1, ``I/√d``), except for the 2-dimensional
    irreps of SO(2), whose commutant is the complex numbers span{I, J} (k = 2).
    """
    rep = standard_irrep(group, label)
    eye = np.eye(rep.dim)
    if group.name == "SO(2)" and label.degree > 0:
        turn = rep.lie_matrices()[0] / label.degree
        return np.stack([eye, turn]) / np.sqrt(2.0)
    return eye[None] / np.sqrt(rep.dim)


def standard_irrep(group: MatrixLieGroup, label: IrrepLabel) -> MatrixRep:
    """The real irrep of ``group`` named by ``label``, in the standard form of this module.

    Cached: the same label gives the same object (and the same ``key``), so summands of the same
    type found in different representations are recognised as one type.
    """
    group = check_group(group)
    check_label(group, label)
    rep = _standard_irrep(group, label)
    _LABELS.setdefault(rep.key, (group.key, label))
    return rep
