"""Rotated images: exact vs relaxed C4/D4 group convolutions vs a CNN with augmentation.

equirelax's own image study (the constraint-relaxation paper's 2-D experiment is a smoke-plume
simulation with relaxed steerable CNNs, not image classification): the rotated-MNIST protocol
of the group-convolution literature, on two data sets (``--dataset``):

* ``digits`` (the quick default): the rotated digits of :mod:`equirelax.data.digits`
  (scikit-learn's 1797 8x8 digits upsampled to 28x28), generated in a second;
* ``fashion-mnist``: the 70,000 real 28x28 images of :mod:`equirelax.data.fashion_mnist`, read
  from the IDX files of the Debian package ``dataset-fashion-mnist`` (``--preset fashion``).

Three variants are trained from the same seeds with the same data, augmentation, optimizer and
number of steps:

* ``exact``: :class:`~equirelax.models.GCNN` for C4 or D4, exactly invariant to the group on
  the pixel grid throughout;
* ``relaxed``: the same model relaxed with the public API (``relax(model, "triangular", ...)``):
  every lifting / group convolution gets a free ``conv2d`` term ``θ(t) W`` with the generator
  penalty ``Σ_s ||W(s·x) − s·(W x)||²`` (quarter turn, and mirror for D4) and the norm penalty,
  λ = 0.01; validated and tested as the hardened, exactly invariant model;
* ``baseline``: a plain :class:`~equirelax.models.CNN`, invariant only through rotation
  augmentation.

Every training batch is rotated by fresh random angles (continuous by default) for all variants;
the angles, the batch order and the dropout masks are functions of (seed, epoch, step), so every
variant of a seed sees the same ones, and a resumed run the ones it would have seen.
The final models are tested on three rotated copies of the test images (continuous angles,
multiples of 90°, upright), and their invariance error under the group is measured with
``er.equivariance_error`` over every group element (float64). The script writes a results table,
per-run records and training curves with the command that reproduces them:
``equirelax images --preset quick`` (a few minutes), ``--preset standard`` (digits) or
``--preset fashion`` (Fashion-MNIST).
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
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

import equirelax as er
from equirelax.data.digits import (
    DIGIT_ROTATIONS,
    load_rotated_digits,
    rotate_images,
    upright_digits,
)
from equirelax.data.fashion_mnist import (
    FashionMNISTMissingError,
    find_fashion_mnist,
    load_rotated_fashion_mnist,
    upright_fashion_mnist,
)
from equirelax.data.idx import read_idx
from equirelax.experiments.classification import (
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
from equirelax.experiments.kit.tables import summarise
from equirelax.models import CNN, GCNN
from equirelax.reps.grid import grid, grid_group

VARIANTS = ("exact", "relaxed", "baseline")
DATASETS = ("digits", "fashion-mnist")

PRESETS: dict[str, dict[str, Any]] = {
    # a few minutes on 2 shared cores: checks the whole pipeline, numbers are not meaningful
    "quick": {
        "group": "C4", "channels": (4, 8, 16), "cnn_channels": (8, 16, 32), "epochs": 2,
        "train_fraction": 0.3, "batch_size": 32, "seeds": (0, 1, 2),
    },
    # the main study of docs/pointcloud_images.md: 140 optimizer steps per run
    "standard": {
        "group": "C4", "channels": (8, 16, 32), "cnn_channels": (16, 32, 64), "epochs": 4,
        "train_fraction": 1.0, "batch_size": 32, "lr": 2e-3, "seeds": (0, 1, 2),
    },
    # a longer study: 525 optimizer steps per run
    "large": {
        "group": "C4", "channels": (8, 16, 32), "cnn_channels": (16, 32, 64), "epochs": 15,
        "train_fraction": 1.0, "batch_size": 32, "lr": 2e-3, "seeds": (0, 1, 2),
    },
    # real images: Fashion-MNIST with a 12,000-image training split (the size of rotated
    # MNIST's), rotated training and validation images, 5625 optimizer steps per run; sized
    # for about 40 minutes on one free core (docs/pointcloud_images.md)
    "fashion": {
        "dataset": "fashion-mnist", "group": "C4", "channels": (8, 16, 32),
        "cnn_channels": (16, 32, 64), "train_rotation": "continuous", "augment": "continuous",
        "train_size": 12000, "val_size": 2000, "epochs": 15, "batch_size": 32, "lr": 2e-3,
        "seeds": (0, 1, 2),
    },
}

#: the preset a command without ``--preset`` uses, per data set
DEFAULT_PRESETS = {"digits": "standard", "fashion-mnist": "fashion"}



@dataclass
class ImageStudyConfig:
    """Every setting of an image comparison (defaults: the ``standard`` preset); each field is
    an option of ``equirelax images``."""

    dataset: str = option("digits", "digits (scikit-learn, the quick default) or fashion-mnist "
                                  "(real images from the package dataset-fashion-mnist)",
                        choices=DATASETS)
    data_dir: str | None = option(None, "folder of the Fashion-MNIST IDX files (none: "
                                      "/usr/share/datasets/fashion-mnist or "
                                      "$EQUIRELAX_FASHION_MNIST)", type=Path)
    group: str = option("C4", "symmetry group of the GCNN", choices=("C4", "D4"))
    variants: tuple[str, ...] = VARIANTS
    seeds: tuple[int, ...] = (0, 1, 2)
    train_rotation: str = option("continuous", "rotation of the training images",
                               choices=DIGIT_ROTATIONS)
    test_rotation: str = option("continuous", "rotation of the test images",
                              choices=DIGIT_ROTATIONS)
    augment: str = option("continuous", "random rotation of every training batch",
                        choices=DIGIT_ROTATIONS)
    train_fraction: float = option(1.0, "part of the training images kept", type=fraction)
    val_fraction: float = option(0.15, "part of the training images held out for validation",
                               type=fraction)
    train_size: int | None = option(None, "Fashion-MNIST training images (none: from "
                                        "train_fraction)")
    val_size: int | None = option(None, "Fashion-MNIST validation images carved from the "
                                      "training set (none: from val_fraction)")
    test_size: int | None = option(None, "Fashion-MNIST test images (none: all 10,000)")
    data_seed: int = option(0, "seed of the data", type=non_negative_int)
    channels: tuple[int, ...] = option((8, 16, 32), "GCNN widths")
    cnn_channels: tuple[int, ...] = option((16, 32, 64), "CNN widths")
    epochs: int = option(4, "training epochs")
    batch_size: int = option(32, "training batch size")
    lr: float = option(2e-3, "Adam learning rate", type=positive_float)
    weight_decay: float = option(1e-4, "Adam weight decay")
    schedule: str = "triangular"
    lie_weight: float = option(1e-2, "weight of the generator (Lie) penalty")
    norm_weight: float = option(1e-2, "weight of the norm penalty ||W x||²")
    relax_init_std: float = option(1e-3, "initial std of the free terms")
    penalty_rows: int | None = option(8, "images of each layer input the penalties are "
                                       "evaluated on")
    devices: int = 1
    num_nodes: int = 1
    accelerator: str = "auto"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.group not in ("C4", "D4"):
            raise ValueError(f"group must be 'C4' or 'D4', got {self.group!r}")
        self.variants, self.seeds = checked_variants_and_seeds(self.variants, self.seeds,
                                                               VARIANTS)
        for name in ("train_rotation", "test_rotation", "augment"):
            if getattr(self, name) not in DIGIT_ROTATIONS:
                raise ValueError(f"{name} must be one of {DIGIT_ROTATIONS}, "
                                 f"got {getattr(self, name)!r}")
        for name in ("train_fraction", "val_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value <= 1):
                raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
        for name in ("epochs", "batch_size", "devices", "num_nodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("train_size", "val_size", "test_size"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
            if self.dataset == "digits":
                raise ValueError(
                    f"{name} counts images of --dataset fashion-mnist; the digits are split by "
                    f"train_fraction and val_fraction, got {name}={value} with dataset 'digits'")
        if self.dataset == "digits" and self.data_dir is not None:
            raise ValueError(f"data_dir is a folder of IDX files for --dataset fashion-mnist; "
                             f"the digits ship with scikit-learn, got {self.data_dir!r}")
        self.channels = tuple(self.channels)
        self.cnn_channels = tuple(self.cnn_channels)


def build_model(variant: str, cfg: ImageStudyConfig, image_size: int = 28) -> nn.Module:
    """The (unrelaxed) network of a variant: a GCNN built for ``image_size`` (so its
    convolutions declare their representations) or the plain CNN."""
    if variant == "baseline":
        return CNN(1, 10, channels=cfg.cnn_channels)
    if variant in ("exact", "relaxed"):
        return GCNN(cfg.group, 1, 10, channels=cfg.channels, image_size=image_size)
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


def rotate_batch(images: torch.Tensor, kind: str,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each image of ``(B, C, H, H)`` by a fresh random angle: ``"continuous"``
    (bilinear, zero outside), ``"c4"`` (exact quarter turns) or ``"none"``; ``generator``
    draws the angles (the study's is seeded by seed and step; torch's global generator when
    none is given)."""
    if kind == "none":
        return images
    if kind == "c4":
        turns = torch.randint(0, 4, (len(images),), generator=generator)
        return torch.stack([torch.rot90(im, int(t), dims=(-2, -1))
                            for im, t in zip(images, turns)])
    if kind == "continuous":
        angle = torch.rand(len(images), generator=generator, dtype=images.dtype) * 2 * math.pi
        c, s = torch.cos(angle), torch.sin(angle)
        zero = torch.zeros_like(c)
        theta = torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1)], 1)
        sampling_grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
        return nn.functional.grid_sample(images, sampling_grid, mode="bilinear",
                                         padding_mode="zeros", align_corners=False)
    raise ValueError(f"rotation kind must be one of {DIGIT_ROTATIONS}, got {kind!r}")


