"""Time of the relaxation penalties of one dense relaxed layer: exact vs estimated.

A 480 × 480 relaxed layer (``EquivariantLinear`` on 4 copies of the regular representation of
S5, with its dense free term) on 256 rows: the exact penalties (``penalty_method="auto"``, and
each path forced), ``penalty_sketch=p`` and ``penalty_rows=p``. Each variant evaluates the
squared terms of one batch, takes the square roots and back-propagates to the free weight; the
variants run interleaved and the medians of the repeats are printed (the machine is shared).
Prints a table; writes nothing.

    python benchmarks/bench_penalty_sketch.py [--rows 256] [--p 16] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import equirelax as er
from equirelax.relaxation import Relaxed


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--p", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = {
        "exact (auto)": _layer({}, "auto"),
        "exact, data path": _layer({}, "data"),
        "exact, Gram path": _layer({}, "gram"),
        f"penalty_sketch={args.p} (auto)": _layer({"penalty_sketch": args.p}, "auto"),
        f"penalty_rows={args.p} (auto)": _layer({"penalty_rows": args.p}, "auto"),
    }
    x = torch.randn(args.rows, 480)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in variants.values():  # warm-up
        _penalty_time(r, x)
    for _ in range(args.repeats):
        for name, r in variants.items():
            times[name].append(_penalty_time(r, x))
    k = len(variants["exact (auto)"].act_in)
    print(f"480 x 480 relaxed layer (4 regular(S5), {k} generators), {args.rows} rows, "
          f"{torch.get_num_threads()} thread(s), median of {args.repeats}")
    print("| penalty | ms (squares + sqrt + backward) |")
    print("|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {1e3 * statistics.median(ts):.2f} |")


if __name__ == "__main__":
    main()
