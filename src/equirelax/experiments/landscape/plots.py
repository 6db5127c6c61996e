"""The plots of a landscape study: training curves of the exact then relaxed students, the
training MSE of each arm per seed, and the Hessian spectra at the exact students' end points."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from equirelax.experiments.landscape.config import cfg_tag
from equirelax.experiments.landscape.summary import thresholds


def plot(result: dict, out_dir: Path) -> list[Path]:
    """Training curves, MSE per arm, and Hessian spectra at the stuck points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, runs = result["config"], result["runs"]
    stem = out_dir / cfg_tag(result)
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        ok = r["relaxed_mse"] <= thresholds(result)[0]
        e = np.array(r["curve_exact"])
        rl = np.array(r["curve_relaxed"])
        xe = np.linspace(0, cfg["exact_steps"], len(e))
        xr = cfg["exact_steps"] + np.linspace(0, cfg["relax_steps"], len(rl))
        color = "tab:green" if ok else "tab:red"
        ax.semilogy(xe, e, color="tab:blue", alpha=0.5, lw=1)
        ax.semilogy(xr, rl, color=color, alpha=0.6, lw=1)
    ax.axvline(cfg["exact_steps"], color="k", lw=0.8, ls=":")
    ax.axhline(result["target_variance"], color="gray", lw=0.8, ls="--")
    ax.plot([], [], color="tab:blue", label="exact (E_ρS)")
    ax.plot([], [], color="tab:green", label=f"relaxed, reaches <= {thresholds(result)[0]:.3g}")
    ax.plot([], [], color="tab:red", label="relaxed, does not")
    ax.plot([], [], color="gray", ls="--", label="target variance")
    ax.set_xlabel("Adam step (exact, then relaxed)")
    ax.set_ylabel("train MSE")
    ax.set_title(f"{cfg['group']}: {cfg['teacher_rep']} teacher, {cfg['student_rep']} student")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(stem.with_name(stem.name + "_curves.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    arms = [
        ("exact", "polished_mse"),
        ("relaxed", "relaxed_mse"),
        ("→ original E_ρ", "proj_original_mse"),
        ("→ detected E_ρ'", "proj_detected_mse"),
    ]
    fig, ax = plt.subplots(figsize=(7, 4))
    rng = np.random.default_rng(0)
    for i, (_, key) in enumerate(arms):
        vals = np.array([r[key] for r in runs], dtype=float)
        vals = vals[~np.isnan(vals)]
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), np.maximum(vals, 1e-16), s=18)
    ax.axhline(result["target_variance"], color="gray", lw=0.8, ls="--", label="target variance")
    ax.set_yscale("log")
    ax.set_xticks(range(len(arms)), [a for a, _ in arms])
    ax.set_ylabel("train MSE (one point per seed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(stem.with_name(stem.name + "_mse.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(runs):
        for b in r["hessian"]["blocks"]:
            tangent = b["label"] == "trivial"
            ev = np.array(b["eigenvalues"])
            ax.scatter(
                np.full(len(ev), i) + (-0.15 if tangent else 0.15),
                ev,
                s=10,
                color="tab:blue" if tangent else "tab:orange",
            )
    ax.scatter([], [], color="tab:blue", label="tangent to E_ρ")
    ax.scatter([], [], color="tab:orange", label="non-equivariant blocks")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xticks(range(len(runs)), [str(r["seed"]) for r in runs])
    ax.set_xlabel("seed")
    ax.set_ylabel("Hessian eigenvalue at the exact end point")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(stem.with_name(stem.name + "_spectra.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
