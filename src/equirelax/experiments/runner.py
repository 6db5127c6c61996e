"""A training runner on PyTorch Lightning shared by the studies: exact or relaxed, resumable.

A study supplies a model, data loaders and two small functions (how a batch becomes a prediction
and a target, and the loss); the runner adds everything a real training run needs: Adam,
relaxation through the public ``er.relax`` API with the schedule stepped by
``er.relaxation.LightningCallback``, checkpoints every epoch with exact resume (the schedule's
position is in the model's state_dict), CSV and TensorBoard logs, a progress bar, seeds,
best-validation model selection, and multi-process / multi-node DDP through Lightning
(``devices``, ``num_nodes``; gloo on CPU, NCCL on GPUs). Validation and test run the exact
(θ = 0) model, which equals the hardened one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader

from equirelax.relaxation import LightningCallback, RelaxedModel, harden, relax

StepFn = Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RunConfig:
    """Settings of one training run. ``relax=None`` trains the exact model."""

    epochs: int = 10
    lr: float = 5e-4
    weight_decay: float = 0.0
    seed: int = 0
    relax: str | None = None
    lie_weight: float = 1e-2
    norm_weight: float = 1e-2
    relax_interval: str = "step"
    relax_init_std: float = 1e-3
    penalty_rows: int | None = None
    relax_layers: list[str] | None = None
    devices: int = 1
    num_nodes: int = 1
    accelerator: str = "auto"
    out_dir: str = "runs/run"
    resume: bool = True
    progress: bool = True
    check_val_every_n_epoch: int = 1
    checkpoint_every_n_epochs: int = 1
    gradient_clip_val: float | None = None
    extra: dict = field(default_factory=dict)


class EquivariantTask(pl.LightningModule):
    """A LightningModule around an (optionally relaxed) model with a task loss and metrics."""

    def __init__(
        self,
        model: nn.Module,
        step_fn: StepFn,
        loss_fn: LossFn,
        config: RunConfig,
        total_steps: int,
        metrics: dict[str, LossFn] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.step_fn, self.loss_fn = step_fn, loss_fn
        self.metrics = metrics or {}
        if config.relax is not None:
            layers = config.relax_layers
            self.net: nn.Module = relax(
                model,
                schedule=config.relax,
                total_steps=total_steps,
                lie_weight=config.lie_weight,
                norm_weight=config.norm_weight,
                layers=layers,
                init_std=config.relax_init_std,
                penalty_rows=config.penalty_rows,
            )
        else:
            self.net = model

    @property
    def relaxed(self) -> RelaxedModel | None:
        return self.net if isinstance(self.net, RelaxedModel) else None

    def training_step(self, batch, batch_idx):
        pred, target = self.step_fn(self.net, batch)
        task = self.loss_fn(pred, target)
        loss = task
        if self.relaxed is not None:
            penalty = self.relaxed.penalty()
            loss = task + penalty
            self.log("train/penalty", penalty.detach(), on_step=False, on_epoch=True,
                     sync_dist=True)
        self.log("train/loss", task.detach(), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=_batch_size(pred), sync_dist=True)
        return loss

    def _evaluate(self, batch, prefix: str) -> torch.Tensor:
        pred, target = self.step_fn(self.net, batch)
        loss = self.loss_fn(pred, target)
        n = _batch_size(pred)
        self.log(f"{prefix}/loss", loss, prog_bar=prefix == "val", batch_size=n, sync_dist=True)
        for name, fn in self.metrics.items():
            self.log(f"{prefix}/{name}", fn(pred, target), batch_size=n, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        return self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._evaluate(batch, "test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.config.lr,
                                weight_decay=self.config.weight_decay)

    def exact_model(self) -> nn.Module:
        """The exactly equivariant model: hardened if relaxed, the model itself otherwise."""
        return harden(self.net) if self.relaxed is not None else self.net


class LatestCheckpoint(ModelCheckpoint):
    """``last.ckpt``, written at the end of every ``every``-th training epoch, of the epoch in
    which the run is told to stop (e.g. by a time-slicing callback) and of the last epoch.

    Writing a checkpoint costs about as much as a training step of the N-body models, so long
    runs of one step per epoch write it every few epochs; a run killed in between resumes from
    the last one written and repeats those epochs exactly (batches and rotations are functions
    of seed, epoch and step)."""

    def __init__(self, dirpath: Path, every: int = 1) -> None:
        if int(every) < 1:
            raise ValueError(f"checkpoint interval must be >= 1 epoch, got {every}")
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1,
                         save_on_train_epoch_end=True, enable_version_counter=False)
        self.every = int(every)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        done = trainer.current_epoch + 1
        if done % self.every == 0 or trainer.should_stop or done >= (trainer.max_epochs or 0):
            super().on_train_epoch_end(trainer, pl_module)


def _batch_size(pred: torch.Tensor) -> int:
    return int(pred.shape[0]) if pred.dim() else 1


def fit(
    model: nn.Module,
    train: DataLoader,
    val: DataLoader,
    test: DataLoader | None,
    step_fn: StepFn,
    loss_fn: LossFn,
    config: RunConfig,
    metrics: dict[str, LossFn] | None = None,
    callbacks: Sequence[pl.Callback] = (),
) -> tuple[EquivariantTask, dict]:
    """Train (or resume) one run; returns the task (best-validation weights loaded) and results.

    Results hold the best validation loss, the test metrics of that model, the run time, and
    the per-epoch validation curve read back from the CSV log. ``callbacks`` are extra
    Lightning callbacks of the study (e.g. a data augmentation that modifies each training
    batch, or one that ends a time-sliced run early), added after the runner's own.
    """
    pl.seed_everything(config.seed, workers=True, verbose=False)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = max(1, len(train) // max(1, config.devices * config.num_nodes))
    total = config.epochs * (steps_per_epoch if config.relax_interval == "step" else 1)
    task = EquivariantTask(model, step_fn, loss_fn, config, total, metrics)
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/loss",
                           mode="min", save_top_k=1)
    # Lightning's save_last writes last.ckpt only in epochs that improve the monitored metric,
    # so a run resumed from it would repeat the epochs after its best one. An unmonitored
    # checkpoint written at the end of every training epoch keeps last.ckpt at the latest
    # epoch. It is written after validation and after every other callback's epoch-end hook
    # (Lightning runs checkpoint callbacks last), so a schedule stepped per epoch is already
    # advanced in it, and a resumed run continues exactly where it stopped.
    latest = LatestCheckpoint(out / "checkpoints", config.checkpoint_every_n_epochs)
    all_callbacks: list[pl.Callback] = [ckpt, latest]
    if config.relax is not None:
        all_callbacks.append(LightningCallback(interval=config.relax_interval))
    all_callbacks.extend(callbacks)
    # a new log version per (re)start: a resumed run keeps the logs of the epochs before it
    loggers = [CSVLogger(out, name="csv"), TensorBoardLogger(out, name="tb")]
    strategy = "ddp" if config.devices * config.num_nodes > 1 else "auto"
    trainer = pl.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=strategy,
        callbacks=all_callbacks,
        logger=loggers,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        check_val_every_n_epoch=config.check_val_every_n_epoch,
        gradient_clip_val=config.gradient_clip_val,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        deterministic=False,
    )
    last = out / "checkpoints" / "last.ckpt"
    resume_from = str(last) if config.resume and last.exists() else None
    start = time.perf_counter()
    trainer.fit(task, train, val, ckpt_path=resume_from)
    elapsed = time.perf_counter() - start
    best = ckpt.best_model_path
    if best:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        task.load_state_dict(state)
    results: dict[str, Any] = {
        "config": asdict(config),
        "best_val_loss": float(ckpt.best_model_score) if ckpt.best_model_score is not None
        else None,
        "fit_seconds": elapsed,
        "resumed_from": resume_from,
    }
    if test is not None:
        tested = trainer.test(task, test, verbose=False)
        results["test"] = {k: float(v) for k, v in (tested[0] if tested else {}).items()}
    results["val_curve"] = read_curve(out / "csv", "val/loss")
    if trainer.is_global_zero:
        (out / "results.json").write_text(json.dumps(results, indent=1))
    return task, results


def read_curve(csv_dir: Path, column: str) -> list[tuple[int, float]]:
    """(epoch, value) pairs of one logged metric from the Lightning CSV logs of a run (every
    log version, so a resumed run gives its whole curve; later versions win)."""
    import csv

    values: dict[int, float] = {}
    versions = sorted(csv_dir.glob("version_*/metrics.csv"),
                      key=lambda p: int(p.parent.name.split("_")[1]))
    for path in versions:
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get(column):
                    values[int(row["epoch"])] = float(row[column])
    return sorted(values.items())


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["EquivariantTask", "RunConfig", "fit", "parameter_count", "read_curve"]
