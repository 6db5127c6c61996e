"""Benchmark: vectorised charged-particle generation against the per-simulation loop.

Times :func:`equirelax.data.nbody.generate_split` on ``--sims`` simulations of the full
protocol (5000 steps each, the training part of the stream) and
:func:`equirelax.data.nbody.simulate_reference_loop` on the first ``--loop-sims`` of them,
checks that both give the same trajectories on those, and writes
``benchmarks/results/nbody_generation.json`` (and prints it).

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

from equirelax.data.nbody import ChargedParticlesConfig, generate_split, simulate_reference_loop

RESULTS = Path(__file__).resolve().parent / "results" / "nbody_generation.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=10_000, help="vectorised simulations")
    parser.add_argument("--loop-sims", type=int, default=20, help="per-simulation loop runs")
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
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
    print(json.dumps(result, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
