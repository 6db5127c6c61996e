"""Training-step time of relaxed vs exact models, and inference time after ``harden``.

Same architecture, same batch, measured in one run with the variants interleaved (medians of
repeats), because this machine is noisy. Writes benchmarks/results/relax.json and relax.md.

    python benchmarks/bench_relax.py            # or: ./dev bench
"""

from __future__ import annotations

import os

# idle OpenMP threads spinning on a busy machine distort small-op timings; set before torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import platform
import statistics
import time
from pathlib import Path

import torch

import equirelax as er
from equirelax.relaxation import harden, relax

RESULTS = Path(__file__).parent / "results"


class _NBody(torch.nn.Module):
    """SEGNN/EGNN on a batch of charged-particle graphs, called with one tensor (B, 5, 7):
    location, velocity and charge of each particle."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[..., :3], x[..., 3:6], x[..., 6:])


def _model(kind: str) -> tuple[torch.nn.Module, int]:
    if kind in ("SEGNN N-body (4 layers, 32x0e+32x1o)", "EGNN N-body (4 layers, 64)"):
        from equirelax.nn.egnn import EGNN
        from equirelax.nn.segnn import SEGNN

        torch.manual_seed(0)
        net = SEGNN(num_layers=4) if kind.startswith("SEGNN") else EGNN(num_layers=4)
        return _NBody(net), 7
    if kind == "S5 regular MLP":
        G = er.groups.symmetric(5)
        hidden = 4 * er.reps.regular(G)
        rep_in, rep_out = er.reps.natural(G), er.reps.trivial(G)
        torch.manual_seed(0)
        return er.nn.EquivariantMLP(rep_in, [hidden, hidden], rep_out), rep_in.dim
    if kind == "SO(3) vector MLP":
        S = er.groups.SO(3)
        v, t = er.reps.vector(S), er.reps.trivial(S)
        torch.manual_seed(0)
        hidden = 64 * v + 64 * t
        return er.nn.EquivariantMLP(4 * v + 2 * t, [hidden, hidden], v), (4 * v + 2 * t).dim
    raise ValueError(kind)


def _step_fn(net, params, x, y, relaxed=None):
    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.mean((net(x) - y) ** 2)
        if relaxed is not None:
            loss = loss + relaxed.penalty()
        loss.backward()
        opt.step()
        if relaxed is not None:
            relaxed.step()

    return step


def _time(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench(kind: str, batch: int = 256, rounds: int = 7, repeats: int = 5) -> dict:
    model, d_in = _model(kind)
    x = torch.randn(batch, 5, d_in) if isinstance(model, _NBody) else torch.randn(batch, d_in)
    if isinstance(model, _NBody):
        x[..., 6] = torch.randint(0, 2, (batch, 5)).float() * 2 - 1
    with torch.no_grad():
        y = torch.randn_like(model(x))
    variants = {"exact": (model, None)}
    for name, kwargs in (("relaxed", {}), ("relaxed, penalty_rows=32", {"penalty_rows": 32}),
                         ("relaxed, no penalties", {"lie_weight": 0.0, "norm_weight": 0.0})):
        r = relax(model, total_steps=10_000, **kwargs)
        r.t = 2500  # mid-schedule: θ > 0, every term active
        r.step()
        variants[name] = (r, r)
    steps = {name: _step_fn(net, list(net.parameters()), x, y, rel)
             for name, (net, rel) in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            times[name].append(_time(fn, repeats))
    train = {name: statistics.median(ts) for name, ts in times.items()}

    hard = harden(variants["relaxed"][0]).eval()
    exact = model.eval()
    infer: dict[str, list[float]] = {"exact": [], "hardened": []}
    with torch.no_grad():
        for _ in range(rounds):
            infer["exact"].append(_time(lambda: exact(x), repeats * 4))
            infer["hardened"].append(_time(lambda: hard(x), repeats * 4))
    inference = {k: statistics.median(v) for k, v in infer.items()}
    return {
        "model": kind,
        "batch": batch,
        "train_step_seconds": train,
        "train_ratio_vs_exact": {k: v / train["exact"] for k, v in train.items()},
        "inference_seconds": inference,
        "inference_ratio_hardened_vs_exact": inference["hardened"] / inference["exact"],
    }


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = [bench("S5 regular MLP"), bench("SO(3) vector MLP"),
               bench("SEGNN N-body (4 layers, 32x0e+32x1o)", batch=100, rounds=5, repeats=2),
               bench("EGNN N-body (4 layers, 64)", batch=100, rounds=5, repeats=3)]
    RESULTS.mkdir(exist_ok=True)
    meta = {"torch": torch.__version__, "machine": platform.machine(),
            "threads": torch.get_num_threads()}
    (RESULTS / "relax.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    lines = [
        "# Relaxed vs exact training step, hardened vs exact inference",
        "",
        "Written by `python benchmarks/bench_relax.py` (medians of interleaved repeats, one "
        f"run; torch {meta['torch']}, {meta['threads']} threads). Every layer of the MLPs is "
        "relaxed; in SEGNN the node-update maps (as in the paper), in EGNN the node/position "
        "update. θ is mid-schedule, so the free terms and the penalties are active. "
        "`penalty_rows=32` evaluates the penalties on 32 strided rows per layer; "
        "`no penalties` isolates the cost of the free terms themselves.",
        "",
        "| model | batch | variant | train step (ms) | ratio vs exact |",
        "|---|---:|---|---:|---:|",
    ]
    for r in results:
        for name, t in r["train_step_seconds"].items():
            lines.append(f"| {r['model']} | {r['batch']} | {name} | {1e3 * t:.2f} | "
                         f"{r['train_ratio_vs_exact'][name]:.2f}x |")
    lines += ["", "| model | exact inference (ms) | hardened inference (ms) | ratio |",
              "|---|---:|---:|---:|"]
    for r in results:
        inf = r["inference_seconds"]
        lines.append(f"| {r['model']} | {1e3 * inf['exact']:.3f} | {1e3 * inf['hardened']:.3f} "
                     f"| {r['inference_ratio_hardened_vs_exact']:.2f}x |")
    (RESULTS / "relax.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
