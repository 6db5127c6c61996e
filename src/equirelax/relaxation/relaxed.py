"""Relaxed: one layer computing F_eq(x) + θ · W x, and measuring how far W is from equivariant.

``W`` is an unconstrained map with the layer's input and output shape (a dense matrix on the
flattened features unless the layer's registration supplies another, e.g. a convolution).
During training each forward records, on the detached input x̂, the squared norms that the
penalties are built from:

* generator / Lie term  Σ_A ||W(A_in x̂) − A_out(W x̂)||²  over the discrete generators and the
  Lie algebra basis (zero for all A exactly when W is equivariant; with a free bias b a generator
  compares f(g x̂) with g f(x̂) and a Lie element W(A x̂) with A f(x̂), for f(x) = W x + b);
* activation norm ||W x̂||².

They are evaluated on the rows, or, for the default dense free term, from the rows' Gram matrix
in weight space (``gram``), whichever costs less for the batch. On a fused layer (below) with
the default dense free term, a training forward computes the output and the squares in one
autograd node (:mod:`equirelax.relaxation.fused`).

When the equivariant part is itself an affine map with a dense weight (a layer with a
``dense_map()`` hook, e.g. ``EquivariantLinear``, or a registered linear layer) the two are
fused: one matmul with W_eq + θ W, so the relaxed layer costs the exact layer's matmul plus
O(d_in · d_out) extra work.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from equirelax.homspace.space import fixed_space, hom
from equirelax.nn.linear import EquivariantLinear
from equirelax.nn.module import check_features
from equirelax.relaxation.actions import FeatureAction, StackedMatrixMap
from equirelax.relaxation.expansion import CoefficientGather
from equirelax.relaxation.fused import (
    Expansion,
    draw_signs,
    linear_images,
    new_step,
    relaxed_affine,
    signs_from_bits,
    sketch_signs,
)
from equirelax.relaxation.gram import GRAM_OVERHEAD, GramPenalty
from equirelax.relaxation.image_squares import image_squares
from equirelax.relaxation.prior import pathway_sq
from equirelax.relaxation.registry import (
    FreeLinear,
    FreeLowRank,
    Registration,
    default_actions,
    default_free,
    registration,
)
from equirelax.relaxation.squares import linear_squares
from equirelax.reps.base import Rep
from equirelax.reps.spec import as_reps, is_rep_spec

#: Layers with at most this many weight entries build W_eq by a gather of their coefficients
#: in the fused node (:meth:`Relaxed._coefficient_gathers`); finding the gather evaluates the
#: weight three times in float64, which larger layers are spared.
MAX_GATHER_ENTRIES = 1 << 24

#: The sketch size of ``penalty_sketch="auto"`` (see :meth:`Relaxed.sketch_size`).
AUTO_SKETCH = 16

#: What ``penalty_sketch="auto"`` charges, in multiply-adds, for one element that a penalty's
#: small tensor operations (gathers, differences, products with a scalar, random draws) read
#: or write: a matrix product runs its multiply-adds from registers and caches, these one
#: element at a time through memory. Fitted roughly to single relaxed layers timed on 256 rows
#: on a 2-core CPU, exact penalties against a sketch of 16 rows: the exact penalties of a
#: 480 → 1 layer (0.7M multiply-adds, 0.37M elements) took about 0.1 ms longer than the
#: sketch, those of a 96 → 1 layer about as long. Without it a layer with few multiply-adds
#: and many elements (an output layer: every row's images gathered, then multiplied by one
#: column) looks cheap, and ``"auto"`` kept its exact penalties where the sketch saved time.
ELEMENT_COST = 12


def check_relax_options(init_std: float, penalty_rows: int | None,
                        penalty_sketch: int | str | None = None) -> None:
    """Refuse a negative or non-finite ``init_std``, a ``penalty_rows`` that is not a positive
    integer (or None), a ``penalty_sketch`` that is not a positive integer, ``"auto"`` or None,
    and ``penalty_rows`` with a sketch size, naming the values received."""
    if isinstance(init_std, bool) or not isinstance(init_std, int | float):
        raise TypeError(f"init_std must be a number >= 0, got {init_std!r}")
    if not (math.isfinite(init_std) and init_std >= 0):
        raise ValueError(f"init_std must be a finite number >= 0, got {init_std!r}")
    if isinstance(penalty_sketch, str) and penalty_sketch != "auto":
        raise ValueError(f"penalty_sketch must be a positive integer, 'auto' or None, got "
                         f"{penalty_sketch!r}")
    for name, value in (("penalty_rows", penalty_rows), ("penalty_sketch", penalty_sketch)):
        if value is None or value == "auto":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a positive integer or None, got {value!r}")
        if value <= 0:
            raise ValueError(f"{name} must be a positive integer or None, got {value}")
    if penalty_rows is not None and isinstance(penalty_sketch, int):
        raise ValueError(f"penalty_rows={penalty_rows} and penalty_sketch={penalty_sketch} "
                         "cannot be used together: pass one of them")


@torch.compiler.disable
def _draw(gen: torch.Generator, m: int, p: int | None, dtype: torch.dtype = torch.int64
          ) -> torch.Tensor:
    """A permutation of range(m) (``p`` None) or m × p random bits (0 or 1, in ``dtype``) from
    ``gen``, on its device.

    Kept out of compiled graphs: Dynamo cannot trace a generator object (torch's default
    generator, used when the layer has none, traces)."""
    if p is None:
        return torch.randperm(m, generator=gen, device=gen.device)
    return torch.randint(0, 2, (m, p), generator=gen, device=gen.device, dtype=dtype)


def _total(values: list[torch.Tensor]) -> torch.Tensor | None:
    """The sum of recorded scalars (None for none); one forward records one, returned as it is
    (no stack and sum to run and differentiate every step)."""
    if not values:
        return None
    return values[0] if len(values) == 1 else torch.stack(values).sum()


def _scaled(square: torch.Tensor, scale: float) -> torch.Tensor:
    """A recorded square times its rows' factor (no operation for the factor 1)."""
    return square if scale == 1.0 else square * scale


