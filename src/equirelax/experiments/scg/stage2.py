"""Stage 2, ``equirelax scg train-completion``: pre-train the small diffusion model, then one
control branch per module group (read from the ``groups.json`` that ``probe`` wrote) and one on
Canny edges; write the self-contained generator file and a table of final losses. Also the
conditions stage 2 and ``evaluate`` share: the module groups with the stage-1 autoencoder."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from equirelax.experiments.kit.guards import mark
from equirelax.experiments.scg.config import (
    GENERATOR_FILE,
    PRESETS,
    dirs,
    preset_name,
    remove,
    smoke,
)
from equirelax.experiments.scg.plots import plot_control_loss
from equirelax.experiments.scg.tables import markdown_table
from equirelax.scg.autoencoder import ModularAutoencoder
from equirelax.scg.completion import (
    CompletionTrainConfig,
    save_generator,
    train_base_diffusion,
    train_control,
)
from equirelax.scg.conditions import ModuleGroupCondition, canny_condition
from equirelax.scg.diffusion import DiffusionConfig
from equirelax.scg.training import load_autoencoder


def groups_and_autoencoder(out: Path, runs: Path) -> tuple[dict[str, list[int]],
                                                            ModularAutoencoder]:
    """The module groups ``probe`` wrote and the full stage-1 autoencoder."""
    groups_path = out / "groups.json"
    if not groups_path.exists():
        raise SystemExit(f"{groups_path} missing: run `equirelax scg probe` first")
    groups = json.loads(groups_path.read_text())
    ae = load_autoencoder(runs / "ae_full.pt").model.eval()
    return groups, ae


def conditions(groups: dict[str, list[int]], ae: ModularAutoencoder) -> dict:
    """The condition extractors, by branch name: one per module group, and ``canny``."""
    conds = {name: ModuleGroupCondition(ae, mods) for name, mods in groups.items()}
    conds["canny"] = canny_condition
    return conds


def _tail_mean(history: list[dict[str, float]], key: str, n: int = 8) -> float:
    return float(np.mean([h[key] for h in history[-n:]]))


def cmd_train_completion(args: argparse.Namespace) -> int:
    """Pre-train the diffusion model, then one control branch per condition; write the
    self-contained generator file and a table of final losses (branch vs frozen base)."""
    from equirelax.scg.plots import plot_loss_history

    preset = PRESETS[preset_name(args)]
    out, runs = dirs(args)
    groups, ae = groups_and_autoencoder(out, runs)
    conds = conditions(groups, ae)
    if args.fresh:
        remove([runs / "diffusion_base.pt", runs / GENERATOR_FILE,
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
        plot_control_loss(h, out / f"control_{name}_loss.png", f"control branch ({name})")
    path = save_generator(runs / GENERATOR_FILE, base, controls, ae, groups)
    text = (f"# Pattern-completion training ({preset_name(args)} preset)\n\n{smoke(args)}"
            f"Command: `{args.recorded_command}`. Diffusion model: {dc.schedule} schedule, "
            f"{dc.steps} steps, {dc.prediction}-prediction, width {dc.base}, batch "
            f"{preset.diff_batch}. `loss`: the training loss ({dc.prediction}-MSE) averaged "
            "over the last 8 logged batches (one every 25 steps); `base_loss`: the frozen "
            "base model, without the condition, on the same noised batches.\n\n"
            + markdown_table(rows, ["model", "steps", "wall_s_this_run", "loss", "base_loss"],
                             "{:.4g}")
            + f"\n\nGenerator file (configs + weights, for `equirelax scg generate`): "
              f"`{path}`\n")
    (out / "completion_training.md").write_text(text)
    print(text)
    return 0
