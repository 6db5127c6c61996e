"""Charged-particle N-body data: the simulation protocol of the EGNN/SEGNN N-body benchmark.

Five point particles with charges +-1 move under pairwise Coulomb-like forces
``F_i = s * sum_j q_i q_j (x_i - x_j) / |x_i - x_j|^3`` (like charges repel). The protocol
(see the project's reference notes on constraint relaxation, N-body section) is reproduced
step by step:

* charges drawn i.i.d. from ``charge_values`` with ``charge_probs`` (default -1, 0, +1 with
  probabilities 1/2, 0, 1/2), positions ``N(0, loc_std^2)`` with ``loc_std`` scaled by
  ``(n/5)^(1/3)``, Gaussian velocities rescaled to norm ``vel_norm`` per particle;
* positions outside the box ``[-box_size, box_size]`` are reflected into it (and the velocity
  component pointed inwards) at t = 0 only;
* one initial kick ``v += dt F`` (a full step), then for ``i = 1 .. n_steps - 1``:
  ``x += dt v``; save ``(x, v)`` when ``i % sample_every == 0``; ``v += dt F(x)``;
  every force component is clipped to ``+-max_force`` (default ``0.1 / dt``);
* ``n_steps / sample_every - 1`` frames are saved (49 for the defaults): frame ``k`` is the
  state after integrator step ``(k + 1) * sample_every``;
* the random stream is one legacy ``numpy.random.RandomState(seed)`` consumed per simulation in
  the protocol's order (charges, positions, velocities, then two observation-noise draws that
  are drawn even when the noise scale is 0), with the splits laid out one after the other:
  10,000 training, 2,000 validation, 2,000 test simulations for seed 43. The random draws
  do not depend on the simulated trajectories, so a split's simulations are generated without
  simulating the splits before it, and the first ``k`` simulations of a split do not depend
  on how many are generated.

The integrator is vectorised over simulations with torch (float64): the pair differences and
the force accumulation are small matrix products with a fixed +-1 incidence matrix over the
``n (n - 1) / 2`` unordered pairs. The test suite checks it against a plain per-simulation
numpy version that follows the protocol operation by operation (``simulate_reference_loop`` in
``tests/helpers/nbody_reference.py``; they agree to rounding, which the chaotic dynamics
amplify over long horizons, see ``docs/data_nbody.md``).

Note on symmetry: component-wise force clipping is done in the fixed coordinate axes, so the
simulated dynamics are exactly rotation-covariant only while no force component is clipped.
:func:`integrate` counts the steps in which clipping was active, per simulation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "ChargedParticlesConfig",
    "InitialConditions",
    "NBodyDataset",
    "NBodySample",
    "Trajectories",
    "cache_path",
    "clamp_to_box",
    "default_cache_dir",
    "draw_initial_conditions",
    "generate_split",
    "integrate",
    "load_split",
    "nbody_datasets",
]

#: Bumped whenever the generated numbers could change for the same parameters; part of the
#: cache key, so stale cache files are never read.
GENERATOR_VERSION = 1

#: The splits in the order in which they consume the random stream.
SPLITS = ("train", "val", "test")

DEFAULT_SPLIT_SIZES = {"train": 3000, "val": 2000, "test": 2000}


@dataclass(frozen=True)
class ChargedParticlesConfig:
    """Every parameter that determines the generated simulations (and so the cache key).

    The defaults are the standard charged-particle protocol: 5 particles, dt 0.001,
    5000 steps saved every 100, seed 43, and a random stream laid out as 10,000 training,
    2,000 validation and 2,000 test simulations.
    """

    n_particles: int = 5
    dt: float = 0.001
    n_steps: int = 5000
    sample_every: int = 100
    loc_std: float = 1.0
    vel_norm: float = 0.5
    box_size: float = 5.0
    interaction_strength: float = 1.0
    max_force: float | None = None
    charge_values: tuple[float, ...] = (-1.0, 0.0, 1.0)
    charge_probs: tuple[float, ...] = (0.5, 0.0, 0.5)
    observation_noise: float = 0.0
    seed: int = 43
    stream_sizes: tuple[int, int, int] = (10_000, 2_000, 2_000)

    def __post_init__(self) -> None:
        if not isinstance(self.n_particles, int) or self.n_particles < 2:
            raise ValueError(f"n_particles must be an int >= 2, got {self.n_particles!r}")
        if not self.dt > 0:
            raise ValueError(f"dt must be > 0, got {self.dt!r}")
        if not isinstance(self.sample_every, int) or self.sample_every < 1:
            raise ValueError(f"sample_every must be an int >= 1, got {self.sample_every!r}")
        if not isinstance(self.n_steps, int) or self.n_steps < 2 * self.sample_every:
            raise ValueError(
                f"n_steps must be an int >= 2 * sample_every = {2 * self.sample_every}, "
                f"got {self.n_steps!r}"
            )
        if self.n_steps % self.sample_every != 0:
            raise ValueError(
                f"n_steps must be a multiple of sample_every={self.sample_every}, "
                f"got n_steps={self.n_steps}"
            )
        for name in ("loc_std", "vel_norm", "box_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_force is not None and not self.max_force > 0:
            raise ValueError(f"max_force must be > 0 or None, got {self.max_force!r}")
        if len(self.charge_values) != len(self.charge_probs) or not self.charge_values:
            raise ValueError(
                "charge_values and charge_probs must be non-empty and of equal length, got "
                f"{len(self.charge_values)} values and {len(self.charge_probs)} probabilities"
            )
        probs = np.asarray(self.charge_probs, dtype=float)
        if np.any(probs < 0) or abs(probs.sum() - 1.0) > 1e-8:
            raise ValueError(
                f"charge_probs must be >= 0 and sum to 1, got {tuple(self.charge_probs)}"
            )
        if self.observation_noise < 0:
            raise ValueError(f"observation_noise must be >= 0, got {self.observation_noise!r}")
        if len(self.stream_sizes) != 3 or any(int(s) < 0 for s in self.stream_sizes):
            raise ValueError(
                "stream_sizes must be three counts >= 0 (train, val, test), "
                f"got {self.stream_sizes!r}"
            )
        # normalise container types so that equal configs hash equally
        object.__setattr__(self, "charge_values", tuple(float(v) for v in self.charge_values))
        object.__setattr__(self, "charge_probs", tuple(float(p) for p in self.charge_probs))
        object.__setattr__(self, "stream_sizes", tuple(int(s) for s in self.stream_sizes))

    @property
    def effective_loc_std(self) -> float:
        """Standard deviation of the initial positions: ``loc_std * (n / 5)^(1/3)``."""
        return self.loc_std * (self.n_particles / 5.0) ** (1.0 / 3.0)

    @property
    def effective_max_force(self) -> float:
        """Clip value for each force component (``0.1 / dt`` unless set)."""
        return 0.1 / self.dt if self.max_force is None else float(self.max_force)

    @property
    def n_frames(self) -> int:
        """Number of saved frames: ``n_steps / sample_every - 1``."""
        return self.n_steps // self.sample_every - 1

    def stream_offset(self, split: str) -> int:
        """Number of simulations in the random stream before the first one of ``split``."""
        index = _split_index(split)
        return sum(self.stream_sizes[:index])

    def cache_key(self) -> str:
        """Hex digest of every generation parameter and the generator version."""
        fields = dataclasses.asdict(self)
        fields["generator_version"] = GENERATOR_VERSION
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def _split_index(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


class InitialConditions(NamedTuple):
    """Initial states drawn from the random stream (before the box clamp).

    Arrays are float64 numpy arrays: ``charges`` (S, n), ``loc`` and ``vel`` (S, n, 3), and
    ``noise_loc`` / ``noise_vel`` (S, frames, n, 3) already multiplied by the noise scale
    (``None`` when the noise scale is 0; the draws still advance the stream).
    """

    charges: np.ndarray
    loc: np.ndarray
    vel: np.ndarray
    noise_loc: np.ndarray | None
    noise_vel: np.ndarray | None


class Trajectories(NamedTuple):
    """Saved frames of a batch of simulations.

    ``loc`` and ``vel`` are (S, frames, n, 3); ``charges`` is (S, n); ``clipped_steps`` (S,) counts
    the integrator steps (initial kick included) in which any force component was clipped.
    """

    loc: np.ndarray
    vel: np.ndarray
    charges: np.ndarray
    clipped_steps: np.ndarray


def _draw_one(config: ChargedParticlesConfig, rng: np.random.RandomState) -> tuple:
    """Consume the random stream for one simulation exactly as the protocol does."""
    n = config.n_particles
    charges = rng.choice(
        np.asarray(config.charge_values), size=(n, 1), p=np.asarray(config.charge_probs)
    )[:, 0]
    loc = rng.randn(3, n) * config.effective_loc_std
    vel = rng.randn(3, n)
    vel = vel * config.vel_norm / np.sqrt((vel**2).sum(axis=0)).reshape(1, -1)
    frames = config.n_frames
    noise_loc = rng.randn(frames, 3, n)
    noise_vel = rng.randn(frames, 3, n)
    return charges, loc.T, vel.T, noise_loc, noise_vel


def draw_initial_conditions(
    config: ChargedParticlesConfig,
    count: int,
    *,
    skip: int = 0,
    rng: np.random.RandomState | None = None,
) -> InitialConditions:
    """Draw ``count`` initial states, after skipping ``skip`` simulations of the stream.

    Without ``rng`` the stream starts from ``RandomState(config.seed)``. The draws per simulation
    are the protocol's, in its order, so the result is the same as running the protocol's
    per-simulation generator and keeping simulations ``skip .. skip + count - 1``.
    """
    if count < 0 or skip < 0:
        raise ValueError(f"count and skip must be >= 0, got count={count}, skip={skip}")
    if rng is None:
        rng = np.random.RandomState(config.seed)
    for _ in range(skip):
        _draw_one(config, rng)
    n, frames = config.n_particles, config.n_frames
    charges = np.empty((count, n))
    loc = np.empty((count, n, 3))
    vel = np.empty((count, n, 3))
    keep_noise = config.observation_noise > 0
    noise_loc = np.empty((count, frames, n, 3)) if keep_noise else None
    noise_vel = np.empty((count, frames, n, 3)) if keep_noise else None
    for s in range(count):
        charges[s], loc[s], vel[s], nl, nv = _draw_one(config, rng)
        if keep_noise:
            noise_loc[s] = nl.transpose(0, 2, 1) * config.observation_noise
            noise_vel[s] = nv.transpose(0, 2, 1) * config.observation_noise
    return InitialConditions(charges, loc, vel, noise_loc, noise_vel)


def clamp_to_box(
    loc: np.ndarray, vel: np.ndarray, box_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Reflect coordinates outside ``[-box_size, box_size]`` back in; point velocities inwards.

    Works on any shape with matching ``loc``/``vel``; returns new arrays. Coordinates beyond
    ``3 * box_size`` cannot be reflected into the box and raise ``ValueError`` (the protocol
    asserts the same).
    """
    if loc.shape != vel.shape:
        raise ValueError(f"loc and vel must have the same shape, got {loc.shape} and {vel.shape}")
    if np.any(np.abs(loc) >= 3 * box_size):
        raise ValueError(
            f"positions must lie within +-3*box_size = +-{3 * box_size}, "
            f"got max |x| = {np.abs(loc).max()}"
        )
    loc, vel = loc.copy(), vel.copy()
    over = loc > box_size
    loc[over] = 2 * box_size - loc[over]
    vel[over] = -np.abs(vel[over])
    under = loc < -box_size
    loc[under] = -2 * box_size - loc[under]
    vel[under] = np.abs(vel[under])
    return loc, vel


