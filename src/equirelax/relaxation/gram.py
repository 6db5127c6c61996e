"""The relaxation penalties of a dense free term from the inputs' Gram matrix, in weight space.

For an affine free term x ↦ W x + b, write W̃ = [W | b] and x̃ = [x; 1]; a discrete generator acts
on x̃ by Ã = diag(A_in, 1) and a Lie algebra element by Ã = diag(A_in, 0) (the derivative of the
trivial action on the constant), and on outputs by A_out. The generator term of one row is then
||L x̃||² with

    L = W̃ Ã − A_out W̃,

and stacking S = [W̃; L_1; ...; L_K] gives the norm and all generator squares at once from the
rows' Gram matrix G̃ = X̃ᵀ X̃, as the blocks of ⟨S, S G̃⟩: (K+1)·d_out·d_in² multiply-adds where the
data path (each generator applied to the rows, then W) costs (K+1)·d_out·d_in·rows, so this is
the cheap way when a batch has more rows than the layer has input features. The L are index
gathers of W̃ (generators are permutations or sparse). Nothing is subtracted after squaring: an
equivariant W̃ gives exactly 0, and small residuals keep their accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from equirelax.relaxation.actions import stacked_matrix_map

#: The Gram path's fixed cost in multiply-adds: it runs about twenty more small tensor operations
#: (forward and backward) than the data path, a few microseconds each on a CPU, about what a
#: million multiply-adds cost. Without it a layer with few input features picks the Gram path on
#: a handful of rows (a sketch) where the data path takes less time.
GRAM_OVERHEAD = 1_000_000


def _augment(m: np.ndarray, corner: float) -> np.ndarray:
    out = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
    out[:-1, :-1] = m
    out[-1, -1] = corner
    return out


class GramPenalty:
    """Generator/Lie and norm squares of a dense free term (W, b) on given input rows.

    ``mats_in``/``mats_out``: the paired action matrices, the ``n_discrete`` group generators
    first, then the Lie algebra basis (as :class:`FeatureAction` ``.matrices`` holds them).
    """

    def __init__(
        self,
        mats_in: Sequence[np.ndarray],
        mats_out: Sequence[np.ndarray],
        n_discrete: int,
        bias: bool,
    ) -> None:
        if len(mats_in) != len(mats_out):
            raise ValueError(f"expected paired action matrices, got {len(mats_in)} input and "
                             f"{len(mats_out)} output matrices")
        self.bias = bias
        self.k = len(mats_in)
        if not self.k:
            return
        tilde = [_augment(np.asarray(a), 1.0 if i < n_discrete else 0.0) if bias
                 else np.asarray(a) for i, a in enumerate(mats_in)]
        # on the last axis: W̃ ↦ (W̃ Ã_k)_k from the Ã_kᵀ, W̃ᵀ ↦ ((A_out,k W̃)ᵀ)_k from the A_out,k
        self._right = stacked_matrix_map([np.ascontiguousarray(a.T) for a in tilde])
        self._left = stacked_matrix_map([np.asarray(a) for a in mats_out])

    @staticmethod
    def costs(rows: int, d_in: int, d_out: int, k: int, bias: bool = False) -> tuple[int, int]:
        """Multiply-adds of one evaluation with its weight gradient, on the rows (the data path:
        W on the rows and on each of the k generators' images of them) and from the Gram matrix
        (forming it, then the stacked product)."""
        data = 2 * (k + 1) * d_out * d_in * rows
        d_in += bias
        return data, rows * d_in * d_in + 2 * (k + 1) * d_out * d_in * d_in

    def cheaper_than_data(self, rows: int, d_in: int, d_out: int) -> bool:
        """Whether this costs less than the data path: fewer multiply-adds once the Gram path's
        fixed cost, :data:`GRAM_OVERHEAD`, is added to its own."""
        data, gram = self.costs(rows, d_in, d_out, self.k, self.bias)
        return gram + GRAM_OVERHEAD < data

    def stacked(self, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """S = [W̃; L_1; ...; L_K], shape ((K+1)·d_out, d_in (+1 with a bias))."""
        if b is not None:
            w = torch.cat([w, b.reshape(-1, 1)], dim=1)
        if not self.k:
            return w
        right = self._right(w).transpose(0, 1)  # (K, d_out, d_in)
        left = self._left(w.T).permute(1, 2, 0)  # (K, d_out, d_in)
        return torch.cat([w.unsqueeze(0), right - left]).reshape(-1, w.shape[1])

    def __call__(
        self,
        rows: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        const: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(Σ_A ||(W̃ Ã − A_out W̃) x̃||², Σ ||W̃ x̃||²) over ``rows`` (m, d_in).

        ``const`` (m,): the constant coordinate of each augmented row x̃ = [x; const] when it is
        not 1: for sketched rows SᵀX̃ = [SᵀX, Sᵀ1] the Gram matrix is X̃ᵀSSᵀX̃.
        """
        if (b is not None) != self.bias:
            raise ValueError(f"this penalty was built for bias={self.bias}, got "
                             f"bias={b is not None}")
        x = rows.to(w.dtype)
        if b is not None:
            ones = (x.new_ones(x.shape[0], 1) if const is None
                    else const.to(x.dtype).reshape(-1, 1))
            x = torch.cat([x, ones], dim=1)
        s = self.stacked(w, b)
        squares = (s * (s @ (x.T @ x))).sum(dim=1)
        d_out = w.shape[0]
        # each block is a PSD quadratic form; clamping keeps round-off of a (near-)zero one from
        # going negative (the penalties take a square root)
        norm = squares[:d_out].sum().clamp_min(0.0)
        return (squares[d_out:].sum().clamp_min(0.0) if self.k else None), norm
