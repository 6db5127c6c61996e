"""Shared test settings and brute-force references.

Hypothesis runs deterministically (``derandomize``: the same examples on every run, so a failure
reproduces), with no deadline (first calls fill caches) and a modest number of examples so that
the default suite stays fast. ``HYPOTHESIS_PROFILE=thorough`` runs many more examples.

The ``cayley`` fixture is the reference the group and representation code is checked against:
it enumerates a finite group by breadth-first search over its Cayley graph (slow, but obviously
right for the small groups of the tests) and, given images of the generators, follows the same
edges to assign an image to every element, which also decides whether those images define a
homomorphism at all.

``OMP_WAIT_POLICY=PASSIVE`` (unless set otherwise) makes torch's idle OpenMP threads sleep instead
of spinning. On a busy machine a spinning worker competes with the thread that has work to do:
on 2 shared cores a small tanh/matmul loop ran ~400x slower with spinning workers (65 ms against
0.15 ms per step). It must be set before torch is imported, hence here.

``EQUIRELAX_TEST_THREADS=N`` pins torch to N threads for the whole run: set here, and every
later ``torch.set_num_threads`` call (test fixtures that ask for one thread, the library's
``--threads`` options, the N-body generator) keeps N. Thread count changes reduction orders and
BLAS blocking; tests that train must pass at any count (README, Development), and this is how
to check that.

``OPENBLAS_NUM_THREADS=1`` (unless set): numpy/scipy's OpenBLAS otherwise starts a thread per core
for every small call and, next to torch's threads on a busy machine, a 3 x 3 ``scipy.linalg.expm``
(every Lie-group irreps test evaluates many) took 22 ms instead of 0.09 ms. The suite's BLAS
work is small matrices, where one thread is also the fastest. Read when numpy loads, hence here.

Inductor (``torch.compile``) kernels are cached in a fresh folder for each run
(``TORCHINDUCTOR_CACHE_DIR``, unless set): inductor's on-disk cache outlives a run, and a kernel
compiled under one ``ATEN_CPU_CAPABILITY`` / thread setting was served under another and
computed garbage (compiled outputs off by up to 1e37 under ``ATEN_CPU_CAPABILITY=avx2`` with
2 threads after a run with 1 thread; the same test passes with a fresh cache).

Fixtures that test modules opt into with ``pytestmark = pytest.mark.usefixtures(...)``:
``fresh_dynamo`` (the torch.compile tests), ``one_thread`` (the particle-model tests, the
convolution, Vector Neurons and study tests) and ``seed_zero`` (``torch.manual_seed(0)`` before
each test, so that module initialisations do not depend on the order the tests run in). Helper
code that tests import lives in the ``tests.helpers`` package (``from tests.helpers.particles
import ...``), importable because pytest puts the repository root on ``sys.path``
(``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="equirelax-inductor-"))

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "equirelax",
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "equirelax"))


def _pin_torch_threads(value: str | None) -> None:
    """With ``EQUIRELAX_TEST_THREADS`` set, torch runs with that many threads throughout."""
    if not value:
        return
    import torch

    count = int(value)
    if count < 1:
        raise ValueError(f"EQUIRELAX_TEST_THREADS must be a positive integer, got {value!r}")
    set_threads = torch.set_num_threads
    set_threads(count)

    def pinned(requested: int) -> None:
        set_threads(count)

    torch.set_num_threads = pinned


_pin_torch_threads(os.environ.get("EQUIRELAX_TEST_THREADS"))


class NotAHomomorphismError(ValueError):
    """Raised by the Cayley enumeration when images of the generators contradict each other."""


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[b]  # first b, then a (image notation)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind in "iu":
        return a.tobytes() == b.tobytes()
    return float(np.max(np.abs(a - b))) < 1e-8


def cayley_enumeration(
    generators: Sequence[np.ndarray],
    images: Sequence[np.ndarray] | None = None,
    multiply: Callable[[np.ndarray, np.ndarray], np.ndarray] = _compose,
    identity_image: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Every element of ⟨generators⟩ (identity first) and, with ``images``, the image of each.

    An element reached along two paths must get the same image from both, otherwise the images
    define no homomorphism and :class:`NotAHomomorphismError` is raised. ``multiply(a, b)`` is the
    product of images (a after b); the default composes permutations, pass ``np.matmul`` for
    matrices.
    """
    gens = [np.asarray(g, dtype=np.int64) for g in generators]
    n = gens[0].shape[0]
    identity = np.arange(n, dtype=np.int64)
    if images is not None:
        imgs = [np.asarray(m) for m in images]
        if identity_image is None:
            first = imgs[0]
            identity_image = (
                np.arange(first.shape[0]) if first.ndim == 1 else np.eye(first.shape[0])
            )
    index = {identity.tobytes(): 0}
    elements = [identity]
    assigned = [identity_image]
    frontier = [0]
    while frontier:
        new = []
        for i in frontier:
            for k, s in enumerate(gens):
                h = s[elements[i]]
                key = h.tobytes()
                value = multiply(imgs[k], assigned[i]) if images is not None else None
                if key not in index:
                    index[key] = len(elements)
                    elements.append(h)
                    assigned.append(value)
                    new.append(index[key])
                elif images is not None and not _same(assigned[index[key]], value):
                    raise NotAHomomorphismError(f"two paths to {h.tolist()} give different images")
        frontier = new
    return np.stack(elements), (np.stack(assigned) if images is not None else None)


@pytest.fixture(scope="session")
def cayley() -> Callable[..., tuple[np.ndarray, np.ndarray | None]]:
    """The brute-force enumeration :func:`cayley_enumeration` (see the module docstring)."""
    return cayley_enumeration


@pytest.fixture(scope="session")
def not_a_homomorphism() -> type[NotAHomomorphismError]:
    """The error :func:`cayley_enumeration` raises for images that define no homomorphism."""
    return NotAHomomorphismError


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    """A clean Dynamo state around the test: compiled graphs and guards of earlier tests would
    otherwise be reused (or counted by a counting backend)."""
    import torch

    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for the whole module (small graphs: one thread is fastest and does
    not oversubscribe shared cores); the previous count is restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def seed_zero() -> None:
    """Torch's global seed set to 0 before each test: modules the test builds start from the
    same initialisation whichever tests ran before it."""
    import torch

    torch.manual_seed(0)
