"""Random graphs with exactly computed graph properties, for S_n-invariant graph models.

Each graph has ``n`` nodes and is drawn, with equal probability, as an Erdős–Rényi graph or a
stochastic-block graph whose mean degree is uniform in a range: the two kinds give graphs of
the same edge density but different triangle and component counts, so a model cannot read
the targets off the number of edges alone. Every draw comes from one numpy generator seeded
by ``seed``: the same arguments give the same graphs, on any machine.

Targets are computed exactly from the adjacency matrix A (symmetric, 0/1, zero diagonal):

* ``triangles``: the triangle density, (number of triangles) / C(n, 3) = tr(A³) / (n(n-1)(n-2));
* ``components``: the number of connected components (isolated nodes count as components).

Both are invariant under relabelling the nodes (A ↦ P A Pᵀ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

#: The graph properties that can be targets.
TARGETS = ("triangles", "components")
#: Random graph kinds: Erdős–Rényi, stochastic block model.
KINDS = ("er", "sbm")


@dataclass(frozen=True)
class GraphSet:
    """A set of graphs: adjacency (N, n, n) float32, target (N,) float32, and per graph its
    kind (0 Erdős–Rényi, 1 stochastic block) and the mean degree it was drawn with."""

    adjacency: torch.Tensor
    target: torch.Tensor
    kind: torch.Tensor
    mean_degree: torch.Tensor

    def __len__(self) -> int:
        return int(self.adjacency.shape[0])


def triangle_density(adjacency: np.ndarray) -> np.ndarray:
    """tr(A³) / (n(n-1)(n-2)) of each graph of a (N, n, n) stack: its triangles over C(n, 3)."""
    a = np.asarray(adjacency, dtype=np.float64)
    n = a.shape[-1]
    if n < 3:
        raise ValueError(f"triangle density needs graphs of at least 3 nodes, got n = {n}")
    closed = np.einsum("bij,bjk,bki->b", a, a, a)
    return closed / (n * (n - 1) * (n - 2))


def component_count(adjacency: np.ndarray) -> np.ndarray:
    """The number of connected components of each graph of a (N, n, n) stack."""
    return np.array(
        [connected_components(csr_matrix(a), directed=False)[0] for a in np.asarray(adjacency)],
        dtype=np.float64,
    )


def _erdos_renyi(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    upper = np.triu(rng.random((n, n)) < p, k=1)
    return upper | upper.T


def _block_graph(rng: np.random.Generator, n: int, degree: float) -> np.ndarray:
    """2 to 4 blocks of random sizes; within-block edges 4 to 10 times as likely as
    between-block ones, scaled so that the expected mean degree is ``degree``."""
    blocks = int(rng.integers(2, 5))
    labels = rng.integers(0, blocks, size=n)
    same = labels[:, None] == labels[None, :]
    contrast = float(rng.uniform(4.0, 10.0))
    weights = np.where(same, contrast, 1.0)
    np.fill_diagonal(weights, 0.0)
    scale = degree * n / weights.sum()
    probs = np.minimum(weights * scale, 1.0)
    upper = np.triu(rng.random((n, n)) < probs, k=1)
    return upper | upper.T


def random_graphs(
    count: int,
    n: int,
    target: str = "triangles",
    degree_range: tuple[float, float] = (1.0, 8.0),
    seed: int = 0,
) -> GraphSet:
    """``count`` random graphs of ``n`` nodes (half Erdős–Rényi, half stochastic-block in
    expectation) with mean degree uniform in ``degree_range``, and their exact ``target``."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise ValueError(f"n must be an integer >= 3 (nodes per graph), got {n!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    low, high = (float(v) for v in degree_range)
    if not (0 < low <= high <= n - 1):
        raise ValueError(
            f"degree_range must satisfy 0 < low <= high <= n - 1 = {n - 1}, got "
            f"{tuple(degree_range)!r}"
        )
    rng = np.random.default_rng(seed)
    adjacency = np.empty((count, n, n), dtype=bool)
    kinds = rng.integers(0, len(KINDS), size=count)
    degrees = rng.uniform(low, high, size=count)
    for i in range(count):
        if kinds[i] == 0:
            adjacency[i] = _erdos_renyi(rng, n, degrees[i] / (n - 1))
        else:
            adjacency[i] = _block_graph(rng, n, degrees[i])
    values = triangle_density(adjacency) if target == "triangles" else component_count(adjacency)
    return GraphSet(
        adjacency=torch.from_numpy(adjacency.astype(np.float32)),
        target=torch.from_numpy(values.astype(np.float32)),
        kind=torch.from_numpy(kinds),
        mean_degree=torch.from_numpy(degrees),
    )


__all__ = ["KINDS", "TARGETS", "GraphSet", "component_count", "random_graphs", "triangle_density"]
