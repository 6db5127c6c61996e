"""Tests of the charged-particle N-body generator and dataset (equirelax.data.nbody)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equirelax.data import nbody
from equirelax.data.nbody import (
    ChargedParticlesConfig,
    NBodyDataset,
    clamp_to_box,
    draw_initial_conditions,
    generate_split,
    integrate,
    load_split,
    nbody_datasets,
)
from tests.helpers.nbody_reference import simulate_reference_loop

# A short protocol so that the tests stay fast; physics and bookkeeping are the same.
# 49 frames as in the default protocol, 20 integrator steps apart instead of 100.
SMALL = ChargedParticlesConfig(n_steps=1000, sample_every=20, stream_sizes=(12, 5, 4))


def random_orthogonal(seed: int, reflect: bool) -> np.ndarray:
    """A Haar-random rotation (times -1 when ``reflect``) from a QR decomposition."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return -q if reflect else q


def hand_integration(x, v, q, dt, n_steps, sample_every, max_force):
    """Two-particle leapfrog of the protocol with Python floats, coordinate by coordinate."""
    x = [list(p) for p in x]
    v = [list(p) for p in v]

    def forces():
        d = [x[0][k] - x[1][k] for k in range(3)]
        r = math.sqrt(sum(c * c for c in d))
        f0 = [q[0] * q[1] * c / r**3 for c in d]
        f = [f0, [-c for c in f0]]
        return [[min(max(c, -max_force), max_force) for c in p] for p in f]

    f = forces()
    v = [[v[a][k] + dt * f[a][k] for k in range(3)] for a in range(2)]
    saved_x, saved_v = [], []
    for i in range(1, n_steps):
        x = [[x[a][k] + dt * v[a][k] for k in range(3)] for a in range(2)]
        if i % sample_every == 0:
            saved_x.append([p[:] for p in x])
            saved_v.append([p[:] for p in v])
        f = forces()
        v = [[v[a][k] + dt * f[a][k] for k in range(3)] for a in range(2)]
    return np.array(saved_x), np.array(saved_v)


