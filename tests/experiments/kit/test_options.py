"""The one command-line vocabulary of the studies (``experiments.kit.options``, ``argtypes``)."""

from __future__ import annotations

import argparse

import pytest

from equirelax.experiments.kit.options import (
    DefaultsHelpFormatter,
    add_common_options,
    add_preset_options,
    add_relax_option,
    add_variants_option,
    chosen_preset,
    schedule_names,
)
from equirelax.relaxation import SCHEDULES


def _parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equirelax toy", formatter_class=DefaultsHelpFormatter)
    add_preset_options(parser, {"quick": {}, "standard": {}}, None, "standard")
    add_relax_option(parser)
    add_variants_option(parser, ("exact", "relaxed"))
    add_common_options(parser, "toy", **kwargs)
    return parser


def test_seeds_are_values_lists_and_ranges():
    parser = _parser()
    assert parser.parse_args([]).seeds == (0,)
    assert parser.parse_args(["--seeds", "3"]).seeds == (3,)
    assert parser.parse_args(["--seeds", "0", "2", "5"]).seeds == (0, 2, 5)
    assert parser.parse_args(["--seeds", "0-3", "7"]).seeds == (0, 1, 2, 3, 7)
    assert _parser(seeds_default=None).parse_args([]).seeds is None


@pytest.mark.parametrize(("value", "message"), [
    ("-1", "must be an integer >= 0, got '-1'"),
    ("x", "must be an integer, got 'x'"),
    ("3-1", "a range of seeds LOW-HIGH needs 0 <= LOW <= HIGH, got '3-1'"),
    ("1-x", "must be a seed (an integer >= 0) or a range such as 0-29, got '1-x'"),
])
def test_bad_seeds_are_usage_errors(value, message, capsys):
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args(["--seeds", value])
    assert stop.value.code == 2
    assert f"argument --seeds: {message}" in capsys.readouterr().err


def test_a_seed_named_twice_is_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args(["--seeds", "0-2", "1"])
    assert stop.value.code == 2 and "each seed once, got [1]" in capsys.readouterr().err


def test_shared_options_and_their_defaults():
    args = _parser().parse_args([])
    assert (args.out, args.runs_dir, args.fresh, args.progress, args.threads) == (
        None, None, False, True, 2)
    assert (args.devices, args.num_nodes, args.accelerator) == (1, 1, "auto")
    assert (args.relax, args.variants, args.preset, args.quick) == (None, None, None, False)
    assert chosen_preset(args, "standard") == "standard"
    assert chosen_preset(_parser().parse_args(["--quick"]), "standard") == "quick"
    plain = argparse.ArgumentParser()
    add_common_options(plain, "toy", training=False, lightning=False)
    assert not {"runs_dir", "fresh", "devices"} & set(vars(plain.parse_args([])))


def test_relax_choices_come_from_the_schedule_registry():
    assert schedule_names() == tuple(sorted(SCHEDULES))
    parser = _parser()
    for name in ("none", *SCHEDULES):
        assert parser.parse_args(["--relax", name]).relax == name
    with pytest.raises(SystemExit):
        parser.parse_args(["--relax", "sawtooth"])


def test_help_shows_defaults_and_preset_values():
    text = " ".join(_parser().format_help().split())
    assert "(default: 0)" in text and "(default: auto)" in text
    assert "(default: docs/results/toy/<preset>)" in text
    assert "(default: the preset's value)" in text  # --relax, --variants
    assert "(default: standard)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
