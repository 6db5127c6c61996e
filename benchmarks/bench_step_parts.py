"""Where the all-relaxed MLPs' sketched training step spends its time, part by part, in several
processes.

``bench_relax.py`` gives one ratio per step; ``bench_relax_spread.py`` shows that ratio moving
from run to run. This splits the step of the exact MLP, of the all-relaxed one without
penalties and of the all-relaxed one with ``penalty_sketch=4`` (fused Adam, θ mid-schedule,
batch 256) into its parts, timed around each at every step:

* **forward**: ``zero_grad``, the model, the loss and the weighted penalties;
* **backward**: ``loss.backward()``;
* **optimizer**: ``Adam(fused=True).step()`` (and θ's schedule step for the relaxed models).

The three models are stepped by turns (``--rounds`` rounds of ``--repeats`` steps each, after a
warm-up), and each part's median over the timed steps is kept. Every measurement runs ``--runs``
times per OpenMP wait policy, each in a fresh process, because what a process gets (where its
tensors land, how its threads meet) is fixed for its life and differs between processes; the
table gives each part's median over the processes with its smallest and largest value.
Writes benchmarks/results/step_parts.json and step_parts.md (or into ``--out``).

    python benchmarks/bench_step_parts.py [--runs 5] [--policies default PASSIVE]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import bench_relax  # the sibling script (its folder is on the path, as for any script)
import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODELS = ("S5 regular MLP", "SO(3) vector MLP")
#: The step's parts, in the order they run.
PARTS = ("forward", "backward", "optimizer")
#: The variants timed: name -> relax() options (None: the exact model).
VARIANTS: dict[str, dict | None] = {
    "exact": None,
    "relaxed, no penalties": {"lie_weight": 0.0, "norm_weight": 0.0},
    "relaxed, penalty_sketch=4": {"penalty_sketch": 4},
}


def timed_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               relaxed=None) -> tuple:
    """A training step of ``model`` on (x, y) with fused Adam (``relaxed``: the RelaxedModel
    whose penalties join the loss and whose schedule steps), and the lists it appends each
    part's seconds to (part -> list)."""
    opt = torch.optim.Adam(list(model.parameters()), lr=1e-3, fused=True)
    times: dict[str, list[float]] = {part: [] for part in PARTS}
    clock = time.perf_counter

    def step() -> None:
        t0 = clock()
        opt.zero_grad(set_to_none=True)
        loss = torch.mean((model(x) - y) ** 2)
        if relaxed is not None:
            loss = loss + relaxed.penalty()
        t1 = clock()
        loss.backward()
        t2 = clock()
        opt.step()
        if relaxed is not None:
            relaxed.step()
        t3 = clock()
        times["forward"].append(t1 - t0)
        times["backward"].append(t2 - t1)
        times["optimizer"].append(t3 - t2)

    return step, times


def measure(kind: str, rounds: int, repeats: int, warmup: int = 20) -> dict[str, dict]:
    """Per variant of :data:`VARIANTS`, each part's median seconds over the timed steps of the
    MLP ``kind`` (variants stepped by turns, ``repeats`` steps a turn), and ``step``, the
    median of the parts' sum."""
    net, d_in = bench_relax._model(kind)
    torch.manual_seed(1)
    x = torch.randn(256, d_in)
    with torch.no_grad():
        y = torch.randn_like(net(x))
    steps = {}
    for name, options in VARIANTS.items():
        model = copy.deepcopy(net)
        relaxed = None if options is None else bench_relax.relaxed_mid_schedule(model, **options)
        steps[name] = timed_step(model if relaxed is None else relaxed, x, y, relaxed)
    for step, times in steps.values():
        for _ in range(warmup):
            step()
        for part in times.values():
            part.clear()
    for _ in range(rounds):
        for step, _ in steps.values():
            for _ in range(repeats):
                step()
    out = {}
    for name, (_, times) in steps.items():
        totals = [sum(parts) for parts in zip(*(times[p] for p in PARTS))]
        out[name] = {**{p: statistics.median(times[p]) for p in PARTS},
                     "step": statistics.median(totals)}
    return out


def _child(out: Path, threads: int, rounds: int, repeats: int) -> None:
    torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    results = {kind: measure(kind, rounds, repeats) for kind in MODELS}
    meta = {"torch": torch.__version__, "machine": platform.machine(), "threads": threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "rounds": rounds, "repeats": repeats,
            "load_average_before": load, "load_average_after": os.getloadavg()[0]}
    out.write_text(json.dumps({"meta": meta, "results": results}))


