"""Orientation selectivity of the SCG ablations over training budgets, paired by seed.

Reads the ``probe_seeds.json`` files that ``equirelax scg probe`` wrote for the same models at
several stage-1 budgets (3,000 steps: the full preset; 6,000 and 12,000 steps: the orientation
runs of ``no_equ`` and ``rot8``) and writes one table: for each budget, the mean orientation
selectivity per unit (``mean_osi``) and the energy-weighted one (``osi_w``) of ``rot8``,
``no_equ`` and PCA, averaged over seeds, and the per-seed differences of ``rot8`` to each
baseline with a Student-t 95 % interval of their mean (seeds pair the data streams and PCA's
patches). A budget's row uses the seeds its file has for all three models (the budgets may have
different seeds). It also draws each seed's ``rot8`` - ``no_equ`` difference over the budgets
(``osi_by_budget.png`` beside the table). Run from the repository root::

    python scripts/scg_orientation_budgets.py

(writes ``docs/results/scg/orientation_12k/osi_by_budget.md`` and ``.png``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from equirelax.experiments.kit.tables import mean_interval

BUDGETS = {
    3000: Path("docs/results/scg/full/probe_seeds.json"),
    6000: Path("docs/results/scg/orientation_6k/probe_seeds.json"),
    12000: Path("docs/results/scg/orientation_12k/probe_seeds.json"),
}
MODELS = ("rot8", "no_equ", "pca")
SCORES = ("mean_osi", "osi_w")


#: score -> model -> seed -> value, of one budget
Scores = dict[str, dict[str, dict[int, float]]]


def per_seed(path: Path) -> Scores:
    """Each score of each model by seed, from one ``probe_seeds.json``, on the seeds every
    model has there (a seed probed for some models only would make the means unpaired)."""
    entries = sorted((e for e in json.loads(path.read_text()) if e["model"] in MODELS),
                     key=lambda e: int(e["seed"]))
    common = set.intersection(*({int(e["seed"]) for e in entries if e["model"] == m}
                                for m in MODELS))
    found: Scores = {score: {m: {} for m in MODELS} for score in SCORES}
    for e in entries:
        if int(e["seed"]) in common:
            for score in SCORES:
                found[score][e["model"]][int(e["seed"])] = float(e[score])
    return found


def plot(values: dict[int, Scores], against_no_equ: dict[str, dict[int, tuple]],
         out: Path) -> None:
    """Each seed's rot8 - no_equ difference against the budget, with their mean and interval
    (``against_no_equ``: score -> steps -> :func:`paired`), one panel per score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SCORES), figsize=(5.2 * len(SCORES), 3.8), squeeze=False)
    steps = sorted(values)
    for ax, score in zip(axes[0], SCORES):
        rot8 = {s: values[s][score]["rot8"] for s in steps}
        for seed in sorted(set().union(*rot8.values())):
            xs = [s for s in steps if seed in rot8[s]]
            ys = [rot8[s][seed] - values[s][score]["no_equ"][seed] for s in xs]
            ax.plot(xs, ys, marker="o", alpha=0.7, label=f"seed {seed}")
        means = [against_no_equ[score][s] for s in steps]
        ax.errorbar(steps, [m[1] for m in means],
                    yerr=[[m[1] - m[2] for m in means], [m[3] - m[1] for m in means]],
                    color="black", linewidth=2.5, capsize=5, label="mean, 95 % CI")
        ax.axhline(0.0, color="grey", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks(steps, [f"{s:,}" for s in steps])
        ax.minorticks_off()
        ax.set_xlabel("stage-1 steps")
        ax.set_ylabel(f"{score}: rot8 - no_equ")
        ax.set_title(score)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[list[float], float, float, float]:
    """Differences a - b on the seeds both have, their mean and Student-t 95 % interval."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise ValueError(f"need at least two common seeds, got {seeds}")
    d = [a[s] - b[s] for s in seeds]
    return (d, *mean_interval(d))


def main(argv: list[str] | None = None, budgets: dict[int, Path] | None = None) -> int:
    """Write the table (``budgets``: steps -> ``probe_seeds.json``, default :data:`BUDGETS`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path("docs/results/scg/orientation_12k/osi_by_budget.md"))
    args = parser.parse_args(argv)
    budgets = BUDGETS if budgets is None else budgets
    missing = [str(p) for p in budgets.values() if not p.exists()]
    if missing:
        parser.error(f"missing probe results {missing}: run equirelax scg probe first")
    lines = [
        "# Orientation selectivity over stage-1 budgets, paired by seed",
        "",
        "Written by `python scripts/scg_orientation_budgets.py` from the `probe_seeds.json` of "
        + ", ".join(f"{steps:,} steps (`{path}`)" for steps, path in budgets.items())
        + ". Means over seeds; differences per seed (in seed order, the seeds listed), their mean "
        "and a Student-t 95 % interval (with few seeds the interval is wide: a difference is "
        "shown only where it excludes 0). The 12,000-step runs are the 6,000-step runs extended "
        "(warm restart of the one-cycle schedule). Figure: `osi_by_budget.png`, each seed's "
        "rot8 - no_equ difference over the budgets.",
        "",
    ]
    values = {steps: per_seed(path) for steps, path in budgets.items()}
    against_no_equ: dict[str, dict[int, tuple]] = {}
    for score in SCORES:
        lines += [f"## {score}", "",
                  "| steps | seeds | rot8 | no_equ | PCA | rot8 - no_equ per seed | "
                  "mean [95 % CI] | rot8 - PCA per seed | mean [95 % CI] |",
                  "|---|---|---|---|---|---|---|---|---|"]
        against_no_equ[score] = {}
        for steps in budgets:
            models = values[steps][score]
            means = [np.mean(list(models[m].values())) for m in MODELS]
            seeds = ", ".join(str(s) for s in models["rot8"])
            cells = [f"{steps:,}", seeds, *(f"{v:.3f}" for v in means)]
            for base in ("no_equ", "pca"):
                d, mean, lo, hi = comparison = paired(models["rot8"], models[base])
                if base == "no_equ":
                    against_no_equ[score][steps] = comparison
                cells += [", ".join(f"{x:+.3f}" for x in d), f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    args.out.write_text("\n".join(lines))
    plot(values, against_no_equ, args.out.with_suffix(".png"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
