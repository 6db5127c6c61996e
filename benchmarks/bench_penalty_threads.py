"""Whether the sketched penalties' small products should run on one thread, under each OpenMP wait
policy.

A relaxed layer's penalties on a sketch of p rows are two small products per layer: W on the
p (K + 1) rows and their generator images, and the rank-p (K + 1) update of W's gradient. Under
``OMP_WAIT_POLICY=PASSIVE`` (what ``./dev`` sets) OpenMP's idle threads sleep, and each
parallel region wakes them; threads that spin (the default policy) answer at once. This
measures, in a fresh process per policy with torch on two threads (``--threads``):

* **products**: a large product (256 × 480 by 480 × 480, as a layer's forward, so that the
  threads have just gone idle), then the two penalty products for a d × d weight on R rows,
  with the penalty products on all threads or on one; the gain is what one thread saves;
* **steps**: the all-relaxed MLPs of ``bench_relax.py`` (fused Adam, θ mid-schedule) with
  ``penalty_sketch=4`` and ``"auto"``, with the fused node's one-thread rule
  (:func:`equirelax.relaxation.fused.penalty_threads`) off and on at each threshold of
  :data:`THRESHOLDS`, as ratios to the exact model's step, and per threshold the geometric
  mean of those ratios: the step-level measurement the library's threshold is chosen from.

Variants interleaved, medians of repeats, one run per policy.
``equirelax.relaxation.fused.ONE_THREAD_BELOW_MACS`` is the products' size below which the
rule applies. Writes benchmarks/results/penalty_threads.json and penalty_threads.md (or into
``--out``).

    python benchmarks/bench_penalty_threads.py [--threads 2] [--rounds 15]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
from pathlib import Path

import bench_relax  # the sibling script (its folder is on the path, as for any script)
import torch
from tqdm import tqdm

from equirelax.relaxation import fused

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: The weights' sides and the rows of the penalty products timed (R = p (K + 1)).
SIDES = (256, 480)
ROWS = (4, 8, 16, 32, 64, 128)
MODELS = ("S5 regular MLP", "SO(3) vector MLP")
SKETCHES: dict[str, int | str] = {"penalty_sketch=4": 4, 'penalty_sketch="auto"': "auto"}
#: The rule's thresholds timed in the steps (multiply-adds per product; 0: the rule off).
THRESHOLDS = (0, 1_000_000, 3_000_000, 10_000_000)


def threshold_name(below: int) -> str:
    """How a step variant names the rule's threshold ``below`` (0: off)."""
    return "rule off" if below == 0 else f"one thread below {below:,}"


def product_steps(d: int, rows: int, threads: int) -> dict:
    """Two callables, ``all threads`` and ``one thread``: a layer-sized product, then the
    penalty products of a d × d weight on ``rows`` rows (W on the rows; the rank-``rows``
    update of a d × d gradient), the latter on ``threads`` threads or on one."""
    torch.manual_seed(0)
    x, layer = torch.randn(256, 480), torch.randn(480, 480)
    w, grad, a = torch.randn(d, d), torch.randn(d, d), torch.randn(rows, d)

    def penalty_products() -> None:
        torch.mm(a, w.T)
        torch.addmm(grad, a.T, a, beta=0.5, alpha=2.0)

    def on_all() -> None:
        torch.mm(x, layer)
        penalty_products()

    def on_one() -> None:
        torch.mm(x, layer)
        torch.set_num_threads(1)
        try:
            penalty_products()
        finally:
            torch.set_num_threads(threads)

    return {"all threads": on_all, "one thread": on_one}


def model_steps(kind: str) -> dict:
    """The exact MLP ``kind``'s training step and its all-relaxed copies' with each sketch of
    :data:`SKETCHES`, the one-thread rule off and at each threshold of :data:`THRESHOLDS`
    (names ``…, rule off`` and ``…, one thread below N``)."""
    model, d_in = bench_relax._model(kind)
    torch.manual_seed(1)
    x = torch.randn(256, d_in)
    with torch.no_grad():
        y = torch.randn_like(model(x))
    exact = copy.deepcopy(model)
    steps = {"exact": bench_relax._step_fn(exact, list(exact.parameters()), x, y, fused=True)}
    for name, sketch in SKETCHES.items():
        relaxed = bench_relax.relaxed_mid_schedule(copy.deepcopy(model), penalty_sketch=sketch)
        step = bench_relax._step_fn(relaxed, list(relaxed.parameters()), x, y, relaxed, fused=True)
        for below in THRESHOLDS:
            steps[f"{name}, {threshold_name(below)}"] = _with_rule(step, below)
    return steps


