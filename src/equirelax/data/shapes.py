"""Procedural 3D shapes: a rotation-invariant point-cloud classification task generated locally.

The constraint-relaxation paper classifies ModelNet40 point clouds (300 points, random SO(3)
rotations) with Vector Neurons. ModelNet40 cannot be downloaded here, so this module generates a
stand-in: 15 classes of parametric surfaces and polyhedra (spheres, ellipsoids of three aspect
types, torus, cylinder, cone, capsule, helix tube, cube, cuboid, square pyramid, triangular prism,
tetrahedron, octahedron). Every sample draws its own shape parameters (aspect ratios, heights,
tube radii, vertex positions) from a class-specific range, is sampled uniformly by surface area,
centred at its centroid, scaled to unit maximum radius and perturbed by Gaussian surface noise.

Each class is generated in an upright canonical pose (symmetry axis along z), so the two
protocols of the rotation-invariance literature apply:

* ``"so3/so3"``: train and test clouds are rotated by independent uniform (Haar) rotations;
* ``"z/so3"``: training clouds are rotated about the z axis only, test clouds by SO(3).

(``"none"`` and ``"z"`` may be combined freely, e.g. ``"none/so3"``.) Canonical shapes and
rotations come from separate random streams, so the canonical shapes of a split do not depend on
the protocol and the SO(3) test set is the same under both protocols.

Generated data sets are cached on disk, keyed by every generation parameter (see
:func:`load_shapes`). SO(3) rotations are Haar-distributed, drawn by
:func:`equirelax.groups.haar.haar_rotations` (normalised Gaussian quaternions).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from equirelax.data.overrides import with_overrides
from equirelax.groups.haar import haar_rotations

__all__ = [
    "ROTATION_KINDS",
    "SHAPE_CLASSES",
    "PointCloudSplit",
    "ShapeConfig",
    "ShapeData",
    "default_cache_dir",
    "load_shapes",
    "parse_protocol",
    "random_z_rotations",
    "rotations_of_kind",
    "sample_shape",
]

#: Bumped whenever the generator changes what it produces for the same parameters, so that
#: stale cache files are never reused.
GENERATOR_VERSION = 1

ROTATION_KINDS = ("none", "z", "so3")

_PROTOCOL_ALIASES = {"so(3)": "so3", "so3": "so3", "z": "z", "none": "none", "i": "none"}


# --------------------------------------------------------------------------------------------
# Rotations
# --------------------------------------------------------------------------------------------


def _check_count(n: int, name: str = "n") -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")


def random_z_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotations about the z axis by uniform angles in [0, 2π), shape ``(n, 3, 3)``."""
    _check_count(n)
    angle = rng.uniform(0.0, 2.0 * math.pi, size=n)
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((n, 3, 3))
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = c, -s, s, c
    out[:, 2, 2] = 1.0
    return out


_ROTATION_SAMPLERS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "none": lambda n, rng: np.broadcast_to(np.eye(3), (n, 3, 3)).copy(),
    "z": random_z_rotations,
    "so3": haar_rotations,
}


