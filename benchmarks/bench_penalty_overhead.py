"""What the sketched penalties of an all-relaxed MLP cost at full size and with tiny layers.

``bench_relax.py`` times the all-relaxed MLPs with sketched penalties (p rows per layer) and
without penalties; the difference is what the penalties cost a training step. On p rows their
arithmetic is small, so much of that difference may be the cost of the operations themselves
(dispatch, autograd bookkeeping, Python), which does not shrink with the layers. This measures
how much: each MLP of ``bench_relax.py`` (every layer relaxed, fused Adam) at its benchmarked
width and batch, and the same architecture (same group, same actions, same number of layers
and code path) with hidden layers of a few features and a batch of 16 rows, where every
product is tiny. Each is measured with torch on one thread (no OpenMP region opens, so the
wait policy plays no part) and on two (``--threads``). For each model, size and thread count:
the exact step, the relaxed step without
penalties and with ``penalty_sketch=p``, and the penalties' cost (the sketched step minus the
one without penalties); the last column gives the tiny model's penalty cost as a share of the
full-size one's at the same thread count. Variants interleaved, medians of repeats, one run.
Writes benchmarks/results/penalty_overhead.json and penalty_overhead.md (or into ``--out``).

    python benchmarks/bench_penalty_overhead.py [--sketch 4] [--threads 1 2] [--rounds 15]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
from pathlib import Path

import bench_relax  # the sibling script (its folder is on the path, as for any script)
import torch
from tqdm import tqdm

import equirelax as er

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def tiny_model(kind: str) -> tuple[torch.nn.Module, int, str]:
    """The MLP ``kind`` of ``bench_relax.py`` with hidden layers of a few features: its input
    dimension and a description of the hidden rep."""
    torch.manual_seed(0)
    if kind == "S5 regular MLP":
        G = er.groups.symmetric(5)
        hidden = er.reps.natural(G)  # a permutation rep, as regular is: the same kind of layer
        rep_in, rep_out = er.reps.natural(G), er.reps.trivial(G)
        return er.nn.EquivariantMLP(rep_in, [hidden, hidden], rep_out), rep_in.dim, "natural(S5)"
    if kind == "SO(3) vector MLP":
        S = er.groups.SO(3)
        v, t = er.reps.vector(S), er.reps.trivial(S)
        rep_in = 4 * v + 2 * t
        return er.nn.EquivariantMLP(rep_in, [v + t, v + t], v), rep_in.dim, "1x1o+1x0e"
    raise ValueError(f"no tiny twin for {kind!r}")


#: The full-size description of each MLP's hidden rep, for the table.
FULL_HIDDEN = {"S5 regular MLP": "4 * regular(S5)", "SO(3) vector MLP": "64x1o+64x0e"}


def measure(model: torch.nn.Module, d_in: int, batch: int, sketch: int, rounds: int,
            repeats: int) -> dict[str, float]:
    """Median seconds per training step of the exact model and of its all-relaxed copies
    without penalties and with the sketch (fused Adam, variants interleaved), timed as
    ``bench_relax.py`` times them."""
    x = torch.randn(batch, d_in)
    with torch.no_grad():
        y = torch.randn_like(model(x))
    relaxed = bench_relax.relaxed_mid_schedule
    nets = {"exact": copy.deepcopy(model),
            "no penalties": relaxed(model, lie_weight=0.0, norm_weight=0.0),
            f"penalty_sketch={sketch}": relaxed(model, penalty_sketch=sketch)}
    steps = {name: bench_relax._step_fn(net, list(net.parameters()), x, y,
                                        None if name == "exact" else net, fused=True)
             for name, net in nets.items()}
    return bench_relax.interleaved_medians(steps, rounds, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sketch", type=int, default=4, help="sketch size p (default: 4)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch thread counts to measure with (default: 1 2)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default: 15)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="steps per timing (default: 5; 20 for the tiny models)")
    parser.add_argument("--tiny-batch", type=int, default=16,
                        help="rows of the tiny models' batch (default: 16)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for penalty_overhead.json and .md (default: "
                             "benchmarks/results)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.sketch < 1 or args.tiny_batch <= args.sketch:
        parser.error(f"need 1 <= --sketch < --tiny-batch (so the tiny batch is sketched), got "
                     f"--sketch {args.sketch} and --tiny-batch {args.tiny_batch}")
    if min(args.threads) < 1:
        parser.error(f"--threads must be positive, got {args.threads}")
    threads = list(dict.fromkeys(args.threads))
    initial = torch.get_num_threads()
    load = os.getloadavg()[0]
    rows = []
    cases = [(n, kind) for n in threads for kind in FULL_HIDDEN]
    try:
        for n, kind in tqdm(cases, desc="penalty overhead", disable=args.no_progress):
            torch.set_num_threads(n)
            full, d_in = bench_relax._model(kind)
            tiny, tiny_in, tiny_hidden = tiny_model(kind)
            for size, (model, width, batch, repeats) in {
                    "full": (full, FULL_HIDDEN[kind], 256, args.repeats),
                    "tiny": (tiny, tiny_hidden, args.tiny_batch, 4 * args.repeats)}.items():
                t = measure(model, d_in if size == "full" else tiny_in, batch,
                            args.sketch, args.rounds, repeats)
                sketched = t[f"penalty_sketch={args.sketch}"]
                rows.append({"model": kind, "threads": n, "size": size, "hidden": width,
                             "batch": batch, "step_seconds": t,
                             "penalty_seconds": sketched - t["no penalties"],
                             "ratio_vs_exact": sketched / t["exact"]})
    finally:
        torch.set_num_threads(initial)
    for row in rows:
        full_row = next(r for r in rows if r["model"] == row["model"] and r["size"] == "full"
                        and r["threads"] == row["threads"])
        row["share_of_full_penalty"] = row["penalty_seconds"] / full_row["penalty_seconds"]
    meta = {"torch": torch.__version__, "machine": platform.machine(), "threads": threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "load_average_before": load, "load_average_after": os.getloadavg()[0],
            "sketch": args.sketch, "rounds": args.rounds, "repeats": args.repeats}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "penalty_overhead.json").write_text(
        json.dumps({"meta": meta, "results": rows}, indent=1))
    p = args.sketch
    command = "python benchmarks/bench_penalty_overhead.py" + "".join(
        f" {flag} {value}" for flag, value, default in (
            ("--sketch", p, 4), ("--threads", " ".join(map(str, threads)), "1 2"),
            ("--rounds", args.rounds, 15),
            ("--repeats", args.repeats, 5), ("--tiny-batch", args.tiny_batch, 16))
        if value != default)
    lines = [
        "# The sketched penalties' cost at full size and with tiny layers",
        "",
        f"Written by `{command}` (one run; variants interleaved, medians of {args.rounds} "
        f"rounds; torch {meta['torch']}, OpenMP wait policy "
        f"{meta['omp_wait_policy']}; 1-minute load average {load:.2f} before, "
        f"{meta['load_average_after']:.2f} after). Every layer relaxed, fused Adam, θ "
        f"mid-schedule. `full`: the MLP of `bench_relax.py`; `tiny`: the same group, actions, "
        "layers and code path with the hidden rep named, on a batch of "
        f"{args.tiny_batch} rows, where every product is tiny. Penalties' cost: the step with "
        f"`penalty_sketch={p}` minus the step without penalties. Share: the tiny model's "
        "penalty cost over the full-size one's at the same thread count: the part of it that "
        "does not shrink with the layers (operations, autograd bookkeeping, Python).",
        "",
        "| model | threads | size | hidden | batch | exact step (ms) | no penalties (ms) | "
        f"penalty_sketch={p} (ms) | sketched / exact | penalties' cost (ms) | share of full |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r["step_seconds"]
        lines.append(
            f"| {r['model']} | {r['threads']} | {r['size']} | {r['hidden']} | {r['batch']} | "
            f"{1e3 * t['exact']:.3f} | {1e3 * t['no penalties']:.3f} | "
            f"{1e3 * t[f'penalty_sketch={p}']:.3f} | {r['ratio_vs_exact']:.2f}x | "
            f"{1e3 * r['penalty_seconds']:.3f} | {r['share_of_full_penalty']:.2f} |")
    (args.out / "penalty_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
