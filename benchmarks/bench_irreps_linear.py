"""An O(3) irreps layer applied block by block, against e3nn's o3.Linear and the dense weight.

``EquivariantLinear(R, R)`` with R = 128x0e+64x1o+32x2e (480 dims) applies its Schur blocks one
by one (``layer.blockwise``: a product over multiplicities per irrep type). It is timed, forward +
backward (to the parameters and the input), against

* e3nn's ``o3.Linear(R, R)`` on the same irreps (when e3nn is installed), with biases on the 0e
  outputs (the function class of ``EquivariantLinear(R, R)``) and without (e3nn's default,
  against ``bias=False``), and
* the same layer with ``blockwise = False``: the dense 480 x 480 weight built from the
  coefficients at every step (what the layer did before).

The three run interleaved in one loop (the order rotates every repeat), so load on a shared
machine hits all alike; medians and the median of per-repeat ratios are reported. Before timing,
the script checks that the blockwise and dense paths give the same outputs (float64, 1e-12).

Target (issue 16): blockwise at least as fast as e3nn's o3.Linear (ratio <= 1).

Run ``python benchmarks/bench_irreps_linear.py`` (writes benchmarks/results/irreps_linear.json
and .md).
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

import equirelax as er

RESULTS = Path(__file__).resolve().parent / "results"
SPEC = {(0, 1): 128, (1, -1): 64, (2, 1): 32}
SPEC_E3NN = "128x0e+64x1o+32x2e"


def irreps_rep(spec: dict[tuple[int, int], int]) -> er.reps.Rep:
    """The O(3) rep in irreps form with {(l, parity): copies}, built without e3nn."""
    O3 = er.groups.O(3)
    return sum(
        m * er.reps.standard_irrep(O3, er.reps.IrrepLabel(l, p)) for (l, p), m in spec.items()
    )


def step_fn(layer: torch.nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> Callable[[], None]:
    """One forward + backward; gradients are dropped first so no step accumulates."""
    params = [p for p in layer.parameters() if p.requires_grad]

    def step() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        layer(x).backward(grad_out)

    return step


def check_same_outputs(rep: er.reps.Rep) -> float:
    """Max |blockwise - dense| over a random float64 batch (the two paths of one layer)."""
    layer = er.nn.EquivariantLinear(rep, rep).double()
    with torch.no_grad():
        layer.coefficients.normal_()
        layer.bias_coefficients.normal_()
    x = torch.randn(64, rep.dim, dtype=torch.float64)
    with torch.no_grad():
        blockwise = layer(x)
    layer.blockwise = False
    with torch.no_grad():
        return float((blockwise - layer(x)).abs().max())


def measure(batch: int, repeats: int, warmup: int, seed: int) -> dict:
    torch.manual_seed(seed)
    rep = irreps_rep(SPEC)
    blockwise = er.nn.EquivariantLinear(rep, rep)
    dense = er.nn.EquivariantLinear(rep, rep)
    dense.blockwise = False
    layers: dict[str, torch.nn.Module] = {
        "blockwise": blockwise,
        "dense weight": dense,
        "blockwise, no bias": er.nn.EquivariantLinear(rep, rep, bias=False),
    }
    try:
        from e3nn import o3

        # with biases (on the 0e outputs, as the equivariant bias of EquivariantLinear) and
        # without (e3nn's default), each against the matching EquivariantLinear
        layers["e3nn o3.Linear"] = o3.Linear(SPEC_E3NN, SPEC_E3NN, biases=True)
        layers["e3nn o3.Linear, no bias"] = o3.Linear(SPEC_E3NN, SPEC_E3NN)
    except ImportError:
        pass
    x = torch.randn(batch, rep.dim, requires_grad=True)
    grad_out = torch.randn(batch, rep.dim)
    steps = {name: step_fn(layer, x, grad_out) for name, layer in layers.items()}
    for _ in range(warmup):
        for s in steps.values():
            s()
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    row = {
        "rep": SPEC_E3NN,
        "dim": rep.dim,
        "hom_dim": blockwise.hom.dim,
        "batch": batch,
        "repeats": repeats,
        "blockwise_flops_per_row": blockwise.hom.blockwise_flops(),
        "dense_flops_per_row": rep.dim * rep.dim,
        "median_ms": medians,
        "max_abs_diff_blockwise_vs_dense_float64": check_same_outputs(rep),
    }
    row["ratios"] = {}
    pairs = [
        ("blockwise", "dense weight"),
        ("blockwise", "e3nn o3.Linear"),
        ("blockwise, no bias", "e3nn o3.Linear, no bias"),
    ]
    for ours, other in pairs:
        if other not in times:
            continue
        paired = [a / b for a, b in zip(times[ours], times[other])]
        row["ratios"][f"{ours} / {other}"] = {
            "ratio_of_medians": medians[ours] / medians[other],
            "median_paired_ratio": statistics.median(paired),
        }
    if "e3nn o3.Linear" in layers:
        row["meets_target"] = row["ratios"]["blockwise / e3nn o3.Linear"]["ratio_of_medians"] <= 1
    return row


def write_markdown(results: dict, path: Path) -> None:
    row = results["row"]
    lines = [
        "# O(3) irreps layer: blockwise EquivariantLinear vs e3nn o3.Linear vs dense weight",
        "",
        "Written by `benchmarks/bench_irreps_linear.py`; reproduce with",
        "",
        "```",
        results["command"],
        "```",
        "",
        f"Machine: {results['machine']}; torch {results['torch']}, {results['threads']} threads;"
        f" e3nn {results['e3nn']}. OMP_WAIT_POLICY={results['omp_wait_policy']}; 1-minute load "
        f"average {results['load_before']:.2f} before, {results['load_after']:.2f} after (the "
        "machine is shared: a load above its core count inflates and scatters timings; the "
        "ratios come from one interleaved run).",
        "",
        f"Layer {row['rep']} -> itself ({row['dim']} dims, {row['hom_dim']} coefficients), "
        f"batch {row['batch']}, forward + backward to parameters and input, {row['repeats']} "
        "interleaved repeats, medians. Multiply-adds per row: "
        f"{row['blockwise_flops_per_row']} blockwise, {row['dense_flops_per_row']} dense.",
        "",
        "| layer | median ms |",
        "|---|---|",
    ]
    for name, ms in row["median_ms"].items():
        lines.append(f"| {name} | {ms:.2f} |")
    lines += ["", "| ratio | of medians | median of paired |", "|---|---|---|"]
    for key, value in row["ratios"].items():
        lines.append(
            f"| {key} | {value['ratio_of_medians']:.3f} | {value['median_paired_ratio']:.3f} |"
        )
    target = row.get("meets_target")
    lines += [
        "",
        "Target: blockwise at least as fast as e3nn's o3.Linear (both with biases): "
        + (
            "not measured (e3nn not installed)"
            if target is None
            else ("met" if target else "not met")
        )
        + ".",
        "",
        "Blockwise and dense paths of one layer, float64, random coefficients and inputs: "
        f"max |difference| = {row['max_abs_diff_blockwise_vs_dense_float64']:.2e}.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="directory for irreps_linear.json/md"
    )
    args = parser.parse_args(argv)
    for name in ("batch", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    row = measure(args.batch, args.repeats, args.warmup, args.seed)
    for name, ms in row["median_ms"].items():
        print(f"{name:>16}: {ms:8.2f} ms")
    for key, value in row["ratios"].items():
        print(f"{key}: {value['ratio_of_medians']:.3f} (paired {value['median_paired_ratio']:.3f})")
    try:
        import e3nn

        e3nn_version = e3nn.__version__
    except ImportError:
        e3nn_version = "not installed"
    command = "python benchmarks/bench_irreps_linear.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    results = {
        "command": command.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "e3nn": e3nn_version,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "row": row,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "irreps_linear.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.out / "irreps_linear.md")
    print(f"wrote {args.out / 'irreps_linear.json'} and {args.out / 'irreps_linear.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
