"""Tests of the procedural 3D shape generator: geometry, sampling, rotations, protocols, cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from equirelax.data import shapes
from equirelax.data.shapes import (
    SHAPE_CLASSES,
    ShapeConfig,
    load_shapes,
    parse_protocol,
    random_z_rotations,
    rotations_of_kind,
    sample_shape,
)
from equirelax.groups.haar import haar_rotations

SMALL = {"num_points": 64, "train_size": 30, "val_size": 15, "test_size": 30}


# ---------------------------------------------------------------- geometry of single shapes


def test_at_least_twelve_classes() -> None:
    assert len(SHAPE_CLASSES) >= 12
    assert len(set(SHAPE_CLASSES)) == len(SHAPE_CLASSES)


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_sample_is_centred_and_unit_radius(name: str) -> None:
    points = sample_shape(name, 300, np.random.default_rng(0))
    assert points.shape == (300, 3)
    assert np.isfinite(points).all()
    np.testing.assert_allclose(points.mean(axis=0), 0.0, atol=1e-12)
    assert np.linalg.norm(points, axis=1).max() == pytest.approx(1.0, abs=1e-12)
    # Points are spread over a surface, not collapsed.
    assert np.linalg.norm(points, axis=1).min() < 0.95
    assert len(np.unique(points.round(9), axis=0)) == 300


def _shape_descriptor(points: np.ndarray) -> np.ndarray:
    """Normalised covariance spectrum and mean radius: stable under resampling, not under jitter."""
    eig = np.sort(np.linalg.eigvalsh(np.cov(points.T)))
    return np.r_[eig / eig.sum(), np.linalg.norm(points, axis=1).mean()]


def _descriptor_spread(draw) -> float:
    rng = np.random.default_rng(1)
    descriptors = np.array([_shape_descriptor(draw(rng)) for _ in range(6)])
    return float(np.ptp(descriptors, axis=0).max())


def test_descriptor_spread_of_fixed_shapes_is_small() -> None:
    """Control for the jitter test: without parameter jitter, resampling barely moves it."""
    assert _descriptor_spread(lambda rng: shapes._ellipsoid(20000, np.ones(3), rng)) < 0.01
    cube = shapes._box_vertices(np.ones(3))
    assert _descriptor_spread(lambda rng: shapes._mesh(20000, cube, shapes._BOX_FACES, rng)) < 0.01


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_shape_parameters_are_jittered(name: str) -> None:
    assert _descriptor_spread(lambda rng: sample_shape(name, 20000, rng)) > 0.012


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_surface_noise_has_the_requested_scale(name: str) -> None:
    clean = sample_shape(name, 300, np.random.default_rng(2))
    noisy = sample_shape(name, 300, np.random.default_rng(2), noise_std=0.05)
    assert (noisy - clean).std() == pytest.approx(0.05, rel=0.15)


def test_ellipsoid_points_lie_on_the_surface() -> None:
    axes = np.array([1.0, 1.7, 0.4])
    points = shapes._ellipsoid(500, axes, np.random.default_rng(0))
    np.testing.assert_allclose(((points / axes) ** 2).sum(axis=1), 1.0, atol=1e-12)


def test_torus_points_lie_on_a_torus_and_are_area_uniform() -> None:
    points = shapes._torus(40000, np.random.default_rng(0))
    rho = np.hypot(points[:, 0], points[:, 1])
    tube_sq = (rho - 1.0) ** 2 + points[:, 2] ** 2
    assert tube_sq.std() < 1e-12
    r = math.sqrt(tube_sq.mean())
    assert 0.25 <= r <= 0.4
    # Area fraction of the outer half (cos v > 0) is (πR + 2r) / (2πR) with R = 1.
    expected = (math.pi + 2 * r) / (2 * math.pi)
    observed = (rho > 1.0).mean()
    assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / len(points))


def test_cone_lateral_surface_is_area_uniform() -> None:
    points = shapes._cone(40000, np.random.default_rng(0))
    lateral = points[points[:, 2] > 1e-12]
    height = lateral[:, 2].max()
    # The half nearer the apex holds a quarter of the lateral area.
    observed = (lateral[:, 2] > height / 2).mean()
    assert abs(observed - 0.25) < 4 * math.sqrt(0.25 * 0.75 / len(lateral))


def test_mesh_sampler_weights_faces_by_area() -> None:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 0, 0], [0, 3, 0]], float)
    faces = np.array([[0, 1, 2], [0, 3, 4]])  # areas 0.5 and 4.5, the first inside the second
    points = shapes._mesh(20000, vertices, faces, np.random.default_rng(0))
    assert (points[:, :2] >= -1e-12).all() and (points[:, :2].sum(axis=1) <= 3 + 1e-12).all()
    inner = (points[:, :2].sum(axis=1) <= 1).mean()
    # Face 0 gets 0.5/5 of the points, all with x + y <= 1; face 1 gets 4.5/5, of which the
    # fraction 0.5/4.5 falls in the inner triangle.
    expected = 0.5 / 5.0 + 4.5 / 5.0 * (0.5 / 4.5)
    assert abs(inner - expected) < 4 * math.sqrt(expected * (1 - expected) / len(points))


def test_box_points_lie_on_faces() -> None:
    points = shapes._cube(1000, np.random.default_rng(0))
    half = np.abs(points).max(axis=0)
    on_face = np.isclose(np.abs(points), half, atol=1e-12).any(axis=1)
    assert on_face.all()


# ---------------------------------------------------------------- rotations


def _assert_rotations(rot: np.ndarray, atol: float = 1e-12) -> None:
    eye = np.broadcast_to(np.eye(3), rot.shape)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), eye, atol=atol)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=atol)


def test_random_z_rotations_fix_the_z_axis() -> None:
    rot = random_z_rotations(1000, np.random.default_rng(0))
    _assert_rotations(rot)
    np.testing.assert_allclose(rot[:, :, 2], np.tile([0.0, 0.0, 1.0], (1000, 1)), atol=0)
    angle = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
    assert angle.min() < -3.0 and angle.max() > 3.0


def test_rotation_kinds() -> None:
    rng = np.random.default_rng(0)
    assert np.array_equal(rotations_of_kind("none", 2, rng), np.stack([np.eye(3)] * 2))
    np.testing.assert_array_equal(rotations_of_kind("so3", 4, np.random.default_rng(1)),
                                  haar_rotations(4, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="rotation kind must be one of"):
        rotations_of_kind("so2", 1, rng)
    with pytest.raises(ValueError, match="non-negative integer"):
        random_z_rotations(-1, rng)


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [("so3/so3", ("so3", "so3")), ("z/SO(3)", ("z", "so3")), ("none/z", ("none", "z"))],
)
def test_parse_protocol(protocol: str, expected: tuple[str, str]) -> None:
    assert parse_protocol(protocol) == expected


@pytest.mark.parametrize("protocol", ["so3", "x/so3", "so3/so3/so3", 3])
def test_parse_protocol_rejects_bad_input(protocol: object) -> None:
    with pytest.raises(ValueError, match="protocol"):
        parse_protocol(protocol)  # type: ignore[arg-type]


# ---------------------------------------------------------------- data set and cache


def test_load_shapes_shapes_dtypes_and_balance(tmp_path) -> None:
    data = load_shapes(cache_dir=tmp_path, progress=False, **SMALL)
    assert not data.from_cache
    assert data.num_classes == len(SHAPE_CLASSES) and data.class_names == SHAPE_CLASSES
    for split, size in (("train", 30), ("val", 15), ("test", 30)):
        part = getattr(data, split)
        assert len(part) == size
        assert part.points.shape == (size, 64, 3) and part.points.dtype == torch.float32
        assert part.labels.dtype == torch.int64 and part.rotations.shape == (size, 3, 3)
        counts = np.bincount(part.labels.numpy(), minlength=data.num_classes)
        assert counts.max() - counts.min() <= 1
        x, y = part[3]
        assert x.shape == (64, 3) and y.ndim == 0


def test_points_are_canonical_shapes_rotated(tmp_path) -> None:
    data = load_shapes(cache_dir=tmp_path, progress=False, noise_std=0.0, **SMALL)
    for part in (data.train, data.test):
        canonical = torch.einsum("npi,nij->npj", part.points.double(), part.rotations.double())
        np.testing.assert_allclose(canonical.norm(dim=-1).amax(dim=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(canonical.mean(dim=1), 0.0, atol=1e-5)
        # The rotation is generic: the rotated cloud differs from the canonical one.
        assert (canonical - part.points.double()).abs().max() > 0.1


def test_protocols_share_canonical_shapes_and_test_set(tmp_path) -> None:
    so3 = load_shapes(cache_dir=tmp_path, progress=False, protocol="so3/so3", **SMALL)
    z = load_shapes(cache_dir=tmp_path, progress=False, protocol="z/so3", **SMALL)
    # z/SO(3): training rotations fix the z axis; tests are rotated by SO(3).
    np.testing.assert_allclose(z.train.rotations[:, 2, 2], 1.0, atol=1e-6)
    np.testing.assert_allclose(z.val.rotations[:, 2, 2], 1.0, atol=1e-6)
    assert (so3.train.rotations[:, 2, 2] - 1).abs().max() > 0.1
    torch.testing.assert_close(z.test.points, so3.test.points)
    torch.testing.assert_close(z.train.labels, so3.train.labels)

    def canonical(part: shapes.PointCloudSplit) -> torch.Tensor:
        return torch.einsum("npi,nij->npj", part.points.double(), part.rotations.double())

    torch.testing.assert_close(canonical(z.train), canonical(so3.train), atol=1e-5, rtol=0)


def test_generation_is_deterministic_by_seed() -> None:
    a = load_shapes(use_cache=False, progress=False, seed=3, **SMALL)
    b = load_shapes(use_cache=False, progress=False, seed=3, **SMALL)
    c = load_shapes(use_cache=False, progress=False, seed=4, **SMALL)
    assert a.path is None and not a.from_cache
    for split in ("train", "val", "test"):
        torch.testing.assert_close(getattr(a, split).points, getattr(b, split).points)
        torch.testing.assert_close(getattr(a, split).labels, getattr(b, split).labels)
    assert not torch.equal(a.train.points, c.train.points)
    # Splits use different streams: the test set does not depend on the training size.
    d = load_shapes(use_cache=False, progress=False, seed=3, **{**SMALL, "train_size": 7})
    torch.testing.assert_close(a.test.points, d.test.points)


def test_cache_hit_returns_the_stored_data(tmp_path) -> None:
    first = load_shapes(cache_dir=tmp_path, progress=False, **SMALL)
    assert first.path is not None and first.path.exists() and not first.from_cache
    assert first.path.parent == tmp_path / "shapes"
    second = load_shapes(cache_dir=tmp_path, progress=False, **SMALL)
    assert second.from_cache and second.path == first.path
    torch.testing.assert_close(second.train.points, first.train.points)
    torch.testing.assert_close(second.test.rotations, first.test.rotations)
    assert list(tmp_path.glob("shapes/*.tmp*")) == []


@pytest.mark.parametrize(
    "change",
    [
        {"num_points": 65},
        {"train_size": 31},
        {"val_size": 14},
        {"test_size": 29},
        {"protocol": "z/so3"},
        {"noise_std": 0.02},
        {"seed": 1},
        {"classes": ("sphere", "torus")},
    ],
)
def test_cache_is_keyed_by_every_parameter(tmp_path, change: dict) -> None:
    base = load_shapes(cache_dir=tmp_path, progress=False, **SMALL)
    other = load_shapes(cache_dir=tmp_path, progress=False, **{**SMALL, **change})
    assert not other.from_cache and other.path != base.path
    assert load_shapes(cache_dir=tmp_path, progress=False, **SMALL).from_cache


def test_cache_dir_from_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EQUIRELAX_CACHE", str(tmp_path / "env"))
    assert shapes.default_cache_dir() == tmp_path / "env"
    data = load_shapes(progress=False, **SMALL)
    assert data.path is not None and data.path.is_relative_to(tmp_path / "env")
    monkeypatch.delenv("EQUIRELAX_CACHE")
    assert shapes.default_cache_dir() == shapes.Path.home() / ".cache" / "equirelax"


def test_protocol_aliases_share_a_cache_entry() -> None:
    assert (
        ShapeConfig(protocol="SO(3)/SO(3)").cache_key()
        == ShapeConfig(protocol="so3/so3").cache_key()
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_points": 1}, "num_points"),
        ({"num_points": 3.0}, "num_points"),
        ({"train_size": -1}, "train_size"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"noise_std": float("nan")}, "noise_std"),
        ({"protocol": "so3"}, "protocol"),
        ({"classes": ("sphere", "blob")}, "blob"),
        ({"classes": ()}, "at least one"),
        ({"classes": ("cube", "cube")}, "repeat"),
    ],
)
def test_bad_config_fails_early(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ShapeConfig(**kwargs)


def test_bad_arguments_fail_early() -> None:
    with pytest.raises(ValueError, match="unknown ShapeConfig fields"):
        load_shapes(use_cache=False, progress=False, num_pts=10)
    with pytest.raises(ValueError, match="unknown shape class"):
        sample_shape("blob", 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="noise_std"):
        sample_shape("cube", 10, np.random.default_rng(0), noise_std=-1.0)


def test_classes_are_distinguishable_by_invariant_features() -> None:
    """Rotation-invariant radial/distance histograms separate the classes well (SO(3)/SO(3))."""
    data = load_shapes(
        use_cache=False, progress=False, num_points=200, train_size=450, val_size=0,
        test_size=300, protocol="so3/so3",
    )  # fmt: skip

    def features(points: torch.Tensor) -> np.ndarray:
        p = points.double()
        radius = (p - p.mean(dim=1, keepdim=True)).norm(dim=-1)
        dist = torch.cdist(p[:, :60], p[:, :60]).flatten(1)
        bins = [
            np.stack([np.histogram(row, bins=12, range=rng, density=True)[0] for row in x])
            for x, rng in ((radius.numpy(), (0, 1.1)), (dist.numpy(), (0, 2.1)))
        ]
        return np.concatenate(bins, axis=1)

    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(features(data.train.points), data.train.labels.numpy())
    accuracy = clf.score(features(data.test.points), data.test.labels.numpy())
    chance = 1.0 / data.num_classes
    assert accuracy > 0.75 > 10 * chance
