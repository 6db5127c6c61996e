"""Orthonormal basis of equivariant maps between two (small) representations, by a null space.

W is equivariant iff ρ_out(g) W = W ρ_in(g) for the discrete generators g and
dρ_out(A) W = W dρ_in(A) for the Lie algebra basis A. With row-major vec(W) each condition is a
linear constraint (M_out ⊗ I − I ⊗ M_inᵀ) vec(W) = 0; the solution space is the null space of the
stacked constraints. Used for the irreducible-size blocks of non-permutation representations;
larger representations are split into blocks first (``equirelax.homspace.space``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from equirelax.reps.base import Rep


def constraint_matrix(rep_in: Rep, rep_out: Rep) -> np.ndarray:
    """The stacked constraints on row-major vec(W) for W: rep_in -> rep_out."""
    d_in, d_out = rep_in.dim, rep_out.dim
    eye_in, eye_out = np.eye(d_in), np.eye(d_out)
    blocks = []
    for m_in, m_out in zip(rep_in.generator_matrices(), rep_out.generator_matrices()):
        blocks.append(np.kron(m_out, eye_in) - np.kron(eye_out, m_in.T))
    for a_in, a_out in zip(rep_in.lie_matrices(), rep_out.lie_matrices()):
        blocks.append(np.kron(a_out, eye_in) - np.kron(eye_out, a_in.T))
    if not blocks:
        return np.zeros((0, d_out * d_in))
    return np.concatenate(blocks, axis=0)


def nullspace_basis(rep_in: Rep, rep_out: Rep, rtol: float = 1e-9) -> np.ndarray:
    """Orthonormal basis (k, d_out, d_in) of equivariant maps (Frobenius inner product)."""
    c = constraint_matrix(rep_in, rep_out)
    d = rep_out.dim * rep_in.dim
    if c.shape[0] == 0:
        q = np.eye(d)
    else:
        # the Gram matrix has the same null space and is only d x d, however many constraints
        gram = c.T @ c
        vals, vecs = np.linalg.eigh(gram)
        scale = max(float(vals[-1]), 1.0)
        q = vecs[:, vals <= rtol * scale]
        if q.shape[1]:
            q = _clean(q)
    return q.T.reshape(-1, rep_out.dim, rep_in.dim)


def _clean(q: np.ndarray) -> np.ndarray:
    """Re-orthonormalise and sign-fix a basis: deterministic, exact to round-off."""
    q, _ = np.linalg.qr(q)
    q = scipy.linalg.orth(q)
    # deterministic signs: largest-magnitude entry of each vector positive
    idx = np.argmax(np.abs(q), axis=0)
    signs = np.sign(q[idx, np.arange(q.shape[1])])
    signs[signs == 0] = 1.0
    return q * signs
