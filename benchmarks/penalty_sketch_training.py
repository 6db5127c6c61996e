"""What the sketched penalty does to training: exact penalty vs ``penalty_sketch=p``, paired.

The penalties take a square root of an estimated sum of squares, so the noise of a sketch lowers
the expected penalty (E[√X̂] ≤ √E[X̂]) and could weaken the regulariser. Two studies measure it,
each arm of a seed starting from the same weights and the same free terms:

* teacher–student (the relax study's setting: S3, natural hidden rep, tanh, full-batch Adam;
  6144 rows per layer input): the relaxed-then-hardened student with the exact penalty and with
  sketches of p rows. Every ``--every`` steps the exact penalties of the current free terms are
  evaluated on all rows (what the regulariser is meant to hold down), beside the value the
  optimiser saw; at the end the hardened student's test MSE.
* N-body (``equirelax nbody``, a short preset, the relaxed arm): the same runs with
  ``--penalty-sketch p``; the hardened model's test MSE and best validation MSE.

Paired differences are reported as ratios sketch / exact with 95% t-intervals on the log ratios
over seeds. Writes benchmarks/results/penalty_sketch_training.{json,md}.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/penalty_sketch_training.py     # ~30 min, 1 core
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import equirelax as er
from equirelax.experiments.kit.tables import paired_interval
from equirelax.experiments.teacher_student import (
    TeacherStudentConfig,
    reference_teacher,
    symmetric_data,
)
from equirelax.groups import from_name as parse_group
from equirelax.relaxation import harden, relax
from equirelax.reps import parse as parse_rep

RESULTS = Path(__file__).parent / "results"


# -- teacher–student ------------------------------------------------------------------------
def _exact_penalties(relaxed, x: torch.Tensor) -> tuple[float, float]:
    """The exact (lie, norm) penalties of the current free terms on every row of ``x``."""
    layers = list(relaxed.relaxed_layers().values())
    sketches = [layer.penalty_sketch for layer in layers]
    for layer in layers:
        layer.penalty_sketch = None
    relaxed.penalties()  # drop anything recorded before
    relaxed(x)
    p = relaxed.penalties()
    for layer, sketch in zip(layers, sketches):
        layer.penalty_sketch = sketch
    return float(p["lie"].detach()), float(p["norm"].detach())


def teacher_student_run(
    cfg: TeacherStudentConfig, seed: int, sketch: int | None, data: dict, every: int
) -> dict:
    """One relaxed-then-hardened student of the relax study, with the exact penalty (``sketch``
    None) or a sketch of ``sketch`` rows; the penalties along the way and the hardened MSE."""
    G = parse_group(cfg.group)
    torch.manual_seed(seed)
    student = er.nn.EquivariantMLP(
        er.reps.natural(G),
        [parse_rep(G, cfg.student_rep)],
        er.reps.trivial(G),
        activation=cfg.activation,
    ).double()
    torch.manual_seed(10_000 + seed)  # the free terms: the same in every arm of the seed
    relaxed = relax(
        student,
        schedule=cfg.schedule,
        total_steps=cfg.steps,
        lie_weight=cfg.lie_weight,
        norm_weight=cfg.norm_weight,
        init_std=cfg.free_init_std,
        penalty_sketch=sketch,
    )
    relaxed.seed_penalties(20_000 + seed)
    x, y = data["x"], data["y"]
    opt = torch.optim.Adam(relaxed.parameters(), lr=cfg.lr)
    trace = {
        "step": [],
        "theta": [],
        "seen_lie": [],
        "seen_norm": [],
        "exact_lie": [],
        "exact_norm": [],
    }
    relaxed.train()
    for step in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        mse = torch.mean((relaxed(x).squeeze(-1) - y) ** 2)
        p = relaxed.penalties()
        loss = mse + relaxed.lie_weight * p["lie"] + relaxed.norm_weight * p["norm"]
        loss.backward()
        if step % every == 0 and relaxed.theta > 0:
            trace["step"].append(step)
            trace["theta"].append(relaxed.theta)
            trace["seen_lie"].append(float(p["lie"].detach()))
            trace["seen_norm"].append(float(p["norm"].detach()))
            lie, norm = _exact_penalties(relaxed, x)
            trace["exact_lie"].append(lie)
            trace["exact_norm"].append(norm)
        opt.step()
        relaxed.step()
    hard = harden(relaxed).eval()
    with torch.no_grad():
        test = float(torch.mean((hard(data["x_test"]).squeeze(-1) - data["y_test"]) ** 2))
        train = float(torch.mean((hard(x).squeeze(-1) - y) ** 2))
    return {
        "seed": seed,
        "sketch": sketch,
        "hardened_test_mse": test,
        "hardened_train_mse": train,
        "mean_exact_lie": float(np.mean(trace["exact_lie"])),
        "mean_exact_norm": float(np.mean(trace["exact_norm"])),
        "mean_seen_lie": float(np.mean(trace["seen_lie"])),
        "mean_seen_norm": float(np.mean(trace["seen_norm"])),
        "trace": trace,
    }


def teacher_student(seeds: int, sketches: list[int], steps: int, every: int) -> dict:
    cfg = TeacherStudentConfig(steps=steps)
    G = parse_group(cfg.group)
    teacher = reference_teacher(G, parse_rep(G, cfg.teacher_rep), cfg.activation)
    x = symmetric_data(G, cfg.n_base, cfg.data_seed)
    x_test = torch.from_numpy(
        np.random.default_rng(cfg.data_seed + 1).standard_normal((cfg.n_test, G.degree))
    )
    with torch.no_grad():
        data = {
            "x": x,
            "y": teacher(x).squeeze(-1),
            "x_test": x_test,
            "y_test": teacher(x_test).squeeze(-1),
        }
    arms: list[int | None] = [None, *sketches]
    runs = []
    for seed in tqdm(range(seeds), desc="teacher–student seeds"):
        for sketch in arms:
            start = time.perf_counter()
            run = teacher_student_run(cfg, seed, sketch, data, every)
            run["seconds"] = time.perf_counter() - start
            runs.append(run)
    return {
        "config": {
            "group": cfg.group,
            "teacher_rep": cfg.teacher_rep,
            "student_rep": cfg.student_rep,
            "activation": cfg.activation,
            "n_base": cfg.n_base,
            "rows": int(x.shape[0]),
            "steps": cfg.steps,
            "lr": cfg.lr,
            "lie_weight": cfg.lie_weight,
            "norm_weight": cfg.norm_weight,
            "free_init_std": cfg.free_init_std,
            "schedule": cfg.schedule,
            "every": every,
            "seeds": seeds,
        },
        "runs": runs,
    }


# -- N-body ---------------------------------------------------------------------------------
def nbody(
    seeds: int, sketches: list[int], preset: str, model: str, epochs: int | None, work: Path
) -> dict:
    """The relaxed arm of ``equirelax nbody`` with the exact penalty and with each sketch, in
    child processes (one thread each); returns the per-run rows of each."""
    arms: list[int | None] = [None, *sketches]
    out: dict = {
        "preset": preset,
        "model": model,
        "epochs": epochs,
        "seeds": seeds,
        "commands": {},
        "rows": {},
    }
    for sketch in tqdm(arms, desc="N-body arms"):
        name = "exact" if sketch is None else f"p{sketch}"
        tag = f"penalty-sketch-{name}"
        cmd = [
            sys.executable,
            "-m",
            "equirelax",
            "nbody",
            "--preset",
            preset,
            "--model",
            model,
            "--variants",
            "relaxed",
            "--seeds",
            f"0-{seeds - 1}",
            "--threads",
            "1",
            "--runs-dir",
            str(work / "runs" / tag),
            "--out",
            str(work / "results" / tag),
            "--no-progress",
        ]
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        if sketch is not None:
            cmd += ["--penalty-sketch", str(sketch)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        files = sorted((work / "results" / tag / "runs").glob("*.json"))
        if len(files) != seeds:
            raise FileNotFoundError(
                f"expected {seeds} per-run results under "
                f"{work / 'results' / tag / 'runs'}, found {len(files)}"
            )
        rows = []
        for f in files:
            run = json.loads(f.read_text())
            rows.append(
                {
                    "seed": run["seed"],
                    "test_mse": run["test_mse"],
                    "best_val_mse": run["best_val_mse"],
                    "fit_seconds": run["fit_seconds"],
                    "mean_penalty": float(np.mean([v for _, v in run["penalty_curve"]])),
                    "mean_free_term": float(np.mean([v for _, v in run["free_term_curve"]])),
                }
            )
        out["commands"][name] = " ".join(shlex.quote(c) for c in cmd[3:])  # from "nbody"
        out["rows"][name] = {"seconds": seconds, "rows": rows}
    return out


# -- summaries ------------------------------------------------------------------------------
def paired_log_ratio(a: list[float], b: list[float]) -> dict:
    """Geometric mean of b/a over paired seeds, with a 95% t-interval (on the log ratios; with
    one seed the interval is undefined, nan)."""
    ratio, low, high = paired_interval(np.asarray(b, dtype=float) / np.asarray(a, dtype=float))
    return {"n": len(a), "ratio": ratio, "low": low, "high": high}


def _cell(r: dict) -> str:
    return f"{r['ratio']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"


def summarise(ts: dict, nb: dict | None) -> tuple[dict, list[str]]:
    summary: dict = {"teacher_student": {}, "nbody": {}}
    runs = ts["runs"]
    exact = {r["seed"]: r for r in runs if r["sketch"] is None}
    sketches = sorted({r["sketch"] for r in runs if r["sketch"] is not None})
    c = ts["config"]
    lines = [
        "## Teacher–student (the relax study's setting)",
        "",
        f"{c['group']}, teacher and student hidden rep `{c['student_rep']}`, {c['activation']}, "
        f"{c['rows']} rows per layer input, {c['steps']} full-batch Adam steps (lr {c['lr']}), "
        f"`{c['schedule']}` schedule, lie/norm weights {c['lie_weight']}/{c['norm_weight']}, "
        f"free terms dropped at the end; {c['seeds']} seeds, every arm of a seed from the same "
        f"weights. Penalties every {c['every']} steps while θ > 0, averaged over training: "
        "*seen* is what the optimiser got (the estimate for a sketch), *exact* is the exact "
        "penalty of the same free terms on all rows. Ratios are sketch / exact-penalty arm, "
        "geometric means over seeds with 95% t-intervals.",
        "",
        "| penalty | seen / exact, same run (lie) | seen / exact, same run (norm) "
        "| exact lie penalty vs exact arm | exact norm penalty vs exact arm "
        "| hardened test MSE vs exact arm | median hardened test MSE |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    med = float(np.median([r["hardened_test_mse"] for r in exact.values()]))
    lines.append(f"| exact | 1 | 1 | 1 | 1 | 1 | {med:.3e} |")
    for p in sketches:
        arm = {r["seed"]: r for r in runs if r["sketch"] == p}
        seeds = sorted(set(arm) & set(exact))
        row = {
            "seen_over_exact_lie": paired_log_ratio(
                [arm[s]["mean_exact_lie"] for s in seeds], [arm[s]["mean_seen_lie"] for s in seeds]
            ),
            "seen_over_exact_norm": paired_log_ratio(
                [arm[s]["mean_exact_norm"] for s in seeds],
                [arm[s]["mean_seen_norm"] for s in seeds],
            ),
            "exact_lie_vs_exact_arm": paired_log_ratio(
                [exact[s]["mean_exact_lie"] for s in seeds],
                [arm[s]["mean_exact_lie"] for s in seeds],
            ),
            "exact_norm_vs_exact_arm": paired_log_ratio(
                [exact[s]["mean_exact_norm"] for s in seeds],
                [arm[s]["mean_exact_norm"] for s in seeds],
            ),
            "hardened_test_mse_vs_exact_arm": paired_log_ratio(
                [exact[s]["hardened_test_mse"] for s in seeds],
                [arm[s]["hardened_test_mse"] for s in seeds],
            ),
            "median_hardened_test_mse": float(
                np.median([arm[s]["hardened_test_mse"] for s in seeds])
            ),
        }
        summary["teacher_student"][f"p{p}"] = row
        lines.append(
            f"| sketch p={p} | {_cell(row['seen_over_exact_lie'])} | "
            f"{_cell(row['seen_over_exact_norm'])} | "
            f"{_cell(row['exact_lie_vs_exact_arm'])} | "
            f"{_cell(row['exact_norm_vs_exact_arm'])} | "
            f"{_cell(row['hardened_test_mse_vs_exact_arm'])} | "
            f"{row['median_hardened_test_mse']:.3e} |"
        )
    if nb is None:
        return summary, lines
    lines += [
        "",
        f"## N-body ({nb['model'].upper()}, `--preset {nb['preset']}`"
        + (f", {nb['epochs']} epochs" if nb["epochs"] else "")
        + ", relaxed arm)",
        "",
        "The relaxed-then-hardened model trained by `equirelax "
        # records written before the command was stored from "nbody" on held "-m equirelax"
        + nb["commands"]["exact"].removeprefix("-m equirelax ")
        + "` and the same command with `--penalty-sketch p`; "
        "ratios sketch / exact penalty over paired seeds, geometric means with 95% "
        "t-intervals. *Penalty seen*: the weighted penalty the optimiser got, averaged over the "
        "epochs; *free-term size*: the study's relative size of the free terms' output, "
        "averaged over the epochs (what the penalties hold down).",
        "",
        "| penalty | runs | penalty seen (epoch mean) vs exact | free-term size vs exact "
        "| hardened test MSE vs exact | best validation MSE vs exact | median test MSE "
        "| training time (s, all seeds) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def by_seed(name: str) -> dict:
        return {r["seed"]: r for r in nb["rows"][name]["rows"]}

    base = by_seed("exact")
    lines.append(
        f"| exact | {len(base)} | 1 | 1 | 1 | 1 | "
        f"{np.median([r['test_mse'] for r in base.values()]):.3e} | "
        f"{nb['rows']['exact']['seconds']:.0f} |"
    )
    for name in nb["rows"]:
        if name == "exact":
            continue
        arm = by_seed(name)
        seeds = sorted(set(arm) & set(base))
        row = {
            "penalty_vs_exact": paired_log_ratio(
                [base[s]["mean_penalty"] for s in seeds], [arm[s]["mean_penalty"] for s in seeds]
            ),
            "free_term_vs_exact": paired_log_ratio(
                [base[s]["mean_free_term"] for s in seeds],
                [arm[s]["mean_free_term"] for s in seeds],
            ),
            "test_mse_vs_exact": paired_log_ratio(
                [base[s]["test_mse"] for s in seeds], [arm[s]["test_mse"] for s in seeds]
            ),
            "best_val_mse_vs_exact": paired_log_ratio(
                [base[s]["best_val_mse"] for s in seeds], [arm[s]["best_val_mse"] for s in seeds]
            ),
            "median_test_mse": float(np.median([arm[s]["test_mse"] for s in seeds])),
            "seconds": nb["rows"][name]["seconds"],
        }
        summary["nbody"][name] = row
        lines.append(
            f"| sketch p={name[1:]} | {len(seeds)} | {_cell(row['penalty_vs_exact'])} "
            f"| {_cell(row['free_term_vs_exact'])} | {_cell(row['test_mse_vs_exact'])} "
            f"| {_cell(row['best_val_mse_vs_exact'])} | {row['median_test_mse']:.3e} "
            f"| {row['seconds']:.0f} |"
        )
    return summary, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="teacher–student seeds")
    parser.add_argument("--sketches", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--steps", type=int, default=TeacherStudentConfig().steps)
    parser.add_argument(
        "--every", type=int, default=20, help="steps between evaluations of the exact penalty"
    )
    parser.add_argument("--nbody-seeds", type=int, default=3, help="0 skips the N-body study")
    parser.add_argument("--nbody-sketches", type=int, nargs="+", default=[16])
    parser.add_argument("--nbody-preset", default="quick")
    parser.add_argument("--nbody-model", default="egnn")
    parser.add_argument("--nbody-epochs", type=int, default=None)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="run folders of the N-body study (default: a temporary folder)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: redraw the markdown table from the JSON results",
    )
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads((RESULTS / "penalty_sketch_training.json").read_text()))
        return
    for name in ("seeds", "steps", "every"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    ts = teacher_student(args.seeds, args.sketches, args.steps, args.every)
    nb = None
    if args.nbody_seeds > 0:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work or Path(tmp)
            nb = nbody(
                args.nbody_seeds,
                args.nbody_sketches,
                args.nbody_preset,
                args.nbody_model,
                args.nbody_epochs,
                work,
            )
    summary, _ = summarise(ts, nb)
    command = "python benchmarks/penalty_sketch_training.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    meta = {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": 1,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "seconds": time.perf_counter() - start,
        "command": command.strip(),
    }
    RESULTS.mkdir(exist_ok=True)
    result = {"meta": meta, "summary": summary, "teacher_student": ts, "nbody": nb}
    (RESULTS / "penalty_sketch_training.json").write_text(json.dumps(result, indent=1) + "\n")
    write_report(result)


def write_report(result: dict) -> None:
    """The markdown table of a result (as the JSON holds it), written and printed."""
    meta = result["meta"]
    _, lines = summarise(result["teacher_student"], result["nbody"])
    head = [
        "# Sketched vs exact relaxation penalty in training",
        "",
        f"Written by `{meta['command']}` (torch {meta['torch']}, one thread, "
        f"OMP_WAIT_POLICY={meta['omp_wait_policy']}; {meta['seconds'] / 60:.0f} min; 1-minute "
        f"load average {meta['load_average_before']:.2f} → {meta['load_average_after']:.2f}; "
        "`--report-only` redraws this table from the JSON).",
        "",
    ]
    text = "\n".join(head + lines) + "\n"
    (RESULTS / "penalty_sketch_training.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
