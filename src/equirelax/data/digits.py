"""Rotated digits: scikit-learn's 8x8 handwritten digits, upsampled and rotated.

The image counterpart of the rotated point clouds: a classification task whose labels do not
change under rotation (up to the usual 6/9 ambiguity), generated from data that ships with
scikit-learn (1797 images, 10 classes). Each 8x8 image is scaled to [0, 1], upsampled bilinearly
to ``digit_size`` pixels and centred on a black ``image_size`` canvas (default 20 in 28, as in
MNIST), so that the digit stays inside the inscribed circle and rotations do not cut it off.

Rotations, chosen separately for the training and the test split:

* ``"none"``: upright digits;
* ``"c4"``: a random multiple of 90°, applied exactly on the pixel grid (``np.rot90``), so a
  C4-invariant model sees exactly the same input up to its symmetry;
* ``"continuous"``: a uniform angle in [0°, 360°), bilinear interpolation about the image centre.

Angles are counter-clockwise as displayed (row 0 at the top), the convention of ``np.rot90`` and
``torch.rot90(x, 1, dims=(-2, -1))`` used by :mod:`equirelax.nn.gconv`. The train/test split is
stratified by label and fixed by the seed; each split has its own random stream for angles.

scikit-learn (the digits, the stratified split) and scikit-image (resizing, rotation by angles
other than multiples of 90°) are optional (the ``data`` extra) and imported only when they are
needed: importing this module is cheap, and a missing package is named (with how to install it)
only when the data are asked for.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from equirelax.data.overrides import with_overrides

__all__ = [
    "DIGIT_ROTATIONS",
    "DigitsConfig",
    "DigitsData",
    "ImageSplit",
    "load_rotated_digits",
    "rotate_images",
    "upright_digits",
]

DIGIT_ROTATIONS = ("none", "c4", "continuous")


def _optional(module: str, package: str) -> ModuleType:
    """Import ``module`` of the optional dependency ``package``, or raise
    ``ModuleNotFoundError`` saying which package the rotated digits need and how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"the rotated-digits data set needs {package} (could not import {module}): "
            f"`pip install {package}` (or `pip install 'equirelax[data]'`)"
        ) from err


def _check_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def upright_digits(image_size: int = 28, digit_size: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 scikit-learn digits upsampled and centred: ``(images (n, S, S) in [0, 1], labels)``.

    ``digit_size`` is the side of the upsampled digit, ``image_size`` the side of the canvas.
    """
    _check_int(digit_size, "digit_size", 8)
    _check_int(image_size, "image_size", digit_size)
    raw = _optional("sklearn.datasets", "scikit-learn").load_digits()
    small = raw.images.astype(np.float64) / 16.0
    transform = _optional("skimage.transform", "scikit-image")
    big = transform.resize(
        small, (len(small), digit_size, digit_size), order=1, anti_aliasing=False
    )
    big = np.clip(big, 0.0, 1.0)
    before = (image_size - digit_size) // 2
    after = image_size - digit_size - before
    images = np.pad(big, ((0, 0), (before, after), (before, after)))
    return images, raw.target.astype(np.int64)


def rotate_images(images: np.ndarray, angles: np.ndarray, progress: bool = False) -> np.ndarray:
    """Rotate square images ``(n, S, S)`` counter-clockwise by ``angles`` (degrees, ``(n,)``).

    Multiples of 90° are applied exactly with ``np.rot90``; other angles by bilinear
    interpolation about the image centre, with black (0) outside the original image.
    """
    images = np.asarray(images)
    angles = np.asarray(angles, dtype=np.float64)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (n, S, S), got {images.shape}")
    if angles.shape != (len(images),):
        raise ValueError(f"angles must have shape ({len(images)},), got {angles.shape}")
    if not np.isfinite(angles).all():
        raise ValueError("angles must be finite")
    out = np.empty(images.shape, dtype=np.float64)
    transform = None  # scikit-image, imported at the first angle that is no multiple of 90°
    for i in tqdm(range(len(images)), desc="digits: rotating", disable=not progress):
        quarter = angles[i] / 90.0
        if math.isclose(quarter, round(quarter), abs_tol=1e-12):
            out[i] = np.rot90(images[i], round(float(quarter)) % 4)
        else:
            transform = transform or _optional("skimage.transform", "scikit-image")
            out[i] = transform.rotate(images[i], angles[i], order=1, mode="constant", cval=0.0)
    return out


@dataclass(frozen=True)
class DigitsConfig:
    """Every parameter of the rotated-digits data set.

    ``repeats`` rotated copies of each original image go into its split (independent angles).
    """

    image_size: int = 28
    digit_size: int = 20
    train_rotation: str = "continuous"
    test_rotation: str = "continuous"
    test_fraction: float = 0.25
    repeats: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int(self.digit_size, "digit_size", 8)
        _check_int(self.image_size, "image_size", self.digit_size)
        _check_int(self.repeats, "repeats", 1)
        _check_int(self.seed, "seed", 0)
        for name in ("train_rotation", "test_rotation"):
            value = getattr(self, name)
            if value not in DIGIT_ROTATIONS:
                raise ValueError(f"{name} must be one of {DIGIT_ROTATIONS}, got {value!r}")
        fraction = self.test_fraction
        if not (isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0):
            raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {fraction!r}")


class ImageSplit(Dataset):
    """One split: ``images`` (n, 1, S, S) float32, ``labels`` (n,) int64, ``angles`` (n,) degrees.

    ``source`` holds the index of each image in scikit-learn's digits. Items are
    ``(images[i], labels[i])``.
    """

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, angles: np.ndarray, source: np.ndarray
    ) -> None:
        self.images = torch.as_tensor(np.asarray(images, dtype=np.float32)).unsqueeze(1)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.angles = torch.as_tensor(np.asarray(angles, dtype=np.float32))
        self.source = torch.as_tensor(np.asarray(source, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


@dataclass
class DigitsData:
    """The train and test splits of the rotated-digits data set, with their configuration."""

    config: DigitsConfig
    train: ImageSplit
    test: ImageSplit
    num_classes: int = 10


def _angles(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "none":
        return np.zeros(n)
    if kind == "c4":
        return 90.0 * rng.integers(0, 4, size=n)
    return rng.uniform(0.0, 360.0, size=n)


def load_rotated_digits(
    config: DigitsConfig | None = None, *, progress: bool = False, **overrides: object
) -> DigitsData:
    """Build the rotated-digits train/test splits (fast: no cache needed).

    Args:
        config: the parameters; ``overrides`` (e.g. ``train_rotation="c4"``) replace fields.
        progress: show a tqdm progress bar while rotating.
    """
    config = config or DigitsConfig()
    config = with_overrides(config, overrides)
    images, labels = upright_digits(config.image_size, config.digit_size)
    model_selection = _optional("sklearn.model_selection", "scikit-learn")
    train_idx, test_idx = model_selection.train_test_split(
        np.arange(len(labels)),
        test_size=config.test_fraction,
        stratify=labels,
        random_state=config.seed,
    )
    splits = {}
    for number, (name, index, kind) in enumerate(
        (("train", train_idx, config.train_rotation), ("test", test_idx, config.test_rotation))
    ):
        rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(number,)))
        source = np.tile(np.sort(index), config.repeats)
        angles = _angles(kind, len(source), rng)
        rotated = rotate_images(images[source], angles, progress=progress)
        splits[name] = ImageSplit(rotated, labels[source], angles, source)
    return DigitsData(config, **splits)
