"""Orientation selectivity of the SCG ablations over training budgets, paired by seed.

Reads the ``probe_seeds.json`` files that ``equirelax scg probe`` wrote for the same models at
several stage-1 budgets (3,000 steps: the full preset; 6,000 and 12,000 steps: the orientation
runs of ``no_equ`` and ``rot8``; 24,000 steps: ``rot8`` seeds 10-13) and writes one table: for
each budget, the mean orientation selectivity per unit (``mean_osi``) and the energy-weighted
one (``osi_w``) of ``rot8``, ``no_equ`` and PCA, each averaged over the seeds it was probed
for, and the per-seed differences of ``rot8`` to each baseline with a Student-t 95 % interval
of their mean (seeds pair the data streams and PCA's patches). Each difference uses the seeds
both of its models have (a budget may have more seeds of ``rot8`` than of ``no_equ``). It also
draws each seed's difference to each baseline over the budgets (``osi_by_budget.png`` beside
the table). A budget may be probed in several files (seeds added later, probed on their own);
they are merged by seed. A budget may lack a baseline (the 24,000-step runs have ``rot8`` and
PCA only): its differences to that baseline are left blank. Last, it decides the comparisons
written down in ``docs/scg.md`` before their runs (:data:`PLANS`): each difference on its
planned seeds, with a 95 % interval and, for a comparison looked at more than once, a
Bonferroni interval over the looks. Run from the repository root::

    python scripts/scg_orientation_budgets.py

(writes ``docs/results/scg/orientation_12k/osi_by_budget.md`` and ``.png``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from equirelax.experiments.kit.tables import mean_interval

BUDGETS: dict[int, tuple[Path, ...]] = {
    3000: (Path("docs/results/scg/full/probe_seeds.json"),),
    6000: (Path("docs/results/scg/orientation_6k/probe_seeds.json"),
           Path("docs/results/scg/orientation_6k/rot8_seeds_10-13/probe_seeds.json")),
    12000: (Path("docs/results/scg/orientation_12k/probe_seeds.json"),
            Path("docs/results/scg/orientation_12k/rot8_seeds_10-13/probe_seeds.json")),
    24000: (Path("docs/results/scg/orientation_24k/rot8_seeds_10-13/probe_seeds.json"),
            Path("docs/results/scg/orientation_24k/no_equ_seeds_10-13/probe_seeds.json")),
}
#: The comparisons decided as written down before their runs (docs/scg.md), each rot8 minus a
#: baseline on one score at one budget. The third look: mean selectivity per unit against PCA
#: at 12,000 steps on seeds 0-13, looked at on seeds 0-5 and 0-9 before (``looks``, the last
#: one decides), so shown only if the Bonferroni interval over the three looks excludes 0. The
#: longer budget: the same comparison at 24,000 steps, one look, on seeds 10-13 (the runs of
#: the third look extended), and rot8 - no_equ there on the same seeds, planned before no_equ's
#: runs.
PLANS = (
    {"score": "mean_osi", "baseline": "pca", "steps": 12000,
     "looks": (tuple(range(6)), tuple(range(10)), tuple(range(14))), "level": 0.95},
    {"score": "mean_osi", "baseline": "pca", "steps": 24000,
     "looks": (tuple(range(10, 14)),), "level": 0.95},
    {"score": "mean_osi", "baseline": "no_equ", "steps": 24000,
     "looks": (tuple(range(10, 14)),), "level": 0.95},
)
MODELS = ("rot8", "no_equ", "pca")
SCORES = ("mean_osi", "osi_w")


#: score -> model -> seed -> value, of one budget
Scores = dict[str, dict[str, dict[int, float]]]
#: the baselines rot8 is compared with: model key -> label
BASELINES = {"no_equ": "no_equ", "pca": "PCA"}


def per_seed(paths: Sequence[Path]) -> Scores:
    """Each score of each model by seed, from the ``probe_seeds.json`` files of one budget
    (every seed a model was probed for; the differences pair them). A model and seed probed in
    two files must agree there."""
    found: Scores = {score: {m: {} for m in MODELS} for score in SCORES}
    for path in paths:
        for e in (e for e in json.loads(path.read_text()) if e["model"] in MODELS):
            seed = int(e["seed"])
            for score in SCORES:
                known = found[score][e["model"]].get(seed)
                if known is not None and not np.isclose(known, float(e[score]), atol=1e-6):
                    raise ValueError(f"{path}: {e['model']} seed {seed} {score} is {e[score]}, "
                                     f"another file has {known}")
                found[score][e["model"]][seed] = float(e[score])
    for models in found.values():
        for m in MODELS:
            models[m] = dict(sorted(models[m].items()))
    return found


def planned_decision(values: dict[int, Scores], plan: dict) -> list[str]:
    """The table lines deciding one comparison written down before its runs (``plan``, one of
    :data:`PLANS`): the difference at each look (its seeds), with its uncorrected interval and
    its Bonferroni interval over the looks (the same interval when there is one look); the last
    look decides, and is undecided while one of its seeds is missing."""
    score, base, steps, looks = plan["score"], plan["baseline"], plan["steps"], plan["looks"]
    label = BASELINES[base]
    corrected = 1 - (1 - plan["level"]) / len(looks)
    rule = (f"look {len(looks)} at this comparison, so shown only if the Bonferroni interval "
            f"({100 * corrected:.1f} %, {100 * plan['level']:.0f} % over {len(looks)} looks) "
            "excludes 0. The earlier looks are listed for the record (they decide nothing)."
            if len(looks) > 1 else
            f"the one look at this comparison, so shown only if the "
            f"{100 * plan['level']:.0f} % interval excludes 0 (the corrected column repeats "
            "it).")
    head = [f"## Planned decision: {score}, rot8 - {label}, {steps:,} steps", "",
            f"Written down in `docs/scg.md` before the last look's runs: decided on "
            f"seeds {seed_list(list(looks[-1]))}, {rule}", "",
            f"| look | seeds | n | positive | mean | {100 * plan['level']:.0f} % CI | "
            f"{100 * corrected:.1f} % CI (Bonferroni) | decision |",
            "|---|---|---|---|---|---|---|---|"]
    models = values.get(steps, {}).get(score, {})
    rows = []
    for number, seeds in enumerate(looks, start=1):
        last = number == len(looks)
        missing = {m: [s for s in seeds if s not in models.get(m, {})] for m in ("rot8", base)}
        if any(missing.values()):
            absent = "; ".join(f"{BASELINES.get(m, m)} {seed_list(s)}"
                               for m, s in missing.items() if s)
            rows.append(f"| {number} | {seed_list(list(seeds))} | | | | | | "
                        f"{'undecided: ' if last else ''}not yet probed: {absent} |")
            continue
        _, d, mean, lo, hi = paired({s: models["rot8"][s] for s in seeds},
                                    {s: models[base][s] for s in seeds})
        _, clo, chi = mean_interval(d, corrected)
        verdict = ("shown" if clo > 0 or chi < 0 else "not shown") if last else "(earlier look)"
        rows.append(f"| {number} | {seed_list(list(seeds))} | {len(d)} | "
                    f"{sum(x > 0 for x in d)} | {mean:+.4f} | [{lo:+.4f}, {hi:+.4f}] | "
                    f"[{clo:+.4f}, {chi:+.4f}] | {verdict} |")
    return [*head, *rows, ""]


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
            # the budgets that have this baseline
            have = [s for s in steps if s in comparisons[score, base]]
            means = [comparisons[score, base][s] for s in have]
            ax.errorbar(have, [m[2] for m in means],
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


def main(argv: list[str] | None = None,
         budgets: dict[int, Path | Sequence[Path]] | None = None,
         plans: Sequence[dict] | None = None) -> int:
    """Write the table (``budgets``: steps -> its ``probe_seeds.json`` files, default
    :data:`BUDGETS`; ``plans``: the planned decisions, default :data:`PLANS`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path("docs/results/scg/orientation_12k/osi_by_budget.md"))
    args = parser.parse_args(argv)
    budgets = {steps: (paths,) if isinstance(paths, Path) else tuple(paths)
               for steps, paths in (BUDGETS if budgets is None else budgets).items()}
    missing = [str(p) for paths in budgets.values() for p in paths if not p.exists()]
    if missing:
        parser.error(f"missing probe results {missing}: run equirelax scg probe first")
    lines = [
        "# Orientation selectivity over stage-1 budgets, paired by seed",
        "",
        "Written by `python scripts/scg_orientation_budgets.py` from the `probe_seeds.json` of "
        + ", ".join(f"{steps:,} steps (" + ", ".join(f"`{p}`" for p in paths) + ")"
                    for steps, paths in budgets.items())
        + ". Each model's mean over the seeds it was probed for (listed); each difference per "
        "seed on the seeds both models have (listed, in that order), their mean "
        "and a Student-t 95 % interval (with few seeds the interval is wide: a difference is "
        "shown only where it excludes 0; a blank cell: that baseline was not run at that "
        "budget). From 6,000 steps on, each budget's runs are the previous budget's runs "
        "extended (a warm restart of the one-cycle schedule each time). Figure: "
        "`osi_by_budget.png`, each seed's "
        "difference to each baseline over the budgets.",
        "",
    ]
    values = {steps: per_seed(paths) for steps, paths in budgets.items()}
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
                                     f"({seed_list(list(models[m]))})" if models[m] else ""
                                     for m in MODELS)]
            for base in BASELINES:
                comparisons.setdefault((score, base), {})
                if len(set(models["rot8"]) & set(models[base])) < 2:  # not run at this budget
                    cells += ["", "", ""]
                    continue
                seeds, d, mean, lo, hi = comparison = paired(models["rot8"], models[base])
                comparisons[score, base][steps] = comparison
                cells += [seed_list(seeds), ", ".join(f"{x:+.3f}" for x in d),
                          f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for plan in PLANS if plans is None else plans:
        lines += planned_decision(values, plan)
    args.out.write_text("\n".join(lines))
    plot(values, comparisons, args.out.with_suffix(".png"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
