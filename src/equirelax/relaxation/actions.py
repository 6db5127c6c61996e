"""How group generators and Lie algebra elements act on a layer's input and output tensors.

The relaxation penalties compare W(A_in x) with A_out(W x) for each generator A. By default a
layer's features are the trailing ``shape`` axes of a tensor, flattened (C order) to a vector on
which a representation acts; permutation generators then act by an index gather and other
matrices by a matmul. Layers with other layouts (convolutions acting on pixels) supply their own
:class:`FeatureAction`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from equirelax.reps.base import Rep

TensorMap = Callable[[torch.Tensor], torch.Tensor]


class FeatureAction:
    """A list of linear maps on feature tensors: one per discrete generator, one per Lie algebra
    element (``discrete`` and ``lie`` tell them apart for the penalties)."""

    def __init__(
        self,
        discrete: Sequence[TensorMap],
        lie: Sequence[TensorMap],
        matrices: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.discrete = list(discrete)
        self.lie = list(lie)
        # the same maps as dense matrices on flattened features (discrete first), when known
        self.matrices = list(matrices) if matrices is not None else None
        self._stacked: dict = {}

    def __len__(self) -> int:
        return len(self.discrete) + len(self.lie)

    def stack(self, x: torch.Tensor, shape: tuple[int, ...], identity: bool = False
              ) -> torch.Tensor:
        """All the maps applied to features ``x`` (..., *shape), stacked after the leading axes:
        (..., K, *shape), or (..., K+1, *shape) with ``x`` itself first when ``identity``. With
        matrices known this is one gather over every generator instead of one per generator."""
        lead = x.shape[: x.dim() - len(shape)]
        if self.matrices is None:
            maps = ([x] if identity else []) + [a(x) for a in self.discrete + self.lie]
            return torch.stack(maps, dim=len(lead))
        out = self.prepare(shape, identity)(x.reshape(*lead, -1))  # (..., K, n)
        return out.reshape(*out.shape[:-1], *shape)

    def prepare(self, shape: tuple[int, ...], identity: bool = False) -> TensorMap:
        """The stacked map that :meth:`stack` applies for ``shape`` and ``identity`` (built once;
        only for actions with ``matrices``, and at least one matrix or ``identity``).

        Modules call it when they are built, so that the first forward does not analyse the
        matrices: ``torch.compile`` would trace that numpy code (graph breaks) and recompile
        once the map is cached.
        """
        key = (identity, tuple(shape))
        if key not in self._stacked:
            n = int(np.prod(shape))
            mats = [np.eye(n)] if identity else []
            self._stacked[key] = stacked_matrix_map(mats + [np.asarray(m) for m in self.matrices])
        return self._stacked[key]


class LinearMap:
    """x ↦ x mᵀ on the last axis, for an (r, n) matrix m: one index gather when every row of m
    is a single 1 (a permutation, or generators stacked), a few gathers when m is sparse
    (generators of big direct sums have a handful of non-zeros per row), a matmul otherwise.

    A small class rather than a closure so that modules holding it can be pickled. It keeps
    only what it applies (index, values or matrix) as numpy arrays; the tensors it builds per
    (device, dtype) are a cache, left out of pickles and rebuilt on first use.
    """

    def __init__(self, m: np.ndarray) -> None:
        m = np.asarray(m)
        self.shape = m.shape
        nnz = int((m != 0).sum(1).max()) if m.size else 0
        self.gather = m.size > 0 and nnz == 1 and bool(np.all(m.sum(1) == 1)) and bool(
            np.all((m == 0) | (m == 1)))
        self.sparse = not self.gather and 4 * nnz <= m.shape[1]
        if self.gather:
            # (m x)[i] = x[j] where m[i, j] = 1
            self.arrays: tuple[np.ndarray, ...] = (np.argmax(m, axis=1),)
        elif self.sparse:
            self.arrays = row_entries(m)
        else:
            self.arrays = (np.ascontiguousarray(m),)
        self.transpose_arrays = _sparse_transpose(m) if self.gather or self.sparse else None
        self._tensors: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The index / value / matrix tensors of the map on ``device`` in ``dtype`` (cached).

        Under ``torch.compile`` they are made from the numpy arrays instead, which Dynamo
        reads as ordinary graph inputs (no guard on a cache that fills, hence no recompile,
        and no constant baked into code that other instances may share).
        """
        if torch.compiler.is_compiling():
            return self._make(device, dtype)
        key = (device, dtype)
        if key not in self._tensors:
            self._tensors[key] = self._make(device, dtype)
        return self._tensors[key]

    def _make(self, device: torch.device, dtype: torch.dtype, arrays: tuple | None = None
              ) -> tuple[torch.Tensor, ...]:
        # the first array of a gather or sparse map is an index; values and matrices take dtype
        index = 1 if self.gather or self.sparse else 0
        return tuple(
            torch.from_numpy(a).to(device=device, dtype=None if i < index else dtype)
            for i, a in enumerate(self.arrays if arrays is None else arrays)
        )

    def _transpose_tensors(self, device: torch.device, dtype: torch.dtype
                           ) -> tuple[torch.Tensor, ...]:
        """The index (and, unless every entry is 1, value) tensors of the transpose, as
        :meth:`tensors` (see :func:`_sparse_transpose`)."""
        if torch.compiler.is_compiling():
            return self._make(device, dtype, self.transpose_arrays)
        key = (device, dtype, "transpose")
        if key not in self._tensors:
            self._tensors[key] = self._make(device, dtype, self.transpose_arrays)
        return self._tensors[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tensors(x.device, x.dtype)
        if self.shape[1] == 1 and self.shape[0] and torch.compiler.is_compiling():
            # one input feature: a broadcast, not a gather. The gather's backward would be a
            # scatter into one slot, which inductor's CPU code generator fails on (torch 2.13)
            if self.gather:
                return x.expand(*x.shape[:-1], self.shape[0])
            if self.sparse:
                return x * t[1][0]
        # index_select is several times faster than advanced indexing, forward and backward
        if self.gather:
            return x.index_select(-1, t[0])
        if self.sparse:
            cols, vals = t
            out = x.index_select(-1, cols[0]) * vals[0]
            for j in range(1, cols.shape[0]):
                out = out + x.index_select(-1, cols[j]) * vals[j]
            return out
        return x @ t[0].T

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """g ↦ g m on the last axis: the transpose of this map, (..., r) -> (..., n). Used by
        hand-written backward passes (a gather's adjoint is a scatter-add)."""
        if self.transpose_arrays is not None:
            return self._gather_adjoint(g)
        t = self.tensors(g.device, g.dtype)
        if self.gather or self.sparse:
            flat = g.reshape(-1, g.shape[-1])
            out = flat.new_zeros(flat.shape[0], self.shape[1])
            if self.gather:
                out.index_add_(1, t[0], flat)
            else:
                cols, vals = t
                for j in range(cols.shape[0]):
                    out.index_add_(1, cols[j], flat * vals[j])
            return out.reshape(*g.shape[:-1], self.shape[1])
        return g @ t[0]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tensors"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        if "arrays" not in state:  # pickled when the dense matrix was kept: analyse it again
            self.__init__(state["m"])
            return
        self.__dict__.update(state)
        if "transpose_arrays" not in state:  # pickled before the transpose was kept
            self.transpose_arrays = (_sparse_transpose(self._matrix())
                                     if self.gather or self.sparse else None)

    def _matrix(self) -> np.ndarray:
        """The dense matrix, rebuilt from the gather or sparse arrays."""
        if not (self.gather or self.sparse):
            return self.arrays[0]
        m = np.zeros(self.shape)
        rows = np.arange(self.shape[0])
        if self.gather:
            m[rows, self.arrays[0]] = 1.0
        else:
            for cols, vals in zip(*self.arrays):
                m[rows, cols] += vals
        return m

    def _gather_adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """g m for a gather or sparse map: one gather of g by the transpose's index, then
        (for more than one entry per column) the weighted sum over them. index_add_ along the
        feature axis would add one column slice at a time."""
        t = self._transpose_tensors(g.device, g.dtype)
        cols = t[0]  # (entries per column, n)
        picked = g.index_select(-1, cols.reshape(-1))
        if cols.shape[0] == 1 and len(t) == 1:
            return picked
        picked = picked.unflatten(-1, tuple(cols.shape))
        if len(t) > 1:
            picked = picked * t[1]
        return picked.sum(-2)


def row_entries(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-zeros of each row of m in the padded sparse form of :class:`LinearMap`: their
    column indices and their values, each (k, rows) for the largest number k of non-zeros in
    a row (at least 1); rows with fewer are padded with zero entries."""
    m = np.asarray(m)
    nnz = int((m != 0).sum(1).max()) if m.size else 0
    order = np.argsort(m == 0, axis=1, kind="stable")[:, :max(nnz, 1)]  # non-zeros first
    return order.T.copy(), np.take_along_axis(m, order, axis=1).T.copy()


def _sparse_transpose(m: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """mᵀ in the padded sparse form of :class:`LinearMap`: the index (k, n) of the k
    non-zeros of each column of m (padded with zeros), and their values unless every one is 1;
    None for an empty m."""
    m = np.asarray(m)
    if not m.size:
        return None
    index, values = row_entries(m.T)
    if np.all(values == 1):
        return (index,)
    return index, values


class MatrixMap:
    """x ↦ m x on the flattened trailing ``shape`` axes (by gathers when m is sparse)."""

    def __init__(self, m: np.ndarray, shape: tuple[int, ...]) -> None:
        m = np.asarray(m)
        self.n = m.shape[0]
        self.shape = tuple(shape)
        self.apply = LinearMap(m)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[: x.dim() - len(self.shape)]
        return self.apply(x.reshape(*lead, self.n)).reshape(*lead, *self.shape)


class StackedMatrixMap:
    """x ↦ (m_1 x, ..., m_K x) on the last axis, as one tensor (..., K, n_out): all K matrices
    in one gather (or matmul), which costs little more than applying one of them."""

    def __init__(self, mats: Sequence[np.ndarray]) -> None:
        if not mats:
            raise ValueError("stacked_matrix_map needs at least one matrix")
        self.k, self.n_out = len(mats), np.asarray(mats[0]).shape[0]
        self.apply = LinearMap(np.concatenate([np.asarray(a) for a in mats], axis=0))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x).unflatten(-1, (self.k, self.n_out))

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """The transpose of the stacked map: g (..., K, n_out) ↦ Σ_k m_kᵀ g_k, (..., n_in)."""
        return self.apply.adjoint(g.flatten(-2))


def matrix_map(m: np.ndarray, shape: tuple[int, ...]) -> TensorMap:
    """x ↦ m x on the flattened trailing ``shape`` axes (by gathers when m is sparse)."""
    return MatrixMap(m, shape)


def stacked_matrix_map(mats: Sequence[np.ndarray]) -> TensorMap:
    """x ↦ (m_1 x, ..., m_K x) on the last axis, as one tensor (..., K, n_out) (see
    :class:`StackedMatrixMap`)."""
    return StackedMatrixMap(mats)


#: Permutation reps up to this dimension also give their actions as dense matrices (which the
#: Gram path of a dense free term needs); larger ones act by index gathers only, since a
#: (d, d) matrix per generator would not fit (d = 40,000 for pairs of 200 points).
DENSE_ACTIONS_UP_TO = 4096


class PermutationMap:
    """x ↦ ρ(g) x for a permutation rep, on the flattened trailing ``shape`` axes: entry i
    moves to position image[i], i.e. one gather with the inverse permutation."""

    def __init__(self, image: np.ndarray, shape: tuple[int, ...]) -> None:
        self.source = np.argsort(np.asarray(image))
        self.shape = tuple(shape)
        self._tensors: dict = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            index = torch.from_numpy(self.source).to(x.device)
        else:
            if x.device not in self._tensors:
                self._tensors[x.device] = torch.from_numpy(self.source).to(x.device)
            index = self._tensors[x.device]
        lead = x.shape[: x.dim() - len(self.shape)]
        flat = x.reshape(*lead, -1).index_select(-1, index)
        return flat.reshape(*lead, *self.shape)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tensors": {}}


def _permutation_actions(rep_in: Rep, rep_out: Rep, shape_in: tuple[int, ...],
                         shape_out: tuple[int, ...]) -> tuple[FeatureAction, FeatureAction]:
    """Actions of two big permutation reps by gathers, without matrices."""
    keep = [k for k, (a, b) in enumerate(zip(rep_in.images, rep_out.images))  # type: ignore
            if not (np.array_equal(a, np.arange(rep_in.dim))
                    and np.array_equal(b, np.arange(rep_out.dim)))]
    return (FeatureAction([PermutationMap(rep_in.images[k], shape_in) for k in keep], []),
            FeatureAction([PermutationMap(rep_out.images[k], shape_out) for k in keep], []))


def pair_actions(
    rep_in: Rep,
    rep_out: Rep,
    shape_in: tuple[int, ...] | None = None,
    shape_out: tuple[int, ...] | None = None,
) -> tuple[FeatureAction, FeatureAction]:
    """Input and output actions with generators paired (a generator acting trivially on both
    sides is dropped from both)."""
    if rep_in.group != rep_out.group:
        raise ValueError(f"rep_in and rep_out act by different groups: {rep_in.group!r} and "
                         f"{rep_out.group!r}")
    shape_in = tuple(shape_in) if shape_in is not None else (rep_in.dim,)
    shape_out = tuple(shape_out) if shape_out is not None else (rep_out.dim,)
    if (rep_in.is_permutation and rep_out.is_permutation and not rep_in.lie_matrices()
            and max(rep_in.dim, rep_out.dim) > DENSE_ACTIONS_UP_TO):
        return _permutation_actions(rep_in, rep_out, shape_in, shape_out)
    keep = [
        k
        for k, (a, b) in enumerate(zip(rep_in.generator_matrices(), rep_out.generator_matrices()))
        if not (np.allclose(a, np.eye(rep_in.dim)) and np.allclose(b, np.eye(rep_out.dim)))
    ]
    gin, gout = rep_in.generator_matrices(), rep_out.generator_matrices()
    lie_in, lie_out = rep_in.lie_matrices(), rep_out.lie_matrices()
    act_in = FeatureAction(
        [matrix_map(gin[k], shape_in) for k in keep],
        [matrix_map(m, shape_in) for m in lie_in],
        [gin[k] for k in keep] + lie_in,
    )
    act_out = FeatureAction(
        [matrix_map(gout[k], shape_out) for k in keep],
        [matrix_map(m, shape_out) for m in lie_out],
        [gout[k] for k in keep] + lie_out,
    )
    return act_in, act_out
