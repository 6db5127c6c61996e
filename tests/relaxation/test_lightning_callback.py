"""The Lightning callback advances θ once per optimizer step (or epoch), whatever the number of
batches a step accumulates."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import equirelax as er
from equirelax.relaxation import LightningCallback


class _Task(pl.LightningModule):
    def __init__(self, relaxed: torch.nn.Module) -> None:
        super().__init__()
        self.net = relaxed

    def training_step(self, batch, batch_idx):
        x, y = batch
        return ((self.net(x) - y) ** 2).mean() + self.net.penalty()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def _fit(tmp_path, accumulate: int, interval: str, batches: int = 8, epochs: int = 1):
    G = er.groups.symmetric(3)
    torch.manual_seed(0)
    model = er.nn.EquivariantLinear(er.reps.natural(G), er.reps.natural(G))
    relaxed = er.relax(model, schedule="linear", total_steps=100)
    data = TensorDataset(torch.randn(4 * batches, 3), torch.randn(4 * batches, 3))
    trainer = pl.Trainer(max_epochs=epochs, accumulate_grad_batches=accumulate,
                         callbacks=[LightningCallback(interval=interval)], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(_Task(relaxed), DataLoader(data, batch_size=4))
    return relaxed, trainer


@pytest.mark.parametrize("accumulate", [1, 4])
def test_theta_advances_once_per_optimizer_step(tmp_path, accumulate):
    relaxed, trainer = _fit(tmp_path, accumulate, "step")
    assert trainer.global_step == 8 // accumulate
    assert relaxed.state_dict()["_extra_state"]["t"] == 8 // accumulate
    assert relaxed.theta == pytest.approx(1 - (8 // accumulate) / 99)


def test_theta_advances_once_per_epoch(tmp_path):
    relaxed, _ = _fit(tmp_path, 2, "epoch", epochs=3)
    assert relaxed.state_dict()["_extra_state"]["t"] == 3