def summarise(runs: list[dict]) -> dict:
    """model -> variant -> part (and ``step``) -> median, min and max seconds over ``runs``
    (one child's result each)."""
    first = runs[0]["results"]
    return {kind: {name: {part: {"median": statistics.median(vals), "min": min(vals),
                                 "max": max(vals)}
                          for part in (*PARTS, "step")
                          for vals in [[r["results"][kind][name][part] for r in runs]]}
                   for name in first[kind]}
            for kind in first}


def write_tables(by_policy: dict[str, list[dict]], command: str, out: Path) -> str:
    """The markdown of the measured runs (policy -> list of child results), written to
    ``out``."""
    policies = list(by_policy)
    summaries = {p: summarise(runs) for p, runs in by_policy.items()}
    meta = by_policy[policies[0]][0]["meta"]
    n_runs = {p: len(runs) for p, runs in by_policy.items()}
    lines = [
        "# The all-relaxed MLPs' training step, part by part, over processes",
        "",
        f"Written by `{command}` (torch {meta['torch']}, {meta['threads']} threads; per policy "
        + ", ".join(f"{p}: {n} processes" for p, n in n_runs.items())
        + f"; in each, the variants stepped by turns, {meta['rounds']} rounds of "
        f"{meta['repeats']} steps after a warm-up, each part's median over the steps). "
        "Fused Adam, θ mid-schedule, batch 256, every layer relaxed. Parts: **forward** "
        "(zero_grad, model, loss and weighted penalties), **backward**, **optimizer** (Adam's "
        "step and θ's); **step**: the median of their sum. Cells: median over the processes "
        "in µs, [smallest, largest].",
        "",
        "| model | variant | part | " + " | ".join(f"µs, {p}" for p in policies) + " |",
        "|---|---|---|" + "---|" * len(policies),
    ]
    first = summaries[policies[0]]
    for kind, variants in first.items():
        for name in variants:
            for part in (*PARTS, "step"):
                cells = []
                for p in policies:
                    c = summaries[p][kind][name][part]
                    cells.append(f"{1e6 * c['median']:.0f} [{1e6 * c['min']:.0f}, "
                                 f"{1e6 * c['max']:.0f}]")
                lines.append(f"| {kind} | {name} | {part} | " + " | ".join(cells) + " |")
    lines += ["", "Per process, the sketched step's parts minus the no-penalty step's (µs; "
              "forward / backward / optimizer):", ""]
    for p, runs in by_policy.items():
        for kind in first:
            diffs = []
            for r in runs:
                sketched = r["results"][kind]["relaxed, penalty_sketch=4"]
                plain = r["results"][kind]["relaxed, no penalties"]
                diffs.append(" / ".join(f"{1e6 * (sketched[part] - plain[part]):+.0f}"
                                        for part in PARTS))
            lines.append(f"- {p}, {kind}: " + "; ".join(diffs))
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per policy (default: 5)")
    parser.add_argument("--policies", nargs="+", choices=bench_relax.POLICIES,
                        default=list(bench_relax.POLICIES),
                        help="OpenMP wait policies (default: both)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per process (default: 10)")
    parser.add_argument("--repeats", type=int, default=30,
                        help="steps per variant and round (default: 30)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for step_parts.json and .md (default: benchmarks/results)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for flag, value in (("--runs", args.runs), ("--threads", args.threads),
                        ("--rounds", args.rounds), ("--repeats", args.repeats)):
        if value < 1:
            parser.error(f"{flag} must be positive, got {value}")
    if args.child is not None:
        _child(args.child, args.threads, args.rounds, args.repeats)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    policies = list(dict.fromkeys(args.policies))
    child_args = ["--threads", str(args.threads), "--rounds", str(args.rounds),
                  "--repeats", str(args.repeats)]
    by_policy: dict[str, list[dict]] = {p: [] for p in policies}
    # the policies by turns, so that both see the same stretch of the machine's load
    for i in tqdm(range(args.runs), desc="processes per policy"):
        for p in policies:
            by_policy[p].append(bench_relax.run_under_policy(
                p, __file__, child_args, args.out / f".step_parts_{p}_{i}.json"))
    (args.out / "step_parts.json").write_text(json.dumps(by_policy, indent=1))
    command = "python benchmarks/bench_step_parts.py" + "".join(
        f" {flag} {value}" for flag, value, default in (
            ("--runs", args.runs, 5), ("--threads", args.threads, 2),
            ("--rounds", args.rounds, 10), ("--repeats", args.repeats, 30),
            ("--policies", " ".join(policies), " ".join(bench_relax.POLICIES)))
        if str(value) != str(default))
    print(write_tables(by_policy, command, args.out / "step_parts.md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
