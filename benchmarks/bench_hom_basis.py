"""Time to build the equivariant basis for S_n acting on V⊗V -> V⊗V (n = 6, 10, 20).

``er.hom(T, T)`` with T = natural(S_n) ⊗ natural(S_n) is timed with the hom-space caches cleared
before every repeat, so each repeat builds the orbit basis from scratch (a map of n^2 x n^2
entries with 15 basis elements for n >= 4). Constructing the group and the representation is
timed separately. For n = 6 the script also times the generic route the library uses for
non-permutation reps, the null space of the stacked constraints, on the same representation
given by its matrices: a baseline for what the orbit construction saves.

Targets (issue 2): S_6 under 5 ms, S_20 under 50 ms.

Run ``python benchmarks/bench_hom_basis.py`` (writes benchmarks/results/hom_basis.json and .md).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see README)

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

import equirelax as er
from equirelax.homspace import space
from equirelax.homspace.nullspace import nullspace_basis

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS_MS = {6: 5.0, 20: 50.0}


def clear_hom_caches() -> None:
    """Forget every cached hom-space and atomic basis (module state of equirelax.homspace)."""
    space._HOM_CACHE.clear()
    space._ATOM_CACHE.clear()


def timed(fn: Callable[[], object], repeats: int, before: Callable[[], None] | None = None
          ) -> tuple[list[float], object]:
    """Wall times (ms) of ``repeats`` calls of ``fn``; ``before`` runs untimed before each."""
    times, result = [], None
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, result


def tensor_square(n: int) -> er.reps.Rep:
    V = er.reps.natural(er.groups.symmetric(n))
    return V * V


def measure(n: int, repeats: int, baseline_repeats: int) -> dict:
    rep_times, T = timed(lambda: tensor_square(n), repeats)
    hom_times, H = timed(lambda: er.hom(T, T), repeats, before=clear_hom_caches)
    row = {
        "n": n,
        "map_shape": list(H.shape),
        "hom_dim": H.dim,
        "rep_construction_ms_median": statistics.median(rep_times),
        "hom_ms_median": statistics.median(hom_times),
        "hom_ms_min": min(hom_times),
        "hom_ms_max": max(hom_times),
        "target_ms": TARGETS_MS.get(n),
        "meets_target": None if n not in TARGETS_MS else statistics.median(hom_times)
        <= TARGETS_MS[n],
        "built_stabiliser_chain": "chain" in T.group.__dict__,
    }
    if n == 6 and baseline_repeats > 0:
        # the same representation given by matrices: the library's null-space route
        G = T.group
        as_matrices = er.reps.MatrixRep(G, T.generator_matrices(), check=False)
        null_times, basis = timed(lambda: nullspace_basis(as_matrices, as_matrices),
                                  baseline_repeats)
        row["nullspace_baseline_ms_median"] = statistics.median(null_times)
        row["nullspace_baseline_dim"] = int(basis.shape[0])
    return row


def write_markdown(results: dict, path: Path) -> None:
    lines = [
        "# Basis construction: S_n on V⊗V -> V⊗V",
        "",
        "Written by `benchmarks/bench_hom_basis.py`; reproduce with",
        "",
        "```",
        results["command"],
        "```",
        "",
        f"Machine: {results['machine']}; torch {results['torch']}; {results['repeats']} repeats "
        f"(medians), hom-space caches cleared before each. 1-minute load average "
        f"{results['load_before']:.2f} before, {results['load_after']:.2f} after (shared machine).",
        "",
        "`er.hom` time excludes building the group and rep (column 'rep'). 'chain' says whether "
        "the stabiliser chain of S_n was ever built (it is not: the orbit basis needs only the "
        "generators).",
        "",
        "| n | map | hom dim | rep ms | er.hom ms (median) | min | max | target | met | chain |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        target = f"< {r['target_ms']:g} ms" if r["target_ms"] else "-"
        met = "-" if r["meets_target"] is None else ("yes" if r["meets_target"] else "no")
        lines.append(
            f"| {r['n']} | {r['map_shape'][0]} x {r['map_shape'][1]} | {r['hom_dim']} "
            f"| {r['rep_construction_ms_median']:.3f} | {r['hom_ms_median']:.3f} "
            f"| {r['hom_ms_min']:.3f} | {r['hom_ms_max']:.3f} | {target} | {met} "
            f"| {'yes' if r['built_stabiliser_chain'] else 'no'} |"
        )
    base = [r for r in results["rows"] if "nullspace_baseline_ms_median" in r]
    for r in base:
        lines += [
            "",
            f"Baseline, n = {r['n']}: the null space of the stacked generator constraints "
            f"(eigh of a {r['map_shape'][0] ** 2} x {r['map_shape'][0] ** 2} Gram matrix) "
            f"gives the same dimension {r['nullspace_baseline_dim']} in "
            f"{r['nullspace_baseline_ms_median']:.1f} ms, "
            f"{r['nullspace_baseline_ms_median'] / r['hom_ms_median']:.0f}x the orbit basis.",
        ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[6, 10, 20])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--baseline-repeats", type=int, default=3,
                        help="repeats of the n = 6 null-space baseline (0 skips it)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for hom_basis.*")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    bad = [n for n in args.sizes if n < 2]
    if bad:
        parser.error(f"--sizes must be integers >= 2, got {bad}")
    load_before = os.getloadavg()[0]
    rows = []
    for n in tqdm(args.sizes, desc="S_n", disable=args.no_progress):
        row = measure(n, args.repeats, args.baseline_repeats)
        rows.append(row)
        extra = ""
        if "nullspace_baseline_ms_median" in row:
            extra = f"; null-space baseline {row['nullspace_baseline_ms_median']:.1f} ms"
        tqdm.write(f"S_{n}: {row['map_shape'][0]}x{row['map_shape'][1]} map, dim {row['hom_dim']}"
                   f": er.hom {row['hom_ms_median']:.3f} ms (rep "
                   f"{row['rep_construction_ms_median']:.3f} ms){extra}")
    command = "python benchmarks/bench_hom_basis.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    results = {
        "command": command.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} "
        "torch threads",
        "torch": torch.__version__,
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hom_basis.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.out / "hom_basis.md")
    print(f"wrote {args.out / 'hom_basis.json'} and {args.out / 'hom_basis.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