def _check_layer_sizes(layer: nn.Module, rep_in: Rep, rep_out: Rep,
                       shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> None:
    """The reps must fit the layer: its ``in_features``/``out_features`` (the size of the last
    feature axis, as for ``nn.Linear``) and the dims of any reps it declares itself."""
    for side, rep, shape, features, own_rep in (
        ("input", rep_in, shape_in, "in_features", "rep_in"),
        ("output", rep_out, shape_out, "out_features", "rep_out"),
    ):
        size = getattr(layer, features, None)
        if (isinstance(size, int) and not isinstance(size, bool) and size != shape[-1]
                and size != math.prod(shape)):  # a shaped layer counts all its feature axes
            raise ValueError(
                f"{type(layer).__name__} has {features}={size}, but the {side} rep {rep!r} "
                f"gives {side} features of shape {shape}: expected a last axis of {size}, "
                f"got {shape[-1]}"
            )
        own = getattr(layer, own_rep, None)
        if isinstance(own, Rep) and own.dim != rep.dim:
            raise ValueError(f"{type(layer).__name__} declares {own_rep} {own!r} of dim "
                             f"{own.dim}, but the {side} rep passed, {rep!r}, has dim {rep.dim}")


class Relaxed(nn.Module):
    """Relax one equivariant layer: ``layer(x) + theta * free(x)`` with recorded penalties.

    Works for any layer whose input/output actions are known: pass ``rep_in``/``rep_out`` (and
    ``shapes`` when features are not flat vectors) for a layer that does not declare them, or
    ``register`` its type. A layer may also describe itself, without importing this package,
    by the equivariant-module protocol (:mod:`equirelax.nn.module`), whose hooks are found by
    duck typing:

    * ``rep_in``, ``rep_out``: the representations on its input and output features;
    * ``feature_shapes``: ``(input trailing shape, output trailing shape)`` when features are not
      flat vectors, e.g. ``((C_in, 3), (C_out, 3))`` for vector neurons;
    * ``free_term(init_std, bias) -> nn.Module``: its own unconstrained term (e.g. a convolution),
      applied to the raw input tensor; optionally ``relaxed_forward(x, free, theta)``, which
      computes ``layer(x) + theta * free(x)`` for that term in one go (e.g. one convolution with
      the summed kernels);
    * ``group_actions() -> {"in": [...], "out": [...], "lie_in": [...], "lie_out": [...]}``:
      tensor maps of the discrete generators / Lie algebra on its raw input and output (paired
      by position), used by the penalties when the actions are not matrices on flat features;
      optionally ``"matrices_in"``/``"matrices_out"``: the same maps as dense matrices on the
      flattened features (discrete first), which enables the Gram path of a dense free term;
    * ``dense_map() -> (W, b)``: the dense weight and bias of an affine layer (the fused
      forward, one matmul with ``W_eq + θ W``);
    * ``fold_equivariant(W, b)``: add an equivariant ``(W, b)`` into its own parameters
      (``harden(mode="project")``).

    A registration (:func:`~equirelax.relaxation.register`) of the layer's type takes
    precedence over the layer's own hooks (see :func:`~equirelax.relaxation.registry.registration`).
    """

    def __init__(
        self,
        layer: nn.Module,
        rep_in: Rep | str | None = None,
        rep_out: Rep | str | None = None,
        *,
        shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
        init_std: float = 1e-3,
        free_bias: bool = False,
        free: nn.Module | None = None,
        actions: tuple[FeatureAction, FeatureAction] | None = None,
        penalty_rows: int | None = None,
        penalty_sketch: int | str | None = None,
        free_rank: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(layer, Relaxed):
            raise TypeError("this layer is already relaxed")
        if not isinstance(layer, nn.Module):
            raise TypeError(f"Relaxed needs an nn.Module, got {type(layer).__name__}")
        check_relax_options(init_std, penalty_rows, penalty_sketch)
        reg = registration(layer) or Registration()
        if rep_in is None or rep_out is None:
            if reg.reps is not None:
                rep_in, rep_out = reg.reps(layer)
            else:
                rep_in = rep_in if rep_in is not None else getattr(layer, "rep_in", None)
                rep_out = rep_out if rep_out is not None else getattr(layer, "rep_out", None)
        if is_rep_spec(rep_in) and is_rep_spec(rep_out):  # Reps, or e3nn irreps of O(3)
            rep_in, rep_out = as_reps(rep_in, rep_out, names=("rep_in", "rep_out"),
                                      where="Relaxed")
        if not isinstance(rep_in, Rep) or not isinstance(rep_out, Rep):
            raise ValueError(
                f"cannot relax {type(layer).__name__}: it declares no rep_in/rep_out; pass "
                "Relaxed(layer, rep_in, rep_out) or register its type"
            )
        if shapes is None and reg.shapes is not None:
            shapes = reg.shapes(layer)
        if shapes is None:  # None, or no such attribute: flat features
            shapes = getattr(layer, "feature_shapes", None)
        self.shape_in = tuple(shapes[0]) if shapes else (rep_in.dim,)
        self.shape_out = tuple(shapes[1]) if shapes else (rep_out.dim,)
        for shape, rep, side in ((self.shape_in, rep_in, "input"), (self.shape_out, rep_out,
                                                                      "output")):
            if math.prod(shape) != rep.dim:
                raise ValueError(f"{side} feature shape {shape} has {math.prod(shape)} entries "
                                 f"but the {side} rep has dim {rep.dim}")
        _check_layer_sizes(layer, rep_in, rep_out, self.shape_in, self.shape_out)
        self.layer = layer
        self.rep_in, self.rep_out = rep_in, rep_out
        own_free = getattr(layer, "free_term", None)
        self.custom_free = free is not None or reg.free is not None or own_free is not None
        uses_own_free = free is None and reg.free is None and own_free is not None
        # the layer can add its own free term itself (e.g. one convolution with summed kernels)
        self._layer_adds_free = uses_own_free and hasattr(layer, "relaxed_forward")
        if free is None:
            if reg.free is not None:
                free = reg.free(layer, rep_in, rep_out, init_std, free_bias)
            elif own_free is not None:
                free = own_free(init_std=init_std, bias=free_bias)
            else:
                free = default_free(layer, rep_in, rep_out, init_std, free_bias, free_rank)
        ref = next(iter(layer.parameters()), None)
        if ref is not None:
            free = free.to(device=ref.device, dtype=ref.dtype)
        self.free = free
        if actions is None:
            if reg.actions is not None:
                actions = reg.actions(layer, rep_in, rep_out)
            elif hasattr(layer, "group_actions"):
                acts = layer.group_actions()
                actions = (FeatureAction(acts["in"], acts.get("lie_in", []),
                                         acts.get("matrices_in")),
                           FeatureAction(acts["out"], acts.get("lie_out", []),
                                         acts.get("matrices_out")))
            else:
                actions = default_actions(layer, rep_in, rep_out, (self.shape_in,
                                                                   self.shape_out))
        self.act_in, self.act_out = actions
        self._dense, self._fold = reg.dense, reg.fold
        flat = self.shape_in == (rep_in.dim,) and self.shape_out == (rep_out.dim,)
        # a layer applied by structure (no dense weight) is not fused with a dense free term
        self.fused = (self._dense is not None and isinstance(free, FreeLinear) and flat
                      and not getattr(layer, "structured", False))
        self.theta = 0.0
        self.projected_eval = True
        self.record_penalties = True
        self.penalty_rows = penalty_rows
        self.penalty_sketch = penalty_sketch
        # the rows' / sketch's random draws: None for torch's default generator; a study that
        # must not shift the default stream (dropout masks after this layer) sets its own
        self.penalty_generator: torch.Generator | None = None
        self.penalty_method = "auto"
        self._gram_cache: GramPenalty | bool | None = None
        self._lie_sq: list[torch.Tensor] = []
        self._norm_sq: list[torch.Tensor] = []
        # the fused node's images of the penalty rows (z, output action, rows' factor), whose
        # squares are formed when the penalties are taken
        self._images: list[tuple[torch.Tensor, StackedMatrixMap, float]] = []
        self._prepare_penalties()
        if self.fused:  # found now, not in the first forward (which may be traced)
            self._coefficient_gathers()

    def _prepare_penalties(self) -> None:
        """Build the penalties' maps now rather than in the first training forward: there,
        ``torch.compile`` would trace their numpy analysis (graph breaks) and recompile once
        they are cached."""
        if self.act_in.matrices is not None:
            self.act_in.prepare(self.shape_in, identity=True)
            if len(self.act_in):
                self.act_in.prepare(self.shape_in)
        if self.act_out.matrices is not None and len(self.act_out):
            self.act_out.prepare(self.shape_out)
        self._gram_penalty()

    @property
    def _lean_data(self) -> bool:
        """Whether the data path can take :meth:`_squares_linear`: the default dense free term
        without bias, on flat features, with both actions known as matrices."""
        free = self._modules["free"]
        return (not self.custom_free and isinstance(free, FreeLinear)
                and free.bias is None and self.act_in.matrices is not None
                and self.act_out.matrices is not None
                and self.shape_in == (self.rep_in.dim,) and self.shape_out == (self.rep_out.dim,))

    def _stack_in(self, x: torch.Tensor) -> torch.Tensor:
        """Every generator applied to flat input rows (m, d_in): (m, K, d_in)."""
        return self.act_in.prepare(self.shape_in)(x)

    def _stack_out(self, y: torch.Tensor) -> torch.Tensor:
        """Every generator applied to flat output rows (m, d_out): (m, K, d_out)."""
        return self.act_out.prepare(self.shape_out)(y)

    @property
    def penalty_method(self) -> str:
        """How the penalties are evaluated (same values, different cost): ``"data"`` on the
        input rows, ``"gram"`` from their Gram matrix (dense free terms with matrix actions
        only), ``"auto"`` whichever is cheaper for the batch at hand."""
        return self._penalty_method

    @penalty_method.setter
    def penalty_method(self, method: str) -> None:
        if method not in ("auto", "data", "gram"):
            raise ValueError(f"penalty_method must be 'auto', 'data' or 'gram', got {method!r}")
        self._penalty_method = method

    def check_penalty_method(self) -> None:
        """Raise now, not at the first training forward, if ``penalty_method`` cannot be used."""
        self._gram_penalty()

    # -- forward ------------------------------------------------------------------------------
    @property
    def theta(self) -> float:
        """The weight θ of the free term (set by the relaxed model's schedule)."""
        return self._theta

    @theta.setter
    def theta(self, value: float) -> None:
        self.set_theta(value)

    def set_theta(self, value: float, tensor: torch.Tensor | None = None) -> None:
        """Set θ (what assigning ``theta`` does; the relaxed model calls it every step).

        ``tensor``: θ as a 0-d float64 CPU tensor, when the caller has one for several layers
        (it is read, never written in place); else one is made here."""
        theta = float(value)
        if tensor is None:
            tensor = torch.tensor(theta, dtype=torch.float64)
        # what compiled code reads instead of the float (see _theta_now): whether the free term
        # is on, and θ as a tensor, an input of the graph rather than a constant baked into it.
        # Plain attributes, set without nn.Module.__setattr__'s checks for parameters/modules
        self.__dict__.update(_theta=theta, _theta_nonzero=theta != 0.0, _theta_tensor=tensor)

    def active_theta(self) -> float:
        """θ used by this forward: 0 in eval mode when ``projected_eval`` (the exact model)."""
        if not self.training and self.projected_eval:
            return 0.0
        return float(self.theta)

    def _theta_now(self) -> float | torch.Tensor | None:
        """θ for this forward, or None when the free term is off (θ = 0, or eval mode with
        ``projected_eval``).

        Under ``torch.compile`` θ is a 0-d CPU tensor: a float attribute would be specialised,
        so every new θ of the schedule would recompile the model; only the switch between θ = 0
        and θ ≠ 0 (which changes what is computed) does.
        """
        if (not self.training and self.projected_eval) or not self._theta_nonzero:
            return None
        return self._theta_tensor if torch.compiler.is_compiling() else self._theta

    def apply_free(self, x: torch.Tensor) -> torch.Tensor:
        """W x on features with the layer's trailing input shape."""
        if self.custom_free:
            return self.free(x)
        lead = x.shape[: x.dim() - len(self.shape_in)]
        y = self.free(x.reshape(*lead, self.rep_in.dim))
        return y.reshape(*lead, *self.shape_out)

    def _add_free(self, y: torch.Tensor, x: torch.Tensor, theta: float | torch.Tensor
                  ) -> torch.Tensor:
        """y + θ · W x; for the default dense free term one ``addmm`` (fewer ops to run and to
        differentiate than a matmul, a scale and a sum; a compiler fuses them itself)."""
        if (not isinstance(self.free, FreeLinear) or y.dtype != self.free.weight.dtype
                or not isinstance(theta, float)):
            return y + theta * self.apply_free(x)
        lead = x.shape[: x.dim() - len(self.shape_in)]
        out = torch.addmm(y.reshape(-1, self.rep_out.dim), x.reshape(-1, self.rep_in.dim),
                          self.free.weight.T, alpha=theta)
        if self.free.bias is not None:
            out = out + theta * self.free.bias
        return out.reshape(*lead, *self.shape_out)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """``layer(x, *args, **kwargs) + θ · W x``: extra arguments (e.g. node attributes of a
        steerable layer) go to the equivariant layer only; W acts on ``x``."""
        theta = self._theta_now()
        # with the free term off the layer runs alone (the same computation as the fused one,
        # and its own compiled inference path)
        drawn = None  # the penalty rows, when the fused branch drew them
        if self.fused and theta is not None and not args and not kwargs:
            if (not isinstance(x, torch.Tensor) or x.dim() < 1
                    or x.shape[-1] != self.rep_in.dim):  # its message, built only to fail
                check_features(x, self.rep_in, f"Relaxed({type(self.layer).__name__})")
            # compiled code and torch.func transforms take the hom space's own weight map (and
            # the plain operations): the nodes are eager only
            traced = (torch.compiler.is_compiling()
                      or torch._C._are_functorch_transforms_active())
            expansion = None if traced else self._coefficient_gathers()
            # with gathers the node takes the coefficients and forms W_eq + θ W itself (read
            # from the parameter dicts: this runs for every layer at every step)
            w, b = ((self._modules["layer"]._parameters["coefficients"],
                     self._modules["layer"]._parameters["bias_coefficients"])
                    if expansion is not None
                    else self._dense(self.layer))  # type: ignore[misc]
            if not traced and self._fuses_penalties(x, w, b, theta):
                sketch = self._fused_sketch(x)
                if sketch is None:
                    drawn = self._penalty_rows(x.detach().reshape(-1, self.rep_in.dim))
                if sketch is not None or not self._by_gram(drawn[0].shape[0]):
                    # the layer, its free term and W on the penalty rows and their images in
                    # one autograd node (which forms a sketch's rows Sᵀx itself); the squares
                    # are read from those images when the penalties are taken, for every
                    # layer at once (RelaxedModel.penalty) or for this one (take_squares).
                    # The arguments are this layer's own: the node's checks are skipped
                    y, z = linear_images(
                        x, w, b, self._modules["free"]._parameters["weight"],
                        theta,  # type: ignore[arg-type]
                        None if drawn is None else drawn[0],
                        self.act_in.prepare(self.shape_in, identity=True), sketch, expansion)
                    self._images.append((z, self.act_out.prepare(self.shape_out),
                                         1.0 if drawn is None else drawn[2]))
                    return y
            if expansion is not None and self._eager_node(x, w, theta):
                # the output in one node from the coefficients; penalties recorded below
                y = relaxed_affine(x, w, b, self.free.weight, theta,  # type: ignore[arg-type]
                                   expansion)
            else:
                if expansion is not None:
                    w, b = self._dense(self.layer)  # type: ignore[misc]
                free_w = self.free.weight.to(w.dtype)
                # eagerly one op, W_eq + θ W (its backward scales the gradient of W by θ all
                # the same); compiled, θ is a tensor, which alpha does not take
                w = (torch.add(w, free_w, alpha=theta) if isinstance(theta, float)
                     else w + theta * free_w)
                if self.free.bias is not None:
                    fb = theta * self.free.bias.to(w.dtype)
                    b = fb if b is None else b + fb
                y = nn.functional.linear(x, w, b)
        elif self._layer_adds_free and theta is not None and not args and not kwargs:
            y = self.layer.relaxed_forward(x, self.free, theta)
        else:
            y = self.layer(x, *args, **kwargs)
            if theta is not None:
                y = self._add_free(y, x, theta)
        if self.training and self.record_penalties and torch.is_grad_enabled():
            self._record(x.detach(), drawn)
        return y

    def _coefficient_gathers(self) -> Expansion | None:
        """The gathers of the weight and bias of an :class:`EquivariantLinear` from its
        coefficients (:class:`~equirelax.relaxation.expansion.CoefficientGather`), for the
        fused node to build W_eq + θ W itself; None for other layers, or when an entry of the
        weight or bias mixes coefficients, or the weight has more than
        :data:`MAX_GATHER_ENTRIES` entries. Found once per layer (three evaluations of its hom
        spaces), when the layer is built, and again on first use after a copy or pickle (they
        are not stored)."""
        found = self.__dict__.get("_gathers", False)
        if found is False:
            found = None
            layer = self.layer
            if (isinstance(layer, EquivariantLinear) and self._dense is EquivariantLinear.dense_map
                    and type(layer)._materialise is EquivariantLinear._materialise
                    and not layer.structured and layer.hom.entries <= MAX_GATHER_ENTRIES):
                weight = CoefficientGather.of(layer.hom.weight, layer.hom.dim)
                space = layer.bias_space
                bias = None if space is None else CoefficientGather.of(space.weight, space.dim)
                if weight is not None and (space is None or bias is not None):
                    found = (weight, bias)
            self.__dict__["_gathers"] = found
        return found

    def _eager_node(self, x: torch.Tensor, coefficients: torch.Tensor,
                    theta: float | torch.Tensor) -> bool:
        """Whether :func:`~equirelax.relaxation.fused.relaxed_affine` computes this forward's
        output: gradients wanted, the dense free term without bias, one dtype, eager code
        without autocast (as for :meth:`_fuses_penalties`)."""
        return (torch.is_grad_enabled() and isinstance(theta, float)
                and self.free.bias is None
                and x.dtype == coefficients.dtype == self.free.weight.dtype
                and not (torch.compiler.is_compiling()
                         or torch._C._are_functorch_transforms_active()
                         or torch.is_autocast_enabled(x.device.type)))

    def _fuses_penalties(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                         theta: float | torch.Tensor) -> bool:
        """Whether this training forward of the fused dense path, in eager code (the caller
        has checked that it is neither compiled nor under a ``torch.func`` transform, which
        take the plain operations, as in :meth:`_squares_linear`), can compute the output and
        the penalty squares in one node (:func:`~equirelax.relaxation.fused.relaxed_linear`):
        penalties recorded with gradients, the default dense free term without bias trained,
        one dtype, at least one generator, and no autocast (under which the layer's matmul
        runs in the autocast dtype, as ``F.linear`` does)."""
        if not (self.training and self.record_penalties and isinstance(theta, float)
                and torch.is_grad_enabled() and self._lean_generators()):
            return False
        free_w = self._modules["free"]._parameters["weight"]
        return (free_w.requires_grad and x.dtype == w.dtype == free_w.dtype
                and (b is None or b.dtype == w.dtype)
                and not torch.is_autocast_enabled(x.device.type))

    def _lean_generators(self) -> bool:
        """:attr:`_lean_data` with at least one generator on the input, kept for the free term
        and actions it was found for (every training forward asks)."""
        free, act_in, act_out = self._modules["free"], self.act_in, self.act_out
        bias = None if free is None else free._parameters.get("bias")
        found = self.__dict__.get("_lean_found")
        if (found is None or found[0] is not free or found[1] is not act_in
                or found[2] is not act_out or found[3] is not bias):
            found = (free, act_in, act_out, bias, self._lean_data and len(act_in) > 0)
            self.__dict__["_lean_found"] = found
        return found[4]

    def _fused_sketch(self, x: torch.Tensor) -> torch.Tensor | None:
        """The step's sign matrix S when the fused node sketches input ``x``'s rows (a
        sketch of them taken, and the data path, not the Gram path, chosen for its p rows);
        else None (the rows are drawn by :meth:`_penalty_rows`)."""
        if self.penalty_sketch is None:
            return None
        m = x.numel() // self.rep_in.dim
        if self.penalty_rows is not None and m > self.penalty_rows:
            return None
        p = self.sketch_size(m)
        if p is None or self._by_gram(p):
            return None
        return sketch_signs(self, m, p, x.dtype, x.device, self.penalty_generator)

    def _by_gram(self, rows: int) -> GramPenalty | None:
        """The Gram evaluation when :meth:`_record` takes it for ``rows`` rows, else None.

        The choice is remembered per number of rows and method (a batch size and a sketch
        size each step, one cost comparison each)."""
        choices = self.__dict__.setdefault("_gram_choices", {})
        key = (rows, self._penalty_method)
        use = choices.get(key)
        if use is None:
            gram = self._gram_penalty()
            use = choices[key] = gram is not None and (self.penalty_method == "gram" or (
                self.penalty_method == "auto"
                and gram.cheaper_than_data(rows, self.rep_in.dim, self.rep_out.dim)))
        return self._gram_cache if use else None  # type: ignore[return-value]

    def _record(self, x: torch.Tensor,
                drawn: tuple[torch.Tensor, torch.Tensor | None, float] | None = None) -> None:
        """Record the penalty squares of input ``x`` (detached), on the rows already
        ``drawn`` for it when given."""
        rows, const, scale = drawn or self._penalty_rows(x.reshape(-1, *self.shape_in))
        gram = self._by_gram(rows.shape[0])
        if gram is not None:
            lie_sq, norm_sq = gram(rows.reshape(rows.shape[0], -1), self.free.weight,
                                   self.free.bias, const)
        else:
            lie_sq, norm_sq = self._squares_data(rows, const)
        self._keep(lie_sq, norm_sq, scale)

    def _keep(self, lie_sq: torch.Tensor | None, norm_sq: torch.Tensor, scale: float) -> None:
        """Append one forward's squares, times the rows' factor ``scale``."""
        self._norm_sq.append(_scaled(norm_sq, scale))
        if lie_sq is not None:
            self._lie_sq.append(_scaled(lie_sq, scale))

    def _penalty_rows(self, rows: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """The rows the penalties are evaluated on, the value of the constant input coordinate
        of each (None: 1, as for real rows) and the factor on their sums of squares.

        Every squared term is a sum over rows of a quadratic form q(x̃) of the augmented row
        x̃ = [x; 1]. ``penalty_rows=k`` (m > k rows): k rows drawn uniformly without replacement
        (``torch.randperm`` from torch's default generator, so ``torch.manual_seed`` fixes
        them, or from ``penalty_generator`` when set), with factor m/k: each row is
        drawn with probability k/m, so the expectation is the full sum. ``penalty_sketch=p``
        (m > p rows): the p rows of SᵀX̃ for an m × p Rademacher S with entries ±1/√p, fresh at
        every step and, eagerly, shared by the layers sketching m rows to p (see
        :func:`~equirelax.relaxation.fused.sketch_signs`); their sum of q is tr(L X̃ᵀSSᵀX̃ Lᵀ)
        and E[SSᵀ] = I. Both are exactly 0 for an
        equivariant free term, whose residuals vanish on every row and every combination of
        rows. With m ≤ k (or m ≤ p) the rows are used as they are: exact, and cheaper.
        """
        m = rows.shape[0]
        gen = self.penalty_generator
        if self.penalty_rows is not None and m > self.penalty_rows:
            pick = (torch.randperm(m, device=rows.device) if gen is None
                    else _draw(gen, m, None).to(rows.device))
            return rows.index_select(0, pick[: self.penalty_rows]), None, m / self.penalty_rows
        p = self.sketch_size(m)
        if p is not None:
            # bits b in {0, 1} become the signs (2b − 1)/√p in place: a few ops on an m × p
            # tensor, where every op counts against the small matmuls of the sketched rows
            if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
                # drawn as the eager S is, so both paths see one S per seed; a generator object
                # is read outside the graph (_draw)
                s = (draw_signs(m, p, rows.dtype, rows.device, None) if gen is None
                     else signs_from_bits(_draw(gen, p, m, rows.dtype).to(rows.device), p))
            else:  # eagerly, one S per step for the layers sketching m rows to p
                s = sketch_signs(self, m, p, rows.dtype, rows.device, gen)
            sketched = (s.T @ rows.reshape(m, -1)).reshape(p, *rows.shape[1:])
            # the constant coordinate Sᵀ1 matters only where the free term has a constant
            # part (a bias, or a custom term, which may have one)
            affine = self.custom_free or getattr(self.free, "bias", None) is not None
            return sketched, (s.sum(0) if affine else None), 1.0
        return rows, None, 1.0

    def sketch_size(self, rows: int) -> int | None:
        """The number p of sketched rows for a batch of ``rows`` rows, None for the exact rows.

        ``penalty_sketch=p`` sketches any batch of more than p rows. ``"auto"`` sketches with
        p = :data:`AUTO_SKETCH` only where that pays: a dense free term whose exact penalties
        would cost more than the layer itself (3 · rows · d_in · d_out multiply-adds, forward
        and both gradients) and whose sketch would cost less than half of them; otherwise (small
        layers, few rows, custom free terms) the penalties stay exact. A penalty's cost is its
        multiply-adds plus :data:`ELEMENT_COST` for each element its small operations touch
        (see :meth:`_penalty_cost`). ``penalty_rows`` given with ``"auto"`` is used instead of
        a sketch.
        """
        p = self.penalty_sketch
        if p is None or (p == "auto" and self.penalty_rows is not None):
            return None
        if p != "auto":
            return p if rows > p else None
        # "auto" compares costs: remembered per number of rows and method, as _by_gram does
        choices = self.__dict__.setdefault("_auto_sketch_choices", {})
        key = (rows, self._penalty_method)
        if key not in choices:
            choices[key] = self._auto_sketch_size(rows)
        return choices[key]

    def _auto_sketch_size(self, rows: int) -> int | None:
        """:meth:`sketch_size` for ``penalty_sketch="auto"``: :data:`AUTO_SKETCH` where the
        sketch pays, else None."""
        if rows <= AUTO_SKETCH or self.custom_free or not isinstance(self.free, FreeLinear):
            return None
        d_in, d_out = self.rep_in.dim, self.rep_out.dim
        bias = self.free.bias is not None
        k = len(self.act_in)
        gram = self._gram_penalty() if self.penalty_method != "data" else None
        exact = self._penalty_cost(gram, rows, d_in, d_out, k, bias)
        # forming SᵀX, drawing S (three passes over its rows × p signs), then the p rows
        sketch = (rows * AUTO_SKETCH * d_in + ELEMENT_COST * 3 * rows * AUTO_SKETCH
                  + self._penalty_cost(gram, AUTO_SKETCH, d_in, d_out, k, bias))
        layer = 3 * rows * d_in * d_out
        return AUTO_SKETCH if exact > layer and 2 * sketch < exact else None

    def _penalty_cost(self, gram: GramPenalty | None, rows: int, d_in: int, d_out: int, k: int,
                      bias: bool) -> int:
        """The cost of the exact penalties on ``rows`` rows, forward and weight gradient, by
        the path :meth:`_record` takes for them: its multiply-adds plus :data:`ELEMENT_COST`
        per element touched by its other operations. On the rows, each row's k + 1 images
        (d_in each) and the outputs, residuals and their gradients (about four passes over
        (k + 1) · d_out per row); from the Gram matrix, about twelve passes over the stacked
        weight [W; L_1; ...; L_k] ((k + 1) · d_out · d_in entries, building it, its product's
        output and their gradients), plus the path's fixed cost (:data:`GRAM_OVERHEAD`)."""
        data, by_gram = GramPenalty.costs(rows, d_in, d_out, k, bias)
        on_rows = data + ELEMENT_COST * rows * (k + 1) * (d_in + 4 * d_out)
        if gram is None:
            return on_rows
        if self.penalty_method == "gram" or gram.cheaper_than_data(rows, d_in, d_out):
            return (by_gram + GRAM_OVERHEAD
                    + ELEMENT_COST * 12 * (k + 1) * d_out * (d_in + bias))
        return on_rows

    def _gram_penalty(self) -> GramPenalty | None:
        """The weight-space evaluation, for the default dense free term with matrix actions."""
        if self._gram_cache is None:
            possible = (not self.custom_free and isinstance(self.free, FreeLinear)
                        and self.act_in.matrices is not None
                        and self.act_out.matrices is not None)
            self._gram_cache = (GramPenalty(self.act_in.matrices, self.act_out.matrices,
                                            len(self.act_in.discrete), self.free.bias is not None)
                                if possible else False)
        if self._gram_cache is False:
            if self.penalty_method == "gram":
                raise ValueError(
                    f"penalty_method='gram' needs the default dense free term and actions given "
                    f"as matrices; {type(self.layer).__name__} has "
                    f"{'its own free term' if self.custom_free else 'no action matrices'}: use "
                    "'auto' or 'data' for this layer")
            return None
        return self._gram_cache

    def _squares_data(self, rows: torch.Tensor, const: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Σ_A ||W(A x) − A(W x)||² and ||W x||², evaluated on the rows themselves.

        For an affine free term f(x) = W x + b a discrete generator compares f(g x) with g f(x);
        a Lie algebra element compares the derivatives, W(A x) = f(A x) − f(0) with A f(x).
        ``const``: the constant input coordinate of each row when it is not 1 (sketched rows
        [Sᵀx; Sᵀ1]), for which f(x) means W x + const · b = f(x) + (const − 1) f(0).
        """
        k, n_discrete = len(self.act_in), len(self.act_in.discrete)
        if self._lean_data:
            return self._squares_linear(rows, k)
        m = rows.shape[0]
        stacked = self.act_in.stack(rows, self.shape_in, identity=True)  # (m, K+1, ...)
        out = self.apply_free(stacked.reshape(-1, *self.shape_in))
        out = out.reshape(m, k + 1, *out.shape[1:])
        affine = const is not None and (self.custom_free or self.free.bias is not None)
        f0 = (self.apply_free(rows.new_zeros((1, *self.shape_in)))
              if n_discrete < k or affine else None)
        if affine:  # f(x) and f(g x) with the row's constant: add (const − 1) f(0)
            shift = (const - 1.0).reshape(m, 1, *[1] * (out.dim() - 2)) * f0.unsqueeze(1)
            out = torch.cat([out[:, : n_discrete + 1] + shift, out[:, n_discrete + 1:]], dim=1)
        wx = out[:, 0]
        norm_sq = wx.pow(2).sum()
        if not k:
            return None, norm_sq
        terms = out[:, 1:]
        if n_discrete < k:  # Lie elements: the linear part W(A x) = f(A x) − f(0)
            terms = torch.cat([terms[:, :n_discrete], terms[:, n_discrete:] - f0.unsqueeze(1)],
                              dim=1)
        transformed = self.act_out.stack(wx, self.shape_out)
        return (terms - transformed).pow(2).sum(), norm_sq

    def _squares_linear(self, rows: torch.Tensor, k: int
                        ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """:meth:`_squares_data` for the default dense free term without bias on flat features,
        with actions known as matrices: W x = 0 at x = 0, so no f(0) is needed.

        The same values in about half the tensor operations (forward and backward): on the few
        rows of a sketch the penalty's cost is those operations, not its arithmetic.
        """
        w = self.free.weight
        x = rows.reshape(rows.shape[0], -1)
        if k and w.requires_grad and x.dtype == w.dtype and not (
                torch.compiler.is_compiling()
                or torch._C._are_functorch_transforms_active()):
            # one autograd node with a closed-form backward (see relaxation.squares)
            return linear_squares(w, x, self.act_in.prepare(self.shape_in, identity=True),
                                  self.act_out.prepare(self.shape_out))
        wx = nn.functional.linear(x, w)
        flat = wx.flatten()
        if not k:
            return None, torch.dot(flat, flat)
        # W on the rows and on their images in two matmuls rather than one on the stack: the
        # backward of slicing one product would fill and add zero tensors of its full size
        images = nn.functional.linear(self._stack_in(x), w)  # (m, K, d_out)
        residual = (images - self._stack_out(wx)).flatten()
        return torch.dot(residual, residual), torch.dot(flat, flat)

    def __getstate__(self) -> dict:
        # recorded penalty terms belong to the current graph: copies and pickles start afresh.
        # The dense/fold hooks are looked up again on loading: a registration made with lambdas
        # would make the module unpicklable
        state = self.__dict__.copy()
        state["_lie_sq"], state["_norm_sq"], state["_images"] = [], [], []
        state["_dense"] = state["_fold"] = None
        # the coefficient gathers hold an index per weight entry (more bytes than the weight):
        # found again on first use rather than stored
        state.pop("_gathers", None)
        return state

    def __setstate__(self, state: dict) -> None:
        theta = state.pop("theta", None)  # pickled when θ was a plain attribute
        super().__setstate__(state)
        if theta is not None:
            self.theta = theta
        self.__dict__.setdefault("_images", [])  # pickled before the fused node kept images
        reg = registration(self.layer) or Registration()
        self._dense, self._fold = reg.dense, reg.fold
        if self._gram_cache is None:  # pickled when the Gram penalty was not kept
            self._prepare_penalties()

    # -- penalties ----------------------------------------------------------------------------
    def take_squares(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Sum and clear the squared generator/Lie and norm terms recorded since the last call
        (the fused node's images turned into their squares here, for this layer alone)."""
        images, lie_sq, norm_sq = self.take_records()
        # (images recorded means the layer's lists were replaced: these are no longer its own)
        for z, stack, scale in images:
            lie, norm = image_squares((z,), (stack,))
            lie_sq.append(_scaled(lie, scale))
            norm_sq.append(_scaled(norm, scale))
        new_step()  # the next forward sketches with a fresh S
        return _total(lie_sq), _total(norm_sq)

    def take_records(self) -> tuple[list[tuple[torch.Tensor, StackedMatrixMap, float]],
                                    list[torch.Tensor], list[torch.Tensor]]:
        """Clear and return everything recorded since the last call: the fused node's images
        ((z, the output action, the factor on their squares) per forward, z being W on the
        penalty rows and their images, see
        :func:`~equirelax.relaxation.fused.relaxed_linear_images`) and the generator/Lie and
        the norm squares of the other forwards, one per forward (not summed). Unlike
        :meth:`take_squares` it does not start a new sketch step: :meth:`RelaxedModel.penalty`
        collects every layer's records this way, forms the squares of all their images in one
        node, then starts one step for all of them."""
        found = self.__dict__
        records = (found["_images"], found["_lie_sq"], found["_norm_sq"])
        if records[0] or records[1] or records[2]:
            # plain attributes: set without nn.Module.__setattr__'s checks, every step
            found.update(_images=[], _lie_sq=[], _norm_sq=[])
        return records

    def free_dense(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The free term's dense (d_out, d_in) weight and bias (only for the default free term)."""
        if isinstance(self.free, FreeLowRank):
            return self.free.u @ self.free.v.T, self.free.bias
        if not isinstance(self.free, FreeLinear):
            raise TypeError(f"the free term of this layer is a {type(self.free).__name__}, "
                            "not a dense matrix")
        return self.free.weight, self.free.bias

    def _low_rank_projection(self) -> torch.Tensor | None:
        """Coefficients (in the layer's own hom space) of P(U Vᵀ) for a low-rank free term,
        when that space computes them from the factors; else None."""
        space = getattr(self.layer, "hom", None)
        if isinstance(self.free, FreeLowRank) and hasattr(space, "coefficients_low_rank"):
            return space.coefficients_low_rank(self.free.u, self.free.v)
        return None

    def weight_residual_sq(self) -> torch.Tensor:
        """||W − P(W)||² (+ the same for the bias): W's distance from the equivariant maps.
        For a low-rank W on a structured layer, ||W||² − ||P(W)||² from the factors (P(W) is
        an orthogonal projection; the orbit basis has Gram matrix diag(orbit sizes))."""
        coefficients = self._low_rank_projection()
        if coefficients is not None:
            counts = torch.as_tensor(self.layer.hom.counts, dtype=coefficients.dtype,
                                     device=coefficients.device)
            res = (self.free.weight_sq_norm() - (counts * coefficients.pow(2)).sum()).clamp_min(0)
            b = self.free.bias
            if b is not None:
                fixed = fixed_space(self.rep_out)
                res = res + (b - fixed.project(b.reshape(-1, 1)).reshape(-1)).pow(2).sum()
            return res
        w, b = self.free_dense()
        space = hom(self.rep_in, self.rep_out)
        res = (w - space.project(w)).pow(2).sum()
        if b is not None:
            fixed = fixed_space(self.rep_out)
            res = res + (b - fixed.project(b.reshape(-1, 1)).reshape(-1)).pow(2).sum()
        return res

    def free_sq(self) -> torch.Tensor:
        """||W_free||²_F, the RPP prior on the free pathway: the free term's weights (its dense
        matrix, or a convolution's kernel), not its bias (as Finzi et al.)."""
        sq = pathway_sq(self.free)
        return sq if sq is not None else torch.zeros(())

    def equivariant_sq(self) -> torch.Tensor:
        """||W_eq||²_F, the RPP prior on the equivariant pathway, on its dense weight: from the
        basis Gram matrix for a layer that stores basis coefficients (cᵀ G c, no dense weight
        built), the registered dense weight, ``dense_matrix()`` or ``expanded_weight()``; other
        layers count their parameters except biases (see :func:`prior.pathway_sq`)."""
        sq = pathway_sq(self.layer)
        return sq if sq is not None else torch.zeros(())

    # -- hardening ----------------------------------------------------------------------------
    def harden(self, mode: str = "drop") -> nn.Module:
        """The equivariant layer alone: the free term dropped, or its equivariant part (scaled
        by the current θ) folded into the layer's own weights (``mode="project"``)."""
        if mode == "drop":
            return self.layer
        if mode != "project":
            raise ValueError(f"unknown hardening mode {mode!r}; expected 'drop' or 'project'")
        theta = float(self.theta)
        if theta == 0.0:
            return self.layer
        if self._fold is None:
            raise ValueError(
                f"harden(mode='project') needs to fold weights into {type(self.layer).__name__}: "
                "give it a fold_equivariant(W, b) method or register it with a fold= function, "
                "or use mode='drop'"
            )
        coefficients = self._low_rank_projection()
        if coefficients is not None:  # fold the coefficients of P(U Vᵀ): no dense W, no fold
            with torch.no_grad():
                layer = self.layer
                layer.coefficients.add_((coefficients * theta).to(layer.coefficients.dtype))
                b = self.free.bias
                if b is not None:
                    if layer.bias_space is None:
                        raise ValueError("cannot fold a bias into an EquivariantLinear built "
                                         "with bias=False; relax it with free_bias=False")
                    bc = layer.bias_space.coefficients(b.detach().double().reshape(-1, 1))
                    layer.bias_coefficients.add_((bc * theta).to(layer.coefficients.dtype))
            return self.layer
        w, b = self.free_dense()
        with torch.no_grad():
            w_eq = hom(self.rep_in, self.rep_out).project(w.detach().double()) * theta
            b_eq = None
            if b is not None:
                fixed = fixed_space(self.rep_out)
                b_eq = fixed.project(b.detach().double().reshape(-1, 1)).reshape(-1) * theta
        self._fold(self.layer, w_eq, b_eq)
        return self.layer

    def extra_repr(self) -> str:
        return f"theta={self.theta:.4g}, fused={self.fused}"
