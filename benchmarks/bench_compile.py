"""torch.compile against eager: training step and inference of equivariant and relaxed models.

For each model two copies with the same initial weights are made, one run eagerly and one
through ``torch.compile`` (default inductor backend), and timed in one run with interleaved
repeats (so that load on a shared machine hits both alike), reported as medians:

* train: one optimizer step, ``zero_grad``, forward, MSE loss (+ the relaxation penalty and
  ``relaxed.step()`` for the relaxed model), backward, ``Adam.step()``. Only the model is
  compiled; the optimizer step runs eagerly in both copies.
* inference: ``.eval()`` under ``torch.no_grad()``, forward only.
* inference, frozen: the same, compiled with inductor's weight freezing
  (``torch._inductor.config.freezing = True`` while compiling): parameters become constants,
  folded at compile time (our dense weights are then built once, by the compiler) and on the
  CPU prepacked for oneDNN. Later edits of the parameters are not seen by the compiled model,
  so it is for deployment, not for a model still trained. Compiled after
  ``torch._dynamo.reset()`` (the graphs of the other modes cannot serve it).

Which settings to use for inference: for a deployed model whose weights are final,
``model.eval()``, ``torch._inductor.config.freezing = True`` before the first compiled call,
and calls under ``torch.no_grad()`` (the results table's "inference, frozen" rows against its
"inference" rows).
For a model whose weights may still change (fine-tuning between evaluations), default
settings under ``torch.no_grad()``: each layer's weight cache is checked against its
coefficients on every call, so edits are seen; the compiled model then costs about what
eager inference costs (both are one matrix product per layer), and compiling pays little.
Either way inference is bounded by the matrix products, which compiling does not change on
the CPU (PyTorch's own nn.Linear models are no faster compiled either: see their rows).

Models, at a realistic size (hidden features: 4 copies of the regular representation of S_5,
480 features; batch 256):

* ``EquivariantLinear``: 4 * regular(S_5) -> 4 * regular(S_5);
* ``EquivariantMLP``: natural(S_5) -> [4 * regular, 4 * regular] -> trivial, ReLU;
* relaxed MLP: ``er.relax`` of that MLP (triangular schedule, lie and norm penalties), θ > 0;
* references: ``torch.nn.Linear`` and an ``nn.Linear`` + ReLU MLP of the same shapes, for what
  compiling costs or saves on the machine anyway.

Compiling happens in warm-up (its time is recorded, not in the ratio); the number of graphs
compiled during the timed repeats is recorded too and should be 0 (no recompiles). A ratio
below 1 means the compiled model is faster.

Run ``python benchmarks/bench_compile.py`` (writes benchmarks/results/compile.json and .md).

Idle OpenMP workers are told to sleep (``OMP_WAIT_POLICY=PASSIVE`` unless set otherwise), as in
the other benchmarks; the 1-minute load average before and after the run is recorded.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch._dynamo.utils import counters
from torch._inductor import config as inductor_config
from tqdm.auto import tqdm

import equirelax as er

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("EquivariantLinear", "EquivariantMLP", "relaxed MLP")
#: Plain PyTorch models of the same shapes: what compiling costs or saves on this machine anyway.
REFERENCES = ("nn.Linear", "nn MLP")
#: The plain-PyTorch model of the same shapes as each of ours: compiling that one shows what
#: torch.compile costs or saves anyway, so ours/reference isolates what our modules add.
REFERENCE_OF = {"EquivariantLinear": "nn.Linear", "EquivariantMLP": "nn MLP",
                "relaxed MLP": "nn MLP"}
MODES = ("train", "inference", "inference, frozen")


def make_model(kind: str, copies: int) -> tuple[torch.nn.Module, int]:
    """The model named ``kind`` and its number of input features."""
    G = er.groups.symmetric(5)
    hidden = copies * er.reps.regular(G)
    if kind == "nn.Linear":
        return torch.nn.Linear(hidden.dim, hidden.dim), hidden.dim
    if kind == "nn MLP":
        d = hidden.dim
        return torch.nn.Sequential(torch.nn.Linear(G.degree, d), torch.nn.ReLU(),
                                   torch.nn.Linear(d, d), torch.nn.ReLU(),
                                   torch.nn.Linear(d, 1)), G.degree
    if kind == "EquivariantLinear":
        return er.nn.EquivariantLinear(hidden, hidden), hidden.dim
    mlp = er.nn.EquivariantMLP(er.reps.natural(G), [hidden, hidden], er.reps.trivial(G))
    if kind == "EquivariantMLP":
        return mlp, G.degree
    if kind == "relaxed MLP":
        return er.relax(mlp, total_steps=10**6, lie_weight=1e-2, norm_weight=1e-2), G.degree
    raise ValueError(f"unknown model {kind!r}; expected one of {MODELS + REFERENCES}")


def describe(kind: str, copies: int) -> str:
    hidden = f"{copies} * regular(S_5)"
    d = copies * 120
    if kind == "nn.Linear":
        return f"reference: torch.nn.Linear {d} -> {d}"
    if kind == "nn MLP":
        return f"reference: nn.Linear + ReLU MLP 5 -> [{d}] x 2 -> 1"
    if kind == "EquivariantLinear":
        return f"EquivariantLinear {hidden} -> {hidden}"
    mlp = f"natural(S_5) -> [{hidden}] x 2 -> trivial"
    return f"EquivariantMLP {mlp}" if kind == "EquivariantMLP" else f"relaxed MLP {mlp}"


def train_step(model: torch.nn.Module, net: Callable, x: torch.Tensor, y: torch.Tensor
               ) -> Callable[[], None]:
    """One Adam step of ``model`` through ``net`` (the model itself or its compiled wrapper)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    relaxed = model if isinstance(model, er.relaxation.RelaxedModel) else None

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = (net(x) - y).pow(2).mean()
        if relaxed is not None:
            loss = loss + relaxed.penalty()
        loss.backward()
        opt.step()
        if relaxed is not None:
            relaxed.step()

    return step


