"""A study's dataclass config as command-line options, and back.

A study describes every setting once, as a field of its config dataclass (type, default,
help in the field's metadata); :func:`add_config_options` turns the fields into options and
:func:`config_from_args` builds the config of a command: the preset's values, then every
option given on the command line. Options default to ``None``, "the preset's value", so a
preset can change any field and the command line any preset.

Field metadata understood here (all optional):

* ``help``: the option's help text;
* ``flag``: the option's name when it is not ``--field-name`` (e.g. ``--noise`` for
  ``noise_std``);
* ``aliases``: more names of the same option (``("--points",)``);
* ``type``: the ``type=`` function of the option (or of each item of a tuple), e.g.
  :func:`~equirelax.experiments.kit.argtypes.positive_int`; by default from the annotation:
  ``int`` a positive integer, ``float`` a finite number >= 0, ``str`` text, ``Path`` a path;
* ``choices``: the allowed values;
* ``nargs``: the number of items of a tuple field (default ``"+"``);
* ``metavar``.

A ``bool`` field becomes ``--x`` / ``--no-x``; a ``tuple`` field takes several values.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from equirelax.experiments.kit.argtypes import non_negative_float, positive_int
from equirelax.experiments.kit.options import preset_default

_DEFAULT_TYPES: dict[Any, Any] = {int: positive_int, float: non_negative_float, str: str,
                                  Path: Path}


def _unwrap(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """``(base, items)`` of a field annotation without ``None``: ``int | None`` -> (int, ()),
    ``tuple[int, ...]`` -> (tuple, (int, Ellipsis))."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"a config field must have one type besides None, got {annotation}")
        return _unwrap(rest[0])
    if origin is tuple:
        return tuple, typing.get_args(annotation)
    return annotation, ()


def option_name(field: dataclasses.Field) -> str:
    """The command-line flag of a config field: its metadata's ``flag``, else ``--field-name``."""
    return field.metadata.get("flag", "--" + field.name.replace("_", "-"))


def add_config_options(parser: argparse.ArgumentParser, config: type, *,
                       exclude: Collection[str] = ()) -> None:
    """One option per field of the dataclass ``config`` (except those in ``exclude``), each
    defaulting to ``None``: "the preset's value" (see the module's docstring for the
    metadata read)."""
    hints = typing.get_type_hints(config)
    for field in dataclasses.fields(config):
        if field.name in exclude:
            continue
        meta = field.metadata
        base, items = _unwrap(hints[field.name])
        names = [option_name(field), *meta.get("aliases", ())]
        kwargs: dict[str, Any] = {"dest": field.name, "default": None,
                                  "help": meta.get("help", "")}
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif base is tuple:
            item = items[0] if items else str
            kwargs["nargs"] = meta.get("nargs", "+" if not items or items[-1] is Ellipsis
                                       else len(items))
            kwargs["type"] = meta.get("type", _DEFAULT_TYPES.get(item, item))
        else:
            kwargs["type"] = meta.get("type", _DEFAULT_TYPES.get(base, base))
        if "choices" in meta:
            kwargs["choices"] = tuple(meta["choices"])
        preset_default(parser.add_argument(*names, **kwargs))


def given_options(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The config fields given on the command line (options whose value is not ``None``)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config)
            if getattr(args, f.name, None) is not None}


def config_from_args(args: argparse.Namespace, config: type, presets: Mapping[str, Mapping],
                     preset_name: str, **overrides: Any) -> Any:
    """The config of a command: the dataclass defaults, the preset ``preset_name``'s values,
    every option given on the command line, then ``overrides`` (values a study derives from
    other options). Paths become text and lists tuples, so that a config compares equal to the
same settings however they were given."""
    if preset_name not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}, got {preset_name!r}")
    values: dict[str, Any] = {**presets[preset_name], **given_options(args, config), **overrides}
    values = {k: str(v) if isinstance(v, Path) else tuple(v) if isinstance(v, list) else v
              for k, v in values.items()}
    return config(**values)


__all__ = ["add_config_options", "config_from_args", "given_options", "option_name"]


def option(default: Any, help_text: str = "", **meta: Any) -> Any:
    """A config field with the metadata of its command-line option (help, and any of the keys
    :func:`add_config_options` reads: flag, aliases, type, choices, nargs). Defaults are
    immutable values (tuples, not lists), so that configs compare and hash as values."""
    if isinstance(default, list | dict | set):
        raise TypeError(f"config defaults are immutable values, got {type(default).__name__}")
    return dataclasses.field(default=default, metadata={"help": help_text, **meta})
