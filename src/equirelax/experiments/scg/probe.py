"""``equirelax scg probe``: probe every trained autoencoder variant and a PCA baseline on the
same held-out crops. The first seed gets the full report (comparison and per-module tables,
the rot8 orientation table, kernel mosaics, tuning curves, per-module reconstructions, and
``groups.json``: the module groups stage 2 is conditioned on); several ``--seeds`` add the
ablation table over seeds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from equirelax.experiments.kit.guards import mark
from equirelax.experiments.scg.config import (
    PRESETS,
    PROBE_GROUP,
    Preset,
    checkpoint_name,
    dirs,
    held_out,
    preset_name,
    quick_flag,
    smoke,
)
from equirelax.experiments.scg.tables import ablation_table, markdown_table, orientation_table
from equirelax.scg.autoencoder import ModularAutoencoder
from equirelax.scg.conditions import groups_from_probe
from equirelax.scg.datasets import CropSampler
from equirelax.scg.pca import pca_autoencoder
from equirelax.scg.probes import ProbeReport, probe_autoencoder
from equirelax.scg.training import TrainedAutoencoder, load_autoencoder


def _probe_models(runs: Path, variants: list[str], seed: int) -> dict[str, TrainedAutoencoder]:
    found = {}
    for variant in variants:
        ckpt = runs / checkpoint_name(variant, seed)
        if ckpt.exists():
            found[variant] = load_autoencoder(ckpt)
    return found


def cmd_probe(args: argparse.Namespace) -> int:
    """Probe every trained variant and the PCA baseline; tables, figures, module groups.

    The first seed gets the full report (tables, figures, ``groups.json``); with several
    ``--seeds`` every seed is probed and ``ablation_table.md`` gives each score's mean and
    bootstrap 95 % interval over seeds, per variant. Without ``full`` among ``--variants``
    (e.g. a comparison of other variants trained with other settings) the report of the full
    model and ``groups.json`` are skipped; every named variant must then be trained for every
    seed, unless ``--skip-missing`` (e.g. more seeds of one variant than of another): then each
    seed probes the named variants it has, the table gives each model's number of seeds, and
    the missing checkpoints are listed in it.
    """
    from equirelax.scg.plots import (
        plot_kernel_mosaic,
        plot_module_reconstructions,
        plot_tuning_curves,
    )

    preset = PRESETS[preset_name(args)]
    seeds = list(args.seeds)
    out, runs = dirs(args)
    # probe what exists among the named variants (default: the six standard ones plus rot8)
    wanted = list(dict.fromkeys([*args.variants, "rot8"]))
    # fail before any data is loaded
    missing = []
    if args.skip_missing:
        missing = [checkpoint_name(variant, seed) for seed in seeds for variant in args.variants
                   if not (runs / checkpoint_name(variant, seed)).exists()]
        if len(missing) == len(seeds) * len(args.variants):
            raise SystemExit(f"no trained autoencoder of {' '.join(args.variants)} for seeds "
                             f"{' '.join(map(str, seeds))} in {runs}")
    else:
        # the full model's report needs the full model; without it, every named variant is
        required = ["full"] if "full" in args.variants else list(args.variants)
        for seed in seeds:
            for variant in required:
                if not (runs / checkpoint_name(variant, seed)).exists():
                    raise SystemExit(
                        f"no trained autoencoder {checkpoint_name(variant, seed)} in {runs}; run "
                        f"`equirelax scg train-autoencoder{quick_flag(args)}"
                        f"{f' --seeds {seed}' if seed else ''}"
                        f"{'' if variant == 'full' else f' --variants {variant}'}` before "
                        f"`{args.recorded_command}`")
    held = held_out(preset.probe_images, 48)
    all_rows = []
    for seed_index, seed in enumerate(seeds):
        trained = _probe_models(runs, wanted, seed)
        models: dict[str, ModularAutoencoder] = {k: t.model.eval() for k, t in trained.items()}
        models["pca"] = pca_autoencoder(CropSampler(size=preset.ae_crop, seed=seed))
        rows, reports = [], {}
        for name, model in models.items():
            mark(f"probe {name} (seed {seed})")
            with torch.no_grad():
                rec_mse = float(((model(held) - held) ** 2).mean())
            codebooks = dict(trained[name].objective.branches()) if name in trained else None
            report = probe_autoencoder(model, held, PROBE_GROUP.get(name), codebooks)
            reports[name] = report
            rows.append({"model": name, "seed": seed, "recon_mse": rec_mse, **report.summary()})
        all_rows += rows
        if seed_index == 0:
            if "full" in reports:
                _write_probe_report(args, preset, out, models, reports, rows)
            for name, model in models.items():
                r = reports[name]
                plot_kernel_mosaic(model, out / f"kernels_{name}.png", title=f"kernels ({name})",
                                   labels=r.module_types, group_size=r.group_size)
                if name in ("full", "pca", "rot8"):
                    plot_tuning_curves(r, r.group_size, out / f"tuning_{name}.png",
                                       title=f"grating tuning ({name})")
                if name in ("full", "pca"):
                    plot_module_reconstructions(model, held[:3], out / f"modules_{name}.png",
                                                labels=r.module_types,
                                                title=f"per-module reconstructions ({name})")
    if len(seeds) > 1:
        (out / "probe_seeds.json").write_text(json.dumps(all_rows, indent=1) + "\n")
        text = (f"# Ablations over seeds ({preset_name(args)} preset)\n\n{smoke(args)}"
                f"Command: `{args.recorded_command}` (after `equirelax scg train-autoencoder"
                f"{quick_flag(args)} --seeds {' '.join(map(str, seeds))}`). "
                f"Each cell: mean over seeds [percentile bootstrap 95 % interval of the mean; "
                f"with {len(seeds)} seeds coarse and too narrow: it shows the spread, not a "
                "test]. The same held-out crops for every model and seed. `*_w`: each module "
                "weighted by its share of the reconstruction energy; `n_active`: modules with "
                ">= 2 % of it; `eff_modules`: exp(entropy) of the shares; `coverage_w`: "
                "orientation coverage of a module's units (1: a complete orientation family). "
                "PCA is refitted per seed (its patches depend on the seed)."
                + (f" Not trained, left out (`--skip-missing`): {', '.join(missing)}."
                   if missing else "")
                + "\n\n"
                + ablation_table(all_rows, seeds) + "\n")
        (out / "ablation_table.md").write_text(text)
        print(text)
    return 0


def _write_probe_report(args: argparse.Namespace, preset: Preset, out: Path,
                        models: dict[str, ModularAutoencoder], reports: dict[str, ProbeReport],
                        rows: list[dict]) -> None:
    """``probe_table.md`` / ``.json``, the per-module table of the full model, the rot8
    orientation table and ``groups.json`` (module groups for stage 2) of one seed."""
    cols = ["model", "recon_mse", "within_corr", "between_corr", "corr_ratio", "eta2_chroma",
            "eta2_log_freq", "eta2_lowpass", "mean_osi", "mean_gabor_osi", "n_colour",
            "n_brightness", "n_edge", "freq_spread_octaves"]
    energy_cols = ["model", "n_active", "eff_modules", "max_share", "share_colour",
                   "share_brightness", "corr_ratio_w", "eta2_chroma_w", "eta2_log_freq_w",
                   "eta2_lowpass_w", "osi_w", "coverage_w", "dist_id_rot", "dist_id_trans"]
    full = reports["full"]
    K, L = len(full.module_types), full.group_size
    module_rows = []
    for i in range(K):
        sl = slice(i * L, (i + 1) * L)
        module_rows.append({
            "module": i, "type": full.module_types[i],
            "chroma": float(full.module_chroma[i]),
            "opponency": float(full.colour.opponency[sl].mean()),
            "lowpass": float(full.module_lowpass[i]),
            "pref_freq": float(full.module_frequency[i]),
            "osi": float(full.tuning.orientation_selectivity[sl].mean()),
            "energy_share": float(full.energy_share[i]),
            "dist_id_rot": float(full.identity_distance["rot"][i // max(
                1, K // len(full.identity_distance["rot"]))])
            if "rot" in full.identity_distance else float("nan"),
            "dist_id_trans": float(full.identity_distance["trans"][i])
            if "trans" in full.identity_distance else float("nan"),
        })
    groups = groups_from_probe(full)
    (out / "groups.json").write_text(json.dumps(groups, indent=1) + "\n")
    (out / "probe_table.json").write_text(json.dumps(rows, indent=1) + "\n")
    rot8 = ""
    if "rot8" in reports:
        rot8 = ("\n## Orientation: the rotation-grouped model (rot8)\n\n"
                "64 one-unit translation modules, 8 per rotation hypercolumn (`rot_num = 8`); "
                "probed per hypercolumn. `coverage` is 1 when the preferred orientations of a "
                "hypercolumn's units spread evenly over 180 degrees (the paper's complete "
                "orientation families), 0 when they agree. Figure: `tuning_rot8.png`, "
                "`kernels_rot8.png` (one hypercolumn per row).\n\n"
                + orientation_table(reports["rot8"]) + "\n")
    text = (
        f"# Probes of the modular autoencoder and its ablations ({preset_name(args)} preset)\n\n"
        f"{smoke(args)}Command: `{args.recorded_command}` (after `equirelax scg "
        f"train-autoencoder{quick_flag(args)}`). Held-out: {preset.probe_images} crops of 48x48 "
        "from photos never used in training and fresh dead-leaves images.\n\n"
        "Columns: `recon_mse` held-out reconstruction MSE (pixels in [0,1]); `within_corr` / "
        "`between_corr` mean |correlation| of unit activations inside a module / across modules; "
        "`eta2_*` fraction of the across-unit variance of a property (chromatic energy fraction, "
        "log preferred spatial frequency, low-pass index) explained by module membership; "
        "`mean_osi` orientation selectivity (gratings), `mean_gabor_osi` (Gabor patches); "
        "`n_colour/n_brightness/n_edge` module labels; `freq_spread_octaves` range of module "
        "preferred frequencies.\n\n"
        + markdown_table(rows, cols) + "\n\n"
        "## Energy-aware scores\n\n"
        "Modules that carry almost none of the reconstruction cannot inflate these: "
        "`n_active` modules with >= 2 % of the held-out reconstruction energy; `eff_modules` "
        "exp(entropy) of the energy shares; `max_share` the largest share; `share_colour` / "
        "`share_brightness` energy share of the modules with that label; `*_w` the scores above "
        "with each module weighted by its energy share (pairs of modules by the product); "
        "`coverage_w` orientation coverage of a module's units; `dist_id_*` mean over codebook "
        "nodes and modules of ||M - I||_F (how far the learned transformations moved from the "
        "identity start; ~0.01 x units at the start).\n\n"
        + markdown_table(rows, energy_cols) + "\n\n"
        "## Modules of the full model\n\n"
        + markdown_table(module_rows, ["module", "type", "chroma", "opponency", "lowpass",
                                       "pref_freq", "osi", "energy_share", "dist_id_rot",
                                       "dist_id_trans"]) + "\n"
        + rot8 +
        f"\nModule groups used for pattern completion: `{json.dumps(groups)}`\n"
    )
    (out / "probe_table.md").write_text(text)
    print(text)
