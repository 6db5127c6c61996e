"""Measuring equivariance: f(g·x) against g·f(x), and Lie derivatives, for any model.

One checker for single- and multi-input models. A model declares what it acts on (``rep_in`` /
``rep_out``), or the call says it; for a model of several arguments (or several outputs) the
declaration is a tuple with one *type* per argument, as e3nn's ``assert_equivariant`` takes:

* a :class:`~equirelax.reps.Rep`: the group acts on the argument's trailing axes (those whose
  sizes multiply to ``rep.dim``, fewest axes first: ``(B, 3)`` or ``(B, N, 3)`` for
  ``vector(O(3))``, ``(B, N, 3)`` for ``N * vector(O(3))``, ``(B, C, H, W)`` for a rep of the
  pixels of a ``C x H x W`` image);
* :class:`Positions`\\ ``(rep)``: points in space, acted on by ``rep`` on the last axis *and*
  shifted by a random translation, the same for every such argument and output (E(n));
* :class:`ChannelsLast`\\ ``(rep)``: C copies of a rep stored channels last, e.g.
  ``(B, n, n, C)`` for ``C * (V * V)`` (whose flat order is channels first): the channel axis is
  moved in front of the others before the group acts. A layer built with
  ``layout="channels_last"`` declares its reps so by default;
* ``None``: the group leaves the argument unchanged (charges, masks, graph structure).

Errors are relative (divided by ||f(x)||, all outputs together) and computed in float64
whatever dtype the model runs in, so the same call tells a float32 round-off error (~1e-7) from a
real violation (~1e-1).

The checks cannot be fooled by degenerate outputs: a NaN or inf in the input, the output or a
transformed output raises ``ValueError`` (``max(0.0, nan)`` is 0.0, so a NaN model would otherwise
"pass"), and an identically zero output warns with :class:`ZeroOutputWarning` (its relative error
is round-off divided by round-off).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from equirelax.groups.base import Group
from equirelax.reps.base import Rep

#: Finite groups up to this order are checked on every element by default; larger ones on a sample.
ALL_ELEMENTS_LIMIT = 5000
#: Elements sampled when a group is too large (or infinite) to check every element.
DEFAULT_SAMPLES = 64
#: How the transformed inputs of a chunk of group elements reach the model (see ``stack``).
STACK_MODES = ("auto", "new_axis", "batch")


class ZeroOutputWarning(RuntimeWarning):
    """The model's output is identically zero, so a relative equivariance error means nothing."""


@dataclass(frozen=True)
class Positions:
    """Points in space: ``rep`` acts on the last axis, and a translation is added as well.

    Declares an argument or output of a model that is equivariant to rigid motions (E(3) for
    ``vector(O(3))``): predicted positions move with the input positions, while velocities or
    forces (plain reps) only rotate.
    """

    rep: Rep

    def __post_init__(self) -> None:
        if not isinstance(self.rep, Rep):
            raise TypeError(f"Positions needs a Rep, got {type(self.rep).__name__}")


@dataclass(frozen=True)
class ChannelsLast:
    """Copies of one rep stored with the copy (channel) axis last.

    ``rep`` is ``C * base`` in its usual flat order (channels first); the argument holds the
    same features as ``(..., *base_axes, C)``, e.g. ``(B, n, n, C)`` for ``C * (V * V)``.
    """

    rep: Rep

    def __post_init__(self) -> None:
        if not isinstance(self.rep, Rep):
            raise TypeError(f"ChannelsLast needs a Rep, got {type(self.rep).__name__}")


#: What one argument or output may be declared as.
ArgumentType = Rep | Positions | ChannelsLast | None


def _rep_of(kind: ArgumentType) -> Rep | None:
    return kind.rep if isinstance(kind, Positions | ChannelsLast) else kind


def declared_type(model: Callable, side: str) -> object:
    """The model's own ``rep_in``/``rep_out``, as :class:`ChannelsLast` when the model is a
    layer that reads its features channels last (``tensor_layout.layout``)."""
    rep = getattr(model, side, None)
    layout = getattr(getattr(model, "tensor_layout", None), "layout", None)
    return ChannelsLast(rep) if isinstance(rep, Rep) and layout == "channels_last" else rep


