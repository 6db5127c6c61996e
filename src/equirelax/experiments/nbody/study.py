"""The N-body study as a whole: every run of a command (models × variants × seeds, for every
swept value), trained in this process or in ``--jobs`` processes, and the outputs written from
the per-run results (also by ``--report-only``, without training)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from equirelax.data.nbody import NBodyDataset
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE, StudyError, UsageError
from equirelax.experiments.kit.tables import write_results
from equirelax.experiments.nbody.config import StudyConfig, run_name
from equirelax.experiments.nbody.data import load_data
from equirelax.experiments.nbody.plots import (
    plot_ablations,
    plot_free_terms,
    plot_sweep,
    plot_validation_curves,
)
from equirelax.experiments.nbody.tables import results_table, summarise
from equirelax.experiments.nbody.training import train_one


def load_reported_runs(cfg: StudyConfig, allow_missing: bool = False) -> list[dict[str, Any]]:
    """The per-run JSON files that a study with these settings wrote (for ``--report-only``).

    With ``allow_missing``, runs without results yet (a long study still under way) are left
    out with a warning, and the tables name them; without any result at all it fails."""
    folder = Path(cfg.out) / "runs"
    runs, missing = [], []

    for value in cfg.sweep_values if cfg.sweep else (None,):
        layers = value if cfg.sweep == "layers" else cfg.layers
        train_size = value if cfg.sweep == "train-size" else cfg.train_size
        for model in cfg.models:
            for seed in cfg.seeds:
                for arm in cfg.variants:
                    name = run_name(model, arm, layers, train_size, seed)
                    path = folder / f"{name}.json"
                    if not path.exists():
                        missing.append(path.name)
                        continue
                    runs.append(json.loads(path.read_text()))
    if missing and (not allow_missing or not runs):
        raise UsageError(
            f"--report-only found no results for {len(missing)} run(s) in {folder} "
            f"(e.g. {missing[0]}); run the study first"
        )
    if missing:
        print(f"equirelax nbody: warning: no results yet for {len(missing)} run(s) in {folder}: "
              + ", ".join(name.removesuffix(".json") for name in missing), file=sys.stderr)
    return runs


def _load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def write_outputs(cfg: StudyConfig, runs: list[dict[str, Any]], command: str,
                  redrawn_by: str | None = None, invocation: dict | None = None) -> Path:
    """Per-run JSON, the table (markdown + JSON) and the plots, under ``--out``.
    ``command`` trained the runs; ``redrawn_by`` (``--report-only``) redrew the outputs."""
    out = Path(cfg.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for r in runs:
        (out / "runs" / f"{r['name']}.json").write_text(json.dumps(r, indent=1) + "\n")
    key = {"layers": "layers", "train-size": "train_size"}.get(cfg.sweep or "")
    rows = summarise(runs, key)
    stem = f"sweep_{key}" if key else "results"
    write_results(out, stem, {"redrawn_by": redrawn_by, "invocation": invocation,
                              "config": asdict(cfg), "rows": rows},
                  [results_table(cfg, rows, runs, command, key, redrawn_by, invocation)],
                  command, smoke_test=cfg.preset == "quick")
    if key:
        plot_sweep(rows, key, out / f"{stem}.png")
    values = sorted({r[key] for r in runs}) if key else [None]
    for model in cfg.models:
        for value in values:
            chosen = [r for r in runs if r["model"] == model and (key is None or r[key] == value)]
            if not chosen:
                continue
            suffix = f"_{key.replace('train_size', 'n')}{value}" if key else ""
            size = chosen[0]["train_size"]
            title = f"{model.upper()} on charged N-body: {size} training samples" + (
                f", {chosen[0]['layers']} layers" if key == "layers" else "")
            plot_validation_curves(chosen, model, out / f"val_mse_{model}{suffix}.png", cfg,
                                   title)
            plot_free_terms(chosen, out / f"free_terms_{model}{suffix}.png",
                            f"Free-term size over training: {title.split(': ')[1]}")
    if any(arm not in ("exact", "relaxed") for arm in cfg.variants):
        plot_ablations(rows, runs, out / f"{stem}_ablations.png", key)
    return out


def run_study(cfg: StudyConfig, command: str) -> tuple[list[dict[str, Any]], Path | None]:
    """Every run of the study (models × arms × seeds, for every sweep value); outputs on rank 0.

    Returns the run results and the output folder (``None`` on other ranks).
    """
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_all(cfg, command)
    finally:
        torch.set_num_threads(previous_threads)


def _run_all(cfg: StudyConfig, command: str) -> tuple[list[dict[str, Any]], Path | None]:
    if cfg.report_only:
        runs = load_reported_runs(cfg, allow_missing=True)
        stem = {"layers": "sweep_layers", "train-size": "sweep_train_size"}.get(
            cfg.sweep or "", "results")
        previous = Path(cfg.out) / f"{stem}.json"
        if not previous.exists():
            return runs, write_outputs(cfg, runs, command)
        before = json.loads(previous.read_text())
        redrawn_by = None if before["command"] == command else command  # redrawn again
        return runs, write_outputs(cfg, runs, before["command"], redrawn_by=redrawn_by,
                                   invocation=before.get("invocation"))
    plan = [(value, model_name, seed, arm)
            for value in (cfg.sweep_values if cfg.sweep else (None,))
            for model_name in cfg.models for seed in cfg.seeds for arm in cfg.variants]
    if cfg.shard is not None:
        plan = plan[cfg.shard[0]::cfg.shard[1]]
    runs: list[dict[str, Any]] = []
    rank_zero = True
    start, cpu_start, load_start = time.perf_counter(), time.process_time(), _load_average()
    datasets: dict[int, dict[str, NBodyDataset]] = {}
    if cfg.jobs > 1:
        # every split generated (and cached) once, before the processes read it
        for size in {value if cfg.sweep == "train-size" else cfg.train_size
                     for value, *_ in plan}:
            load_data(cfg, size)
        _train_in_processes(cfg, command)
        runs = load_reported_runs(cfg)
        plan = []
    for value, model_name, seed, arm in plan:
        layers = value if cfg.sweep == "layers" else cfg.layers
        train_size = value if cfg.sweep == "train-size" else cfg.train_size
        if train_size not in datasets:
            datasets[train_size] = load_data(cfg, train_size)
        result = train_one(cfg, datasets[train_size], model_name, arm, seed, layers)
        if result is None:
            rank_zero = False
            continue
        runs.append(result)
        # each run's results are on disk as soon as it ends (a long study that is stopped
        # part way keeps them; --report-only redraws from them)
        folder = Path(cfg.out) / "runs"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{result['name']}.json").write_text(json.dumps(result, indent=1) + "\n")
        status = "" if result["completed"] else (
            f" (stopped after epoch {result['epochs_done']}; rerun to resume)")
        print(f"[nbody] {result['name']}: test MSE {result['test_mse']:.5f}, best "
              f"val {result['best_val_mse']:.5f}, {result['fit_seconds']:.0f} s"
              f"{status}", flush=True)
    if not rank_zero or cfg.shard is not None:  # the process that started the shards reports
        return runs, None
    invocation = {
        "jobs": cfg.jobs,
        "runs": len(runs),
        "trained_runs": sum(not r.get("tested_only", False) for r in runs),
        "wall_seconds": time.perf_counter() - start,
        "process_cpu_seconds": time.process_time() - cpu_start,
        "load_average_start": load_start,
        "load_average_end": _load_average(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": cfg.threads or torch.get_num_threads(),
        "devices": cfg.devices * cfg.num_nodes,
    }
    out = write_outputs(cfg, runs, command, invocation=invocation)
    print(f"[nbody] {len(runs)} runs in {time.perf_counter() - start:.0f} s; results in {out}",
          flush=True)
    if cfg.preset == "quick":
        print(SMOKE_TEST_NOTE, flush=True)
    return runs, out


def _train_in_processes(cfg: StudyConfig, command: str) -> None:
    """Train the study's runs in ``cfg.jobs`` processes at once (the same command with
    ``--jobs 1 --shard i/k``; each writes its runs' results as they end). An interruption is
    passed on to every process, which stops at a checkpoint; a process that fails fails the
    study (rerunning the command resumes what did not finish)."""
    import signal
    import subprocess

    # the processes resume from what is there: only this one deleted it for --fresh
    argv = [word for word in shlex.split(command)[1:] if word != "--fresh"]
    procs = [subprocess.Popen([sys.executable, "-m", "equirelax", *argv, "--jobs", "1",
                               "--shard", f"{i}/{cfg.jobs}"]) for i in range(cfg.jobs)]
    try:
        codes = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise
    failed = [(i, code) for i, code in enumerate(codes) if code != 0]
    if failed:
        raise StudyError(
            f"{len(failed)} of the {cfg.jobs} training processes failed (process: exit status "
            + ", ".join(f"{i}: {code}" for i, code in failed)
            + "); rerun the same command to resume the runs that did not finish")
