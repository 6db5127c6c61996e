"""Settings of the N-body study: models, variants (the exact model, the paper's relaxation and
its ablations), presets, the resolved configuration of a command, and what a run's folder name
and its checkpoints depend on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MODELS = ("egnn", "segnn")
#: The variants (arms) of the study: the exact model, the paper's relaxation, and the paper's
#: ablations of it (each relaxed arm is evaluated hardened, θ = 0): no schedule (θ = 0.1
#: throughout, the paper's "no cycle"), no Lie-derivative term, no penalty at all; and between
#: the last two, both penalties at a tenth of their weights (how the outcome depends on the
#: penalty's strength).
VARIANTS = ("exact", "relaxed", "no-schedule", "no-lie", "weak-penalty", "no-penalty")
#: How each relaxed variant changes the study's relaxation settings.
VARIANT_CHANGES: dict[str, dict[str, Any]] = {
    "relaxed": {},
    "no-schedule": {"schedule": "constant"},
    "no-lie": {"lie_weight": 0.0},
    "weak-penalty": {"lie_weight": 0.1, "norm_weight": 0.1},  # factors on the study's weights
    "no-penalty": {"lie_weight": 0.0, "norm_weight": 0.0},
}


#: Changes of VARIANT_CHANGES that multiply the study's value instead of replacing it.
_SCALED = {"weak-penalty"}
SWEEPS = ("layers", "train-size")


#: Training budgets: data sizes, epochs, seeds, validation interval, and the values of each
#: sweep (``--sweep``) when ``--sweep-values`` is not given.
PRESETS: dict[str, dict[str, Any]] = {
    # the paper's protocol (SEGNN N-body): about 1.5-6 h per run on 2 CPU cores, minutes on a GPU
    "paper": {"epochs": 1000, "train_size": 3000, "val_size": 2000, "test_size": 2000,
              "seeds": (0, 1, 2), "val_every": 5,
              "sweep_values": {"layers": (1, 2, 3, 4), "train-size": (100, 300, 1000, 3000)}},
    # the largest budget that was run on 2 shared CPU cores (see docs/nbody.md)
    "cpu": {"epochs": 40, "train_size": 1000, "val_size": 500, "test_size": 2000,
            "seeds": (0, 1, 2), "val_every": 1,
            "sweep_values": {"layers": (1, 2, 4), "train-size": (100, 300, 1000)}},
    # end to end in a few minutes: checks the pipeline, not the science
    "quick": {"epochs": 25, "train_size": 500, "val_size": 300, "test_size": 500,
              "seeds": (0,), "val_every": 1,
              "sweep_values": {"layers": (1, 2), "train-size": (100, 300)}},
}


@dataclass(frozen=True)
class StudyConfig:
    """Every setting of one invocation, with the preset resolved."""

    preset: str
    models: tuple[str, ...]
    variants: tuple[str, ...]
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
    out: str
    runs_dir: str
    cache_dir: str | None
    stop_after: int | None
    progress: bool
    report_only: bool = False
    jobs: int = 1
    shard: tuple[int, int] | None = None
    penalty_sketch: int | None = None


def run_name(model: str, arm: str, layers: int, train_size: int, seed: int) -> str:
    """Directory / file name of one run."""
    return f"{model}-L{layers}-n{train_size}-{arm}-s{seed}"


def arm_relaxation(cfg: StudyConfig, arm: str) -> dict[str, Any] | None:
    """Schedule and penalty weights of a relaxed arm (``None`` for the exact arm)."""
    if arm == "exact":
        return None
    if arm not in VARIANT_CHANGES:
        raise ValueError(f"variant must be one of {VARIANTS}, got {arm!r}")
    settings = {"schedule": cfg.schedule, "lie_weight": cfg.lie_weight,
                "norm_weight": cfg.norm_weight}
    for key, value in VARIANT_CHANGES[arm].items():
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
                        penalty_rows=cfg.penalty_rows, penalty_sketch=cfg.penalty_sketch)
    return settings
