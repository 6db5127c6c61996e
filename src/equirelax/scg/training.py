"""Training loop of the modular autoencoder: AdamW + one-cycle cosine schedule, checkpoints.

The paper trains with AdamW, a cosine-annealed learning rate starting at 5e-3, for 40,000 steps.
We keep the optimiser and the schedule (the published code's ``OneCycleLR``: 10 % warm-up, cosine
annealing) and scale the number of steps to the CPU budget. A run writes a checkpoint every
``checkpoint_every`` steps and resumes from it when restarted with the same output file, so an
interrupted run loses at most that many steps.
"""

from __future__ import annotations

import csv
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder
from equirelax.scg.datasets import CropSampler
from equirelax.scg.losses import EquivarianceObjective, ObjectiveConfig


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``weights``: data-source proportions of :class:`CropSampler`;
    ``spectral``: run the encoder/decoder convolutions of the objective through FFTs (same
    values up to float rounding, several times faster on CPU)."""

    steps: int = 3000
    batch: int = 16
    crop: int = 32
    lr: float = 5e-3
    weight_decay: float = 1e-4
    pct_start: float = 0.1
    seed: int = 0
    weights: tuple[float, float, float] = (0.7, 0.3, 0.0)
    checkpoint_every: int = 250
    spectral: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise ValueError(f"need steps, batch >= 1, got {self.steps}, {self.batch}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class TrainedAutoencoder:
    """A trained model, its objective (codebooks) and the configs that made it."""

    model: ModularAutoencoder
    objective: EquivarianceObjective
    model_config: AutoencoderConfig
    objective_config: ObjectiveConfig
    train_config: TrainConfig
    history: list[dict[str, float]]


def save_autoencoder(path: Path, trained: TrainedAutoencoder, step: int,
                     optimizer: torch.optim.Optimizer | None = None,
                     scheduler: object | None = None) -> None:
    """Write a checkpoint (model, codebooks, configs, history; optimiser state if given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "model": trained.model.state_dict(),
        "objective": trained.objective.state_dict(),
        "model_config": trained.model_config.to_dict(),
        "objective_config": trained.objective_config.to_dict(),
        "train_config": asdict(trained.train_config),
        "history": trained.history,
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()  # type: ignore[attr-defined]
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_autoencoder(path: Path) -> TrainedAutoencoder:
    """Load a checkpoint written by :func:`save_autoencoder` or :func:`train_autoencoder`."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no autoencoder checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    mc = AutoencoderConfig(**state["model_config"])
    oc = ObjectiveConfig(**state["objective_config"])
    tc_dict = dict(state["train_config"])
    tc_dict["weights"] = tuple(tc_dict["weights"])
    tc = TrainConfig(**tc_dict)
    model = ModularAutoencoder(mc)
    model.load_state_dict(state["model"])
    objective = EquivarianceObjective(model, oc)
    objective.load_state_dict(state["objective"])
    return TrainedAutoencoder(model, objective, mc, oc, tc, list(state["history"]))


def train_autoencoder(model_config: AutoencoderConfig, objective_config: ObjectiveConfig,
                      train_config: TrainConfig, checkpoint: Path | None = None,
                      progress: bool = True, log_every: int = 25) -> TrainedAutoencoder:
    """Train a modular autoencoder; resume from ``checkpoint`` if it holds an unfinished run.

    Returns the trained model; ``history`` holds the loss terms every ``log_every`` steps.
    """
    torch.manual_seed(train_config.seed)
    model = ModularAutoencoder(model_config)
    objective = EquivarianceObjective(model, objective_config,
                                      spectral=train_config.spectral)
    params = list(model.parameters()) + list(objective.parameters())
    optimizer = torch.optim.AdamW(params, lr=train_config.lr,
                                  weight_decay=train_config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=train_config.lr, total_steps=train_config.steps + 1,
        pct_start=train_config.pct_start, anneal_strategy="cos", cycle_momentum=False)
    trained = TrainedAutoencoder(model, objective, model_config, objective_config, train_config,
                                 [])
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        # compare as configs, so that fields added later (with their defaults) still match
        if AutoencoderConfig(**state["model_config"]) != model_config or \
                ObjectiveConfig(**state["objective_config"]) != objective_config:
            raise ValueError(f"checkpoint {checkpoint} was written for a different configuration; "
                             "delete it or choose another output")
        model.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        trained.history = list(state["history"])
        start = int(state["step"])
        if "optimizer" in state and start < train_config.steps:
            optimizer.load_state_dict(state["optimizer"])
            if state["train_config"]["steps"] == train_config.steps:
                scheduler.load_state_dict(state["scheduler"])
            else:  # a run extended to more steps: replay the new schedule up to ``start``
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    for _ in range(start):
                        scheduler.step()
    # The sampler is re-seeded with the step so a resumed run sees fresh crops.
    sampler = CropSampler(size=train_config.crop, weights=train_config.weights,
                          seed=train_config.seed + start)
    gen = torch.Generator().manual_seed(train_config.seed * 7919 + start)
    bar = tqdm(range(start, train_config.steps), initial=start, total=train_config.steps,
               desc="scg autoencoder", disable=not progress)
    t0 = time.perf_counter()
    for step in bar:
        images = sampler.sample(train_config.batch)
        terms = objective(model, images, generator=gen)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        scheduler.step()
        if step % log_every == 0 or step == train_config.steps - 1:
            row = {"step": step, "seconds": time.perf_counter() - t0}
            row.update({k: float(v.detach()) for k, v in terms.items()})
            trained.history.append(row)
            bar.set_postfix(total=f"{row['total']:.4f}", equ=f"{row['equ']:.4f}")
        if checkpoint is not None and ((step + 1) % train_config.checkpoint_every == 0
                                       or step + 1 == train_config.steps):
            save_autoencoder(Path(checkpoint), trained, step + 1, optimizer, scheduler)
    return trained


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    """Write the loss history as CSV."""
    if not history:
        raise ValueError("empty history")
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(history[0].keys())
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for row in history:
            writer.writerow({k: f"{row[k]:.6g}" for k in keys})
