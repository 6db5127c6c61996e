"""The scg study's command-line wiring (no training here: that is what --quick runs are for)."""

import argparse

import pytest

from equirelax.experiments import scg


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    scg.configure(parser)
    return parser.parse_args(list(argv))


def test_subcommands_and_presets():
    args = _parse("probe", "--quick")
    assert args.subcommand == "probe" and args.quick and args.variants == list(scg.VARIANTS)
    assert set(scg.PRESETS) == {"quick", "full"}
    assert scg.PRESETS["quick"].ae_steps < scg.PRESETS["full"].ae_steps
    with pytest.raises(SystemExit):
        _parse("sample")


def test_probe_without_checkpoints_says_what_to_run(tmp_path):
    args = _parse("probe", "--quick", "--out", str(tmp_path / "o"), "--runs", str(tmp_path / "r"))
    with pytest.raises(SystemExit, match="train-autoencoder"):
        scg.main(args)


def test_completion_without_groups_says_what_to_run(tmp_path):
    args = _parse("train-completion", "--quick", "--out", str(tmp_path / "o"),
                  "--runs", str(tmp_path / "r"))
    with pytest.raises(SystemExit, match="scg probe"):
        scg.main(args)
