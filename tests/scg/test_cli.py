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
    assert args.subcommand == "probe" and args.quick
    assert args.variants == list(scg.DEFAULT_VARIANTS) and args.seeds is None
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


def test_seeds_variants_and_their_errors(tmp_path):
    args = _parse("train-autoencoder", "--quick", "--seeds", "0", "1", "2", "--variants", "full",
                  "rot8")
    assert args.seeds == [0, 1, 2] and scg._seeds(args) == [0, 1, 2]
    assert "--seeds 0 1 2" in scg._command(args) and "--variants full rot8" in scg._command(args)
    assert scg._seed_tag(0) == "" and scg._seed_tag(2) == "_seed2"
    assert {"rot8", "sym_image", "random_codebook"} <= set(scg.VARIANTS)
    assert scg.PROBE_GROUP["rot8"] == 8
    bad = _parse("train-autoencoder", "--quick", "--variants", "nope", "--out",
                 str(tmp_path / "o"), "--runs", str(tmp_path / "r"))
    with pytest.raises(SystemExit, match="unknown variant"):
        scg.main(bad)
    dup = _parse("probe", "--quick", "--seeds", "1", "1", "--out", str(tmp_path / "o"),
                 "--runs", str(tmp_path / "r"))
    with pytest.raises(SystemExit, match="distinct"):
        scg.main(dup)
    missing = _parse("probe", "--quick", "--seeds", "0", "4", "--out", str(tmp_path / "o"),
                     "--runs", str(tmp_path / "r"))
    with pytest.raises(SystemExit, match=r"ae_full\.pt"):
        scg.main(missing)


def test_ablation_table_gives_mean_and_interval_per_model():
    rows = []
    for seed, base in enumerate((0.2, 0.4, 0.6)):
        for model, shift in (("full", 1.0), ("pca", 0.0)):
            rows.append({"model": model, "seed": seed,
                         **{c: base + shift for c in scg.ABLATION_COLUMNS}, "n_active": 5})
    text = scg._ablation_table(rows, [0, 1, 2])
    lines = text.splitlines()
    assert lines[0].startswith("| model | n_seeds | recon_mse")
    assert lines[2].startswith("| full | 3 | 1.4 [1.") and "1.400 [" in lines[2]
    assert lines[3].startswith("| pca | 3 | 0.4 [0.") and "5.0 [5.0, 5.0]" in lines[3]
