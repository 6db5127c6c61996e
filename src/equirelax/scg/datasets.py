"""Image sources for the SCG studies that need no download at run time.

The paper trains its modular autoencoder on ImageNet (100 classes) and MNIST and its generator on
COCO. None of these can be fetched here, so we draw random crops from the colour photographs that
scikit-image and scikit-learn ship inside their wheels, from procedural "dead-leaves" images
(occluding coloured discs with power-law radii: natural-image-like 1/f spectra, sharp edges,
colour and brightness variation) and from scikit-learn's 8x8 digits (the MNIST stand-in).

Photos are split by name into a training set and a held-out set so that probes and generation
metrics are measured on images the models never saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "china",
)
HELD_OUT_PHOTOS: tuple[str, ...] = ("coffee", "flower")
SOURCES: tuple[str, ...] = ("photos", "dead_leaves", "digits")


def load_photo(name: str) -> np.ndarray:
    """Return one bundled colour photograph as float32 ``(H, W, 3)`` in [0, 1].

    ``name`` is a scikit-image data function name or ``"china"``/``"flower"`` from
    ``sklearn.datasets.load_sample_images``.
    """
    known = TRAIN_PHOTOS + HELD_OUT_PHOTOS
    if name not in known:
        raise ValueError(f"unknown photo {name!r}; expected one of {known}")
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        images = load_sample_images()
        index = [f.rsplit("/", 1)[-1].split(".")[0] for f in images.filenames].index(name)
        image = images.images[index]
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    return np.ascontiguousarray(image[..., :3], dtype=np.float32) / 255.0


def dead_leaves(size: int, rng: np.random.Generator, n_discs: int = 300,
                min_radius: float = 1.0, max_radius: float | None = None) -> np.ndarray:
    """Render one dead-leaves image ``(size, size, 3)`` in [0, 1].

    Discs are drawn front to back with radii from a ``r^-3`` power law between ``min_radius`` and
    ``max_radius`` (default ``size / 2``); this law gives the scale invariance of natural images.
    Each disc has a uniformly random colour, so the images carry colour, brightness and edges.
    """
    if size < 4:
        raise ValueError(f"size must be >= 4, got {size}")
    max_radius = size / 2 if max_radius is None else max_radius
    if not 0 < min_radius < max_radius:
        raise ValueError(f"need 0 < min_radius < max_radius, got {min_radius}, {max_radius}")
    image = np.zeros((size, size, 3), dtype=np.float32)
    covered = np.zeros((size, size), dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Inverse-CDF sampling of p(r) ~ r^-3 on [min_radius, max_radius].
    a, b = min_radius**-2, max_radius**-2
    for _ in range(n_discs):
        r = (a - rng.random() * (a - b)) ** -0.5
        cx, cy = rng.uniform(-r, size + r, size=2)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r) & ~covered
        image[disc] = rng.random(3).astype(np.float32)
        covered |= disc
        if covered.all():
            break
    image[~covered] = rng.random(3).astype(np.float32)
    return image


def digit_images(size: int) -> np.ndarray:
    """scikit-learn's 1,797 digits, upsampled to ``(N, size, size, 3)`` grey RGB in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)[:, None]
    inner = max(4, round(size * 0.75))
    up = F.interpolate(digits, size=(inner, inner), mode="bilinear", align_corners=False)
    pad = size - inner
    up = F.pad(up, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    return up.clamp(0, 1).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()


@dataclass
class CropSampler:
    """An endless stream of random RGB crops ``(B, 3, size, size)`` in [0, 1].

    ``weights`` gives the mixing proportion of each source in ``SOURCES`` (photos, dead leaves,
    digits). ``split`` picks the training or the held-out photographs; dead-leaves images come from
    disjoint seeds in the two splits (the held-out stream uses ``seed + 10**6``).
    """

    size: int = 32
    weights: Sequence[float] = (0.7, 0.3, 0.0)
    split: str = "train"
    seed: int = 0
    n_leaf_images: int = 32
    _photos: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _leaves: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _digits: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.split not in ("train", "held_out"):
            raise ValueError(f"split must be 'train' or 'held_out', got {self.split!r}")
        if len(self.weights) != len(SOURCES):
            raise ValueError(f"weights needs {len(SOURCES)} entries {SOURCES}, got {self.weights}")
        w = np.asarray(self.weights, dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {self.weights}")
        if self.size < 8:
            raise ValueError(f"crop size must be >= 8, got {self.size}")
        self._p = w / w.sum()
        base = self.seed if self.split == "train" else self.seed + 10**6
        self._rng = np.random.default_rng(base)
        names = TRAIN_PHOTOS if self.split == "train" else HELD_OUT_PHOTOS
        if self._p[0] > 0:
            self._photos = [load_photo(n) for n in names]
        if self._p[1] > 0:
            leaf_size = max(4 * self.size, 96)
            self._leaves = [dead_leaves(leaf_size, self._rng) for _ in range(self.n_leaf_images)]
        if self._p[2] > 0:
            self._digits = digit_images(self.size)

    def _crop(self, image: np.ndarray) -> np.ndarray:
        h, w, _ = image.shape
        y = self._rng.integers(0, h - self.size + 1)
        x = self._rng.integers(0, w - self.size + 1)
        return image[y : y + self.size, x : x + self.size]

    def sample(self, batch: int) -> torch.Tensor:
        """Draw ``batch`` crops as a float32 tensor ``(batch, 3, size, size)``."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        kinds = self._rng.choice(len(SOURCES), size=batch, p=self._p)
        crops = []
        for kind in kinds:
            if kind == 0:
                crops.append(self._crop(self._photos[self._rng.integers(len(self._photos))]))
            elif kind == 1:
                crops.append(self._crop(self._leaves[self._rng.integers(len(self._leaves))]))
            else:
                assert self._digits is not None
                crops.append(self._digits[self._rng.integers(len(self._digits))])
        return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
