"""``equirelax scg``: the SCG study (modular autoencoder + pattern completion), end to end.

Subcommands, each with ``--quick`` (minutes on 2 CPU cores) or the default full preset:

* ``train-autoencoder``: train the modular autoencoder and its ablations (no ``L_equ``, no
  ``L_sym``, no rotation branch, and a free kernel with and without ``L_equ``); loss curves.
* ``probe``: probe every trained variant and a PCA baseline; one comparison table, per-module
  tables, kernel mosaics, per-module reconstructions, tuning curves; module groups for stage 2.
* ``train-completion``: pre-train the small diffusion model, then one control branch per module
  group and one on Canny edges.
* ``evaluate``: PSNR/SSIM of generations against held-out sources beside four baselines (grey
  image, the module group's own decode, the unconditional model, Canny), with paired bootstrap
  intervals; a noise-robustness curve, zero-shot conditions (line drawings, low resolution,
  haze); tables and figure grids.
* ``generate``: complete one image file (``--image``) from one condition with the generator file
  that ``train-completion`` writes (one self-contained file: configs and weights); ``--device``.

Every subcommand speaks the study kit's vocabulary: ``--seeds`` (seed values; several for the
stage-1 ablations, one for stage 2), ``--out`` for results (default ``docs/results/scg/<preset>``:
small files, committed), ``--runs-dir`` for checkpoints (default ``runs/scg/<preset>``; every
training resumes from them, ``--fresh`` deletes them first), ``--no-progress``, ``--threads``.
Every table names the command that produced it (:func:`~equirelax.experiments.kit.commands.
record_command`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from equirelax.experiments.kit import tables
from equirelax.experiments.kit.argtypes import (
    SeedsAction,
    non_negative_int,
    positive_int,
    seed_values,
)
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE, UsageError, mark, require_writable
from equirelax.experiments.kit.options import (
    DefaultsHelpFormatter,
    add_common_options,
    add_preset_options,
    chosen_preset,
    preset_default,
)
from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder
from equirelax.scg.completion import (
    CompletionTrainConfig,
    generate,
    generate_unconditional,
    load_base_diffusion,
    load_control,
    load_generator,
    save_generator,
    similarity,
    train_base_diffusion,
    train_control,
)
from equirelax.scg.conditions import (
    ModuleGroupCondition,
    add_gaussian_noise,
    blur_downsample,
    canny_condition,
    groups_from_probe,
    haze,
    line_drawing,
)
from equirelax.scg.datasets import CropSampler
from equirelax.scg.diffusion import DiffusionConfig
from equirelax.scg.losses import ObjectiveConfig
from equirelax.scg.metrics import paired_bootstrap, psnr, ssim
from equirelax.scg.pca import pca_autoencoder
from equirelax.scg.probes import ProbeReport, probe_autoencoder
from equirelax.scg.training import (
    TrainConfig,
    TrainedAutoencoder,
    load_autoencoder,
    train_autoencoder,
    write_history,
)

NO_EQU = {"equ": 0.0, "recon_prediction": 0.0, "sym": 0.0}
# variant -> (autoencoder overrides, objective overrides). The composite kernel shares its two
# input pathways among the units of a module, which by itself ties units together; the free-kernel
# pair separates what the architecture does from what the equivariance constraint does.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "full": ({}, {}),
    "no_equ": ({}, NO_EQU),
    "no_sym": ({}, {"sym": 0.0}),
    "no_rot": ({}, {"rotation_branch": False}),
    "free": ({"kernel": "free"}, {}),
    "free_no_equ": ({"kernel": "free"}, NO_EQU),
    # opt-in variants (not trained unless named in --variants):
    # the paper's orientation setup: one-unit translation modules, 8 per rotation hypercolumn
    # (rot_num = 8, as the published nv128/vl1/rn8 checkpoint; 64 channels here like the others)
    "rot8": ({"modules": 64, "units": 1}, {"rot_num": 8}),
    # the published code's image-space symmetry loss instead of the paper's codebook form
    "sym_image": ({}, {"sym_form": "image"}),
    # the published code's pure-noise codebook start instead of identity + noise
    "random_codebook": ({}, {"codebook_init": "random"}),
}
DEFAULT_VARIANTS = ("full", "no_equ", "no_sym", "no_rot", "free", "free_no_equ")
# channels per probed module where it differs from the model's units: rot8 is probed per
# hypercolumn of 8 one-unit modules
PROBE_GROUP = {"rot8": 8}
# scores of the multi-seed ablation table (summary keys of ProbeReport, plus recon_mse)
ABLATION_COLUMNS = ("recon_mse", "corr_ratio", "corr_ratio_w", "eta2_chroma_w",
                    "eta2_log_freq_w", "eta2_lowpass_w", "osi_w", "coverage_w", "n_active",
                    "eff_modules")


@dataclass(frozen=True)
class Preset:
    """Sizes of one preset."""

    ae_steps: int
    ae_crop: int
    probe_images: int
    diff_base: int
    diff_steps: int
    control_steps: int
    diff_batch: int
    eval_images: int
    sample_steps: int
    noise_levels: tuple[float, ...]
    diff_lr: float = 2e-3
    control_lr: float = 1e-3
    eval_seeds: int = 2


#: The preset a command runs without ``--preset``/``--quick``.
DEFAULT_PRESET = "full"
PRESETS = {
    "quick": Preset(ae_steps=400, ae_crop=32, probe_images=64, diff_base=16, diff_steps=1500,
                    control_steps=600, diff_batch=16, eval_images=16, sample_steps=10,
                    noise_levels=(0.0, 0.1, 0.2, 0.4)),
    "full": Preset(ae_steps=3000, ae_crop=40, probe_images=256, diff_base=32, diff_steps=3000,
                   control_steps=800, diff_batch=32, eval_images=64, sample_steps=20,
                   noise_levels=(0.0, 0.1, 0.2, 0.4)),
}


def _preset_name(args: argparse.Namespace) -> str:
    return chosen_preset(args, DEFAULT_PRESET)


def _dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The results and checkpoint folders of a run (``main`` resolved their defaults),
    created."""
    args.out.mkdir(parents=True, exist_ok=True)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    return args.out, args.runs_dir


