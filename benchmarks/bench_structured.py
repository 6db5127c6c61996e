"""Structured (partition) EquivariantLinear against torch.nn.Linear: forward + backward time.

For S_n tensor representations ``EquivariantLinear`` applies its map by partitions (sums,
diagonals, broadcasts and a channel mix; see ``equirelax.homspace.partition``), never forming
the dense (d, d) weight. Each row times one training step (parameters require grad, backward to
the parameters and the input) of both layers in one run, with interleaved repeats so that load
on a shared machine hits both alike, and reports medians and the speed-up
median(nn.Linear) / median(structured).

Rows (issue 16 targets, batch 64):

* ``natural(S_512)``, ``natural(S_2048)``: speed-up >= 20;
* ``16 * natural(S_32)`` (d = 512): speed-up >= 3;
* ``natural ⊗ natural`` of S_64 (d = 4096): speed-up >= 50;
* ``natural ⊗ natural`` of S_200 (d = 40,000, a dense weight of 6.4 GB): runs; nn.Linear is not
  run. Its memory is reported as the bytes the layer keeps for backward (saved tensors) and its
  output, per sample, in units of n² float32 values: O(n²) per sample means a constant there.

Every row also times a *floor*: the least training step PyTorch's eager autograd allows at
the row's shapes, ``y = a x + b Σ_k x_k`` with two scalar parameters (two passes over the input
forward, three backward, four autograd nodes), interleaved with the others. No layer that reads
its input and writes a full-size output with learnable weights can cost less there, so
nn.Linear / floor is the best speed-up PyTorch allows: a target above it is beyond eager
PyTorch's per-op overhead, not a shortfall of the partition path.

Every row also checks, in float64, that the structured layer's outputs equal those of the
dense-path layer (``structured=False``) with the same parameters (max abs difference; the
dense path is skipped where its weight does not fit, d = 40,000).

Run ``python benchmarks/bench_structured.py`` (writes benchmarks/results/structured.json and
.md). The 1-minute load average before and after is recorded; a warning is printed and written
when it exceeds the core count (timings are then inflated and scattered).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

import equirelax as er

RESULTS = Path(__file__).resolve().parent / "results"

#: name -> (builder of the rep, speed-up target or None (runs only), run nn.Linear and dense)
ROWS: dict[str, tuple[Callable[[], er.reps.Rep], float | None, bool]] = {
    "natural(S_512)": (lambda: er.reps.natural(er.groups.symmetric(512)), 20.0, True),
    "natural(S_2048)": (lambda: er.reps.natural(er.groups.symmetric(2048)), 20.0, True),
    "16 * natural(S_32)": (lambda: 16 * er.reps.natural(er.groups.symmetric(32)), 3.0, True),
    "natural^2(S_64)": (lambda: _square(64), 50.0, True),
    "natural^2(S_200)": (lambda: _square(200), None, False),
}


def _square(n: int) -> er.reps.Rep:
    v = er.reps.natural(er.groups.symmetric(n))
    return v * v


def step_fn(layer: torch.nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> Callable[[], None]:
    """One forward + backward; gradients are dropped first so no step accumulates."""
    params = [p for p in layer.parameters() if p.requires_grad]

    def step() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        layer(x).backward(grad_out)

    return step


def floor_fn(x: torch.Tensor, grad_out: torch.Tensor) -> Callable[[], None]:
    """The floor step: y = a x + b Σ x (two scalar parameters) forward and backward, at the
    shapes of the row (same input, same output gradient)."""
    a = torch.randn((), requires_grad=True)
    b = torch.randn((), requires_grad=True)

    def step() -> None:
        a.grad = b.grad = x.grad = None
        (a * x + b * x.sum(-1, keepdim=True)).backward(grad_out)

    return step


def kept_bytes(layer: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for backward in one forward, plus the output's."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x)
    seen.pop(x.untyped_storage().data_ptr(), None)  # the input is the caller's, not the layer's
    return sum(seen.values()) + y.untyped_storage().nbytes()


def max_difference_to_dense(rep: er.reps.Rep, layer: torch.nn.Module, seed: int) -> float:
    """max |structured(x) − dense(x)| in float64, same parameters, random x."""
    fast = er.nn.EquivariantLinear(rep, rep, structured=True).double()
    with torch.no_grad():
        fast.coefficients.copy_(layer.coefficients.double())
        fast.bias_coefficients.normal_(generator=torch.Generator().manual_seed(seed))
    dense = er.nn.EquivariantLinear(rep, rep, structured=False).double()
    dense.load_state_dict(fast.state_dict())
    x = torch.randn(8, rep.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return float((fast(x) - dense(x)).abs().max())


def measure(name: str, batch: int, repeats: int, warmup: int, seed: int) -> dict:
    make, target, with_dense = ROWS[name]
    torch.manual_seed(seed)
    rep = make()
    t0 = time.perf_counter()
    layer = er.nn.EquivariantLinear(rep, rep)
    built = time.perf_counter() - t0
    d = rep.dim
    n = rep.group.degree
    x = torch.randn(batch, d, requires_grad=True)
    grad_out = torch.randn(batch, d)
    out: dict = {
        "rep": name,
        "d": d,
        "n": n,
        "batch": batch,
        "hom_dim": layer.hom.dim,
        "structured": layer.structured,
        "build_s": built,
        "target": target,
    }
    per_sample = kept_bytes(layer, x) / batch
    out["kept_bytes_per_sample"] = per_sample
    out["kept_per_sample_in_n2_floats"] = per_sample / (4 * n * n)
    steps = {"structured": step_fn(layer, x, grad_out), "floor": floor_fn(x, grad_out)}
    if with_dense:
        steps["linear"] = step_fn(torch.nn.Linear(d, d), x, grad_out)
    for _ in range(warmup):
        for s in steps.values():
            s()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(repeats):
        names = list(steps) if r % 2 == 0 else list(reversed(steps))
        for k in names:
            t0 = time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t0)
    out["repeats"] = repeats
    out["structured_ms"] = statistics.median(times["structured"]) * 1e3
    out["floor_ms"] = statistics.median(times["floor"]) * 1e3
    out["structured_over_floor"] = out["structured_ms"] / out["floor_ms"]
    if with_dense:
        out["linear_ms"] = statistics.median(times["linear"]) * 1e3
        out["speedup"] = out["linear_ms"] / out["structured_ms"]
        out["speedup_of_minima"] = min(times["linear"]) / min(times["structured"])
        out["best_speedup"] = out["linear_ms"] / out["floor_ms"]
        out["target_within_floor"] = out["best_speedup"] >= target
        out["meets_target"] = out["speedup"] >= target
        out["max_abs_diff_float64"] = max_difference_to_dense(rep, layer, seed)
    else:
        out["dense_weight_gb"] = d * d * 4 / 1e9
    return out


def write_markdown(results: dict, path: Path) -> None:
    lines = [
        "# Structured (partition) EquivariantLinear vs torch.nn.Linear: forward + backward",
        "",
        "Written by `benchmarks/bench_structured.py`; reproduce with",
        "",
        "```",
        results["command"],
        "```",
        "",
        f"Machine: {results['machine']}; torch {results['torch']}, {results['threads']} "
        f"threads; batch {results['batch']}; training steps (parameters and input require "
        "grad), interleaved repeats (column 'reps'), medians. "
        f"OMP_WAIT_POLICY={results['omp_wait_policy']}; 1-minute load average "
        f"{results['load_before']:.2f} before, {results['load_after']:.2f} after.",
        "",
    ]
    if results["overloaded"]:
        lines += [
            f"**Warning:** the load exceeded the {results['cores']} cores during this run: "
            "timings are inflated and scattered (both layers alike, since repeats are "
            "interleaved, but the small structured steps suffer most from descheduling).",
            "",
        ]
    lines += [
        "speed-up = median(nn.Linear) / median(structured), the number held against the target; "
        "minima = min(nn.Linear) / min(structured). kept/sample: bytes the layer keeps for "
        "backward plus its output, per sample, in units of n² float32 values. diff: max "
        "|structured − dense path| in float64 with the same parameters on random inputs.",
        "",
        "floor: the least training step eager PyTorch allows at these shapes (y = a x + b Σ x, "
        "two scalar parameters, forward and backward, interleaved with the others); best = "
        "nn.Linear / floor, the largest speed-up any eager PyTorch layer could reach "
        "(a target above it is out of reach of per-op overhead, not of the partition path); "
        "/floor = structured / floor.",
        "",
        "| rep | d | hom dim | reps | nn.Linear ms | structured ms | speed-up | minima | target "
        "| met | floor ms | best (Linear/floor) | /floor | kept/sample (n² floats) | "
        "diff float64 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        if "linear_ms" in row:
            timing = (
                f"{row['linear_ms']:.2f} | {row['structured_ms']:.3f} | "
                f"{row['speedup']:.1f} | {row['speedup_of_minima']:.1f} | "
                f">= {row['target']:g} | {'yes' if row['meets_target'] else 'no'}"
            )
            diff = f"{row['max_abs_diff_float64']:.1e}"
            best = f"{row['best_speedup']:.1f}"
        else:
            timing = (
                f"not run (dense weight {row['dense_weight_gb']:.1f} GB) | "
                f"{row['structured_ms']:.3f} | - | - | runs | yes"
            )
            diff = "- (dense path does not fit)"
            best = "-"
        lines.append(
            f"| {row['rep']} | {row['d']} | {row['hom_dim']} | {row['repeats']} | "
            f"{timing} | {row['floor_ms']:.3f} | {best} | {row['structured_over_floor']:.1f} | "
            f"{row['kept_per_sample_in_n2_floats']:.1f} | {diff} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--repeats",
        type=int,
        default=30,
        help="repeats per row (rows with d >= 4096 get a third of them)",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="directory for structured.json/md"
    )
    args = parser.parse_args(argv)
    for name in ("batch", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    rows = []
    for name in args.rows:
        repeats = max(3, args.repeats // 3) if ROWS[name][0]().dim >= 4096 else args.repeats
        row = measure(name, args.batch, repeats, args.warmup, args.seed)
        rows.append(row)
        speed = (
            f"nn.Linear {row['linear_ms']:.2f} ms, speed-up {row['speedup']:.1f} "
            f"(target >= {row['target']:g}; floor {row['floor_ms']:.3f} ms, best "
            f"{row['best_speedup']:.1f}), diff {row['max_abs_diff_float64']:.1e}"
            if "linear_ms" in row
            else "nn.Linear not run"
        )
        print(
            f"{name:>20}: structured {row['structured_ms']:.3f} ms, {speed}, kept "
            f"{row['kept_per_sample_in_n2_floats']:.1f} n² floats/sample",
            flush=True,
        )
    load_after = os.getloadavg()[0]
    overloaded = max(load_before, load_after) > cores
    if overloaded:
        warnings.warn(
            f"the 1-minute load average ({load_before:.2f} before, {load_after:.2f} "
            f"after) exceeded the {cores} cores: timings are inflated and scattered",
            stacklevel=1,
        )
    command = "python benchmarks/bench_structured.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    results = {
        "command": command.strip(),
        "machine": f"{platform.machine()}, {cores} cores",
        "cores": cores,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "load_before": load_before,
        "load_after": load_after,
        "overloaded": overloaded,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "structured.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.out / "structured.md")
    print(f"wrote {args.out / 'structured.json'} and {args.out / 'structured.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
