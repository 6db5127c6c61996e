"""Training-step time of relaxed vs exact models, and inference time after ``harden``.

Same architecture, same batch, measured in one run with the variants interleaved (medians of
repeats), because this machine is noisy. Everything runs twice (unless ``--policies`` names
one), in two child processes: with OpenMP's default wait policy (idle threads spin briefly:
what a plain ``python`` gets) and with ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep: what
``./dev`` sets, robust on a shared machine, but every small parallel op pays a thread
wake-up, so op-heavy code slows more).
Writes benchmarks/results/relax.json and relax.md (or into ``--out``). ``--models`` times a
subset (e.g. the two MLPs, in a minute, to compare two versions of the code run by turns).

    python benchmarks/bench_relax.py [--policies PASSIVE] [--models S5 SO3] [--out DIR]
    # or: ./dev bench
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import equirelax as er
from equirelax.relaxation import harden, relax
from equirelax.relaxation.gram import GramPenalty

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
        from equirelax.models import EGNN
        from equirelax.models.segnn import SEGNN

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


def _step_fn(net, params, x, y, relaxed=None, fused=False):
    # fused=True: torch's single-kernel Adam (one pass over each parameter instead of about ten
    # elementwise ops), which matters for the dense free terms a relaxed model adds
    opt = torch.optim.Adam(params, lr=1e-3, fused=True) if fused else torch.optim.Adam(params,
                                                                                        lr=1e-3)

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


def interleaved_medians(steps: dict, rounds: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each step function, the functions timed by turns in each of
    ``rounds`` rounds (``repeats`` calls a timing), so that all of them see the same load."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            times[name].append(_time(fn, repeats))
    return {name: statistics.median(ts) for name, ts in times.items()}


def relaxed_mid_schedule(model: torch.nn.Module, **options):
    """``relax(model, **options)`` at mid-schedule (θ > 0: the free terms and the penalties
    active), as every relaxed variant is timed."""
    r = relax(model, total_steps=10_000, **options)
    r.t = 2500
    r.step()
    return r


#: The relaxed variants of every model: name -> relax() options (penalties exact unless asked).
VARIANTS: dict[str, dict] = {
    "relaxed": {},
    "relaxed, penalty_rows=32": {"penalty_rows": 32},
    'relaxed, penalty_sketch="auto"': {"penalty_sketch": "auto"},
    "relaxed, no penalties": {"lie_weight": 0.0, "norm_weight": 0.0},
}
#: Sketch sizes timed on the MLPs, where every layer is relaxed.
SKETCHES = (4, 8, 16, 32)


def _auto_sketches(relaxed, x: torch.Tensor) -> dict[str, int | None]:
    """The sketch size ``penalty_sketch="auto"`` picks for each relaxed layer on the rows it sees
    in a forward of ``x`` (None: exact)."""
    rows: dict[str, int] = {}
    hooks = [layer.register_forward_pre_hook(
        lambda mod, args, name=name: rows.__setitem__(
            name, args[0].numel() // math.prod(mod.shape_in)))
        for name, layer in relaxed.relaxed_layers().items()]
    with torch.no_grad():
        relaxed(x)
    for hook in hooks:
        hook.remove()
    return {name: layer.sketch_size(rows[name])
            for name, layer in relaxed.relaxed_layers().items()}


#: The variants also timed with ``Adam(fused=True)`` (on the MLPs; ratios against the exact
#: model with the same optimizer).
FUSED_VARIANTS = ("exact", "relaxed, no penalties", 'relaxed, penalty_sketch="auto"',
                  "relaxed, penalty_sketch=4", "relaxed, penalty_sketch=8",
                  "relaxed, penalty_sketch=16")
FUSED = " [Adam fused]"


def bench(kind: str, batch: int = 256, rounds: int = 7, repeats: int = 5,
          sketches: tuple[int, ...] = (), fused: bool = False) -> dict:
    model, d_in = _model(kind)
    x = torch.randn(batch, 5, d_in) if isinstance(model, _NBody) else torch.randn(batch, d_in)
    if isinstance(model, _NBody):
        x[..., 6] = torch.randint(0, 2, (batch, 5)).float() * 2 - 1
    with torch.no_grad():
        y = torch.randn_like(model(x))
    variants = {"exact": (model, None)}
    options = dict(VARIANTS)
    for p in sketches:
        options[f"relaxed, penalty_sketch={p}"] = {"penalty_sketch": p}
    for name, kwargs in options.items():
        r = relaxed_mid_schedule(model, **kwargs)
        variants[name] = (r, r)
    steps = {name: _step_fn(net, list(net.parameters()), x, y, rel)
             for name, (net, rel) in variants.items()}
    if fused:  # separate copies: each optimizer owns its parameters' state
        for name in FUSED_VARIANTS:
            net = copy.deepcopy(variants[name][0])
            steps[name + FUSED] = _step_fn(net, list(net.parameters()), x, y,
                                           None if name == "exact" else net, fused=True)
    train = interleaved_medians(steps, rounds, repeats)

    hard = harden(variants["relaxed"][0]).eval()
    exact = model.eval()
    infer: dict[str, list[float]] = {"exact": [], "hardened": []}
    with torch.no_grad():
        for _ in range(rounds):
            infer["exact"].append(_time(lambda: exact(x), repeats * 4))
            infer["hardened"].append(_time(lambda: hard(x), repeats * 4))
    inference = {k: statistics.median(v) for k, v in infer.items()}
    sketched = _auto_sketches(variants['relaxed, penalty_sketch="auto"'][0], x)
    return {
        "model": kind,
        "batch": batch,
        "auto_sketch_of_layers": sketched,
        "train_step_seconds": train,
        "train_ratio_vs_exact": {
            k: v / train["exact" + (FUSED if k.endswith(FUSED) else "")] for k, v in train.items()},
        "inference_seconds": inference,
        "inference_ratio_hardened_vs_exact": inference["hardened"] / inference["exact"],
    }


MODELS = (
    ("S5 regular MLP", {"rounds": 15, "sketches": SKETCHES, "fused": True}),
    ("SO(3) vector MLP", {"rounds": 15, "sketches": SKETCHES, "fused": True}),
    ("SEGNN N-body (4 layers, 32x0e+32x1o)", {"batch": 100, "rounds": 9, "repeats": 2}),
    ("EGNN N-body (4 layers, 64)", {"batch": 100, "rounds": 9, "repeats": 5}),
)
POLICIES = ("default", "PASSIVE")
#: Short names for ``--models``.
SHORT = {"S5": "S5 regular MLP", "SO3": "SO(3) vector MLP",
         "SEGNN": "SEGNN N-body (4 layers, 32x0e+32x1o)", "EGNN": "EGNN N-body (4 layers, 64)"}


def _child(out: Path, models: list[str], threads: int | None = None) -> None:
    torch.set_num_threads(threads or max(1, torch.get_num_threads()))
    load = os.getloadavg()[0]
    wanted = {SHORT[m] for m in models}
    results = [bench(kind, **kwargs) for kind, kwargs in MODELS if kind in wanted]
    meta = {"torch": torch.__version__, "machine": platform.machine(),
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "load_average_before": load, "load_average_after": os.getloadavg()[0]}
    out.write_text(json.dumps({"meta": meta, "results": results}))


def run_under_policy(policy: str, script: str, args: list[str], out: Path) -> dict:
    """What ``python script --child out *args`` writes to ``out`` (JSON), run in a fresh process
    under OpenMP wait ``policy`` ("default": the variable unset); ``out`` is removed after."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    subprocess.run([sys.executable, script, "--child", str(out), *args], env=env, check=True)
    data = json.loads(out.read_text())
    out.unlink()
    return data


