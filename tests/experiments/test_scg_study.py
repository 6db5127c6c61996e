"""`equirelax scg`: the study's command-line wiring; stage 2 end to end with tiny models
(seconds)."""

import argparse
import json

import numpy as np
import pytest
import torch

from equirelax.cli import main as cli_main
from equirelax.experiments import scg
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.scg.config import seed_tag
from equirelax.experiments.scg.generate import load_image
from equirelax.experiments.scg.tables import ablation_table


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    scg.configure(parser)
    return parser.parse_args(list(argv))


def test_subcommands_and_presets():
    args = _parse("probe", "--quick")
    assert args.subcommand == "probe" and args.quick
    assert args.variants == list(scg.DEFAULT_VARIANTS) and args.seeds == (0,)
    assert _parse("train-autoencoder", "--preset", "quick").preset == "quick"
    assert set(scg.PRESETS) == {"quick", "full"}
    assert scg.PRESETS["quick"].ae_steps < scg.PRESETS["full"].ae_steps
    with pytest.raises(SystemExit):
        _parse("sample")


def test_probe_without_checkpoints_says_what_to_run(tmp_path):
    args = _parse("probe", "--quick", "--out", str(tmp_path / "o"), "--runs-dir",
                  str(tmp_path / "r"))
    with pytest.raises(SystemExit, match="train-autoencoder"):
        scg.main(args)


def test_probe_compares_other_variants_without_the_full_model(tmp_path):
    out, runs = tmp_path / "o", tmp_path / "r"
    folders = ["--out", str(out), "--runs-dir", str(runs), "--no-progress"]
    assert scg.main(_parse("train-autoencoder", "--quick", "--steps", "1", "--variants",
                           "no_equ", "--seeds", "0", *folders)) == 0
    # a named variant missing for a seed is named, with the command that trains it
    with pytest.raises(SystemExit, match=r"ae_no_equ_seed1\.pt.*--seeds 1 --variants no_equ"):
        scg.main(_parse("probe", "--quick", "--variants", "no_equ", "--seeds", "0", "1",
                        *folders))
    # unless asked to leave it out: the model then counts only the seeds it has
    assert scg.main(_parse("probe", "--quick", "--variants", "no_equ", "--seeds", "0", "1",
                           "--skip-missing", *folders)) == 0
    table = (out / "ablation_table.md").read_text()
    assert "| no_equ | 1 |" in table and "| pca | 2 |" in table
    assert "left out (`--skip-missing`): ae_no_equ_seed1.pt." in table
    with pytest.raises(SystemExit, match="no trained autoencoder of no_equ for seeds 2 3"):
        scg.main(_parse("probe", "--quick", "--variants", "no_equ", "--seeds", "2", "3",
                        "--skip-missing", *folders))
    assert scg.main(_parse("train-autoencoder", "--quick", "--steps", "1", "--variants",
                           "no_equ", "--seeds", "1", *folders)) == 0
    assert scg.main(_parse("probe", "--quick", "--variants", "no_equ", "--seeds", "0", "1",
                           *folders)) == 0
    table = (out / "ablation_table.md").read_text()
    assert "| no_equ | 2 |" in table and "| pca | 2 |" in table and "| full |" not in table
    assert not (out / "groups.json").exists()  # module groups come from the full model only
    assert (out / "kernels_no_equ.png").exists()


def test_completion_without_groups_says_what_to_run(tmp_path):
    args = _parse("train-completion", "--quick", "--out", str(tmp_path / "o"),
                  "--runs-dir", str(tmp_path / "r"))
    with pytest.raises(SystemExit, match="scg probe"):
        scg.main(args)


