"""Small Fashion-MNIST look-alikes for tests: the four IDX files of the published layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from equirelax.data.fashion_mnist import FASHION_MNIST_FILES
from equirelax.data.idx import write_idx


def write_fake_fashion_mnist(
    root: Path,
    n_train: int = 60,
    n_test: int = 20,
    size: int = 28,
    compress: bool = True,
    seed: int = 0,
) -> Path:
    """Write random uint8 images with labels 0..9 in turn under ``root``; returns ``root``."""
    rng = np.random.default_rng(seed)
    suffix = ".gz" if compress else ""
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{FASHION_MNIST_FILES[split, 'images']}{suffix}", images)
        write_idx(root / f"{FASHION_MNIST_FILES[split, 'labels']}{suffix}", labels)
    return root
