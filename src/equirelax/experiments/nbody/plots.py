"""Plots of the N-body study: validation curves with θ, free-term sizes over training, paired
ratios of the ablations, and test MSE against a swept quantity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from equirelax.experiments.nbody.config import VARIANTS, StudyConfig


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLORS = {"exact": "tab:blue", "relaxed": "tab:orange", "no-schedule": "tab:green",
          "no-lie": "tab:red", "weak-penalty": "tab:brown", "no-penalty": "tab:purple"}


def plot_validation_curves(runs: list[dict[str, Any]], model: str, path: Path,
                           cfg: StudyConfig, title: str | None = None) -> None:
    """Validation MSE per epoch for every arm (each seed thin, the mean bold), and θ(epoch) of
    the paper's schedule; below, the paired difference arm / exact − 1 per seed (the arms are
    often too close to tell apart on the log scale)."""
    plt = _plt()
    fig, (ax, diff_ax) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.4]})
    for arm in VARIANTS:
        curves = [r["val_curve"] for r in runs if r["model"] == model and r["arm"] == arm]
        curves = [c for c in curves if c]
        for c in curves:
            ax.plot([e + 1 for e, _ in c], [v for _, v in c], color=COLORS[arm], alpha=0.3, lw=0.8)
        if curves:
            n = min(len(c) for c in curves)
            epochs = [e + 1 for e, _ in curves[0][:n]]
            mean = np.mean([[v for _, v in c[:n]] for c in curves], axis=0)
            label = "exact" if arm == "exact" else f"{arm}, evaluated at θ = 0"
            ax.plot(epochs, mean, color=COLORS[arm], lw=2, label=f"{label}, {len(curves)} seed(s)")
    ax.set_yscale("log")
    ax.set_ylabel("validation MSE")
    ax.set_title(title or f"{model.upper()} on charged N-body: {cfg.train_size} training samples")
    exact = {r["seed"]: dict(r["val_curve"]) for r in runs
             if r["model"] == model and r["arm"] == "exact"}
    for r in runs:
        if r["model"] != model or r["arm"] == "exact" or r["seed"] not in exact:
            continue
        pairs = [(e, v / exact[r["seed"]][e] - 1) for e, v in r["val_curve"]
                 if e in exact[r["seed"]]]
        diff_ax.plot([e + 1 for e, _ in pairs], [100 * d for _, d in pairs],
                     color=COLORS[r["arm"]], lw=1, alpha=0.8)
    diff_ax.axhline(0, color="black", lw=0.8)
    diff_ax.set_ylabel("arm / exact − 1 (%)")
    diff_ax.set_xlabel("epoch")
    if any(arm != "exact" for arm in cfg.variants):
        from equirelax.relaxation import make_schedule

        sched = make_schedule(cfg.schedule, cfg.epochs)
        twin = ax.twinx()
        twin.plot(range(1, cfg.epochs + 1), [sched(e) for e in range(cfg.epochs)],
                  color="gray", ls="--", lw=1)
        twin.set_ylabel(f"θ ({cfg.schedule}, dashed)", color="gray")
        twin.set_ylim(0, 1.05 * max(1.0, max(sched(e) for e in range(cfg.epochs))))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_free_terms(runs: list[dict[str, Any]], path: Path, title: str) -> bool:
    """‖W x‖ / ‖F_eq(x)‖ (solid) and θ·‖W x‖ / ‖F_eq(x)‖ (dotted) over training for every
    relaxed run; False (nothing drawn) when no run recorded the curve."""
    curves = [r for r in runs if r.get("free_term_curve")]
    if not curves:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    seen: set[str] = set()
    for r in curves:
        epochs = [e + 1 for e, _ in r["free_term_curve"]]
        size = [v for _, v in r["free_term_curve"]]
        theta = dict(r.get("theta_curve") or [])
        label = f"{r['model']} {r['arm']}"
        ax.plot(epochs, size, color=COLORS[r["arm"]], lw=1,
                label=label if label not in seen else None)
        seen.add(label)
        if theta:
            eff = [v * theta.get(e, np.nan) for e, v in r["free_term_curve"]]
            ax.plot(epochs, eff, color=COLORS[r["arm"]], lw=1, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("‖W x‖ / ‖F_eq(x)‖  (dotted: × θ)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_ablations(rows: list[dict[str, Any]], runs: list[dict[str, Any]], path: Path,
                   key: str | None) -> bool:
    """Paired ratio arm / exact per seed (dots), the geometric mean with its 95% interval
    (square and bar) and the geometric mean on the trimmed test MSE (open diamond) for every
    relaxed arm; one panel per model (and swept value). False when no relaxed
    arm has a paired exact run."""
    panels = sorted({(r["model"], r["value"]) for r in rows if "paired_ratios" in r},
                    key=lambda mv: (mv[0], mv[1] if mv[1] is not None else 0))
    if not panels:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, (model, value) in zip(axes[0], panels):
        arms = [r for r in rows if r["model"] == model and r["value"] == value
                and "paired_ratios" in r]
        for i, r in enumerate(arms):
            low, high = r["paired_ratio_ci95"]
            geo = r["paired_ratio_geomean"]
            if np.isfinite(low):
                ax.errorbar([i], [geo], yerr=[[geo - low], [high - geo]], fmt="s", capsize=4,
                            color=COLORS[r["arm"]])
            else:
                ax.plot([i], [geo], "s", color=COLORS[r["arm"]])
            ratios = list(r["paired_ratios"].values())
            ax.plot([i + 0.15] * len(ratios), ratios, "o", ms=4, alpha=0.6,
                    color=COLORS[r["arm"]])
            if "paired_trimmed_geomean" in r:
                ax.plot([i + 0.3], [r["paired_trimmed_geomean"]], "D", mfc="none", ms=6,
                        color=COLORS[r["arm"]])
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(arms)), [r["arm"] for r in arms], rotation=20)
        ax.set_ylabel("test MSE, arm / exact (same seed)")
        ax.set_title(model.upper() + (f", {value}" if value is not None else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_sweep(rows: list[dict[str, Any]], key: str, path: Path) -> None:
    """Test MSE against the swept value, exact vs relaxed, one panel per model."""
    plt = _plt()
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for arm in VARIANTS:
            pts = [r for r in rows if r["model"] == model and r["arm"] == arm]
            if not pts:
                continue
            xs = [r["value"] for r in pts]
            means = [r["test_mse_mean"] for r in pts]
            stds = [r["test_mse_std"] for r in pts]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, color=COLORS[arm], label=arm)
        ax.set_yscale("log")
        if key == "train_size":
            ax.set_xscale("log")
        ax.set_xlabel({"layers": "message-passing layers", "train_size": "training samples"}[key])
        ax.set_ylabel("test MSE")
        ax.set_title(model.upper())
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
