"""The space of equivariant linear maps between two representations: basis, weights, projection.

``hom(rep_in, rep_out)`` picks the construction that fits:

* both permutation reps: the orbit basis (exact 0/1 weight sharing, one label per weight entry;
  materialising W is a gather, projecting is an orbit mean);
* otherwise: both reps are split into their summands (and, for SO(2), O(2), SO(3), O(3), every
  reducible summand into irreps through a cached orthogonal change of basis), summands of the
  same type are grouped, and each pair of types gets a small orthonormal null-space basis,
  cached by representation. The weight of copies of a pair is Σ_k C_k ⊗ B_k, so big
  multiplicities cost nothing extra to solve, and W x can be applied block by block.

Both kinds share one interface (``dim``, ``basis``, ``weight``, ``project``, ``coefficients``).
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np
import torch

from equirelax.homspace.nullspace import nullspace_basis
from equirelax.homspace.orbit import orbit_labels
from equirelax.reps.base import PermRep, Rep
from equirelax.reps.catalogue import trivial
from equirelax.reps.irrep_decomposition import split_into_irreps
from equirelax.reps.real_irreps import commutant_basis, standard_label
from equirelax.reps.spec import as_reps

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(w: ArrayLike) -> tuple[torch.Tensor, bool]:
    if isinstance(w, np.ndarray):
        return torch.from_numpy(np.asarray(w, dtype=np.float64)), True
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor or numpy array, got {type(w).__name__}")
    return w, False


def _is_functorch_wrapper(t: torch.Tensor) -> bool:
    """Whether ``t`` is a wrapper made by a running ``torch.func`` transform."""
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(t))


class HomSpace(ABC):
    """Equivariant linear maps rep_in -> rep_out, as a linear subspace of (d_out, d_in) matrices."""

    rep_in: Rep
    rep_out: Rep
    dim: int

    def __init__(self, rep_in: Rep, rep_out: Rep) -> None:
        self.rep_in, self.rep_out = rep_in, rep_out
        # kept as numbers: compiled code that reads the shape then guards on two integers, not
        # on which Rep objects the space and the layer hold (guards evaluated in Python)
        self._shape = (rep_out.dim, rep_in.dim)
        self._device_cache: dict[tuple, object] = {}

    @property
    def shape(self) -> tuple[int, int]:
        """(d_out, d_in): the shape of every map in the space."""
        return self._shape

    @property
    def entries(self) -> int:
        """d_out · d_in, from the shape's two integers (compiled code that reads a numpy
        array's size, e.g. of an orbit space's labels, turns the array into a graph input that
        it converts on every call)."""
        return self._shape[0] * self._shape[1]

    @abstractmethod
    def weight(self, coefficients: torch.Tensor) -> torch.Tensor:
        """The (d_out, d_in) matrix Σ_k c_k B_k (differentiable in the coefficients)."""

    @abstractmethod
    def coefficients(self, w: torch.Tensor) -> torch.Tensor:
        """Coefficients of the orthogonal projection of ``w`` (..., d_out, d_in) onto the space."""

    @abstractmethod
    def basis_sq_norm(self) -> float:
        """Σ_k ||B_k||_F^2 (sets the variance-preserving initialisation)."""

    def project(self, w: ArrayLike) -> ArrayLike:
        """Orthogonal (Frobenius) projection of ``w`` (..., d_out, d_in) onto the space."""
        t, was_numpy = _as_tensor(w)
        self._check_shape(t)
        out = self.weight_batched(self.coefficients(t))
        return out.numpy() if was_numpy else out

    def apply(self, coefficients: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """W x for W = ``weight(coefficients)`` and inputs x (..., d_in); differentiable in both.

        Here through the dense W; :class:`BlockHomSpace` applies its Schur blocks one by one.
        """
        return x @ self.weight(coefficients).T

    def weight_batched(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``weight`` for coefficients with leading batch axes (..., dim)."""
        lead = coefficients.shape[:-1]
        flat = coefficients.reshape(math.prod(lead), self.dim)  # -1 is ambiguous when dim = 0
        ws = [self.weight(c) for c in flat] if flat.shape[0] else []
        if not ws:
            return coefficients.new_zeros((*lead, *self.shape))
        return torch.stack(ws).reshape(*lead, *self.shape)

    @property
    def basis(self) -> torch.Tensor:
        """Dense basis, float64, shape (dim, d_out, d_in)."""
        eye = torch.eye(self.dim, dtype=torch.float64)
        return self.weight_batched(eye) if self.dim else torch.zeros((0, *self.shape))

    def init_std(self) -> float:
        """Coefficient std that makes E||W x||^2 = d_out for x with unit-variance entries."""
        total = self.basis_sq_norm()
        return float(np.sqrt(self.rep_out.dim / total)) if total > 0 else 0.0

    def _check_shape(self, w: torch.Tensor) -> None:
        if w.dim() < 2 or tuple(w.shape[-2:]) != self.shape:
            raise ValueError(
                f"expected a matrix of shape (..., {self.shape[0]}, {self.shape[1]}) "
                f"for {self.rep_in!r} -> {self.rep_out!r}, got {tuple(w.shape)}"
            )

    def _on(self, name: str, device: torch.device, make) -> torch.Tensor:
        """A constant of this space as a tensor on ``device``, made once and cached.

        Not cached when it is made inside a ``torch.func`` transform (e.g. the Lie derivative
        check): there even a tensor made from a numpy array comes out wrapped for that call, and
        a cached wrapper outlives it (a later pickle or deepcopy of the space then fails).
        """
        key = (name, device)
        if key not in self._device_cache:
            value = make().to(device)
            if _is_functorch_wrapper(value):
                return value
            self._device_cache[key] = value
        return self._device_cache[key]  # type: ignore[return-value]

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_shape" not in state:  # pickled before the shape was kept
            self._shape = (self.rep_out.dim, self.rep_in.dim)

    def __deepcopy__(self, memo: dict) -> HomSpace:
        # immutable (only lazily filled caches) and shared through hom()'s cache anyway: copying
        # a model must not duplicate its label arrays (tens of MB for 2048 x 2048 layers)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rep_in!r} -> {self.rep_out!r}, dim={self.dim})"