@pytest.mark.parametrize(
    ("charges", "separation"),
    [((1.0, -1.0), 1.0), ((1.0, 1.0), 0.7), ((-1.0, 1.0), 0.08)],  # the last one clips
)
def test_two_particles_match_hand_integration(charges, separation):
    config = ChargedParticlesConfig(n_particles=2, n_steps=200, sample_every=10)
    x0 = np.array([[0.1, -0.2, 0.3], [0.1 + separation, -0.2, 0.35]])
    v0 = np.array([[0.0, 0.3, -0.1], [0.2, -0.1, 0.0]])
    expected_x, expected_v = hand_integration(
        x0, v0, charges, config.dt, config.n_steps, config.sample_every, 0.1 / config.dt
    )
    traj = integrate(x0[None], v0[None], np.array([charges]), config)
    assert traj.loc.shape == (1, config.n_frames, 2, 3) == (1, 19, 2, 3)
    np.testing.assert_allclose(traj.loc[0], expected_x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(traj.vel[0], expected_v, rtol=0, atol=1e-12)
    # only the close opposite-charge pair exceeds max_force = 100 (|F| = 1/r^2 > 100)
    assert (traj.clipped_steps[0] > 0) == (separation < 0.1)


def test_vectorised_matches_literal_per_simulation_loop():
    config = ChargedParticlesConfig(n_steps=1000, sample_every=100, stream_sizes=(3, 3, 3))
    expected = simulate_reference_loop(config, 3, skip=3)  # the "val" part of the stream
    got = generate_split(config, "val", progress=False)
    np.testing.assert_array_equal(got.charges, expected.charges)
    np.testing.assert_allclose(got.loc, expected.loc, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got.vel, expected.vel, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(got.clipped_steps, expected.clipped_steps)


def test_initial_conditions_follow_the_protocol():
    config = ChargedParticlesConfig(stream_sizes=(50, 0, 0))
    init = draw_initial_conditions(config, 50)
    assert set(np.unique(init.charges)) <= {-1.0, 1.0}
    np.testing.assert_allclose(np.linalg.norm(init.vel, axis=-1), 0.5, rtol=1e-12)
    assert init.noise_loc is None and init.noise_vel is None
    # the first draws of the stream are the charges, then positions (3, n) * loc_std
    rng = np.random.RandomState(43)
    charges = rng.choice(np.array([-1.0, 0.0, 1.0]), size=(5, 1), p=[0.5, 0.0, 0.5])[:, 0]
    loc = rng.randn(3, 5)
    np.testing.assert_array_equal(init.charges[0], charges)
    np.testing.assert_array_equal(init.loc[0], loc.T)


def test_observation_noise_is_added_and_drawn_from_the_stream():
    noisy = ChargedParticlesConfig(
        n_steps=100, sample_every=10, stream_sizes=(2, 0, 0), observation_noise=0.01
    )
    clean = ChargedParticlesConfig(n_steps=100, sample_every=10, stream_sizes=(2, 0, 0))
    a = generate_split(noisy, "train", progress=False)
    b = generate_split(clean, "train", progress=False)
    diff = a.loc - b.loc
    assert 0.001 < diff.std() < 0.1
    ref = simulate_reference_loop(noisy, 2)
    np.testing.assert_allclose(a.loc, ref.loc, rtol=0, atol=1e-10)


def test_momentum_and_angular_momentum_are_conserved_without_clipping():
    config = ChargedParticlesConfig(n_steps=2000, sample_every=100, stream_sizes=(40, 0, 0))
    init = draw_initial_conditions(config, 40)
    traj = integrate(init.loc, init.vel, init.charges, config)
    free = traj.clipped_steps == 0
    assert free.sum() >= 10
    momentum = traj.vel[free].sum(axis=2)  # (S, frames, 3): unit masses
    angular = np.cross(traj.loc[free], traj.vel[free]).sum(axis=2)
    # the symplectic-Euler pair (x_i, v_i) keeps both exactly (up to rounding)
    np.testing.assert_allclose(momentum - momentum[:, :1], 0.0, rtol=0, atol=1e-11)
    np.testing.assert_allclose(angular - angular[:, :1], 0.0, rtol=0, atol=1e-10)
    initial_angular = np.cross(init.loc[free], init.vel[free]).sum(axis=1)
    np.testing.assert_allclose(angular[:, 0], initial_angular, rtol=0, atol=1e-10)
    # a clipped simulation in general loses momentum conservation: clipping is one-sided
    clipped = ~free
    if clipped.any():
        drift = np.abs(traj.vel[clipped].sum(axis=2) - traj.vel[clipped][:, :1].sum(axis=2))
        assert drift.max() > 1e-6


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), reflect=st.booleans())
def test_rotating_the_initial_state_rotates_the_trajectory(seed, reflect):
    config = ChargedParticlesConfig(n_steps=1000, sample_every=50, stream_sizes=(16, 0, 0))
    init = draw_initial_conditions(config, 16, rng=np.random.RandomState(seed % 1000))
    rotation = random_orthogonal(seed, reflect)
    shift = np.random.default_rng(seed).normal(size=3) * 3.0
    base = integrate(init.loc, init.vel, init.charges, config)
    moved = integrate(init.loc @ rotation.T + shift, init.vel @ rotation.T, init.charges, config)
    free = (base.clipped_steps == 0) & (moved.clipped_steps == 0)
    assert free.sum() >= 4
    np.testing.assert_allclose(
        moved.loc[free], base.loc[free] @ rotation.T + shift, rtol=0, atol=1e-8
    )
    np.testing.assert_allclose(moved.vel[free], base.vel[free] @ rotation.T, rtol=0, atol=1e-8)


