"""``type=`` functions for the study commands' numeric options, shared by every subcommand.

argparse calls them on the text of an option and reports a refusal as a usage error (exit
status 2) naming the option, e.g. ``argument --epochs: must be an integer > 0, got '0'``, before
anything runs. Non-finite floats (``nan``, ``inf``) are refused everywhere.
"""

from __future__ import annotations

import argparse
import math


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer > 0 (sizes, epochs, steps, widths, counts of seeds, batch sizes)."""
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be an integer > 0, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seed values, optional extra steps where 0 means none)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, tolerances, thresholds)."""
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (penalty weights, weight decay, noise and init scales)."""
    value = _real(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1] (fractions of the data or of the steps)."""
    value = _real(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def seed_values(text: str) -> tuple[int, ...]:
    """One word of ``--seeds``: a seed value ``7`` (an integer >= 0) or an inclusive range
    ``0-29`` (low <= high), as a tuple of seed values."""
    low, dash, high = text.partition("-")
    if not dash or not low:  # one seed value (a negative one is refused as such)
        return (non_negative_int(text),)
    try:
        first, last = int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a seed (an integer >= 0) or a range such as 0-29, got {text!r}") from None
    if first < 0 or last < first:
        raise argparse.ArgumentTypeError(
            f"a range of seeds LOW-HIGH needs 0 <= LOW <= HIGH, got {text!r}")
    return tuple(range(first, last + 1))


class SeedsAction(argparse.Action):
    """``--seeds 0 1 2`` or ``--seeds 0-29``: the words (each parsed by :func:`seed_values`)
    joined into one tuple of distinct seed values, in the order given; a seed named twice is a
    usage error (status 2)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values, option_string: str | None = None) -> None:
        seeds = tuple(seed for word in values for seed in word)
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise argparse.ArgumentError(self, f"each seed once, got {repeated} more than once")
        setattr(namespace, self.dest, seeds)


__all__ = ["SeedsAction", "fraction", "non_negative_float", "non_negative_int",
           "positive_float", "positive_int", "seed_values"]
