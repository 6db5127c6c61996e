"""Rotation-invariant point-cloud classification: exact vs relaxed Vector Neurons vs PointNet.

The constraint-relaxation paper's main experiment (VN-PointNet on ModelNet40, 300 points,
SO(3)/SO(3)) on data generated here: the procedural shapes of :mod:`equirelax.data.shapes`.
Three variants are trained from the same seeds with the same data, augmentation, optimizer and
number of steps:

* ``exact``: :class:`~equirelax.nn.vn.VNPointNet`, exactly SO(3)-invariant throughout;
* ``relaxed``: the same model relaxed with the public API (``relax(model, "triangular", ...)``:
  every VN linear map gets a free dense term ``θ(t) W`` on the flattened (channel, xyz)
  features, with the Lie-derivative and norm penalties, λ = 0.01 as in the paper), validated
  and tested as the hardened, exactly invariant model;
* ``baseline``: a plain :class:`~equirelax.nn.vn.PointNet`, invariant only through rotation
  augmentation.

Every training batch is rotated by fresh random rotations of the protocol's training kind (SO(3)
for ``so3/so3``, about z for ``z/so3``), for all variants; the rotations, the batch order and
the dropout masks are functions of (seed, epoch, step), so every variant of a seed sees the
same ones, and a resumed run the ones it would have seen. Each final model is tested on three
rotated copies of the test clouds (SO(3), z, none) and its invariance error is measured with
``er.equivariance_error`` (float64, sampled rotations). The script writes a results table, the
per-run records and training curves to its output folder, with the command that reproduces
them. Run with ``equirelax pointcloud --preset quick`` (a few minutes) or ``--preset standard``.

The helpers :func:`run_comparison`, :func:`summarise`, :func:`write_report` and
:func:`plot_curves` are generic over classification studies (the image study uses them too).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import equirelax as er
from equirelax.data.shapes import (
    ShapeData,
    load_shapes,
    parse_protocol,
    random_rotations,
    random_rotations_torch,
    random_z_rotations,
)
from equirelax.experiments.argtypes import (
    non_negative_float,
    non_negative_int,
    positive_int,
)
from equirelax.experiments.classification import (
    Augment,
    Variant,
    claim_sentence,
    command_line,
    evaluate_accuracy,
    format_mean_std,
    plot_curves,
    run_comparison,
    summarise,
    training_loader,
    write_report,
)
from equirelax.experiments.guards import SMOKE_TEST_NOTE
from equirelax.experiments.options import add_run_options, config_values, prepare_run
from equirelax.experiments.runner import RunConfig
from equirelax.nn.vn import PointNet, VNLinear, VNPointNet

VARIANTS = ("exact", "relaxed", "baseline")
TEST_ROTATIONS = ("so3", "z", "none")

PRESETS: dict[str, dict[str, Any]] = {
    # a few minutes on 2 shared cores: checks the whole pipeline, numbers are not meaningful
    "quick": {
        "num_points": 64, "train_size": 240, "val_size": 60, "test_size": 150, "noise_std": 0.02,
        "channels": (8, 16, 32), "k": 8, "head_hidden": (64,), "pointnet_channels": (32, 64, 128),
        "epochs": 2, "batch_size": 24, "lr": 1e-3, "seeds": (0, 1, 2),
    },
    # the main study of docs/pointcloud_images.md: 100 optimizer steps per run
    "standard": {
        "num_points": 64, "train_size": 480, "val_size": 120, "test_size": 450,
        "noise_std": 0.02, "channels": (8, 16, 32), "k": 8, "head_hidden": (64,),
        "pointnet_channels": (64, 128, 256), "epochs": 5, "batch_size": 24, "lr": 2e-3,
        "seeds": (0, 1, 2),
    },
    # a longer study: 600 optimizer steps per run, 128 points, wider VN layers
    "large": {
        "num_points": 128, "train_size": 1200, "val_size": 240, "test_size": 600,
        "noise_std": 0.02, "channels": (8, 16, 64), "k": 10, "head_hidden": (128, 64),
        "pointnet_channels": (64, 128, 256), "epochs": 12, "batch_size": 24, "lr": 2e-3,
        "seeds": (0, 1, 2),
    },
}


@dataclass
class PointCloudStudyConfig:
    """Every setting of a point-cloud comparison (defaults: the ``standard`` preset)."""

    variants: tuple[str, ...] = VARIANTS
    seeds: tuple[int, ...] = (0, 1, 2)
    protocol: str = "so3/so3"
    num_points: int = 64
    train_size: int = 480
    val_size: int = 120
    test_size: int = 450
    noise_std: float = 0.02
    data_seed: int = 0
    channels: tuple[int, int, int] = (8, 16, 32)
    k: int = 8
    head_hidden: tuple[int, ...] = (64,)
    dropout: float = 0.4
    pointnet_channels: tuple[int, ...] = (64, 128, 256)
    epochs: int = 5
    batch_size: int = 24
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "triangular"
    lie_weight: float = 1e-2
    norm_weight: float = 1e-2
    relax_init_std: float = 1e-3
    penalty_rows: int | None = 4096
    eval_rotations: int = 8
    devices: int = 1
    num_nodes: int = 1
    accelerator: str = "auto"

    def __post_init__(self) -> None:
        self.variants = tuple(self.variants)
        unknown = [v for v in self.variants if v not in VARIANTS]
        if not self.variants or unknown:
            raise ValueError(f"variants must be some of {VARIANTS}, got {self.variants!r}")
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds:
            raise ValueError("seeds must name at least one seed, got ()")
        parse_protocol(self.protocol)
        for name in ("num_points", "train_size", "val_size", "test_size", "epochs",
                     "batch_size", "k", "eval_rotations", "devices", "num_nodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.k > self.num_points:
            raise ValueError(f"k = {self.k} neighbours need num_points >= k, got "
                             f"{self.num_points}")
        self.channels = tuple(self.channels)  # type: ignore[assignment]
        self.head_hidden = tuple(self.head_hidden)
        self.pointnet_channels = tuple(self.pointnet_channels)


# ------------------------------------------------------------------------------------------
# Models, data, evaluation
# ------------------------------------------------------------------------------------------


def build_model(variant: str, cfg: PointCloudStudyConfig, num_classes: int) -> nn.Module:
    """The (unrelaxed) network of a variant: VN-PointNet for ``exact``/``relaxed``, PointNet for
    ``baseline``."""
    if variant == "baseline":
        return PointNet(num_classes, channels=cfg.pointnet_channels, head_hidden=cfg.head_hidden,
                        dropout=cfg.dropout)
    if variant in ("exact", "relaxed"):
        return VNPointNet(num_classes, channels=cfg.channels, k=cfg.k,
                          head_hidden=cfg.head_hidden, dropout=cfg.dropout)
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


def paper_relaxed_layers(model: nn.Module) -> list[str]:
    """The VN linear maps the paper relaxes: all of them except the last map of the invariant
    frame (``std_feature.vn_lin``) and the direction map of a max pooling."""
    return [
        name for name, m in model.named_modules()
        if isinstance(m, VNLinear)
        and not name.endswith("std_feature.vn_lin")
        and not name.startswith("neighbour_pool")
    ]


def _rotate(points: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bij,bnj->bni", rot.to(points.dtype), points)


def augmenter(kind: str) -> Augment:
    """Random rotations of a training batch ``(B, N, 3)``: ``"so3"`` (Haar), ``"z"`` or
    ``"none"``, drawn from the generator given (the study's is seeded by seed and step; torch's
    global generator when none is given)."""
    if kind == "none":
        return lambda points, generator=None: points
    if kind == "so3":
        return lambda points, generator=None: _rotate(
            points, random_rotations_torch(len(points), generator=generator))
    if kind == "z":
        def rotate_z(points: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
            angle = torch.rand(len(points), generator=generator, dtype=torch.float64) * 2 * math.pi
            c, s = torch.cos(angle), torch.sin(angle)
            rot = torch.zeros(len(points), 3, 3, dtype=torch.float64)
            rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = c, -s, s, c
            rot[:, 2, 2] = 1.0
            return _rotate(points, rot)
        return rotate_z
    raise ValueError(f"augmentation must be 'so3', 'z' or 'none', got {kind!r}")


def rotated_test_sets(data: ShapeData, seed: int = 12345) -> dict[str, TensorDataset]:
    """The test clouds under SO(3), z and no rotation (fixed seed), from their canonical pose."""
    canonical = torch.einsum("npj,nji->npi", data.test.points.double(),
                             data.test.rotations.double())  # points = canonical @ R^T
    rng = np.random.default_rng(seed)
    rotations = {"so3": random_rotations(len(canonical), rng),
                 "z": random_z_rotations(len(canonical), rng),
                 "none": np.broadcast_to(np.eye(3), (len(canonical), 3, 3))}
    return {
        kind: TensorDataset(
            torch.einsum("nij,npj->npi", torch.as_tensor(np.array(rot)), canonical).float(),
            data.test.labels,
        )
        for kind, rot in rotations.items()
    }


def invariance_error(
    model: nn.Module, points: torch.Tensor, num_classes: int, num_rotations: int, seed: int = 0
) -> float:
    """``max_R ||f(R x) − f(x)|| / ||f(x)||`` over sampled rotations, in float64, measured with
    ``er.equivariance_error`` on clouds flattened to ``N * vector(SO(3))``."""
    n = points.shape[1]
    group = er.groups.SO(3)
    rep_in = n * er.reps.vector(group)
    rep_out = num_classes * er.reps.trivial(group)
    model = copy.deepcopy(model).double().eval()

    def flat(x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return model(x.reshape(-1, n, 3)).reshape(*lead, -1)

    return er.equivariance_error(flat, points.reshape(len(points), -1).double(), rep_in,
                                 rep_out, elements=group.sample(num_rotations, seed=seed))


def run_study(
    cfg: PointCloudStudyConfig,
    out_dir: Path,
    runs_dir: Path,
    command: str,
    progress: bool = True,
    cache_dir: Path | None = None,
    smoke_test: bool = False,
) -> dict | None:
    """Generate the data, train every variant from every seed, evaluate, write the report
    (headed by the smoke-test note for a ``--quick`` run). ``None`` in the DDP processes other
    than rank 0: they only train."""
    data = load_shapes(num_points=cfg.num_points, train_size=cfg.train_size,
                       val_size=cfg.val_size, test_size=cfg.test_size, protocol=cfg.protocol,
                       noise_std=cfg.noise_std, seed=cfg.data_seed, progress=progress,
                       cache_dir=cache_dir)
    train_kind, _ = parse_protocol(cfg.protocol)
    tests = rotated_test_sets(data)
    probe = tests["so3"].tensors[0][:16]
    num_classes = data.num_classes

    def step(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
        points, labels = batch  # training batches arrive rotated (SeededAugmentation)
        return model(points), labels

    def loaders(seed: int) -> tuple[DataLoader, DataLoader]:
        train = training_loader(data.train, cfg.batch_size, seed,
                                distributed=cfg.devices * cfg.num_nodes > 1)
        return train, DataLoader(data.val, batch_size=100)

    def evaluate(model: nn.Module) -> dict[str, float]:
        out = {f"test_acc_{k}": evaluate_accuracy(model, ds) for k, ds in tests.items()}
        out["equivariance_error"] = invariance_error(model, probe, num_classes,
                                                     cfg.eval_rotations)
        return out

    variants = [
        Variant(name, lambda name=name: build_model(name, cfg, num_classes),
                relax=cfg.schedule if name == "relaxed" else None,
                relax_layers=paper_relaxed_layers if name == "relaxed" else None)
        for name in cfg.variants
    ]
    base = RunConfig(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                     lie_weight=cfg.lie_weight, norm_weight=cfg.norm_weight,
                     relax_init_std=cfg.relax_init_std, penalty_rows=cfg.penalty_rows,
                     devices=cfg.devices, num_nodes=cfg.num_nodes, accelerator=cfg.accelerator)
    records = run_comparison(variants, cfg.seeds, loaders, step, base, runs_dir, evaluate,
                             progress, augment=augmenter(train_kind))
    if records is None:
        return None
    metrics = [f"test_acc_{k}" for k in TEST_ROTATIONS] + [
        "equivariance_error", "parameters", "fit_seconds"]
    test_kind = parse_protocol(cfg.protocol)[1]
    summary = summarise(records, metrics, claim_metric=f"test_acc_{test_kind}")
    columns = [("test_acc_so3", "test acc, SO(3)-rotated"), ("test_acc_z", "test acc, z-rotated"),
               ("test_acc_none", "test acc, upright"),
               ("equivariance_error", "invariance error (max)"),
               ("parameters", "parameters"), ("fit_seconds", "train time / run (s)")]
    notes = [
        f"Data: {num_classes} procedural shape classes, {cfg.num_points} points per cloud, "
        f"surface noise {cfg.noise_std}, {cfg.train_size}/{cfg.val_size}/{cfg.test_size} "
        f"train/val/test clouds, protocol `{cfg.protocol}`; every training batch is rotated by "
        f"fresh random `{train_kind}` rotations for every variant.",
        "Test accuracy is that of the model with the best validation loss (validated as the "
        "exact model; for `relaxed`, the hardened model, θ = 0). The invariance error is "
        "max over 8 sampled rotations of ||f(Rx) − f(x)|| / ||f(x)|| on 16 test clouds in "
        "float64 (`er.equivariance_error`); the worst seed is shown.",
    ]
    settings = asdict(cfg)
    write_report(out_dir, "Point clouds: exact vs relaxed Vector Neurons vs PointNet",
                 records, summary, columns, settings, command, notes, smoke_test=smoke_test)
    plot_curves(out_dir, records, f"point clouds ({cfg.protocol})")
    return {"records": records, "summary": summary}


#: config field -> command-line flag of ``equirelax pointcloud``
OPTIONS = {
    "variants": "--variants", "seeds": "--seeds", "protocol": "--protocol",
    "num_points": "--num-points", "train_size": "--train-size", "val_size": "--val-size",
    "test_size": "--test-size", "noise_std": "--noise", "channels": "--channels", "k": "--k",
    "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
    "lie_weight": "--lie-weight", "norm_weight": "--norm-weight",
    "penalty_rows": "--penalty-rows", "devices": "--devices", "num_nodes": "--num-nodes",
    "accelerator": "--accelerator", "schedule": "--relax",
}


def config_from_args(args: argparse.Namespace) -> PointCloudStudyConfig:
    """The study configuration: the preset, then every option given on the command line."""
    return PointCloudStudyConfig(**config_values(args, PRESETS, OPTIONS,
                                                 baseline_model="pointnet"))


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``equirelax pointcloud``."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="standard",
                        help="sizes and budget (default: standard)")
    parser.add_argument("--quick", action="store_true", help="same as --preset quick")
    parser.add_argument("--model", choices=("vn-pointnet", "pointnet"), default=None,
                        help="train one model only (with --relax for VN-PointNet) instead of "
                             "the three-way comparison")
    parser.add_argument("--relax", default=None,
                        choices=("none", "triangular", "linear", "cosine", "constant"),
                        help="relaxation schedule of the relaxed variant (default triangular)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None)
    parser.add_argument("--seeds", nargs="+", type=non_negative_int, default=None)
    parser.add_argument("--protocol", default=None, help="so3/so3 (default) or z/so3")
    parser.add_argument("--num-points", dest="num_points", type=positive_int, default=None)
    parser.add_argument("--train-size", dest="train_size", type=positive_int, default=None)
    parser.add_argument("--val-size", dest="val_size", type=positive_int, default=None)
    parser.add_argument("--test-size", dest="test_size", type=positive_int, default=None)
    parser.add_argument("--noise", dest="noise_std", type=non_negative_float, default=None)
    parser.add_argument("--channels", nargs=3, type=positive_int, default=None,
                        help="VN-PointNet widths (paper: 21 42 341)")
    parser.add_argument("--k", type=positive_int, default=None, help="neighbours of the VN lift")
    add_run_options(parser, "pointcloud", "rows of each layer input the penalties are evaluated on")


def main(args: argparse.Namespace) -> int:
    """Run the point-cloud comparison and write its report."""
    cfg = config_from_args(args)
    preset = "quick" if args.quick else args.preset
    out, runs = prepare_run(args, "pointcloud", preset)
    start = time.perf_counter()
    command = command_line("pointcloud", preset, cfg, PRESETS, OPTIONS)
    result = run_study(cfg, out, runs, command, args.progress, smoke_test=args.quick)
    if result is None:  # a DDP process other than rank 0
        return 0
    summary = result["summary"]
    for name, stats in summary["variants"].items():
        print(f"{name:>9}: SO(3) test acc {format_mean_std(stats['test_acc_so3'])}, "
              f"invariance error {stats['equivariance_error']['max']:.1e}")
    if "claim" in summary:
        print(claim_sentence(summary["claim"]))
    print(f"wrote {out}/results.md ({time.perf_counter() - start:.0f} s)")
    if args.quick:
        print(SMOKE_TEST_NOTE)
    return 0
