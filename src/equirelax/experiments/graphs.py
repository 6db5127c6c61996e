"""``equirelax graphs``: an invariant graph network on random graphs, exact vs relaxed.

A 2-index S_n model (:class:`~equirelax.models.InvariantGraphNetwork`: 2 → 2 layers on
c · (V ⊗ V), a 2 → 0 layer and an MLP head) regresses an exactly computed property of random
graphs with n nodes (:mod:`equirelax.data.graphs`: Erdős–Rényi and stochastic-block graphs;
the triangle density, or the number of connected components). Its equivariant layers are
applied by partitions (no dense weight); two arms are trained from the same seeds:

* ``exact``: the invariant network as it is;
* ``relaxed``: the same network through ``er.relax(model, schedule, free_rank=r, ...)``: every
  equivariant layer gets a low-rank free term θ(t) U Vᵀ (a dense one would have
  (c n²)² entries), with the Lie-derivative and norm penalties; θ follows the triangular
  schedule to exactly 0 at the last step, and the model is hardened (free terms dropped), so
  the deployed model is the exact architecture, exactly invariant.

Both arms of a seed see the same graphs, the same batches in the same order and the same
initial weights (the runner's :class:`~equirelax.experiments.kit.runner.EpochShuffle` and
:class:`~equirelax.experiments.kit.runner.SeedEachStep`); the loss is the MSE of the target
standardised on the training set. Each run is checkpointed every epoch and resumes when the
command is rerun. The report (``results.md``, ``results.json``, ``curves.png``) gives, per
arm, the test MSE / Var(y), the invariance error of the deployed model under random node
relabellings, and the paired ratio relaxed / exact per seed with a 95% t-interval of its
geometric mean (on log ratios).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from equirelax.data.graphs import TARGETS, random_graphs
from equirelax.experiments.classification import (
    KIT_FIELDS,
    Variant,
    checked_variants_and_seeds,
    run_comparison,
    training_loader,
)
from equirelax.experiments.kit.argtypes import non_negative_int, positive_float
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.config import add_config_options, option
from equirelax.experiments.kit.config import config_from_args as build_config
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE, UsageError
from equirelax.experiments.kit.options import (
    add_common_options,
    add_preset_options,
    add_relax_option,
    add_variants_option,
    chosen_preset,
    schedule_names,
)
from equirelax.experiments.kit.plots import plot_seed_curves
from equirelax.experiments.kit.runner import RunConfig
from equirelax.experiments.kit.runs import check_run_settings, prepare_folders
from equirelax.experiments.kit.tables import (
    command_lines,
    markdown_table,
    settings_table,
    write_results,
)
from equirelax.experiments.kit.tables import summarise as summarise_runs
from equirelax.models import InvariantGraphNetwork
from equirelax.nn.linear import EquivariantLinear

VARIANTS = ("exact", "relaxed")

PRESETS: dict[str, dict[str, Any]] = {
    # about 2-4 minutes on one core: checks the pipeline end to end, numbers are not results
    "quick": {
        "nodes": 50,
        "train_size": 320,
        "val_size": 96,
        "test_size": 192,
        "channels": (8, 8),
        "invariant_channels": 16,
        "head_hidden": (32,),
        "free_rank": 4,
        "epochs": 10,
        "batch_size": 16,
        "lr": 2e-3,
        "seeds": (0, 1, 2),
    },
    # the study: 100-node graphs, three 2 -> 2 layers, 5 seeds (hours on one CPU core)
    "standard": {
        "nodes": 100,
        "train_size": 1024,
        "val_size": 256,
        "test_size": 512,
        "channels": (8, 8, 8),
        "invariant_channels": 32,
        "head_hidden": (64,),
        "free_rank": 8,
        "epochs": 20,
        "batch_size": 16,
        "lr": 1e-3,
        "seeds": (0, 1, 2, 3, 4),
    },
}
DEFAULT_PRESET = "standard"



@dataclass
class GraphStudyConfig:
    """Every setting of a graph comparison (defaults: the ``standard`` preset); each field is an
    option of ``equirelax graphs``."""

    variants: tuple[str, ...] = VARIANTS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    target: str = option("triangles", "graph property to predict (triangles: the triangle "
                                    "density; components: the number of connected components)",
                       choices=TARGETS)
    nodes: int = option(100, "nodes per graph")
    degree_range: tuple[float, float] = option((1.0, 8.0), "mean degree of each graph, uniform "
                                                         "in [LOW, HIGH]",
                                             type=positive_float, metavar=("LOW", "HIGH"))
    train_size: int = option(1024, "training graphs")
    val_size: int = option(256, "validation graphs")
    test_size: int = option(512, "test graphs")
    data_seed: int = option(0, "seed of the graphs", type=non_negative_int)
    channels: tuple[int, ...] = option((8, 8, 8), "widths of the 2 -> 2 layers")
    invariant_channels: int = option(32, "width of the 2 -> 0 layer")
    head_hidden: tuple[int, ...] = option((64,), "hidden widths of the MLP head")
    epochs: int = option(20, "training epochs")
    batch_size: int = option(16, "training batch size")
    lr: float = option(1e-3, "Adam learning rate", type=positive_float)
    weight_decay: float = option(0.0, "Adam weight decay")
    schedule: str = "triangular"
    free_rank: int = option(8, "rank r of the relaxed arm's free terms W = U Vᵀ")
    lie_weight: float = option(1e-2, "weight of the Lie-derivative penalty")
    norm_weight: float = option(1e-2, "weight of the norm penalty ||W x||²")
    relax_init_std: float = option(1e-3, "initial std of the free terms")
    penalty_rows: int | None = option(None, "rows of each layer input the penalties are "
                                          "evaluated on (none: all)")
    eval_permutations: int = option(8, "random relabellings of the invariance error")
    devices: int = 1
    num_nodes: int = 1
    accelerator: str = "auto"

    def __post_init__(self) -> None:
        self.variants, self.seeds = checked_variants_and_seeds(self.variants, self.seeds,
                                                               VARIANTS)
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.schedule not in schedule_names():
            raise ValueError(f"schedule must be one of {schedule_names()}, got {self.schedule!r}")
        for name in (
            "nodes",
            "train_size",
            "val_size",
            "test_size",
            "invariant_channels",
            "epochs",
            "batch_size",
            "free_rank",
            "eval_permutations",
            "devices",
            "num_nodes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.nodes < 4:
            raise ValueError(f"nodes must be >= 4 (2 -> 2 layers need n >= 4), got {self.nodes}")
        self.channels = tuple(self.channels)
        self.head_hidden = tuple(self.head_hidden)
        if not self.channels:
            raise ValueError("channels must name at least one 2 -> 2 layer width, got ()")
        low, high = self.degree_range = tuple(float(v) for v in self.degree_range)
        if not 0 < low <= high <= self.nodes - 1:
            raise ValueError(
                f"degree_range must satisfy 0 < low <= high <= nodes - 1 = "
                f"{self.nodes - 1}, got ({low:g}, {high:g})"
            )
        if self.batch_size > self.train_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be <= train_size "
                f"({self.train_size}): training batches are full batches"
            )


# ------------------------------------------------------------------------------------------
# Data, model, evaluation
# ------------------------------------------------------------------------------------------


@dataclass
class GraphSplits:
    """Train/val/test datasets of (flattened adjacency, standardised target), and the
    standardisation (train mean and standard deviation of the target)."""

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    mean: float
    std: float


def make_splits(cfg: GraphStudyConfig) -> GraphSplits:
    """One draw of train + val + test graphs (seeded by ``data_seed``), split in that order,
    targets standardised with the training set's mean and standard deviation."""
    total = cfg.train_size + cfg.val_size + cfg.test_size
    graphs = random_graphs(total, cfg.nodes, cfg.target, cfg.degree_range, seed=cfg.data_seed)
    y = graphs.target.double()
    train_y = y[: cfg.train_size]
    mean = float(train_y.mean())
    std = float(train_y.std()) if cfg.train_size > 1 else 0.0
    if not std > 0:
        raise UsageError(
            f"the {cfg.train_size} training graphs all have the same "
            f"{cfg.target} target; use more graphs or a wider --degree-range"
        )
    x = graphs.adjacency.flatten(-2)
    z = ((y - mean) / std).float()
    bounds = np.cumsum([0, cfg.train_size, cfg.val_size, cfg.test_size])
    parts = [TensorDataset(x[a:b], z[a:b]) for a, b in itertools.pairwise(bounds)]
    return GraphSplits(*parts, mean=mean, std=std)


