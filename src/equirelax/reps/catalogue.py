"""Named representations: trivial, natural, regular, quotient (coset), vector, sign, standard."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from equirelax.groups.base import Group
from equirelax.groups.lie import MatrixLieGroup
from equirelax.groups.permutation import MAX_ELEMENTS, PermutationGroup
from equirelax.reps.base import MatrixRep, PermRep, Rep


def _need_perm_group(G: Group, what: str) -> PermutationGroup:
    if not isinstance(G, PermutationGroup):
        raise TypeError(f"{what} needs a finite PermutationGroup, got {G!r}")
    return G


def trivial(G: Group) -> PermRep:
    """The one-dimensional trivial representation (every element acts as 1).

    Always a homomorphism, so no relator check: that check would build the stabiliser chain,
    which is needless work for large groups such as S_512.
    """
    images = [np.zeros(1, dtype=np.int64) for _ in G.generators]
    return PermRep(G, images, name="trivial", check=False)


def natural(G: Group) -> Rep:
    """The defining action: permutation of the points for a permutation group, the matrices
    themselves for a matrix Lie group."""
    if isinstance(G, MatrixLieGroup):
        return vector(G)
    G = _need_perm_group(G, "natural(G)")
    return PermRep(G, G.generators, name="natural", check=False)


def regular(G: Group, limit: int = MAX_ELEMENTS) -> PermRep:
    """The regular representation: G acting on itself by left multiplication (dim = |G|)."""
    G = _need_perm_group(G, "regular(G)")
    elements = G.elements(limit)
    index = {e.tobytes(): i for i, e in enumerate(elements)}
    images = [
        np.array([index[s[e].tobytes()] for e in elements], dtype=np.int64) for s in G.generators
    ]
    return PermRep(G, images, name="regular", check=False)


def quotient(G: Group, H: PermutationGroup, limit: int = MAX_ELEMENTS) -> PermRep:
    """The action of G on the left cosets G/H (the transitive permutation rep [G/H])."""
    G = _need_perm_group(G, "quotient(G, H)")
    if not isinstance(H, PermutationGroup):
        raise TypeError(f"quotient(G, H) needs H to be a PermutationGroup, got {H!r}")
    images = G.coset_action(H, limit)
    name = f"quotient({G.name}/{H.name})"
    return PermRep(G, images, name=name, check=False)


def _defining_matrix(g: np.ndarray) -> np.ndarray:
    """ρ(g) = g (a module-level function, not a lambda, so that the rep can be pickled)."""
    return np.asarray(g, dtype=float)


def vector(G: Group) -> MatrixRep:
    """The defining (vector) representation of a matrix Lie group: ρ(g) = g."""
    if not isinstance(G, MatrixLieGroup):
        raise TypeError(f"vector(G) needs a matrix Lie group such as SO(3), got {G!r}")
    return MatrixRep(
        G,
        G.generators,
        list(G.lie_algebra),
        name="vector",
        evaluate=_defining_matrix,
        check=False,
    )


def sign(G: Group) -> MatrixRep:
    """The sign of a permutation (permutation groups) or the determinant (O(2), O(3))."""
    if isinstance(G, PermutationGroup):
        signs = [np.array([[_parity(g)]]) for g in G.generators]
        return MatrixRep(G, signs, name="sign")
    if isinstance(G, MatrixLieGroup):
        gens = [np.array([[np.sign(np.linalg.det(d))]]) for d in G.generators]
        lie = [np.zeros((1, 1)) for _ in G.lie_algebra]
        return MatrixRep(G, gens, lie, name="sign")
    raise TypeError(f"sign(G) does not support {G!r}")


def _parity(p: np.ndarray) -> float:
    seen = np.zeros(len(p), dtype=bool)
    transpositions = 0
    for i in range(len(p)):
        length = 0
        while not seen[i]:
            seen[i] = True
            i = int(p[i])
            length += 1
        transpositions += max(length - 1, 0)
    return -1.0 if transpositions % 2 else 1.0


def standard(G: PermutationGroup) -> MatrixRep:
    """The natural permutation rep restricted to the sum-zero subspace (dim = degree - 1),
    in an orthonormal basis; irreducible for S_n. A non-permutation rep of a finite group."""
    G = _need_perm_group(G, "standard(G)")
    n = G.degree
    if n < 2:
        raise ValueError("standard(G) needs a group of degree at least 2")
    basis = scipy.linalg.null_space(np.ones((1, n)))  # (n, n-1) orthonormal
    mats = []
    for g in G.generators:
        perm = np.zeros((n, n))
        perm[g, np.arange(n)] = 1.0
        mats.append(basis.T @ perm @ basis)
    return MatrixRep(G, mats, name="standard")
