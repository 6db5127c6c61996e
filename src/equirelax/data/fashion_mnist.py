"""Rotated Fashion-MNIST: 70,000 real 28x28 grey images of clothing in 10 classes.

The real-image counterpart of :mod:`equirelax.data.digits`. The data are read from the IDX
files as published (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each gzip-compressed or plain), by
default from ``/usr/share/datasets/fashion-mnist/``, where the Debian package
``dataset-fashion-mnist`` installs them (``$EQUIRELAX_FASHION_MNIST`` or ``root`` point
elsewhere). Nothing is downloaded: when the files are missing, loading fails at once with
:class:`FashionMNISTMissingError`, which names the package and the command that installs it.

Splits: the published test set (10,000 images) is the test split; a validation split of
``val_size`` images is carved from the published training set (60,000) by a permutation fixed
by ``seed``, and the training split is the next ``train_size`` images of that permutation (all
the rest by default). The same seed always gives the same splits, whatever the sizes: a smaller
training split is a prefix of a larger one.

Rotations follow :mod:`equirelax.data.digits` (``"none"``, ``"c4"`` exact quarter turns,
``"continuous"`` bilinear about the image centre, black outside), drawn per split from
separate streams of ``seed``. Unlike the digits, the garments fill the canvas, so a continuous
rotation cuts off the corners of the image (as in rotated MNIST).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from equirelax.data.digits import DIGIT_ROTATIONS, ImageSplit, rotate_images
from equirelax.data.idx import read_idx
from equirelax.data.overrides import with_overrides

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_INSTALL",
    "FASHION_MNIST_PACKAGE",
    "FashionMNISTConfig",
    "FashionMNISTData",
    "FashionMNISTMissingError",
    "default_fashion_mnist_dir",
    "find_fashion_mnist",
    "load_rotated_fashion_mnist",
    "upright_fashion_mnist",
]

#: where the Debian package installs the files
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_INSTALL = f"sudo apt-get install {FASHION_MNIST_PACKAGE}"

#: (split, part) -> file name without the optional ``.gz``
FASHION_MNIST_FILES: dict[tuple[str, str], str] = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

#: class names in label order, as published
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class FashionMNISTMissingError(FileNotFoundError):
    """The Fashion-MNIST files are not where they were looked for; the message says which
    files are missing, the package that provides them and how to install it."""


def default_fashion_mnist_dir() -> Path:
    """``$EQUIRELAX_FASHION_MNIST`` if set, else the Debian package's folder."""
    env = os.environ.get("EQUIRELAX_FASHION_MNIST")
    return Path(env).expanduser() if env else FASHION_MNIST_DIR


def find_fashion_mnist(root: str | os.PathLike | None = None) -> dict[tuple[str, str], Path]:
    """The path of each of the four IDX files under ``root`` (default
    :func:`default_fashion_mnist_dir`), preferring the ``.gz`` file where both exist.

    Raises :class:`FashionMNISTMissingError` when any is missing.
    """
    folder = Path(root).expanduser() if root is not None else default_fashion_mnist_dir()
    found: dict[tuple[str, str], Path] = {}
    missing: list[str] = []
    for key, name in FASHION_MNIST_FILES.items():
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(f"{name}[.gz]")
    if missing:
        raise FashionMNISTMissingError(
            f"Fashion-MNIST not found in {folder}: missing {', '.join(missing)}. The Debian "
            f"package {FASHION_MNIST_PACKAGE} provides these files in {FASHION_MNIST_DIR}; "
            f"install it with `{FASHION_MNIST_INSTALL}` (or `./dev install-fashion-mnist`), "
            "or point --data-dir (or $EQUIRELAX_FASHION_MNIST) at a folder holding the four "
            "IDX files."
        )
    return found


