"""A small ModelNet40 look-alike for tests: the HDF5 layout of ``modelnet40_ply_hdf5_2048``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from equirelax.data.modelnet40 import MODELNET40_FOLDER


def write_fake_modelnet40(
    root: Path,
    sizes: dict[str, list[int]] | None = None,
    points: int = 2048,
    classes: int = 5,
    seed: int = 0,
) -> Path:
    """``ply_data_<split><k>.h5`` files with ``data`` (n, points, 3) float32 and ``label``
    (n, 1) uint8 as published, and ``shape_names.txt``; returns the folder."""
    sizes = sizes or {"train": [12, 8], "test": [10]}
    import h5py

    folder = root / MODELNET40_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    count = 0
    for split, parts in sizes.items():
        for k, n in enumerate(parts):
            data = rng.normal(size=(n, points, 3)).astype(np.float32)
            # the cloud's number in its first point, to check order and the first-N rule
            data[:, 0, 0] = np.arange(count, count + n)
            count += n
            label = (np.arange(n) % classes).astype(np.uint8)[:, None]
            with h5py.File(folder / f"ply_data_{split}{k}.h5", "w") as f:
                f.create_dataset("data", data=data)
                f.create_dataset("label", data=label)
    (folder / "shape_names.txt").write_text("\n".join(f"shape{c}" for c in range(classes)))
    return folder