def build_model(cfg: GraphStudyConfig) -> InvariantGraphNetwork:
    """The invariant graph network of both arms (the relaxed arm relaxes a copy of it)."""
    return InvariantGraphNetwork(cfg.nodes, cfg.channels, cfg.invariant_channels, cfg.head_hidden)


def predict(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The (prediction, standardised target) of a batch."""
    x, y = batch
    return model(x).squeeze(-1), y


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error (of standardised targets: MSE / Var(y_train))."""
    return nn.functional.mse_loss(pred, target)


def relabel(x: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """P A Pᵀ for flattened adjacency matrices ``x`` (B, n²), one permutation per row."""
    n = perms.shape[-1]
    a = x.reshape(-1, n, n)
    rows = torch.arange(len(a))[:, None, None]
    return a[rows, perms[:, :, None], perms[:, None, :]].reshape(x.shape)


@torch.no_grad()
def invariance_error(
    model: nn.Module,
    x: torch.Tensor,
    permutations: int,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> float:
    """max over random node relabellings P of ||f(P A Pᵀ) − f(A)|| / ||f(A)|| on ``x``, with
    the model run in ``dtype``; the comparison is in float64."""
    model = copy.deepcopy(model).to(dtype).eval()
    x = x.to(dtype)
    n = math.isqrt(x.shape[-1])
    base = model(x).double()
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(permutations):
        perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(len(x))])
        moved = model(relabel(x, perms)).double()
        worst = max(worst, float((moved - base).norm() / base.norm()))
    return worst


@torch.no_grad()
def test_metrics(model: nn.Module, splits: GraphSplits, batch_size: int) -> dict[str, float]:
    """Test MSE / Var(y_test) and MAE in the target's units, of ``model`` in eval mode."""
    model.eval()
    x, z = splits.test.tensors
    pred = torch.cat([model(xb).squeeze(-1) for xb in x.split(batch_size)]).double()
    y = z.double() * splits.std + splits.mean
    p = pred * splits.std + splits.mean
    return {
        "test_rel_mse": float((p - y).pow(2).mean() / y.var()),
        "test_mae": float((p - y).abs().mean()),
    }


# ------------------------------------------------------------------------------------------
# Summary and report
# ------------------------------------------------------------------------------------------


#: metrics compared as paired ratios relaxed / exact (lower is better for each)
PAIRED = (("test_rel_mse", "test MSE / Var(y)"), ("best_val_loss", "best validation loss"))
#: per-arm columns of the table: record key, heading
COLUMNS = (
    ("test_rel_mse", "test MSE / Var(y)"),
    ("test_mae", "test MAE"),
    ("best_val_loss", "best val loss"),
    ("invariance_error_float64", "invariance error float64 (worst seed)"),
    ("invariance_error_float32", "invariance error float32 (worst seed)"),
    ("parameters", "deployed parameters"),
    ("trained_parameters", "trained parameters"),
    ("fit_seconds", "training seconds"),
)


def summarise(records: Sequence[dict]) -> dict[str, Any]:
    """Per arm, mean / std / max over seeds of every column; for the relaxed arm, the paired
    ratios relaxed / exact per seed, their geometric mean with a 95% t-interval and what the
    interval says (``better``: below 1, ``worse``: above 1, ``no difference shown``)."""
    return summarise_runs(records, [key for key, _ in COLUMNS],
                          ratios=[key for key, _ in PAIRED])


def _cell(key: str, stat: dict[str, float]) -> str:
    if key.startswith("invariance_error"):
        return f"{stat['max']:.1e}"
    if key in ("parameters", "trained_parameters", "fit_seconds"):
        return f"{stat['mean']:.0f}"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


#: what a paired interval says, in the words of the report
READING = {
    "better": "interval below 1: relaxed lower than exact on these seeds",
    "worse": "interval above 1: relaxed higher than exact on these seeds",
    "no difference shown": "interval contains 1: no difference shown",
    "one seed": "one seed: no interval",
}


def report_lines(
    cfg: GraphStudyConfig, records: Sequence[dict], summary: dict, command: str, smoke_test: bool
) -> list[str]:
    """The markdown of ``results.md``."""
    lines = ["# Graphs: invariant graph network, exact vs relaxed (low-rank free terms)", ""]
    if smoke_test:
        lines += [f"**{SMOKE_TEST_NOTE}**", ""]
    lines += command_lines(command)
    lines += markdown_table(
        [[arm, *(_cell(k, stats[k]) for k, _ in COLUMNS)]
         for arm, stats in summary["variants"].items()],
        ["arm", *(h for _, h in COLUMNS)])
    seeds = next(iter(summary["variants"].values()))["seeds"]
    lines += ["", f"Mean ± standard deviation over seeds {', '.join(map(str, seeds))}."]
    if summary["paired"]:
        lines += [
            "",
            "Paired ratios relaxed / exact (same graphs, batches and initial weights "
            "per seed; below 1: relaxed lower):",
            "",
            "| metric | per seed | geometric mean [95% t-interval] | relaxed lower on | reading |",
            "|---|---|---|---|---|",
        ]
        for key, label in PAIRED:
            p = summary["paired"].get(key)
            if p is None:
                continue
            per_seed = ", ".join(f"{q:.3f}" for q in p["ratios"])
            low, high = p["ci95"]
            lines.append(
                f"| {label} | {per_seed} | {p['geometric_mean']:.3f} [{low:.3f}, "
                f"{high:.3f}] | {p['relaxed_lower']}/{len(p['ratios'])} seeds | "
                f"{READING[p['verdict']]} |"
            )
    structured = {(r["structured_layers"], r["equivariant_layers"]) for r in records}
    if structured == {(max(t for _, t in structured),) * 2}:
        applied = "every equivariant layer applied by partitions (no dense weight)"
    else:
        counts = ", ".join(f"{s}/{t}" for s, t in sorted(structured))
        applied = (
            f"equivariant layers applied by partitions: {counts} (the others, small, "
            "by a dense weight)"
        )
    kind = (
        "triangle density (triangles / C(n, 3))"
        if cfg.target == "triangles"
        else "number of connected components"
    )
    lines += [
        "",
        f"Data: {cfg.train_size}/{cfg.val_size}/{cfg.test_size} train/val/test random graphs "
        f"of {cfg.nodes} nodes, Erdős–Rényi or stochastic-block with mean degree uniform in "
        f"[{cfg.degree_range[0]:g}, {cfg.degree_range[1]:g}]; target: the {kind}, "
        "standardised on the training set (the loss is the MSE of the standardised target).",
        "",
        f"Model: 2 → 2 layers of widths {list(cfg.channels)} on c · (V ⊗ V), each followed "
        "by a batch normalisation over its entries and a ReLU, a 2 → 0 "
        f"layer to {cfg.invariant_channels} invariant channels, MLP head {list(cfg.head_hidden)}"
        f"; {applied}. Relaxed arm: "
        f"`relax(model, {cfg.schedule!r}, free_rank={cfg.free_rank}, lie_weight="
        f"{cfg.lie_weight:g}, norm_weight={cfg.norm_weight:g})`, θ stepped every batch, "
        "validated and tested as the hardened model (free terms dropped).",
        "",
        f"Test metrics are those of the model with the best validation loss. The invariance "
        f"error is max over {cfg.eval_permutations} random relabellings P of ||f(P A Pᵀ) − "
        "f(A)|| / ||f(A)|| on 8 test graphs, for the deployed model run in float64 and in "
        "float32. Deployed parameters: the exact architecture's; trained parameters include "
        "the relaxed arm's free terms.",
        "",
        "Settings:",
        "",
        *settings_table(asdict(cfg)),
        "",
        "Validation curves: `curves.png`; every run: `results.json`.",
        "",
    ]
    return lines


def plot_curves(out_dir: Path, records: Sequence[dict], title: str) -> Path:
    """Validation loss (the exact model's) and training loss per epoch, mean over seeds with
    a min/max band, per arm."""
    return plot_seed_curves(out_dir, records, title, [
        ("val_loss", "validation MSE (standardised, exact model)", "log"),
        ("train_loss", "training loss (task only)", "log")])


# ------------------------------------------------------------------------------------------
# The study
# ------------------------------------------------------------------------------------------

#: settings a run folder's checkpoints depend on; resuming with others is refused
_RUN_SETTINGS = tuple(
    f.name
    for f in fields(GraphStudyConfig)
    if f.name not in ("variants", "seeds", "eval_permutations")
)


def run_settings(cfg: GraphStudyConfig) -> dict[str, Any]:
    """The settings a run folder's checkpoints depend on (resuming with others is refused)."""
    return {k: getattr(cfg, k) for k in _RUN_SETTINGS}


def run_study(
    cfg: GraphStudyConfig,
    out_dir: Path,
    runs_dir: Path,
    command: str,
    progress: bool = True,
    smoke_test: bool = False,
) -> dict | None:
    """Generate the graphs, train both arms from every seed, evaluate the deployed (exact)
    models, write the report. ``None`` in DDP processes other than rank 0."""
    splits = make_splits(cfg)
    probe = splits.test.tensors[0][:8]
    base = RunConfig(
        epochs=cfg.epochs,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        lie_weight=cfg.lie_weight,
        norm_weight=cfg.norm_weight,
        relax_init_std=cfg.relax_init_std,
        penalty_rows=cfg.penalty_rows,
        free_rank=cfg.free_rank,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        accelerator=cfg.accelerator,
        extra={"study": "graphs"},
    )
    relax = {"exact": None, "relaxed": cfg.schedule}
    variants = [Variant(name, lambda: build_model(cfg), relax=relax[name]) for name in cfg.variants]

    def loaders(seed: int) -> tuple[DataLoader, DataLoader]:
        train = training_loader(
            splits.train, cfg.batch_size, seed, distributed=cfg.devices * cfg.num_nodes > 1
        )
        return train, DataLoader(splits.val, batch_size=max(cfg.batch_size, 64))

    def evaluate(model: nn.Module) -> dict[str, Any]:
        layers = [m for m in model.modules() if isinstance(m, EquivariantLinear)]
        return {
            "structured_layers": sum(m.structured for m in layers),
            "equivariant_layers": len(layers),
            **test_metrics(model, splits, max(cfg.batch_size, 64)),
            "invariance_error_float64": invariance_error(model, probe, cfg.eval_permutations),
            "invariance_error_float32": invariance_error(
                model, probe, cfg.eval_permutations, torch.float32
            ),
        }

    records = run_comparison(
        variants,
        cfg.seeds,
        loaders,
        predict,
        base,
        runs_dir,
        evaluate,
        progress=progress,
        loss_fn=mse,
        metrics={},
    )
    if records is None:
        return None
    summary = summarise(records)
    write_results(out_dir, "results",
                  {"settings": asdict(cfg), "summary": summary, "records": records},
                  report_lines(cfg, records, summary, command, smoke_test), command,
                  smoke_test=smoke_test)
    plot_curves(out_dir, records, f"{cfg.target}, n = {cfg.nodes}")
    return {"records": records, "summary": summary}


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------

def preset_name(args: argparse.Namespace) -> str:
    """``quick`` with ``--quick``, else ``--preset``, else ``standard``."""
    return chosen_preset(args, DEFAULT_PRESET)


def config_from_args(args: argparse.Namespace) -> GraphStudyConfig:
    """The preset, then every option given on the command line (``--relax none``: the exact
    arm only); options that do not fit together raise :class:`UsageError` (exit status 2)
    naming them."""
    overrides: dict[str, Any] = {key: getattr(args, key) for key in ("variants", "seeds")
                                 if getattr(args, key, None) is not None}
    overrides.update(devices=args.devices, num_nodes=args.num_nodes,
                     accelerator=args.accelerator)
    if args.relax == "none":
        overrides["variants"] = ("exact",)
    elif args.relax is not None:
        overrides["schedule"] = args.relax
    try:
        return build_config(args, GraphStudyConfig, PRESETS, preset_name(args), **overrides)
    except ValueError as err:
        raise UsageError(str(err)) from None


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``equirelax graphs``."""
    add_preset_options(parser, PRESETS, None, DEFAULT_PRESET)
    add_variants_option(parser, VARIANTS)
    add_relax_option(parser, help_text="relaxation schedule of the relaxed arm; none: the "
                                       "exact arm only")
    add_config_options(parser, GraphStudyConfig, exclude=KIT_FIELDS)
    add_common_options(parser, "graphs", seeds_default=None, threads_default=2)


def main(args: argparse.Namespace) -> int:
    """Run the graph comparison and write its report."""
    cfg = config_from_args(args)
    preset = preset_name(args)
    smoke_test = preset == "quick"
    out, runs = prepare_folders(args, "graphs", preset, smoke_test=smoke_test)
    check_run_settings(runs, run_settings(cfg))
    start = time.perf_counter()
    result = run_study(cfg, out, runs, record_command(args), args.progress,
                       smoke_test=smoke_test)
    if result is None:  # a DDP process other than rank 0
        return 0
    summary = result["summary"]
    for arm, stats in summary["variants"].items():
        print(
            f"{arm:>8}: test MSE / Var(y) {_cell('test_rel_mse', stats['test_rel_mse'])}, "
            f"invariance error {stats['invariance_error_float64']['max']:.1e} (float64)"
        )
    paired = summary["paired"].get("test_rel_mse")
    if paired is not None:
        low, high = paired["ci95"]
        print(
            f"relaxed / exact test MSE: geometric mean {paired['geometric_mean']:.3f} "
            f"[{low:.3f}, {high:.3f}] over {len(paired['ratios'])} paired seeds "
            f"({READING[paired['verdict']]})"
        )
    print(f"wrote {out}/results.md ({time.perf_counter() - start:.0f} s)")
    if smoke_test:
        print(SMOKE_TEST_NOTE)
    return 0


__all__ = [
    "PRESETS",
    "VARIANTS",
    "GraphStudyConfig",
    "build_model",
    "configure",
    "invariance_error",
    "main",
    "make_splits",
    "run_study",
    "summarise",
]
