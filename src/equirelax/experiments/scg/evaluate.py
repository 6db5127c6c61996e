"""``equirelax scg evaluate``: PSNR/SSIM of generations against held-out sources beside four
baselines (grey image, the module group's own decode, the unconditional model, Canny), with
paired bootstrap intervals; inputs clean, under noise (the robustness curve) and zero-shot
(line drawings, low resolution, haze); tables, ``generation_table.json`` and figure grids.

Two kinds of output are scored for every condition. A *generation* is one sample: sharp and
plausible, but its details are guesses, and PSNR/SSIM punish a plausible detail that is not
the source's more than they punish none (the perception-distortion trade-off of Blau and
Michaeli, CVPR 2018): a flat grey image can out-score a good sample. The *posterior mean*, the
pixel mean of several generations from independent noise, estimates E[image | condition]: the
completion these scores reward, and the fair comparison with the grey image and with decoding
the modules directly. Both sides of every difference are the same kind of output."""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from equirelax.experiments.kit.guards import mark
from equirelax.experiments.scg.config import PRESETS, dirs, held_out, preset_name, smoke
from equirelax.experiments.scg.plots import (
    plot_generation_grid,
    plot_robustness,
    plot_zero_shot_grid,
)
from equirelax.experiments.scg.stage2 import conditions, groups_and_autoencoder
from equirelax.experiments.scg.tables import (
    GREY,
    METRICS,
    NONE,
    difference_table,
    markdown_table,
    variant_key,
)
from equirelax.scg.completion import (
    generate,
    generate_unconditional,
    load_base_diffusion,
    load_control,
)
from equirelax.scg.conditions import add_gaussian_noise, blur_downsample, haze, line_drawing
from equirelax.scg.metrics import psnr, ssim


