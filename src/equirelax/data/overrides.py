"""Data-set configs with some fields replaced by keyword arguments, unknown names refused."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

Config = TypeVar("Config")


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """``config`` with the fields named in ``overrides`` replaced (rebuilt through its
    constructor, so its checks run again); a name that is not a field is refused, listing the
    fields there are."""
    if not overrides:
        return config
    cls = type(config)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} fields {unknown}; expected some of {sorted(names)}"
        )
    return cls(**{**asdict(config), **overrides})
