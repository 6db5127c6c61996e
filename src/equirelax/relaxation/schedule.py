"""Relaxation schedules θ(t): how much of the unconstrained term a relaxed model uses at step t.

Every decaying schedule reaches exactly 0 at its last step (t = total - 1), so the model that is
trained last is the exactly equivariant one. Counting is in whatever unit the caller steps in
(optimizer steps or epochs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SCHEDULES = ("triangular", "linear", "cosine", "constant")


@dataclass(frozen=True)
class Schedule:
    """θ as a function of the step t in 0..total-1 (held at its last value afterwards).

    ``kind`` is one of ``SCHEDULES`` or ``"custom"`` with ``fn(t, total) -> θ``. ``peak``
    scales the decaying schedules; ``value`` is the θ of the constant schedule.
    """

    kind: str
    total: int | None = None
    peak: float = 1.0
    value: float = 0.1
    fn: Callable[[int, int], float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in (*SCHEDULES, "custom"):
            raise ValueError(f"unknown schedule {self.kind!r}; expected one of {SCHEDULES} "
                             "or a callable fn(t, total) -> theta")
        if self.total is not None:
            # a step count: 10.5 or "10" would be truncated or fail deep inside, and a bool is
            # almost always a mistaken positional argument
            if isinstance(self.total, bool) or not isinstance(self.total, int | np.integer):
                raise TypeError(f"total_steps must be an integer >= 1, got {self.total!r} "
                                f"({type(self.total).__name__})")
            object.__setattr__(self, "total", int(self.total))
        if self.kind in ("triangular", "linear", "cosine", "custom"):
            if self.total is None or self.total < 1:
                raise ValueError(
                    f"schedule {self.kind!r} needs total_steps >= 1, got {self.total!r}"
                )
        for name, lowest in (("peak", 0.0), ("value", None)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                raise TypeError(f"{name} must be a number, got {v!r} ({type(v).__name__})")
            if not math.isfinite(v) or (lowest is not None and v < lowest):
                bound = "a finite number >= 0" if lowest is not None else "a finite number"
                raise ValueError(f"{name} must be {bound}, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.kind == "custom" and not callable(self.fn):
            raise TypeError(f"a custom schedule needs a callable fn(t, total), got {self.fn!r}")

    def __call__(self, t: int) -> float:
        if t < 0:
            raise ValueError(f"schedule step must be >= 0, got {t}")
        if self.kind == "constant":
            return float(self.value)
        total = int(self.total)  # type: ignore[arg-type]
        last = total - 1
        t = min(t, last)
        if self.kind == "custom":
            return float(self.fn(t, total))  # type: ignore[misc]
        if last == 0:
            return 0.0
        if self.kind == "linear":
            return self.peak * (last - t) / last
        if self.kind == "cosine":
            if t == last:
                return 0.0
            return self.peak * 0.5 * (1.0 + math.cos(math.pi * t / last))
        # triangular: 0 at t = 0, exactly `peak` on the middle step(s), exactly 0 at t = last.
        # The peak sits on steps, not between them: for an odd number of steps it is the one
        # middle step, for an even number it is held at both middle steps (an apex at
        # last / 2 = 4.5 for T = 10 would leave the best step at 0.889). With T <= 2 there is
        # no step strictly inside, so θ stays 0 (both ends must be exactly 0).
        rise = last // 2  # steps from 0 up to the first peak step (and from the last one down)
        if rise == 0:
            return 0.0
        if t <= rise:
            return self.peak * t / rise
        # t >= last - rise here: the second peak step of an even T gives (last - t) / rise = 1
        return self.peak * min(last - t, rise) / rise

    def describe(self) -> dict:
        """A JSON-able description (the callable of a custom schedule is named, not stored)."""
        out = {"kind": self.kind, "total": self.total, "peak": self.peak, "value": self.value}
        if self.fn is not None:
            out["fn"] = getattr(self.fn, "__name__", repr(self.fn))
        return out

    def differences(self, saved: dict) -> list[str]:
        """What in a saved :meth:`describe` gives another θ(t) than this schedule: the kind,
        and the parameters the kind uses (total and peak of decaying schedules, value of the
        constant one, total and function name of a custom one). Keys the saved description
        lacks (older checkpoints) are not compared. Empty when the two schedules agree."""
        mine = self.describe()
        if "kind" in saved and saved["kind"] != self.kind:
            return [f"kind {saved['kind']!r} != {self.kind!r}"]
        used = {"constant": ("value",), "custom": ("total", "fn")}.get(self.kind,
                                                                     ("total", "peak"))
        return [f"{key} {saved[key]!r} != {mine.get(key)!r}" for key in used
                if key in saved and saved[key] != mine.get(key)]


def make_schedule(
    schedule: str | Callable[[int, int], float] | Schedule,
    total_steps: int | None,
    peak: float = 1.0,
    value: float = 0.1,
) -> Schedule:
    """Build a :class:`Schedule` from a name, a callable ``fn(t, total)``, or pass one through."""
    if isinstance(schedule, Schedule):
        return schedule
    if callable(schedule):
        return Schedule("custom", total_steps, fn=schedule)
    if not isinstance(schedule, str):
        raise TypeError(f"schedule must be a name, a callable or a Schedule, got {schedule!r}")
    return Schedule(schedule, total_steps, peak=peak, value=value)