def _with_rule(step, below: int):
    """``step`` run with the rule on for products below ``below`` multiply-adds (0: off)."""
    def run() -> None:
        saved = fused.ONE_THREAD_PENALTIES, fused.ONE_THREAD_BELOW_MACS
        fused.ONE_THREAD_PENALTIES, fused.ONE_THREAD_BELOW_MACS = below > 0, below
        try:
            step()
        finally:
            fused.ONE_THREAD_PENALTIES, fused.ONE_THREAD_BELOW_MACS = saved
    return run


def _child(out: Path, threads: int, rounds: int, progress: bool) -> None:
    torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    products = []
    cases = [(d, r) for d in SIDES for r in ROWS]
    for d, r in tqdm(cases, desc=f"products ({policy})", disable=not progress):
        t = bench_relax.interleaved_medians(product_steps(d, r, threads), rounds, 40)
        products.append({"side": d, "rows": r, "macs": r * d * d, "seconds": t,
                         "gain_seconds": t["all threads"] - t["one thread"]})
    steps = []
    for kind in tqdm(MODELS, desc=f"steps ({policy})", disable=not progress):
        t = bench_relax.interleaved_medians(model_steps(kind), rounds, 10)
        steps.append({"model": kind, "seconds": t,
                      "ratio_vs_exact": {k: v / t["exact"] for k, v in t.items()}})
    meta = {"torch": torch.__version__, "machine": platform.machine(), "threads": threads,
            "omp_wait_policy": policy, "rounds": rounds,
            "load_average_before": load, "load_average_after": os.getloadavg()[0],
            "one_thread_below_macs": fused.ONE_THREAD_BELOW_MACS}
    out.write_text(json.dumps({"meta": meta, "products": products, "steps": steps}))


def largest_gain_macs(products: list[dict]) -> int | None:
    """The largest product size (multiply-adds) at which one thread was faster, or None."""
    gains = [p["macs"] for p in products if p["gain_seconds"] > 0]
    return max(gains) if gains else None


def mean_ratios(steps: list[dict]) -> dict[int, float]:
    """Per threshold of :data:`THRESHOLDS`, the geometric mean of the sketched steps' ratios to
    the exact step, over the models and sketches of ``steps`` (one child's step entries)."""
    means = {}
    for below in THRESHOLDS:
        logs = [math.log(entry["ratio_vs_exact"][f"{name}, {threshold_name(below)}"])
                for entry in steps for name in SKETCHES]
        means[below] = math.exp(sum(logs) / len(logs))
    return means


