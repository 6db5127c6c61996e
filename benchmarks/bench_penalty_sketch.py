"""Time of the relaxation penalties of one dense relaxed layer: exact vs estimated.

A 480 × 480 relaxed layer (``EquivariantLinear`` on 4 copies of the regular representation of
S5, with its dense free term) on 256 rows: the exact penalties (``penalty_method="auto"``, and
each path forced), ``penalty_sketch=p`` for several p, ``penalty_sketch="auto"`` and
``penalty_rows=p``. Each variant evaluates the squared terms of one batch, takes the square
roots and back-propagates to the free weight; the variants run interleaved and the medians of
the repeats are reported (the machine is shared). Beside the times, the relative standard
deviation of each estimate of the squared terms over fresh draws (its noise, which the square
root of the penalty turns into a downward bias). Writes benchmarks/results/penalty_sketch.json
and penalty_sketch.md.

    python benchmarks/bench_penalty_sketch.py [--rows 256] [--p 4 8 16 32] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

import equirelax as er
from equirelax.relaxation import Relaxed

RESULTS = Path(__file__).parent / "results"


def _layer(options: dict, method: str) -> Relaxed:
    G = er.groups.symmetric(5)
    rep = 4 * er.reps.regular(G)
    torch.manual_seed(0)
    r = Relaxed(er.nn.EquivariantLinear(rep, rep), init_std=0.1, **options).train()
    r.penalty_method = method
    return r


def _penalty_time(r: Relaxed, x: torch.Tensor) -> float:
    start = time.perf_counter()
    r._record(x)
    lie, norm = r.take_squares()
    (torch.sqrt(lie + 1e-12) + torch.sqrt(norm + 1e-12)).backward()
    elapsed = time.perf_counter() - start
    r.free.weight.grad = None
    return elapsed


def _relative_sd(r: Relaxed, exact: Relaxed, x: torch.Tensor, draws: int) -> dict[str, float]:
    """Standard deviation over fresh draws of the estimated lie and norm squares, relative to
    the exact values."""
    exact._record(x)
    lie0, norm0 = (float(v) for v in exact.take_squares())
    samples = []
    with torch.no_grad():
        for _ in range(draws):
            r._record(x)
            samples.append([float(v) for v in r.take_squares()])
    sd = torch.tensor(samples, dtype=torch.float64).std(0)
    return {"lie": float(sd[0]) / lie0, "norm": float(sd[1]) / norm0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--p", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--draws", type=int, default=200,
                        help="fresh draws for the relative standard deviations")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    variants = {
        "exact (auto)": _layer({}, "auto"),
        "exact, data path": _layer({}, "data"),
        "exact, Gram path": _layer({}, "gram"),
    }
    for p in args.p:
        variants[f"penalty_sketch={p}"] = _layer({"penalty_sketch": p}, "auto")
    variants['penalty_sketch="auto"'] = _layer({"penalty_sketch": "auto"}, "auto")
    for p in args.p:
        variants[f"penalty_rows={p}"] = _layer({"penalty_rows": p}, "auto")
    torch.manual_seed(1)
    x = torch.randn(args.rows, 480)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in variants.values():  # warm-up
        _penalty_time(r, x)
    for _ in tqdm(range(args.repeats), desc="repeats"):
        for name, r in variants.items():
            times[name].append(_penalty_time(r, x))
    exact = variants["exact (auto)"]
    noise = {name: _relative_sd(r, exact, x, args.draws) for name, r in variants.items()
             if not name.startswith("exact")}
    k = len(exact.act_in)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    meta = {"torch": torch.__version__, "machine": platform.machine(),
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
            "rows": args.rows, "generators": k, "repeats": args.repeats, "draws": args.draws}
    command = "python benchmarks/bench_penalty_sketch.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "penalty_sketch.json").write_text(json.dumps(
        {"meta": meta, "command": command.strip(), "seconds": median,
         "relative_sd": noise}, indent=1) + "\n")
    lines = [
        "# Penalty of one relaxed layer: exact vs estimated",
        "",
        f"Written by `{command.strip()}` (torch {meta['torch']}, {meta['threads']} thread(s), "
        f"OMP_WAIT_POLICY={meta['omp_wait_policy']}; 1-minute load average "
        f"{load_before:.2f} → {meta['load_average_after']:.2f}). A 480 × 480 relaxed layer "
        f"(4 regular(S5), {k} generators) on {args.rows} rows: squared terms, square roots "
        f"and backward to the free weight, median of {args.repeats} interleaved repeats. "
        f"*Relative sd*: standard deviation of the estimated squares over {args.draws} fresh "
        "draws, relative to the exact squares.",
        "",
        "| penalty | ms | vs exact (auto) | relative sd, lie squares | relative sd, norm squares |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t in median.items():
        sd = noise.get(name)
        cells = (f"{sd['lie']:.3f} | {sd['norm']:.3f}" if sd else "0 | 0")
        lines.append(f"| {name} | {1e3 * t:.2f} | {t / median['exact (auto)']:.3f}x | {cells} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "penalty_sketch.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
