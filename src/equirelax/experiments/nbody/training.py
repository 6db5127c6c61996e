"""One run of the N-body study: trained (or resumed) through the kit's runner, then tested,
measured and recorded; and how far a run's checkpoints got."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from equirelax.data.nbody import NBodyDataset
from equirelax.experiments.kit.runner import (
    RunConfig,
    fit,
    load_checkpoint,
    parameter_count,
    read_curve,
)
from equirelax.experiments.kit.runs import check_run_settings
from equirelax.experiments.nbody.callbacks import FreeTermMonitor, StopAfter
from equirelax.experiments.nbody.config import StudyConfig, arm_relaxation, run_name, run_settings
from equirelax.experiments.nbody.data import loaders
from equirelax.experiments.nbody.metrics import (
    e3_equivariance_error,
    free_term_sizes,
    test_error_profile,
)
from equirelax.experiments.nbody.models import build_model, mse, predict
from equirelax.experiments.nbody.sampler import RandomRotations


def epochs_checkpointed(run_dir: Path) -> int:
    """Training epochs processed by the run's last checkpoint (0 without one).

    Read from the fit loop's progress: the checkpoint's ``epoch`` field depends on whether it
    was written before or after the epoch counter moved on."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        return 0
    state = load_checkpoint(last)
    return int(state["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"])


def train_one(
    cfg: StudyConfig,
    data: dict[str, NBodyDataset],
    model_name: str,
    arm: str,
    seed: int,
    layers: int,
) -> dict[str, Any] | None:
    """Train (or resume) one run and return its results (``None`` on ranks other than 0)."""
    train_size = len(data["train"])
    name = run_name(model_name, arm, layers, train_size, seed)
    torch.manual_seed(seed)  # the same initial weights in both arms
    model = build_model(model_name, layers, cfg.egnn_hidden, cfg.segnn_hidden)
    train, val, test = loaders(cfg, data, seed)
    relaxation = arm_relaxation(cfg, arm)
    run_cfg = RunConfig(
        epochs=cfg.epochs,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        seed=seed,
        relax=None if relaxation is None else relaxation["schedule"],
        lie_weight=cfg.lie_weight if relaxation is None else relaxation["lie_weight"],
        norm_weight=cfg.norm_weight if relaxation is None else relaxation["norm_weight"],
        relax_interval="epoch",
        relax_init_std=cfg.relax_init_std,
        penalty_rows=cfg.penalty_rows,
        penalty_sketch=cfg.penalty_sketch,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        accelerator=cfg.accelerator,
        out_dir=str(Path(cfg.runs_dir) / name),
        progress=cfg.progress,
        check_val_every_n_epoch=cfg.val_every,
        checkpoint_every_n_epochs=cfg.val_every,
        extra={"study": "nbody", "model": model_name, "arm": arm, "layers": layers,
               "train_size": train_size},
    )
    check_run_settings(Path(run_cfg.out_dir), run_settings(cfg, model_name, arm))
    callbacks: list[pl.Callback] = []
    if cfg.augment != "none":
        callbacks.append(RandomRotations(seed, cfg.augment))
    if cfg.stop_after is not None:
        callbacks.append(StopAfter(cfg.stop_after))
    if relaxation is not None:
        probe = data["val"].tensors()
        k = min(100, len(data["val"]))
        callbacks.append(FreeTermMonitor(probe.loc[:k], probe.vel[:k], probe.charges[:k]))
    finished_before = epochs_checkpointed(Path(run_cfg.out_dir)) >= cfg.epochs
    task, results = fit(model, train, val, test, predict, mse, run_cfg, callbacks=callbacks)
    if not task.trainer.is_global_zero:
        return None
    epochs_done = int(task.trainer.current_epoch)
    exact = task.exact_model().cpu().float()
    sample = data["test"].tensors()
    k = min(100, len(data["test"]))
    errors = e3_equivariance_error(exact, sample.loc[:k], sample.vel[:k], sample.charges[:k])
    tail = test_error_profile(exact, data["test"])
    out_dir = Path(run_cfg.out_dir)
    penalty_curve: list = []
    free_sizes: dict[str, float] = {}
    free_curve: list = []
    theta_curve: list = []
    if relaxation is not None:
        penalty_curve = read_curve(out_dir / "csv", "train/penalty_epoch") or read_curve(
            out_dir / "csv", "train/penalty")
        free_sizes = free_term_sizes(task.net, sample.loc[:k], sample.vel[:k], sample.charges[:k])
        free_curve = read_curve(out_dir / "csv", FreeTermMonitor.SIZE)
        theta_curve = read_curve(out_dir / "csv", FreeTermMonitor.THETA)
    return {
        "name": name,
        "model": model_name,
        "arm": arm,
        "seed": seed,
        "layers": layers,
        "train_size": train_size,
        "epochs": cfg.epochs,
        "epochs_done": epochs_done,
        "completed": epochs_done >= cfg.epochs,
        "schedule": None if relaxation is None else relaxation["schedule"],
        "lie_weight": None if relaxation is None else relaxation["lie_weight"],
        "norm_weight": None if relaxation is None else relaxation["norm_weight"],
        "parameters": parameter_count(exact),
        "parameters_while_training": parameter_count(task.net),
        "best_val_mse": results["best_val_loss"],
        "test_mse": results.get("test", {}).get("test/loss"),
        **tail,
        # a run finished before this invocation was only tested again: its time is unchanged
        "tested_only": finished_before,
        "fit_seconds": results["training_seconds"],  # over every (re)start of this run
        "resumed_from": results["resumed_from"] is not None,
        "hardened_e3_error_float32": errors,
        "val_curve": results["val_curve"],
        "penalty_curve": penalty_curve,
        "free_term_relative_size": free_sizes,
        # (epoch, mean over relaxed layers of ||W x|| / ||F_eq(x)||) at every validation, on
        # validation inputs, and θ at those epochs: whether the free terms ever grow
        "free_term_curve": free_curve,
        "theta_curve": theta_curve,
    }
