"""Seconds per SCG modular-autoencoder training step, timed as training runs it.

Each measurement runs :func:`equirelax.scg.training.train_autoencoder` itself (crops drawn by
its :class:`CropSampler` from the training photographs and dead leaves, batch 16, the default
objective with both branches and every loss term, gradient clipping, AdamW and the one-cycle
schedule) with a loss row logged every step, and takes the differences of the logged wall-clock
times: the step time a training log shows, data sampling included, start-up excluded. Timed for
the full preset's 40x40 crops and for 32x32 crops, with 1 torch thread (the CLI default) and
2 threads (the machine's cores), for the default FFT convolutions and the direct ones
(``TrainConfig(spectral=False)``). The cores are shared: the load average before and after is
recorded, and a loaded machine inflates every number.

Run: ``python benchmarks/bench_scg_step.py [--out FILE] [--steps N]`` (default output
``benchmarks/results/scg_step.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from equirelax.scg.autoencoder import AutoencoderConfig
from equirelax.scg.losses import ObjectiveConfig
from equirelax.scg.training import TrainConfig, train_autoencoder

RESULTS = Path(__file__).resolve().parent / "results" / "scg_step.json"
WARMUP = 3


def time_training_steps(crop: int, steps: int = 20, spectral: bool = True, batch: int = 16
                        ) -> list[float]:
    """Seconds of each training step after ``WARMUP`` steps, from the training log itself."""
    tc = TrainConfig(steps=steps + WARMUP + 1, batch=batch, crop=crop, spectral=spectral)
    trained = train_autoencoder(AutoencoderConfig(), ObjectiveConfig(), tc, progress=False,
                                log_every=1)
    seconds = [row["seconds"] for row in trained.history]
    return [b - a for a, b in zip(seconds[WARMUP:-1], seconds[WARMUP + 1 :], strict=True)]


def main() -> None:
    """Run the benchmark and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    args = parser.parse_args()
    if args.steps < 2:
        raise SystemExit(f"--steps must be >= 2, got {args.steps}")
    threads_before = torch.get_num_threads()
    torch.set_flush_denormal(True)  # as the training CLI does
    result = {
        "what": "seconds per SCG autoencoder training step as train_autoencoder runs it "
                "(batch 16, default objective, sampling included)",
        "command": "python benchmarks/bench_scg_step.py",
        "target_s": {"32x32": 0.2},
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": list(os.getloadavg()),
        "steps": {},
    }
    for crop in (40, 32):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for spectral in (True, False):
                ts = time_training_steps(crop, args.steps, spectral)
                name = f"{crop}x{crop}_{threads}thread_{'fft' if spectral else 'direct'}"
                result["steps"][name] = {
                    "median_s": statistics.median(ts),
                    "min_s": min(ts),
                    "max_s": max(ts),
                    "n": len(ts),
                }
                print(name, f"{statistics.median(ts):.3f}", flush=True)
    torch.set_num_threads(threads_before)
    result["load_average_after"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
