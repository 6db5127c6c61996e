"""Orientation selectivity of the SCG ablations over training budgets, paired by seed.

Reads the ``probe_seeds.json`` files that ``equirelax scg probe`` wrote for the same models at
several stage-1 budgets (3,000 steps: the full preset; 6,000 and 12,000 steps: the orientation
runs of ``no_equ`` and ``rot8``) and writes one table: for each budget, the mean orientation
selectivity per unit (``mean_osi``) and the energy-weighted one (``osi_w``) of ``rot8``,
``no_equ`` and PCA, each averaged over the seeds it was probed for, and the per-seed
differences of ``rot8`` to each baseline with a Student-t 95 % interval of their mean (seeds
pair the data streams and PCA's patches). Each difference uses the seeds both of its models
have (a budget may have more seeds of ``rot8`` than of ``no_equ``). It also draws each seed's
difference to each baseline over the budgets (``osi_by_budget.png`` beside the table). Run from
the repository root::

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
#: the baselines rot8 is compared with: model key -> label
BASELINES = {"no_equ": "no_equ", "pca": "PCA"}


def per_seed(path: Path) -> Scores:
    """Each score of each model by seed, from one ``probe_seeds.json`` (every seed a model was
    probed for; the differences pair them)."""
    found: Scores = {score: {m: {} for m in MODELS} for score in SCORES}
    for e in sorted((e for e in json.loads(path.read_text()) if e["model"] in MODELS),
                    key=lambda e: int(e["seed"])):
        for score in SCORES:
            found[score][e["model"]][int(e["seed"])] = float(e[score])
    return found


def seed_list(seeds: list[int]) -> str:
    """Seeds as runs of consecutive numbers: ``0-5, 8``."""
    runs: list[list[int]] = []
    for s in sorted(seeds):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def plot(values: dict[int, Scores], comparisons: dict[tuple[str, str], dict[int, tuple]],
         out: Path) -> None:
    """Each seed's rot8 - baseline difference against the budget, with their mean and interval
    (``comparisons``: (score, baseline) -> steps -> :func:`paired`); one row of panels per
    baseline, one column per score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(BASELINES), len(SCORES),
                             figsize=(5.2 * len(SCORES), 3.6 * len(BASELINES)), squeeze=False)
    steps = sorted(values)
    for row, (base, label) in zip(axes, BASELINES.items()):
        for ax, score in zip(row, SCORES):
            rot8 = {s: values[s][score]["rot8"] for s in steps}
            for seed in sorted(set().union(*rot8.values())):
                xs = [s for s in steps if seed in rot8[s] and seed in values[s][score][base]]
                ys = [rot8[s][seed] - values[s][score][base][seed] for s in xs]
                ax.plot(xs, ys, marker="o", alpha=0.6, label=f"seed {seed}")
            means = [comparisons[score, base][s] for s in steps]
            ax.errorbar(steps, [m[2] for m in means],
                        yerr=[[m[2] - m[3] for m in means], [m[4] - m[2] for m in means]],
                        color="black", linewidth=2.5, capsize=5, label="mean, 95 % CI")
            ax.axhline(0.0, color="grey", linewidth=1)
            ax.set_xscale("log")
            ax.set_xticks(steps, [f"{s:,}" for s in steps])
            ax.minorticks_off()
            ax.set_xlabel("stage-1 steps")
            ax.set_ylabel(f"{score}: rot8 - {label}")
            ax.set_title(f"{score}, rot8 - {label}")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def paired(a: dict[int, float], b: dict[int, float]
           ) -> tuple[list[int], list[float], float, float, float]:
    """The seeds both have, the differences a - b on them, their mean and Student-t 95 %
    interval."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise ValueError(f"need at least two common seeds, got {seeds}")
    d = [a[s] - b[s] for s in seeds]
    return (seeds, d, *mean_interval(d))


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
        + ". Each model's mean over the seeds it was probed for (listed); each difference per "
        "seed on the seeds both models have (listed, in that order), their mean "
        "and a Student-t 95 % interval (with few seeds the interval is wide: a difference is "
        "shown only where it excludes 0). The 12,000-step runs are the 6,000-step runs extended "
        "(warm restart of the one-cycle schedule). Figure: `osi_by_budget.png`, each seed's "
        "difference to each baseline over the budgets.",
        "",
    ]
    values = {steps: per_seed(path) for steps, path in budgets.items()}
    comparisons: dict[tuple[str, str], dict[int, tuple]] = {}
    for score in SCORES:
        lines += [f"## {score}", "",
                  "| steps | rot8 (seeds) | no_equ (seeds) | PCA (seeds) | "
                  + " | ".join(f"rot8 - {label}: seeds | per seed | mean [95 % CI]"
                               for label in BASELINES.values()) + " |",
                  "|---|---|---|---|" + "---|---|---|" * len(BASELINES)]
        for steps in budgets:
            models = values[steps][score]
            cells = [f"{steps:,}", *(f"{np.mean(list(models[m].values())):.3f} "
                                     f"({seed_list(list(models[m]))})" for m in MODELS)]
            for base in BASELINES:
                seeds, d, mean, lo, hi = comparison = paired(models["rot8"], models[base])
                comparisons.setdefault((score, base), {})[steps] = comparison
                cells += [seed_list(seeds), ", ".join(f"{x:+.3f}" for x in d),
                          f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    args.out.write_text("\n".join(lines))
    plot(values, comparisons, args.out.with_suffix(".png"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