def _pair_incidence(n: int, dtype: torch.dtype) -> torch.Tensor:
    """(P, n) matrix with +1 at the first and -1 at the second particle of each pair i < j."""
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    incidence = torch.zeros(len(pairs), n, dtype=dtype)
    for p, (i, j) in enumerate(pairs):
        incidence[p, i] = 1.0
        incidence[p, j] = -1.0
    return incidence


def integrate(
    loc0: np.ndarray,
    vel0: np.ndarray,
    charges: np.ndarray,
    config: ChargedParticlesConfig,
    *,
    chunk_size: int = 2000,
    num_threads: int | None = 1,
    progress: bool = False,
    description: str = "simulating",
) -> Trajectories:
    """Integrate many simulations at once from given states at t = 0 (no box clamp here).

    ``loc0``, ``vel0``: (S, n, 3); ``charges``: (S, n). Uses ``config``'s dt, n_steps,
    sample_every, interaction_strength and max_force. Computation is float64 torch, vectorised
    over simulations in chunks of ``chunk_size`` (a chunk of a few thousand keeps the working
    set in cache). Returns float64 numpy arrays.

    The per-step tensors are small, so one thread is the fastest setting (and with more
    threads than free cores, torch's thread pool slows such loops down by an order of
    magnitude); ``num_threads`` is set for the duration of the call (``None`` leaves torch's
    setting alone) and restored afterwards.
    """
    loc0 = np.asarray(loc0, dtype=np.float64)
    vel0 = np.asarray(vel0, dtype=np.float64)
    charges = np.asarray(charges, dtype=np.float64)
    n = config.n_particles
    if loc0.ndim != 3 or loc0.shape[1:] != (n, 3):
        raise ValueError(f"loc0 must have shape (S, {n}, 3), got {loc0.shape}")
    if vel0.shape != loc0.shape:
        raise ValueError(f"vel0 must have shape {loc0.shape} like loc0, got {vel0.shape}")
    if charges.shape != loc0.shape[:2]:
        raise ValueError(f"charges must have shape {loc0.shape[:2]}, got {charges.shape}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    total = loc0.shape[0]
    frames = config.n_frames
    out_loc = np.empty((total, frames, n, 3))
    out_vel = np.empty((total, frames, n, 3))
    clipped = np.zeros(total, dtype=np.int64)
    starts = range(0, total, chunk_size)
    bar = tqdm(
        total=total * config.n_steps,
        desc=description,
        unit="sim-step",
        unit_scale=True,
        disable=not progress,
        leave=False,
    )
    with torch.no_grad(), bar, _torch_threads(num_threads):
        for start in starts:
            stop = min(start + chunk_size, total)
            chunk = _integrate_chunk(
                loc0[start:stop], vel0[start:stop], charges[start:stop], config, bar
            )
            out_loc[start:stop], out_vel[start:stop], clipped[start:stop] = chunk
    return Trajectories(out_loc, out_vel, charges.copy(), clipped)


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(count)``; restore the previous value."""
    if count is None:
        yield
        return
    if count < 1:
        raise ValueError(f"num_threads must be >= 1 or None, got {count}")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _integrate_chunk(
    loc0: np.ndarray,
    vel0: np.ndarray,
    charges: np.ndarray,
    config: ChargedParticlesConfig,
    bar: tqdm,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised leapfrog of one chunk. Layout (3, n, S): the simulation axis is contiguous."""
    dtype = torch.float64
    n, dt = config.n_particles, config.dt
    max_force = config.effective_max_force
    incidence = _pair_incidence(n, dtype)  # (P, n)
    spread = incidence.T.contiguous()  # (n, P): pair forces back onto particles
    first, second = torch.triu_indices(n, n, offset=1)
    q = torch.from_numpy(charges).to(dtype).T  # (n, S)
    # interaction_strength * q_i q_j per pair: (P, S)
    pair_strength = config.interaction_strength * q[first] * q[second]
    x = torch.from_numpy(np.ascontiguousarray(loc0.transpose(2, 1, 0))).to(dtype).contiguous()
    v = torch.from_numpy(np.ascontiguousarray(vel0.transpose(2, 1, 0))).to(dtype).contiguous()
    sims = x.shape[-1]
    clipped = torch.zeros(sims, dtype=torch.int64)
    frames = config.n_frames
    out_loc = torch.empty(frames, 3, n, sims, dtype=dtype)
    out_vel = torch.empty(frames, 3, n, sims, dtype=dtype)

    def force(positions: torch.Tensor) -> torch.Tensor:
        diff = torch.matmul(incidence, positions)  # (3, P, S): x_i - x_j, exact
        inv_cube = diff.square().sum(dim=0).pow_(-1.5).mul_(pair_strength)  # (P, S)
        f = torch.matmul(spread, diff.mul_(inv_cube))  # (3, n, S)
        clipped.add_(f.abs().amax(dim=(0, 1)) > max_force)
        return f.clamp_(-max_force, max_force)

    v.add_(force(x), alpha=dt)
    counter, reported = 0, 0
    for i in range(1, config.n_steps):
        x.add_(v, alpha=dt)
        if i % config.sample_every == 0:
            out_loc[counter] = x
            out_vel[counter] = v
            counter += 1
            bar.update(sims * (i - reported))
            reported = i
        v.add_(force(x), alpha=dt)
    bar.update(sims * (config.n_steps - reported))
    # (frames, 3, n, S) -> (S, frames, n, 3)
    return (
        out_loc.permute(3, 0, 2, 1).numpy(),
        out_vel.permute(3, 0, 2, 1).numpy(),
        clipped.numpy(),
    )


def generate_split(
    config: ChargedParticlesConfig,
    split: str,
    count: int | None = None,
    *,
    chunk_size: int = 2000,
    progress: bool = True,
) -> Trajectories:
    """Simulate the first ``count`` simulations of ``split`` (default: the whole stream split).

    Draws the initial conditions from the stream (skipping the simulations of earlier splits
    without simulating them), clamps them into the box, integrates them vectorised, and adds
    the observation noise.
    """
    index = _split_index(split)
    available = config.stream_sizes[index]
    count = available if count is None else int(count)
    if not 0 <= count <= available:
        raise ValueError(
            f"count for split {split!r} must be between 0 and its stream size {available} "
            f"(ChargedParticlesConfig.stream_sizes), got {count}"
        )
    init = draw_initial_conditions(config, count, skip=config.stream_offset(split))
    loc0, vel0 = clamp_to_box(init.loc, init.vel, config.box_size)
    traj = integrate(
        loc0,
        vel0,
        init.charges,
        config,
        chunk_size=chunk_size,
        progress=progress,
        description=f"N-body {split} ({count} simulations)",
    )
    if init.noise_loc is not None:
        traj.loc[...] += init.noise_loc
        traj.vel[...] += init.noise_vel
    return traj


def default_cache_dir() -> Path:
    """``$EQUIRELAX_CACHE`` if set, else ``~/.cache/equirelax``."""
    env = os.environ.get("EQUIRELAX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "equirelax"


def cache_path(
    config: ChargedParticlesConfig, split: str, count: int, cache_dir: str | Path | None = None
) -> Path:
    """Where the first ``count`` simulations of ``split`` under ``config`` are cached."""
    _split_index(split)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "nbody" / f"charged-{config.cache_key()}-{split}-{count}.npz"


def _cached_candidates(
    config: ChargedParticlesConfig, split: str, count: int, cache_dir: str | Path | None
) -> Iterator[Path]:
    """Cached files of the same parameters and split holding at least ``count`` simulations."""
    exact = cache_path(config, split, count, cache_dir)
    if exact.exists():
        yield exact
    prefix = f"charged-{config.cache_key()}-{split}-"
    found = []
    if exact.parent.is_dir():
        for path in exact.parent.glob(prefix + "*.npz"):
            tail = path.name[len(prefix) : -len(".npz")]
            if tail.isdigit() and int(tail) > count:
                found.append((int(tail), path))
    for _, path in sorted(found):
        yield path


def load_split(
    config: ChargedParticlesConfig,
    split: str,
    count: int,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> Trajectories:
    """The first ``count`` simulations of ``split``, from the cache or freshly generated.

    A cached file of the same parameters holding more simulations of the split is sliced
    (the first ``k`` simulations do not depend on how many were generated). New results are
    written atomically, so concurrent processes never read a partial file.
    """
    if use_cache:
        for path in _cached_candidates(config, split, count, cache_dir):
            try:
                with np.load(path) as stored:
                    return Trajectories(
                        stored["loc"][:count],
                        stored["vel"][:count],
                        stored["charges"][:count],
                        stored["clipped_steps"][:count],
                    )
            except (OSError, KeyError, ValueError):
                continue  # unreadable file: regenerate
    traj = generate_split(config, split, count, progress=progress)
    if use_cache:
        path = cache_path(config, split, count, cache_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **traj._asdict())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return traj


class NBodySample(NamedTuple):
    """One sample (or, after default collation, a batch with a leading batch axis).

    ``loc``, ``vel``: (n, 3) at the input frame; ``charges``: (n,); ``edges``: (n, n) charge
    products ``q_i q_j``; ``target``: (n, 3) positions at the target frame.
    """

    loc: torch.Tensor
    vel: torch.Tensor
    charges: torch.Tensor
    edges: torch.Tensor
    target: torch.Tensor


class NBodyDataset(torch.utils.data.Dataset):
    """Charged-particle samples ``(loc[input_frame], vel[input_frame], charges, edges)`` ->
    ``loc[target_frame]`` (defaults: frames 30 -> 40, i.e. 1000 integrator steps).

    ``size`` defaults to 3000 / 2000 / 2000 for train / val / test and takes the first ``size``
    simulations of the split. Data come from :func:`load_split` (cached on disk under
    ``cache_dir``, default ``$EQUIRELAX_CACHE`` or ``~/.cache/equirelax``). Tensors are stored
    once in ``dtype``; :meth:`tensors` gives the whole split for batching without a DataLoader.
    """

    def __init__(
        self,
        split: str = "train",
        size: int | None = None,
        *,
        config: ChargedParticlesConfig | None = None,
        input_frame: int = 30,
        target_frame: int = 40,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        dtype: torch.dtype = torch.float32,
        progress: bool = True,
    ) -> None:
        self.config = config if config is not None else ChargedParticlesConfig()
        _split_index(split)
        size = DEFAULT_SPLIT_SIZES[split] if size is None else int(size)
        available = self.config.stream_sizes[_split_index(split)]
        if not 1 <= size <= available:
            raise ValueError(
                f"size for split {split!r} must be between 1 and {available}, got {size}"
            )
        frames = self.config.n_frames
        for name, frame in (("input_frame", input_frame), ("target_frame", target_frame)):
            if not 0 <= frame < frames:
                raise ValueError(f"{name} must be in [0, {frames - 1}], got {frame}")
        self.split, self.size = split, size
        self.input_frame, self.target_frame = input_frame, target_frame
        traj = load_split(
            self.config, split, size, cache_dir=cache_dir, use_cache=use_cache, progress=progress
        )
        self.loc = torch.as_tensor(traj.loc[:, input_frame], dtype=dtype)
        self.vel = torch.as_tensor(traj.vel[:, input_frame], dtype=dtype)
        self.target = torch.as_tensor(traj.loc[:, target_frame], dtype=dtype)
        self.charges = torch.as_tensor(traj.charges, dtype=dtype)
        self.edges = self.charges[:, :, None] * self.charges[:, None, :]
        self.clipped_steps = torch.as_tensor(traj.clipped_steps)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int | list[int] | torch.Tensor) -> NBodySample:
        """One sample, or with a list (or tensor) of indices a whole batch gathered at once
        (what a DataLoader with a batch sampler passed as ``sampler`` and ``batch_size=None``
        asks for: the same values as stacking the samples, at a fraction of the cost)."""
        return NBodySample(
            self.loc[index],
            self.vel[index],
            self.charges[index],
            self.edges[index],
            self.target[index],
        )

    def tensors(self) -> NBodySample:
        """The whole split as one batch (leading axis = simulations)."""
        return NBodySample(self.loc, self.vel, self.charges, self.edges, self.target)


def nbody_datasets(
    train_size: int = 3000,
    val_size: int = 2000,
    test_size: int = 2000,
    **kwargs: object,
) -> dict[str, NBodyDataset]:
    """The three splits as :class:`NBodyDataset` objects (``kwargs`` go to each of them)."""
    sizes = {"train": train_size, "val": val_size, "test": test_size}
    return {split: NBodyDataset(split, sizes[split], **kwargs) for split in SPLITS}
