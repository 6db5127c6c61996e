"""ModelNet40 point clouds from the HDF5 files of ``modelnet40_ply_hdf5_2048``.

The constraint-relaxation paper (and the Vector Neurons and DGCNN code it builds on) classifies
ModelNet40 clouds read from the ``modelnet40_ply_hdf5_2048`` release: files
``ply_data_train0.h5`` ... and ``ply_data_test0.h5`` ..., each holding ``data`` (n, 2048, 3)
float32 points (centred, within the unit sphere) and ``label`` (n, 1) class indices, with the
class names in ``shape_names.txt``. The data cannot be downloaded by equirelax; a user who has
the folder passes its path (``equirelax pointcloud --data PATH``), and this module reads it into
the same splits as the procedural shapes (:class:`~equirelax.data.shapes.PointCloudSplit`).

As in the paper's code, the **first** ``num_points`` points of every cloud are used (300 in the
paper). The published test files are the test split; a validation split of ``val_fraction`` of
the training clouds is carved out by a permutation fixed by ``seed`` (the paper's own
validation experiment used 80/20). Clouds are stored as published (canonical pose); the
validation clouds are rotated by the protocol's training rotations and the test clouds by its
test rotations, each from its own random stream, and ``rotations`` records them
(``points = canonical @ R^T``), as for :func:`~equirelax.data.shapes.load_shapes`.

Reading HDF5 needs ``h5py`` (the ``data`` extra of equirelax), imported when a file is read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from equirelax.data.shapes import (
    PointCloudSplit,
    parse_protocol,
    rotations_of_kind,
)

__all__ = [
    "MODELNET40_FOLDER",
    "ModelNet40Data",
    "find_modelnet40_files",
    "load_modelnet40",
    "read_modelnet40_h5",
]

#: the name of the published folder
MODELNET40_FOLDER = "modelnet40_ply_hdf5_2048"

_FILE = re.compile(r"ply_data_(train|test)(\d+)\.h5$")


def _h5py():
    try:
        import h5py
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "reading the ModelNet40 HDF5 files needs h5py: `pip install h5py` (or "
            "`pip install 'equirelax[data]'`)"
        ) from err
    return h5py


def find_modelnet40_files(path: str | os.PathLike) -> dict[str, list[Path]]:
    """The ``ply_data_{train,test}<k>.h5`` files under ``path`` (the
    ``modelnet40_ply_hdf5_2048`` folder, or a folder holding it), in the order of ``k``.

    Raises ``FileNotFoundError`` naming the folder when either split has no file.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"ModelNet40 folder {root} does not exist; expected the {MODELNET40_FOLDER} folder "
            "(ply_data_train0.h5, ..., ply_data_test0.h5, ...)"
        )
    nested = root / MODELNET40_FOLDER
    if not any(_FILE.search(p.name) for p in root.iterdir()) and nested.is_dir():
        root = nested
    files: dict[str, list[tuple[int, Path]]] = {"train": [], "test": []}
    for p in root.iterdir():
        match = _FILE.search(p.name)
        if match:
            files[match.group(1)].append((int(match.group(2)), p))
    missing = [split for split, found in files.items() if not found]
    if missing:
        raise FileNotFoundError(
            f"no ply_data_{missing[0]}<k>.h5 file in {root}; expected the {MODELNET40_FOLDER} "
            "folder of HDF5 files (ply_data_train0.h5, ..., ply_data_test0.h5, ...)"
        )
    return {split: [p for _, p in sorted(found)] for split, found in files.items()}