def rotations_of_kind(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotations ``(n, 3, 3)`` of one of :data:`ROTATION_KINDS`: identities (``"none"``),
    uniform rotations about z (``"z"``) or Haar rotations of SO(3) (``"so3"``)."""
    if kind not in _ROTATION_SAMPLERS:
        raise ValueError(f"rotation kind must be one of {ROTATION_KINDS}, got {kind!r}")
    return _ROTATION_SAMPLERS[kind](n, rng)


def parse_protocol(protocol: str) -> tuple[str, str]:
    """Split a protocol such as ``"z/so3"`` or ``"SO(3)/SO(3)"`` into (train, test) rotation kinds.

    Each side is one of :data:`ROTATION_KINDS`; ``"SO(3)"`` is accepted for ``"so3"``.
    """
    if not isinstance(protocol, str) or protocol.count("/") != 1:
        raise ValueError(
            f"protocol must look like 'train/test' with each side in {ROTATION_KINDS}, "
            f"e.g. 'z/so3', got {protocol!r}"
        )
    sides = []
    for part in protocol.split("/"):
        key = part.strip().lower()
        if key not in _PROTOCOL_ALIASES:
            raise ValueError(
                f"unknown rotation kind {part!r} in protocol {protocol!r}; "
                f"expected one of {ROTATION_KINDS}"
            )
        sides.append(_PROTOCOL_ALIASES[key])
    return sides[0], sides[1]


# --------------------------------------------------------------------------------------------
# Surface samplers (canonical pose: symmetry axis along z)
# --------------------------------------------------------------------------------------------


def _unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rejection(
    propose: Callable[[int], tuple[np.ndarray, np.ndarray]],
    bound: float,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Keep proposals with probability density/bound until ``n`` points are accepted.

    ``propose(m)`` returns ``m`` candidate points and their (unnormalised) area density relative
    to the proposal distribution; ``bound`` is an upper bound of that density.
    """
    kept: list[np.ndarray] = []
    count = 0
    while count < n:
        points, density = propose(2 * (n - count) + 16)
        accept = rng.uniform(0.0, bound, size=len(points)) < density
        kept.append(points[accept])
        count += int(accept.sum())
    return np.concatenate(kept)[:n]


def _split_by_area(n: int, areas: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """How many of ``n`` points fall on each part of a surface made of parts with ``areas``."""
    areas = np.asarray(areas, dtype=np.float64)
    return rng.multinomial(n, areas / areas.sum())


def _ellipsoid(n: int, axes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a, b, c = axes

    def propose(m: int) -> tuple[np.ndarray, np.ndarray]:
        u = _unit_vectors(m, rng)
        # Area element of the ellipsoid relative to the sphere's, at the image of u.
        density = np.sqrt((b * c * u[:, 0]) ** 2 + (a * c * u[:, 1]) ** 2 + (a * b * u[:, 2]) ** 2)
        return u * axes, density

    return _rejection(propose, max(a * b, a * c, b * c), n, rng)


def _disk(n: int, radius: float, z: float, rng: np.random.Generator) -> np.ndarray:
    r = radius * np.sqrt(rng.uniform(size=n))
    phi = rng.uniform(0.0, 2 * math.pi, size=n)
    return np.stack([r * np.cos(phi), r * np.sin(phi), np.full(n, z)], axis=1)


def _tube(n: int, radius: float, z0: float, z1: float, rng: np.random.Generator) -> np.ndarray:
    phi = rng.uniform(0.0, 2 * math.pi, size=n)
    z = rng.uniform(z0, z1, size=n)
    return np.stack([radius * np.cos(phi), radius * np.sin(phi), z], axis=1)


def _mesh(n: int, vertices: np.ndarray, faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform samples on a triangle mesh: faces chosen by area, uniform barycentric points."""
    tri = vertices[faces]  # (F, 3 corners, 3)
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(faces), size=n, p=areas / areas.sum())
    u, v = rng.uniform(size=(2, n))
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    t = tri[face]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


_BOX_FACES = np.array(
    [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
    ]
)  # fmt: skip


def _box_vertices(sides: np.ndarray) -> np.ndarray:
    corners = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)
    return 0.5 * corners * sides


def _sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    return _ellipsoid(n, 1.0 + rng.uniform(-0.05, 0.05, size=3), rng)


def _prolate(n: int, rng: np.random.Generator) -> np.ndarray:
    axes = np.array([1.0, 1.0, rng.uniform(1.8, 2.4)]) * (1 + rng.uniform(-0.05, 0.05, size=3))
    return _ellipsoid(n, axes, rng)


def _oblate(n: int, rng: np.random.Generator) -> np.ndarray:
    axes = np.array([1.0, 1.0, rng.uniform(0.35, 0.5)]) * (1 + rng.uniform(-0.05, 0.05, size=3))
    return _ellipsoid(n, axes, rng)


def _triaxial(n: int, rng: np.random.Generator) -> np.ndarray:
    return _ellipsoid(n, np.array([1.0, rng.uniform(1.5, 1.8), rng.uniform(2.4, 2.8)]), rng)


def _torus(n: int, rng: np.random.Generator) -> np.ndarray:
    big, small = 1.0, rng.uniform(0.25, 0.4)

    def propose(m: int) -> tuple[np.ndarray, np.ndarray]:
        u, v = rng.uniform(0.0, 2 * math.pi, size=(2, m))
        ring = big + small * np.cos(v)
        pts = np.stack([ring * np.cos(u), ring * np.sin(u), small * np.sin(v)], axis=1)
        return pts, ring  # area element ∝ R + r cos v

    return _rejection(propose, big + small, n, rng)


def _cylinder(n: int, rng: np.random.Generator) -> np.ndarray:
    radius, height = 1.0, rng.uniform(1.6, 2.4)
    k_side, k_top, k_bottom = _split_by_area(
        n, [2 * math.pi * radius * height, math.pi * radius**2, math.pi * radius**2], rng
    )
    return np.concatenate(
        [
            _tube(k_side, radius, -height / 2, height / 2, rng),
            _disk(k_top, radius, height / 2, rng),
            _disk(k_bottom, radius, -height / 2, rng),
        ]
    )


def _cone(n: int, rng: np.random.Generator) -> np.ndarray:
    radius, height = 1.0, rng.uniform(1.5, 2.2)
    slant = math.hypot(radius, height)
    k_side, k_base = _split_by_area(n, [math.pi * radius * slant, math.pi * radius**2], rng)
    # Lateral surface: the distance s from the apex has density ∝ s, so s = L·sqrt(U).
    frac = np.sqrt(rng.uniform(size=k_side))
    phi = rng.uniform(0.0, 2 * math.pi, size=k_side)
    side = np.stack(
        [frac * radius * np.cos(phi), frac * radius * np.sin(phi), height * (1.0 - frac)], axis=1
    )
    return np.concatenate([side, _disk(k_base, radius, 0.0, rng)])


def _capsule(n: int, rng: np.random.Generator) -> np.ndarray:
    radius, length = 1.0, rng.uniform(1.5, 2.5)
    k_side, k_caps = _split_by_area(
        n, [2 * math.pi * radius * length, 4 * math.pi * radius**2], rng
    )
    caps = radius * _unit_vectors(k_caps, rng)
    caps[:, 2] += np.where(caps[:, 2] >= 0, length / 2, -length / 2)
    return np.concatenate([_tube(k_side, radius, -length / 2, length / 2, rng), caps])


def _helix(n: int, rng: np.random.Generator) -> np.ndarray:
    """A thin tube around a helix of radius 1 (area-uniform via the tube's area element)."""
    rise = rng.uniform(0.5, 0.8) / (2 * math.pi)  # height gained per radian
    turns = rng.uniform(2.5, 3.5)
    tube = rng.uniform(0.08, 0.12)
    speed = math.sqrt(1.0 + rise**2)
    curvature = 1.0 / speed**2

    def propose(m: int) -> tuple[np.ndarray, np.ndarray]:
        t = rng.uniform(0.0, 2 * math.pi * turns, size=m)
        phi = rng.uniform(0.0, 2 * math.pi, size=m)
        centre = np.stack([np.cos(t), np.sin(t), rise * t], axis=1)
        tangent = np.stack([-np.sin(t), np.cos(t), np.full(m, rise)], axis=1) / speed
        normal = np.stack([-np.cos(t), -np.sin(t), np.zeros(m)], axis=1)
        binormal = np.cross(tangent, normal)
        offset = np.cos(phi)[:, None] * normal + np.sin(phi)[:, None] * binormal
        # Tube area element ∝ 1 − κ ρ cos φ (the inside of the bend is shorter).
        return centre + tube * offset, 1.0 - curvature * tube * np.cos(phi)

    return _rejection(propose, 1.0 + curvature * tube, n, rng)


def _cube(n: int, rng: np.random.Generator) -> np.ndarray:
    sides = 1.0 + rng.uniform(-0.05, 0.05, size=3)
    return _mesh(n, _box_vertices(sides), _BOX_FACES, rng)


def _cuboid(n: int, rng: np.random.Generator) -> np.ndarray:
    sides = np.array([1.0, rng.uniform(0.45, 0.6), rng.uniform(0.15, 0.25)])
    return _mesh(n, _box_vertices(sides), _BOX_FACES, rng)


def _pyramid(n: int, rng: np.random.Generator) -> np.ndarray:
    height = rng.uniform(1.2, 1.8)
    vertices = np.array(
        [[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [0, 0, height]], dtype=np.float64
    )
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    return _mesh(n, vertices, faces, rng)


def _prism(n: int, rng: np.random.Generator) -> np.ndarray:
    height = rng.uniform(1.5, 2.5)
    angle = 2 * math.pi * np.arange(3) / 3
    ring = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    vertices = np.concatenate(
        [np.c_[ring, np.full(3, -height / 2)], np.c_[ring, np.full(3, height / 2)]]
    )
    faces = np.array(
        [[0, 1, 2], [3, 4, 5], [0, 1, 4], [0, 4, 3], [1, 2, 5], [1, 5, 4], [2, 0, 3], [2, 3, 5]]
    )
    return _mesh(n, vertices, faces, rng)


def _tetrahedron(n: int, rng: np.random.Generator) -> np.ndarray:
    vertices = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64)
    vertices = vertices / math.sqrt(3) + rng.normal(0.0, 0.05, size=(4, 3))
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    return _mesh(n, vertices, faces, rng)


def _octahedron(n: int, rng: np.random.Generator) -> np.ndarray:
    vertices = np.concatenate([np.eye(3), -np.eye(3)]) + rng.normal(0.0, 0.05, size=(6, 3))
    # Vertices 0,1,2 = +x,+y,+z and 3,4,5 = -x,-y,-z; each face takes one of ±x, ±y, ±z.
    faces = np.array([[i, j, k] for i in (0, 3) for j in (1, 4) for k in (2, 5)])
    return _mesh(n, vertices, faces, rng)


_SAMPLERS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "sphere": _sphere,
    "ellipsoid_prolate": _prolate,
    "ellipsoid_oblate": _oblate,
    "ellipsoid_triaxial": _triaxial,
    "torus": _torus,
    "cylinder": _cylinder,
    "cone": _cone,
    "capsule": _capsule,
    "helix": _helix,
    "cube": _cube,
    "cuboid": _cuboid,
    "pyramid": _pyramid,
    "prism": _prism,
    "tetrahedron": _tetrahedron,
    "octahedron": _octahedron,
}

#: Names of all shape classes, in label order of the default configuration.
SHAPE_CLASSES: tuple[str, ...] = tuple(_SAMPLERS)


def sample_shape(
    name: str, num_points: int, rng: np.random.Generator, noise_std: float = 0.0
) -> np.ndarray:
    """One canonical (upright, unrotated) cloud of class ``name``, shape ``(num_points, 3)``.

    Shape parameters are drawn from the class's jitter range, points are area-uniform on the
    surface, the cloud is centred at its centroid and scaled to maximum radius 1, and then
    Gaussian noise of standard deviation ``noise_std`` is added to every coordinate.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown shape class {name!r}; expected one of {SHAPE_CLASSES}")
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)):
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    if num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points}")
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    points = _SAMPLERS[name](int(num_points), rng)
    # Mixed-part samplers concatenate parts in order; shuffle so the order carries no class cue.
    points = points[rng.permutation(len(points))]
    points = points - points.mean(axis=0)
    points = points / np.linalg.norm(points, axis=1).max()
    if noise_std > 0:
        points = points + rng.normal(0.0, noise_std, size=points.shape)
    return points


# --------------------------------------------------------------------------------------------
# Data set, configuration and cache
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where generated data sets are cached: ``$EQUIRELAX_CACHE`` or ``~/.cache/equirelax``."""
    env = os.environ.get("EQUIRELAX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "equirelax"


@dataclass(frozen=True)
class ShapeConfig:
    """Every parameter that determines a generated shape data set (and hence its cache key).

    Sizes count clouds per split; labels are balanced over ``classes`` within each split. The
    validation split is rotated like the training split (its role is model selection under the
    training distribution); the test split uses the protocol's test rotations.
    """

    num_points: int = 300
    train_size: int = 3000
    val_size: int = 600
    test_size: int = 1500
    protocol: str = "so3/so3"
    noise_std: float = 0.01
    seed: int = 0
    classes: tuple[str, ...] = field(default=SHAPE_CLASSES)

    def __post_init__(self) -> None:
        if isinstance(self.num_points, bool) or not isinstance(self.num_points, int):
            raise ValueError(f"num_points must be an integer >= 2, got {self.num_points!r}")
        if self.num_points < 2:
            raise ValueError(f"num_points must be an integer >= 2, got {self.num_points}")
        for name in ("train_size", "val_size", "test_size", "seed"):
            _check_count(getattr(self, name), name)
        if not (isinstance(self.noise_std, (int, float)) and math.isfinite(self.noise_std)):
            raise ValueError(f"noise_std must be a finite number >= 0, got {self.noise_std!r}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be a finite number >= 0, got {self.noise_std}")
        train_rot, test_rot = parse_protocol(self.protocol)
        object.__setattr__(self, "protocol", f"{train_rot}/{test_rot}")
        classes = tuple(self.classes)
        if not classes:
            raise ValueError("classes must name at least one shape class, got an empty list")
        unknown = [c for c in classes if c not in _SAMPLERS]
        if unknown:
            raise ValueError(
                f"unknown shape classes {unknown}; expected names from {SHAPE_CLASSES}"
            )
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes must not repeat a name, got {classes}")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "noise_std", float(self.noise_std))

    def cache_key(self) -> str:
        """A hash of every generation parameter and of the generator version."""
        payload = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:20]


class PointCloudSplit(Dataset):
    """One split: ``points`` (n, N, 3) float32, ``labels`` (n,) int64, ``rotations`` (n, 3, 3).

    ``points[i] = canonical_i @ rotations[i].T``; items are ``(points[i], labels[i])``.
    """

    def __init__(self, points: np.ndarray, labels: np.ndarray, rotations: np.ndarray) -> None:
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must have shape (n, N, 3), got {points.shape}")
        if labels.shape != (len(points),) or rotations.shape != (len(points), 3, 3):
            raise ValueError(
                f"labels (n,) and rotations (n, 3, 3) must match points (n={len(points)}), "
                f"got {labels.shape} and {rotations.shape}"
            )
        self.points = torch.as_tensor(np.asarray(points, dtype=np.float32))
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.rotations = torch.as_tensor(np.asarray(rotations, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.points[index], self.labels[index]


@dataclass
class ShapeData:
    """The train/val/test splits of a generated shape data set, with its configuration."""

    config: ShapeConfig
    train: PointCloudSplit
    val: PointCloudSplit
    test: PointCloudSplit
    path: Path | None
    from_cache: bool

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.classes

    @property
    def num_classes(self) -> int:
        return len(self.config.classes)


_SPLITS = ("train", "val", "test")


def _generate_split(
    config: ShapeConfig, split: str, rotation: str, bar: tqdm
) -> dict[str, np.ndarray]:
    size = getattr(config, f"{split}_size")
    index = _SPLITS.index(split)
    # Separate streams: canonical shapes do not depend on the protocol, rotations do not
    # depend on the shapes.
    shape_rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(index, 0)))
    rot_rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(index, 1)))
    k = len(config.classes)
    labels = shape_rng.permutation(np.arange(size) % k)
    points = np.empty((size, config.num_points, 3))
    for i, label in enumerate(labels):
        points[i] = sample_shape(
            config.classes[label], config.num_points, shape_rng, config.noise_std
        )
        bar.update(1)
    rotations = rotations_of_kind(rotation, size, rot_rng)
    rotated = np.einsum("nij,npj->npi", rotations, points)
    return {
        "points": rotated.astype(np.float32),
        "labels": labels.astype(np.int64),
        "rotations": rotations.astype(np.float32),
    }


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_shapes(
    config: ShapeConfig | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
    **overrides: object,
) -> ShapeData:
    """Generate (or load from the cache) the procedural shape data set.

    Args:
        config: generation parameters; ``overrides`` (e.g. ``train_size=500``) replace fields.
        cache_dir: cache root; default ``$EQUIRELAX_CACHE`` or ``~/.cache/equirelax``. Files live
            in ``<cache_dir>/shapes/shapes-<key>.npz`` with ``key`` a hash of every parameter.
        use_cache: read and write the cache (``False``: always generate, write nothing).
        progress: show a tqdm progress bar while generating.

    Returns:
        A :class:`ShapeData` whose ``from_cache`` says whether it was read from disk.
    """
    config = config or ShapeConfig()
    config = with_overrides(config, overrides)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = root / "shapes" / f"shapes-{config.cache_key()}.npz" if use_cache else None
    params = json.dumps(asdict(config), sort_keys=True)

    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["config"]) == params:
                arrays = {k: stored[k] for k in stored.files}
                splits = {
                    s: PointCloudSplit(
                        arrays[f"{s}_points"], arrays[f"{s}_labels"], arrays[f"{s}_rotations"]
                    )
                    for s in _SPLITS
                }
                return ShapeData(config, **splits, path=path, from_cache=True)

    train_rot, test_rot = parse_protocol(config.protocol)
    rotation_of = {"train": train_rot, "val": train_rot, "test": test_rot}
    total = config.train_size + config.val_size + config.test_size
    arrays: dict[str, np.ndarray] = {"config": np.array(params)}
    with tqdm(total=total, desc="shapes: generating", unit="cloud", disable=not progress) as bar:
        for split in _SPLITS:
            for name, value in _generate_split(config, split, rotation_of[split], bar).items():
                arrays[f"{split}_{name}"] = value
    if path is not None:
        _save_atomic(path, arrays)
    splits = {
        s: PointCloudSplit(arrays[f"{s}_points"], arrays[f"{s}_labels"], arrays[f"{s}_rotations"])
        for s in _SPLITS
    }
    return ShapeData(config, **splits, path=path, from_cache=False)