def _check_finite(t: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` when ``t`` holds a NaN or an infinity."""
    if t.is_floating_point() or t.is_complex():
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            n_nan = int(torch.isnan(t).sum())
            n_inf = int(bad.sum()) - n_nan
            raise ValueError(
                f"{what} must be finite, got {n_nan} NaN and {n_inf} inf of {t.numel()} "
                f"entries: an equivariance error of non-finite values means nothing"
            )


def _output_scale(outputs: Sequence[torch.Tensor], where: str) -> float:
    """||f(x)|| (float64, every output together) after checking f(x) is finite; warns when it
    is zero."""
    for k, fx in enumerate(outputs):
        _check_finite(fx, "the model output f(x)" if len(outputs) == 1 else
                      f"model output {k} of f(x)")
    if len(outputs) == 1:
        norm = float(outputs[0].norm())
    else:
        norm = math.sqrt(sum(float(fx.norm()) ** 2 for fx in outputs))
    if not math.isfinite(norm):
        raise ValueError(f"the norm of the model output f(x) overflowed to {norm} in float64")
    if norm == 0.0:
        warnings.warn(
            f"{where}: the model output f(x) is identically zero, so its relative error is "
            "meaningless; give the model an input with invariant content or nonzero biases",
            ZeroOutputWarning,
            stacklevel=3,
        )
    return max(norm, torch.finfo(torch.float64).tiny)


def _as_types(value: object, name: str) -> tuple[ArgumentType, ...]:
    kinds = tuple(value) if isinstance(value, tuple | list) else (value,)
    for k, kind in enumerate(kinds):
        if kind is not None and not isinstance(kind, Rep | Positions | ChannelsLast):
            where = name if len(kinds) == 1 else f"{name}[{k}]"
            raise TypeError(f"{where} must be a Rep, Positions(rep), ChannelsLast(rep) or None, "
                            f"got {type(kind).__name__}")
    return kinds


def _types_of(
    model: Callable, rep_in: object, rep_out: object
) -> tuple[tuple[ArgumentType, ...], tuple[ArgumentType, ...], Group]:
    """The declared argument and output types (the call's, else the model's) and their group."""
    rep_in = rep_in if rep_in is not None else declared_type(model, "rep_in")
    rep_out = rep_out if rep_out is not None else declared_type(model, "rep_out")
    if rep_in is None or rep_out is None:
        raise ValueError(
            "the model declares no rep_in/rep_out: pass rep_in=... and rep_out=... explicitly"
        )
    ins, outs = _as_types(rep_in, "rep_in"), _as_types(rep_out, "rep_out")
    reps = [r for r in map(_rep_of, ins + outs) if r is not None]
    if not reps:
        raise ValueError("rep_in and rep_out declare no representation (every entry is None): "
                         "there is nothing to check")
    group = reps[0].group
    for rep in reps[1:]:
        if rep.group != group:
            raise ValueError(f"rep_in and rep_out act by different groups: {group!r}, "
                             f"{rep.group!r}")
    return ins, outs, group


def default_elements(group: Group, seed: int = 0) -> np.ndarray:
    """Every element of a small finite group; a Haar sample otherwise."""
    if group.is_finite and group.order <= ALL_ELEMENTS_LIMIT:  # type: ignore[attr-defined]
        return group.elements()  # type: ignore[attr-defined]
    return group.sample(DEFAULT_SAMPLES, seed=seed)


def _in_dtype(model: Callable, dtype: torch.dtype) -> Callable:
    if isinstance(model, nn.Module):
        params = list(model.parameters()) + list(model.buffers())
        floating = [p for p in params if p.is_floating_point()]
        if floating and any(p.dtype != dtype for p in floating):
            return copy.deepcopy(model).to(dtype)
    return model


def _trailing_axes(shape: torch.Size, dim: int) -> int | None:
    """How many trailing axes of ``shape`` the rep of dimension ``dim`` acts on (fewest first),
    None when no suffix has that size."""
    size = 1
    for k in range(1, len(shape) + 1):
        size *= shape[-k]
        if size == dim:
            return k
        if size > dim and dim > 0:
            return None
    return None


def _describe(name: str, count: int, k: int) -> str:
    return name if count == 1 else f"{name}[{k}]"


def _check_inputs(xs: tuple, ins: tuple[ArgumentType, ...], single: bool) -> list[int | None]:
    """Check the arguments against their types; return the trailing-axis count of each rep."""
    if len(xs) != len(ins):
        raise ValueError(f"the model takes {len(ins)} argument(s) by rep_in, but x holds "
                         f"{len(xs)}; pass one rep (or None) per argument")
    axes: list[int | None] = []
    for k, (x, kind) in enumerate(zip(xs, ins)):
        name = _describe("x", len(xs), k)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        _check_finite(x, "the input x" if len(xs) == 1 else f"the input {name}")
        rep = _rep_of(kind)
        if rep is None:
            axes.append(None)
            continue
        n_axes = _trailing_axes(x.shape, rep.dim)
        if n_axes is None or (isinstance(kind, Positions) and n_axes != 1):
            last = "" if isinstance(kind, Positions) else " (or trailing axes of that total size)"
            raise ValueError(f"{name} must have shape (..., {rep.dim}){last} for "
                             f"{'rep_in' if single else f'rep_in[{k}]'} {kind!r}, got "
                             f"{tuple(x.shape)}")
        if x.numel() == 0:
            raise ValueError(f"{name} must hold at least one sample, got shape {tuple(x.shape)}")
        axes.append(n_axes)
    return axes


def _act(matrices: torch.Tensor, x: torch.Tensor, n_axes: int, channels_last: bool = False
         ) -> torch.Tensor:
    """ρ(g) applied to the trailing ``n_axes`` axes of x for every g: shape (g, *x.shape);
    with ``channels_last`` the last axis is read as the first of those (see ChannelsLast)."""
    if channels_last and n_axes > 1:
        moved = _act(matrices, x.movedim(-1, -n_axes), n_axes)
        return moved.movedim(-n_axes, -1)
    flat = x.reshape(*x.shape[: x.dim() - n_axes], -1)
    out = torch.einsum("gij,...j->g...i", matrices, flat)
    return out.reshape(len(matrices), *x.shape)


def _outputs(result: object, count: int) -> tuple[torch.Tensor, ...]:
    outs = tuple(result) if isinstance(result, tuple | list) else (result,)
    if len(outs) != count:
        raise ValueError(f"the model returned {len(outs)} output(s), but rep_out declares "
                         f"{count}; pass one rep (or None) per output")
    for k, out in enumerate(outs):
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"model output {k} must be a torch.Tensor, got {type(out).__name__}")
    return outs


def _output_axes(fxs: tuple[torch.Tensor, ...], outs: tuple[ArgumentType, ...]) -> list[int | None]:
    axes: list[int | None] = []
    for k, (fx, kind) in enumerate(zip(fxs, outs)):
        rep = _rep_of(kind)
        if rep is None:
            axes.append(None)
            continue
        n_axes = _trailing_axes(fx.shape, rep.dim)
        if n_axes is None or (isinstance(kind, Positions) and n_axes != 1):
            name = "rep_out" if len(outs) == 1 else f"rep_out[{k}]"
            what = "model output" if len(outs) == 1 else f"model output {k}"
            raise ValueError(f"{what} has last axis {fx.shape[-1] if fx.dim() else None}, but "
                             f"{name} {rep!r} has dim {rep.dim}")
        axes.append(n_axes)
    return axes


def _translations(
    count: int, ins: tuple, outs: tuple, scale: float, seed: int
) -> torch.Tensor | None:
    """One translation per element for the :class:`Positions` among the types (None if none)."""
    kinds = [k for k in ins + outs if isinstance(k, Positions)]
    if not kinds:
        return None
    dims = {k.rep.dim for k in kinds}
    if len(dims) != 1:
        raise ValueError(f"every Positions argument and output must have the same dimension, "
                         f"got {sorted(dims)}")
    gen = torch.Generator().manual_seed(int(seed))
    return scale * torch.randn(count, dims.pop(), generator=gen, dtype=torch.float64)


def equivariance_error(
    model: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    x: torch.Tensor | tuple[torch.Tensor, ...],
    rep_in: Rep | Positions | ChannelsLast | Sequence[ArgumentType] | None = None,
    rep_out: Rep | Positions | ChannelsLast | Sequence[ArgumentType] | None = None,
    elements: np.ndarray | None = None,
    dtype: torch.dtype = torch.float64,
    chunk: int = 64,
    *,
    stack: str = "auto",
    translation_scale: float = 1.0,
    seed: int = 0,
) -> float:
    """max_g ||f(g·x) − g·f(x)|| / ||f(x)||, norms over the whole batch and every output.

    ``x``: one tensor, or a tuple with one tensor per argument of ``model``; ``rep_in`` /
    ``rep_out`` then hold one type per argument / output (a Rep, :class:`Positions` or None; see
    the module notes). Types default to the model's own ``rep_in``/``rep_out``.

    ``elements=None`` checks every element of a finite group up to ``ALL_ELEMENTS_LIMIT``
    elements, and a sample otherwise. The model runs in ``dtype`` (a float64 copy by default;
    integer arguments are left as they are); the comparison is always made in float64.
    Translations of :class:`Positions` are Gaussian with standard deviation
    ``translation_scale``, one per element, drawn from ``seed``.

    ``stack`` says how ``chunk`` group elements reach the model at once: ``"new_axis"`` puts
    them on a new leading axis (models that broadcast over leading axes, as the hom-space layers
    do); ``"batch"`` concatenates the transformed arguments along their first axis (models that
    take a batch, such as point-cloud, image and graph models; ``None`` arguments are repeated,
    so with ``chunk=1`` the model is called once per element with its arguments as given).
    ``"auto"``: ``"new_axis"`` for one tensor whose rep acts on its last axis, else ``"batch"``.
    """
    ins, outs, group = _types_of(model, rep_in, rep_out)
    single = not isinstance(x, tuple | list)
    xs = (x,) if single else tuple(x)
    in_axes = _check_inputs(xs, ins, single)
    if stack not in STACK_MODES:
        raise ValueError(f"stack must be one of {STACK_MODES}, got {stack!r}")
    if stack == "auto":
        plain = single and isinstance(ins[0], Rep) and in_axes[0] == 1
        stack = "new_axis" if plain else "batch"
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    els = default_elements(group) if elements is None else np.asarray(elements)
    if len(els) == 0:
        raise ValueError("elements must hold at least one group element, got none")
    shifts = _translations(len(els), ins, outs, translation_scale, seed)
    f = _in_dtype(model, dtype)
    device = xs[0].device
    with torch.no_grad():
        xs = tuple(t.to(dtype) if t.is_floating_point() else t for t in xs)
        fxs = tuple(o.to(torch.float64) for o in _outputs(f(*xs), len(outs)))
        out_axes = _output_axes(fxs, outs)
        scale = _output_scale(fxs, "equivariance_error")
        worst = 0.0
        for start in range(0, len(els), chunk):
            batch = els[start : start + chunk]
            n = len(batch)
            moved = []
            for t, kind, n_axes in zip(xs, ins, in_axes):
                rep = _rep_of(kind)
                if rep is None:
                    gx = t.unsqueeze(0).expand(n, *t.shape)
                else:
                    m_in = torch.from_numpy(rep.matrices(batch)).to(device=device, dtype=dtype)
                    gx = _act(m_in, t, n_axes,  # type: ignore[arg-type]
                               isinstance(kind, ChannelsLast))
                    if isinstance(kind, Positions):
                        shift = shifts[start : start + n].to(device=device, dtype=dtype)
                        gx = gx + shift.reshape(n, *([1] * (t.dim() - 1)), -1)
                moved.append(gx if stack == "new_axis" else gx.reshape(n * len(t), *t.shape[1:]))
            fgxs = _outputs(f(*moved), len(outs))
            diff_sq = torch.zeros(n, dtype=torch.float64, device=device)
            for k, (fgx, fx, kind, n_axes) in enumerate(zip(fgxs, fxs, outs, out_axes)):
                fgx = fgx.to(torch.float64)
                if stack == "batch":
                    if fgx.dim() == 0 or fgx.shape[0] != n * len(fx):
                        raise ValueError(
                            f"with stack='batch' model output {k} must keep the batch axis: "
                            f"expected first axis {n} x {len(fx)}, got shape {tuple(fgx.shape)}"
                        )
                    fgx = fgx.reshape(n, *fx.shape)
                if not bool(torch.isfinite(fgx).all()):
                    j = int((~torch.isfinite(fgx)).reshape(n, -1).any(dim=1).nonzero()[0])
                    element = np.array2string(np.asarray(batch[j]), threshold=20, precision=4)
                    _check_finite(fgx[j], f"the transformed output f(ρ_in(g) x) for element "
                                          f"{start + j} of the checked elements, g = {element},")
                rep = _rep_of(kind)
                if rep is None:
                    gfx = fx.unsqueeze(0)
                else:
                    m_out = torch.from_numpy(rep.matrices(batch)).to(device)
                    gfx = _act(m_out, fx, n_axes,  # type: ignore[arg-type]
                               isinstance(kind, ChannelsLast))
                    if isinstance(kind, Positions):
                        shift = shifts[start : start + n].to(device)
                        gfx = gfx + shift.reshape(n, *([1] * (fx.dim() - 1)), -1)
                diff = (fgx - gfx).reshape(n, -1).norm(dim=1)
                if len(outs) == 1:
                    worst = max(worst, float(diff.max()) / scale)
                else:
                    diff_sq = diff_sq + diff**2
            if len(outs) > 1:
                worst = max(worst, float(diff_sq.sqrt().max()) / scale)
    if not math.isfinite(worst):
        raise ValueError(f"the equivariance error overflowed to {worst} (outputs too large for "
                         "float64 norms)")
    return worst


def _lie_act(a: torch.Tensor, t: torch.Tensor, n_axes: int, channels_last: bool = False
             ) -> torch.Tensor:
    """dρ(A) applied to the trailing ``n_axes`` axes of t (channels last: see ChannelsLast)."""
    if channels_last and n_axes > 1:
        return _lie_act(a, t.movedim(-1, -n_axes), n_axes).movedim(-n_axes, -1)
    flat = t.reshape(*t.shape[: t.dim() - n_axes], -1)
    return (flat @ a.T).reshape(t.shape)


def lie_derivative_error(
    model: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    x: torch.Tensor | tuple[torch.Tensor, ...],
    rep_in: Rep | Positions | ChannelsLast | Sequence[ArgumentType] | None = None,
    rep_out: Rep | Positions | ChannelsLast | Sequence[ArgumentType] | None = None,
    dtype: torch.dtype = torch.float64,
) -> float:
    """max_k ||J_f(x)[dρ_in(A_k) x] − dρ_out(A_k) f(x)|| / ||f(x)|| over the Lie algebra basis.

    Zero for every k exactly when f is equivariant to the identity component of a Lie group.
    Returns 0.0 for finite groups (no Lie algebra). ``x`` and the types are as in
    :func:`equivariance_error` (translations of :class:`Positions` are not in the algebra of
    rotations, so positions count as their rep here). Non-finite inputs, outputs or derivatives
    raise ``ValueError``; an identically zero output warns (:class:`ZeroOutputWarning`).
    """
    ins, outs, _ = _types_of(model, rep_in, rep_out)
    single = not isinstance(x, tuple | list)
    xs = (x,) if single else tuple(x)
    if len(xs) != len(ins):
        raise ValueError(f"the model takes {len(ins)} argument(s) by rep_in, but x holds "
                         f"{len(xs)}; pass one rep (or None) per argument")
    for k, t in enumerate(xs):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_describe('x', len(xs), k)} must be a torch.Tensor, got "
                            f"{type(t).__name__}")
    lies = [r.lie_matrices() for r in map(_rep_of, ins + outs) if r is not None]
    count = max((len(m) for m in lies), default=0)
    if count == 0:
        return 0.0
    in_axes = _check_inputs(xs, ins, single)
    f = _in_dtype(model, dtype)
    xs = tuple(t.to(dtype) if t.is_floating_point() else t for t in xs)
    moving = [k for k, kind in enumerate(ins) if _rep_of(kind) is not None]

    def of_moving(*args: torch.Tensor):
        full = list(xs)
        for k, t in zip(moving, args):
            full[k] = t
        return f(*full)

    worst = 0.0
    scale = None
    out_axes: list[int | None] = []
    for a in range(count):
        tangents = []
        for k in moving:
            mat = _rep_of(ins[k]).lie_matrices()[a]  # type: ignore[union-attr]
            a_t = torch.from_numpy(mat).to(dtype=dtype, device=xs[k].device)
            tangents.append(_lie_act(a_t, xs[k], in_axes[k],  # type: ignore[arg-type]
                                     isinstance(ins[k], ChannelsLast)))
        fx, dfx = torch.func.jvp(of_moving, tuple(xs[k] for k in moving), tuple(tangents))
        fxs = tuple(o.detach().to(torch.float64) for o in _outputs(fx, len(outs)))
        dfxs = _outputs(dfx, len(outs))
        if scale is None:  # f(x) is the same for every k: check and warn once
            out_axes = _output_axes(fxs, outs)
            scale = _output_scale(fxs, "lie_derivative_error")
        total = 0.0
        for j, (o, d, kind, n_axes) in enumerate(zip(fxs, dfxs, outs, out_axes)):
            d = d.detach().to(torch.float64)
            _check_finite(d, f"the derivative of f along Lie algebra element {a}"
                          if len(outs) == 1 else
                          f"the derivative of output {j} along Lie algebra element {a}")
            rep = _rep_of(kind)
            if rep is None:
                err = d
            else:
                a_out = torch.from_numpy(rep.lie_matrices()[a]).to(device=o.device)
                err = d - _lie_act(a_out, o, n_axes,  # type: ignore[arg-type]
                                       isinstance(kind, ChannelsLast))
            total += float(err.norm()) ** 2 if len(outs) > 1 else float(err.norm())
        err_k = math.sqrt(total) if len(outs) > 1 else total
        worst = max(worst, err_k / scale)
    if not math.isfinite(worst):
        raise ValueError(f"the Lie derivative error overflowed to {worst} (outputs too large "
                         "for float64 norms)")
    return worst
