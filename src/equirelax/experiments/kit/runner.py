"""A training runner on PyTorch Lightning shared by the studies: exact or relaxed, resumable.

A study supplies a model, data loaders and two small functions (how a batch becomes a prediction
and a target, and the loss); the runner adds everything a real training run needs: Adam,
relaxation through the public ``er.relax`` API with the schedule stepped by
``er.relaxation.LightningCallback``, checkpoints every epoch with exact resume (the schedule's
position is in the model's state_dict), CSV and TensorBoard logs, a progress bar, seeds,
best-validation model selection, and multi-process / multi-node DDP through Lightning
(``devices``, ``num_nodes``; gloo on CPU, NCCL on GPUs). Validation and test run the exact
(θ = 0) model, which equals the hardened one.

Interruptions: SIGTERM (a scheduler ending a job) and Ctrl-C stop training at the end of the
current batch; ``fit`` then writes ``last.ckpt`` where an exact resume is possible (at an epoch
boundary, or within an epoch when the training loader draws its order from an
:class:`EpochShuffle`, whose position is stored in the checkpoint) and raises
:class:`~equirelax.experiments.kit.guards.RunInterruptedError` ("interrupted at epoch k; rerun
the same command to resume"), which the command line turns into a non-zero exit status. A second
Ctrl-C stops at once. Under DDP an interrupted run resumes from its last end-of-epoch checkpoint.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn
from torch.utils.data import DataLoader, Sampler

from equirelax.experiments.kit import guards
from equirelax.experiments.kit.runs import TrainingClock
from equirelax.relaxation import LightningCallback, RelaxedModel, harden, relax

StepFn = Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RunConfig:
    """Settings of one training run. ``relax=None`` trains the exact model; ``free_rank=r``
    gives the relaxed layers low-rank free terms W = U Vᵀ (see ``er.relax``)."""

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
    penalty_sketch: int | None = None
    free_rank: int | None = None
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
        # (sum, count) of each value logged as an epoch mean, since the epoch began
        self._epoch_sums: dict[str, tuple[torch.Tensor | float, int]] = {}
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
                penalty_sketch=config.penalty_sketch,
                free_rank=config.free_rank,
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
        # epoch means are accumulated here and logged once an epoch (on_train_epoch_end): a
        # Lightning log call costs about a millisecond, as much as a small model's step
        n = _batch_size(pred)
        self._accumulate("train/loss", task.detach() * n, n)
        if self.relaxed is not None:
            penalty = self.relaxed.penalty()
            loss = task + penalty
            self._accumulate("train/penalty", penalty.detach(), 1)
        return loss

    def _accumulate(self, key: str, total: torch.Tensor, count: int) -> None:
        previous, seen = self._epoch_sums.get(key, (0.0, 0))
        self._epoch_sums[key] = (previous + total, seen + count)

    def on_train_epoch_end(self) -> None:
        sums, self._epoch_sums = self._epoch_sums, {}
        for key, (total, count) in sums.items():
            self.log(key, total / count, on_step=False, on_epoch=True,
                     prog_bar=key == "train/loss", sync_dist=True)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        # Lightning walks every batch as a nested collection to move it; on the CPU there is
        # nothing to move, and the walk costs milliseconds a step on small graphs
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

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


class EpochShuffle(Sampler):
    """A random order of ``n`` indices that depends only on (seed, epoch).

    Lightning calls ``set_epoch`` before every training epoch, so a run resumed from a
    checkpoint sees exactly the batches an uninterrupted run would, and two arms with the same
    seed see the same batches whatever else they draw from torch's global generator.

    With ``batch_size`` it yields whole batches (lists of indices: consecutive slices of the
    order, the last one possibly shorter) for a ``DataLoader(batch_size=None)`` over a dataset
    that gathers a list of indices at once; without, single indices. A run resumed within an
    epoch continues that epoch's order where it stopped (:meth:`resume_within_epoch`, set from
    the checkpoint by :class:`LatestCheckpoint`).
    """

    def __init__(self, n: int, seed: int, batch_size: int | None = None) -> None:
        if n < 1:
            raise ValueError(f"need at least one sample to shuffle, got n={n}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.seed, self.epoch, self.batch_size = n, seed, 0, batch_size
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self._resume is not None and self._resume[0] != self.epoch:
            self._resume = None  # the resumed epoch is over

    def resume_within_epoch(self, epoch: int, done: int) -> None:
        """Leave out the first ``done`` items (batches with ``batch_size``, else indices) of
        epoch ``epoch``'s order: they were trained on before the run stopped. The length stays
        the same, as Lightning counts the epoch's batches from the checkpoint."""
        if not 0 <= done <= len(self):
            raise ValueError(f"cannot resume after {done} of {len(self)} items")
        self._resume = (int(epoch), int(done))

    def __iter__(self) -> Iterator:
        # A generator: the order is drawn at the first batch, after Lightning's set_epoch,
        # even when the loader's iterator was made before (as on resuming a run).
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen).tolist()
        items: list = order if self.batch_size is None else [
            order[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        if self._resume is not None and self._resume[0] == self.epoch:
            items = items[self._resume[1]:]
        yield from items

    def __len__(self) -> int:
        return self.n if self.batch_size is None else -(-self.n // self.batch_size)


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """A seed that depends only on (run seed, global step, stream): random draws made from it
    are the same in every arm of a seed and in a resumed run."""
    return (int(seed) * 1_000_003 + int(step) * 7_919 + int(stream) * 104_729) % (2 ** 63)


class SeedEachStep(pl.Callback):
    """Seed torch's global generator from (seed, global step) before every training batch.

    Whatever the model draws there (dropout masks) is then a function of seed and step: two
    arms of one seed draw the same masks even though relaxing a model consumes random numbers
    (the free terms' initialisation), and a resumed run draws what an uninterrupted one would.
    The random rows of relaxed layers' subsampled penalties (``penalty_rows``) are drawn in the
    forward, so they get a stream of their own (seeded from seed and step too): drawn from the
    global generator they would shift the relaxed arm's later dropout masks."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        torch.manual_seed(step_seed(self.seed, step, stream=1))
        for module in pl_module.modules():
            if isinstance(module, RelaxedModel):
                module.seed_penalties(step_seed(self.seed, step, stream=3))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU; a file that cannot be read (truncated by a killed job,
    corrupt) raises :class:`~equirelax.experiments.kit.guards.CheckpointError` naming it and
    saying how to start the run afresh."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:
        raise guards.CheckpointError(
            f"cannot read the checkpoint {path} ({type(err).__name__}: {err}); it is truncated "
            f"or corrupt. Delete it to train this run afresh (or delete its run folder "
            f"{path.parent.parent})") from err
    if not isinstance(state, dict):
        raise guards.CheckpointError(
            f"{path} is not a training checkpoint (it holds a {type(state).__name__}); delete "
            "it to train this run afresh")
    return state


class LatestCheckpoint(ModelCheckpoint):
    """``last.ckpt``, written at the end of every ``every``-th training epoch, of the epoch in
    which the run is told to stop (e.g. by a time-slicing callback) and of the last epoch.

    Writing a checkpoint costs about as much as a training step of the N-body models, so long
    runs of one step per epoch write it every few epochs; a run killed in between resumes from
    the last one written and repeats those epochs exactly (batches and rotations are functions
    of seed, epoch and step).

    A run stopped by SIGTERM (or a forwarded Ctrl-C) also writes it at the stop, where a resume
    is exact: after the end-of-epoch hooks, or between two training batches when ``sampler``
    (an :class:`EpochShuffle`, with loader batches of ``batch_size`` unless it yields
    batches itself) can start the epoch's order
    where it stopped; the position is kept in the checkpoint. Not during validation, not after
    an epoch's last batch before its end-of-epoch hooks, not under DDP: a run stopped there
    resumes from the checkpoint before."""

    def __init__(self, dirpath: Path, every: int = 1, sampler: EpochShuffle | None = None,
                 batch_size: int | None = None) -> None:
        if int(every) < 1:
            raise ValueError(f"checkpoint interval must be >= 1 epoch, got {every}")
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1,
                         save_on_train_epoch_end=True, enable_version_counter=False)
        self.every = int(every)
        self.sampler, self.batch_size = sampler, batch_size
        self.position = (0, 0)  # (epoch, training batches of it done)
        self.phase = "start"  # where training is: mid-epoch, last-batch, validating, epoch-end
        self.saved_on_interrupt = False

    @property
    def path(self) -> Path:
        """The file this callback writes."""
        return Path(str(self.dirpath)) / "last.ckpt"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        done = batch_idx + 1
        self.position = (trainer.current_epoch, done)
        self.phase = "mid-epoch" if done < trainer.num_training_batches else "last-batch"
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.phase = "validating"

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.position, self.phase = (trainer.current_epoch + 1, 0), "epoch-end"
        done = trainer.current_epoch + 1
        if done % self.every == 0 or trainer.should_stop or done >= (trainer.max_epochs or 0):
            super().on_train_epoch_end(trainer, pl_module)

    def _resumable_here(self, trainer) -> bool:
        if trainer.world_size > 1 or trainer.sanity_checking:
            return False
        if self.phase == "epoch-end":
            return True
        return self.phase == "mid-epoch" and self._skippable()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or not self._resumable_here(trainer):
            return
        if self._last_global_step_saved == trainer.global_step and self.path.exists():
            return  # written at this very point already (end of a checkpoint epoch)
        self._save_checkpoint(trainer, str(self.path))
        self.saved_on_interrupt = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "position": list(self.position)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        epoch, done = state.pop("position", (0, 0))
        super().load_state_dict(state)
        self.position = (int(epoch), int(done))
        if done and self._skippable():
            per_batch = 1 if self.sampler.batch_size is not None else self.batch_size
            self.sampler.resume_within_epoch(epoch, done * per_batch)

    def _skippable(self) -> bool:
        """Whether the training order can be restarted within an epoch: an
        :class:`EpochShuffle` yielding batches, or indices with a known batch size."""
        return self.sampler is not None and (self.sampler.batch_size is not None
                                             or self.batch_size is not None)


class _Stopwatch(pl.Callback):
    """Keeps a run's :class:`TrainingClock` with its checkpoints: every checkpoint written
    (each epoch's, the best one, the one written at a SIGTERM) records the training time so far,
    so a run killed without warning and resumed from its checkpoint still reports the time of
    the work it kept (the epochs after the checkpoint are redone and counted once)."""

    def __init__(self, clock: TrainingClock) -> None:
        self.clock = clock
        self.before = clock.before()
        self.start: float | None = None
        self.start_epoch: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start, self.start_epoch = time.perf_counter(), trainer.current_epoch

    def total(self) -> float:
        """The time of earlier invocations plus this one's training so far."""
        return self.before + (0.0 if self.start is None else time.perf_counter() - self.start)

    def trained(self, trainer) -> bool:
        """Whether this invocation trained an epoch (a finished run is only restored)."""
        return self.start_epoch is not None and trainer.current_epoch > self.start_epoch

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.is_global_zero:
            self.clock.set(self.total())


class _SignalBridge(pl.Callback):
    """Routes SIGTERM and Ctrl-C to Lightning's graceful stop while a trainer runs.

    Lightning installs its SIGTERM handler (stop at the end of the batch) only once a fit or
    test has set up; a signal that arrives before is kept and delivered to Lightning at its
    first hook. The first Ctrl-C is delivered as SIGTERM (a clean stop that can be checkpointed)
    and a second one interrupts at once. Also records the epoch for the interruption message."""

    def __init__(self) -> None:
        self.active = False
        self.pending: int | None = None
        self.signum = int(signal.SIGTERM)
        self.forwarded = False

    def _deliver(self, signum: int) -> None:
        self.signum, self.forwarded = int(signum), True
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler) and handler != self.on_sigterm:
            handler(signal.SIGTERM, None)
        else:  # Lightning's handler is not there (it is being torn down): stop at once
            raise guards.Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def _activate(self, trainer, *args) -> None:
        if not self.active:
            self.active = True
            if self.pending is not None:
                pending, self.pending = self.pending, None
                self._deliver(pending)

    on_sanity_check_start = on_train_start = on_validation_start = on_test_start = _activate

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        guards.mark(f"epoch {trainer.current_epoch}")

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """Before Lightning's handler is up, keep the signal; after, Lightning has it."""
        if not self.active and self.pending is None:
            self.pending = int(signal.SIGTERM)

    def on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """The first Ctrl-C stops gracefully; a second one interrupts at once."""
        if self.forwarded or self.pending is not None:
            raise KeyboardInterrupt()
        if self.active:
            self._deliver(signal.SIGINT)
        else:
            self.pending = int(signal.SIGINT)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Install the two handlers (main thread only) and restore the previous ones."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self.on_sigterm),
                    signal.SIGINT: signal.signal(signal.SIGINT, self.on_sigint)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _run_trainer(trainer: pl.Trainer, method: str, checkpoint: Path, *args, **kwargs) -> Any:
    """``trainer.fit`` / ``trainer.test`` with SIGTERM and Ctrl-C turned into
    :class:`~equirelax.experiments.kit.guards.RunInterruptedError` (the checkpoint is written by
    :class:`LatestCheckpoint` where an exact resume is possible)."""
    bridge = next(cb for cb in trainer.callbacks if isinstance(cb, _SignalBridge))
    bridge.active, bridge.pending, bridge.forwarded = False, None, False
    stopped: int | None = None
    with bridge.installed():
        try:
            result = getattr(trainer, method)(*args, **kwargs)
        except SIGTERMException:
            stopped = bridge.signum
        except SystemExit as done:  # Lightning ends a KeyboardInterrupt with sys.exit(1)
            if not isinstance(done.__context__, KeyboardInterrupt):
                raise
            stopped = int(signal.SIGINT)
        if stopped is None and bridge.pending is not None:
            stopped = bridge.pending  # arrived when nothing was left to run
    if stopped is not None:
        resume = ("rerun the same command to resume" if checkpoint.exists() else
                  "rerun the same command to start it again (no checkpoint was written yet)")
        where = f"epoch {trainer.current_epoch}"
        raise guards.RunInterruptedError(where, stopped, resume) from None
    return result


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

    Results hold the best validation loss, the test metrics of that model, the run time
    (``fit_seconds``: this invocation; ``training_seconds``: the run's training over every
    invocation, kept in its folder with each checkpoint, see :class:`_Stopwatch`), and the
    per-epoch validation curve read back from the CSV log. ``callbacks`` are extra
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
    sampler = train.sampler if isinstance(train.sampler, EpochShuffle) else None
    latest = LatestCheckpoint(out / "checkpoints", config.checkpoint_every_n_epochs,
                              sampler=sampler, batch_size=train.batch_size)
    stopwatch = _Stopwatch(TrainingClock(out))
    all_callbacks: list[pl.Callback] = [_SignalBridge(), stopwatch, ckpt, latest]
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
    last = latest.path
    resume_from = str(last) if config.resume and last.exists() else None
    if resume_from is not None:
        load_checkpoint(last)  # a truncated file fails here, with its name and what to do
    start = time.perf_counter()
    _run_trainer(trainer, "fit", last, task, train, val, ckpt_path=resume_from)
    elapsed = time.perf_counter() - start
    best = ckpt.best_model_path
    if best:
        task.load_state_dict(load_checkpoint(best)["state_dict"])
    results: dict[str, Any] = {
        "config": asdict(config),
        "best_val_loss": float(ckpt.best_model_score) if ckpt.best_model_score is not None
        else None,
        "fit_seconds": elapsed,
        # every invocation's training time, kept with the checkpoints (a finished run that is
        # only restored and tested adds nothing)
        "training_seconds": (stopwatch.clock.set(stopwatch.total())
                             if stopwatch.trained(trainer) and trainer.is_global_zero
                             else stopwatch.clock.before()),
        "resumed_from": resume_from,
    }
    if test is not None:
        tested = _run_trainer(trainer, "test", last, task, test, verbose=False)
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


__all__ = ["EpochShuffle", "EquivariantTask", "LatestCheckpoint", "RunConfig", "SeedEachStep",
           "fit", "load_checkpoint", "parameter_count", "read_curve", "step_seed"]