def _scores(images: torch.Tensor, source: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image grey/colour PSNR and SSIM of ``images`` against ``source``."""
    return {"psnr_grey": psnr(images, source, grey=True), "ssim_grey": ssim(images, source, True),
            "psnr_colour": psnr(images, source), "ssim_colour": ssim(images, source)}


#: The row variant of the posterior-mean outputs.
POSTERIOR_MEAN = "posterior mean"


def _mean_scores(runs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-image scores averaged over noise seeds."""
    return {k: np.mean([r[k] for r in runs], axis=0) for k in runs[0]}


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Similarity of generations to sources, with baselines and paired bootstrap intervals:
    clean inputs, inputs under noise, and zero-shot inputs."""
    preset = PRESETS[preset_name(args)]
    out, runs = dirs(args)
    groups, ae = groups_and_autoencoder(out, runs)
    conds = conditions(groups, ae)
    base = load_base_diffusion(runs / "diffusion_base.pt")
    models = {name: load_control(base, runs / f"control_{name}.pt") for name in conds}
    names = list(models)
    source = held_out(preset.eval_images, 32, seed=args.seed + 77)
    n_seeds = args.eval_seeds or preset.eval_seeds
    n_mean = args.posterior_samples or preset.posterior_samples
    noises = [torch.randn(source.shape, generator=torch.Generator().manual_seed(args.seed + 5 + k))
              for k in range(max(n_seeds, n_mean))]
    settings: dict[str, torch.Tensor] = {}
    for s in preset.noise_levels:
        settings[f"noise_{s:g}"] = add_gaussian_noise(
            source, s, torch.Generator().manual_seed(args.seed + 9)) if s > 0 else source
    settings["line_drawing"] = line_drawing(source)
    settings["low_res_x4"] = blur_downsample(source, 4)
    settings["haze"] = haze(source, 0.5, 0.9)
    grey_scores = _scores(torch.full_like(source, 0.5), source)
    free_runs = [generate_unconditional(base, n, preset.sample_steps) for n in noises]
    none_scores = _mean_scores([_scores(img, source) for img in free_runs[:n_seeds]])
    none_mean = torch.stack(free_runs[:n_mean]).mean(0)
    all_scores: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    samples: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    means: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    for setting, inputs in settings.items():
        mark(f"evaluate {setting}")
        sc = {GREY: grey_scores, NONE: none_scores,
              variant_key(NONE, POSTERIOR_MEAN): _scores(none_mean, source)}
        for name in names:
            hint = conds[name](inputs)
            gens = [generate(models[name], hint, n, preset.sample_steps) for n in noises]
            sc[name] = _mean_scores([_scores(g, source) for g in gens[:n_seeds]])
            mean = torch.stack(gens[:n_mean]).mean(0)
            sc[variant_key(name, POSTERIOR_MEAN)] = _scores(mean, source)
            samples[(setting, name)] = (hint, gens[0])
            means[(setting, name)] = (hint, mean)
            if name in groups:
                decoded = ae.decode_modules(inputs, groups[name]).clamp(0, 1)
                sc[f"decode-only {name}"] = _scores(decoded, source)
        all_scores[setting] = sc
    rows, diffs = [], []
    parts = [
        f"# Pattern completion: generations vs held-out sources ({preset_name(args)} "
        f"preset)\n\n{smoke(args)}Command: `{args.recorded_command}` (after `train-completion`). "
        f"{preset.eval_images} held-out 32x32 crops (photos never used in training and "
        f"held-out dead leaves); DDIM with {preset.sample_steps} steps, eta 0, from "
        f"{n_seeds} noise seeds shared by every condition; each image's score is the mean "
        f"over seeds. `<condition>, {POSTERIOR_MEAN}`: the pixel mean of {n_mean} generations "
        "from independent noise (the same noises for every condition), an estimate of "
        "E[image | condition]. A single generation is a sharp, plausible guess whose details "
        "PSNR and SSIM punish when they are not the source's, more than they punish no detail "
        "(the perception-distortion trade-off), so a flat grey image can out-score a good "
        "sample; the posterior mean is the completion these scores reward and the fair "
        "comparison with the grey image and with decoding the modules directly. Each "
        "condition is extracted from the (possibly corrupted) input; the "
        "output is compared with the clean source.\n\nRows: a generation steered by a "
        "branch (`<condition>`); baselines `grey image` (constant 0.5), "
        f"`{NONE}` (the unconditional base model from the same noise), `decode-only "
        "<group>` (the module group decoded by the stage-1 decoder, no generator: what the "
        "condition itself already says about the image) and `canny` (the branch trained on "
        "Canny edges).\n\nDifference tables: mean paired difference (condition - baseline) "
        "over images with its bootstrap 95 % interval (2,000 resamples of the images); an "
        "interval that excludes 0 is a difference this sample resolves.\n"]
    for setting, sc in all_scores.items():
        order = [GREY, NONE, variant_key(NONE, POSTERIOR_MEAN)] + [
            k for n in names
            for k in (n, variant_key(n, POSTERIOR_MEAN), f"decode-only {n}") if k in sc]
        sub = [{"setting": setting, "method": k, **{m: float(np.mean(sc[k][m]))
                                                   for m in METRICS}} for k in order]
        rows += sub
        parts.append(f"\n## {setting}\n\n" + markdown_table(
            sub, ["method", *METRICS]) + "\n")
        for variant, what in (("", "generations"), (POSTERIOR_MEAN, "posterior means")):
            for metric in ("psnr_grey", "ssim_grey"):
                table, rec = difference_table(sc, names, groups, metric, args.seed, variant)
                diffs += [{"setting": setting, **r} for r in rec]
                parts.append(f"\nDifference in {metric}, {what}:\n\n{table}\n")
    (out / "generation_table.json").write_text(
        json.dumps({"means": rows, "differences": diffs, "n_images": preset.eval_images,
                    "n_seeds": n_seeds, "posterior_samples": n_mean}, indent=1) + "\n")
    levels = list(preset.noise_levels)
    plot_robustness(levels, names, all_scores, grey_scores, none_scores,
                    out / "robustness.png")
    plot_generation_grid(source, samples, names, free_runs[0], out / "generation_grid.png")
    plot_generation_grid(source, means, names, none_mean,
                         out / "generation_grid_posterior_mean.png",
                         output_label=f"mean of {n_mean}")
    show = [s for s in ("line_drawing", "low_res_x4", "haze", f"noise_{levels[-1]:g}")
            if s in settings]
    plot_zero_shot_grid(source, settings, samples, names, show,
                        out / "generation_grid_zero_shot.png")
    parts.append("\nFigures: `robustness.png` (grey PSNR/SSIM vs input noise), "
                 "`generation_grid.png` (clean inputs: condition and generation per branch, "
                 "first noise seed), `generation_grid_posterior_mean.png` (the same with the "
                 "posterior means), `generation_grid_zero_shot.png` (source, corrupted or "
                 "zero-shot input, generation per branch).\n")
    text = "".join(parts)
    (out / "generation_table.md").write_text(text)
    print(text)
    return 0