def _smoke(args: argparse.Namespace) -> str:
    """The smoke-test paragraph that heads the tables of a ``--quick`` run (else nothing)."""
    return f"**{SMOKE_TEST_NOTE}**\n\n" if _preset_name(args) == "quick" else ""


def _quick_flag(args: argparse.Namespace) -> str:
    """`` --quick`` for the commands a ``--quick`` run names as its prerequisites."""
    return " --quick" if _preset_name(args) == "quick" else ""


def _remove(paths) -> None:
    """``--fresh``: delete the checkpoints a run would otherwise resume from."""
    for path in paths:
        path.unlink(missing_ok=True)


def _seed_tag(seed: int) -> str:
    """File-name suffix of a seed: none for seed 0 (the single-seed files), else ``_seed<k>``."""
    return "" if seed == 0 else f"_seed{seed}"


def _markdown_table(rows: list[dict], columns: list[str], fmt: str = "{:.3f}") -> str:
    """The study kit's markdown table of ``columns`` of ``rows``, floats written with
    ``fmt``."""
    cells = [[fmt.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in columns]
             for r in rows]
    return "\n".join(tables.markdown_table(cells, columns))


def _held_out(n: int, size: int, seed: int = 123) -> torch.Tensor:
    return CropSampler(size=size, weights=(0.7, 0.3, 0.0), split="held_out", seed=seed).sample(n)


# --------------------------------------------------------------------------- stage 1

