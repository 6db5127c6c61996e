"""N-body study: time of a training step inside the study (Lightning runner, callbacks,
logging, checkpoints) against a bare PyTorch loop on the same model and batches.

Both loops train the same model (EGNN or SEGNN, the paper's sizes), exact and relaxed, on the
same 1000 training simulations in batches of 100 with the same random rotations, Adam and, for
the relaxed arm, the same penalties and per-epoch schedule. The study's step is timed from the
start of one training epoch to the start of the next (so it includes Lightning's per-step and
per-epoch work, logging and the periodic checkpoint; validation is switched off in both, since
it is the same model evaluation in both). Epochs of the two loops are interleaved and the
median per-step time of each is reported, because this machine is noisy; ratios are measured in
one run. Writes benchmarks/results/nbody_step.json and nbody_step.md.

    python benchmarks/bench_nbody_step.py [--epochs 6] [--models egnn segnn]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from equirelax.data.nbody import NBodyDataset
from equirelax.experiments.kit.runner import EpochShuffle, RunConfig, fit
from equirelax.experiments.nbody import (
    RandomRotations,
    build_model,
    mse,
    predict,
)
from equirelax.relaxation import relax

RESULTS = Path(__file__).parent / "results"
BATCH, LR, WD, SEED = 100, 5e-4, 1e-12, 0


class EpochClock(pl.Callback):
    """Wall-clock time at the start of every training epoch (and at the end of the last)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())


def study_epochs(model_name: str, arm: str, data: NBodyDataset, epochs: int,
                 out: Path) -> list[float]:
    """Seconds per epoch of the study's runner (the configuration of ``equirelax nbody``)."""
    torch.manual_seed(SEED)
    model = build_model(model_name, 4)
    train = DataLoader(data, batch_size=None, sampler=EpochShuffle(len(data), SEED, BATCH))
    val = DataLoader(data, batch_size=None, sampler=[list(range(BATCH))])
    cfg = RunConfig(epochs=epochs, lr=LR, weight_decay=WD, seed=SEED,
                    relax="triangular" if arm == "relaxed" else None, lie_weight=1e-2,
                    norm_weight=1e-2, relax_interval="epoch", relax_init_std=1e-4,
                    accelerator="cpu", out_dir=str(out), resume=False, progress=False,
                    check_val_every_n_epoch=10_000, checkpoint_every_n_epochs=5)
    clock = EpochClock()
    fit(model, train, val, None, predict, mse, cfg, callbacks=[RandomRotations(SEED), clock])
    return [b - a for a, b in zip(clock.starts[:-1], clock.starts[1:])][1:]


def bare_epochs(model_name: str, arm: str, data: NBodyDataset, epochs: int) -> list[float]:
    """Seconds per epoch of a plain PyTorch loop doing the same work."""
    torch.manual_seed(SEED)
    net: torch.nn.Module = build_model(model_name, 4)
    relaxed = None
    if arm == "relaxed":
        relaxed = net = relax(net, schedule="triangular", total_steps=epochs, lie_weight=1e-2,
                              norm_weight=1e-2, init_std=1e-4)
    opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=WD)
    sampler = EpochShuffle(len(data), SEED, BATCH)
    loader = DataLoader(data, batch_size=None, sampler=sampler)
    times, step = [], 0
    rotations = RandomRotations(SEED)
    net.train()
    for epoch in range(epochs):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        for batch in loader:
            rotations.rotate(batch, step)
            pred, target = predict(net, batch)
            loss = mse(pred, target)
            if relaxed is not None:
                loss = loss + relaxed.penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if relaxed is not None:
            relaxed.step()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved measurements")
    parser.add_argument("--models", nargs="+", default=["egnn", "segnn"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (study default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = NBodyDataset("train", 1000, progress=False)
    steps = len(data) // BATCH
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in args.models:
            per_step: dict[tuple[str, str], list[float]] = {}
            for rep in range(args.repeats):
                for arm in ("exact", "relaxed"):
                    out = Path(tmp) / f"{model_name}-{arm}-{rep}"
                    per_step.setdefault(("study", arm), []).extend(
                        t / steps for t in study_epochs(model_name, arm, data, args.epochs, out))
                    per_step.setdefault(("bare", arm), []).extend(
                        t / steps for t in bare_epochs(model_name, arm, data, args.epochs))
            med = {k: statistics.median(v) for k, v in per_step.items()}
            for arm in ("exact", "relaxed"):
                rows.append({
                    "model": model_name, "arm": arm,
                    "bare_ms": 1e3 * med[("bare", arm)], "study_ms": 1e3 * med[("study", arm)],
                    "study_over_bare": med[("study", arm)] / med[("bare", arm)],
                    "relaxed_over_exact_study": (med[("study", "relaxed")]
                                                 / med[("study", "exact")]),
                })
            print(rows[-2], rows[-1], flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    meta = {"command": "python benchmarks/bench_nbody_step.py " + " ".join(sys.argv[1:]),
            "torch": torch.__version__, "threads": args.threads, "platform": platform.platform(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "load_average_end": load, "epochs": args.epochs, "repeats": args.repeats}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "nbody_step.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        f"Written by `{meta['command'].strip()}` (torch {meta['torch']}, {args.threads} "
        f"thread(s), OMP_WAIT_POLICY {meta['omp_wait_policy']}, load average "
        f"{load if load is None else round(load, 1)} at the end).",
        "",
        "Training step of the N-body study (Lightning runner with its callbacks, logging and "
        "checkpoint every 5 epochs) against a bare PyTorch loop doing the same work on the same "
        "batches (batch 100, 1000 samples, rotations, Adam; relaxed: penalties and per-epoch "
        "schedule). Medians of per-epoch times over interleaved repeats, validation off in both.",
        "",
        "| model | arm | bare loop (ms/step) | study (ms/step) | study / bare | "
        "relaxed / exact (study) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['arm']} | {r['bare_ms']:.1f} | {r['study_ms']:.1f} | "
                     f"{r['study_over_bare']:.3f} | "
                     f"{r['relaxed_over_exact_study']:.3f} |")
    (RESULTS / "nbody_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
