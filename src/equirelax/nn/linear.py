"""EquivariantLinear: a linear layer whose weight lives in hom(rep_in, rep_out)."""

from __future__ import annotations

import copy
import ctypes
import weakref

import numpy as np
import torch
from torch import nn

from equirelax.homspace import space as hom_space_module
from equirelax.homspace.partition import PartitionHomSpace, partition_hom, tensor_orders
from equirelax.homspace.space import BlockHomSpace, HomSpace, OrbitHomSpace, fixed_space, hom
from equirelax.nn.module import EquivariantModule, check_features
from equirelax.reps.base import Rep
from equirelax.reps.spec import as_reps

#: The automatic choice applies S_n tensor-power layers by partitions from this many weight
#: entries (d_out · d_in) on, when that costs at most 1/STRUCTURED_SAVING of the dense matmul's
#: multiply-adds: below, the dense matmul is cheap and the partition path's many small ops
#: cost more than they save.
STRUCTURED_ABOVE = 1 << 16
STRUCTURED_SAVING = 4

#: The buffers a partition-structured layer applies its map with (see PartitionHomSpace).
_PARTITION_BUFFERS = ("fold", "fold_index", "bias_fold", "in_index", "in_back", "out_index",
                      "out_back")


def choose_space(rep_in: Rep, rep_out: Rep, structured: bool | None = None) -> HomSpace:
    """The hom space a layer uses: the partition-structured one for sums of S_n tensor powers
    when ``structured`` is True, or None and it is cheaper (see ``STRUCTURED_ABOVE``); the
    dense one of :func:`~equirelax.homspace.hom` otherwise. Deciding never builds the dense
    space, whose label matrix has d_out · d_in entries."""
    if structured is not None and not isinstance(structured, bool):
        raise TypeError(f"structured must be True, False or None (automatic), got {structured!r}")
    if structured is False:
        return hom(rep_in, rep_out)
    space = partition_hom(rep_in, rep_out)
    if space is None:
        if structured:
            raise ValueError(
                f"structured=True needs sums of tensor powers V^k (k <= 2, V natural, n >= the "
                f"sum of the orders) of a full symmetric group on both sides; got {rep_in!r} -> "
                f"{rep_out!r}")
        return hom(rep_in, rep_out)
    entries = rep_in.dim * rep_out.dim
    if structured or (entries >= STRUCTURED_ABOVE
                      and STRUCTURED_SAVING * space.cost() <= entries):
        return space
    return hom(rep_in, rep_out)


#: Inference with the eval cache applies a blockwise layer through its cached dense weight while
#: that product needs fewer multiply-adds than this (EquivariantLinear._cached_weight_is_cheaper).
CACHED_DENSE_BELOW = 1 << 26


