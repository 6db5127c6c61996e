"""Split a representation of SO(2), O(2), SO(3) or O(3) into real irreps, with an orthogonal
change of basis.

``decompose(rep)`` returns Q (orthogonal) and the standard irreps of
:mod:`equirelax.reps.real_irreps` such that ``rep.matrix(g) = Qᵀ (⊕ irreps)(g) Q`` for every g
(and likewise for the Lie algebra): ``Q @ x`` are the coordinates of ``x`` in irreps form, by
ascending degree with the copies of each irrep adjacent. Equivariant maps are then block diagonal by
Schur's lemma, which is how :func:`equirelax.hom` builds them for tensor representations whose
dense null space would be large (V⊗V⊗V⊗V: a 6561 x 6561 problem; here an 81 x 81 one).

Only the rep's Lie algebra and discrete generators are used, never sampled elements, so the
result is exact to round-off. How:

* SO(3)/O(3): the Casimir -Σ L_k² is l(l+1) on the irreps of degree l; its eigenspaces are the
  isotypic components (split further by the parity for O(3)). In a component, the kernel of L_z
  holds one unit vector per copy (the weight-0 vector), and orthonormal weight-0 vectors generate
  orthogonal copies. Each copy's basis is generated from its weight-0 vector by the Gram-Schmidt
  recursion that, in the standard irrep, turns the weight-0 vector into an orthonormal basis (the
  same recursion maps into any copy, because an intertwiner is an isometry up to scale).
* SO(2)/O(2): -J² is k² on the frequency-k component; each copy is a pair (u, J u / k), with u
  from the real Schur form of J (SO(2)) or the +1 eigenspace of the reflection (O(2)).

Results are cached by representation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.linalg

from equirelax.groups.lie import MatrixLieGroup
from equirelax.reps.base import Rep
from equirelax.reps.real_irreps import (
    GROUPS,
    IrrepLabel,
    check_group,
    so3_generators,
    standard_irrep,
)

#: Casimir eigenvalues and commuting-operator eigenvalues farther than this from the values an
#: orthogonal representation must have are refused (they are integers, or ±1).
_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Decomposition:
    """``rep`` = Qᵀ (⊕ parts) Q: the irreps (in order), their labels and Q = ``change_of_basis``.

    ``multiplicities`` maps each label to its number of copies; the copies of one label are
    adjacent in ``parts``, degrees ascending (parity +1 before -1 within a degree).
    """

    rep: Rep
    labels: tuple[IrrepLabel, ...]
    parts: tuple[Rep, ...]
    change_of_basis: np.ndarray

    @property
    def multiplicities(self) -> dict[IrrepLabel, int]:
        """Number of copies of each irrep, by label (sorted)."""
        counts: dict[IrrepLabel, int] = {}
        for label in self.labels:
            counts[label] = counts.get(label, 0) + 1
        return counts


_CACHE: OrderedDict[Hashable, Decomposition] = OrderedDict()
_CACHE_SIZE = 256


def decompose(rep: Rep) -> Decomposition:
    """The decomposition of ``rep`` (a representation of SO(2), O(2), SO(3) or O(3)) into irreps.

    Cached by representation. Raises ValueError when the group is not one of these, or when the
    matrices are not those of an orthogonal representation (a Casimir eigenvalue that is not
    l(l+1), or k² for SO(2)/O(2)).
    """
    if not isinstance(rep, Rep):
        raise TypeError(f"decompose() needs a Rep, got {type(rep).__name__}")
    group = check_group(rep.group)
    key = rep.key
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    if group.name in ("SO(3)", "O(3)"):
        pieces = _decompose_so3(rep)
    else:
        pieces = _decompose_so2(rep)
    labels: list[IrrepLabel] = []
    rows: list[np.ndarray] = []
    for label, copies in pieces:  # copies: (d, m, size) images of the standard basis
        m = copies.shape[1]
        labels.extend([label] * m)
        rows.append(copies.transpose(1, 2, 0).reshape(-1, rep.dim))
    q = np.concatenate(rows, axis=0) if rows else np.zeros((0, rep.dim))
    if q.shape != (rep.dim, rep.dim):  # pragma: no cover - guarded by the counts above
        raise AssertionError(f"found {q.shape[0]} of {rep.dim} dimensions in {rep!r}")
    parts = tuple(standard_irrep(group, label) for label in labels)
    result = Decomposition(rep, tuple(labels), parts, q)
    _CACHE[key] = result
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result


def is_irreducible(rep: Rep) -> bool:
    """Whether ``rep`` (of SO(2), O(2), SO(3) or O(3)) is irreducible, from its matrices alone.

    Cheaper than :func:`decompose`: a Casimir that is a scalar matching the dimension and
    discrete generators that are scalars (SO(3)/O(3)); dimension 1, or 2 with J² = -k² I, k >= 1
    (SO(2)/O(2)).
    """
    group = check_group(rep.group)
    if rep.dim == 1:
        return True
    lie = rep.lie_matrices()
    if group.name in ("SO(3)", "O(3)"):
        casimir = -sum(a @ a for a in lie)
        value = float(casimir[0, 0])
        if not np.allclose(casimir, value * np.eye(rep.dim), atol=_TOLERANCE):
            return False
        l = _degree(value)
        scalars = all(
            np.allclose(g, g[0, 0] * np.eye(rep.dim), atol=_TOLERANCE)
            for g in rep.generator_matrices()
        )
        return l is not None and 2 * l + 1 == rep.dim and scalars
    if rep.dim != 2:
        return False
    square = lie[0] @ lie[0]
    return bool(
        square[0, 0] < -0.5 and np.allclose(square, square[0, 0] * np.eye(2), atol=_TOLERANCE)
    )


def _degree(casimir: float) -> int | None:
    """l with l(l+1) = ``casimir`` (within the tolerance), or None."""
    l = int(np.rint((-1.0 + np.sqrt(1.0 + 4.0 * max(casimir, 0.0))) / 2.0))
    return l if abs(l * (l + 1) - casimir) < _TOLERANCE * max(1.0, casimir) else None


def _eigenspaces(
    sym: np.ndarray, value_of, what: str, rep: Rep, expected: str
) -> dict[int, np.ndarray]:
    """Orthonormal eigenvectors of the symmetric ``sym``, grouped by ``value_of(eigenvalue)``."""
    vals, vecs = np.linalg.eigh((sym + sym.T) / 2)
    groups: dict[int, list[int]] = {}
    for i, v in enumerate(vals):
        label = value_of(v)
        if label is None:
            raise ValueError(
                f"{rep!r} is not an orthogonal representation of {rep.group!r}: its {what} has "
                f"the eigenvalue {v:.6g}, expected {expected}"
            )
        groups.setdefault(label, []).append(i)
    return {label: vecs[:, idx] for label, idx in sorted(groups.items())}


def _sign(value: float) -> int | None:
    return 1 if abs(value - 1) < _TOLERANCE else -1 if abs(value + 1) < _TOLERANCE else None


def _split_by_parity(rep: Rep, space: np.ndarray) -> dict[int, np.ndarray]:
    """The ±1 eigenspaces of the (single, central or reflecting) discrete generator in ``space``
    (all of it under parity +1 when the group has no discrete generator)."""
    gens = rep.generator_matrices()
    if not gens:
        return {1: space}
    restricted = space.T @ gens[0] @ space
    found = _eigenspaces(restricted, _sign, "discrete generator", rep, "+1 or -1")
    return {p: space @ v for p, v in sorted(found.items(), key=lambda item: -item[0])}


# -- SO(3), O(3) ----------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _spanning_recipe(l: int) -> tuple[list[tuple[int, int, np.ndarray, float]], np.ndarray]:
    """How the standard irrep of degree l is spanned from its weight-0 vector v0.

    Returns the steps of a pivoted Gram-Schmidt recursion (each new
    vector = (L_k e_parent - Σ_i c_i e_i) / norm, picking the best-conditioned candidate) and
    the matrix E whose columns e_0 = v0, e_1, ... are the resulting orthonormal basis.
    """
    gens = so3_generators(l)
    size = 2 * l + 1
    v0 = scipy.linalg.null_space(gens[2])[:, 0]
    v0 = v0 * np.sign(v0[np.argmax(np.abs(v0))])
    basis = [v0]
    steps: list[tuple[int, int, np.ndarray, float]] = []
    while len(basis) < size:
        e = np.stack(basis, axis=1)
        best = None
        for parent in range(len(basis)):
            for k in range(3):
                v = gens[k] @ basis[parent]
                coeffs = e.T @ v
                norm = float(np.linalg.norm(v - e @ coeffs))
                if best is None or norm > best[3]:
                    best = (parent, k, coeffs, norm)
        assert best is not None and best[3] > 1e-3, "the weight-0 vector must generate the irrep"
        parent, k, coeffs, norm = best
        basis.append((gens[k] @ basis[parent] - e @ coeffs) / norm)
        steps.append(best)
    return steps, np.stack(basis, axis=1)


def _decompose_so3(rep: Rep) -> list[tuple[IrrepLabel, np.ndarray]]:
    lie = rep.lie_matrices()
    casimir = -sum(a @ a for a in lie)
    pieces = []
    for l, space in _eigenspaces(
        casimir, _degree, "Casimir -ΣL²", rep, "l(l+1) for an integer l >= 0"
    ).items():
        size = 2 * l + 1
        for parity, component in _split_by_parity(rep, space).items():
            n = component.shape[1]
            if n % size:
                raise ValueError(
                    f"{rep!r} is not an orthogonal representation of {rep.group!r}: its degree-{l}"
                    f" part has dimension {n}, not a multiple of {size}"
                )
            label = IrrepLabel(l, parity if rep.group.name == "O(3)" else 1)
            pieces.append((label, _copies_so3(lie, component, l, n // size, rep)))
    return pieces


def _copies_so3(
    lie: list[np.ndarray], component: np.ndarray, l: int, m: int, rep: Rep
) -> np.ndarray:
    """Images (d, m, 2l+1) of the standard basis of degree l in each of the m copies."""
    if l == 0:
        return component[:, :, None]
    restricted = [component.T @ a @ component for a in lie]
    z = restricted[2]
    vals, vecs = np.linalg.eigh(z.T @ z)  # the kernel of L_z: one weight-0 vector per copy
    if vals[m - 1] > _TOLERANCE or (m < vals.shape[0] and vals[m] < 0.5):
        raise ValueError(f"{rep!r}: the degree-{l} part does not have {m} weight-0 vectors")
    steps, e_std = _spanning_recipe(l)
    generated = [vecs[:, :m]]
    for parent, k, coeffs, norm in steps:
        v = restricted[k] @ generated[parent]
        for i, c in enumerate(coeffs):
            v = v - c * generated[i]
        generated.append(v / norm)
    # generated[j][:, c] is copy c's image of e_std[:, j]; the standard e_i = Σ_j E_ij e_j
    images = np.einsum("njc,ij->nci", np.stack(generated, axis=1), e_std)
    return np.einsum("dn,nci->dci", component, images)


# -- SO(2), O(2) ----------------------------------------------------------------------------------
def _frequency(value: float) -> int | None:
    k = int(np.rint(np.sqrt(max(value, 0.0))))
    return k if abs(k * k - value) < _TOLERANCE * max(1.0, value) else None


def _decompose_so2(rep: Rep) -> list[tuple[IrrepLabel, np.ndarray]]:
    (j,) = rep.lie_matrices()
    pieces = []
    for k, space in _eigenspaces(-(j @ j), _frequency, "-J²", rep, "k² for an integer k").items():
        if k == 0:
            for parity, component in _split_by_parity(rep, space).items():
                label = IrrepLabel(0, parity)
                pieces.append((label, component[:, :, None]))
            continue
        n = space.shape[1]
        if n % 2:  # pragma: no cover - -J² has even multiplicity for antisymmetric J
            raise ValueError(f"{rep!r}: the frequency-{k} part has odd dimension {n}")
        s = space.T @ j @ space / k  # a complex structure: s² = -1, s antisymmetric
        gens = rep.generator_matrices()
        if gens:  # O(2): u in the +1 eigenspace of the reflection, J u / k in the -1 one
            first = _split_by_parity(rep, space)[1]
            u = space.T @ first
        else:  # SO(2): the real Schur form pairs the coordinates into (u, s u) planes
            _, z = scipy.linalg.schur(s, output="real")
            u = z[:, 0::2]
        if u.shape[1] != n // 2:
            raise ValueError(f"{rep!r}: the frequency-{k} part does not split into {n // 2} planes")
        copies = np.stack([space @ u, space @ (s @ u)], axis=2)  # (d, m, 2)
        pieces.append((IrrepLabel(k), copies))
    return pieces


# -- summands in irreps form ----------------------------------------------------------------------
_IRREDUCIBLE: OrderedDict[Hashable, bool] = OrderedDict()


def _irreducible_summand(part: Rep) -> bool:
    key = part.key
    if key not in _IRREDUCIBLE:
        _IRREDUCIBLE[key] = is_irreducible(part)
        if len(_IRREDUCIBLE) > 4 * _CACHE_SIZE:
            _IRREDUCIBLE.popitem(last=False)
    return _IRREDUCIBLE[key]


def split_into_irreps(rep: Rep) -> tuple[list[Rep], np.ndarray | None]:
    """The summands of ``rep``, each reducible one replaced by its irreps, and the change of basis.

    Returns ``(parts, Q)`` with ``rep = Qᵀ (⊕ parts) Q``; Q is block diagonal (one block per
    summand) and None when no summand needed splitting (a rep already in irreps form, such as
    ``er.reps.irreps(G, "128x0e+64x1o")``, keeps its coordinates). Representations of other
    groups (finite ones) are returned as they are: ``(rep.parts, None)``.
    """
    if not isinstance(rep.group, MatrixLieGroup) or rep.group.name not in GROUPS:
        return list(rep.parts), None
    parts: list[Rep] = []
    blocks: list[np.ndarray] = []
    split = False
    for part in rep.parts:
        if _irreducible_summand(part):
            parts.append(part)
            blocks.append(np.eye(part.dim))
            continue
        found = decompose(part)
        parts.extend(found.parts)
        blocks.append(found.change_of_basis)
        split = True
    if not split:
        return parts, None
    return parts, scipy.linalg.block_diag(*blocks)