def inference(net: Callable, x: torch.Tensor) -> Callable[[], None]:
    def infer() -> None:
        with torch.no_grad():
            net(x)

    return infer


def graphs_compiled() -> int:
    return counters["stats"]["unique_graphs"]


def time_pair(fns: dict[str, Callable[[], None]], repeats: int, inner: int, desc: str,
              progress: bool) -> dict[str, list[float]]:
    """Seconds per call of each function: ``repeats`` blocks of ``inner`` calls, interleaved,
    alternating which goes first."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in tqdm(range(repeats), desc=desc, disable=not progress, leave=False):
        names = list(fns) if r % 2 == 0 else list(reversed(fns))
        for name in names:
            t0 = time.perf_counter()
            for _ in range(inner):
                fns[name]()
            times[name].append((time.perf_counter() - t0) / inner)
    return times


def summary(times: dict[str, list[float]]) -> dict:
    eager, compiled = times["eager"], times["compiled"]
    med_e, med_c = statistics.median(eager), statistics.median(compiled)
    return {
        "eager_ms": med_e * 1e3,
        "compiled_ms": med_c * 1e3,
        "ratio_of_medians": med_c / med_e,
        "median_paired_ratio": statistics.median(c / e for c, e in zip(compiled, eager)),
        "ratio_of_minima": min(compiled) / min(eager),
    }


def measure(kind: str, copies: int, batch: int, repeats: int, inner: int, warmup: int,
            seed: int, progress: bool) -> dict:
    torch.manual_seed(seed)
    eager, d_in = make_model(kind, copies)
    compiled_model = copy.deepcopy(eager)
    net = torch.compile(compiled_model)
    x = torch.randn(batch, d_in)
    with torch.no_grad():
        y = torch.randn_like(eager(x))
    row: dict = {"model": kind, "description": describe(kind, copies), "batch": batch,
                 "repeats": repeats, "inner": inner,
                 "parameters": sum(p.numel() for p in eager.parameters())}
    modes = {
        "train": {"eager": train_step(eager, eager, x, y),
                  "compiled": train_step(compiled_model, net, x, y)},
        "inference": {"eager": inference(eager, x), "compiled": inference(net, x)},
    }
    for mode, fns in modes.items():
        for m in (eager, compiled_model):
            m.train(mode == "train")
        graphs = graphs_compiled()
        t0 = time.perf_counter()
        # the first calls compile (θ = 0 and θ > 0 are two graphs of the relaxed model)
        for _ in range(max(warmup, 3)):
            fns["compiled"]()
        compile_s = time.perf_counter() - t0
        for _ in range(warmup):
            fns["eager"]()
        compiled_in_warmup = graphs_compiled() - graphs
        graphs = graphs_compiled()
        times = time_pair(fns, repeats, inner, f"{kind} {mode}", progress)
        row[mode] = {**summary(times), "compile_and_warmup_s": compile_s,
                     "graphs_compiled_in_warmup": compiled_in_warmup,
                     "graphs_compiled_while_timed": graphs_compiled() - graphs}
    row["inference, frozen"] = measure_frozen(eager, copy.deepcopy(eager), x, repeats, inner,
                                              warmup, f"{kind} frozen", progress)
    return row


def measure_frozen(eager: torch.nn.Module, twin: torch.nn.Module, x: torch.Tensor,
                   repeats: int, inner: int, warmup: int, desc: str, progress: bool) -> dict:
    """Eager inference against inference compiled with inductor's weight freezing (a fresh
    Dynamo cache: graphs compiled without freezing must not serve the frozen model)."""
    torch._dynamo.reset()
    eager.eval()
    twin.eval()
    net = torch.compile(twin)
    graphs = graphs_compiled()
    t0 = time.perf_counter()
    with inductor_config.patch(freezing=True), torch.no_grad():
        for _ in range(max(warmup, 3)):
            frozen_out = net(x)
    compile_s = time.perf_counter() - t0
    with torch.no_grad():
        expected = eager(x)
    torch.testing.assert_close(frozen_out, expected, atol=1e-4, rtol=1e-4)  # frozen = eager
    compiled_in_warmup = graphs_compiled() - graphs
    graphs = graphs_compiled()
    fns = {"eager": inference(eager, x), "compiled": inference(net, x)}
    times = time_pair(fns, repeats, inner, desc, progress)
    return {**summary(times), "compile_and_warmup_s": compile_s,
            "graphs_compiled_in_warmup": compiled_in_warmup,
            "graphs_compiled_while_timed": graphs_compiled() - graphs}


def graph_breaks(copies: int, batch: int) -> dict[str, int]:
    """``torch._dynamo.explain`` graph-break counts of each model's training forward."""
    out = {}
    for kind in MODELS:
        model, d_in = make_model(kind, copies)
        out[kind] = torch._dynamo.explain(model)(torch.randn(batch, d_in)).graph_break_count
    torch._dynamo.reset()
    return out


