"""A PyTorch Lightning callback that steps a relaxed model's schedule and logs θ and penalties."""

from __future__ import annotations

import lightning.pytorch as pl

from equirelax.relaxation.relaxed_model import RelaxedModel


class LightningCallback(pl.Callback):
    """Advance θ(t) after every optimizer step (``interval="step"``) or epoch (``"epoch"``).

    The LightningModule adds ``relaxed.penalty()`` to its loss in ``training_step``; the
    schedule position is part of the relaxed model's state_dict, so Lightning checkpoints resume
    it exactly. ``relaxed=None`` finds the (single) RelaxedModel inside the LightningModule.
    """

    def __init__(self, relaxed: RelaxedModel | None = None, interval: str = "step") -> None:
        super().__init__()
        if interval not in ("step", "epoch"):
            raise ValueError(f"interval must be 'step' or 'epoch', got {interval!r}")
        self.relaxed = relaxed
        self.interval = interval
        self._optimizer_steps = 0  # Lightning's global_step when θ was last advanced

    def _find(self, pl_module: pl.LightningModule) -> RelaxedModel:
        if self.relaxed is None:
            found = [m for m in pl_module.modules() if isinstance(m, RelaxedModel)]
            if len(found) != 1:
                raise ValueError(
                    f"expected exactly one RelaxedModel inside {type(pl_module).__name__}, "
                    f"found {len(found)}; pass LightningCallback(relaxed=...)"
                )
            return found[0]
        return self.relaxed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.interval == "epoch":  # θ is constant through the epoch: one log, not one a step
            pl_module.log("relax/theta", self._find(pl_module).theta, on_step=False,
                          on_epoch=True)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.interval == "step":
            pl_module.log("relax/theta", self._find(pl_module).theta, on_step=True,
                          on_epoch=False)

    def on_train_start(self, trainer, pl_module) -> None:
        self._optimizer_steps = trainer.global_step  # restored from a checkpoint on resume

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # per optimizer step, not per batch: with gradient accumulation (or a skipped step)
        # several batches make one step, and Lightning's global_step counts the steps
        if self.interval != "step":
            return
        done = trainer.global_step - self._optimizer_steps
        if done > 0:
            relaxed = self._find(pl_module)
            for _ in range(done):
                relaxed.step()
            self._optimizer_steps = trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.interval == "epoch":
            self._find(pl_module).step()
