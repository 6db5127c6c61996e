"""Time to build the equivariant basis for SO(3) (and O(3)) on V^⊗k -> V^⊗k, k = 1..4.

``er.hom(T, T).basis`` with T = V^⊗k (V the vector rep) is timed with every cache of the irreps
path cleared before each repeat (hom-spaces, atomic bases, decompositions, standard irreps), so
each repeat decomposes T into irreps and builds the Schur blocks from scratch, and materialises
the dense (dim, 3^k, 3^k) basis. The baseline is the dense null space of the stacked
constraints (``nullspace_basis``, the route the library took before: an eigenproblem of size
9^k), timed for k up to ``--dense-max-k``; where both exist the script checks that they span the
same space (largest entry of the difference of the orthogonal projectors). The expected dimension
is computed independently from characters (Weyl's integration formula): Σ_l m_l².

Target (issue 16): SO(3) T4 -> T4 under 1 s.

Run ``python benchmarks/bench_lie_hom_basis.py`` (writes benchmarks/results/lie_hom_basis.json
and .md).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see README)
# numpy/scipy's OpenBLAS on one thread unless told otherwise (read when numpy loads): on a busy
# machine its per-core threads made small eigenproblems hundreds of times slower, and scattered
# both the irreps path and the dense baseline by more than their difference
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import equirelax as er
from equirelax.homspace import space
from equirelax.homspace.nullspace import nullspace_basis
from equirelax.reps import irrep_decomposition, real_irreps

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_S = {("SO(3)", 4): 1.0}


def clear_caches() -> None:
    """Forget everything the irreps path caches, so that a repeat starts from nothing."""
    space._HOM_CACHE.clear()
    space._ATOM_CACHE.clear()
    irrep_decomposition._CACHE.clear()
    irrep_decomposition._IRREDUCIBLE.clear()
    irrep_decomposition._spanning_recipe.cache_clear()
    real_irreps.so3_generators.cache_clear()
    real_irreps._standard_irrep.cache_clear()
    real_irreps._LABELS.clear()


def timed(
    fn: Callable[[], object], repeats: int, before: Callable[[], None] | None = None
) -> tuple[list[float], object]:
    """Wall times (s) of ``repeats`` calls of ``fn``; ``before`` runs untimed before each."""
    times, result = [], None
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def tensor_power(G, k: int) -> er.reps.Rep:
    rep = er.reps.vector(G)
    for _ in range(k - 1):
        rep = rep * er.reps.vector(G)
    return rep


def character_dimension(k: int) -> int:
    """dim Hom_SO(3)(V^⊗k, V^⊗k) = ∫ χ_V^{2k} over SO(3) (also O(3): parity (-1)^k both sides)."""
    theta = (np.arange(8192) + 0.5) * 2 * np.pi / 8192
    value = 2 * np.mean((1 + 2 * np.cos(theta)) ** (2 * k) * np.sin(theta / 2) ** 2)
    return int(np.rint(value))


def measure(group: str, k: int, repeats: int, dense_max_k: int) -> dict:
    G = er.groups.SO(3) if group == "SO(3)" else er.groups.O(3)
    T = tensor_power(G, k)

    def build() -> torch.Tensor:
        return er.hom(T, T).basis

    times, basis = timed(build, repeats, before=clear_caches)
    H = er.hom(T, T)
    row = {
        "group": group,
        "k": k,
        "map_shape": list(H.shape),
        "hom_dim": H.dim,
        "character_dim": character_dimension(k),
        "irreps": {
            f"{lab.degree}{'' if group == 'SO(3)' else 'eo'[lab.parity < 0]}": m
            for lab, m in er.reps.decompose(T).multiplicities.items()
        },
        "blocks_s_median": statistics.median(times),
        "blocks_s_min": min(times),
        "target_s": TARGET_S.get((group, k)),
    }
    row["meets_target"] = (
        None if row["target_s"] is None else row["blocks_s_median"] < row["target_s"]
    )
    if k <= dense_max_k:
        dense_times, dense = timed(lambda: nullspace_basis(T, T), 1)
        b = basis.numpy().reshape(H.dim, -1)
        d = np.asarray(dense).reshape(dense.shape[0], -1)
        row["dense_s"] = dense_times[0]
        row["dense_dim"] = int(d.shape[0])
        row["projector_max_diff"] = float(np.abs(b.T @ b - d.T @ d).max())
    return row


def write_markdown(results: dict, path: Path) -> None:
    lines = [
        "# Basis construction for Lie groups: SO(3)/O(3) on V^⊗k -> V^⊗k",
        "",
        "Written by `benchmarks/bench_lie_hom_basis.py`; reproduce with",
        "",
        "```",
        results["command"],
        "```",
        "",
        f"Machine: {results['machine']}; torch {results['torch']}; numpy {results['numpy']}; "
        f"BLAS threads as set by OPENBLAS_NUM_THREADS={results['openblas_threads']}. "
        f"{results['repeats']} repeats (medians), every cache of the irreps path cleared before "
        f"each. 1-minute load average {results['load_before']:.2f} before, "
        f"{results['load_after']:.2f} after (shared machine: a load above its core count "
        "inflates every timing, both paths alike).",
        "",
        "'blocks': `er.hom(T, T).basis` through the irreps decomposition (decompose, Schur "
        "blocks, dense basis in the original coordinates). 'dense': the null space of the "
        "stacked constraints, one eigenproblem of size 9^k (run once). 'char dim': Σ_l m_l² "
        "from characters. 'span diff': max |P_blocks - P_dense| of the orthogonal projectors.",
        "",
        "| group | k | map | irreps (l: copies) | hom dim | char dim | blocks s (median) | min "
        "| dense s | dense dim | span diff | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        irreps = ", ".join(f"{lab}: {m}" for lab, m in r["irreps"].items())
        dense = (
            f"{r['dense_s']:.3f} | {r['dense_dim']} | {r['projector_max_diff']:.1e}"
            if "dense_s" in r
            else "- | - | -"
        )
        target = f"< {r['target_s']:g} s" if r["target_s"] else "-"
        met = "-" if r["meets_target"] is None else ("yes" if r["meets_target"] else "no")
        lines.append(
            f"| {r['group']} | {r['k']} | {r['map_shape'][0]} x {r['map_shape'][1]} | {irreps} "
            f"| {r['hom_dim']} | {r['character_dim']} | {r['blocks_s_median']:.4f} "
            f"| {r['blocks_s_min']:.4f} | {dense} | {target} | {met} |"
        )
    lines += [
        "",
        "The dense route for k = 4 (a 6561 x 6561 eigenproblem after a 19683 x 6561 by 6561 "
        "product) is left out of the default run to keep it short; `--dense-max-k 4` includes it.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--powers", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--groups", nargs="+", default=["SO(3)", "O(3)"], choices=["SO(3)", "O(3)"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--dense-max-k",
        type=int,
        default=3,
        help="time the dense null space for k up to this (k = 4: minutes)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="directory for lie_hom_basis.json/md"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    bad = [k for k in args.powers if k < 1]
    if bad:
        parser.error(f"--powers must be integers >= 1, got {bad}")
    load_before = os.getloadavg()[0]
    rows = []
    for group in args.groups:
        for k in args.powers:
            row = measure(group, k, args.repeats, args.dense_max_k)
            rows.append(row)
            extra = (
                f"; dense {row['dense_s']:.3f} s, span diff {row['projector_max_diff']:.1e}"
                if "dense_s" in row
                else ""
            )
            print(
                f"{group} T{k}: dim {row['hom_dim']} (characters {row['character_dim']}), "
                f"blocks {row['blocks_s_median']:.4f} s{extra}"
            )
    command = "python benchmarks/bench_lie_hom_basis.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    results = {
        "command": command.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lie_hom_basis.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.out / "lie_hom_basis.md")
    print(f"wrote {args.out / 'lie_hom_basis.json'} and {args.out / 'lie_hom_basis.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
