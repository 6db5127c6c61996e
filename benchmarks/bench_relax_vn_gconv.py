"""Benchmark: cost of relaxation for Vector Neurons and C4/D4 group convolutions.

For VN-PointNet and the C4 and D4 GCNNs (the widths of the studies' standard presets), in one
run on one machine:

* training-step time (forward, penalties, backward, Adam step) of the model relaxed with
  ``relax(model, "triangular", ...)`` (θ at its peak, the penalties evaluated on the studies'
  ``penalty_rows``, and on every row) against the exact model: the ratio;
* inference time (eval forward) of the hardened model ``harden(relaxed)`` against the exact
  model it was copied from: the same architecture, so the ratio should be 1 up to timing noise.

Exact and relaxed steps are interleaved and the median over repeats is reported, so that a
change of load on a shared machine affects both alike. Writes
``benchmarks/results/relax_vn_gconv.json`` and ``.md``.

    python benchmarks/bench_relax_vn_gconv.py                # default repeats
    python benchmarks/bench_relax_vn_gconv.py --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from equirelax.experiments.images import ImageStudyConfig
from equirelax.experiments.images import build_model as build_image_model
from equirelax.experiments.pointcloud import PointCloudStudyConfig
from equirelax.experiments.pointcloud import build_model as build_cloud_model
from equirelax.relaxation import harden, relax

RESULTS = Path(__file__).resolve().parent / "results" / "relax_vn_gconv.json"


def cases() -> dict[str, dict]:
    """The models of the studies' standard presets, a training batch, and their penalty
    subsampling (``penalty_rows``)."""
    pc_cfg, im_cfg = PointCloudStudyConfig(), ImageStudyConfig()
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(pc_cfg.batch_size, pc_cfg.num_points, 3, generator=gen)
    images = torch.rand(im_cfg.batch_size, 1, 28, 28, generator=gen)
    vn = (f"VN-PointNet {pc_cfg.channels}, k={pc_cfg.k}, "
          f"{pc_cfg.batch_size} x {pc_cfg.num_points} points")
    out = {vn: {
        "build": lambda: build_cloud_model("exact", pc_cfg, 15),
        "x": points, "y": torch.randint(0, 15, (len(points),), generator=gen),
        "penalty_rows": pc_cfg.penalty_rows,
    }}
    for group in ("C4", "D4"):
        cfg = replace(im_cfg, group=group)
        out[f"GCNN {group} {cfg.channels}, {cfg.batch_size} x 28x28"] = {
            "build": lambda cfg=cfg: build_image_model("exact", cfg),
            "x": images, "y": torch.randint(0, 10, (len(images),), generator=gen),
            "penalty_rows": cfg.penalty_rows,
        }
    return out


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x, y, relaxed: bool) -> float:
    start = time.perf_counter()
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    if relaxed:
        loss = loss + model.penalty()
    loss.backward()
    opt.step()
    return time.perf_counter() - start


@torch.no_grad()
def _inference(model: nn.Module, x) -> float:
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def _interleaved(fns: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


def bench_case(spec: dict, repeats: int) -> dict:
    """Median training-step and inference times of one model, exact / relaxed / hardened."""
    torch.manual_seed(0)
    exact = spec["build"]()
    x, y = spec["x"], spec["y"]
    total = 100
    relaxed = {
        "relaxed": relax(exact, total_steps=total, penalty_rows=spec["penalty_rows"]),
        "relaxed_all_rows": relax(exact, total_steps=total),
    }
    for r in relaxed.values():
        r.t = total // 2  # θ at its peak: the free terms are active
        r.step()
    steps = {"exact": (exact, False), **{k: (r, True) for k, r in relaxed.items()}}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, (m, _) in steps.items()}
    for m, _ in steps.values():
        m.train()
    train = _interleaved(
        {k: (lambda k=k: _train_step(steps[k][0], opts[k], x, y, steps[k][1])) for k in steps},
        repeats,
    )
    hard = harden(relaxed["relaxed"]).eval()
    exact.eval()
    same_keys = list(hard.state_dict()) == list(exact.state_dict())
    infer = _interleaved({"exact": lambda: _inference(exact, x),
                          "hardened": lambda: _inference(hard, x)}, 3 * repeats)
    n_params = sum(p.numel() for p in exact.parameters())
    return {
        "train_step_seconds": train,
        "train_step_ratio_relaxed_over_exact": train["relaxed"] / train["exact"],
        "train_step_ratio_all_rows_over_exact": train["relaxed_all_rows"] / train["exact"],
        "inference_seconds": infer,
        "inference_ratio_hardened_over_exact": infer["hardened"] / infer["exact"],
        "hardened_same_class_and_state_dict_keys": type(hard) is type(exact) and same_keys,
        "hardened_parameters": sum(p.numel() for p in hard.parameters()),
        "exact_parameters": n_params,
        "relaxed_trained_parameters": sum(p.numel() for p in relaxed["relaxed"].parameters()),
        "penalty_rows": spec["penalty_rows"],
        "batch": list(x.shape),
    }


def markdown(result: dict) -> str:
    """The report for the docs."""
    m = result["machine"]
    lines = [
        "# Relaxation cost: Vector Neurons and group convolutions", "",
        f"Written by `python benchmarks/bench_relax_vn_gconv.py"
        f"{' ' + result['args'] if result['args'] else ''}`; machine: {m['cpus']} CPUs, "
        f"{m['threads']} torch threads, torch {m['torch']}, 1-minute load average at the end "
        f"{m['load_end']:.1f} (a shared machine: times are medians of interleaved repeats).", "",
        "| model | exact step (s) | relaxed step (s) | ratio | ratio, penalties on every row |"
        " exact inference (s) | hardened inference (s) | ratio | trained / deployed parameters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["cases"].items():
        t, i = r["train_step_seconds"], r["inference_seconds"]
        lines.append(
            f"| {name} | {t['exact']:.3f} | {t['relaxed']:.3f} | "
            f"{r['train_step_ratio_relaxed_over_exact']:.2f} | "
            f"{r['train_step_ratio_all_rows_over_exact']:.2f} | {i['exact']:.4f} | "
            f"{i['hardened']:.4f} | {r['inference_ratio_hardened_over_exact']:.2f} | "
            f"{r['relaxed_trained_parameters']} / {r['hardened_parameters']} |")
    lines += [
        "",
        "Relaxed steps run with θ at its peak and the penalties (Lie derivative for VN, "
        "generator penalty for C4/D4, and the norm term) evaluated on the studies' "
        "`penalty_rows` (4096 rows of each VN layer input, 8 images per convolution), and, in "
        "the next column, on every row. Models and batches: the studies' standard presets. "
        "The hardened model is `harden(relaxed)`: the same "
        "class, state_dict keys and parameter count as the exact model "
        f"({all(r['hardened_same_class_and_state_dict_keys'] for r in result['cases'].values())}"
        "), so its inference ratio is 1 up to timing noise.", "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {"cases": {}}
    for name, spec in tqdm(cases().items(), desc="models"):
        result["cases"][name] = bench_case(spec, args.repeats)
    argv = []
    if args.repeats != 7:
        argv += ["--repeats", str(args.repeats)]
    if args.threads != 2:
        argv += ["--threads", str(args.threads)]
    result["args"] = " ".join(argv)
    result["machine"] = {"cpus": os.cpu_count(), "threads": args.threads,
                         "torch": torch.__version__, "python": platform.python_version(),
                         "load_end": os.getloadavg()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
