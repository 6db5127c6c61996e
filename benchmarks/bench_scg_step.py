"""Step time of the SCG modular-autoencoder objective at 32x32, batch 16 (target: < 0.2 s).

One step = sample the transformations, the full objective (both branches, all reconstruction
terms, L_equ, L_sym), backward and an AdamW update. Timed with 1 torch thread (the setting the
training CLI uses on shared cores) and with 2 threads (the machine's two cores), for the composite
21x21 kernel (default) and a free 13x13 kernel, plus the tied decoder alone: the sub-pixel
convolution used by the library against ``conv_transpose2d``. Writes
``benchmarks/results/scg_step.json``.

Run: ``python benchmarks/bench_scg_step.py`` (or ``./dev bench``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder, tied_decode
from equirelax.scg.losses import EquivarianceObjective, ObjectiveConfig

RESULTS = Path(__file__).resolve().parent / "results" / "scg_step.json"


def time_steps(kernel: str, batch: int = 16, size: int = 32, warmup: int = 3, steps: int = 20
               ) -> list[float]:
    """Wall-clock seconds of ``steps`` full training steps after ``warmup`` steps."""
    torch.manual_seed(0)
    model = ModularAutoencoder(AutoencoderConfig(kernel=kernel))
    objective = EquivarianceObjective(model, ObjectiveConfig())
    params = list(model.parameters()) + list(objective.parameters())
    opt = torch.optim.AdamW(params, lr=5e-3)
    images = torch.rand(batch, 3, size, size)
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        terms = objective(model, images, generator=gen)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def time_decoders(repeats: int = 20) -> dict[str, float]:
    """Median forward+backward seconds of the tied decoder, both implementations."""
    f = torch.randn(80, 64, 16, 16, requires_grad=True)
    w = torch.randn(64, 3, 21, 21, requires_grad=True)
    out = {}
    for name, fn in {
        "sub_pixel_conv2d": lambda: tied_decode(f, w, 2, (32, 32)),
        "conv_transpose2d": lambda: F.conv_transpose2d(f, w, stride=2, padding=10,
                                                       output_padding=1),
    }.items():
        fn().sum().backward()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn().sum().backward()
            ts.append(time.perf_counter() - t0)
        out[name] = statistics.median(ts)
    return out


def main() -> None:
    """Run the benchmark and write the JSON result."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    result = {
        "what": "seconds per SCG autoencoder training step, 32x32 crops, batch 16",
        "command": "python benchmarks/bench_scg_step.py",
        "target_s": 0.2,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": os.getloadavg()[0],
        "steps": {},
    }
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for kernel in ("composite", "free"):
            ts = time_steps(kernel)
            result["steps"][f"{kernel}_{threads}thread"] = {
                "median_s": statistics.median(ts),
                "min_s": min(ts),
                "max_s": max(ts),
                "n": len(ts),
            }
    torch.set_num_threads(1)
    result["decoder_fwd_bwd_80x64x16x16_s"] = time_decoders()
    result["load_average_after"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
