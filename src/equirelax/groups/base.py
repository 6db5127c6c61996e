"""What every group offers: generators, a Lie algebra (maybe empty), elements or samples.

A group element is a plain numpy array: a permutation in image notation (``g[i]`` is the image
of point ``i``) for permutation groups, an orthogonal matrix for matrix Lie groups. Representations
turn elements into matrices; layers never see elements directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable

import numpy as np


class Group(ABC):
    """Abstract group: discrete generators, Lie algebra generators, enumeration or sampling."""

    name: str

    @property
    @abstractmethod
    def generators(self) -> list[np.ndarray]:
        """Discrete generators (for a Lie group: those of the component group, e.g. parity)."""

    @property
    def lie_algebra(self) -> np.ndarray:
        """Lie algebra basis as an array (k, n, n); empty (k = 0) for finite groups."""
        return np.zeros((0, 0, 0))

    @property
    @abstractmethod
    def is_finite(self) -> bool:
        """True for finite groups (every element can be enumerated)."""

    @property
    @abstractmethod
    def key(self) -> Hashable:
        """A hashable identity: two groups with equal keys act identically on everything."""

    @abstractmethod
    def identity(self) -> np.ndarray:
        """The identity element."""

    @abstractmethod
    def sample(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` elements drawn uniformly (Haar measure), stacked along the first axis."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Group) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return self.name


def rng_from(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy Generator from a seed, an existing Generator, or fresh entropy."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
