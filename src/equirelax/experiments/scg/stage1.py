"""Stage 1, ``equirelax scg train-autoencoder``: train the modular autoencoder and its
ablations (the variants of :mod:`.config`) for one seed or several, each resuming from its
checkpoint; loss histories, loss curves and a table of the final-step loss terms."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from equirelax.experiments.kit.guards import mark
from equirelax.experiments.scg.config import (
    PRESETS,
    VARIANTS,
    checkpoint_name,
    dirs,
    preset_name,
    remove,
    seed_tag,
    smoke,
)
from equirelax.experiments.scg.tables import markdown_table
from equirelax.scg.autoencoder import AutoencoderConfig
from equirelax.scg.losses import ObjectiveConfig
from equirelax.scg.training import TrainConfig, train_autoencoder, write_history


def cmd_train_autoencoder(args: argparse.Namespace) -> int:
    """Train the modular autoencoder variants, for one seed or several (``--seeds``)."""
    from equirelax.scg.datasets import photo_names
    from equirelax.scg.plots import plot_loss_history

    preset = PRESETS[preset_name(args)]
    seeds = list(args.seeds)
    out, runs = dirs(args)
    steps = args.steps or preset.ae_steps
    if args.fresh:
        remove(runs / checkpoint_name(variant, seed) for seed in seeds
               for variant in args.variants)
    summary = []
    for seed in seeds:
        for variant in args.variants:
            mark(f"autoencoder {variant} (seed {seed})")
            model_over, objective_over = VARIANTS[variant]
            mc = replace(AutoencoderConfig(), **model_over)
            oc = replace(ObjectiveConfig(), **objective_over)
            tc = TrainConfig(steps=steps, crop=preset.ae_crop, seed=seed)
            t0 = time.perf_counter()
            trained = train_autoencoder(mc, oc, tc,
                                        checkpoint=runs / checkpoint_name(variant, seed),
                                        progress=args.progress)
            seconds = time.perf_counter() - t0
            tag = seed_tag(seed)
            write_history(out / f"ae_{variant}{tag}_history.csv", trained.history)
            plot_loss_history(trained.history, out / f"ae_{variant}{tag}_loss.png",
                              title=f"modular autoencoder ({variant}, seed {seed})")
            last = trained.history[-1]
            summary.append({"variant": variant, "seed": seed, "steps": steps,
                            "wall_s_this_run": seconds,
                            **{k: last[k] for k in ("recon", "equ", "sym", "total")}})
    path = out / ("ae_training.md" if len(seeds) == 1 else "ae_training_seeds.md")
    photos = photo_names("train")
    text = (f"# Modular autoencoder training ({preset_name(args)} preset)\n\n"
            f"{smoke(args)}Command: `{args.recorded_command}`\n\n"
            f"Training photographs ({len(photos)}): {', '.join(photos)}; plus dead leaves.\n\n"
            "Final-step loss terms (one batch):\n\n"
            + markdown_table(summary, ["variant", "seed", "steps", "wall_s_this_run", "recon",
                                       "equ", "sym", "total"], "{:.4g}") + "\n")
    path.write_text(text)
    print(text)
    return 0