def upright_fashion_mnist(
    split: str, root: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The published ``split`` (``"train"`` or ``"test"``): ``(images (n, S, S) float64 in
    [0, 1], labels (n,) int64)``, checked for matching counts and labels 0..9."""
    images, labels = _published(split, root)
    return images.astype(np.float64) / 255.0, labels


def _published(split: str, root: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    """The raw uint8 images and int64 labels of a published split, checked."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    paths = find_fashion_mnist(root)
    images = read_idx(paths[split, "images"])
    labels = read_idx(paths[split, "labels"])
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
        raise ValueError(
            f"{paths[split, 'images']} must hold uint8 images of shape (n, S, S), got "
            f"{images.dtype} {images.shape}"
        )
    if labels.shape != (len(images),):
        raise ValueError(
            f"{paths[split, 'labels']} must hold {len(images)} labels (one per image in "
            f"{paths[split, 'images'].name}), got shape {labels.shape}"
        )
    if len(labels) and not (labels.min() >= 0 and labels.max() < len(FASHION_MNIST_CLASSES)):
        raise ValueError(
            f"{paths[split, 'labels']} must hold labels 0..{len(FASHION_MNIST_CLASSES) - 1}, "
            f"got {labels.min()}..{labels.max()}"
        )
    return images, labels.astype(np.int64)


def _check_count(value: object, name: str, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{none}, got {value!r}")


@dataclass(frozen=True)
class FashionMNISTConfig:
    """Every parameter of the rotated Fashion-MNIST splits.

    ``train_size=None`` keeps every published training image not in the validation split,
    ``test_size=None`` the whole published test set (a smaller one takes its first images).
    """

    train_rotation: str = "continuous"
    test_rotation: str = "continuous"
    val_size: int = 10000
    train_size: int | None = None
    test_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train_rotation", "test_rotation"):
            value = getattr(self, name)
            if value not in DIGIT_ROTATIONS:
                raise ValueError(f"{name} must be one of {DIGIT_ROTATIONS}, got {value!r}")
        _check_count(self.val_size, "val_size", 1)
        _check_count(self.train_size, "train_size", 1, allow_none=True)
        _check_count(self.test_size, "test_size", 1, allow_none=True)
        _check_count(self.seed, "seed", 0)


@dataclass
class FashionMNISTData:
    """Train, validation and test splits of rotated Fashion-MNIST, with their configuration.

    ``source`` of each split holds the index of every image in its published file (train for
    the train and validation splits, t10k for the test split). The validation split is rotated
    like the training split (it selects models under the training distribution).
    """

    config: FashionMNISTConfig
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    root: Path
    num_classes: int = len(FASHION_MNIST_CLASSES)


def _angles(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "none":
        return np.zeros(n)
    if kind == "c4":
        return 90.0 * rng.integers(0, 4, size=n)
    return rng.uniform(0.0, 360.0, size=n)


def load_rotated_fashion_mnist(
    config: FashionMNISTConfig | None = None,
    *,
    root: str | os.PathLike | None = None,
    progress: bool = False,
    **overrides: object,
) -> FashionMNISTData:
    """Read the published files and build the rotated train/validation/test splits.

    Args:
        config: the parameters; ``overrides`` (e.g. ``train_size=12000``) replace fields.
        root: folder of the IDX files (default :func:`default_fashion_mnist_dir`).
        progress: show a tqdm progress bar while rotating.
    """
    config = config or FashionMNISTConfig()
    config = with_overrides(config, overrides)
    folder = find_fashion_mnist(root)["train", "images"].parent
    # uint8 until the images of the splits are chosen: the published training set is 376 MB
    # as float64
    train_images, train_labels = _published("train", folder)
    test_images, test_labels = _published("test", folder)
    available = len(train_labels) - config.val_size
    if available < 1:
        raise ValueError(
            f"val_size = {config.val_size} leaves no training image of the "
            f"{len(train_labels)} in {folder}"
        )
    if config.train_size is not None and config.train_size > available:
        raise ValueError(
            f"train_size must be at most {available} (the {len(train_labels)} published "
            f"training images less val_size = {config.val_size}), got {config.train_size}"
        )
    if config.test_size is not None and config.test_size > len(test_labels):
        raise ValueError(
            f"test_size must be at most {len(test_labels)} (the published test images), "
            f"got {config.test_size}"
        )
    order = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0,)))
    order = order.permutation(len(train_labels))
    val_index = np.sort(order[: config.val_size])
    train_index = order[config.val_size :]
    if config.train_size is not None:
        train_index = train_index[: config.train_size]
    train_index = np.sort(train_index)
    test_index = np.arange(len(test_labels) if config.test_size is None else config.test_size)
    splits = {}
    plan = (
        ("train", train_images, train_labels, train_index, config.train_rotation),
        ("val", train_images, train_labels, val_index, config.train_rotation),
        ("test", test_images, test_labels, test_index, config.test_rotation),
    )
    for number, (name, images, labels, index, kind) in enumerate(plan, start=1):
        rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(number,)))
        angles = _angles(kind, len(index), rng)
        rotated = rotate_images(images[index] / 255.0, angles, progress=progress)
        splits[name] = ImageSplit(rotated, labels[index], angles, index)
    return FashionMNISTData(config, **splits, root=folder)