def test_translation_covariance_holds_even_with_clipping():
    config = ChargedParticlesConfig(n_steps=1000, sample_every=50, stream_sizes=(16, 0, 0))
    init = draw_initial_conditions(config, 16)
    shift = np.array([0.5, -0.25, 0.125])  # exact in binary: differences are unchanged
    base = integrate(init.loc, init.vel, init.charges, config)
    moved = integrate(init.loc + shift, init.vel, init.charges, config)
    # x + shift rounds, and a long clipped encounter amplifies rounding chaotically: in one of
    # these simulations 1e-15 grows to ~1e-9 by the last frame, by how much depends on the CPU
    # kernels (ATEN_CPU_CAPABILITY=default: 1.1e-9). A real failure shows at the shift's scale.
    np.testing.assert_allclose(moved.loc, base.loc + shift, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(moved.clipped_steps, base.clipped_steps)


def test_clamp_reflects_into_the_box_and_points_velocity_inwards():
    loc = np.array([[6.0, -7.0, 1.0]])
    vel = np.array([[0.3, -0.2, 0.1]])
    new_loc, new_vel = clamp_to_box(loc, vel, 5.0)
    np.testing.assert_array_equal(new_loc, [[4.0, -3.0, 1.0]])
    np.testing.assert_array_equal(new_vel, [[-0.3, 0.2, 0.1]])
    np.testing.assert_array_equal(loc, [[6.0, -7.0, 1.0]])  # input untouched
    with pytest.raises(ValueError, match="3\\*box_size"):
        clamp_to_box(np.array([[15.5, 0.0, 0.0]]), np.zeros((1, 3)), 5.0)


def test_generate_split_shapes_and_default_frames():
    traj = generate_split(SMALL, "test", progress=False)
    assert traj.loc.shape == traj.vel.shape == (4, 49, 5, 3)
    assert traj.charges.shape == (4, 5) and traj.clipped_steps.shape == (4,)
    assert ChargedParticlesConfig().n_frames == 49


def test_determinism_by_seed_and_prefix_independence():
    a = generate_split(SMALL, "train", 6, progress=False)
    b = generate_split(SMALL, "train", 6, progress=False)
    np.testing.assert_array_equal(a.loc, b.loc)
    longer = generate_split(SMALL, "train", 12, progress=False)
    np.testing.assert_array_equal(longer.loc[:6], a.loc)
    other = generate_split(
        ChargedParticlesConfig(n_steps=1000, sample_every=20, stream_sizes=(12, 5, 4), seed=7),
        "train",
        6,
        progress=False,
    )
    assert not np.allclose(other.loc, a.loc)
    # the val split is the stream after all 12 training simulations, whether or not generated
    val = generate_split(SMALL, "val", 2, progress=False)
    direct = simulate_reference_loop(SMALL, 2, skip=12)
    np.testing.assert_allclose(val.loc, direct.loc, rtol=0, atol=1e-9)


def test_cache_hit_miss_keyed_by_parameters(tmp_path, monkeypatch):
    calls = []
    real = nbody.generate_split

    def counting(config, split, count=None, **kwargs):
        calls.append((config, split, count))
        return real(config, split, count, **kwargs)

    monkeypatch.setattr(nbody, "generate_split", counting)
    first = load_split(SMALL, "train", 8, cache_dir=tmp_path, progress=False)
    assert len(calls) == 1
    again = load_split(SMALL, "train", 8, cache_dir=tmp_path, progress=False)
    assert len(calls) == 1  # hit
    np.testing.assert_array_equal(first.loc, again.loc)
    smaller = load_split(SMALL, "train", 5, cache_dir=tmp_path, progress=False)
    assert len(calls) == 1  # served from the file holding 8 simulations
    np.testing.assert_array_equal(smaller.loc, first.loc[:5])
    load_split(SMALL, "val", 5, cache_dir=tmp_path, progress=False)
    assert len(calls) == 2  # other split: miss
    changed = ChargedParticlesConfig(
        n_steps=1000, sample_every=20, stream_sizes=(12, 5, 4), vel_norm=0.4
    )
    assert changed.cache_key() != SMALL.cache_key()
    load_split(changed, "train", 8, cache_dir=tmp_path, progress=False)
    assert len(calls) == 3  # any changed parameter: miss
    for field, value in [("dt", 0.002), ("seed", 1), ("max_force", 50.0), ("box_size", 4.0)]:
        params = {"n_steps": 1000, "sample_every": 20, "stream_sizes": (12, 5, 4), field: value}
        assert ChargedParticlesConfig(**params).cache_key() != SMALL.cache_key()
    files = sorted(p.name for p in (tmp_path / "nbody").iterdir())
    assert len(files) == 3 and all(name.endswith(".npz") for name in files)


def test_cache_location_env_var_and_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUIRELAX_CACHE", str(tmp_path / "env"))
    assert nbody.default_cache_dir() == tmp_path / "env"
    assert nbody.cache_path(SMALL, "train", 3).is_relative_to(tmp_path / "env")
    load_split(SMALL, "train", 3, progress=False)
    assert list((tmp_path / "env" / "nbody").glob("*.npz"))
    load_split(SMALL, "train", 3, cache_dir=tmp_path / "arg", progress=False)
    assert list((tmp_path / "arg" / "nbody").glob("*.npz"))
    monkeypatch.delenv("EQUIRELAX_CACHE")
    assert nbody.default_cache_dir() == nbody.Path.home() / ".cache" / "equirelax"


def test_dataset_items_batches_and_frames(tmp_path):
    data = NBodyDataset(
        "train", 10, config=SMALL, input_frame=3, target_frame=8, cache_dir=tmp_path,
        progress=False,
    )
    traj = load_split(SMALL, "train", 10, cache_dir=tmp_path, progress=False)
    assert len(data) == 10
    sample = data[2]
    assert sample.loc.shape == sample.vel.shape == sample.target.shape == (5, 3)
    assert sample.charges.shape == (5,) and sample.edges.shape == (5, 5)
    assert sample.loc.dtype == torch.float32
    np.testing.assert_allclose(sample.loc.numpy(), traj.loc[2, 3], rtol=1e-6)
    np.testing.assert_allclose(sample.target.numpy(), traj.loc[2, 8], rtol=1e-6)
    torch.testing.assert_close(sample.edges, torch.outer(sample.charges, sample.charges))
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert isinstance(batch, nbody.NBodySample)
    assert batch.loc.shape == (4, 5, 3) and batch.edges.shape == (4, 5, 5)
    whole = data.tensors()
    assert whole.target.shape == (10, 5, 3)


def test_default_dataset_protocol_frames_and_sizes(tmp_path):
    datasets = nbody_datasets(
        5, 4, 3, config=SMALL, cache_dir=tmp_path, dtype=torch.float64, progress=False
    )
    assert {k: len(v) for k, v in datasets.items()} == {"train": 5, "val": 4, "test": 3}
    assert datasets["val"].loc.dtype == torch.float64
    default = ChargedParticlesConfig()
    assert (default.n_particles, default.dt, default.n_steps, default.sample_every) == (
        5, 0.001, 5000, 100
    )
    assert default.effective_max_force == pytest.approx(100.0)
    assert default.stream_offset("val") == 10_000 and default.stream_offset("test") == 12_000
    assert nbody.DEFAULT_SPLIT_SIZES == {"train": 3000, "val": 2000, "test": 2000}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_steps": 1010, "sample_every": 100}, "multiple of sample_every"),
        ({"dt": 0.0}, "dt must be > 0"),
        ({"n_particles": 1}, "n_particles"),
        ({"charge_probs": (0.5, 0.5, 0.5)}, "sum to 1"),
        ({"charge_values": (1.0,)}, "equal length"),
        ({"stream_sizes": (1, 2)}, "stream_sizes"),
        ({"max_force": -1.0}, "max_force"),
    ],
)
def test_bad_config_fails_early(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ChargedParticlesConfig(**kwargs)


def test_bad_requests_fail_early(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        generate_split(SMALL, "validation", 1)
    with pytest.raises(ValueError, match="stream size 5"):
        generate_split(SMALL, "val", 6)
    with pytest.raises(ValueError, match=r"target_frame must be in \[0, 48\]"):
        NBodyDataset("train", 2, config=SMALL, target_frame=49, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="between 1 and 12"):
        NBodyDataset("train", 13, config=SMALL, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"loc0 must have shape \(S, 5, 3\)"):
        integrate(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)), np.zeros((2, 4)), SMALL)
    with pytest.raises(ValueError, match="charges must have shape"):
        integrate(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), np.zeros((2, 4)), SMALL)