def _run_policy(policy: str, models: list[str], results: Path, threads: int | None = None
                ) -> dict:
    """One measurement in a fresh process under OpenMP wait ``policy`` (``threads``: torch's
    thread count there, None for its default)."""
    out = results / f".relax_{policy}{'' if threads is None else f'_{threads}'}.json"
    return run_under_policy(policy, __file__, ["--models", *models,
                                               *([] if threads is None
                                                 else ["--threads", str(threads)])], out)


def step_rows(runs: dict[str, dict], section: str, seconds: str, ratio: str, lead
              ) -> list[str]:
    """Markdown rows of step times by policy: one per entry of each run's ``section`` and per
    step variant in its ``seconds``, ``lead(entry)`` (the first cells) then each policy's step
    (ms) and its ``ratio`` to the exact step. ``runs``: policy -> a child's result."""
    first = next(iter(runs.values()))
    rows = []
    for i, entry in enumerate(first[section]):
        for name in entry[seconds]:
            cells = []
            for run in runs.values():
                q = run[section][i]
                cells += [f"{1e3 * q[seconds][name]:.2f}", f"{q[ratio][name]:.2f}x"]
            rows.append("| " + " | ".join([*lead(entry), name, *cells]) + " |")
    return rows


def penalty_arithmetic(d_in: int, d_out: int, k: int, rows: int) -> dict:
    """Multiply-adds per training step of one dense relaxed layer: the layer itself (forward,
    input and weight gradients) against its exact penalties on every row (the cheaper of the
    rows and the Gram matrix; forward and weight gradient)."""
    layer = 3 * rows * d_in * d_out
    data, gram = GramPenalty.costs(rows, d_in, d_out, k)
    return {"d_in": d_in, "d_out": d_out, "generators": k, "rows": rows, "layer": layer,
            "penalty": min(data, gram), "ratio": 1 + min(data, gram) / layer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES),
                        help="OpenMP wait policies to measure under (default: both)")
    parser.add_argument("--models", nargs="+", choices=list(SHORT), default=list(SHORT),
                        help="models to time (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for relax.json and relax.md (default: benchmarks/results)")
    args = parser.parse_args()
    models = list(dict.fromkeys(args.models))
    if args.child is not None:
        _child(args.child, models, args.threads)
        return
    results = args.out
    results.mkdir(parents=True, exist_ok=True)
    policies = list(dict.fromkeys(args.policies))
    runs = {policy: _run_policy(policy, models, results) for policy in policies}
    hidden = 4 * er.reps.regular(er.groups.symmetric(5))
    k = len(relax(er.nn.EquivariantLinear(hidden, hidden), total_steps=2).relaxed_layers()[""]
            .act_in)
    arithmetic = penalty_arithmetic(hidden.dim, hidden.dim, k, 256)
    (results / "relax.json").write_text(
        json.dumps({**runs, "penalty_arithmetic": arithmetic}, indent=1))
    first = runs[policies[0]]
    meta = first["meta"]
    command = "python benchmarks/bench_relax.py" + (
        "" if policies == list(POLICIES) else " --policies " + " ".join(policies)) + (
        "" if models == list(SHORT) else " --models " + " ".join(models))
    measured = (
        "Each ratio is measured twice, with OpenMP's default wait policy and with "
        "`OMP_WAIT_POLICY=PASSIVE` (which `./dev` sets)" if len(policies) == 2 else
        f"Measured with the {policies[0]} OpenMP wait policy only")
    lines = [
        "# Relaxed vs exact training step, hardened vs exact inference",
        "",
        f"Written by `{command}` (medians of interleaved repeats, one "
        f"run; torch {meta['torch']}, {meta['threads']} threads). Every layer of the MLPs is "
        "relaxed; in SEGNN the node-update maps (as in the paper), in EGNN the node/position "
        "update. θ is mid-schedule, so the free terms and the penalties are active. "
        "`relaxed` evaluates the paper's penalties exactly (every row of every layer input); "
        "`penalty_rows=32` evaluates them on 32 random rows per layer; `penalty_sketch=p` on "
        "the p rows of SᵀX for random signs S; `penalty_sketch=\"auto\"` sketches (p = 16) the "
        "layers whose exact penalties cost more than the layer and keeps the others exact; "
        "`no penalties` isolates "
        f"the cost of the free terms themselves. Rows marked `{FUSED.strip()}` use "
        "`torch.optim.Adam(fused=True)` for both the relaxed and the exact model (their ratio is "
        "against the exact model with that optimizer): the dense free terms add d_in·d_out "
        "parameters to update, which the default Adam does in about ten passes. "
        f"{measured}; 1-minute "
        "load averages: " + ", ".join(
            f"{p} {r['meta']['load_average_before']:.2f}→{r['meta']['load_average_after']:.2f}"
            for p, r in runs.items()) + ".",
        "",
        "| model | batch | variant | "
        + " | ".join(f"train step (ms), {p} | ratio, {p}" for p in policies) + " |",
        "|---|---:|---|" + "---:|---:|" * len(policies),
    ]
    lines += step_rows(runs, "results", "train_step_seconds", "train_ratio_vs_exact",
                       lambda r: (r["model"], str(r["batch"])))
    lines += ["", "| model | policy | exact inference (ms) | hardened inference (ms) | ratio |",
              "|---|---|---:|---:|---:|"]
    for policy, run in runs.items():
        for r in run["results"]:
            inf = r["inference_seconds"]
            lines.append(f"| {r['model']} | {policy} | {1e3 * inf['exact']:.3f} | "
                         f"{1e3 * inf['hardened']:.3f} "
                         f"| {r['inference_ratio_hardened_vs_exact']:.2f}x |")
    lines += ["", 'Layers that `penalty_sketch="auto"` sketches at the benchmarked batch: '
              + "; ".join(f"{r['model']}: " + (", ".join(
                  f"`{n or 'model'}`" for n, p in r["auto_sketch_of_layers"].items()
                  if p is not None) or "none") + f" of {len(r['auto_sketch_of_layers'])}"
                  for r in first["results"]) + "."]
    a = arithmetic
    lines += [
        "",
        "Where every layer is relaxed, the exact penalties cost more than the layers: per step, "
        f"a dense {a['d_in']}→{a['d_out']} layer on {a['rows']} rows (the S5 MLP's hidden layer, "
        f"{a['generators']} generators) costs {a['layer'] / 1e6:.0f}M multiply-adds (forward, "
        "input and weight gradients) and its exact penalties, by the cheaper of the data and Gram "
        f"paths, {a['penalty'] / 1e6:.0f}M more (W on the rows and on each generator's image of "
        f"them, and the weight gradient): {a['ratio']:.2f}x for that layer before any overhead. "
        "Relaxing only some layers (as the paper does in SEGNN and EGNN), `penalty_rows` or "
        "`penalty_sketch` is what brings the step under that.",
    ]
    (results / "relax.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