def write_tables(runs: dict[str, dict], command: str, out: Path) -> str:
    """The markdown of the measured ``runs`` (policy -> child result), written to ``out``."""
    policies = list(runs)
    first = runs[policies[0]]
    meta = first["meta"]
    lines = [
        "# The sketched penalties' small products on one thread or on all, by wait policy",
        "",
        f"Written by `{command}` (one run per policy, each in a fresh process; variants "
        f"interleaved, medians of {meta['rounds']} rounds; torch {meta['torch']}, "
        f"{meta['threads']} threads; 1-minute load averages: " + ", ".join(
            f"{p} {r['meta']['load_average_before']:.2f}→{r['meta']['load_average_after']:.2f}"
            for p, r in runs.items()) + "). "
        "**Products**: a 256 × 480 by 480 × 480 product (a layer's forward), then a penalty's "
        "two products for a d × d weight on R rows (W on the rows, the rank-R update of the "
        "gradient), the latter on all threads or on one; gain = what one thread saves (µs, "
        "negative: one thread is slower). The fused node runs them on one thread below "
        f"{meta['one_thread_below_macs']:,} multiply-adds per product "
        "(`equirelax.relaxation.fused.ONE_THREAD_BELOW_MACS`) where the rule is on "
        "(`equirelax.relaxation.fused.ONE_THREAD_PENALTIES`: under `OMP_WAIT_POLICY=PASSIVE`).",
        "",
        "| d | R | multiply-adds per product | "
        + " | ".join(f"all threads (µs), {p} | one thread (µs), {p} | gain (µs), {p}"
                     for p in policies) + " |",
        "|---:|---:|---:|" + "---:|---:|---:|" * len(policies),
    ]
    for i, row in enumerate(first["products"]):
        cells = []
        for policy in policies:
            q = runs[policy]["products"][i]
            cells += [f"{1e6 * q['seconds']['all threads']:.0f}",
                      f"{1e6 * q['seconds']['one thread']:.0f}",
                      f"{1e6 * q['gain_seconds']:+.0f}"]
        lines.append(f"| {row['side']} | {row['rows']} | {row['macs']:,} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Largest product at which one thread was faster: " + "; ".join(
        f"{p}: " + (f"{m:,} multiply-adds" if (m := largest_gain_macs(r["products"]))
                    else "none") for p, r in runs.items()) + "."]
    lines += [
        "",
        "**Steps**: the all-relaxed MLPs of `bench_relax.py` (every layer relaxed, fused Adam, "
        "θ mid-schedule, batch 256); ratio to the exact model's step. Each sketched model is "
        "timed with the rule off and on at each threshold, in the same run.",
        "",
        "| model | variant | "
        + " | ".join(f"step (ms), {p} | ratio, {p}" for p in policies) + " |",
        "|---|---|" + "---:|---:|" * len(policies),
    ]
    lines += bench_relax.step_rows(runs, "steps", "seconds", "ratio_vs_exact",
                                      lambda row: (row["model"],))
    means = {p: mean_ratios(r["steps"]) for p, r in runs.items()}
    lines += [
        "",
        "**By threshold**: the geometric mean of the sketched steps' ratios above (both models, "
        "both sketches).",
        "",
        "| rule | " + " | ".join(f"mean ratio, {p}" for p in policies) + " |",
        "|---|" + "---:|" * len(policies),
    ]
    lines += [f"| {threshold_name(below)} | "
              + " | ".join(f"{means[p][below]:.3f}x" for p in policies) + " |"
              for below in THRESHOLDS]
    lines += ["", "Fastest: " + "; ".join(
        f"{p}: {threshold_name(min(m, key=m.get))}" for p, m in means.items()) + "."]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads in each measurement (default: 2)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default: 15)")
    parser.add_argument("--policies", nargs="+", choices=bench_relax.POLICIES,
                        default=list(bench_relax.POLICIES),
                        help="OpenMP wait policies to measure under (default: both)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for penalty_threads.json and .md (default: "
                             "benchmarks/results)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 2:
        parser.error(f"--threads must be at least 2 (one thread has nothing to choose), got "
                     f"{args.threads}")
    if args.rounds < 1:
        parser.error(f"--rounds must be positive, got {args.rounds}")
    if args.child is not None:
        _child(args.child, args.threads, args.rounds, not args.no_progress)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    policies = list(dict.fromkeys(args.policies))
    child_args = ["--threads", str(args.threads), "--rounds", str(args.rounds),
                  *(["--no-progress"] if args.no_progress else [])]
    runs = {p: bench_relax.run_under_policy(p, __file__, child_args,
                                      args.out / f".penalty_threads_{p}.json")
            for p in policies}
    (args.out / "penalty_threads.json").write_text(json.dumps(runs, indent=1))
    command = "python benchmarks/bench_penalty_threads.py" + "".join(
        f" {flag} {value}" for flag, value, default in (
            ("--threads", args.threads, 2), ("--rounds", args.rounds, 15),
            ("--policies", " ".join(policies), " ".join(bench_relax.POLICIES)))
        if value != default)
    print(write_tables(runs, command, args.out / "penalty_threads.md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