def cmd_train_autoencoder(args: argparse.Namespace) -> int:
    """Train the modular autoencoder variants, for one seed or several (``--seeds``)."""
    from equirelax.scg.datasets import photo_names
    from equirelax.scg.plots import plot_loss_history

    preset = PRESETS[_preset_name(args)]
    seeds = list(args.seeds)
    out, runs = _dirs(args)
    steps = args.steps or preset.ae_steps
    if args.fresh:
        _remove(runs / f"ae_{variant}{_seed_tag(seed)}.pt" for seed in seeds
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
            trained = train_autoencoder(mc, oc, tc, checkpoint=runs / f"ae_{variant}"
                                        f"{_seed_tag(seed)}.pt", progress=args.progress)
            seconds = time.perf_counter() - t0
            tag = _seed_tag(seed)
            write_history(out / f"ae_{variant}{tag}_history.csv", trained.history)
            plot_loss_history(trained.history, out / f"ae_{variant}{tag}_loss.png",
                              title=f"modular autoencoder ({variant}, seed {seed})")
            last = trained.history[-1]
            summary.append({"variant": variant, "seed": seed, "steps": steps,
                            "wall_s_this_run": seconds,
                            **{k: last[k] for k in ("recon", "equ", "sym", "total")}})
    path = out / ("ae_training.md" if len(seeds) == 1 else "ae_training_seeds.md")
    photos = photo_names("train")
    text = (f"# Modular autoencoder training ({_preset_name(args)} preset)\n\n"
            f"{_smoke(args)}Command: `{args.recorded_command}`\n\n"
            f"Training photographs ({len(photos)}): {', '.join(photos)}; plus dead leaves.\n\n"
            "Final-step loss terms (one batch):\n\n"
            + _markdown_table(summary, ["variant", "seed", "steps", "wall_s_this_run", "recon",
                                        "equ", "sym", "total"], "{:.4g}") + "\n")
    path.write_text(text)
    print(text)
    return 0


def _probe_models(runs: Path, variants: list[str], seed: int) -> dict[str, TrainedAutoencoder]:
    found = {}
    for variant in variants:
        ckpt = runs / f"ae_{variant}{_seed_tag(seed)}.pt"
        if ckpt.exists():
            found[variant] = load_autoencoder(ckpt)
    return found


def _orientation_table(report: ProbeReport) -> str:
    """Per hypercolumn of a rotation-grouped model: OSI, orientation coverage, preferred
    orientations of its units (degrees), preferred frequency and energy share."""
    g = report.group_size
    rows = []
    for i in range(len(report.module_types)):
        sl = slice(i * g, (i + 1) * g)
        pref = np.degrees(report.tuning.preferred_orientation[sl])
        rows.append({
            "hypercolumn": i, "type": report.module_types[i],
            "mean_osi": float(report.tuning.orientation_selectivity[sl].mean()),
            "coverage": float(report.module_coverage()[i]),
            "pref_orientations_deg": " ".join(f"{p:.0f}" for p in np.sort(pref)),
            "pref_freq": float(report.module_frequency[i]),
            "energy_share": float(report.energy_share[i]),
        })
    return _markdown_table(rows, ["hypercolumn", "type", "mean_osi", "coverage",
                                  "pref_orientations_deg", "pref_freq", "energy_share"])


def _ablation_table(rows: list[dict], seeds: list[int]) -> str:
    """Mean and bootstrap 95 % interval over seeds of every ablation score, per model."""
    from equirelax.scg.probes import bootstrap_mean_ci

    models = list(dict.fromkeys(r["model"] for r in rows))
    table_rows = []
    for m in models:
        sub = [r for r in rows if r["model"] == m]
        cells = []
        for col in ABLATION_COLUMNS:
            mean, lo, hi = bootstrap_mean_ci(np.array([r[col] for r in sub], dtype=float))
            fmt = {"recon_mse": "{:.2g}", "n_active": "{:.1f}"}.get(col, "{:.3f}")
            cells.append(f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]")
        table_rows.append([m, len(sub), *cells])
    return "\n".join(tables.markdown_table(table_rows, ["model", "n_seeds",
                                                        *ABLATION_COLUMNS]))


def cmd_probe(args: argparse.Namespace) -> int:
    """Probe every trained variant and the PCA baseline; tables, figures, module groups.

    The first seed gets the full report (tables, figures, ``groups.json``); with several
    ``--seeds`` every seed is probed and ``ablation_table.md`` gives each score's mean and
    bootstrap 95 % interval over seeds, per variant.
    """
    from equirelax.scg.plots import (
        plot_kernel_mosaic,
        plot_module_reconstructions,
        plot_tuning_curves,
    )

    preset = PRESETS[_preset_name(args)]
    seeds = list(args.seeds)
    out, runs = _dirs(args)
    # probe what exists among the named variants (default: the six standard ones plus rot8)
    wanted = list(dict.fromkeys([*args.variants, "rot8"]))
    for seed in seeds:  # fail before any data is loaded
        if not (runs / f"ae_full{_seed_tag(seed)}.pt").exists():
            raise SystemExit(f"no trained autoencoder ae_full{_seed_tag(seed)}.pt in {runs}; run "
                             f"`equirelax scg train-autoencoder{_quick_flag(args)}"
                             f"{f' --seeds {seed}' if seed else ''}` before "
                             f"`{args.recorded_command}`")
    held = _held_out(preset.probe_images, 48)
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
        text = (f"# Ablations over seeds ({_preset_name(args)} preset)\n\n{_smoke(args)}"
                f"Command: `{args.recorded_command}` (after `equirelax scg train-autoencoder"
                f"{_quick_flag(args)} --seeds {' '.join(map(str, seeds))}`). "
                f"Each cell: mean over seeds [percentile bootstrap 95 % interval of the mean; "
                f"with {len(seeds)} seeds coarse and too narrow: it shows the spread, not a "
                "test]. The same held-out crops for every model and seed. `*_w`: each module "
                "weighted by its share of the reconstruction energy; `n_active`: modules with "
                ">= 2 % of it; `eff_modules`: exp(entropy) of the shares; `coverage_w`: "
                "orientation coverage of a module's units (1: a complete orientation family). "
                "PCA is refitted per seed (its patches depend on the seed).\n\n"
                + _ablation_table(all_rows, seeds) + "\n")
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
                + _orientation_table(reports["rot8"]) + "\n")
    text = (
        f"# Probes of the modular autoencoder and its ablations ({_preset_name(args)} preset)\n\n"
        f"{_smoke(args)}Command: `{args.recorded_command}` (after `equirelax scg "
        f"train-autoencoder{_quick_flag(args)}`). Held-out: {preset.probe_images} crops of 48x48 "
        "from photos never used in training and fresh dead-leaves images.\n\n"
        "Columns: `recon_mse` held-out reconstruction MSE (pixels in [0,1]); `within_corr` / "
        "`between_corr` mean |correlation| of unit activations inside a module / across modules; "
        "`eta2_*` fraction of the across-unit variance of a property (chromatic energy fraction, "
        "log preferred spatial frequency, low-pass index) explained by module membership; "
        "`mean_osi` orientation selectivity (gratings), `mean_gabor_osi` (Gabor patches); "
        "`n_colour/n_brightness/n_edge` module labels; `freq_spread_octaves` range of module "
        "preferred frequencies.\n\n"
        + _markdown_table(rows, cols) + "\n\n"
        "## Energy-aware scores\n\n"
        "Modules that carry almost none of the reconstruction cannot inflate these: "
        "`n_active` modules with >= 2 % of the held-out reconstruction energy; `eff_modules` "
        "exp(entropy) of the energy shares; `max_share` the largest share; `share_colour` / "
        "`share_brightness` energy share of the modules with that label; `*_w` the scores above "
        "with each module weighted by its energy share (pairs of modules by the product); "
        "`coverage_w` orientation coverage of a module's units; `dist_id_*` mean over codebook "
        "nodes and modules of ||M - I||_F (how far the learned transformations moved from the "
        "identity start; ~0.01 x units at the start).\n\n"
        + _markdown_table(rows, energy_cols) + "\n\n"
        "## Modules of the full model\n\n"
        + _markdown_table(module_rows, ["module", "type", "chroma", "opponency", "lowpass",
                                        "pref_freq", "osi", "energy_share", "dist_id_rot",
                                        "dist_id_trans"]) + "\n"
        + rot8 +
        f"\nModule groups used for pattern completion: `{json.dumps(groups)}`\n"
    )
    (out / "probe_table.md").write_text(text)
    print(text)


