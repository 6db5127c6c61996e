"""Rotation-invariant point-cloud classification: exact vs relaxed Vector Neurons vs PointNet.

The constraint-relaxation paper's main experiment (VN-PointNet on ModelNet40, 300 points,
SO(3)/SO(3)) on data generated here: the procedural shapes of :mod:`equirelax.data.shapes`;
or, for a user who has ModelNet40's ``modelnet40_ply_hdf5_2048`` folder, on ModelNet40 itself
(:mod:`equirelax.data.modelnet40`): ``equirelax pointcloud --data PATH --points 300`` runs the
``paper`` preset (the Vector Neurons classifier as in the paper's code: feature transform,
VN-ReLU, max over points; Adam at lr 1e-3, batch 24, 200 epochs). Three variants are trained
from the same seeds with the same data, augmentation, optimizer and number of steps:

* ``exact``: :class:`~equirelax.models.VNPointNet`, exactly SO(3)-invariant throughout;
* ``relaxed``: the same model relaxed with the public API (``relax(model, "triangular", ...)``:
  every VN linear map gets a free dense term ``θ(t) W`` on the flattened (channel, xyz)
  features, with the Lie-derivative and norm penalties, λ = 0.01 as in the paper), validated
  and tested as the hardened, exactly invariant model;
* ``baseline``: a plain :class:`~equirelax.models.PointNet`, invariant only through rotation
  augmentation.

Every training batch is rotated by fresh random rotations of the protocol's training kind (SO(3)
for ``so3/so3``, about z for ``z/so3``), for all variants; the rotations, the batch order and
the dropout masks are functions of (seed, epoch, step), so every variant of a seed sees the
same ones, and a resumed run the ones it would have seen. Each final model is tested on three
rotated copies of the test clouds (SO(3), z, none) and its invariance error is measured with
``er.equivariance_error`` (float64, sampled rotations). The script writes a results table, the
per-run records and training curves to its output folder, with the command that reproduces
them. Run with ``equirelax pointcloud --preset quick`` (a few minutes) or ``--preset standard``.

The training, report and command line are those of :mod:`~equirelax.experiments.
classification`, shared with the image study; summaries are the kit's
(:func:`~equirelax.experiments.kit.tables.summarise`).
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import equirelax as er
from equirelax.data.modelnet40 import ModelNet40Data, find_modelnet40_files, load_modelnet40
from equirelax.data.shapes import (
    ShapeData,
    load_shapes,
    parse_protocol,
    random_z_rotations,
)
from equirelax.experiments.classification import (
    Augment,
    ClassificationStudy,
    Variant,
    checked_variants_and_seeds,
    evaluate_accuracy,
    plot_curves,
    run_comparison,
    training_loader,
    write_report,
)
from equirelax.experiments.kit.argtypes import fraction, non_negative_int, positive_float
from equirelax.experiments.kit.config import option
from equirelax.experiments.kit.guards import StudyError
from equirelax.experiments.kit.runner import RunConfig
from equirelax.experiments.kit.tables import format_mean_std, summarise
from equirelax.groups.haar import haar_rotations, haar_rotations_torch
from equirelax.models import PointNet, VNPointNet
from equirelax.nn.vn import VNLinear, VNMaxPool

VARIANTS = ("exact", "relaxed", "baseline")
TEST_ROTATIONS = ("so3", "z", "none")
POOLINGS = ("mean", "max")

#: VN-PointNet as equirelax's first studies built it (the presets quick, standard, large)
LIGHT_VN = {"feature_transform": False, "negative_slope": 0.2, "pooling": "mean",
            "point_pooling": "mean"}
#: VN-PointNet as in the paper's code (the Vector Neurons classifier)
PAPER_VN = {"feature_transform": True, "negative_slope": 0.0, "pooling": "mean",
            "point_pooling": "max"}

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
    # the paper's experiment: ModelNet40 with --data PATH (procedural shapes without), 300
    # points, SO(3)/SO(3), the Vector Neurons classifier and PointNet at their full widths,
    # Adam lr 1e-3, weight decay 1e-4, batch 24, 200 epochs, λ = 0.01. Days on a CPU.
    "paper": {
        "num_points": 300, "train_size": 3000, "val_size": 600, "test_size": 1500,
        "noise_std": 0.01, "channels": (21, 42, 341), "k": 20, "head_hidden": (512, 256),
        "pointnet_channels": (64, 128, 1024), "epochs": 200, "batch_size": 24, "lr": 1e-3,
        "seeds": (0, 1, 2), **PAPER_VN,
    },
}

#: the preset of a command without ``--preset``: ``paper`` with ``--data``, else ``standard``
DEFAULT_PRESET, DATA_PRESET = "standard", "paper"



@dataclass
class PointCloudStudyConfig:
    """Every setting of a point-cloud comparison (defaults: the ``standard`` preset); each field
    is an option of ``equirelax pointcloud``."""

    variants: tuple[str, ...] = VARIANTS
    seeds: tuple[int, ...] = (0, 1, 2)
    protocol: str = option("so3/so3", "training/test rotations: so3/so3 or z/so3")
    data: str | None = option(None, "ModelNet40: the modelnet40_ply_hdf5_2048 folder (HDF5 files "
                                  "with 'data' (N, 2048, 3) and 'label'); none: procedural "
                                  "shapes", type=Path)
    val_fraction: float = option(0.2, "ModelNet40 training clouds held out for validation",
                               type=positive_float)
    num_points: int = option(64, "points per cloud (ModelNet40: the first ones)",
                           aliases=("--points",))
    train_size: int = option(480, "training clouds")
    val_size: int = option(120, "validation clouds")
    test_size: int = option(450, "test clouds")
    noise_std: float = option(0.02, "surface noise of the procedural shapes", flag="--noise")
    data_seed: int = option(0, "seed of the data", type=non_negative_int)
    channels: tuple[int, int, int] = option((8, 16, 32), "VN-PointNet widths (paper: 21 42 341)")
    k: int = option(8, "neighbours of the VN lift")
    head_hidden: tuple[int, ...] = option((64,), "hidden widths of the classifier head")
    dropout: float = option(0.4, "dropout of the head", type=fraction)
    feature_transform: bool = option(False, "VN-PointNet's feature transform (paper: on)")
    negative_slope: float = option(0.2, "slope of the VN nonlinearity (paper: 0, a VN-ReLU; "
                                      "earlier presets: 0.2)")
    pooling: str = option("mean", "VN pooling over neighbours and in the feature transform "
                                "(paper: mean)", choices=POOLINGS)
    point_pooling: str = option("mean", "pooling of the invariant features over points (paper: "
                                      "max; earlier presets: mean)", choices=POOLINGS)
    pointnet_channels: tuple[int, ...] = option((64, 128, 256), "PointNet widths")
    epochs: int = option(5, "training epochs")
    batch_size: int = option(24, "training batch size")
    lr: float = option(2e-3, "Adam learning rate", type=positive_float)
    weight_decay: float = option(1e-4, "Adam weight decay")
    schedule: str = "triangular"
    lie_weight: float = option(1e-2, "weight of the Lie-derivative penalty")
    norm_weight: float = option(1e-2, "weight of the norm penalty ||W x||²")
    relax_init_std: float = option(1e-3, "initial std of the free terms")
    penalty_rows: int | None = option(4096, "rows of each layer input the penalties are "
                                          "evaluated on")
    eval_rotations: int = option(8, "rotations of the invariance error")
    devices: int = 1
    num_nodes: int = 1
    accelerator: str = "auto"

    def __post_init__(self) -> None:
        self.variants, self.seeds = checked_variants_and_seeds(self.variants, self.seeds,
                                                               VARIANTS)
        parse_protocol(self.protocol)
        for name in ("num_points", "train_size", "val_size", "test_size", "epochs",
                     "batch_size", "k", "eval_rotations", "devices", "num_nodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.k > self.num_points:
            raise ValueError(f"k = {self.k} neighbours need num_points >= k, got "
                             f"{self.num_points}")
        for name in ("pooling", "point_pooling"):
            if getattr(self, name) not in POOLINGS:
                raise ValueError(f"{name} must be one of {POOLINGS}, got {getattr(self, name)!r}")
        if not (isinstance(self.negative_slope, (int, float)) and 0 <= self.negative_slope < 1):
            raise ValueError(f"negative_slope must lie in [0, 1), got {self.negative_slope!r}")
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise ValueError(f"val_fraction must lie strictly between 0 and 1, got "
                             f"{self.val_fraction!r}")
        if self.data is not None:
            self.data = str(self.data)
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
                          head_hidden=cfg.head_hidden, dropout=cfg.dropout,
                          feature_transform=cfg.feature_transform,
                          negative_slope=cfg.negative_slope, pooling=cfg.pooling,
                          point_pooling=cfg.point_pooling)
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


def paper_relaxed_layers(model: nn.Module) -> list[str]:
    """The VN linear maps the paper relaxes: all of them (the feature transform's included)
    except the last map of the invariant frame (``std_feature.vn_lin``) and the direction maps
    of max poolings."""
    pools = {f"{name}.map_to_dir" for name, m in model.named_modules()
             if isinstance(m, VNMaxPool)}
    return [
        name for name, m in model.named_modules()
        if isinstance(m, VNLinear)
        and not name.endswith("std_feature.vn_lin")
        and name not in pools
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
            points, haar_rotations_torch(len(points), generator=generator))
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


def rotated_test_sets(data: ShapeData | ModelNet40Data,
                      seed: int = 12345) -> dict[str, TensorDataset]:
    """The test clouds under SO(3), z and no rotation (fixed seed), from their canonical pose."""
    canonical = torch.einsum("npj,nji->npi", data.test.points.double(),
                             data.test.rotations.double())  # points = canonical @ R^T
    rng = np.random.default_rng(seed)
    rotations = {"so3": haar_rotations(len(canonical), rng),
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
    ``er.equivariance_error`` (``N * vector(SO(3))`` acts on the trailing (N, 3) axes)."""
    group = er.groups.SO(3)
    return er.equivariance_error(
        copy.deepcopy(model).double().eval(), points.double(),
        points.shape[1] * er.reps.vector(group), num_classes * er.reps.trivial(group),
        elements=group.sample(num_rotations, seed=seed))


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
    data: ShapeData | ModelNet40Data
    if cfg.data is not None:
        data = load_modelnet40(cfg.data, num_points=cfg.num_points, protocol=cfg.protocol,
                               val_fraction=cfg.val_fraction, seed=cfg.data_seed)
    else:
        data = load_shapes(num_points=cfg.num_points, train_size=cfg.train_size,
                           val_size=cfg.val_size, test_size=cfg.test_size,
                           protocol=cfg.protocol, noise_std=cfg.noise_std, seed=cfg.data_seed,
                           progress=progress, cache_dir=cache_dir)
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
    summary = summarise(records, metrics, difference=f"test_acc_{test_kind}")
    columns = [("test_acc_so3", "test acc, SO(3)-rotated"), ("test_acc_z", "test acc, z-rotated"),
               ("test_acc_none", "test acc, upright"),
               ("equivariance_error", "invariance error (max)"),
               ("parameters", "parameters"), ("fit_seconds", "train time / run (s)")]
    if isinstance(data, ModelNet40Data):
        source = (f"Data: ModelNet40 (HDF5 files of {data.path.name}), {num_classes} classes, "
                  f"the first {cfg.num_points} points of each cloud, {len(data.train)}/"
                  f"{len(data.val)}/{len(data.test)} train/val/test clouds (validation: "
                  f"{cfg.val_fraction:.0%} of the published training clouds)")
    else:
        source = (f"Data: {num_classes} procedural shape classes, {cfg.num_points} points per "
                  f"cloud, surface noise {cfg.noise_std}, {cfg.train_size}/{cfg.val_size}/"
                  f"{cfg.test_size} train/val/test clouds")
    model = "paper's" if cfg.feature_transform else "light"
    transform = "on" if cfg.feature_transform else "off"
    notes = [
        f"{source}, protocol `{cfg.protocol}`; every training batch is rotated by fresh random "
        f"`{train_kind}` rotations for every variant.",
        f"VN-PointNet ({model} settings): feature transform {transform}, "
        f"VN nonlinearity slope {cfg.negative_slope}, {cfg.pooling} pooling over neighbours, "
        f"{cfg.point_pooling} over points.",
        "Test accuracy is that of the model with the best validation loss (validated as the "
        "exact model; for `relaxed`, the hardened model, θ = 0). The invariance error is "
        "max over 8 sampled rotations of ||f(Rx) − f(x)|| / ||f(x)|| on 16 test clouds in "
        "float64 (`er.equivariance_error`); the worst seed is shown.",
    ]
    settings = asdict(cfg)
    title = "ModelNet40" if isinstance(data, ModelNet40Data) else "Point clouds"
    write_report(out_dir, f"{title}: exact vs relaxed Vector Neurons vs PointNet",
                 records, summary, columns, settings, command, notes, smoke_test=smoke_test)
    plot_curves(out_dir, records, f"point clouds ({cfg.protocol})")
    return {"records": records, "summary": summary}


def preset_name(args: argparse.Namespace) -> str:
    """The preset a command runs: ``quick`` with ``--quick``, else ``--preset``, else
    ``paper`` when ``--data`` names ModelNet40, else ``standard``."""
    if args.quick:
        return "quick"
    return args.preset or (DATA_PRESET if args.data is not None else DEFAULT_PRESET)


def results_name(preset: str, cfg: PointCloudStudyConfig) -> str:
    """The folder name of a run's results: the preset, with ``_modelnet40`` on ModelNet40."""
    return preset if cfg.data is None else f"{preset}_modelnet40"


def check_data(cfg: PointCloudStudyConfig) -> None:
    """Fail at once on a wrong ModelNet40 path, before any folder is made."""
    if cfg.data is not None:
        try:
            find_modelnet40_files(cfg.data)
        except FileNotFoundError as err:
            raise StudyError(str(err)) from None


def summary_lines(cfg: PointCloudStudyConfig, summary: dict) -> list[str]:
    """What ``equirelax pointcloud`` prints per variant."""
    return [f"{name:>9}: SO(3) test acc {format_mean_std(stats['test_acc_so3'])}, "
            f"invariance error {stats['equivariance_error']['max']:.1e}"
            for name, stats in summary["variants"].items()]


STUDY = ClassificationStudy(
    name="pointcloud", config=PointCloudStudyConfig, presets=PRESETS, variants=VARIANTS,
    models=("vn-pointnet", "pointnet"), preset_name=preset_name, results_name=results_name,
    check=check_data, run=run_study, summary_lines=summary_lines,
    preset_help="standard; paper with --data")


#: the entry points of ``equirelax pointcloud``, shared by the classification studies
configure = STUDY.configure
config_from_args = STUDY.config_from_args
main = STUDY.main
