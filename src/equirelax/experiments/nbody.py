"""``equirelax nbody``: constraint relaxation on charged N-body with EGNN and SEGNN.

The study of the constraint-relaxation paper that can be reproduced from locally generated
data: predict the positions of 5 charged particles 1000 integrator steps ahead
(``equirelax.data.nbody``) with an exactly E(3)-equivariant EGNN or SEGNN, trained either as
is ("exact") or relaxed with the public ``equirelax.relaxation.relax`` API and hardened back to
the same exact architecture at the end ("relaxed"). Both arms of a comparison use the same seed
(same initial weights, same data, same batch order, same rotations), the same optimiser and
the same number of epochs; validation and test always run the exact (θ = 0) model.

What is relaxed is what the models declare (``rep_in``/``rep_out``): the two node-update maps
of every SEGNN layer (as in the paper) and the node/position update of every EGNN layer (see
``docs/nbody.md``). The relaxation schedule is stepped once per epoch, as in the paper.

Presets (``--preset``, ``--quick``): ``paper`` (3000 training samples, 1000 epochs, 3 seeds),
``cpu`` (the largest budget run on a 2-core CPU), ``quick`` (a few minutes). Every option
overrides its preset value. Sweeps of the paper's figure: ``--sweep layers`` or
``--sweep train-size`` with ``--sweep-values``. ``--devices N`` trains each run with DDP on N
processes (gloo on CPU, NCCL on GPUs), ``--num-nodes`` scales to several nodes.

Outputs: checkpoints and Lightning logs (CSV, TensorBoard) under ``--runs-dir``; a results JSON
per run, a results table (mean ± std over seeds) and plots of validation MSE per epoch (exact vs
relaxed), or the sweep table and plot, under ``--results-dir/<tag>``. Every table names the
command that wrote it. Rerunning a command resumes every unfinished run from its last
checkpoint (``--stop-after K`` ends each run after K more epochs, for time-sliced jobs).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from equirelax.data.nbody import NBodyDataset, NBodySample
from equirelax.experiments.kit.argtypes import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE, require_writable
from equirelax.experiments.kit.runner import (
    EpochShuffle,
    RunConfig,
    fit,
    load_checkpoint,
    parameter_count,
    read_curve,
)
from equirelax.relaxation import SCHEDULES

MODELS = ("egnn", "segnn")
#: The exact model, the paper's relaxation, and the paper's ablations of it (each relaxed arm is
#: evaluated hardened, θ = 0): no schedule (θ = 0.1 throughout, the paper's "no cycle"), no
#: Lie-derivative term, no penalty at all; and between the last two, both penalties at a tenth
#: of their weights (how the outcome depends on the penalty's strength).
ARMS = ("exact", "relaxed", "no-schedule", "no-lie", "weak-penalty", "no-penalty")
ARM_CHANGES: dict[str, dict[str, Any]] = {
    "relaxed": {},
    "no-schedule": {"schedule": "constant"},
    "no-lie": {"lie_weight": 0.0},
    "weak-penalty": {"lie_weight": 0.1, "norm_weight": 0.1},  # factors on the study's weights
    "no-penalty": {"lie_weight": 0.0, "norm_weight": 0.0},
}
#: Changes of ARM_CHANGES that multiply the study's value instead of replacing it.
_SCALED = {"weak-penalty"}
SWEEPS = ("layers", "train-size")


# -- settings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A training budget: data sizes, epochs, seeds, validation interval."""

    epochs: int
    train_size: int
    val_size: int
    test_size: int
    seeds: int
    val_every: int = 1
    sweep_layers: tuple[int, ...] = (1, 2, 3, 4)
    sweep_train_sizes: tuple[int, ...] = (100, 300, 1000, 3000)


PRESETS: dict[str, Preset] = {
    # the paper's protocol (SEGNN N-body): about 1.5-6 h per run on 2 CPU cores, minutes on a GPU
    "paper": Preset(epochs=1000, train_size=3000, val_size=2000, test_size=2000, seeds=3,
                    val_every=5),
    # the largest budget that was run on 2 shared CPU cores (see docs/nbody.md)
    "cpu": Preset(epochs=40, train_size=1000, val_size=500, test_size=2000, seeds=3,
                  sweep_layers=(1, 2, 4), sweep_train_sizes=(100, 300, 1000)),
    # end to end in a few minutes: checks the pipeline, not the science
    "quick": Preset(epochs=25, train_size=500, val_size=300, test_size=500, seeds=1,
                    sweep_layers=(1, 2), sweep_train_sizes=(100, 300)),
}


@dataclass(frozen=True)
class StudyConfig:
    """Every setting of one invocation, with the preset resolved."""

    preset: str
    models: tuple[str, ...]
    arms: tuple[str, ...]
    schedule: str
    epochs: int
    train_size: int
    val_size: int
    test_size: int
    seeds: tuple[int, ...]
    layers: int
    egnn_hidden: int
    segnn_hidden: str
    batch_size: int
    eval_batch_size: int
    lr: float
    weight_decay: float
    lie_weight: float
    norm_weight: float
    relax_init_std: float
    penalty_rows: int | None
    augment: str
    val_every: int
    devices: int
    num_nodes: int
    accelerator: str
    threads: int
    sweep: str | None
    sweep_values: tuple[int, ...]
    tag: str
    runs_dir: str
    results_dir: str
    cache_dir: str | None
    stop_after: int | None
    progress: bool
    report_only: bool = False
    jobs: int = 1
    shard: tuple[int, int] | None = None
    penalty_sketch: int | None = None