def split_by_source(source: torch.Tensor, val_fraction: float, train_fraction: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation item indices, split by original image (rotated copies of one digit
    never straddle the split); ``train_fraction`` keeps a part of the training images."""
    ids = np.unique(source.numpy())
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    n_val = max(1, round(val_fraction * len(ids)))
    val_ids, train_ids = ids[:n_val], ids[n_val:]
    train_ids = train_ids[: max(1, round(train_fraction * len(train_ids)))]
    src = source.numpy()
    return np.flatnonzero(np.isin(src, train_ids)), np.flatnonzero(np.isin(src, val_ids))


def rotated_copies(images: np.ndarray, labels: np.ndarray,
                   seed: int = 12345) -> dict[str, TensorDataset]:
    """Upright images ``(n, S, S)`` as they are, turned by random multiples of 90° and by
    random continuous angles (fixed seed): the three test sets of the study."""
    rng = np.random.default_rng(seed)
    n = len(images)
    angles = {"none": np.zeros(n), "c4": 90.0 * rng.integers(0, 4, n),
              "continuous": rng.uniform(0.0, 360.0, n)}
    out = {}
    for kind, a in angles.items():
        rotated = rotate_images(images, a)
        out[kind] = TensorDataset(torch.as_tensor(rotated, dtype=torch.float32).unsqueeze(1),
                                  torch.as_tensor(labels))
    return out


def rotated_test_sets(test_source: torch.Tensor, image_size: int = 28,
                      digit_size: int = 20, seed: int = 12345) -> dict[str, TensorDataset]:
    """The test digits upright, turned by random multiples of 90° and by random continuous
    angles (fixed seed)."""
    images, labels = upright_digits(image_size, digit_size)
    src = test_source.numpy()
    return rotated_copies(images[src], labels[src], seed)


@dataclass
class ImageSets:
    """What a study trains and tests on: training and validation sets, the test sets by
    rotation kind, the side of the images, and a sentence saying what the data are."""

    train: Dataset
    val: Dataset
    tests: dict[str, TensorDataset]
    image_size: int
    description: str


def digit_sets(cfg: ImageStudyConfig, progress: bool = False) -> ImageSets:
    """The rotated digits split into train/validation (by original digit) and the test sets."""
    data = load_rotated_digits(train_rotation=cfg.train_rotation,
                               test_rotation=cfg.test_rotation, seed=cfg.data_seed,
                               progress=progress)
    train_idx, val_idx = split_by_source(data.train.source, cfg.val_fraction,
                                         cfg.train_fraction, cfg.data_seed)
    tests = rotated_test_sets(data.test.source, data.config.image_size, data.config.digit_size)
    tests[f"{cfg.test_rotation}"] = TensorDataset(data.test.images, data.test.labels)
    description = (
        f"Data: scikit-learn digits upsampled to 28x28, {len(train_idx)} training and "
        f"{len(val_idx)} validation images (split by original digit), {len(data.test)} test "
        f"digits; training images rotated `{cfg.train_rotation}`, and every training batch "
        f"rotated again by fresh random `{cfg.augment}` angles for every variant.")
    return ImageSets(Subset(data.train, train_idx), Subset(data.train, val_idx), tests,
                     data.config.image_size, description)


def fashion_sets(cfg: ImageStudyConfig, progress: bool = False) -> ImageSets:
    """Rotated Fashion-MNIST: training and validation splits carved from the published
    training images (``train_size`` or ``train_fraction`` of what is left after ``val_size``
    or ``val_fraction``), the published test images (the first ``test_size``) rotated three
    ways."""
    published = len(read_idx(find_fashion_mnist(cfg.data_dir)["train", "labels"]))
    val_size = cfg.val_size or max(1, round(cfg.val_fraction * published))
    train_size = cfg.train_size or max(1, round(cfg.train_fraction * (published - val_size)))
    data = load_rotated_fashion_mnist(
        root=cfg.data_dir, train_rotation=cfg.train_rotation, test_rotation=cfg.test_rotation,
        val_size=val_size, train_size=train_size, test_size=cfg.test_size, seed=cfg.data_seed,
        progress=progress)
    images, labels = upright_fashion_mnist("test", data.root)
    src = data.test.source.numpy()
    tests = rotated_copies(images[src], labels[src])
    tests[cfg.test_rotation] = TensorDataset(data.test.images, data.test.labels)
    description = (
        f"Data: Fashion-MNIST (the published IDX files), {len(data.train)} training and "
        f"{len(data.val)} validation images carved from the {published} published training "
        f"images (fixed by data seed {cfg.data_seed}), {len(data.test)} published test images; "
        f"training and validation images rotated `{cfg.train_rotation}`, and every training "
        f"batch rotated by fresh random `{cfg.augment}` angles for every variant.")
    return ImageSets(data.train, data.val, tests, data.train.images.shape[-1], description)


def invariance_error(model: nn.Module, images: torch.Tensor, group: str,
                     num_classes: int = 10) -> float:
    """``max_g ||f(g·x) − f(x)|| / ||f(x)||`` over every element of C4 / D4, in float64,
    measured with ``er.equivariance_error`` (the pixel permutation rep acts on the trailing
    (C, H, W) axes)."""
    rep_in = grid(group, images.shape[-1], images.shape[1])
    return er.equivariance_error(copy.deepcopy(model).double().eval(), images.double(), rep_in,
                                 num_classes * er.reps.trivial(rep_in.group))


def run_study(cfg: ImageStudyConfig, out_dir: Path, runs_dir: Path, command: str,
              progress: bool = True, smoke_test: bool = False) -> dict | None:
    """Build the data, train every variant from every seed, evaluate, write the report
    (headed by the smoke-test note for a ``--quick`` run). ``None`` in the DDP processes other
    than rank 0: they only train."""
    sets = (fashion_sets if cfg.dataset == "fashion-mnist" else digit_sets)(cfg, progress)
    train_set, val_set, tests = sets.train, sets.val, sets.tests
    probe = tests["none"].tensors[0][:16]

    def step(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch  # training batches arrive rotated (SeededAugmentation)
        return model(images), labels

    def loaders(seed: int) -> tuple[DataLoader, DataLoader]:
        train = training_loader(train_set, cfg.batch_size, seed,
                                distributed=cfg.devices * cfg.num_nodes > 1)
        return train, DataLoader(val_set, batch_size=200)

    def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return rotate_batch(images, cfg.augment, generator)

    def evaluate(model: nn.Module) -> dict[str, float]:
        out = {f"test_acc_{k}": evaluate_accuracy(model, ds, 200) for k, ds in tests.items()}
        out["equivariance_error"] = invariance_error(model, probe, cfg.group)
        return out

    variants = [
        Variant(name, lambda name=name: build_model(name, cfg, sets.image_size),
                relax=cfg.schedule if name == "relaxed" else None)
        for name in cfg.variants
    ]
    base = RunConfig(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                     lie_weight=cfg.lie_weight, norm_weight=cfg.norm_weight,
                     relax_init_std=cfg.relax_init_std, penalty_rows=cfg.penalty_rows,
                     devices=cfg.devices, num_nodes=cfg.num_nodes, accelerator=cfg.accelerator)
    records = run_comparison(variants, cfg.seeds, loaders, step, base, runs_dir, evaluate,
                             progress, augment=augment)
    if records is None:
        return None
    kinds = ("continuous", "c4", "none")
    metrics = [f"test_acc_{k}" for k in kinds] + ["equivariance_error", "parameters",
                                                  "fit_seconds"]
    summary = summarise(records, metrics, difference=f"test_acc_{cfg.test_rotation}")
    columns = [("test_acc_continuous", "test acc, any angle"),
               ("test_acc_c4", "test acc, multiples of 90°"),
               ("test_acc_none", "test acc, upright"),
               ("equivariance_error", f"{cfg.group} invariance error (max)"),
               ("parameters", "parameters"), ("fit_seconds", "train time / run (s)")]
    what = "digits" if cfg.dataset == "digits" else "Fashion-MNIST"
    notes = [
        sets.description,
        "Test accuracy is that of the model with the best validation loss (validated as the "
        "exact model; for `relaxed`, the hardened model, θ = 0). The invariance error is "
        f"max over the {grid_group(cfg.group).order} elements of {cfg.group} of "
        "||f(g·x) − f(x)|| / ||f(x)|| on 16 upright test images in float64 "
        "(`er.equivariance_error`); the worst seed is shown.",
    ]
    write_report(out_dir, f"Rotated {what}: exact vs relaxed {cfg.group} group convolutions vs "
                 "a CNN", records, summary, columns, asdict(cfg), command, notes,
                 smoke_test=smoke_test)
    plot_curves(out_dir, records, f"rotated {what} ({cfg.group})")
    return {"records": records, "summary": summary}


def preset_name(args: argparse.Namespace) -> str:
    """The preset a command runs: ``quick`` with ``--quick``, else ``--preset``, else the
    default of the data set (``standard`` for digits, ``fashion`` for Fashion-MNIST)."""
    if args.quick:
        return "quick"
    return args.preset or DEFAULT_PRESETS[args.dataset or "digits"]


def results_name(preset: str, cfg: ImageStudyConfig) -> str:
    """The folder name of a run's results: the preset, then the group unless C4 and the data
    set unless the preset's own (``fashion``, ``standard_d4``, ``quick_fashion-mnist``)."""
    name = preset if cfg.group == "C4" else f"{preset}_{cfg.group.lower()}"
    if cfg.dataset != PRESETS[preset].get("dataset", "digits"):
        name += f"_{cfg.dataset}"
    return name


def check_data(cfg: ImageStudyConfig) -> None:
    """Fail at once when Fashion-MNIST is asked for and missing, before any folder is made,
    naming the package to install."""
    if cfg.dataset == "fashion-mnist":
        try:
            find_fashion_mnist(cfg.data_dir)
        except FashionMNISTMissingError as err:
            raise StudyError(str(err)) from None


def summary_lines(cfg: ImageStudyConfig, summary: dict) -> list[str]:
    """What ``equirelax images`` prints per variant."""
    lines = []
    for name, stats in summary["variants"].items():
        acc = stats[f"test_acc_{cfg.test_rotation}"]
        lines.append(f"{name:>9}: test acc ({cfg.test_rotation}) {acc['mean']:.3f} ± "
                     f"{acc['std']:.3f}, {cfg.group} invariance error "
                     f"{stats['equivariance_error']['max']:.1e}")
    return lines


STUDY = ClassificationStudy(
    name="images", config=ImageStudyConfig, presets=PRESETS, variants=VARIANTS,
    models=("gcnn", "cnn"), preset_name=preset_name, results_name=results_name,
    check=check_data, run=run_study, summary_lines=summary_lines,
    preset_help="standard for digits, fashion for Fashion-MNIST")


#: the entry points of ``equirelax images``, shared by the classification studies
configure = STUDY.configure
config_from_args = STUDY.config_from_args
main = STUDY.main
