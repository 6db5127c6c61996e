"""Lightning callbacks of the N-body study: ending a run early (time-sliced jobs), and logging
the size of the free terms at every validation."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch

from equirelax.experiments.nbody.metrics import free_term_sizes


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