# --------------------------------------------------------------------------- stage 2

GENERATOR_FILE = "scg_generator.pt"


def _groups_and_autoencoder(out: Path, runs: Path) -> tuple[dict[str, list[int]],
                                                             ModularAutoencoder]:
    groups_path = out / "groups.json"
    if not groups_path.exists():
        raise SystemExit(f"{groups_path} missing: run `equirelax scg probe` first")
    groups = json.loads(groups_path.read_text())
    ae = load_autoencoder(runs / "ae_full.pt").model.eval()
    return groups, ae


def _conditions(groups: dict[str, list[int]], ae: ModularAutoencoder) -> dict:
    conds = {name: ModuleGroupCondition(ae, mods) for name, mods in groups.items()}
    conds["canny"] = canny_condition
    return conds


def _plot_control_loss(history: list[dict[str, float]], path: Path, title: str) -> Path:
    """Smoothed loss of a control branch and of the frozen base model on the same batches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equirelax.scg.plots import save_figure

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, [h["smoothed"] for h in history], label="control branch")
    ax.plot(steps, [h["smoothed_base_loss"] for h in history], "k--",
            label="frozen base, no condition")
    ax.set_xlabel("step", fontsize=10)
    ax.set_ylabel("loss (smoothed)", fontsize=10)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def _tail_mean(history: list[dict[str, float]], key: str, n: int = 8) -> float:
    return float(np.mean([h[key] for h in history[-n:]]))


def cmd_train_completion(args: argparse.Namespace) -> int:
    """Pre-train the diffusion model, then one control branch per condition; write the
    self-contained generator file and a table of final losses (branch vs frozen base)."""
    from equirelax.scg.plots import plot_loss_history

    preset = PRESETS[_preset_name(args)]
    out, runs = _dirs(args)
    groups, ae = _groups_and_autoencoder(out, runs)
    conds = _conditions(groups, ae)
    if args.fresh:
        _remove([runs / "diffusion_base.pt", runs / GENERATOR_FILE,
                 *(runs / f"control_{name}.pt" for name in conds)])
    dc = DiffusionConfig(base=preset.diff_base)
    base_cfg = CompletionTrainConfig(steps=preset.diff_steps, batch=preset.diff_batch,
                                     lr=preset.diff_lr, seed=args.seed)
    mark("the base diffusion model")
    t0 = time.perf_counter()
    base, hist = train_base_diffusion(dc, base_cfg, checkpoint=runs / "diffusion_base.pt",
                                      progress=args.progress)
    rows = [{"model": "base (unconditional)", "steps": preset.diff_steps,
             "wall_s_this_run": time.perf_counter() - t0, "loss": _tail_mean(hist, "loss"),
             "base_loss": "—"}]
    plot_loss_history(hist, out / "diffusion_base_loss.png", title="base diffusion model")
    ctl_cfg = replace(base_cfg, steps=preset.control_steps, lr=preset.control_lr)
    controls = {}
    for name, cond in conds.items():
        mark(f"control branch {name}")
        t0 = time.perf_counter()
        controls[name], h = train_control(base, cond, ctl_cfg,
                                          checkpoint=runs / f"control_{name}.pt", name=name,
                                          progress=args.progress)
        rows.append({"model": f"control {name}", "steps": preset.control_steps,
                     "wall_s_this_run": time.perf_counter() - t0,
                     "loss": _tail_mean(h, "loss"), "base_loss": _tail_mean(h, "base_loss")})
        _plot_control_loss(h, out / f"control_{name}_loss.png", f"control branch ({name})")
    path = save_generator(runs / GENERATOR_FILE, base, controls, ae, groups)
    text = (f"# Pattern-completion training ({_preset_name(args)} preset)\n\n{_smoke(args)}"
            f"Command: `{args.recorded_command}`. Diffusion model: {dc.schedule} schedule, "
            f"{dc.steps} steps, {dc.prediction}-prediction, width {dc.base}, batch "
            f"{preset.diff_batch}. `loss`: the training loss ({dc.prediction}-MSE) averaged "
            "over the last 8 logged batches (one every 25 steps); `base_loss`: the frozen "
            "base model, without the condition, on the same noised batches.\n\n"
            + _markdown_table(rows, ["model", "steps", "wall_s_this_run", "loss", "base_loss"],
                              "{:.4g}")
            + f"\n\nGenerator file (configs + weights, for `equirelax scg generate`): "
              f"`{path}`\n")
    (out / "completion_training.md").write_text(text)
    print(text)
    return 0


def _scores(images: torch.Tensor, source: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image grey/colour PSNR and SSIM of ``images`` against ``source``."""
    return {"psnr_grey": psnr(images, source, grey=True), "ssim_grey": ssim(images, source, True),
            "psnr_colour": psnr(images, source), "ssim_colour": ssim(images, source)}


