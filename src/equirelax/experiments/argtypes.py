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


__all__ = ["fraction", "non_negative_float", "non_negative_int", "positive_float",
           "positive_int"]
