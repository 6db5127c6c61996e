"""The test oracle of the N-body generator: the charged-particle protocol read literally.

:func:`simulate_reference_loop` runs one simulation after the other in numpy, one operation of
the protocol after the other (module docstring of :mod:`equirelax.data.nbody`): it draws the
random stream itself, in the protocol's order, and shares only the public box clamp with the
library. It is slow, and exists to check the vectorised :func:`equirelax.data.nbody.generate_split`
(``tests/data/test_nbody.py``) and as the baseline of ``benchmarks/bench_nbody_generation.py``.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from equirelax.data.nbody import ChargedParticlesConfig, Trajectories, clamp_to_box


def draw_protocol_stream(config: ChargedParticlesConfig, rng: np.random.RandomState) -> tuple:
    """One simulation's draws, in the protocol's order: charges ``(n,)``, positions and
    velocities ``(n, 3)``, and the two observation-noise draws ``(frames, 3, n)`` (drawn even
    when the noise scale is 0)."""
    n = config.n_particles
    charges = rng.choice(
        np.asarray(config.charge_values), size=(n, 1), p=np.asarray(config.charge_probs)
    )[:, 0]
    loc = rng.randn(3, n) * config.effective_loc_std
    vel = rng.randn(3, n)
    vel = vel * config.vel_norm / np.sqrt((vel**2).sum(axis=0)).reshape(1, -1)
    noise_loc = rng.randn(config.n_frames, 3, n)
    noise_vel = rng.randn(config.n_frames, 3, n)
    return charges, loc.T, vel.T, noise_loc, noise_vel


def simulate_reference_loop(
    config: ChargedParticlesConfig, count: int, *, skip: int = 0, progress: bool = False
) -> Trajectories:
    """``count`` simulations of the protocol after skipping ``skip`` of the stream, one
    Python-level step loop per simulation (the same random stream as ``generate_split``)."""
    if count < 0 or skip < 0:
        raise ValueError(f"count and skip must be >= 0, got count={count}, skip={skip}")
    rng = np.random.RandomState(config.seed)
    for _ in range(skip):
        draw_protocol_stream(config, rng)
    n, dt = config.n_particles, config.dt
    max_force = config.effective_max_force
    frames = config.n_frames
    out_loc = np.zeros((count, frames, n, 3))
    out_vel = np.zeros((count, frames, n, 3))
    all_charges = np.zeros((count, n))
    clipped = np.zeros(count, dtype=np.int64)

    def force(loc: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, bool]:
        # loc: (3, n); squared distances by the norm expansion, as the protocol does
        sq = (loc.T**2).sum(axis=1)
        dist2 = sq[:, None] + sq[None, :] - 2 * loc.T.dot(loc)
        with np.errstate(divide="ignore", invalid="ignore"):
            size = config.interaction_strength * edges / np.power(dist2, 1.5)
        np.fill_diagonal(size, 0.0)
        diffs = np.stack([np.subtract.outer(loc[k], loc[k]) for k in range(3)])
        f = (size[None] * diffs).sum(axis=-1)
        was_clipped = bool(np.any(np.abs(f) > max_force))
        f[f > max_force] = max_force
        f[f < -max_force] = -max_force
        return f, was_clipped

    for s in tqdm(range(count), desc="reference loop", disable=not progress, leave=False):
        charges, loc_t, vel_t, noise_loc, noise_vel = draw_protocol_stream(config, rng)
        loc_t, vel_t = clamp_to_box(loc_t, vel_t, config.box_size)
        loc, vel = loc_t.T.copy(), vel_t.T.copy()  # (3, n)
        edges = np.outer(charges, charges)
        f, c = force(loc, edges)
        clipped[s] += c
        vel += dt * f
        counter = 0
        for i in range(1, config.n_steps):
            loc += dt * vel
            if i % config.sample_every == 0:
                out_loc[s, counter], out_vel[s, counter] = loc.T, vel.T
                counter += 1
            f, c = force(loc, edges)
            clipped[s] += c
            vel += dt * f
        out_loc[s] += noise_loc.transpose(0, 2, 1) * config.observation_noise
        out_vel[s] += noise_vel.transpose(0, 2, 1) * config.observation_noise
        all_charges[s] = charges
    return Trajectories(out_loc, out_vel, all_charges, clipped)
