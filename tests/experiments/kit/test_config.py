"""A dataclass config as command-line options, and back (``experiments.kit.config``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from equirelax.experiments.kit.argtypes import fraction
from equirelax.experiments.kit.config import add_config_options, config_from_args
from equirelax.experiments.kit.options import DefaultsHelpFormatter


@dataclass
class Toy:
    epochs: int = field(default=5, metadata={"help": "training epochs"})
    lr: float = 1e-3
    keep: float = field(default=1.0, metadata={"type": fraction})
    widths: tuple[int, ...] = (4, 8)
    pair: tuple[float, float] = (1.0, 2.0)
    noise_std: float = field(default=0.1, metadata={"flag": "--noise", "aliases": ("--sigma",)})
    data: str | None = field(default=None, metadata={"type": Path})
    pooling: str = field(default="mean", metadata={"choices": ("mean", "max")})
    transform: bool = False
    seeds: tuple[int, ...] = (0,)


PRESETS = {"quick": {"epochs": 1, "widths": (2,)}, "standard": {}}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    add_config_options(parser, Toy, exclude=("seeds",))
    return parser.parse_args(argv)


def test_preset_then_options():
    assert config_from_args(_parse([]), Toy, PRESETS, "quick") == Toy(epochs=1, widths=(2,))
    cfg = config_from_args(_parse(["--epochs", "3", "--widths", "1", "2", "3", "--pair", "3",
                                   "4", "--noise", "0.5", "--data", "/x", "--transform",
                                   "--pooling", "max"]), Toy, PRESETS, "quick", seeds=(4,))
    assert (cfg.epochs, cfg.widths, cfg.pair, cfg.noise_std) == (3, (1, 2, 3), (3.0, 4.0), 0.5)
    assert cfg.data == "/x" and cfg.transform and cfg.pooling == "max" and cfg.seeds == (4,)
    assert config_from_args(_parse(["--sigma", "0.2"]), Toy, PRESETS, "standard").noise_std == 0.2
    assert not config_from_args(_parse(["--no-transform"]), Toy, PRESETS, "quick").transform


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--keep", "2"], ["--lr", "-1"],
                                  ["--pair", "1"], ["--pooling", "sum"], ["--seeds", "1"]])
def test_bad_values_are_usage_errors(argv):
    with pytest.raises(SystemExit) as stop:
        _parse(argv)
    assert stop.value.code == 2


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="preset must be one of"):
        config_from_args(_parse([]), Toy, PRESETS, "large")