def _mean_scores(runs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-image scores averaged over noise seeds."""
    return {k: np.mean([r[k] for r in runs], axis=0) for k in runs[0]}


GREY, NONE = "grey image", "none (frozen base)"
METRICS = ("psnr_grey", "ssim_grey", "psnr_colour", "ssim_colour")


def _difference_table(scores: dict[str, dict[str, np.ndarray]], names: list[str],
                      groups: dict[str, list[int]], metric: str, seed: int
                      ) -> tuple[str, list[dict]]:
    """Markdown table (and records) of each condition's mean paired difference to each baseline
    with its bootstrap 95 % interval over images."""
    baselines = [(GREY, lambda n: GREY), (NONE, lambda n: NONE),
                 ("decode-only (same group)", lambda n: f"decode-only {n}" if n in groups
                  else None),
                 ("canny", lambda n: "canny" if n != "canny" else None)]
    rows, records = [], []
    for name in names:
        cells = []
        for _label, pick in baselines:
            other = pick(name)
            if other is None:
                cells.append("—")
                continue
            mean, lo, hi = paired_bootstrap(scores[name][metric], scores[other][metric],
                                            seed=seed)
            cells.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            records.append({"condition": name, "baseline": other, "metric": metric,
                            "mean_diff": mean, "ci_low": lo, "ci_high": hi})
        rows.append([name, *cells])
    columns = ["condition", *(f"- {b}" for b, _ in baselines)]
    return "\n".join(tables.markdown_table(rows, columns)), records


def _plot_generation_grid(source: torch.Tensor, samples: dict, names: list[str],
                          none_img: torch.Tensor, path: Path, n_img: int = 3) -> Path:
    """Clean inputs: one row per condition (plus the source and the unconditional base),
    for each of ``n_img`` images its condition and its generation side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equirelax.scg.plots import save_figure

    rows = ["source", NONE, *names]
    fig, axes = plt.subplots(len(rows), 2 * n_img, squeeze=False,
                             figsize=(2 * n_img * 1.35 + 0.9, len(rows) * 1.35 + 0.5))
    for r, row in enumerate(rows):
        for i in range(n_img):
            if row == "source":
                panels = [None, source[i]]
            elif row == NONE:
                panels = [None, none_img[i]]
            else:
                hint, img = samples[("noise_0", row)]
                panels = [_display(hint[i]), img[i]]
            for j, p in enumerate(panels):
                ax = axes[r, 2 * i + j]
                ax.set_xticks([])
                ax.set_yticks([])
                if p is None:  # keep the axes (for the row label), hide the frame
                    for spine in ax.spines.values():
                        spine.set_visible(False)
                else:
                    ax.imshow(p.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
                if r == 0:
                    ax.set_title(f"image {i + 1}: " + ("condition" if j == 0 else "source"),
                                 fontsize=9)
                elif r == 1 and j == 1:
                    ax.set_title("generation", fontsize=9)
                if i == 0 and j == 0:
                    ax.set_ylabel(row if len(row) <= 12 else row.split(" ")[0], fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def _display(hint: torch.Tensor) -> torch.Tensor:
    """A condition scaled to [0, 1] for display."""
    return (hint - hint.min()) / (hint.max() - hint.min()).clamp_min(1e-12)


def _plot_zero_shot_grid(source: torch.Tensor, settings: dict[str, torch.Tensor], samples: dict,
                         names: list[str], show: list[str], path: Path, n_img: int = 2) -> Path:
    """Corrupted and zero-shot inputs: per setting and image, the source, the input given to
    the condition extractors, and each branch's generation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equirelax.scg.plots import save_figure

    cols = ["source", "input", *names]
    n_rows = len(show) * n_img
    fig, axes = plt.subplots(n_rows, len(cols), squeeze=False,
                             figsize=(len(cols) * 1.35 + 0.9, n_rows * 1.35 + 0.5))
    for si, setting in enumerate(show):
        for i in range(n_img):
            r = si * n_img + i
            panels = [source[i], settings[setting][i]] + [samples[(setting, n)][1][i]
                                                          for n in names]
            for c, p in enumerate(panels):
                ax = axes[r, c]
                ax.imshow(p.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(cols[c], fontsize=9)
                if c == 0:
                    ax.set_ylabel(setting, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Similarity of generations to sources, with baselines and paired bootstrap intervals:
    clean inputs, inputs under noise, and zero-shot inputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equirelax.scg.plots import save_figure

    preset = PRESETS[_preset_name(args)]
    out, runs = _dirs(args)
    groups, ae = _groups_and_autoencoder(out, runs)
    conds = _conditions(groups, ae)
    base = load_base_diffusion(runs / "diffusion_base.pt")
    models = {name: load_control(base, runs / f"control_{name}.pt") for name in conds}
    names = list(models)
    source = _held_out(preset.eval_images, 32, seed=args.seed + 77)
    n_seeds = args.eval_seeds or preset.eval_seeds
    noises = [torch.randn(source.shape, generator=torch.Generator().manual_seed(args.seed + 5 + k))
              for k in range(n_seeds)]
    settings: dict[str, torch.Tensor] = {}
    for s in preset.noise_levels:
        settings[f"noise_{s:g}"] = add_gaussian_noise(
            source, s, torch.Generator().manual_seed(args.seed + 9)) if s > 0 else source
    settings["line_drawing"] = line_drawing(source)
    settings["low_res_x4"] = blur_downsample(source, 4)
    settings["haze"] = haze(source, 0.5, 0.9)
    grey_scores = _scores(torch.full_like(source, 0.5), source)
    free_runs = [generate_unconditional(base, n, preset.sample_steps) for n in noises]
    none_scores = _mean_scores([_scores(img, source) for img in free_runs])
    all_scores: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    samples: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    for setting, inputs in settings.items():
        mark(f"evaluate {setting}")
        sc = {GREY: grey_scores, NONE: none_scores}
        for name in names:
            hint = conds[name](inputs)
            gens = [generate(models[name], hint, n, preset.sample_steps) for n in noises]
            sc[name] = _mean_scores([_scores(g, source) for g in gens])
            samples[(setting, name)] = (hint, gens[0])
            if name in groups:
                decoded = ae.decode_modules(inputs, groups[name]).clamp(0, 1)
                sc[f"decode-only {name}"] = _scores(decoded, source)
        all_scores[setting] = sc
    rows, diffs = [], []
    parts = [
        f"# Pattern completion: generations vs held-out sources ({_preset_name(args)} "
        f"preset)\n\n{_smoke(args)}Command: `{args.recorded_command}` (after `train-completion`). "
        f"{preset.eval_images} held-out 32x32 crops (photos never used in training and "
        f"held-out dead leaves); DDIM with {preset.sample_steps} steps, eta 0, from "
        f"{n_seeds} noise seeds shared by every condition; each image's score is the mean "
        "over seeds. Each condition is extracted from the (possibly corrupted) input; the "
        "output is compared with the clean source.\n\nRows: a generation steered by a "
        "branch (`<condition>`); baselines `grey image` (constant 0.5), "
        f"`{NONE}` (the unconditional base model from the same noise), `decode-only "
        "<group>` (the module group decoded by the stage-1 decoder, no generator: what the "
        "condition itself already says about the image) and `canny` (the branch trained on "
        "Canny edges).\n\nDifference tables: mean paired difference (condition - baseline) "
        "over images with its bootstrap 95 % interval (2,000 resamples of the images); an "
        "interval that excludes 0 is a difference this sample resolves.\n"]
    for setting, sc in all_scores.items():
        order = [GREY, NONE] + [k for n in names for k in (n, f"decode-only {n}") if k in sc]
        sub = [{"setting": setting, "method": k, **{m: float(np.mean(sc[k][m]))
                                                   for m in METRICS}} for k in order]
        rows += sub
        parts.append(f"\n## {setting}\n\n" + _markdown_table(
            sub, ["method", *METRICS]) + "\n")
        for metric in ("psnr_grey", "ssim_grey"):
            table, rec = _difference_table(sc, names, groups, metric, args.seed)
            diffs += [{"setting": setting, **r} for r in rec]
            parts.append(f"\nDifference in {metric}:\n\n{table}\n")
    (out / "generation_table.json").write_text(
        json.dumps({"means": rows, "differences": diffs, "n_images": preset.eval_images,
                    "n_seeds": n_seeds}, indent=1) + "\n")
    # robustness curve
    levels = list(preset.noise_levels)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name in names:
        for ax, m in zip(axes, ("psnr_grey", "ssim_grey"), strict=True):
            ax.plot(levels, [float(np.mean(all_scores[f"noise_{s:g}"][name][m]))
                             for s in levels], "k--" if name == "canny" else "-", marker="o",
                    label=name)
    for ax, m in zip(axes, ("psnr_grey", "ssim_grey"), strict=True):
        ax.axhline(float(np.mean(grey_scores[m])), color="tab:grey", ls="-.", label=GREY)
        ax.axhline(float(np.mean(none_scores[m])), color="tab:grey", ls=":", label=NONE)
        ax.set_xlabel("input noise std", fontsize=10)
        ax.set_ylabel(m.replace("_", " "), fontsize=10)
    axes[1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, out / "robustness.png", dpi=80)
    _plot_generation_grid(source, samples, names, free_runs[0], out / "generation_grid.png")
    show = [s for s in ("line_drawing", "low_res_x4", "haze", f"noise_{levels[-1]:g}")
            if s in settings]
    _plot_zero_shot_grid(source, settings, samples, names, show,
                         out / "generation_grid_zero_shot.png")
    parts.append("\nFigures: `robustness.png` (grey PSNR/SSIM vs input noise), "
                 "`generation_grid.png` (clean inputs: condition and generation per branch, "
                 "first noise seed), `generation_grid_zero_shot.png` (source, corrupted or "
                 "zero-shot input, generation per branch).\n")
    text = "".join(parts)
    (out / "generation_table.md").write_text(text)
    print(text)
    return 0


def _load_image(path: Path, size: int = 32) -> torch.Tensor:
    """An image file as a ``(1, 3, size, size)`` tensor in [0, 1]: centre-cropped to a square,
    then resized (area-averaging Lanczos)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise SystemExit(f"--image {path}: no such file")
    try:
        img = Image.open(path).convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise SystemExit(f"--image {path}: not an image PIL can read ({err})") from err
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size),
                                                                Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


def cmd_generate(args: argparse.Namespace) -> int:
    """Complete one image file from one condition; write source | condition | generation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equirelax.scg.plots import save_figure

    if not args.image:
        raise SystemExit("generate needs --image PATH")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")
    output = Path(args.output) if args.output else \
        Path(args.image).with_name(Path(args.image).stem + f"_scg_{args.condition}.png")
    require_writable({"--output": output.parent})
    ckpt = Path(args.checkpoint) if args.checkpoint else args.runs_dir / GENERATOR_FILE
    try:
        model = load_generator(ckpt, device=args.device)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from err
    if args.condition not in model.controls:
        raise SystemExit(f"--condition {args.condition!r}: {ckpt} has branches "
                         f"{sorted(model.controls)}")
    image = _load_image(Path(args.image))
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(args.seed))
    steps = args.sample_steps or PRESETS[_preset_name(args)].sample_steps
    steps = min(steps, model.base.config.steps)
    hint, gen = model.complete(image, args.condition, noise, steps)
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9))
    for ax, title, p in zip(axes, ("source (32x32)", f"condition: {args.condition}",
                                   "generation"), (image[0], _display(hint[0]), gen[0]),
                            strict=True):
        ax.imshow(p.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, output, dpi=100)
    scores = similarity(gen, image)
    print(f"wrote {output}  (grey PSNR {scores['psnr_grey']:.2f} dB, grey SSIM "
          f"{scores['ssim_grey']:.3f} against the resized source)")
    return 0


# --------------------------------------------------------------------------- CLI

COMMANDS = {
    "train-autoencoder": cmd_train_autoencoder,
    "probe": cmd_probe,
    "train-completion": cmd_train_completion,
    "evaluate": cmd_evaluate,
    "generate": cmd_generate,
}
HELP = {
    "train-autoencoder": "stage 1: train the modular autoencoder and its ablations",
    "probe": "probe the trained variants and a PCA baseline; module groups for stage 2",
    "train-completion": "stage 2: the diffusion model and one control branch per condition",
    "evaluate": "similarity of generations to held-out sources, with baselines",
    "generate": "complete one image file from one condition with the generator file",
}
#: Subcommands that use one seed (stage 2): ``--seeds`` names exactly one value there.
ONE_SEED = ("train-completion", "evaluate", "generate")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the SCG subcommands and their options to ``parser``: every subcommand takes the
    study kit's options (``--seeds``, ``--out``, ``--runs-dir``, ``--fresh`` where it trains,
    ``--no-progress``, ``--threads``, ``--preset``/``--quick``) and its own."""
    sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    for name in COMMANDS:
        p = sub.add_parser(name, help=HELP[name], description=HELP[name],
                           formatter_class=DefaultsHelpFormatter)
        add_preset_options(p, PRESETS, DEFAULT_PRESET)
        if name == "generate":  # reads one file, writes one PNG (--output)
            p.add_argument("--seeds", nargs="+", type=seed_values, action=SeedsAction,
                           metavar="SEED", default=(0,), help="the seed of the noise")
            p.add_argument("--threads", type=non_negative_int, default=1,
                           help="torch CPU threads (0: torch's own choice)")
            p.set_defaults(out=None)
        else:
            add_common_options(p, "scg", training=name.startswith("train-"), lightning=False,
                               threads_default=1)
        if not name.startswith("train-"):  # reads the checkpoints that training wrote
            p.add_argument("--runs-dir", dest="runs_dir", type=Path, default=None,
                           help="the checkpoints to read (default: runs/scg/<preset>)")
        if name == "train-autoencoder":
            preset_default(p.add_argument("--steps", type=positive_int, default=None,
                                          help="autoencoder steps"))
        if name in ("train-autoencoder", "probe"):
            p.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                           default=list(DEFAULT_VARIANTS), metavar="VARIANT",
                           help=f"autoencoder variants to train / probe, from {list(VARIANTS)} "
                                "(probe also picks up a trained rot8)")
        if name == "evaluate":
            preset_default(p.add_argument("--eval-seeds", type=positive_int, default=None,
                                          help="noise seeds per image"))
        if name == "generate":
            p.add_argument("--image", default="", help="image file to complete")
            p.add_argument("--condition", default="brightness",
                           help="which branch steers the generation: a module group from "
                                "groups.json or canny")
            p.add_argument("--checkpoint", default="",
                           help=f"generator file (default: <runs-dir>/{GENERATOR_FILE})")
            p.add_argument("--output", default="",
                           help="PNG to write (default: next to the image)")
            p.add_argument("--device", default="cpu",
                           help="torch device for the diffusion model: cpu or cuda")
            preset_default(p.add_argument("--sample-steps", type=positive_int, default=None,
                                          help="DDIM steps"))
    parser.epilog = ("Stage 1 writes ae_<variant>.pt checkpoints, probe reads them; stage 2 "
                     "reads the module groups probe wrote (groups.json) from --out.")


def main(args: argparse.Namespace) -> int:
    """Run one SCG subcommand (its folders checked writable first); a ``--quick`` run says,
    on the terminal and in its tables, that it is a smoke test."""
    args.recorded_command = record_command(args)  # before main fills in defaults
    name = _preset_name(args)
    args.out = args.out or Path("docs/results/scg") / name
    args.runs_dir = args.runs_dir or Path("runs/scg") / name
    if args.subcommand in ONE_SEED and len(args.seeds) != 1:
        raise UsageError(f"--seeds: {args.subcommand} uses one seed, got "
                         f"{' '.join(map(str, args.seeds))}")
    args.seed = args.seeds[0]
    if args.subcommand != "generate":  # generate reads a file and writes one PNG
        require_writable({"--out": args.out, "--runs-dir": args.runs_dir})
    if name == "quick":
        print(SMOKE_TEST_NOTE, flush=True)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    # denormals make CPU convolutions crawl late in training; restore the default afterwards
    torch.set_flush_denormal(True)
    np.random.seed(args.seed)
    try:
        return COMMANDS[args.subcommand](args)
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="equirelax scg", description=__doc__,
                                formatter_class=DefaultsHelpFormatter)
    configure(p)
    parsed = p.parse_args()
    parsed.argv = ["scg", *sys.argv[1:]]  # the command recorded with the results
    sys.exit(main(parsed))
