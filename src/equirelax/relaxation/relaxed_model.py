"""relax(model): train in a relaxed space; :class:`RelaxedModel`, the model it returns.

``relax`` wraps every equivariant layer of a model (every module that declares ``rep_in`` and
``rep_out`` and has no such module inside it, or registered types) in :class:`Relaxed`, and
returns a :class:`RelaxedModel` that owns the schedule θ(t) and sums the penalties:

    loss = task_loss + relaxed.penalty()      # then optimizer.step(); relaxed.step()

:mod:`relaxation.hardening` turns the trained model back into the original, exactly equivariant
architecture.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from equirelax.relaxation.actions import StackedMatrixMap
from equirelax.relaxation.fused import new_step
from equirelax.relaxation.image_squares import indexable, penalty_of_images, squares_of_images
from equirelax.relaxation.registry import declares_reps, registration
from equirelax.relaxation.relaxed import Relaxed, check_relax_options
from equirelax.relaxation.schedule import Schedule, make_schedule

LayerSelection = Iterable[str | type] | Callable[[str, nn.Module], bool] | None


def _is_candidate(module: nn.Module) -> bool:
    if isinstance(module, Relaxed):
        return False
    reg = registration(module)
    return declares_reps(module) or (reg is not None and reg.reps is not None
                                     and reg.by_default)


def _has_candidate_inside(module: nn.Module) -> bool:
    return any(_is_candidate(m) for name, m in module.named_modules() if name)


def _selector(layers: LayerSelection) -> Callable[[str, nn.Module], bool] | None:
    if layers is None:
        return None
    if callable(layers) and not isinstance(layers, type):
        return layers  # type: ignore[return-value]
    names = {x for x in layers if isinstance(x, str)}  # type: ignore[union-attr]
    types = tuple(x for x in layers if isinstance(x, type))  # type: ignore[union-attr]
    return lambda name, m: name in names or (bool(types) and isinstance(m, types))


class RelaxedModel(nn.Module):
    """A model whose equivariant layers are relaxed; owns θ(t) and the penalties.

    ``forward`` is the wrapped model's. In eval mode the relaxed layers run with θ = 0 (the
    exactly equivariant model) unless ``projected_eval=False`` was given to ``relax``, or the
    model is in RPP mode (``rpp=True``), which deploys both pathways.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: Schedule,
        lie_weight: float,
        norm_weight: float,
        proj_weight: float = 0.0,
        rpp_free_weight: float = 0.0,
        rpp_equiv_weight: float = 0.0,
        penalty_times_theta: bool = False,
        epsilon: float = 1e-12,
    ) -> None:
        super().__init__()
        for name, w in (("lie_weight", lie_weight), ("norm_weight", norm_weight),
                        ("proj_weight", proj_weight), ("rpp_free_weight", rpp_free_weight),
                        ("rpp_equiv_weight", rpp_equiv_weight)):
            if not (isinstance(w, int | float) and w >= 0 and math.isfinite(w)):
                raise ValueError(f"{name} must be a finite number >= 0, got {w!r}")
        self.model = model
        self.schedule = schedule
        self.lie_weight, self.norm_weight, self.proj_weight = lie_weight, norm_weight, proj_weight
        self.rpp_free_weight, self.rpp_equiv_weight = rpp_free_weight, rpp_equiv_weight
        self.penalty_times_theta = penalty_times_theta
        self.epsilon = epsilon
        self.t = 0
        record = lie_weight > 0 or norm_weight > 0
        for layer in self.relaxed_layers().values():
            layer.record_penalties = record
        self._push_theta()

    # -- the wrapped model --------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("rep_in", "rep_out"):
                return getattr(self._modules["model"], name)
            raise

    def relaxed_layers(self) -> dict[str, Relaxed]:
        """The relaxed layers by their module name inside the wrapped model."""
        model = self._modules["model"]
        if isinstance(model, Relaxed):
            return {"": model}
        return {n: m for n, m in model.named_modules() if isinstance(m, Relaxed)}

    def _layers(self) -> list[Relaxed]:
        """The relaxed layers in the order of :meth:`relaxed_layers`, without their names;
        looked up afresh at every call, so modules replaced after ``relax`` are seen.

        It runs twice a step (the penalty and the schedule), so it walks the module dicts
        itself (``modules()`` order: each module before its children, each module once),
        without the generators and name prefixes of ``modules()``: under half its time
        (measured 40-45 % on the S5 MLP and on SEGNN).
        """
        root = self._modules["model"]
        found: list[Relaxed] = [root] if isinstance(root, Relaxed) else []
        _collect_relaxed(root, found, {id(root)})
        return found

    # -- schedule -----------------------------------------------------------------------------
    @property
    def theta(self) -> float:
        """The current θ(t)."""
        return self.schedule(self.t)

    def step(self) -> float:
        """Advance the schedule by one step (or epoch); returns the new θ."""
        # a plain attribute, set without nn.Module.__setattr__'s checks (every step)
        self.__dict__["t"] = self.t + 1
        return self._push_theta()

    def _push_theta(self) -> float:
        """Hand θ(t) to every relaxed layer; returns it."""
        theta = float(self.theta)
        # one θ tensor (what compiled code reads) for every layer, not one per layer
        shared = torch.scalar_tensor(theta, dtype=torch.float64)
        for layer in self._layers():
            layer.set_theta(theta, shared)
        return theta

    def get_extra_state(self) -> dict:
        """The schedule position and every parameter of the schedule (kind, total, peak, value)."""
        return {"t": self.t, "schedule": self.schedule.describe()}

    def set_extra_state(self, state: dict) -> None:
        """Resume at the saved step; refuse a checkpoint of another schedule.

        The step alone would silently mean another θ under another schedule (step 13 of a
        37-step triangle is θ = 0.722, of a 100-step one 0.263). States saved with only ``t``
        (or a partial schedule description) still load; what they record is compared.
        """
        if not isinstance(state, dict) or "t" not in state:
            raise ValueError(f"expected a relaxed model's state {{'t': step, 'schedule': {{...}}}}"
                             f", got {state!r}")
        t = state["t"]
        if isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 0:
            raise ValueError(f"the saved schedule step must be an integer >= 0, got {t!r}")
        t = int(t)
        saved = state.get("schedule") or {}
        differences = self.schedule.differences(saved)
        if differences:
            raise ValueError(
                f"the checkpoint was saved with schedule {saved}, but this model has "
                f"{self.schedule.describe()} ({'; '.join(differences)}): its step {t} would mean "
                "another θ here; relax() with the checkpoint's schedule settings"
            )
        self.t = t
        self._push_theta()

    # -- penalties ----------------------------------------------------------------------------
    def seed_penalties(self, seed: int | None) -> None:
        """Draw the random rows / sketches of ``penalty_rows`` / ``penalty_sketch`` from a
        generator of their own, seeded with ``seed`` (None: torch's default generator again).

        By default they come from torch's default generator, so ``torch.manual_seed`` fixes
        them, but drawing them in the forward shifts what later layers draw (dropout masks): a
        study comparing a relaxed with an exact model under the same masks seeds them apart.
        Under ``torch.compile`` draws from a generator of their own break the graph (Dynamo
        does not trace generator objects); the default generator's do not.
        """
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))
        for layer in self.relaxed_layers().values():
            layer.penalty_generator = gen

    @staticmethod
    def _take_squares(layers: list[Relaxed]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The layers' recorded generator/Lie and norm squares (cleared from the layers)."""
        lie_sq, norm_sq = [], []
        for layer in layers:
            lie, norm = layer.take_squares()
            if lie is not None:
                lie_sq.append(lie)
            if norm is not None:
                norm_sq.append(norm)
        return lie_sq, norm_sq

    def _root(self, squares: list[torch.Tensor]) -> torch.Tensor:
        """sqrt(Σ squares + ε), or 0 for no squares (in the parameters' dtype and device)."""
        if not squares:
            ref = next(iter(self.parameters()), None)
            if ref is None:
                return torch.zeros(())
            return torch.zeros((), dtype=ref.dtype, device=ref.device)
        # a chain of additions: for the few layers of a model fewer operations (forward
        # and backward) than stacking the scalars and summing them
        total = squares[0]
        for square in squares[1:]:
            total = total + square
        return torch.sqrt(total + self.epsilon)

    def penalties(self) -> dict[str, torch.Tensor]:
        """Each penalty (unweighted) from the forwards since the last call; clears the records.

        ``lie``: sqrt(Σ_layers Σ_A ||W A_in x − A_out W x||² + ε) (generators of finite groups,
        Lie algebra of Lie groups); ``norm``: sqrt(Σ ||W x||² + ε); ``projection``:
        sqrt(Σ ||W − P(W)||² + ε); ``rpp_free`` / ``rpp_equiv``: the RPP priors, Σ ||W_free||²_F
        and Σ ||W_eq||²_F over the layers (dense weights, no biases).
        """
        layers = self._layers()
        lie_sq, norm_sq = self._take_squares(layers)
        out = {"lie": self._root(lie_sq), "norm": self._root(norm_sq)}
        if self.proj_weight > 0:
            res = torch.stack([layer.weight_residual_sq() for layer in layers]).sum()
            out["projection"] = torch.sqrt(res + self.epsilon)
        if self.rpp_free_weight > 0:
            out["rpp_free"] = torch.stack([layer.free_sq() for layer in layers]).sum()
        if self.rpp_equiv_weight > 0:
            ref = next(iter(self.parameters()), torch.zeros(()))
            out["rpp_equiv"] = torch.stack(
                [layer.equivariant_sq().to(ref.device) for layer in layers]
            ).sum()
        return out

    def penalty(self) -> torch.Tensor:
        """The weighted sum of the penalties (add it to the task loss)."""
        if (self.proj_weight == 0 and self.rpp_free_weight == 0 and self.rpp_equiv_weight == 0
                and not (torch.compiler.is_compiling()
                         or torch._C._are_functorch_transforms_active())):
            # the two roots only: their weighted sum in one node when both have squares
            images: list[tuple[torch.Tensor, StackedMatrixMap, float]] = []
            lie_sq: list[torch.Tensor] = []
            norm_sq: list[torch.Tensor] = []
            for layer in self._layers():
                layer_images, layer_lie, layer_norm = layer.take_records()
                images += layer_images
                lie_sq += layer_lie
                norm_sq += layer_norm
            new_step()  # the next forwards sketch with a fresh S
            scale = self.theta if self.penalty_times_theta else 1.0
            if images:  # every layer's squares from its images, in one node per row count
                groups = _group_images(images)
                if not lie_sq and not norm_sq and len(groups) == 1:
                    # all of them from one group of images: the penalty itself in one node
                    (_, _, device, factor, gathered), members = next(iter(groups.items()))
                    if gathered and device.type == "cpu":
                        return penalty_of_images([z for z, _ in members],
                                                 [stack for _, stack in members],
                                                 self.lie_weight * scale,
                                                 self.norm_weight * scale, self.epsilon,
                                                 factor)
                for lie, norm in _squares_of_groups(groups):
                    lie_sq.append(lie)
                    norm_sq.append(norm)
            if lie_sq and norm_sq and _one_cpu_kind(lie_sq + norm_sq):
                return weighted_roots(lie_sq, norm_sq, self.lie_weight * scale,
                                      self.norm_weight * scale, self.epsilon)
            total = (self.lie_weight * self._root(lie_sq)
                     + self.norm_weight * self._root(norm_sq))
            return total * self.theta if self.penalty_times_theta else total
        p = self.penalties()
        total = self.lie_weight * p["lie"] + self.norm_weight * p["norm"]
        if "projection" in p:
            total = total + self.proj_weight * p["projection"]
        if self.penalty_times_theta:
            total = total * self.theta
        if "rpp_free" in p:
            total = total + self.rpp_free_weight * p["rpp_free"]
        if "rpp_equiv" in p:
            total = total + self.rpp_equiv_weight * p["rpp_equiv"]
        return total

    def extra_repr(self) -> str:
        return (f"schedule={self.schedule.kind}, t={self.t}, theta={self.theta:.4g}, "
                f"lie_weight={self.lie_weight}, norm_weight={self.norm_weight}")


def _collect_relaxed(module: nn.Module, found: list[Relaxed], seen: set[int]) -> None:
    """Append the relaxed modules below ``module`` to ``found`` in ``modules()`` order, each
    once (``seen``: ids of the modules visited)."""
    for child in module._modules.values():
        if child is not None and id(child) not in seen:
            seen.add(id(child))
            if isinstance(child, Relaxed):
                found.append(child)
            _collect_relaxed(child, found, seen)


#: Images grouped for one squares node: (rows, dtype, device, rows' factor, read by gathers)
ImageGroups = dict[tuple, list[tuple[torch.Tensor, StackedMatrixMap]]]


def _group_images(images: list[tuple[torch.Tensor, StackedMatrixMap, float]]) -> ImageGroups:
    """The fused layers' images (z, output action, factor) grouped by what one node of
    :mod:`~equirelax.relaxation.image_squares` can take together: the number of rows, dtype,
    device and factor, and whether the output actions are all read by gathers or all applied
    as matrices (on a sketch, usually one group for the whole model)."""
    groups: ImageGroups = {}
    for z, stack, factor in images:
        key = (z.shape[0], z.dtype, z.device, factor, indexable(stack))
        groups.setdefault(key, []).append((z, stack))
    return groups


def _squares_of_groups(groups: ImageGroups) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The penalty squares (lie², norm²) of each group of images, times its factor."""
    out = []
    for (_, _, _, factor, _), members in groups.items():
        lie, norm = squares_of_images([z for z, _ in members], [stack for _, stack in members])
        out.append((lie, norm) if factor == 1.0 else (lie * factor, norm * factor))
    return out


def _one_cpu_kind(tensors: list[torch.Tensor]) -> bool:
    """Whether the tensors share one dtype and are all on the CPU (where :func:`weighted_roots`
    reads them as Python floats; on an accelerator each read would wait for the device)."""
    first = tensors[0]
    return all(t.dtype == first.dtype and t.device.type == "cpu" for t in tensors)


class _WeightedRoots(torch.autograd.Function):
    """a sqrt(Σ lie + ε) + b sqrt(Σ norm + ε) of the layers' squares; see
    :func:`weighted_roots`."""

    @staticmethod
    def forward(ctx, lie_weight: float, norm_weight: float, epsilon: float, n_lie: int,
                *squares: torch.Tensor) -> torch.Tensor:
        # the sums in Python floats (float64), in the order of the additions they replace
        lie = float(squares[0])
        for square in squares[1:n_lie]:
            lie += float(square)
        norm = float(squares[n_lie])
        for square in squares[n_lie + 1:]:
            norm += float(square)
        root_lie, root_norm = math.sqrt(lie + epsilon), math.sqrt(norm + epsilon)
        ctx.constants = (lie_weight, norm_weight, epsilon, n_lie, root_lie, root_norm)
        ctx.save_for_backward(*squares)
        first = squares[0]
        return torch.scalar_tensor(lie_weight * root_lie + norm_weight * root_norm,
                                   dtype=first.dtype, device=first.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        lie_weight, norm_weight, epsilon, n_lie, root_lie, root_norm = ctx.constants
        if torch.is_grad_enabled():
            # create_graph=True: the same gradients from differentiable operations on the
            # squares, so that they can be differentiated again
            squares = ctx.saved_tensors
            lie = torch.stack(squares[:n_lie]).sum()
            norm = torch.stack(squares[n_lie:]).sum()
            grad_lie = grad * lie_weight / (2 * torch.sqrt(lie + epsilon))
            grad_norm = grad * norm_weight / (2 * torch.sqrt(norm + epsilon))
        else:  # d/ds sqrt(s + ε) = 1 / (2 sqrt(s + ε)), the same for every square of a sum
            grad_lie = grad * (lie_weight / (2.0 * root_lie))
            grad_norm = grad * (norm_weight / (2.0 * root_norm))
        return (None, None, None, None, *([grad_lie] * n_lie),
                *([grad_norm] * (len(ctx.saved_tensors) - n_lie)))


def weighted_roots(lie_sq: list[torch.Tensor], norm_sq: list[torch.Tensor], lie_weight: float,
                   norm_weight: float, epsilon: float) -> torch.Tensor:
    """``lie_weight · sqrt(Σ lie_sq + ε) + norm_weight · sqrt(Σ norm_sq + ε)`` in one autograd
    node (0-d, in the squares' dtype).

    What :meth:`RelaxedModel.penalty` returns when only these two penalties are weighted: as
    ordinary operations the sums, the two roots and the weighted sum are a dozen autograd nodes
    on scalars, which a training step runs and differentiates for a result that costs nothing.
    The sums and roots are taken in float64 (Python floats, in the same order as the chain of
    additions), the result cast to the squares' dtype; every square of a sum gets the same
    gradient, weight / (2 root). With ``create_graph=True`` the backward is built from
    differentiable operations. Needs at least one square in each list, all of one dtype and
    device; reading them as floats waits for an accelerator, so :meth:`RelaxedModel.penalty`
    uses it for squares on the CPU only.
    """
    if not lie_sq or not norm_sq:
        raise ValueError(f"weighted_roots needs squares in both lists, got {len(lie_sq)} "
                         f"generator/Lie and {len(norm_sq)} norm squares")
    return _WeightedRoots.apply(float(lie_weight), float(norm_weight), float(epsilon),
                                len(lie_sq), *lie_sq, *norm_sq)


def relax(
    model: nn.Module,
    schedule: str | Callable[[int, int], float] | Schedule = "triangular",
    total_steps: int | None = None,
    lie_weight: float = 1e-2,
    norm_weight: float = 1e-2,
    proj_weight: float = 0.0,
    layers: LayerSelection = None,
    *,
    init_std: float = 1e-3,
    free_bias: bool = False,
    peak: float = 1.0,
    value: float = 0.1,
    penalty_rows: int | None = None,
    penalty_sketch: int | str | None = None,
    free_rank: int | None = None,
    penalty_method: str = "auto",
    penalty_times_theta: bool = False,
    projected_eval: bool | None = None,
    rpp: bool = False,
    rpp_free_weight: float = 1e2,
    rpp_equiv_weight: float = 1e-3,
    inplace: bool = False,
) -> RelaxedModel:
    """Relax every equivariant layer of ``model`` (or those ``layers`` selects).

    ``layers``: module names, module types, or a predicate ``(name, module) -> bool``.
    ``schedule``: ``"triangular"`` (0 → ``peak`` at mid-training → exactly 0 at the last step),
    ``"linear"``, ``"cosine"``, ``"constant"`` (θ = ``value``; the no-schedule ablation), or a
    callable ``fn(t, total_steps)``. By default the penalties are exact. ``penalty_rows=k``
    evaluates them on k rows of each layer input drawn uniformly without replacement, scaled by
    m/k; ``penalty_sketch=p`` on the p rows of SᵀX for a fresh random ±1/√p sign matrix S (m × p).
    Either makes every squared term an unbiased estimate (cheaper for large batches; noisier)
    and keeps it exactly zero for an equivariant W; they cannot be combined.
    ``penalty_sketch="auto"`` sketches (p = 16) only the layers whose exact penalties would cost
    more than the layer itself and twice the sketch, counting multiply-adds and the elements
    their small operations touch, and keeps the others exact (see ``Relaxed.sketch_size``).
    ``free_rank=r`` makes each default free term W = U Vᵀ of rank r ((d_in + d_out)·r parameters
    instead of d_in·d_out, W never formed; penalties on the rows, and on a structured layer
    projection and ``harden(mode="project")`` from the factors): for layers whose dense free
    term does not fit.
    ``penalty_method``: ``"auto"`` (per layer and batch, the cheaper of the two), ``"data"`` (on
    the rows) or ``"gram"`` (from the rows' Gram matrix, in weight space; dense free terms with
    matrix actions only): the same values, different costs. ``projected_eval``: whether eval mode
    runs the exact model (θ = 0); default True, False in RPP mode. ``rpp=True`` gives Residual
    Pathway Priors (Finzi et al. 2021): constant θ = 1, both pathways in training and in eval,
    and L2 priors ``rpp_free_weight · ||W_free||²_F`` and ``rpp_equiv_weight · ||W_eq||²_F`` on
    the dense weights instead of the penalties; ``harden`` then drops the free pathway (or, with
    ``mode="project"``, folds its equivariant part in). The model is copied unless
    ``inplace=True``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"relax() needs an nn.Module, got {type(model).__name__}")
    already = [name for name, m in model.named_modules() if isinstance(m, RelaxedModel | Relaxed)]
    if already:
        # relaxing twice nests free terms, and harden() would then return a relaxed model
        if isinstance(model, RelaxedModel):
            what = "a RelaxedModel (returned by relax())"
        elif isinstance(model, Relaxed):
            what = f"a Relaxed layer (around a {type(model.layer).__name__})"
        else:
            what = (f"{type(model).__name__} whose modules {', '.join(already[:3])}"
                    f"{', ...' if len(already) > 3 else ''} are relaxed already")
        raise TypeError(f"relax() needs a model that is not relaxed yet, got {what}; relax the "
                        "original model, or harden() this one first")
    check_relax_options(init_std, penalty_rows, penalty_sketch)
    if rpp:
        schedule, value = "constant", 1.0
        lie_weight = norm_weight = 0.0
    if projected_eval is None:
        # RPP deploys the model it trained, both pathways; the relaxation evaluates the exact
        # model that harden() will return
        projected_eval = not rpp
    sched = make_schedule(schedule, total_steps, peak=peak, value=value)
    target = model if inplace else copy.deepcopy(model)
    select = _selector(layers)
    options = {"init_std": init_std, "free_bias": free_bias, "penalty_rows": penalty_rows,
               "penalty_sketch": penalty_sketch, "free_rank": free_rank}

    def wants(name: str, m: nn.Module) -> bool:
        if select is not None:
            return select(name, m)
        return _is_candidate(m) and not _has_candidate_inside(m)

    def wrap(m: nn.Module) -> Relaxed:
        r = Relaxed(m, **options)
        r.projected_eval = projected_eval
        r.penalty_method = penalty_method
        if penalty_method == "gram":
            r.check_penalty_method()
        return r

    if wants("", target):
        root: nn.Module = wrap(target)
    else:
        root = target
        _replace(target, "", wants, wrap)
    relaxed = RelaxedModel(
        root,
        sched,
        lie_weight,
        norm_weight,
        proj_weight,
        rpp_free_weight if rpp else 0.0,
        rpp_equiv_weight if rpp else 0.0,
        penalty_times_theta,
    )
    if not relaxed.relaxed_layers():
        raise ValueError(
            f"relax() found no layer to relax in {type(model).__name__}: no module declares "
            "rep_in/rep_out or is registered (see equirelax.relaxation.register), or `layers` "
            "selected none"
        )
    return relaxed


def _replace(module: nn.Module, prefix: str, wants, wrap) -> None:
    for name, child in list(module.named_children()):
        full = f"{prefix}.{name}" if prefix else name
        if wants(full, child):
            setattr(module, name, wrap(child))
        else:
            _replace(child, full, wants, wrap)