def against_references(rows: list[dict]) -> None:
    """Add to each of our rows (in place) its compiled/eager ratio divided by that of the
    plain-PyTorch reference of the same shapes, measured in the same run: below or at 1, our
    module adds nothing to what compiling costs a plain ``nn.Linear`` model on this machine."""
    by_model = {row["model"]: row for row in rows}
    for row in rows:
        ref = by_model.get(REFERENCE_OF.get(row["model"], ""))
        for mode in MODES:
            row[mode]["vs_reference"] = (
                row[mode]["ratio_of_medians"] / ref[mode]["ratio_of_medians"]
                if ref is not None else None)


def write_markdown(results: dict, path: Path) -> None:
    lines = [
        "# torch.compile vs eager: training step and inference",
        "",
        "Written by `benchmarks/bench_compile.py`; reproduce with",
        "",
        "```",
        results["command"],
        "```",
        "",
        f"Machine: {results['machine']}; torch {results['torch']}, {results['threads']} "
        f"threads; batch {results['batch']}; blocks of {results['inner']} calls, "
        f"{results['repeats']} interleaved repeats per mode, medians. "
        f"OMP_WAIT_POLICY={results['omp_wait_policy']}; 1-minute load average "
        f"{results['load_before']:.2f} before, {results['load_after']:.2f} after (the machine "
        "is shared: a load above its core count inflates and scatters timings; the ratios come "
        "from interleaved repeats in one run, so both sides see the same load).",
        "",
        *(["**Warning: the load exceeded the core count during this run; rerun on a quiet "
           "machine before reading these ratios.**", ""] if results.get("overloaded") else []),
        "train: zero_grad, forward, MSE loss (+ penalty and schedule step for the relaxed model), "
        "backward, Adam step; only the model is compiled. inference: `.eval()`, "
        "`torch.no_grad()`, forward. inference, frozen: the same, compiled with "
        "`torch._inductor.config.freezing = True` (weights folded into constants at compile "
        "time; for deployed models whose weights no longer change). "
        "ratio = median(compiled) / median(eager) (below 1: "
        "compiled is faster); paired = median over repeats of the per-repeat ratio; minima = "
        "min(compiled) / min(eager). compile s: warm-up calls of the compiled model, compiling "
        "included (inductor's on-disk cache may hold graphs of earlier runs, which shortens it). "
        "recompiles: graphs compiled during the timed repeats. The reference rows (plain "
        "PyTorch, same shapes) show what compiling costs or saves on this machine anyway; "
        "vs reference = our ratio / the ratio of the reference of the same shapes (nn.Linear "
        "for EquivariantLinear, the nn.Linear + ReLU MLP for both MLPs), measured in this run: "
        "at or below 1, our module adds nothing to what torch.compile costs plain PyTorch.",
        "",
        "Graph breaks (`torch._dynamo.explain`, training forward): "
        + ", ".join(f"{k} {v}" for k, v in results["graph_breaks"].items()) + ".",
        "",
        "| model | mode | eager ms | compiled ms | ratio | paired | minima | vs reference "
        "| compile s | recompiles |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        for mode in MODES:
            m = row[mode]
            vs = "—" if m.get("vs_reference") is None else f"{m['vs_reference']:.3f}"
            lines.append(
                f"| {row['description']} | {mode} | {m['eager_ms']:.3f} | {m['compiled_ms']:.3f} "
                f"| {m['ratio_of_medians']:.3f} | {m['median_paired_ratio']:.3f} "
                f"| {m['ratio_of_minima']:.3f} | {vs} | {m['compile_and_warmup_s']:.1f} "
                f"| {m['graphs_compiled_while_timed']} |"
            )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS + REFERENCES),
                        choices=MODELS + REFERENCES)
    parser.add_argument("--copies", type=int, default=4,
                        help="hidden features: this many copies of regular(S_5)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--inner", type=int, default=10, help="calls per timed block")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for compile.json/md")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for name in ("copies", "batch", "repeats", "inner"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    breaks = graph_breaks(args.copies, 8)
    rows = []
    for kind in args.models:
        row = measure(kind, args.copies, args.batch, args.repeats, args.inner, args.warmup,
                      args.seed, not args.no_progress)
        rows.append(row)
        for mode in MODES:
            m = row[mode]
            print(f"{kind:>18} {mode:17}: eager {m['eager_ms']:8.3f} ms, compiled "
                  f"{m['compiled_ms']:8.3f} ms, ratio {m['ratio_of_medians']:.3f}, recompiles "
                  f"{m['graphs_compiled_while_timed']}")
    against_references(rows)
    command = "python benchmarks/bench_compile.py " + " ".join(sys.argv[1:] if argv is None
                                                              else argv)
    results = {
        "command": command.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "repeats": args.repeats,
        "inner": args.inner,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "overloaded": max(load_before, os.getloadavg()[0]) > (os.cpu_count() or 1),
        "graph_breaks": breaks,
        "rows": rows,
    }
    if results["overloaded"]:
        print(f"warning: the 1-minute load average ({results['load_before']:.2f} before, "
              f"{results['load_after']:.2f} after) exceeded the {os.cpu_count()} cores: timings "
              "are inflated and scattered; rerun on a quiet machine", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compile.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.out / "compile.md")
    print(f"wrote {args.out / 'compile.json'} and {args.out / 'compile.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
