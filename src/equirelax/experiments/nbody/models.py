"""The two models of the N-body study (EGNN, SEGNN), their step function and loss."""

from __future__ import annotations

import torch
from torch import nn

from equirelax.data.nbody import NBodySample
from equirelax.experiments.nbody.config import MODELS


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