# -- data -------------------------------------------------------------------------------------
def random_orthogonal(
    seed: int, *, reflections: bool = False, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """A Haar-random rotation in SO(3) from ``seed``; with ``reflections``, times -1 (an
    improper element of O(3)) with probability 1/2."""
    gen = torch.Generator().manual_seed(int(seed))
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflections and torch.rand((), generator=gen) < 0.5:
        q = -q
    return q.to(dtype)


class RandomRotations(pl.Callback):
    """Rotate each training batch (positions, velocities, targets) by one random element.

    The paper trains on randomly rotated batches, since a relaxed model is not equivariant while
    it trains. The element depends only on (seed, global step), so both arms of a comparison see
    the same rotations and a resumed run continues the same sequence. ``group``: ``"so3"``
    (rotations, as in the paper) or ``"o3"`` (rotations and reflections).
    """

    def __init__(self, seed: int, group: str = "so3") -> None:
        if group not in ("so3", "o3"):
            raise ValueError(f"group must be 'so3' or 'o3', got {group!r}")
        self.seed, self.group = seed, group

    def rotate(self, batch: NBodySample, step: int) -> None:
        """Rotate ``batch`` in place by the element of optimiser step ``step``."""
        rot = random_orthogonal(
            self.seed * 7_919 + 104_729 * step + 1,
            reflections=self.group == "o3",
        ).to(device=batch.loc.device, dtype=batch.loc.dtype)
        for tensor in (batch.loc, batch.vel, batch.target):
            tensor.copy_(tensor @ rot.T)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rotate(batch, trainer.global_step)


class StopAfter(pl.Callback):
    """End the run after ``epochs`` more epochs (its last checkpoint is kept); rerunning the same
    command resumes it. For time-sliced jobs, and to test resuming. An epoch that a resumed run
    finishes (it was interrupted part way) counts as one."""

    def __init__(self, epochs: int) -> None:
        if epochs < 1:
            raise ValueError(f"--stop-after must be >= 1, got {epochs}")
        self.epochs = epochs
        self.start: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # not on_train_epoch_start: Lightning does not call it for an epoch resumed part way
        if self.start is None:
            self.start = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.start is not None and trainer.current_epoch + 1 - self.start >= self.epochs:
            trainer.should_stop = True


def load_data(cfg: StudyConfig, train_size: int) -> dict[str, NBodyDataset]:
    """The three splits (generated once, then read from the cache)."""
    sizes = {"train": train_size, "val": cfg.val_size, "test": cfg.test_size}
    return {
        split: NBodyDataset(split, size, cache_dir=cfg.cache_dir, progress=cfg.progress)
        for split, size in sizes.items()
    }


def loaders(
    cfg: StudyConfig, data: dict[str, NBodyDataset], seed: int
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Training loader (seeded epoch order; Lightning's distributed sampler under DDP) and the
    validation and test loaders."""
    if cfg.devices * cfg.num_nodes > 1:
        train = DataLoader(data["train"], batch_size=cfg.batch_size, shuffle=True)
        val = DataLoader(data["val"], batch_size=cfg.eval_batch_size)
        test = DataLoader(data["test"], batch_size=cfg.eval_batch_size)
        return train, val, test
    # one process: whole batches gathered at once (the dataset takes a list of indices)
    train = DataLoader(data["train"], batch_size=None,
                       sampler=EpochShuffle(len(data["train"]), seed, cfg.batch_size))

    def in_order(split: str) -> DataLoader:
        n = len(data[split])
        batches = [list(range(i, min(n, i + cfg.eval_batch_size)))
                   for i in range(0, n, cfg.eval_batch_size)]
        return DataLoader(data[split], batch_size=None, sampler=batches)

    return train, in_order("val"), in_order("test")


# -- models -----------------------------------------------------------------------------------
def build_model(name: str, layers: int, egnn_hidden: int = 64,
                segnn_hidden: str = "32x0e+32x1o") -> nn.Module:
    """EGNN or SEGNN with ``layers`` message-passing layers (the paper's sizes by default)."""
    if name == "egnn":
        from equirelax.nn.egnn import EGNN

        return EGNN(hidden_features=egnn_hidden, num_layers=layers)
    if name == "segnn":
        from equirelax.nn.segnn import SEGNN

        return SEGNN(hidden_irreps=segnn_hidden, num_layers=layers)
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def predict(model: nn.Module, batch: NBodySample) -> tuple[torch.Tensor, torch.Tensor]:
    """Step function of the runner: predicted and target positions of a batch."""
    return model(batch.loc, batch.vel, batch.charges), batch.target


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all coordinates (the metric of the EGNN/SEGNN papers)."""
    return torch.mean((pred - target) ** 2)


@torch.no_grad()
def e3_equivariance_error(
    model: nn.Module,
    loc: torch.Tensor,
    vel: torch.Tensor,
    charges: torch.Tensor,
    trials: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Largest relative errors of ``model`` under random E(3) elements (float32 by default).

    For each trial a random orthogonal matrix (rotations and, every other trial, reflections)
    and a random translation per graph: ``positions`` compares f(g x) with g f(x);
    ``displacement`` compares the predicted moves f(g x) − g x and R (f(x) − x), the stricter
    measure (translations do not inflate its denominator).
    """
    model = model.eval()
    base = model(loc, vel, charges)
    gen = torch.Generator().manual_seed(seed)
    worst = {"positions": 0.0, "displacement": 0.0}
    for k in range(trials):
        rot = random_orthogonal(seed * 31 + k, dtype=loc.dtype)
        if k % 2 == 1:
            rot = -rot
        shift = (3 * torch.randn(loc.shape[0], 1, 3, generator=gen)).to(loc.dtype)
        moved_in = loc @ rot.T + shift
        moved = model(moved_in, vel @ rot.T, charges)
        expected = base @ rot.T + shift
        pos = float((moved - expected).norm() / expected.norm())
        disp = float(((moved - moved_in) - (base - loc) @ rot.T).norm()
                     / ((base - loc) @ rot.T).norm())
        worst["positions"] = max(worst["positions"], pos)
        worst["displacement"] = max(worst["displacement"], disp)
    return worst


@torch.no_grad()
def free_term_sizes(
    relaxed: nn.Module, loc: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor
) -> dict[str, float]:
    """``||W x|| / ||F_eq(x)||`` of every relaxed layer on a batch: how large the free terms
    are next to the equivariant maps they are added to (with weight θ) at the end of training."""
    from equirelax.relaxation import Relaxed

    sizes: dict[str, float] = {}
    hooks = []
    for name, module in relaxed.named_modules():
        if isinstance(module, Relaxed):

            def record(mod, args, output, name=name):
                x, rest = args[0], args[1:]
                eq = mod.layer(x, *rest)
                sizes[name.removeprefix("model.")] = float(mod.apply_free(x).norm() / eq.norm())

            hooks.append(module.register_forward_hook(record))
    was_training = relaxed.training
    try:
        relaxed.eval()
        first = next(relaxed.parameters())
        relaxed(loc.to(first), vel.to(first), charges.to(first))
    finally:
        relaxed.train(was_training)
        for hook in hooks:
            hook.remove()
    return sizes


#: Share of the worst test samples left out of the trimmed test MSE.
TRIM = 0.01


@torch.no_grad()
def test_error_profile(model: nn.Module, data: NBodyDataset,
                       batch_size: int = 500) -> dict[str, Any]:
    """Per-sample test errors of the selected model: the mean of the per-sample MSEs once the
    worst ``TRIM`` of them are left out, their median, and the worst ones.

    The test MSE of a model trained on few samples can be dominated by one simulation on which
    it fails badly (a close encounter of two particles: one sample's MSE of 80 moves the mean
    over 2000 by 0.04, as much as the whole comparison); the trimmed mean shows whether a
    difference between arms is broad or comes from such outliers."""
    model = model.eval()
    first = next(model.parameters())
    per_sample = []
    full = data.tensors()
    for i in range(0, len(data), batch_size):
        part = [t[i:i + batch_size].to(first) for t in (full.loc, full.vel, full.charges,
                                                        full.target)]
        pred = model(*part[:3])
        per_sample.append(((pred - part[3]) ** 2).mean(dim=(1, 2)).double().cpu())
    errors = torch.cat(per_sample)
    keep = max(1, round(len(errors) * (1 - TRIM)))
    ordered = torch.sort(errors).values
    return {
        "test_mse_trimmed": float(ordered[:keep].mean()),
        "test_sample_mse_median": float(ordered[len(ordered) // 2]),
        "test_worst_sample_mse": [float(v) for v in ordered[-5:].flip(0)],
    }


def load_selected_model(cfg: StudyConfig, run_dir: Path, model_name: str, arm: str,
                        layers: int) -> nn.Module:
    """The model a run selected (its best-validation checkpoint), exact: a relaxed arm's is
    hardened, as it was tested."""
    from equirelax.experiments.kit.runner import load_checkpoint
    from equirelax.relaxation import harden, relax

    model = build_model(model_name, layers, cfg.egnn_hidden, cfg.segnn_hidden)
    relaxation = arm_relaxation(cfg, arm)
    net = model if relaxation is None else relax(
        model, schedule=relaxation["schedule"], total_steps=cfg.epochs,
        lie_weight=relaxation["lie_weight"], norm_weight=relaxation["norm_weight"])
    state = load_checkpoint(run_dir / "checkpoints" / "best.ckpt")["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    return net if relaxation is None else harden(net)


class FreeTermMonitor(pl.Callback):
    """Log the size of the free terms at every validation: the mean over relaxed layers of
    ``||W x|| / ||F_eq(x)||`` on fixed validation inputs (``relax/free_term_size``), and θ at
    that epoch (``relax/theta_epoch``). If the free terms never grow, relaxation cannot act;
    this curve shows whether they did. Inference only: it draws no random numbers, so it
    leaves the training trajectory unchanged."""

    SIZE = "relax/free_term_size"
    THETA = "relax/theta_epoch"

    def __init__(self, loc: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor) -> None:
        self.inputs = (loc, vel, charges)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        from equirelax.relaxation import RelaxedModel

        relaxed = next((m for m in pl_module.modules() if isinstance(m, RelaxedModel)), None)
        if relaxed is None:
            return
        sizes = free_term_sizes(relaxed, *self.inputs)
        pl_module.log(self.SIZE, float(np.mean(list(sizes.values()))), on_epoch=True)
        pl_module.log(self.THETA, float(relaxed.theta), on_epoch=True)


def previous_fit_seconds(run_dir: Path) -> float:
    """Training time already spent on a run by earlier invocations (0 for a new run).

    Kept in the run folder (``study_time.json``), so a resumed run reports its whole time; a
    folder without that record falls back on the runner's ``results.json`` of its last
    invocation."""
    for name in ("study_time.json", "results.json"):
        path = run_dir / name
        if path.exists():
            return float(json.loads(path.read_text())["fit_seconds"])
    return 0.0


def epochs_checkpointed(run_dir: Path) -> int:
    """Training epochs processed by the run's last checkpoint (0 without one).

    Read from the fit loop's progress: the checkpoint's ``epoch`` field depends on whether it
    was written before or after the epoch counter moved on."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        return 0
    state = load_checkpoint(last)
    try:
        return int(state["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"])
    except KeyError:
        return int(state["epoch"])


def record_fit_seconds(run_dir: Path, total: float) -> float:
    """Store a run's total training time (see :func:`previous_fit_seconds`); returns it."""
    (run_dir / "study_time.json").write_text(json.dumps({"fit_seconds": total}) + "\n")
    return total


# -- one run ----------------------------------------------------------------------------------
def run_name(model: str, arm: str, layers: int, train_size: int, seed: int) -> str:
    """Directory / file name of one run."""
    return f"{model}-L{layers}-n{train_size}-{arm}-s{seed}"


def arm_relaxation(cfg: StudyConfig, arm: str) -> dict[str, Any] | None:
    """Schedule and penalty weights of a relaxed arm (``None`` for the exact arm)."""
    if arm == "exact":
        return None
    if arm not in ARM_CHANGES:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    settings = {"schedule": cfg.schedule, "lie_weight": cfg.lie_weight,
                "norm_weight": cfg.norm_weight}
    for key, value in ARM_CHANGES[arm].items():
        settings[key] = settings[key] * value if arm in _SCALED else value
    return settings


def run_settings(cfg: StudyConfig, model_name: str, arm: str) -> dict[str, Any]:
    """Everything that shapes a run's training besides its name (model, arm, layers, training
    size, seed) and its length (epochs)."""
    settings: dict[str, Any] = {
        "val_size": cfg.val_size, "batch_size": cfg.batch_size, "lr": cfg.lr,
        "weight_decay": cfg.weight_decay, "augment": cfg.augment,
        "processes": cfg.devices * cfg.num_nodes,
        "hidden": cfg.egnn_hidden if model_name == "egnn" else cfg.segnn_hidden,
    }
    relaxation = arm_relaxation(cfg, arm)
    if relaxation is not None:
        settings.update(relaxation, relax_init_std=cfg.relax_init_std,
                        penalty_rows=cfg.penalty_rows)
        if cfg.penalty_sketch is not None:
            # only when set: run folders written before the option keep matching settings
            settings["penalty_sketch"] = cfg.penalty_sketch
    return settings


class StudyError(ValueError):
    """The study cannot go on as asked (e.g. a run folder holds a run trained with other
    settings); the command line reports it and exits with status 2."""


def _launch_rank() -> int:
    """0 in the process started by the user; the rank of a process Lightning started for DDP."""
    return int(os.environ.get("NODE_RANK", 0) or 0) + int(os.environ.get("LOCAL_RANK", 0) or 0)


def check_run_settings(run_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume a run folder that was trained with other settings (a checkpoint of
    another configuration would silently be continued); record the settings of a new run.
    Only the first process checks and writes (the other DDP ranks run the same command)."""
    if _launch_rank() != 0:
        return
    path = run_dir / "study_settings.json"
    if path.exists():
        saved = json.loads(path.read_text())
        changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if changed:
            diff = ", ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in changed.items())
            raise StudyError(
                f"the run folder {run_dir} holds a run trained with other settings ({diff}); "
                "use another --tag or --runs-dir, or delete the folder to start afresh"
            )
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings, indent=1) + "\n")
    tmp.replace(path)


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
        out_dir=str(Path(cfg.runs_dir) / cfg.tag / name),
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
    spent_before = previous_fit_seconds(Path(run_cfg.out_dir))
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
        "fit_seconds": spent_before if finished_before else record_fit_seconds(
            out_dir, spent_before + results["fit_seconds"]),
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


# -- summaries --------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def paired_ratios(runs: list[dict[str, Any]], model: str, arm: str,
                  key: str | None = None, value: Any = None,
                  metric: str = "test_mse") -> list[tuple[int, float]]:
    """(seed, ``metric`` of ``arm`` / ``metric`` of the exact arm) for every seed where both
    completed (same data, batches and rotations: the pairs the study is built on)."""
    def select(a: str) -> dict[int, float]:
        return {r["seed"]: r[metric] for r in runs
                if r["model"] == model and r["arm"] == a and r["completed"]
                and r.get(metric) is not None and (key is None or r[key] == value)}

    exact, other = select("exact"), select(arm)
    return [(seed, other[seed] / exact[seed]) for seed in sorted(exact) if seed in other]


def paired_interval(ratios: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Geometric mean of paired ratios and its ``level`` t-interval (computed on log ratios).

    An interval that lies below 1 says the arm beat the exact model over these seeds; with one
    pair the interval is undefined (nan)."""
    from scipy import stats

    logs = np.log(np.asarray(ratios, dtype=float))
    centre = float(np.exp(logs.mean()))
    if logs.size < 2:
        return centre, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, logs.size - 1) * logs.std(ddof=1) / np.sqrt(logs.size)
    return centre, float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))


def verdict(low: float, high: float, pairs: int) -> str:
    """What the paired 95% interval of arm / exact says: ``better`` (all below 1), ``worse``
    (all above 1), ``no difference shown`` (it contains 1), or ``one seed`` (no interval)."""
    if pairs < 2 or not np.isfinite(low):
        return "one seed"
    if high < 1:
        return "better"
    if low > 1:
        return "worse"
    return "no difference shown"


def summarise(runs: list[dict[str, Any]], key: str | None = None) -> list[dict[str, Any]]:
    """Rows (model, [key value,] arm) with test MSE mean ± std over seeds; every relaxed arm
    also gets the ratio of the means to the exact arm, the paired per-seed ratios (geometric
    mean, mean ± std, 95% t-interval) and how many seeds it beat the exact model on."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if not r["completed"] or r["test_mse"] is None:
            continue
        gkey = (r["model"], r[key] if key else None, r["arm"])
        groups.setdefault(gkey, []).append(r)
    rows = []
    for (model, value, arm), members in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1] if kv[0][1] is not None else 0, ARMS.index(kv[0][2]))):
        test_mean, test_std = mean_std([m["test_mse"] for m in members])
        val_mean, val_std = mean_std([m["best_val_mse"] for m in members])
        rows.append({
            "model": model, "value": value, "arm": arm, "seeds": sorted(m["seed"] for m in members),
            "test_mse_mean": test_mean, "test_mse_std": test_std,
            "best_val_mse_mean": val_mean, "best_val_mse_std": val_std,
            "fit_seconds_mean": float(np.mean([m["fit_seconds"] for m in members])),
            "max_hardened_e3_error": max(m["hardened_e3_error_float32"]["displacement"]
                                         for m in members),
        })
        if all("test_mse_trimmed" in m for m in members):
            rows[-1]["test_mse_trimmed_mean"], rows[-1]["test_mse_trimmed_std"] = mean_std(
                [m["test_mse_trimmed"] for m in members])
        sizes = [np.mean(list(m["free_term_relative_size"].values())) for m in members
                 if m.get("free_term_relative_size")]
        if sizes:
            rows[-1]["free_term_relative_size"] = float(np.mean(sizes))
        peaks = [max(v for _, v in m["free_term_curve"]) for m in members
                 if m.get("free_term_curve")]
        if peaks:
            rows[-1]["free_term_peak_size"] = float(np.mean(peaks))
        acting = [max(v * dict(m.get("theta_curve") or []).get(e, 0.0)
                      for e, v in m["free_term_curve"]) for m in members
                  if m.get("free_term_curve") and m.get("theta_curve")]
        if acting:  # what the relaxed model adds: θ · ||W x|| / ||F_eq(x)||, at its largest
            rows[-1]["free_term_peak_theta_size"] = float(np.mean(acting))
    by = {(r["model"], r["value"], r["arm"]): r for r in rows}
    for r in rows:
        exact = by.get((r["model"], r["value"], "exact"))
        if r["arm"] != "exact" and exact is not None:
            r["relaxed_over_exact"] = r["test_mse_mean"] / exact["test_mse_mean"]
            pairs = paired_ratios(runs, r["model"], r["arm"], key, r["value"])
            ratios = [q for _, q in pairs]
            r["relaxed_wins"] = f"{sum(q < 1 for q in ratios)}/{len(ratios)}"
            if ratios:
                r["paired_ratios"] = {str(seed): q for seed, q in pairs}
                r["paired_ratio_mean"], r["paired_ratio_std"] = mean_std(ratios)
                geo, low, high = paired_interval(ratios)
                r["paired_ratio_geomean"], r["paired_ratio_ci95"] = geo, [low, high]
                r["verdict"] = verdict(low, high, len(ratios))
            # the same comparison on the trimmed test MSE and on the best validation MSE
            for metric, name in (("test_mse_trimmed", "trimmed"), ("best_val_mse", "val")):
                other = [q for _, q in paired_ratios(runs, r["model"], r["arm"], key,
                                                     r["value"], metric=metric)]
                if other:
                    geo, low, high = paired_interval(other)
                    r[f"paired_{name}_ratios"] = other
                    r[f"paired_{name}_geomean"], r[f"paired_{name}_ci95"] = geo, [low, high]
                    r[f"{name}_wins"] = f"{sum(q < 1 for q in other)}/{len(other)}"
    return rows


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.5f} ± {std:.5f}"


def _ratio_cell(row: dict[str, Any], name: str) -> str:
    """``geometric mean [95% CI], wins`` of the paired ratios ``name`` of a row ("" if none)."""
    if f"paired_{name}_geomean" not in row:
        return ""
    low, high = row[f"paired_{name}_ci95"]
    return (f"{row[f'paired_{name}_geomean']:.4f} [{low:.3f}, {high:.3f}], "
            f"{row[f'{name}_wins']}")


#: Published test MSE at the full budget (SEGNN paper; EGNN paper, as quoted in the notes).
PUBLISHED = {"segnn": 0.0043, "egnn": 0.0071}


def results_table(cfg: StudyConfig, rows: list[dict[str, Any]], runs: list[dict[str, Any]],
                  command: str,
                  key: str | None = None, redrawn_by: str | None = None,
                  invocation: dict | None = None) -> str:
    """Markdown: the command, the budget, and test MSE (mean ± std over seeds) per arm."""
    budget = (f"{cfg.train_size} training samples, {cfg.val_size} validation, {cfg.test_size} "
              f"test; {cfg.epochs} epochs, batch {cfg.batch_size}, Adam lr {cfg.lr:g}, weight "
              f"decay {cfg.weight_decay:g}; {cfg.layers} layers; relaxed arm: schedule "
              f"`{cfg.schedule}` per epoch, λ_Lie = {cfg.lie_weight:g}, λ_norm = "
              f"{cfg.norm_weight:g}, free-term init std {cfg.relax_init_std:g}; training "
              f"batches rotated ({cfg.augment}); seeds {list(cfg.seeds)}")
    if key == "layers":
        budget = budget.replace(f"; {cfg.layers} layers", "")
    if key == "train_size":
        budget = budget.replace(f"{cfg.train_size} training samples, ", "")
    lines = [f"**{SMOKE_TEST_NOTE}**", ""] if cfg.preset == "quick" else []
    lines += [
        f"Written by `{command}`" + (f"; tables and plots redrawn by `{redrawn_by}`."
                                     if redrawn_by else "."),
        "",
        f"Budget: {budget}. Test MSE of the model with the best validation MSE (validated every "
        f"{cfg.val_every} epoch(s)); the relaxed arm is evaluated hardened (θ = 0, the exact "
        "architecture). Published test MSE at the full budget (3000 samples, 1000 epochs): "
        f"SEGNN {PUBLISHED['segnn']}, EGNN {PUBLISHED['egnn']} (the SEGNN and EGNN papers).",
        "",
    ]
    col = {"layers": "layers", "train_size": "training samples"}.get(key or "", "")
    head = "| model | " + (f"{col} | " if key else "") + "arm | test MSE (mean ± std) | " \
        "best val MSE | paired ratio arm / exact (mean ± std) | geometric mean [95% CI]: " \
        "verdict | better than exact (seeds) | trimmed test MSE | trimmed: geometric mean " \
        "ratio [95% CI], better (seeds) | best val: geometric mean ratio [95% CI], better " \
        "(seeds) | ‖W x‖ / ‖F_eq(x)‖ peak, peak of θ × it, end | max E(3) error | s per run |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ratio = interval = ""
        if "paired_ratio_mean" in r:
            ratio = f"{r['paired_ratio_mean']:.4f} ± {r['paired_ratio_std']:.4f}"
            low, high = r["paired_ratio_ci95"]
            interval = (f"{r['paired_ratio_geomean']:.4f} [{low:.3f}, {high:.3f}]: "
                        f"{r['verdict']}")
        wins = r.get("relaxed_wins", "")
        size = ""
        if "free_term_relative_size" in r:
            peak = r.get("free_term_peak_size")
            acting = r.get("free_term_peak_theta_size")
            size = (f"{peak:.2e}, " if peak is not None else "") + (
                f"{acting:.2e}, " if acting is not None else "") + \
                f"{r['free_term_relative_size']:.2e}"
        value = f"{r['value']} | " if key else ""
        trimmed = (_fmt(r["test_mse_trimmed_mean"], r["test_mse_trimmed_std"])
                   if "test_mse_trimmed_mean" in r else "")
        trimmed_ratio, val_ratio = _ratio_cell(r, "trimmed"), _ratio_cell(r, "val")
        lines.append(
            f"| {r['model']} | {value}{r['arm']} | {_fmt(r['test_mse_mean'], r['test_mse_std'])} "
            f"| {_fmt(r['best_val_mse_mean'], r['best_val_mse_std'])} | {ratio} | {interval} | "
            f"{wins} | {trimmed} | {trimmed_ratio} | {val_ratio} | {size} | "
            f"{r['max_hardened_e3_error']:.1e} | {r['fit_seconds_mean']:.0f} |"
        )
    lines += [
        "",
        "Arms: `exact` trains the equivariant model; `relaxed` is the paper's recipe (free terms "
        "θ·W x, schedule above, Lie-derivative and norm penalties), evaluated dropped (θ = 0); "
        "`no-schedule` keeps θ = 0.1 throughout (the paper's no-cycle ablation), `no-lie` drops "
        "the Lie-derivative penalty, `weak-penalty` weighs both penalties a tenth as much, "
        "`no-penalty` drops both. Paired ratio: test MSE of the "
        "arm over that of the exact arm with the same seed (same initial weights, data, batches "
        "and rotations); below 1 is better. 95% CI: t-interval of the mean log ratio over "
        "seeds (nan with one seed). Trimmed test MSE: the mean of the per-sample test MSEs "
        f"without the worst {TRIM:.0%} of the test samples (a model trained on few samples "
        "can fail badly on a single simulation, which then dominates the plain mean). Best "
        "val: the paired ratio of the best validation MSEs (the selection criterion, on 2000 "
        "other simulations: a second, slightly optimistic, measurement of the same models).",
        "‖W x‖ / ‖F_eq(x)‖: size of the free terms next to the equivariant maps they are added "
        "to (with weight θ), mean over relaxed layers and seeds: the largest value recorded at "
        "the validations during training (validation inputs), the largest value of θ times it "
        "(what the relaxed model adds to the equivariant output), and the size at the end "
        "(selected model, test inputs).",
        "max E(3) error: largest relative error of the predicted displacements of the final "
        "(hardened) models under random rotations, reflections and per-graph translations, "
        "float32. s per run: training time of a run (all the invocations that trained it).",
    ]
    expected = [run_name(model, arm, value if key == "layers" else cfg.layers,
                         value if key == "train_size" else cfg.train_size, seed)
                for value in (cfg.sweep_values if key else (None,)) for model in cfg.models
                for seed in cfg.seeds for arm in cfg.arms]
    done = {r["name"] for r in runs if r["completed"] and r["test_mse"] is not None}
    pending = [name for name in expected if name not in done]
    if pending:
        lines += ["", f"Not in the table yet ({len(pending)} of the study's {len(expected)} "
                  "runs have no finished results: not started, or stopped before their last "
                  "epoch; rerunning the command resumes them): " + ", ".join(pending) + "."]
    if invocation:
        inv = invocation
        load = ("" if inv.get("load_average_start") is None else
                f"; load average {inv['load_average_start']:.1f} at the start and "
                f"{inv['load_average_end']:.1f} at the end")
        lines += [
            "",
            f"The command trained {inv['trained_runs']} of its {inv['runs']} runs (the others "
            f"were only tested again) in {inv['wall_seconds']:.0f} s of wall time and "
            f"{inv['process_cpu_seconds']:.0f} s of CPU time in its main process, with "
            f"{inv['devices']} process(es) of {inv['torch_threads']} torch thread(s) on "
            f"{inv['cpu_cores']} CPU cores{load}.",
        ]
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLORS = {"exact": "tab:blue", "relaxed": "tab:orange", "no-schedule": "tab:green",
          "no-lie": "tab:red", "weak-penalty": "tab:brown", "no-penalty": "tab:purple"}


def plot_validation_curves(runs: list[dict[str, Any]], model: str, path: Path,
                           cfg: StudyConfig, title: str | None = None) -> None:
    """Validation MSE per epoch for every arm (each seed thin, the mean bold), and θ(epoch) of
    the paper's schedule; below, the paired difference arm / exact − 1 per seed (the arms are
    often too close to tell apart on the log scale)."""
    plt = _plt()
    fig, (ax, diff_ax) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.4]})
    for arm in ARMS:
        curves = [r["val_curve"] for r in runs if r["model"] == model and r["arm"] == arm]
        curves = [c for c in curves if c]
        for c in curves:
            ax.plot([e + 1 for e, _ in c], [v for _, v in c], color=COLORS[arm], alpha=0.3, lw=0.8)
        if curves:
            n = min(len(c) for c in curves)
            epochs = [e + 1 for e, _ in curves[0][:n]]
            mean = np.mean([[v for _, v in c[:n]] for c in curves], axis=0)
            label = "exact" if arm == "exact" else f"{arm}, evaluated at θ = 0"
            ax.plot(epochs, mean, color=COLORS[arm], lw=2, label=f"{label}, {len(curves)} seed(s)")
    ax.set_yscale("log")
    ax.set_ylabel("validation MSE")
    ax.set_title(title or f"{model.upper()} on charged N-body: {cfg.train_size} training samples")
    exact = {r["seed"]: dict(r["val_curve"]) for r in runs
             if r["model"] == model and r["arm"] == "exact"}
    for r in runs:
        if r["model"] != model or r["arm"] == "exact" or r["seed"] not in exact:
            continue
        pairs = [(e, v / exact[r["seed"]][e] - 1) for e, v in r["val_curve"]
                 if e in exact[r["seed"]]]
        diff_ax.plot([e + 1 for e, _ in pairs], [100 * d for _, d in pairs],
                     color=COLORS[r["arm"]], lw=1, alpha=0.8)
    diff_ax.axhline(0, color="black", lw=0.8)
    diff_ax.set_ylabel("arm / exact − 1 (%)")
    diff_ax.set_xlabel("epoch")
    if any(arm != "exact" for arm in cfg.arms):
        from equirelax.relaxation import make_schedule

        sched = make_schedule(cfg.schedule, cfg.epochs)
        twin = ax.twinx()
        twin.plot(range(1, cfg.epochs + 1), [sched(e) for e in range(cfg.epochs)],
                  color="gray", ls="--", lw=1)
        twin.set_ylabel(f"θ ({cfg.schedule}, dashed)", color="gray")
        twin.set_ylim(0, 1.05 * max(1.0, max(sched(e) for e in range(cfg.epochs))))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_free_terms(runs: list[dict[str, Any]], path: Path, title: str) -> bool:
    """‖W x‖ / ‖F_eq(x)‖ (solid) and θ·‖W x‖ / ‖F_eq(x)‖ (dotted) over training for every
    relaxed run; False (nothing drawn) when no run recorded the curve."""
    curves = [r for r in runs if r.get("free_term_curve")]
    if not curves:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    seen: set[str] = set()
    for r in curves:
        epochs = [e + 1 for e, _ in r["free_term_curve"]]
        size = [v for _, v in r["free_term_curve"]]
        theta = dict(r.get("theta_curve") or [])
        label = f"{r['model']} {r['arm']}"
        ax.plot(epochs, size, color=COLORS[r["arm"]], lw=1,
                label=label if label not in seen else None)
        seen.add(label)
        if theta:
            eff = [v * theta.get(e, np.nan) for e, v in r["free_term_curve"]]
            ax.plot(epochs, eff, color=COLORS[r["arm"]], lw=1, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("‖W x‖ / ‖F_eq(x)‖  (dotted: × θ)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_ablations(rows: list[dict[str, Any]], runs: list[dict[str, Any]], path: Path,
                   key: str | None) -> bool:
    """Paired ratio arm / exact per seed (dots), the geometric mean with its 95% interval
    (square and bar) and the geometric mean on the trimmed test MSE (open diamond) for every
    relaxed arm; one panel per model (and swept value). False when no relaxed
    arm has a paired exact run."""
    panels = sorted({(r["model"], r["value"]) for r in rows if "paired_ratios" in r},
                    key=lambda mv: (mv[0], mv[1] if mv[1] is not None else 0))
    if not panels:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, (model, value) in zip(axes[0], panels):
        arms = [r for r in rows if r["model"] == model and r["value"] == value
                and "paired_ratios" in r]
        for i, r in enumerate(arms):
            low, high = r["paired_ratio_ci95"]
            geo = r["paired_ratio_geomean"]
            if np.isfinite(low):
                ax.errorbar([i], [geo], yerr=[[geo - low], [high - geo]], fmt="s", capsize=4,
                            color=COLORS[r["arm"]])
            else:
                ax.plot([i], [geo], "s", color=COLORS[r["arm"]])
            ratios = list(r["paired_ratios"].values())
            ax.plot([i + 0.15] * len(ratios), ratios, "o", ms=4, alpha=0.6,
                    color=COLORS[r["arm"]])
            if "paired_trimmed_geomean" in r:
                ax.plot([i + 0.3], [r["paired_trimmed_geomean"]], "D", mfc="none", ms=6,
                        color=COLORS[r["arm"]])
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(arms)), [r["arm"] for r in arms], rotation=20)
        ax.set_ylabel("test MSE, arm / exact (same seed)")
        ax.set_title(model.upper() + (f", {value}" if value is not None else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def load_reported_runs(cfg: StudyConfig, allow_missing: bool = False) -> list[dict[str, Any]]:
    """The per-run JSON files that a study with these settings wrote (for ``--report-only``).

    With ``allow_missing``, runs without results yet (a long study still under way) are left
    out with a warning, and the tables name them; without any result at all it fails."""
    folder = Path(cfg.results_dir) / cfg.tag / "runs"
    runs, missing = [], []

    @functools.cache
    def test_split() -> NBodyDataset:  # read once, when a run first needs it
        return NBodyDataset("test", cfg.test_size, cache_dir=cfg.cache_dir, progress=False)

    for value in cfg.sweep_values if cfg.sweep else (None,):
        layers = value if cfg.sweep == "layers" else cfg.layers
        train_size = value if cfg.sweep == "train-size" else cfg.train_size
        for model in cfg.models:
            for seed in cfg.seeds:
                for arm in cfg.arms:
                    name = run_name(model, arm, layers, train_size, seed)
                    path = folder / f"{name}.json"
                    if not path.exists():
                        missing.append(path.name)
                        continue
                    run = json.loads(path.read_text())
                    run_dir = Path(cfg.runs_dir) / cfg.tag / name
                    if "test_mse_trimmed" not in run and (run_dir / "checkpoints").exists():
                        # results of an earlier version: the error profile from the checkpoint
                        selected = load_selected_model(cfg, run_dir, model, arm, layers)
                        run.update(test_error_profile(selected, test_split()))
                        path.write_text(json.dumps(run, indent=1) + "\n")
                    runs.append(run)
    if missing and (not allow_missing or not runs):
        raise StudyError(
            f"--report-only found no results for {len(missing)} run(s) in {folder} "
            f"(e.g. {missing[0]}); run the study first"
        )
    if missing:
        print(f"equirelax nbody: warning: no results yet for {len(missing)} run(s) in {folder}: "
              + ", ".join(name.removesuffix(".json") for name in missing), file=sys.stderr)
    return runs


def plot_sweep(rows: list[dict[str, Any]], key: str, path: Path) -> None:
    """Test MSE against the swept value, exact vs relaxed, one panel per model."""
    plt = _plt()
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for arm in ARMS:
            pts = [r for r in rows if r["model"] == model and r["arm"] == arm]
            if not pts:
                continue
            xs = [r["value"] for r in pts]
            means = [r["test_mse_mean"] for r in pts]
            stds = [r["test_mse_std"] for r in pts]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, color=COLORS[arm], label=arm)
        ax.set_yscale("log")
        if key == "train_size":
            ax.set_xscale("log")
        ax.set_xlabel({"layers": "message-passing layers", "train_size": "training samples"}[key])
        ax.set_ylabel("test MSE")
        ax.set_title(model.upper())
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def write_outputs(cfg: StudyConfig, runs: list[dict[str, Any]], command: str,
                  redrawn_by: str | None = None, invocation: dict | None = None) -> Path:
    """Per-run JSON, the table (markdown + JSON) and the plots, under results_dir/tag.
    ``command`` trained the runs; ``redrawn_by`` (``--report-only``) redrew the outputs."""
    out = Path(cfg.results_dir) / cfg.tag
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for r in runs:
        (out / "runs" / f"{r['name']}.json").write_text(json.dumps(r, indent=1) + "\n")
    key = {"layers": "layers", "train-size": "train_size"}.get(cfg.sweep or "")
    rows = summarise(runs, key)
    stem = f"sweep_{key}" if key else "results"
    (out / f"{stem}.md").write_text(
        results_table(cfg, rows, runs, command, key, redrawn_by, invocation))
    smoke = {"smoke_test": SMOKE_TEST_NOTE} if cfg.preset == "quick" else {}
    (out / f"{stem}.json").write_text(json.dumps(
        {**smoke, "command": command, "redrawn_by": redrawn_by, "invocation": invocation,
         "config": asdict(cfg), "rows": rows}, indent=1) + "\n")
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
    if any(arm not in ("exact", "relaxed") for arm in cfg.arms):
        plot_ablations(rows, runs, out / f"{stem}_ablations.png", key)
    return out


# -- command line -----------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``equirelax nbody`` (defaults: the chosen preset's)."""
    add = parser.add_argument
    add("--preset", choices=sorted(PRESETS), default="paper",
        help="training budget (default: paper = 3000 samples, 1000 epochs, 3 seeds)")
    add("--quick", action="store_true", help="shorthand for --preset quick (a few minutes)")
    add("--model", nargs="+", choices=MODELS, default=list(MODELS), help="models to train")
    add("--arms", nargs="+", choices=ARMS, default=["exact", "relaxed"],
        help="exact and/or relaxed-then-hardened training (default: both, the comparison); "
        "no-schedule, no-lie, no-penalty: the paper's ablations of the relaxed arm; "
        "weak-penalty: both penalties at a tenth of their weights")
    add("--relax", choices=SCHEDULES, default="triangular",
        help="relaxation schedule θ(epoch) of the relaxed arm")
    add("--epochs", type=positive_int, help="training epochs")
    add("--train-size", type=positive_int,
        help="training simulations (first k of the training split)")
    add("--val-size", type=positive_int, help="validation simulations")
    add("--test-size", type=positive_int, help="test simulations")
    add("--seeds", type=positive_int, help="number of seeds per configuration")
    add("--first-seed", type=non_negative_int, default=0,
        help="seeds are first-seed .. first-seed+seeds-1")
    add("--layers", type=positive_int, default=4, help="message-passing layers")
    add("--egnn-hidden", type=positive_int, default=64, help="EGNN hidden features")
    add("--segnn-hidden", default="32x0e+32x1o", help="SEGNN hidden irreps")
    add("--batch-size", type=positive_int, default=100)
    add("--eval-batch-size", type=positive_int, default=500)
    add("--lr", type=positive_float, default=5e-4)
    add("--weight-decay", type=non_negative_float, default=1e-12)
    add("--lie-weight", type=non_negative_float, default=1e-2,
        help="weight of the Lie-derivative penalty")
    add("--norm-weight", type=non_negative_float, default=1e-2,
        help="weight of the ||W x|| penalty")
    add("--relax-init-std", type=non_negative_float, default=1e-4,
        help="init std of the free terms")
    add("--penalty-rows", type=positive_int, default=None,
        help="evaluate the penalties on at most this many rows per layer (default: all)")
    add("--penalty-sketch", type=positive_int, default=None,
        help="evaluate the penalties on this many random sign combinations of each layer's "
             "rows (default: all rows, exact)")
    add("--augment", choices=("so3", "o3", "none"), default="so3",
        help="random rotation of every training batch (the paper's: so3)")
    add("--val-every", type=positive_int, help="validate every k epochs")
    add("--sweep", choices=SWEEPS, help="the paper's figure: test MSE vs layers or train size")
    add("--sweep-values", type=positive_int, nargs="+", help="values of the swept quantity")
    add("--devices", type=positive_int, default=1,
        help="processes (or GPUs) per node: DDP when > 1")
    add("--num-nodes", type=positive_int, default=1, help="nodes for multi-node DDP")
    add("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu")
    add("--threads", type=non_negative_int, default=1,
        help="torch threads per process (0: torch's default); small graphs run fastest on one")
    add("--tag", help="name of the output folders (default: the preset, plus the sweep)")
    add("--runs-dir", default="runs/nbody", help="checkpoints and logs")
    add("--results-dir", default="docs/results/nbody", help="tables, JSON and plots")
    add("--cache-dir", help="data cache (default: $EQUIRELAX_CACHE or ~/.cache/equirelax)")
    add("--stop-after", type=positive_int,
        help="end each run after this many more epochs; rerun the command to resume it")
    add("--no-progress", action="store_true", help="hide progress bars")
    add("--report-only", action="store_true",
        help="train nothing: redraw the tables and plots from the per-run JSON files")
    add("--jobs", type=positive_int, default=1,
        help="runs trained at the same time, each in its own process (several small runs per "
        "GPU, or one per CPU core); the tables are written when all have ended")
    add("--shard", help=argparse.SUPPRESS)  # "i/k": the i-th of k processes started by --jobs


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/k"`` -> (i, k): this process trains every k-th run, starting at run i."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be i/k with integers, got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard i/k needs 0 <= i < k, got {text!r}")
    return index, count


def _positive(name: str, value: int | float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"--{name} must be > 0, got {value}")


def resolve(args: argparse.Namespace) -> StudyConfig:
    """The preset with the command line's overrides, validated."""
    preset_name = "quick" if args.quick else args.preset
    preset = PRESETS[preset_name]

    def pick(value, default):
        return default if value is None else value

    for name in ("epochs", "train_size", "val_size", "test_size", "seeds", "layers",
                 "egnn_hidden", "batch_size", "eval_batch_size", "lr", "val_every", "devices",
                 "num_nodes", "penalty_rows", "penalty_sketch"):
        _positive(name.replace("_", "-"), getattr(args, name))
    for name in ("weight_decay", "lie_weight", "norm_weight", "relax_init_std"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.penalty_rows is not None and args.penalty_sketch is not None:
        raise ValueError(f"--penalty-rows {args.penalty_rows} and --penalty-sketch "
                         f"{args.penalty_sketch} cannot be used together: pass one of them")
    sweep_values: tuple[int, ...] = ()
    if args.sweep is not None:
        default = preset.sweep_layers if args.sweep == "layers" else preset.sweep_train_sizes
        sweep_values = tuple(pick(args.sweep_values, default))
        if any(v < 1 for v in sweep_values):
            raise ValueError(f"--sweep-values must be >= 1, got {list(sweep_values)}")
    elif args.sweep_values is not None:
        raise ValueError("--sweep-values needs --sweep layers or --sweep train-size")
    seeds = pick(args.seeds, preset.seeds)
    tag = args.tag or (preset_name + (f"-sweep-{args.sweep}" if args.sweep else ""))
    cfg = StudyConfig(
        preset=preset_name,
        models=tuple(dict.fromkeys(args.model)),
        arms=tuple(dict.fromkeys(args.arms)),
        schedule=args.relax,
        epochs=pick(args.epochs, preset.epochs),
        train_size=pick(args.train_size, preset.train_size),
        val_size=pick(args.val_size, preset.val_size),
        test_size=pick(args.test_size, preset.test_size),
        seeds=tuple(range(args.first_seed, args.first_seed + seeds)),
        layers=args.layers,
        egnn_hidden=args.egnn_hidden,
        segnn_hidden=args.segnn_hidden,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        lie_weight=args.lie_weight,
        norm_weight=args.norm_weight,
        relax_init_std=args.relax_init_std,
        penalty_rows=args.penalty_rows,
        penalty_sketch=args.penalty_sketch,
        augment=args.augment,
        val_every=pick(args.val_every, preset.val_every),
        devices=args.devices,
        num_nodes=args.num_nodes,
        accelerator=args.accelerator,
        threads=args.threads,
        sweep=args.sweep,
        sweep_values=sweep_values,
        tag=tag,
        runs_dir=args.runs_dir,
        results_dir=args.results_dir,
        cache_dir=args.cache_dir,
        stop_after=args.stop_after,
        progress=not args.no_progress,
        report_only=args.report_only,
        jobs=args.jobs,
        shard=_parse_shard(args.shard),
    )
    world = cfg.devices * cfg.num_nodes
    if world > 1 and (cfg.val_size % world or cfg.test_size % world):
        print(f"equirelax nbody: warning: with {world} processes the distributed sampler repeats "
              "a few validation/test samples unless --val-size and --test-size are multiples "
              f"of {world} (got {cfg.val_size} and {cfg.test_size})", file=sys.stderr)
    if cfg.jobs > 1 and world > 1:
        raise ValueError(f"--jobs {cfg.jobs} runs one process per run: it needs --devices 1 "
                         f"and --num-nodes 1, got {cfg.devices} and {cfg.num_nodes}")
    if cfg.sweep == "train-size" and max(cfg.sweep_values) > 10_000:
        raise ValueError(f"training sizes must be <= 10000, got {list(cfg.sweep_values)}")
    return cfg


def command_line(args: argparse.Namespace) -> str:
    """The command as typed when run from the shell, else rebuilt from the options."""
    argv = sys.argv[1:]
    if argv[:1] == ["nbody"]:
        return shlex.join(["equirelax", *argv])
    parts = ["equirelax", "nbody"]
    for key, value in sorted(vars(args).items()):
        if key == "study" or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


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
        previous = Path(cfg.results_dir) / cfg.tag / f"{stem}.json"
        if not previous.exists():
            return runs, write_outputs(cfg, runs, command)
        before = json.loads(previous.read_text())
        redrawn_by = None if before["command"] == command else command  # redrawn again
        return runs, write_outputs(cfg, runs, before["command"], redrawn_by=redrawn_by,
                                   invocation=before.get("invocation"))
    plan = [(value, model_name, seed, arm)
            for value in (cfg.sweep_values if cfg.sweep else (None,))
            for model_name in cfg.models for seed in cfg.seeds for arm in cfg.arms]
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
        folder = Path(cfg.results_dir) / cfg.tag / "runs"
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

    argv = shlex.split(command)[1:]
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


def main(args: argparse.Namespace) -> int:
    """Entry point of ``equirelax nbody``."""
    try:
        cfg = resolve(args)
    except ValueError as err:
        print(f"equirelax nbody: {err}", file=sys.stderr)
        return 2
    results = Path(cfg.results_dir) / cfg.tag
    require_writable({"--results-dir": results} if cfg.report_only else
                     {"--runs-dir": cfg.runs_dir, "--results-dir": results})
    if cfg.preset == "quick":
        print(SMOKE_TEST_NOTE, flush=True)
    try:
        run_study(cfg, command_line(args))
    except StudyError as err:
        print(f"equirelax nbody: {err}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "PRESETS",
    "EpochShuffle",
    "Preset",
    "RandomRotations",
    "StopAfter",
    "StudyConfig",
    "build_model",
    "configure",
    "e3_equivariance_error",
    "main",
    "random_orthogonal",
    "resolve",
    "run_study",
    "summarise",
    "train_one",
]