class _OrbitGather(torch.autograd.Function):
    """W = c[labels] as one flat ``index_select``; the backward sums gradients per orbit with one
    ``scatter_add``. Both are far cheaper than advanced indexing and ``bincount`` (which is what
    kept training-mode overhead high on large layers). ``setup_context`` and ``jvp`` make it usable
    under ``torch.func`` transforms (e.g. the Lie derivative check). Dynamo cannot trace a custom
    ``jvp``, so compiled and exported code use :meth:`OrbitHomSpace._traced_weight` instead.

    With few, large orbits, consecutive entries mostly add into the same slot, and a scatter into
    one slot is a serial chain of dependent additions (32 ms for the 4M entries of a 2048 x 2048
    Deep Sets layer). The labels are then *spread*: entry e adds into slot label * spread +
    e % spread, so neighbours go to different slots, and the ``spread`` partial sums per orbit are
    added at the end (2 ms, and more accurate in float32). The forward reads the same spread
    labels from the coefficients repeated ``spread`` times.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(coefficients: torch.Tensor, labels: torch.Tensor, spread: int, shape: tuple):
        return _gather_weight(coefficients, labels, spread, shape, None)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        coefficients, labels, spread, shape = inputs
        ctx.labels, ctx.spread, ctx.shape = labels, spread, shape
        ctx.dim = coefficients.shape[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        flat = grad.reshape(-1)
        sums = grad.new_zeros(ctx.dim * ctx.spread).scatter_add_(0, ctx.labels, flat)
        if ctx.spread > 1:
            sums = sums.view(ctx.dim, ctx.spread).sum(dim=1)
        return sums, None, None, None

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor, *_) -> torch.Tensor:
        return _gather_weight(tangent, ctx.labels, ctx.spread, ctx.shape, None)


def _gather_weight(coefficients: torch.Tensor, labels: torch.Tensor, spread: int, shape: tuple,
                   tile_columns: torch.Tensor | None) -> torch.Tensor:
    """W = c[labels] as one gather: by rows of tiles when ``tile_columns`` is given (see
    :meth:`OrbitHomSpace.tile_columns_on`), else flat over the (spread) labels."""
    if tile_columns is not None:
        rows = shape[0] // (tile_columns.shape[0] // shape[1])
        return coefficients.view(rows, -1).index_select(1, tile_columns).view(shape)
    if spread > 1:
        coefficients = coefficients.repeat_interleave(spread)
    return coefficients.index_select(0, labels).view(shape)


# -- the same gather and per-orbit sum as custom operators, for torch.compile -------------------
# Inductor would generate its own gather and atomic-add scatter for index_select and its
# backward; on the CPU those ran several times slower than ATen's kernels (which the eager path
# uses), so compiled training was slower than eager. As custom operators (opaque to the
# compiler, with their own autograd formula) they run ATen's kernels and never break the graph.
@torch.library.custom_op("equirelax::orbit_gather", mutates_args=())
def _orbit_gather(coefficients: torch.Tensor, index: torch.Tensor, spread: int) -> torch.Tensor:
    """Flat W = c[labels] (labels spread as in ``_OrbitGather``)."""
    if spread > 1:
        coefficients = coefficients.repeat_interleave(spread)
    return coefficients.index_select(0, index)


@_orbit_gather.register_fake
def _(coefficients: torch.Tensor, index: torch.Tensor, spread: int) -> torch.Tensor:
    return coefficients.new_empty(index.shape)


@torch.library.custom_op("equirelax::orbit_sum", mutates_args=())
def _orbit_sum(values: torch.Tensor, index: torch.Tensor, dim: int, spread: int) -> torch.Tensor:
    """Per-orbit sums of flat ``values`` (the adjoint of ``orbit_gather``)."""
    sums = values.new_zeros(dim * spread).scatter_add_(0, index, values)
    return sums.view(dim, spread).sum(dim=1) if spread > 1 else sums


@_orbit_sum.register_fake
def _(values: torch.Tensor, index: torch.Tensor, dim: int, spread: int) -> torch.Tensor:
    return values.new_empty(dim)


def _save_index(ctx, inputs: tuple, output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[1])
    ctx.spread = inputs[-1]
    ctx.dim = inputs[0].shape[0]


def _gather_backward(ctx, grad: torch.Tensor):
    (index,) = ctx.saved_tensors
    return _orbit_sum(grad.contiguous(), index, ctx.dim, ctx.spread), None, None


def _sum_backward(ctx, grad: torch.Tensor):
    (index,) = ctx.saved_tensors
    return _orbit_gather(grad, index, ctx.spread), None, None, None


def _save_sum_index(ctx, inputs: tuple, output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[1])
    ctx.spread = inputs[-1]


_orbit_gather.register_autograd(_gather_backward, setup_context=_save_index)
_orbit_sum.register_autograd(_sum_backward, setup_context=_save_sum_index)


@torch.compiler.assume_constant_result
def inductor_freezes() -> bool:
    """Whether inductor freezes weights (``torch._inductor.config.freezing``): compiled
    inference under ``torch.no_grad()`` then folds parameters and buffers into constants at
    compile time, so a layer's weight is built once, by the compiler, and (on the CPU)
    prepacked for oneDNN, but edits of the parameters after compiling are not seen (as for any
    frozen module). Read once per compile, not guarded: the setting acts at compile time only.
    """
    config = sys.modules.get("torch._inductor.config")
    return bool(getattr(config, "freezing", False))


#: Compiled code gathers weights with this many entries or more through the custom operators
#: (ATen's kernels; smaller ones are fused by the compiler, which saves the operator's dispatch).
OPAQUE_GATHER_ABOVE = 1 << 15

#: A tiled label matrix (see ``OrbitHomSpace._find_tile_columns``) is gathered by rows from
#: this many tile rows on (fewer, longer rows gain nothing over the flat gather).
TILE_ROWS_AT_LEAST = 8

#: Spread the gather's labels (see ``_OrbitGather``) when orbits hold this many entries on average.
SPREAD_ABOVE_MEAN_ORBIT = 128
SPREAD = 8


class OrbitHomSpace(HomSpace):
    """Orbit basis between two permutation representations: W[i, j] = c[label[i, j]]."""

    def __init__(self, rep_in: PermRep, rep_out: PermRep) -> None:
        super().__init__(rep_in, rep_out)
        images_in = rep_in.images or [np.arange(rep_in.dim)]
        images_out = rep_out.images or [np.arange(rep_out.dim)]
        self.labels = orbit_labels(images_out, images_in)
        self.dim = int(self.labels.max()) + 1 if self.labels.size else 0
        self.counts = np.bincount(self.labels.reshape(-1), minlength=self.dim)
        large = self.labels.size >= SPREAD_ABOVE_MEAN_ORBIT * max(self.dim, 1)
        self.spread = SPREAD if large else 1
        self.tile_columns = self._find_tile_columns()

    def _find_tile_columns(self) -> np.ndarray | None:
        """The column index of the by-rows gather when the labels are tiled, else None.

        Between sums of copies of one permutation rep on each side (e.g. m · regular(G) ->
        m' · regular(G)) the label matrix is a grid of (p, q) tiles, tile (a, b) holding the k
        labels (a · B + b) · k + K (the same pattern K in every tile). Then row a·p + g of W is
        the (B · k) coefficients of tile row a gathered at columns b · k + K[g, h]: one
        ``index_select`` along rows of the coefficients, with an index of p · d_in entries
        instead of d_out · d_in: about a quarter faster than the flat gather, and its backward
        (PyTorch's ``index_add_`` along the rows, no Python autograd node) cut the training
        step of 64 · regular(D_4) -> itself at batch 64 from about 1.5x to 1.35x nn.Linear
        (one thread). Only for large, unspread label sets whose grid has several tile rows.
        """
        if self.spread > 1 or self.labels.size < OPAQUE_GATHER_ABOVE:
            return None
        p, q = self.rep_out.parts[0].dim, self.rep_in.parts[0].dim
        d_out, d_in = self.shape
        if p == 0 or q == 0 or d_out % p or d_in % q or d_out // p < TILE_ROWS_AT_LEAST:
            return None
        pattern = self.labels[:p, :q]
        k = int(pattern.max()) + 1
        rows, cols = d_out // p, d_in // q
        if np.unique(pattern).size != k or self.dim != rows * cols * k:
            return None
        offsets = (np.arange(rows)[:, None] * cols + np.arange(cols)[None, :]) * k
        tiled = offsets[:, None, :, None] + pattern[None, :, None, :]
        if not np.array_equal(self.labels.reshape(rows, p, cols, q), tiled):
            return None
        return (np.arange(cols)[None, :, None] * k + pattern[:, None, :]).reshape(-1)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "tile_columns" not in state:  # pickled before tiled gathers
            self.tile_columns = self._find_tile_columns()

    def tile_columns_on(self, device: torch.device) -> torch.Tensor | None:
        """The column index of the by-rows gather (see ``_find_tile_columns``) on ``device``
        (cached), or None when the labels are not tiled."""
        if self.tile_columns is None:
            return None
        return self._on("tile_columns", device, lambda: torch.from_numpy(self.tile_columns))

    def labels_on(self, device: torch.device) -> torch.Tensor:
        """The label matrix as a LongTensor on ``device`` (cached)."""
        return self._on("labels", device, lambda: torch.from_numpy(self.labels))

    def _gather_labels(self, device: torch.device) -> torch.Tensor:
        """Flat labels for the gather, spread when orbits are large (see ``_OrbitGather``)."""

        def make() -> torch.Tensor:
            flat = torch.from_numpy(self.labels.reshape(-1))
            if self.spread == 1:
                return flat
            return flat * self.spread + torch.arange(flat.shape[0]) % self.spread

        return self._on("gather_labels", device, make)

    def gather_index(self) -> torch.Tensor:
        """The flat (spread) labels that :meth:`weight` gathers with, as a CPU LongTensor.

        A module holds it as a non-persistent buffer and passes it back to :meth:`weight`, so
        that it moves with ``.to()`` and ``torch.compile`` sees an ordinary module input: a
        lookup in this space's device cache is a dict that compiled code must guard on, and
        filling it on the first compiled call forces a recompile. The tensor is shared (the
        cache's CPU entry); treat it as read-only.
        """
        return self._gather_labels(torch.device("cpu"))

    def weight(self, coefficients: torch.Tensor, index: torch.Tensor | None = None
               ) -> torch.Tensor:
        """W = c[labels] (see :meth:`HomSpace.weight`); ``index``: :meth:`gather_index` on
        the coefficients' device, when the caller holds it (else it is looked up here)."""
        if coefficients.shape != (self.dim,):
            raise ValueError(f"expected {self.dim} coefficients, got {tuple(coefficients.shape)}")
        labels = index if index is not None else self._gather_labels(coefficients.device)
        if torch.compiler.is_compiling():
            return self._traced_weight(coefficients, labels)
        tiles = self.tile_columns_on(coefficients.device)
        if tiles is not None:
            # by tile rows, with PyTorch's own autograd: its backward (``index_add_`` along the
            # rows) measured faster than _OrbitGather's, and no Python node runs either way
            return _gather_weight(coefficients, labels, self.spread, self.shape, tiles)
        if coefficients.requires_grad and self.entries < OPAQUE_GATHER_ABOVE and self.spread == 1:
            # small and unspread: the native gather, whose backward (an ``index_add_`` into few
            # slots) is as cheap as ours and which skips a Python autograd node each way
            if self.dim == 1:
                return coefficients.expand(self.entries).view(self.shape)
            return coefficients.index_select(0, labels).view(self.shape)
        if coefficients.requires_grad:
            return _OrbitGather.apply(coefficients, labels, self.spread, self.shape)
        return _gather_weight(coefficients, labels, self.spread, self.shape, None)

    def _traced_weight(self, coefficients: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The gather as ops that ``torch.compile`` and ``torch.export`` trace without a break.

        Dynamo cannot trace an autograd.Function with a custom ``jvp`` (``_OrbitGather`` needs
        one for ``torch.func``), so each layer would break the graph. Compiled code calls the
        custom operators ``equirelax::orbit_gather`` / ``orbit_sum`` (ATen's kernels, as
        eager); an exported program gets plain ``index_select`` (its backward is the same
        per-orbit sum), so that it runs without equirelax's operators registered. One orbit
        (e.g. the bias of a transitive rep) is a broadcast, whose backward is a plain sum:
        cheaper, and inductor's CPU code generator fails on a scatter into a single slot
        (torch 2.13). Under inductor's weight freezing (see :func:`inductor_freezes`) the
        gather is plain ``index_select`` too, so that the compiler folds the whole weight into
        a constant.
        """
        if self.dim == 1:
            return coefficients.expand(self.entries).reshape(self.shape)
        if (self.entries >= OPAQUE_GATHER_ABOVE and not torch.compiler.is_exporting()
                and not inductor_freezes()):
            return _orbit_gather(coefficients, labels, self.spread).view(self.shape)
        if self.spread > 1:
            coefficients = coefficients.repeat_interleave(self.spread)
        return coefficients.index_select(0, labels).view(self.shape)

    def weight_batched(self, coefficients: torch.Tensor) -> torch.Tensor:
        return coefficients[..., self.labels_on(coefficients.device)]

    def coefficients(self, w: torch.Tensor) -> torch.Tensor:
        self._check_shape(w)
        labels = self.labels_on(w.device).reshape(-1)
        flat = w.reshape(*w.shape[:-2], -1)
        sums = flat.new_zeros((*w.shape[:-2], self.dim)).index_add_(-1, labels, flat)
        counts = self._on("counts", w.device, lambda: torch.from_numpy(self.counts))
        return sums / counts.to(w.dtype)

    def basis_sq_norm(self) -> float:
        return float(self.labels.size)


# -- block (isotypic-by-type) construction ----------------------------------------------------
_ATOM_CACHE: OrderedDict[tuple[Hashable, Hashable], np.ndarray] = OrderedDict()
_ATOM_CACHE_SIZE = 4096


def atomic_basis(rep_in: Rep, rep_out: Rep) -> np.ndarray:
    """Orthonormal basis (k, d_out, d_in) between two summands, cached by representation."""
    return _cached(_ATOM_CACHE, (rep_in.key, rep_out.key), _ATOM_CACHE_SIZE,
                   lambda: _atomic_basis(rep_in, rep_out))


def _cached(cache: OrderedDict, key: Hashable, size: int, make):
    """``cache[key]``, made by ``make()`` when missing; least recently used entries leave first."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    if len(cache) > size:
        cache.popitem(last=False)
    return value


def _atomic_basis(rep_in: Rep, rep_out: Rep) -> np.ndarray:
    label_in, label_out = standard_label(rep_in), standard_label(rep_out)
    if label_in is not None and label_out is not None:
        # two standard irreps of a Lie group: Schur's lemma, no solve
        if label_in != label_out:
            return np.zeros((0, rep_out.dim, rep_in.dim))
        return commutant_basis(rep_in.group, label_in)  # type: ignore[arg-type]
    if rep_in.is_permutation and rep_out.is_permutation:
        labels = OrbitHomSpace(rep_in, rep_out).labels  # type: ignore[arg-type]
        k = int(labels.max()) + 1
        basis = np.zeros((k, rep_out.dim, rep_in.dim))
        rows, cols = np.indices(labels.shape)
        basis[labels, rows, cols] = 1.0
        basis /= np.sqrt(basis.sum(axis=(1, 2), keepdims=True))
    else:
        basis = nullspace_basis(rep_in, rep_out)
    return basis


def _types(parts: list[Rep]) -> list[tuple[Rep, np.ndarray]]:
    """Group summands by type: [(summand, offsets of its copies)], in first-seen order."""
    found: dict[Hashable, tuple[Rep, list[int]]] = {}
    offset = 0
    for part in parts:
        found.setdefault(part.key, (part, []))[1].append(offset)
        offset += part.dim
    return [(part, np.array(offs)) for part, offs in found.values()]


def _grouped_order(types: list[tuple[Rep, np.ndarray]], dim: int
                   ) -> tuple[np.ndarray | None, list[tuple[int, int, int, int]]]:
    """Coordinates reordered so that each type's copies are one contiguous run.

    Returns the order (None when the coordinates already are grouped) and, per type, the run
    (start, stop, copies, summand dim) in the reordered coordinates.
    """
    order, runs, start = [], [], 0
    for part, offs in types:
        idx = (offs[:, None] + np.arange(part.dim)[None, :]).reshape(-1)
        order.append(idx)
        runs.append((start, start + idx.shape[0], len(offs), part.dim))
        start += idx.shape[0]
    flat = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    return (None if np.array_equal(flat, np.arange(dim)) else flat), runs


#: EquivariantLinear applies a block hom-space block by block (never materialising W) when that
#: costs at most this fraction of the multiply-adds of the dense W x.
BLOCKWISE_BELOW = 0.5


class BlockHomSpace(HomSpace):
    """Schur blocks: per pair of summand types, a small orthonormal basis; blocks Σ_k C_k ⊗ B_k.

    Summands of SO(2), O(2), SO(3), O(3) representations are first split into irreps
    (:func:`equirelax.reps.irrep_decomposition.split_into_irreps`): a tensor representation such
    as V⊗V⊗V⊗V becomes ``Qᵀ (⊕ irreps) Q`` with a cached orthogonal Q, and W = Q_outᵀ W_irreps
    Q_in. Then every pair of types has a basis of its commutant size (1 for SO(3)/O(3) irreps of
    one type, 0 between different types), by Schur's lemma for two standard irreps and a tiny null
    space otherwise. ``split=False`` skips the splitting:
    the dense null space of whole summands (the fallback, and the reference the tests compare
    with).

    ``apply(c, x)`` computes W x block by block, without W: y_a = Σ_b C_ab B x_b over the copies
    a, b of each pair of types (a matrix product over multiplicities, as e3nn's ``o3.Linear``).
    ``blockwise_is_cheaper`` says when that beats the dense product.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, split: bool = True) -> None:
        super().__init__(rep_in, rep_out)
        if split:
            parts_in, q_in = split_into_irreps(rep_in)
            parts_out, q_out = split_into_irreps(rep_out)
        else:
            parts_in, q_in, parts_out, q_out = list(rep_in.parts), None, list(rep_out.parts), None
        #: orthogonal changes of basis to irreps form (None: the rep's coordinates already are)
        self.q_in, self.q_out = q_in, q_out
        types_in, types_out = _types(parts_in), _types(parts_out)
        self.blocks = []  # (basis (k, do, di), row index (m_o*do), col index (m_i*di), m_o, m_i)
        self._pairs = []  # (type out, type in) of each block
        start = 0
        for t_out, (part_out, offs_out) in enumerate(types_out):
            for t_in, (part_in, offs_in) in enumerate(types_in):
                basis = atomic_basis(part_in, part_out)
                k = basis.shape[0]
                if k == 0:
                    continue
                rows = (offs_out[:, None] + np.arange(part_out.dim)[None, :]).reshape(-1)
                cols = (offs_in[:, None] + np.arange(part_in.dim)[None, :]).reshape(-1)
                size = len(offs_out) * len(offs_in) * k
                self.blocks.append((basis, rows, cols, len(offs_out), len(offs_in), start, size))
                self._pairs.append((t_out, t_in))
                start += size
        self.dim = start
        self._order_in, self._runs_in = _grouped_order(types_in, rep_in.dim)
        self._order_out, self._runs_out = _grouped_order(types_out, rep_out.dim)
        self._inverse_out = (None if self._order_out is None
                             else np.argsort(self._order_out))
        # per block: the scale s when its basis is the single matrix s·I (same irrep on both
        # sides), so the block is a plain product over multiplicities
        self._scales = [_scaled_identity(b[0]) for b in self.blocks]
        # per output type: whether it has fixed vectors (only there can an equivariant bias be
        # nonzero; in irreps form, only the trivial irreps)
        G = rep_out.group
        self._fixed_out = [atomic_basis(trivial(G), part).shape[0] > 0 for part, _ in types_out]

    # -- cost model ---------------------------------------------------------------------------
    def blockwise_flops(self) -> int:
        """Multiply-adds per input vector of :meth:`apply` (changes of basis included)."""
        total = 0
        if self.q_in is not None:
            total += self.q_in.size
        if self.q_out is not None:
            total += self.q_out.size
        for (basis, _, _, m_o, m_i, _, _), scale in zip(self.blocks, self._scales):
            k, d_o, d_i = basis.shape
            total += m_o * m_i * d_o if scale is not None else m_i * k * d_o * (d_i + m_o)
        return total

    @property
    def blockwise_is_cheaper(self) -> bool:
        """Whether :meth:`apply` needs at most ``BLOCKWISE_BELOW`` of the dense multiply-adds.

        True for reps in irreps form with multiplicities (e.g. 128x0e+64x1o+32x2e, 7x fewer);
        false where a change of basis is needed (Q x alone costs as much as W x).
        """
        return self.blockwise_flops() <= BLOCKWISE_BELOW * self.shape[0] * self.shape[1]

    # -- tensors --------------------------------------------------------------------------------
    def _block_tensors(self, i: int, device: torch.device, dtype: torch.dtype):
        basis, rows, cols = self.blocks[i][:3]
        if torch.compiler.is_compiling():
            # made from the numpy arrays, which Dynamo reads as graph inputs: a lookup in the
            # device cache would be guarded on, and filling it would force a recompile
            return (torch.from_numpy(basis).to(device=device, dtype=dtype),
                    torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device))
        b = self._on(f"basis{i}{dtype}", device, lambda: torch.from_numpy(basis).to(dtype))
        r = self._on(f"rows{i}", device, lambda: torch.from_numpy(rows))
        c = self._on(f"cols{i}", device, lambda: torch.from_numpy(cols))
        return b, r, c

    def _array(self, name: str, array: np.ndarray, device: torch.device,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        """A constant of this space as a tensor (cached per device and dtype, as above)."""
        if torch.compiler.is_compiling():
            return torch.from_numpy(array).to(device=device, dtype=dtype)
        return self._on(f"{name}{dtype}", device,
                        lambda: torch.from_numpy(array).to(dtype=dtype))

    def _to_rep_coordinates(self, w: torch.Tensor) -> torch.Tensor:
        """Qᵀ_out W Q_in: a weight in irreps coordinates back in the reps' own coordinates."""
        if self.q_out is not None:
            w = self._array("q_out", self.q_out, w.device, w.dtype).T @ w
        if self.q_in is not None:
            w = w @ self._array("q_in", self.q_in, w.device, w.dtype)
        return w

    def _to_irreps_coordinates(self, w: torch.Tensor) -> torch.Tensor:
        """Q_out W Q_inᵀ (the inverse of :meth:`_to_rep_coordinates`; Q is orthogonal)."""
        if self.q_out is not None:
            w = self._array("q_out", self.q_out, w.device, w.dtype) @ w
        if self.q_in is not None:
            w = w @ self._array("q_in", self.q_in, w.device, w.dtype).T
        return w

    # -- the HomSpace interface ---------------------------------------------------------------
    def weight(self, coefficients: torch.Tensor) -> torch.Tensor:
        if coefficients.shape != (self.dim,):
            raise ValueError(f"expected {self.dim} coefficients, got {tuple(coefficients.shape)}")
        w = coefficients.new_zeros(self.shape)
        for i, (_, _, _, m_o, m_i, start, size) in enumerate(self.blocks):
            b, r, c = self._block_tensors(i, coefficients.device, coefficients.dtype)
            coef = coefficients[start : start + size].reshape(m_o, m_i, -1)
            block = torch.einsum("abk,kij->aibj", coef, b).reshape(r.shape[0], c.shape[0])
            w = w.index_put((r[:, None], c[None, :]), block)
        return self._to_rep_coordinates(w)

    def weight_batched(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``weight`` for coefficients (..., dim), one einsum per block for the whole batch
        (``basis`` and ``project`` would otherwise loop over basis elements in Python)."""
        if coefficients.shape[-1:] != (self.dim,):
            raise ValueError(
                f"expected coefficients of shape (..., {self.dim}), got {tuple(coefficients.shape)}"
            )
        lead = coefficients.shape[:-1]
        flat = coefficients.reshape(math.prod(lead), self.dim)  # -1 is ambiguous when dim = 0
        w = flat.new_zeros((flat.shape[0], *self.shape))
        for i, (_, _, _, m_o, m_i, start, size) in enumerate(self.blocks):
            b, r, c = self._block_tensors(i, flat.device, flat.dtype)
            coef = flat[:, start : start + size].reshape(-1, m_o, m_i, b.shape[0])
            block = torch.einsum("nabk,kij->naibj", coef, b)
            w[:, r[:, None], c[None, :]] = block.reshape(-1, r.shape[0], c.shape[0])
        return self._to_rep_coordinates(w).reshape(*lead, *self.shape)

    def coefficients(self, w: torch.Tensor) -> torch.Tensor:
        self._check_shape(w)
        w = self._to_irreps_coordinates(w)
        out = []
        lead = w.shape[:-2]
        for i, (basis, _, _, m_o, m_i, _, _) in enumerate(self.blocks):
            b, r, c = self._block_tensors(i, w.device, w.dtype)
            sub = w[..., r[:, None], c[None, :]]
            sub = sub.reshape(*lead, m_o, basis.shape[1], m_i, basis.shape[2])
            out.append(torch.einsum("...aibj,kij->...abk", sub, b).reshape(*lead, -1))
        if not out:
            return w.new_zeros((*lead, 0))
        return torch.cat(out, dim=-1)

    def basis_sq_norm(self) -> float:
        return float(self.dim)

    # -- block-by-block application -------------------------------------------------------------
    def apply(self, coefficients: torch.Tensor, x: torch.Tensor,
              bias: torch.Tensor | None = None) -> torch.Tensor:
        """W x (+ ``bias``) for W = ``weight(coefficients)`` and x (..., d_in), block by block,
        without W.

        Differentiable in all three; the same map as ``x @ weight(coefficients).T + bias`` to
        round-off. The input is split (not sliced: the backward then concatenates instead of
        scattering into zeros), each pair of types is one product over multiplicities, and a
        bias (which is zero outside the trivial summands when it is equivariant) is added to
        the scalar blocks inside their product.
        """
        if coefficients.shape != (self.dim,):
            raise ValueError(f"expected {self.dim} coefficients, got {tuple(coefficients.shape)}")
        d_out, d_in = self.shape
        if x.shape[-1:] != (d_in,):
            raise ValueError(f"expected inputs of shape (..., {d_in}), got {tuple(x.shape)}")
        if bias is not None and bias.shape != (d_out,):
            raise ValueError(f"expected a bias of shape ({d_out},), got {tuple(bias.shape)}")
        lead = x.shape[:-1]
        x = x.reshape(-1, d_in)
        n = x.shape[0]
        if self.q_in is not None:
            x = x @ self._array("q_in", self.q_in, x.device, x.dtype).T
        if self._order_in is not None:
            x = x.index_select(-1, self._array("order_in", self._order_in, x.device))
        pieces_in = x.split([hi - lo for lo, hi, _, _ in self._runs_in], dim=-1)
        # the bias goes into the blocks when the output keeps its coordinates, else at the end
        bias_inside = bias is not None and self.q_out is None and self._order_out is None
        outs: list[torch.Tensor | None] = [None] * len(self._runs_out)
        added = [False] * len(self._runs_out)  # whether the bias of an output type is in
        for i, ((t_out, t_in), scale) in enumerate(zip(self._pairs, self._scales)):
            _, _, _, m_o, m_i, start, size = self.blocks[i]
            d_i = self._runs_in[t_in][3]
            lo, hi, _, d_o = self._runs_out[t_out]
            xs = pieces_in[t_in]
            if scale is not None:
                mix = coefficients[start : start + size].reshape(m_o, m_i) * scale
            else:
                b = self._block_tensors(i, x.device, x.dtype)[0]
                xs = torch.einsum("nbj,kij->nbki", xs.reshape(n, m_i, d_i), b)
                mix = coefficients[start : start + size].reshape(m_o, -1)
                m_i, d_i = mix.shape[1], d_o
            mix = mix.to(x.dtype)
            if bias_inside and outs[t_out] is None and d_o == 1 and self._fixed_out[t_out]:
                y = torch.addmm(bias[lo:hi], xs.reshape(n, m_i), mix.T)  # type: ignore[index]
                added[t_out] = True
            else:
                y = _mix_copies(xs, mix, n, m_i, d_i)
            outs[t_out] = y if outs[t_out] is None else outs[t_out] + y
        pieces = []
        for t, (y, (lo, hi, _, _)) in enumerate(zip(outs, self._runs_out)):
            if y is None:
                y = x.new_zeros((n, hi - lo))
            if bias_inside and self._fixed_out[t] and not added[t]:
                y = y + bias[lo:hi]  # type: ignore[index]
            pieces.append(y)
        y = torch.cat(pieces, dim=-1) if len(pieces) != 1 else pieces[0]
        if self._inverse_out is not None:
            y = y.index_select(-1, self._array("inverse_out", self._inverse_out, y.device))
        if self.q_out is not None:
            y = y @ self._array("q_out", self.q_out, y.device, y.dtype)
        if bias is not None and not bias_inside:
            y = y + bias
        return y.reshape(*lead, d_out)


def _mix_copies(x: torch.Tensor, mix: torch.Tensor, n: int, copies: int, size: int
                ) -> torch.Tensor:
    """y_a = Σ_b mix[a, b] x_b for x (n, copies·size) holding ``copies`` vectors of ``size``."""
    if size == 1:
        return x.reshape(n, copies) @ mix.T
    # as (size, n, copies): one large product per component instead of n small ones (which is
    # what a broadcast matmul over n does when no gradient is taken)
    spread = x.reshape(n, copies, size).permute(2, 0, 1)
    return torch.matmul(spread, mix.T).permute(1, 2, 0).reshape(n, -1)


def _scaled_identity(basis: np.ndarray) -> float | None:
    """s when ``basis`` is the single matrix s·I, else None."""
    if basis.shape[0] != 1 or basis.shape[1] != basis.shape[2]:
        return None
    s = float(basis[0, 0, 0])
    return s if np.allclose(basis[0], s * np.eye(basis.shape[1]), rtol=0, atol=1e-14) else None


_HOM_CACHE: OrderedDict[tuple[Hashable, Hashable], HomSpace] = OrderedDict()
_HOM_CACHE_SIZE = 256


def hom(rep_in: Rep | str, rep_out: Rep | str) -> HomSpace:
    """The space of equivariant linear maps from ``rep_in`` to ``rep_out`` (cached).

    Either may also be e3nn irreps (a string such as ``"8x0e+4x1o"`` or an ``o3.Irreps``), read
    as a representation of O(3) (see :func:`equirelax.reps.as_reps`).

    >>> import equirelax as er
    >>> G = er.groups.symmetric(5)
    >>> er.hom(er.reps.natural(G), er.reps.natural(G)).dim   # Deep Sets
    2
    """
    rep_in, rep_out = as_reps(rep_in, rep_out, names=("rep_in", "rep_out"), where="hom()")
    if rep_in.group != rep_out.group:
        raise ValueError(
            f"hom() needs representations of one group, got {rep_in.group!r} and "
            f"{rep_out.group!r}"
        )
    if rep_in.is_permutation and rep_out.is_permutation:
        make = lambda: OrbitHomSpace(rep_in, rep_out)  # type: ignore[arg-type]  # noqa: E731
    else:
        make = lambda: BlockHomSpace(rep_in, rep_out)  # noqa: E731
    return _cached(_HOM_CACHE, (rep_in.key, rep_out.key), _HOM_CACHE_SIZE, make)


def fixed_space(rep: Rep) -> HomSpace:
    """Vectors fixed by every element (the equivariant biases): hom(trivial, rep)."""
    return hom(trivial(rep.group), rep)