class EquivariantLinear(EquivariantModule):
    """y = W x + b with W equivariant (W ∈ hom(rep_in, rep_out)) and b fixed by rep_out.

    The trainable parameters are the coefficients of W and b in their bases. The dense ``weight``
    is materialised per forward in training (a gather for orbit bases) and, on the CPU, cached in
    eval mode (see :meth:`weight_and_bias`); the cache is not part of the state_dict, which stays
    the same in train and eval.

    Between sums of tensor powers V^k (k <= 2) of the natural rep of S_n the layer is applied by
    partitions instead (:class:`~equirelax.homspace.partition.PartitionHomSpace`: sums,
    diagonals and broadcasts, O(n^max(k_in, k_out)) per basis map), never forming the dense
    weight, when ``structured`` is True, or None (the default) and that is cheaper. The
    coefficients are the same either way (same orbits, same order), so state_dicts move between
    the two; ``weight``/``export()`` still build the dense matrix on demand.

    ``layout``: how features are shaped. ``"flat"`` (default): (..., rep.dim). When each side
    is copies of one S_n tensor power V^k, ``"tensor"`` (..., n, ..., n), ``"channels_first"``
    (..., C, n, ..., n) or ``"channels_last"`` (..., n, ..., n, C) (see :class:`TensorLayout`);
    outputs come back in the same layout, and :meth:`forward_flat` takes flat features.

    Between representations of Lie groups in irreps form (e.g. ``irreps(O(3),
    "128x0e+64x1o+32x2e")``) W is block diagonal by Schur's lemma, and the forward applies it
    block by block instead (``blockwise``: one product over multiplicities per irrep type, as
    e3nn's ``o3.Linear``), whenever that needs at most half the multiply-adds of the dense
    product (in cached inference, only for large products: below that one product with the
    cached weight is faster). ``weight``/``export()`` still give the dense matrix.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, bias: bool = True, gain: float = 1.0,
                 structured: bool | None = None, layout: str = "flat") -> None:
        super().__init__()
        rep_in, rep_out = as_reps(rep_in, rep_out, names=("rep_in", "rep_out"),
                                  where="EquivariantLinear")  # Reps, or e3nn irreps of O(3)
        self.rep_in, self.rep_out = rep_in, rep_out
        #: how features are shaped (see :class:`TensorLayout`); None for flat features
        self.tensor_layout = TensorLayout(rep_in, rep_out, layout) if layout != "flat" else None
        self.hom: HomSpace = choose_space(rep_in, rep_out, structured)
        self.coefficients = nn.Parameter(torch.empty(self.hom.dim))
        self.bias_space: HomSpace | None = fixed_space(rep_out) if bias else None
        if self.bias_space is not None:
            self.bias_coefficients = nn.Parameter(torch.empty(self.bias_space.dim))
        else:
            self.register_parameter("bias_coefficients", None)
        self.gain = gain
        self._cache: _EvalCache | None = None
        #: whether forward applies W block by block (see BlockHomSpace.apply), never building it
        self.blockwise = isinstance(self.hom, BlockHomSpace) and self.hom.blockwise_is_cheaper
        self._register_bias_basis()
        # the gather indices of orbit bases, as buffers: see _register_indices
        self._register_indices()
        self.reset_parameters()

    def _register_indices(self) -> None:
        """Hold the gather index of each orbit basis (weight, bias) as a non-persistent buffer.

        Buffers move with ``.to()`` (no per-forward device lookup) and are plain inputs to
        ``torch.compile``, which would otherwise guard on the hom space's device cache and
        recompile when it fills. They are left out of the state_dict, and shared by copies
        (see ``__deepcopy__``), like the hom space they come from.
        """
        for name, space in (("weight_index", self.hom), ("bias_index", self.bias_space)):
            index = space.gather_index() if isinstance(space, OrbitHomSpace) else None
            self.register_buffer(name, index, persistent=False)
        self._register_partition_buffers()

    def _register_partition_buffers(self) -> None:
        """Hold the tensors the partition path applies its map with (None when not
        structured) as non-persistent buffers, built from the hom space in the coefficients'
        dtype and device."""
        tensors: dict[str, torch.Tensor | None] = {}
        if self.structured:
            coefficients = self.coefficients
            tensors = self.hom.index_tensors(coefficients.dtype)  # type: ignore[attr-defined]
            tensors = {k: None if t is None else t.to(coefficients.device)
                       for k, t in tensors.items()}
        for name in _PARTITION_BUFFERS:
            self.register_buffer(f"partition_{name}", tensors.get(name), persistent=False)

    @property
    def structured(self) -> bool:
        """Whether the layer is applied by partitions (no dense weight in its forward)."""
        return isinstance(self.hom, PartitionHomSpace)

    def _partition_tensors(self) -> dict[str, torch.Tensor | None]:
        return {name: self._buffers.get(f"partition_{name}") for name in _PARTITION_BUFFERS}

    def _register_bias_basis(self) -> None:
        """For blockwise layers, the bias basis as a (d_out, bias dim) matrix buffer, so the
        forward builds the bias with one matrix-vector product (a block hom-space would build
        it entry block by entry block, several small operations and their backward, each step).
        Non-persistent (derived from the representations); follows ``.to()`` like the indices.
        """
        basis = None
        if self.blockwise and isinstance(self.bias_space, BlockHomSpace):
            flat = self.bias_space.basis.reshape(self.bias_space.dim, self.out_features).T
            basis = flat.to(self.coefficients.dtype).contiguous()
        self.register_buffer("bias_basis", basis, persistent=False)

    @property
    def in_features(self) -> int:
        return self.rep_in.dim

    @property
    def out_features(self) -> int:
        return self.rep_out.dim

    def reset_parameters(self) -> None:
        """Variance-preserving init: E||W x||^2 ≈ gain^2 · d_out for unit-variance inputs."""
        with torch.no_grad():
            self.coefficients.normal_(0.0, self.gain * self.hom.init_std())
            if self.bias_coefficients is not None:
                self.bias_coefficients.zero_()
        self._cache = None

    def _materialise(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = _weight(self.hom, self.coefficients, self.weight_index)
        b = None
        if self.bias_space is not None:
            b = _weight(self.bias_space, self.bias_coefficients, self.bias_index).reshape(-1)
        return w, b

    def _parameters_of_weight(self) -> list[torch.Tensor]:
        return [self.coefficients] + (
            [self.bias_coefficients] if self.bias_coefficients is not None else []
        )

    def _may_cache(self, params: list[torch.Tensor]) -> bool:
        """Whether this forward may use the cached weight: eval mode, no gradient wanted to any
        coefficient, on the CPU, and not while ``torch.compile`` traces the module."""
        if self.training or (torch.is_grad_enabled() and any(p.requires_grad for p in params)):
            return False
        return self.coefficients.device.type == "cpu" and not torch.compiler.is_compiling()

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The dense (d_out, d_in) weight and (d_out,) bias.

        Cached on the CPU in eval mode when no gradient to the coefficients is needed (under
        ``torch.no_grad()`` or with frozen parameters): inference then costs one matmul and a
        comparison of the coefficients. The cache is checked against a copy of the coefficients'
        *bits*, not their ``_version`` counters or storage pointers, because edits through
        ``p.data`` (``p.data.mul_(2)``, ``p.data[0] = 1``, ``p.data = t``) bump no counter of the
        parameter and a freed storage can be reused at the same address; any change, by any
        route, rebuilds the weight. On other devices the weight is built every forward: there the
        comparison would cost a host synchronisation per layer, and building is one cheap kernel
        for orbit bases.
        """
        params = self._parameters_of_weight()
        if not self._may_cache(params):
            if not torch.compiler.is_compiling():  # compiled code would replay the assignment
                self._cache = None
            return self._materialise()
        if self._cache is None or not self._cache.valid_for(params):
            # built as ordinary tensors even under torch.inference_mode() (Lightning's
            # validation): inference tensors have no version counter for the cache to check
            with torch.inference_mode(False), torch.no_grad():
                w, b = self._materialise()
                self._cache = _EvalCache(params, w, b)
        return self._cache.weight, self._cache.bias

    def dense_map(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The relaxation hook for affine layers: the dense weight and bias (see
        :mod:`equirelax.nn.module`), i.e. :meth:`weight_and_bias`."""
        return self.weight_and_bias()

    def fold_equivariant(self, w: torch.Tensor, b: torch.Tensor | None) -> None:
        """Add an equivariant dense ``(w, b)`` into the coefficients (the relaxation hook of
        ``harden(mode="project")``): their coefficients in this layer's bases."""
        with torch.no_grad():
            self.coefficients.add_(self.hom.coefficients(w.to(self.coefficients.dtype)))
            if b is not None:
                if self.bias_space is None:
                    raise ValueError("cannot fold a bias into an EquivariantLinear built with "
                                     "bias=False; relax it with free_bias=False")
                bc = self.bias_space.coefficients(b.reshape(-1, 1).to(self.coefficients.dtype))
                self.bias_coefficients.add_(bc)

    @property
    def weight(self) -> torch.Tensor:
        """The dense equivariant weight matrix (d_out, d_in)."""
        return self.weight_and_bias()[0]

    @property
    def bias(self) -> torch.Tensor | None:
        """The dense equivariant bias (d_out,), or None."""
        return self.weight_and_bias()[1]

    @property
    def layout(self) -> str:
        """How features are shaped: "flat", "tensor", "channels_first" or "channels_last"."""
        return "flat" if self.tensor_layout is None else self.tensor_layout.layout

    @property
    def feature_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """The trailing input and output shapes (the relaxation hook for shaped features; see
        :mod:`equirelax.nn.module`): None when flat, the tensor shapes in ``"tensor"`` and
        ``"channels_first"``, whose row-major order is the reps' flat order. Channels last is
        refused: its order is not the reps', so the free term's penalties would act on the
        wrong axes."""
        lay = self.tensor_layout
        if lay is None:
            return None
        if lay.layout == "channels_last":
            raise ValueError(
                "a layer with layout='channels_last' cannot be relaxed (the relaxation acts on "
                "features in the reps' order, channels first); build it with "
                "layout='channels_first' and move the channel axis outside the layer "
                "(x.movedim(-1, -3)), got layout='channels_last'")
        return tuple(lay.shape_in), tuple(lay.shape_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = W x + b on features shaped by ``layout`` (flat: (..., rep_in.dim))."""
        if self.tensor_layout is not None:
            return self._forward_shaped(x)
        return self.forward_flat(x)

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """The forward on flat features (..., rep_in.dim), whatever ``layout`` is."""
        check_features(x, self.rep_in, type(self).__name__)
        if self.structured:
            # the bias joins the per-copy constants (and diagonals): no pass over the output
            return self.hom.apply(  # type: ignore[call-arg]
                self.coefficients, x, self._partition_tensors(), self.bias_coefficients)
        if torch.compiler.is_compiling() and self._compiled_inference():
            return _inference_linear(
                x, self.coefficients, self.weight_index, self.hom.spread, self.out_features,
                self.bias_coefficients, self.bias_index,
                self.bias_space.spread if self.bias_space is not None else 1,  # type: ignore
            )
        if self.blockwise and not self._cached_weight_is_cheaper(x):
            b = None
            if self.bias_basis is not None:
                b = torch.mv(self.bias_basis, self.bias_coefficients)
            elif self.bias_space is not None:
                b = _weight(self.bias_space, self.bias_coefficients, self.bias_index).reshape(-1)
            return self.hom.apply(self.coefficients, x, b)  # type: ignore[call-arg]
        w, b = self.weight_and_bias()
        return nn.functional.linear(x, w, b)

    def _forward_shaped(self, x: torch.Tensor) -> torch.Tensor:
        """The forward on features shaped by ``layout``: the structured path reads them in
        place (a view, or a movedim for channels last); the dense path flattens them."""
        lay = self.tensor_layout
        lead = lay.leading(x, type(self).__name__)  # type: ignore[union-attr]
        last = lay.layout == "channels_last"  # type: ignore[union-attr]
        rows_in = lay.rows(x)  # type: ignore[union-attr]
        if self.structured:
            y = self.hom.apply_shaped(  # type: ignore[attr-defined]
                self.coefficients, rows_in, self._partition_tensors(),
                self.bias_coefficients, channels_last=last)
        else:
            first = rows_in.movedim(-1, 1) if last else rows_in
            y = self.forward_flat(first.reshape(first.shape[0], self.in_features))
            y = y.view(y.shape[0], *lay.channels_first_out)  # type: ignore[union-attr]
            y = y.movedim(1, -1) if last else y
        return lay.restore(y, lead)  # type: ignore[union-attr]

    def _cached_weight_is_cheaper(self, x: torch.Tensor) -> bool:
        """Whether a blockwise layer runs this forward with its cached dense weight instead.

        In inference with the eval cache (see :meth:`_may_cache`) the dense path is a single
        product, while the blocks cost a few small operations each; below
        ``CACHED_DENSE_BELOW`` multiply-adds for the dense product the single product is faster
        (measured on the CPU: 64 rows of a 480-dimensional irreps layer), above it the blocks
        are (1024 rows: about half the time).
        """
        if not self._may_cache(self._parameters_of_weight()):
            return False
        rows = x.numel() // max(self.in_features, 1)
        return rows * self.in_features * self.out_features < CACHED_DENSE_BELOW

    def _compiled_inference(self) -> bool:
        """Whether compiled code runs this forward as ``equirelax::inference_linear``: eval mode
        under ``torch.no_grad()``, orbit bases, on the CPU, not exported.

        Compiled code cannot use the eval cache (checking it is data-dependent control flow), so
        it would build the dense weight at every call, which eager inference does not: the
        operator keeps its own cache, checked against the coefficients' bits like the eval
        cache, and never hands the weight out (nothing can edit it in place). Not when inductor
        freezes weights (:func:`~equirelax.homspace.space.inductor_freezes`): the traced gather
        and ``linear`` are then folded and prepacked by the compiler, which is faster still.

        Small layers take the operator too (an MLP's 5 -> 480 and 480 -> 1): their traced
        gathers cost more than the operator's call, not through their arithmetic but because
        inductor gives a gather of a few thousand entries its own parallel region (a wake-up
        of the OpenMP workers per call, costly with ``OMP_WAIT_POLICY=PASSIVE``) and lays out
        the weight of a single output feature with a zero stride that ``addmm`` copies first.
        """
        return (not self.training and not torch.is_grad_enabled()
                and not hom_space_module.inductor_freezes()  # frozen: the gather folds
                and self.weight_index is not None
                and (self.bias_space is None or self.bias_index is not None)
                and self.coefficients.device.type == "cpu"
                and not torch.compiler.is_exporting())

    def train(self, mode: bool = True) -> EquivariantLinear:
        """Set training mode; entering it drops both inference caches (they go stale with every
        step; compiled training never reaches the code that drops them otherwise)."""
        super().train(mode)
        if mode:
            self._cache = None
            _INFERENCE_CACHE.pop(id(self.coefficients), None)
        return self

    def export(self) -> nn.Linear:
        """A plain ``torch.nn.Linear`` computing the same map (for deployment)."""
        w, b = self.weight_and_bias()
        lin = nn.Linear(self.in_features, self.out_features, bias=b is not None)
        lin = lin.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if b is not None:
                lin.bias.copy_(b)
        return lin

    def __getstate__(self) -> dict:
        # the eval cache is derived data: copies and pickles rebuild it when first needed
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        # a copy made by __deepcopy__ shares the current buffers; a pickle may be older
        current = state.pop("_current_buffers", False)
        super().__setstate__(state)
        # pickled before the gather indices (or the current partition tensors) were buffers
        if "weight_index" not in self._buffers or "partition_bias_fold" not in self._buffers:
            self._register_indices()
        elif self.structured and not current:
            # derived from the hom space, whose layout may have changed since the pickle was
            # written: rebuilt (they are small)
            self._register_partition_buffers()
        if "blockwise" not in self.__dict__:  # pickled before layers applied blocks
            self.blockwise = False
        if "bias_basis" not in self._buffers:
            self._register_bias_basis()

    def __deepcopy__(self, memo: dict) -> EquivariantLinear:
        # the gather indices are read-only and as large as the weight: the copy shares them
        # (as it shares the hom space) instead of duplicating them; everything else is copied
        indices = [self.weight_index, self.bias_index,
                   *self._partition_tensors().values()]
        for index in indices:
            if index is not None:
                memo.setdefault(id(index), index)
        twin = type(self).__new__(type(self))
        memo[id(self)] = twin
        state = copy.deepcopy(self.__getstate__(), memo)
        state["_current_buffers"] = True
        twin.__setstate__(state)
        return twin

    def extra_repr(self) -> str:
        return (
            f"{self.rep_in!r} -> {self.rep_out!r}, hom dim={self.hom.dim}, "
            f"bias={self.bias_space is not None}"
            + (", structured" if self.structured else "")
            + (", blockwise" if self.blockwise else "")
        )


def _weight(space: HomSpace, coefficients: torch.Tensor, index: torch.Tensor | None
            ) -> torch.Tensor:
    """``space.weight(coefficients)``, with the caller's gather index for orbit bases."""
    if index is not None:
        return space.weight(coefficients, index)  # type: ignore[call-arg]
    return space.weight(coefficients)


# -- compiled inference: one opaque operator with its own weight cache ------------------------

class _InferenceEntry:
    """The dense weight and bias built from one coefficient tensor, and the bits they were
    built from; removed when that tensor is freed (a weak reference's callback)."""

    def __init__(self, coefficients: torch.Tensor, bias_coefficients: torch.Tensor | None,
                 index: torch.Tensor, bias_index: torch.Tensor | None,
                 weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        key = id(coefficients)
        self.ref = weakref.ref(coefficients, lambda _: _INFERENCE_CACHE.pop(key, None))
        params = [t for t in (coefficients, bias_coefficients) if t is not None]
        #: bit views of the parameters' storages (kept alive here, so that a parameter whose
        #: storage was replaced, e.g. by ``p.data = t``, cannot show the same address) and
        #: copies of their bits when the weight was built
        self.snapshots = [_Snapshot(p) for p in params]
        self.indices = (index, bias_index)
        self.weight, self.bias = weight, bias

    def valid_for(self, coefficients: torch.Tensor, bias_coefficients: torch.Tensor | None,
                  index: torch.Tensor, bias_index: torch.Tensor | None) -> bool:
        """Whether the parameters are the same tensors, on the same storages, holding the same
        bits as when the weight was built (every way of editing them changes one of these)."""
        if (self.ref() is not coefficients or self.indices[0] is not index
                or self.indices[1] is not bias_index):
            return False
        params = (coefficients,) if bias_coefficients is None else (
            coefficients, bias_coefficients)
        if len(params) != len(self.snapshots):
            return False
        return all(snap.held_by(p) for snap, p in zip(self.snapshots, params))


#: Weights built by ``equirelax::inference_linear``, by ``id`` of their coefficient tensor.
_INFERENCE_CACHE: dict[int, _InferenceEntry] = {}


def _gather(coefficients: torch.Tensor, index: torch.Tensor, spread: int) -> torch.Tensor:
    if spread > 1:
        coefficients = coefficients.repeat_interleave(spread)
    return coefficients.index_select(0, index)


# The operator is defined through ``torch.library.Library`` rather than ``custom_op``: it never
# needs gradients (it runs only under ``torch.no_grad()``), and ``custom_op`` adds a Python
# autograd layer to every call, which cost more than the whole eager layer's bookkeeping (about
# 60 µs per call against 10 µs measured for a bare operator), so compiled inference was slower
# than eager. Without an autograd kernel, autograd's fallback (C++) passes the call through.
_LIBRARY = torch.library.Library("equirelax", "FRAGMENT")
_LIBRARY.define(
    "inference_linear(Tensor x, Tensor coefficients, Tensor index, int spread, "
    "int out_features, Tensor? bias_coefficients, Tensor? bias_index, int bias_spread) -> Tensor"
)


def _inference_linear_kernel(x: torch.Tensor, coefficients: torch.Tensor, index: torch.Tensor,
                             spread: int, out_features: int,
                             bias_coefficients: torch.Tensor | None,
                             bias_index: torch.Tensor | None, bias_spread: int) -> torch.Tensor:
    """``linear(x, W, b)`` with W = c[index] (and b likewise), the pair cached across calls
    while the coefficients keep their bits (see :meth:`EquivariantLinear._compiled_inference`).
    """
    key = id(coefficients)
    entry = _INFERENCE_CACHE.get(key)
    if entry is None or not entry.valid_for(coefficients, bias_coefficients, index, bias_index):
        weight = _gather(coefficients, index, spread).view(out_features, x.shape[-1])
        bias = None
        if bias_coefficients is not None and bias_index is not None:
            bias = _gather(bias_coefficients, bias_index, bias_spread)
        entry = _INFERENCE_CACHE[key] = _InferenceEntry(
            coefficients, bias_coefficients, index, bias_index, weight, bias)
    return nn.functional.linear(x, entry.weight, entry.bias)


def _inference_linear_fake(x: torch.Tensor, coefficients: torch.Tensor, index: torch.Tensor,
                           spread: int, out_features: int,
                           bias_coefficients: torch.Tensor | None,
                           bias_index: torch.Tensor | None, bias_spread: int) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], out_features))


_LIBRARY.impl("inference_linear", _inference_linear_kernel, "CompositeExplicitAutograd")
torch.library.register_fake("equirelax::inference_linear", _inference_linear_fake, lib=_LIBRARY)
_inference_linear = torch.ops.equirelax.inference_linear.default


#: Integer dtypes of each element size: coefficients are compared bit for bit through them.
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """``t``'s bit patterns (a view), so that equal means bitwise identical (NaN included)."""
    t = t.detach()
    return t.view(_BITS[t.element_size()]) if t.element_size() in _BITS else t


def _memory_words(t: torch.Tensor) -> np.ndarray:
    """The memory of the contiguous CPU tensor ``t`` as a numpy array of 8-byte words (bytes
    when its size is no multiple of 8), viewed by address: valid while ``t``'s storage lives
    and is not reallocated (callers hold ``t`` and check its address first)."""
    nbytes = t.numel() * t.element_size()
    memory = (ctypes.c_char * nbytes).from_address(t.data_ptr())
    return np.frombuffer(memory, dtype=np.int64 if nbytes % 8 == 0 else np.uint8)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.numel() < 1 << 12 or a.device.type != "cpu":
        return torch.equal(a, b)
    # numpy compares CPU arrays faster than torch.equal from a few thousand entries on (one
    # thread: 7 vs 21 µs for 2^15 int32, 0.06 vs 0.4 ms for 2^19; 3.3 vs 3.9 µs at 2^12)
    return bool(np.array_equal(a.numpy(), b.numpy()))


class _EvalCache:
    """A materialised (weight, bias) and the coefficient bits it was built from.

    Valid while the coefficients hold exactly those bits (same dtype, device and shape) and the
    returned weight and bias were not edited in place (their own version counters, which
    in-place edits of the returned tensors do bump).
    """

    def __init__(self, params: list[torch.Tensor], weight: torch.Tensor,
                 bias: torch.Tensor | None) -> None:
        self.snapshots = [_Snapshot(p) for p in params]
        self.weight, self.bias = weight, bias
        self.versions = self._versions()

    def _versions(self) -> tuple[int, int | None]:
        return self.weight._version, (self.bias._version if self.bias is not None else None)

    def valid_for(self, params: list[torch.Tensor]) -> bool:
        if len(params) != len(self.snapshots) or self._versions() != self.versions:
            return False
        return all(snap.held_by(p) for snap, p in zip(self.snapshots, params))


class _Snapshot:
    """A parameter's storage and bits at one moment, to tell cheaply whether it still holds them.

    ``live`` is a bit view of the parameter's storage and keeps that storage alive, so no other
    storage can take its address: a parameter whose data was replaced (``p.data = t``) fails
    the address check, and any edit of the data in place (through ``p.data`` too, which bumps
    no version counter of ``p``) fails the comparison of bits with the copy ``value``, and a
    storage reallocated in place (``resize_``) fails the check of its first address. On the
    CPU, numpy views of both memories (as 8-byte words where the size allows) are made once:
    comparing them costs about half of ``torch.equal`` or of converting per call (5 vs 10 µs for
    32768 float32 coefficients, one thread). The view of the parameter's memory is made from
    its address, not by ``.numpy()``, which would make the parameter's storage non-resizable;
    it is read only after the address checks passed (the memory is still there).
    """

    def __init__(self, param: torch.Tensor) -> None:
        self.live = _bits(param)
        self.address = self.live.data_ptr()  # moves if the storage itself is reallocated
        self.value = self.live.clone()
        self.dtype = param.dtype
        self.words: tuple[np.ndarray, np.ndarray] | None = None
        if (self.live.device.type == "cpu" and self.live.numel() >= 1 << 12
                and self.live.is_contiguous()):
            self.words = (_memory_words(self.live), _memory_words(self.value))

    def held_by(self, param: torch.Tensor) -> bool:
        """Whether ``param`` lies on the same storage (address, device, dtype, shape, strides)
        and that storage still holds the snapshot's bits."""
        live = self.live
        if not (param.data_ptr() == self.address == live.data_ptr() and param.dtype == self.dtype
                and param.shape == live.shape and param.stride() == live.stride()
                and param.device == live.device):
            return False
        if self.words is not None:
            return bool(np.array_equal(*self.words))
        return _same_bits(self.value, live)


#: The feature layouts of :class:`EquivariantLinear` (see :class:`TensorLayout`).
LAYOUTS = ("flat", "tensor", "channels_first", "channels_last")


class TensorLayout:
    """Features of m copies of one tensor power V^⊗k (V the natural rep of S_n, k <= 2),
    shaped as tensors instead of flat vectors, on each side of a layer:

    * ``"tensor"``: (..., n, ..., n) with k axes of size n, one copy only (m = 1);
    * ``"channels_first"``: (..., m, n, ..., n);
    * ``"channels_last"``: (..., n, ..., n, m).

    The trailing shape is fixed by the rep, so the leading (batch) axes are whatever precedes
    it: k = 0 (trivial copies) is (...,) in ``"tensor"`` and (..., m) with channels.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, layout: str) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        sides = []
        for name, rep in (("rep_in", rep_in), ("rep_out", rep_out)):
            orders = tensor_orders(rep)
            if orders is None or len(set(orders)) != 1:
                raise ValueError(
                    f"layout={layout!r} needs rep_in and rep_out to be copies of one tensor "
                    f"power V^k (k <= 2) of the natural rep of a full symmetric group; "
                    f"{name} is {rep!r}")
            copies, order = len(orders), orders[0]
            if layout == "tensor" and copies != 1:
                raise ValueError(
                    f"layout='tensor' takes one copy of V^k on each side (no channel axis); "
                    f"{name} has {copies} copies ({rep!r}): use 'channels_first' or "
                    f"'channels_last'")
            sides.append((copies, order))
        self.n = n = rep_in.group.degree  # type: ignore[attr-defined]
        (self.copies_in, self.order_in), (self.copies_out, self.order_out) = sides
        self.shape_in = self._trailing(self.copies_in, self.order_in)
        self.shape_out = self._trailing(self.copies_out, self.order_out)
        #: the output of one row, channels first: (m_out, n, ..., n)
        self.channels_first_out = (self.copies_out, *[n] * self.order_out)

    def _trailing(self, copies: int, order: int) -> tuple[int, ...]:
        tensor = (self.n,) * order
        if self.layout == "tensor":
            return tensor
        return (copies, *tensor) if self.layout == "channels_first" else (*tensor, copies)

    def leading(self, x: torch.Tensor, where: str) -> tuple[int, ...]:
        """The leading axes of input ``x``, or a ValueError naming the expected and received
        shapes."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{where} expects a torch.Tensor, got {type(x).__name__}")
        k = len(self.shape_in)
        if x.dim() < k or tuple(x.shape[x.dim() - k:]) != self.shape_in:
            expected = ", ".join(["...", *map(str, self.shape_in)])
            raise ValueError(
                f"{where} with layout={self.layout!r} expects inputs of shape ({expected}), "
                f"got {tuple(x.shape)}")
        return tuple(x.shape[: x.dim() - k])

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """x with its leading axes made one (rows) and, in ``"tensor"``, a channel axis of
        size 1 added: (rows, m, n, ...) or, channels last, (rows, n, ..., m); a view where
        the leading axes allow it."""
        k = len(self.shape_in)
        x = x.reshape(-1, *self.shape_in) if x.dim() != k + 1 else x
        return x.unsqueeze(1) if self.layout == "tensor" else x

    def restore(self, y: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        """The output of :meth:`rows`-shaped rows back with the input's leading axes."""
        if self.layout == "tensor":
            y = y.squeeze(1)
        return y if y.shape[:1] == lead else y.reshape(tuple(lead) + self.shape_out)