def test_seeds_variants_and_their_errors(tmp_path, capsys):
    args = _parse("train-autoencoder", "--quick", "--seeds", "0-2", "--variants", "full",
                  "rot8")
    assert args.seeds == (0, 1, 2)
    command = record_command(args)
    assert "--seeds 0 1 2" in command and "--variants full rot8" in command
    assert seed_tag(0) == "" and seed_tag(2) == "_seed2"
    assert {"rot8", "sym_image", "random_codebook"} <= set(scg.VARIANTS)
    assert scg.PROBE_GROUP["rot8"] == 8
    folders = ["--out", str(tmp_path / "o"), "--runs-dir", str(tmp_path / "r")]
    # unknown variants, a seed named twice, several seeds for a one-seed stage: usage errors
    for words in (["train-autoencoder", "--variants", "nope"], ["probe", "--seeds", "1", "1"],
                  ["evaluate", "--seeds", "0", "1"]):
        assert cli_main(["scg", *words, "--quick", *folders]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and "each seed once" in err
    assert "evaluate uses one seed, got 0 1" in err
    missing = _parse("probe", "--quick", "--seeds", "0", "4", *folders)
    with pytest.raises(SystemExit, match=r"ae_full\.pt"):
        scg.main(missing)


def test_every_subcommand_has_help_with_defaults(capsys):
    for name in scg.COMMANDS:
        assert cli_main(["scg", name, "--help"]) == 0
        text = capsys.readouterr().out
        assert "--seeds" in text and "--threads" in text and "(default: 1)" in text
        assert ("--fresh" in text) == name.startswith("train-")
        assert "--runs-dir" in text and "--quick" in text


def test_fresh_deletes_the_checkpoints_it_would_resume(tmp_path):
    out, runs = tmp_path / "o", tmp_path / "r"
    words = ["train-autoencoder", "--quick", "--steps", "1", "--variants", "full", "--out",
             str(out), "--runs-dir", str(runs), "--no-progress"]
    assert scg.main(_parse(*words)) == 0
    ckpt = runs / "ae_full.pt"
    marker = ckpt.stat().st_mtime_ns
    assert scg.main(_parse(*words)) == 0  # resumed: the finished checkpoint is kept
    assert ckpt.stat().st_mtime_ns == marker
    assert scg.main(_parse(*words, "--fresh")) == 0
    assert ckpt.exists() and ckpt.stat().st_mtime_ns != marker


def test_ablation_table_gives_mean_and_interval_per_model():
    rows = []
    for seed, base in enumerate((0.2, 0.4, 0.6)):
        for model, shift in (("full", 1.0), ("pca", 0.0)):
            rows.append({"model": model, "seed": seed,
                         **{c: base + shift for c in scg.ABLATION_COLUMNS}, "n_active": 5})
    text = ablation_table(rows, [0, 1, 2])
    lines = text.splitlines()
    assert lines[0].startswith("| model | n_seeds | recon_mse")
    assert lines[2].startswith("| full | 3 | 1.4 [1.") and "1.400 [" in lines[2]
    assert lines[3].startswith("| pca | 3 | 0.4 [0.") and "5.0 [5.0, 5.0]" in lines[3]


def _tiny_stage1(out, runs):
    """A one-step autoencoder and its module groups, where train-completion looks for them."""
    from equirelax.scg.autoencoder import AutoencoderConfig
    from equirelax.scg.losses import ObjectiveConfig
    from equirelax.scg.training import TrainConfig, train_autoencoder

    out.mkdir(parents=True)
    runs.mkdir(parents=True)
    train_autoencoder(AutoencoderConfig(modules=4, units=2), ObjectiveConfig(),
                      TrainConfig(steps=1, batch=2), checkpoint=runs / "ae_full.pt",
                      progress=False)
    (out / "groups.json").write_text(json.dumps({"brightness": [0, 1], "colour": [2]}))


TINY = scg.Preset(ae_steps=1, ae_crop=32, probe_images=4, diff_base=8, diff_steps=2,
                  control_steps=2, diff_batch=2, eval_images=3, sample_steps=2,
                  noise_levels=(0.0, 0.2), eval_seeds=2, posterior_samples=3)


def test_completion_evaluate_and_generate_end_to_end(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setitem(scg.PRESETS, "quick", TINY)
    out, runs = tmp_path / "o", tmp_path / "r"
    _tiny_stage1(out, runs)
    common = ["--quick", "--out", str(out), "--runs-dir", str(runs), "--no-progress"]
    assert scg.main(_parse("train-completion", *common)) == 0
    assert (runs / scg.GENERATOR_FILE).exists()
    assert "base_loss" in (out / "completion_training.md").read_text()
    assert scg.main(_parse("evaluate", *common)) == 0
    table = (out / "generation_table.md").read_text()
    for row in ("grey image", "none (frozen base)", "decode-only brightness", "| canny |",
                "| colour, posterior mean |", "| none (frozen base), posterior mean |",
                "Difference in ssim_grey, posterior means"):
        assert row in table
    data = json.loads((out / "generation_table.json").read_text())
    assert data["n_seeds"] == 2 and data["n_images"] == 3 and data["posterior_samples"] == 3
    assert {d["baseline"] for d in data["differences"]} >= {
        "grey image", "canny", "decode-only colour", "canny, posterior mean",
        "none (frozen base), posterior mean"}
    # a posterior mean is compared with the same kind of output of each model baseline
    for d in data["differences"]:
        if d["baseline"] in ("canny", "none (frozen base)"):
            assert "posterior mean" not in d["condition"]
        if d["baseline"].endswith("posterior mean"):
            assert d["condition"].endswith("posterior mean")
    for fig in ("generation_grid.png", "generation_grid_zero_shot.png", "robustness.png",
                "generation_grid_posterior_mean.png"):
        assert (out / fig).exists()

    # generate from a file written here, with the generator file alone (runs folder moved away)
    rng = np.random.default_rng(0)
    image = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(image)
    alone = tmp_path / "elsewhere" / "gen.pt"
    alone.parent.mkdir()
    (runs / scg.GENERATOR_FILE).rename(alone)
    png = tmp_path / "side_by_side.png"
    assert scg.main(_parse("generate", "--image", str(image), "--checkpoint", str(alone),
                           "--condition", "canny", "--output", str(png),
                           "--sample-steps", "2")) == 0
    with Image.open(png) as im:
        assert im.size[0] > 2 * im.size[1]  # three panels side by side
    four = tmp_path / "with_mean.png"
    assert scg.main(_parse("generate", "--image", str(image), "--checkpoint", str(alone),
                           "--condition", "canny", "--output", str(four),
                           "--sample-steps", "2", "--samples", "3")) == 0
    with Image.open(four) as im4, Image.open(png) as im3:
        assert im4.size[0] > im3.size[0]  # a fourth panel: the mean of the generations
    default_png = image.with_name("photo_scg_brightness.png")
    assert scg.main(_parse("generate", "--image", str(image), "--checkpoint", str(alone))) == 0
    assert default_png.exists()


def test_generate_rejects_bad_input(tmp_path):
    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(SystemExit, match="needs --image"):
        scg.main(_parse("generate"))
    with pytest.raises(SystemExit, match="no generator file"):
        scg.main(_parse("generate", "--image", str(image), "--checkpoint",
                        str(tmp_path / "none.pt")))
    (tmp_path / "bad.txt").write_text("not an image")
    with pytest.raises(SystemExit, match="not an image"):
        load_image(tmp_path / "bad.txt")
    with pytest.raises(SystemExit, match="no such file"):
        load_image(tmp_path / "missing.png")
    torch.save({"x": 1}, tmp_path / "ckpt.pt")
    with pytest.raises(SystemExit, match="not a generator file"):
        scg.main(_parse("generate", "--image", str(image), "--checkpoint",
                        str(tmp_path / "ckpt.pt")))
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="CUDA is not available"):
            scg.main(_parse("generate", "--image", str(image), "--device", "cuda"))


def test_generate_unwritable_output_fails_before_loading(tmp_path):
    from equirelax.experiments.kit.guards import OutputError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="--output"):
        scg.main(_parse("generate", "--image", str(tmp_path / "x.png"), "--checkpoint",
                        str(tmp_path / "none.pt"), "--output", str(blocker / "out.png")))
