"""The space of equivariant linear maps between two representations: basis, weights, projection.

``hom(rep_in, rep_out)`` picks the construction that fits:

* both permutation reps: the orbit basis (exact 0/1 weight sharing, one label per weight entry;
  materialising W is a gather, projecting is an orbit mean);
* otherwise: both reps are split into their summands, summands of the same type are grouped, and
  each pair of types gets a small orthonormal null-space basis, cached by representation. The
  weight of copies of a pair is Σ_k C_k ⊗ B_k, so big multiplicities cost nothing extra to solve.

Both kinds share one interface (``dim``, ``basis``, ``weight``, ``project``, ``coefficients``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np
import torch

from equirelax.homspace.nullspace import nullspace_basis
from equirelax.homspace.orbit import orbit_labels
from equirelax.reps.base import PermRep, Rep
from equirelax.reps.catalogue import trivial
from equirelax.reps.spec import as_reps

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(w: ArrayLike) -> tuple[torch.Tensor, bool]:
    if isinstance(w, np.ndarray):
        return torch.from_numpy(np.asarray(w, dtype=np.float64)), True
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor or numpy array, got {type(w).__name__}")
    return w, False


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
        key = (name, device)
        if key not in self._device_cache:
            self._device_cache[key] = make().to(device)
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
        if spread > 1:
            coefficients = coefficients.repeat_interleave(spread)
        return coefficients.index_select(0, labels).view(shape)

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
        if ctx.spread > 1:
            tangent = tangent.repeat_interleave(ctx.spread)
        return tangent.index_select(0, ctx.labels).view(ctx.shape)


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


#: Compiled code gathers weights with this many entries or more through the custom operators
#: (ATen's kernels; smaller ones are fused by the compiler, which saves the operator's dispatch).
OPAQUE_GATHER_ABOVE = 1 << 15

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
        if coefficients.requires_grad:
            return _OrbitGather.apply(coefficients, labels, self.spread, self.shape)
        if self.spread > 1:
            coefficients = coefficients.repeat_interleave(self.spread)
        return coefficients.index_select(0, labels).view(self.shape)

    def _traced_weight(self, coefficients: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The gather as ops that ``torch.compile`` and ``torch.export`` trace without a break.

        Dynamo cannot trace an autograd.Function with a custom ``jvp`` (``_OrbitGather`` needs
        one for ``torch.func``), so each layer would break the graph. Compiled code calls the
        custom operators ``equirelax::orbit_gather`` / ``orbit_sum`` (ATen's kernels, as
        eager); an exported program gets plain ``index_select`` (its backward is the same
        per-orbit sum), so that it runs without equirelax's operators registered. One orbit
        (e.g. the bias of a transitive rep) is a broadcast, whose backward is a plain sum:
        cheaper, and inductor's CPU code generator fails on a scatter into a single slot
        (torch 2.13).
        """
        if self.dim == 1:
            return coefficients.expand(self.labels.size).reshape(self.shape)
        if self.labels.size >= OPAQUE_GATHER_ABOVE and not torch.compiler.is_exporting():
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


def _types(rep: Rep) -> list[tuple[Rep, np.ndarray]]:
    """Group a rep's summands by type: [(summand, offsets of its copies)], in first-seen order."""
    found: dict[Hashable, tuple[Rep, list[int]]] = {}
    offset = 0
    for part in rep.parts:
        found.setdefault(part.key, (part, []))[1].append(offset)
        offset += part.dim
    return [(part, np.array(offs)) for part, offs in found.values()]


class BlockHomSpace(HomSpace):
    """Null-space bases per pair of summand types; weight blocks Σ_k C_k ⊗ B_k."""

    def __init__(self, rep_in: Rep, rep_out: Rep) -> None:
        super().__init__(rep_in, rep_out)
        self.blocks = []  # (basis (k, do, di), row index (m_o*do), col index (m_i*di), m_o, m_i)
        start = 0
        for part_out, offs_out in _types(rep_out):
            for part_in, offs_in in _types(rep_in):
                basis = atomic_basis(part_in, part_out)
                k = basis.shape[0]
                if k == 0:
                    continue
                rows = (offs_out[:, None] + np.arange(part_out.dim)[None, :]).reshape(-1)
                cols = (offs_in[:, None] + np.arange(part_in.dim)[None, :]).reshape(-1)
                size = len(offs_out) * len(offs_in) * k
                self.blocks.append((basis, rows, cols, len(offs_out), len(offs_in), start, size))
                start += size
        self.dim = start

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

    def weight(self, coefficients: torch.Tensor) -> torch.Tensor:
        if coefficients.shape != (self.dim,):
            raise ValueError(f"expected {self.dim} coefficients, got {tuple(coefficients.shape)}")
        w = coefficients.new_zeros(self.shape)
        for i, (_, _, _, m_o, m_i, start, size) in enumerate(self.blocks):
            b, r, c = self._block_tensors(i, coefficients.device, coefficients.dtype)
            coef = coefficients[start : start + size].reshape(m_o, m_i, -1)
            block = torch.einsum("abk,kij->aibj", coef, b).reshape(r.shape[0], c.shape[0])
            w = w.index_put((r[:, None], c[None, :]), block)
        return w

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
        return w.reshape(*lead, *self.shape)

    def coefficients(self, w: torch.Tensor) -> torch.Tensor:
        self._check_shape(w)
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
