"""The two L2 priors of Residual Pathway Priors, on the dense weights of each pathway.

Finzi et al. (2021) put Gaussian priors on the weights of the two pathways of a layer,
``x ↦ W_eq x + W_free x``: a broad one on the equivariant weight and a narrow one on the free
weight, i.e. the penalty ``equiv_wd · ||W_eq||²_F + basic_wd · ||W_free||²_F`` (their scripts
select the parameters ``w_equiv`` and ``w_basic``: weights only, no bias). The prior on W_eq must
be on the dense (d_out, d_in) matrix, not on whatever parameters a layer stores: an
:class:`~equirelax.nn.EquivariantLinear` stores one coefficient per basis map, and the squared
norm of its coefficients misses the sizes of the orbits (an orbit of 10 weight entries counts
once instead of 10 times), which shifts the balance between the two pathways layer by layer.

For a layer that stores coefficients ``c`` in a basis ``B_1 … B_k`` of its equivariant maps,
``||Σ_i c_i B_i||²_F = cᵀ G c`` with the basis Gram matrix ``G_ij = <B_i, B_j>``, which is
computed once per space and cached: the dense weight is never materialised. For an orbit basis
G is diagonal (the orbit sizes); for the block (Schur) construction it is a Kronecker product of
identities with the small Gram matrices of the atomic bases.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from torch import nn

from equirelax.homspace.partition import PartitionHomSpace
from equirelax.homspace.space import BlockHomSpace, HomSpace, OrbitHomSpace
from equirelax.relaxation.registry import registration


class BasisGram:
    """The quadratic form ``c ↦ cᵀ G c = ||Σ_i c_i B_i||²_F`` of one hom-space's basis.

    Keeps only G's structure (a diagonal, per-block atomic Gram matrices, or for other spaces a
    dense matrix), as float64 numpy, and caches its tensors per device and dtype.
    """

    def __init__(self, space: HomSpace) -> None:
        self.dim = space.dim
        self.diagonal: np.ndarray | None = None
        self.blocks: list[tuple[int, int, np.ndarray]] = []  # (start, m_o·m_i, atomic Gram)
        self.dense: np.ndarray | None = None
        if isinstance(space, OrbitHomSpace | PartitionHomSpace):
            # B_i is the 0/1 indicator of orbit i: <B_i, B_j> = δ_ij · |orbit i|
            self.diagonal = np.asarray(space.counts, dtype=np.float64)
        elif isinstance(space, BlockHomSpace):
            # the weight block of copies (a, b) of a pair of types is Σ_k C_abk B_k: distinct
            # (a, b) sit at disjoint entries, so G is block diagonal with the atomic Grams
            for basis, _, _, m_o, m_i, start, _size in space.blocks:
                atom = np.einsum("kij,lij->kl", basis, basis)
                self.blocks.append((start, m_o * m_i, atom))
        else:
            b = space.basis.reshape(space.dim, -1).double()
            self.dense = (b @ b.T).numpy()
        self._tensors: dict[tuple, list[torch.Tensor]] = {}

    def _on(self, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
        key = (device, dtype)
        if key not in self._tensors:
            arrays = ([self.diagonal] if self.diagonal is not None
                      else [self.dense] if self.dense is not None
                      else [atom for _, _, atom in self.blocks])
            self._tensors[key] = [torch.from_numpy(a).to(device=device, dtype=dtype)
                                  for a in arrays]
        return self._tensors[key]

    def sq_norm(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``||Σ_i c_i B_i||²_F`` for coefficients of shape (dim,), differentiable in them."""
        if coefficients.shape != (self.dim,):
            raise ValueError(f"expected {self.dim} coefficients, got {tuple(coefficients.shape)}")
        c = coefficients
        mats = self._on(c.device, c.dtype)
        if self.diagonal is not None:
            return (mats[0] * c * c).sum()
        if self.dense is not None:
            return c @ (mats[0] @ c)
        total = c.new_zeros(())
        for (start, copies, atom), g in zip(self.blocks, mats):
            k = atom.shape[0]
            coef = c[start : start + copies * k].reshape(copies, k)
            total = total + ((coef @ g) * coef).sum()
        return total


_GRAMS: weakref.WeakKeyDictionary[HomSpace, BasisGram] = weakref.WeakKeyDictionary()


def basis_gram(space: HomSpace) -> BasisGram:
    """The (cached) basis Gram form of ``space``."""
    gram = _GRAMS.get(space)
    if gram is None:
        gram = _GRAMS[space] = BasisGram(space)
    return gram


def _own_weight_sq(module: nn.Module) -> torch.Tensor | None:
    """``||W||²_F`` of the module's own weight when it says what its dense weight is, else None.

    In this order: coefficients in a hom-space basis (``hom`` and ``coefficients``, as
    :class:`~equirelax.nn.EquivariantLinear`: ``cᵀ G c``); a registered ``dense`` hook
    (``nn.Linear``); ``dense_matrix()`` (vector neurons: ``kron(W, I_3)``); ``expanded_weight()``
    (group convolutions: the kernel with its group copies, the layout of their free term).
    """
    space, coefficients = getattr(module, "hom", None), getattr(module, "coefficients", None)
    if (isinstance(space, HomSpace) and isinstance(coefficients, torch.Tensor)
            and coefficients.shape == (space.dim,)):
        return basis_gram(space).sq_norm(coefficients)
    own = getattr(module, "weight_sq_norm", None)
    if callable(own):  # e.g. a low-rank free term: ||U Vᵀ||² without forming U Vᵀ
        return own()
    reg = registration(module)
    if reg is not None and reg.dense is not None:
        return reg.dense(module)[0].pow(2).sum()
    for hook in ("dense_matrix", "expanded_weight"):
        fn = getattr(module, hook, None)
        if callable(fn):
            return fn().pow(2).sum()
    return None


def pathway_sq(module: nn.Module) -> torch.Tensor | None:
    """Σ ||W||²_F over the weights of a pathway (a module and its submodules), biases excluded.

    Modules that say what their dense weight is count by it (see :func:`_own_weight_sq`); the
    others count their own parameters except those named ``*bias`` (a tensor-product path
    weight, a batch-norm scale), as Finzi et al. do for the pathways without a dense weight.
    None when the pathway has no weights.
    """
    terms: list[torch.Tensor] = []

    def visit(m: nn.Module) -> None:
        own = _own_weight_sq(m)
        if own is not None:
            terms.append(own)
            return
        terms.extend(p.pow(2).sum() for name, p in m.named_parameters(recurse=False)
                     if not name.endswith("bias"))
        for child in m.children():
            visit(child)

    visit(module)
    if not terms:
        return None
    ref = terms[0]
    return torch.stack([t.to(device=ref.device, dtype=ref.dtype) for t in terms]).sum()
