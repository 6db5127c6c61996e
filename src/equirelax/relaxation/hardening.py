"""harden(model): the original architecture, exactly equivariant, no relaxation left.

``harden`` returns the model ``relax`` was given (same classes, same state_dict keys) with the
relaxation removed, so the deployed model is exactly equivariant and costs nothing extra. The
built-in modes are ``drop`` and ``project``; other modes live in a registry of named functions.

A mode implemented on a higher floor (``detected`` lives in ``landscape``) is registered by
name, as ``"module:function"``, and imported only when it is first asked for: relaxation never
imports upward, and no mode depends on some other module having been imported first. The
top-level package registers the library's own such modes (see ``equirelax/__init__.py``).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable

from torch import nn

from equirelax.relaxation.relaxed import Relaxed
from equirelax.relaxation.relaxed_model import RelaxedModel

#: A hardening mode: gets a copy of the relaxed model, returns the exactly equivariant one.
HardenMode = Callable[[RelaxedModel], nn.Module]

BUILT_IN_MODES = ("drop", "project")

#: Registered modes: a function, or a "module:function" string imported on first use.
_HARDEN_MODES: dict[str, HardenMode | str] = {}


def _check_target(name: str, target: str) -> None:
    module, colon, attr = target.partition(":")
    if not (colon and module and attr):
        raise ValueError(f"hardening mode {name!r} named by a string needs the form "
                         f"'module:function', got {target!r}")


def register_harden_mode(name: str, fn: HardenMode | str) -> None:
    """Add a hardening mode ``name``: ``fn(relaxed_copy) -> exact model``, or a string
    ``"module:function"`` naming it, imported when the mode is first used (for modes defined
    on a floor above relaxation). Registering a name again replaces the earlier mode."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a hardening mode needs a non-empty string name, got {name!r}")
    if name in BUILT_IN_MODES:
        raise ValueError(f"{name!r} is a built-in hardening mode")
    if isinstance(fn, str):
        _check_target(name, fn)
    elif not callable(fn):
        raise TypeError(f"a hardening mode needs a callable fn(relaxed) -> module or a "
                        f"'module:function' string, got {fn!r}")
    _HARDEN_MODES[name] = fn


def harden_modes() -> list[str]:
    """Every mode ``harden`` accepts by name: the built-in ones, then the registered ones."""
    return [*BUILT_IN_MODES, *_HARDEN_MODES]


def _resolve(name: str) -> HardenMode:
    """The function of a registered mode, importing a "module:function" entry once."""
    entry = _HARDEN_MODES[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        fn = getattr(importlib.import_module(module), attr, None)
        if not callable(fn):
            raise ImportError(f"hardening mode {name!r} names {entry!r}, but {module} has no "
                              f"function {attr!r}")
        _HARDEN_MODES[name] = fn
        return fn
    return entry


def harden(model: RelaxedModel | nn.Module, mode: str | HardenMode = "drop") -> nn.Module:
    """The exactly equivariant model: the original architecture, no relaxation left.

    ``mode="drop"`` removes the free terms (the paper); ``"project"`` first folds θ · P(W), the
    equivariant part of each free term, into its layer's own weights; other names are those
    added with :func:`register_harden_mode` (``"detected"``: project onto the hidden
    representation the network satisfies, from ``landscape``). A callable ``mode`` is used as a
    mode directly. The relaxed model is left unchanged.
    """
    if callable(mode):
        fn: HardenMode | None = mode
        label = getattr(mode, "__name__", repr(mode))
    elif isinstance(mode, str) and mode in harden_modes():
        fn = None if mode in BUILT_IN_MODES else _resolve(mode)
        label = mode
    else:
        raise ValueError(f"unknown hardening mode {mode!r}; expected one of {harden_modes()} "
                         "or a callable fn(relaxed) -> module")
    if fn is not None:
        if not isinstance(model, RelaxedModel):
            raise TypeError(f"hardening mode {label!r} needs the RelaxedModel returned by "
                            f"relax(), got {type(model).__name__}")
        return fn(copy.deepcopy(model))
    work = copy.deepcopy(model)
    inner = work._modules["model"] if isinstance(work, RelaxedModel) else work
    if isinstance(inner, Relaxed):
        return inner.harden(mode)
    _unwrap(inner, mode)
    return inner


def _unwrap(module: nn.Module, mode: str) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, Relaxed):
            setattr(module, name, child.harden(mode))
        else:
            _unwrap(child, mode)
