"""Matrix Lie groups SO(2), O(2), SO(3), O(3): Lie algebra, discrete generators, Haar samples.

An element is an orthogonal matrix. Every element factors as ``d · exp(Σ_k c_k A_k)`` with ``d`` a
product of discrete generators (identity or the reflection/parity) and ``A_k`` the Lie algebra
basis; ``decompose`` returns that factorisation so a representation given by its Lie algebra
matrices can be evaluated at any element.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
from scipy.spatial.transform import Rotation

from equirelax.groups.base import Group, rng_from
from equirelax.groups.haar import haar_rotations

_SO3_ALGEBRA = np.array(
    [
        [[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]],
        [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]],
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
    ]
)
_SO2_ALGEBRA = np.array([[[0.0, -1.0], [1.0, 0.0]]])


class MatrixLieGroup(Group):
    """A compact matrix Lie group of n x n orthogonal matrices."""

    def __init__(self, name: str, n: int, algebra: np.ndarray, discrete: list[np.ndarray]):
        self.name = name
        self.n = n
        self._algebra = algebra
        self._discrete = discrete

    @property
    def generators(self) -> list[np.ndarray]:
        return [d.copy() for d in self._discrete]

    @property
    def lie_algebra(self) -> np.ndarray:
        return self._algebra.copy()

    @property
    def is_finite(self) -> bool:
        return False

    @property
    def key(self) -> Hashable:
        return ("lie", self.name)

    @property
    def order(self) -> float:
        """Lie groups are infinite."""
        return float("inf")

    def identity(self) -> np.ndarray:
        return np.eye(self.n)

    def elements(self, limit: int = 0) -> np.ndarray:
        """Lie groups cannot be enumerated."""
        raise ValueError(f"{self.name} is infinite: use sample(n) instead of elements()")

    def contains(self, g: np.ndarray) -> bool:
        """True for an orthogonal n x n matrix of the right determinant (within 1e-8)."""
        g = np.asarray(g, dtype=float)
        if g.shape != (self.n, self.n) or not np.allclose(g @ g.T, np.eye(self.n), atol=1e-8):
            return False
        return bool(self._discrete) or np.linalg.det(g) > 0

    def __contains__(self, g: object) -> bool:
        return self.contains(g)  # type: ignore[arg-type]

    def sample(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` Haar-random elements: rotations from :func:`groups.haar.haar_rotations`, each
        times the reflection (O(2)) or parity (O(3)) with probability 1/2."""
        rng = rng_from(seed)
        rot = haar_rotations(n, rng, dim=self.n, scalar_first=False)
        if self._discrete:
            flip = rng.integers(0, 2, size=n).astype(bool)
            rot[flip] = np.einsum("ij,njk->nik", self._discrete[0], rot[flip])
        return rot

    def decompose(self, g: np.ndarray) -> tuple[list[int], np.ndarray]:
        """Factor g = (product of discrete generators) · exp(Σ c_k A_k); return both parts."""
        g = np.asarray(g, dtype=float)
        if g.shape != (self.n, self.n):
            raise ValueError(f"{self.name} elements are {self.n}x{self.n} matrices, got {g.shape}")
        word: list[int] = []
        if np.linalg.det(g) < 0:
            if not self._discrete:
                raise ValueError(f"{self.name} contains no matrix of determinant -1")
            word = [0]
            g = self._discrete[0].T @ g
        if self.n == 2:
            coords = np.array([np.arctan2(g[1, 0], g[0, 0])])
        else:
            coords = Rotation.from_matrix(g).as_rotvec()
        return word, coords


def SO(n: int) -> MatrixLieGroup:
    """The rotation group SO(2) or SO(3)."""
    if n == 2:
        return MatrixLieGroup("SO(2)", 2, _SO2_ALGEBRA, [])
    if n == 3:
        return MatrixLieGroup("SO(3)", 3, _SO3_ALGEBRA, [])
    raise ValueError(f"SO(n) is available for n = 2 or 3, got {n}")


def O(n: int) -> MatrixLieGroup:
    """The orthogonal group O(2) (reflection diag(1,-1)) or O(3) (parity -I)."""
    if n == 2:
        return MatrixLieGroup("O(2)", 2, _SO2_ALGEBRA, [np.diag([1.0, -1.0])])
    if n == 3:
        return MatrixLieGroup("O(3)", 3, _SO3_ALGEBRA, [-np.eye(3)])
    raise ValueError(f"O(n) is available for n = 2 or 3, got {n}")
