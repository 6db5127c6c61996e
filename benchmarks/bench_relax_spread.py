"""How far one run of ``bench_relax.py`` can be trusted: the MLP rows over independent runs.

``bench_relax.py`` measures each relaxed/exact ratio in one run, with the variants interleaved.
On a noisy machine one run's ratio moves by a few hundredths from run to run, which is the size
of the margins its rows are read against (a relaxed step at most 1.35x the exact one). This
runs the same measurement ``--runs`` times per OpenMP wait policy, each in a fresh process
(the two all-relaxed MLPs, every variant), and writes, for every row, the median ratio over the
runs, its smallest and largest value, and in how many runs it was at most ``--target``.
``--one-thread`` adds a third setting, torch on one thread: no OpenMP region opens, so the wait
policy plays no part, and the ratio holds the arithmetic and the per-operation overhead alone.
Writes benchmarks/results/relax_spread.json and relax_spread.md (or into ``--out``).

    python benchmarks/bench_relax_spread.py [--runs 5] [--policies default PASSIVE] [--one-thread]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import bench_relax  # the sibling script (its folder is on the path, as for any script)
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: The all-relaxed MLPs of bench_relax (its short names).
MLPS = ["S5", "SO3"]
#: The ratio each row is counted against by default: a relaxed step at most 1.35x the exact one.
TARGET = 1.35
#: The setting ``--one-thread`` adds: (its label, the wait policy it runs under, torch threads).
ONE_THREAD = ("1 thread", "default", 1)


def spread(ratios: list[float], target: float) -> dict:
    """Median, smallest and largest of one row's ratios over the runs, and how many are at most
    ``target``."""
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "runs": len(ratios), "at_most_target": sum(r <= target for r in ratios)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per policy (default: 5)")
    parser.add_argument("--policies", nargs="+", choices=bench_relax.POLICIES,
                        default=list(bench_relax.POLICIES),
                        help="OpenMP wait policies (default: both)")
    parser.add_argument("--models", nargs="+", choices=MLPS, default=MLPS,
                        help="MLPs to time (default: both)")
    parser.add_argument("--one-thread", action="store_true",
                        help="also measure with torch on one thread")
    parser.add_argument("--target", type=float, default=TARGET,
                        help=f"the ratio each row is counted against (default: {TARGET})")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for relax_spread.json and .md (default: benchmarks/results)")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error(f"--runs must be at least 2 to show a spread, got {args.runs}")
    args.out.mkdir(parents=True, exist_ok=True)
    policies = list(dict.fromkeys(args.policies))
    models = list(dict.fromkeys(args.models))
    # setting label -> (wait policy, torch threads or None for torch's default)
    settings = {p: (p, None) for p in policies}
    if args.one_thread:
        settings[ONE_THREAD[0]] = ONE_THREAD[1:]
    runs: dict[str, list[dict]] = {label: [] for label in settings}
    # the settings by turns, so that a slow spell of the machine falls on each
    order = [label for _ in range(args.runs) for label in settings]
    for label in tqdm(order, desc="bench_relax runs"):
        policy, threads = settings[label]
        runs[label].append(bench_relax._run_policy(policy, models, args.out, threads))
    labels = list(settings)
    rows: list[dict] = []
    first_run = runs[labels[0]][0]
    for i, result in enumerate(first_run["results"]):
        for name in result["train_ratio_vs_exact"]:
            if name.startswith("exact"):
                continue
            rows.append({"model": result["model"], "variant": name, **{
                label: spread([r["results"][i]["train_ratio_vs_exact"][name] for r in runs[label]],
                              args.target) for label in labels}})
    (args.out / "relax_spread.json").write_text(json.dumps(
        {"runs": runs, "rows": rows, "target": args.target}, indent=1))
    command = ("python benchmarks/bench_relax_spread.py --runs " + str(args.runs)
               + ("" if policies == list(bench_relax.POLICIES)
                  else " --policies " + " ".join(policies))
               + ("" if models == MLPS else " --models " + " ".join(models))
               + (" --one-thread" if args.one_thread else "")
               + ("" if args.target == TARGET else f" --target {args.target}"))
    meta = first_run["meta"]
    loads = {label: [f"{r['meta']['load_average_before']:.2f}" for r in runs[label]]
             for label in labels}
    threads = (f"{meta['threads']} threads" if not args.one_thread else
               f"{meta['threads']} threads under each policy, and {ONE_THREAD[0]}")
    lines = [
        "# Relaxed vs exact training step of the all-relaxed MLPs, over independent runs",
        "",
        f"Written by `{command}`: `bench_relax.py`'s measurement of the MLPs (every layer "
        "relaxed, θ mid-schedule, variants interleaved, medians of repeats) run "
        f"{args.runs} times per setting, each run in a fresh process, the settings by "
        f"turns ({threads}; torch {meta['torch']}). Each cell: "
        "the median of the runs' ratios [smallest, largest], and in how many runs the ratio was "
        f"at most {args.target:.2f}x. 1-minute load average before each run: "
        + "; ".join(f"{label} {', '.join(v)}" for label, v in loads.items()) + ".",
        "",
        "| model | variant | " + " | ".join(
            f"ratio, {label}: median [min, max] | runs ≤ {args.target:.2f}x"
            for label in labels) + " |",
        "|---|---|" + "---:|---:|" * len(labels),
    ]
    for row in rows:
        cells = []
        for label in labels:
            s = row[label]
            cells += [f"{s['median']:.2f}x [{s['min']:.2f}, {s['max']:.2f}]",
                      f"{s['at_most_target']}/{s['runs']}"]
        lines.append(f"| {row['model']} | {row['variant']} | " + " | ".join(cells) + " |")
    (args.out / "relax_spread.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
