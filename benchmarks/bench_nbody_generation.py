"""Benchmark: vectorised charged-particle generation against the per-simulation loop.

Times :func:`equirelax.data.nbody.generate_split` on ``--sims`` simulations of the full
protocol (5000 steps each, the training part of the stream) and the tests' per-simulation
oracle ``tests.helpers.nbody_reference.simulate_reference_loop`` on the first ``--loop-sims``,
checks that both give the same trajectories on those, and, as a check of the data against
the literature, fits the learned-scalar linear baseline ``x(40) = x(30) + c v(30)`` of the EGNN
paper on the default training split (3000) and evaluates it on the default test split (2000).
Writes ``benchmarks/results/nbody_generation.json`` and ``.md`` (and prints the JSON).

    python benchmarks/bench_nbody_generation.py            # 10,000 vs 20 simulations
    python benchmarks/bench_nbody_generation.py --sims 2000 --loop-sims 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from equirelax.data.nbody import (
    ChargedParticlesConfig,
    generate_split,
    nbody_datasets,
)

# the per-simulation loop is the test suite's oracle: import it from the repository root
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.nbody_reference import simulate_reference_loop

RESULTS = Path(__file__).resolve().parent / "results" / "nbody_generation.json"

# Test MSE of the "Linear" baseline (x + c v with a learned scalar c) in Table 2 of
# Satorras, Hoogeboom & Welling, "E(n) Equivariant Graph Neural Networks", ICML 2021.
PUBLISHED_LINEAR_BASELINE_MSE = 0.0819


def linear_baseline(cache_dir: Path | None) -> dict:
    """Least-squares scalar c on train; test MSE of static, x + v and x + c v predictions."""
    data = nbody_datasets(cache_dir=cache_dir, dtype=torch.float64)
    train, test = data["train"].tensors(), data["test"].tensors()
    dx, v = (train.target - train.loc).reshape(-1), train.vel.reshape(-1)
    c = float(dx @ v / (v @ v))
    result = {"train_size": len(data["train"]), "test_size": len(data["test"]), "fitted_c": c}
    for name, scale in (("static", 0.0), ("x_plus_v", 1.0), ("x_plus_fitted_c_v", c)):
        per_sim = (test.loc + scale * test.vel - test.target).square().mean(dim=(1, 2))
        result[f"test_mse_{name}"] = float(per_sim.mean())
        result[f"test_mse_{name}_standard_error"] = float(per_sim.std() / len(per_sim) ** 0.5)
    result["published_linear_baseline_test_mse"] = PUBLISHED_LINEAR_BASELINE_MSE
    return result


def markdown(result: dict) -> str:
    """A short report of ``result`` for the docs."""
    vec, loop = result["vectorised"], result["per_simulation_loop"]
    agree, lin = result["agreement_on_loop_simulations"], result.get("linear_baseline")
    lines = [
        "# Charged-particle generation benchmark",
        "",
        f"Written by `{result['command'].strip()}`; machine: {result['machine']['cpu_count']} "
        f"CPUs, torch {result['machine']['torch']}, 1-minute load average at the end "
        f"{result['machine']['load_average_1min_at_end']:.1f}.",
        "",
        "| generator | simulations | seconds | seconds per simulation |",
        "|---|---|---|---|",
        f"| vectorised (torch, 1 thread) | {vec['simulations']} | {vec['seconds']:.1f} | "
        f"{vec['seconds_per_simulation']:.2e} |",
        f"| per-simulation loop (numpy) | {loop['simulations']} | {loop['seconds']:.1f} | "
        f"{loop['seconds_per_simulation']:.2e} |",
        "",
        f"Speed-up per simulation: {result['speedup_per_simulation']}x; the loop would need "
        f"about {loop['extrapolated_seconds_for_vectorised_count'] / 60:.0f} min for "
        f"{vec['simulations']} simulations.",
        "",
        "Largest position difference between the two on the loop's simulations: "
        f"{agree['max_abs_loc_difference_frame_30']:.1e} at frame 30, "
        f"{agree['max_abs_loc_difference_frame_40']:.1e} at frame 40, "
        f"{agree['max_abs_loc_difference_all_frames']:.1e} over all 49 frames (rounding "
        "differences grown by the chaotic dynamics); same clipped-step counts: "
        f"{agree['clipped_steps_equal']}.",
        "",
        "Simulations in which some force component was clipped at least once: "
        f"{result['data']['fraction_of_simulations_with_clipped_forces']:.1%} "
        f"(mean {result['data']['mean_clipped_steps_per_simulation']:.1f} clipped steps).",
    ]
    if lin is not None:
        lines += [
            "",
            "Linear baseline `x(40) = x(30) + c v(30)`, c fitted by least squares on the "
            f"{lin['train_size']} training simulations (c = {lin['fitted_c']:.3f}), test MSE "
            f"on {lin['test_size']}: {lin['test_mse_x_plus_fitted_c_v']:.4f} "
            f"+- {lin['test_mse_x_plus_fitted_c_v_standard_error']:.4f} (standard error); "
            f"published (EGNN paper, Table 2): {lin['published_linear_baseline_test_mse']}. "
            f"Static prediction: {lin['test_mse_static']:.4f}; c = 1: "
            f"{lin['test_mse_x_plus_v']:.4f}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=10_000, help="vectorised simulations")
    parser.add_argument("--loop-sims", type=int, default=20, help="per-simulation loop runs")
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="data cache (default: EQUIRELAX_CACHE)"
    )
    parser.add_argument(
        "--skip-baseline", action="store_true", help="skip the linear-baseline data check"
    )
    args, _ = parser.parse_known_args(argv)
    if not 1 <= args.loop_sims <= args.sims:
        parser.error(f"--loop-sims must be in [1, --sims={args.sims}], got {args.loop_sims}")
    config = ChargedParticlesConfig(stream_sizes=(max(args.sims, 10_000), 2_000, 2_000))

    start = time.perf_counter()
    fast = generate_split(config, "train", args.sims, chunk_size=args.chunk_size)
    fast_seconds = time.perf_counter() - start

    start = time.perf_counter()
    slow = simulate_reference_loop(config, args.loop_sims, progress=True)
    loop_seconds = time.perf_counter() - start

    loop_per_sim = loop_seconds / args.loop_sims
    fast_per_sim = fast_seconds / args.sims
    difference = np.abs(fast.loc[: args.loop_sims] - slow.loc)
    result = {
        "command": "python benchmarks/bench_nbody_generation.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "protocol": {
            "n_particles": config.n_particles,
            "dt": config.dt,
            "n_steps": config.n_steps,
            "sample_every": config.sample_every,
            "seed": config.seed,
        },
        "vectorised": {
            "simulations": args.sims,
            "seconds": round(fast_seconds, 3),
            "seconds_per_simulation": fast_per_sim,
            "chunk_size": args.chunk_size,
            "torch_threads": 1,
        },
        "per_simulation_loop": {
            "simulations": args.loop_sims,
            "seconds": round(loop_seconds, 3),
            "seconds_per_simulation": loop_per_sim,
            "extrapolated_seconds_for_vectorised_count": round(loop_per_sim * args.sims, 1),
        },
        "speedup_per_simulation": round(loop_per_sim / fast_per_sim, 1),
        "agreement_on_loop_simulations": {
            "max_abs_loc_difference_frame_30": float(difference[:, 30].max()),
            "max_abs_loc_difference_frame_40": float(difference[:, 40].max()),
            "max_abs_loc_difference_all_frames": float(difference.max()),
            "clipped_steps_equal": bool(
                np.array_equal(fast.clipped_steps[: args.loop_sims], slow.clipped_steps)
            ),
        },
        "data": {
            "fraction_of_simulations_with_clipped_forces": float(
                (fast.clipped_steps > 0).mean()
            ),
            "mean_clipped_steps_per_simulation": float(fast.clipped_steps.mean()),
        },
        "linear_baseline": None if args.skip_baseline else linear_baseline(args.cache_dir),
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_1min_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(json.dumps(result, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