def read_modelnet40_h5(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """``(points (n, P, 3) float32, labels (n,) int64)`` of the files, concatenated in order;
    each must hold ``data`` (m, P, 3) and ``label`` (m,) or (m, 1)."""
    h5py = _h5py()
    points, labels = [], []
    for path in files:
        with h5py.File(path, "r") as f:
            for key in ("data", "label"):
                if key not in f:
                    raise ValueError(
                        f"{path} has no dataset {key!r}; a ModelNet40 HDF5 file holds 'data' "
                        f"(n, 2048, 3) and 'label' (n, 1), found {sorted(f.keys())}"
                    )
            data = np.asarray(f["data"], dtype=np.float32)
            label = np.asarray(f["label"])
        if data.ndim != 3 or data.shape[-1] != 3:
            raise ValueError(f"{path}: 'data' must have shape (n, P, 3), got {data.shape}")
        label = label.reshape(len(label), -1) if label.ndim == 2 else label
        if label.shape not in ((len(data),), (len(data), 1)):
            raise ValueError(
                f"{path}: 'label' must have shape ({len(data)},) or ({len(data)}, 1) to match "
                f"'data', got {label.shape}"
            )
        if points and data.shape[1] != points[0].shape[1]:
            raise ValueError(
                f"{path}: clouds of {data.shape[1]} points, but {files[0]} has {points[0].shape[1]}"
            )
        points.append(data)
        labels.append(label.reshape(-1).astype(np.int64))
    return np.concatenate(points), np.concatenate(labels)


@dataclass
class ModelNet40Data:
    """Train/validation/test splits of ModelNet40, like :class:`~equirelax.data.shapes.
    ShapeData`: ``points`` (n, num_points, 3), ``labels``, ``rotations`` per split."""

    train: PointCloudSplit
    val: PointCloudSplit
    test: PointCloudSplit
    class_names: tuple[str, ...]
    path: Path
    num_points: int
    protocol: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_modelnet40(
    path: str | os.PathLike,
    num_points: int = 300,
    protocol: str = "so3/so3",
    val_fraction: float = 0.2,
    seed: int = 0,
) -> ModelNet40Data:
    """Read the ModelNet40 HDF5 files under ``path`` into rotated train/validation/test splits.

    Args:
        path: the ``modelnet40_ply_hdf5_2048`` folder (or a folder holding it).
        num_points: the first ``num_points`` points of each cloud are kept (the paper: 300).
        protocol: ``"<train>/<test>"`` rotations (``so3``, ``z``, ``none``); the training split
            is stored canonical (the study rotates every batch), validation and test rotated.
        val_fraction: share of the training clouds held out for validation, in (0, 1).
        seed: fixes the validation split and the rotations.
    """
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    if not (isinstance(val_fraction, (int, float)) and 0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
    train_kind, test_kind = parse_protocol(protocol)
    files = find_modelnet40_files(path)
    train_points, train_labels = read_modelnet40_h5(files["train"])
    test_points, test_labels = read_modelnet40_h5(files["test"])
    available = min(train_points.shape[1], test_points.shape[1])
    if num_points > available:
        raise ValueError(
            f"num_points must be at most {available} (the points per cloud in "
            f"{files['train'][0].parent}), got {num_points}"
        )
    names_file = files["train"][0].parent / "shape_names.txt"
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    if names_file.is_file():
        class_names = tuple(
            line.strip() for line in names_file.read_text().splitlines() if line.strip()
        )
        if len(class_names) < num_classes:
            raise ValueError(
                f"{names_file} names {len(class_names)} classes, but the labels go "
                f"up to {num_classes - 1}"
            )
    else:
        class_names = tuple(f"class {k}" for k in range(num_classes))
    if train_labels.min() < 0 or test_labels.min() < 0:
        raise ValueError(f"labels in {files['train'][0].parent} must be >= 0")
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    order = order.permutation(len(train_labels))
    n_val = max(1, round(val_fraction * len(train_labels)))
    if n_val >= len(train_labels):
        raise ValueError(
            f"val_fraction = {val_fraction} leaves no training cloud of {len(train_labels)}"
        )
    val_index, train_index = np.sort(order[:n_val]), np.sort(order[n_val:])
    plan = (
        ("train", train_points[train_index], train_labels[train_index], "none"),
        ("val", train_points[val_index], train_labels[val_index], train_kind),
        ("test", test_points, test_labels, test_kind),
    )
    splits = {}
    for number, (name, points, labels, kind) in enumerate(plan, start=1):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(number,)))
        points = points[:, :num_points].astype(np.float64)
        rot = rotations_of_kind(kind, len(points), rng)
        rotated = np.einsum("nij,npj->npi", rot, points)
        splits[name] = PointCloudSplit(rotated, labels, rot)
    return ModelNet40Data(
        **splits,
        class_names=class_names,
        path=files["train"][0].parent,
        num_points=num_points,
        protocol=f"{train_kind}/{test_kind}",
    )
