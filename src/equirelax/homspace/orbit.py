"""Orbit (weight-sharing) basis of the equivariant maps between two permutation representations.

G acts on the index pairs (i, j) of a weight matrix by (i, j) -> (π_out(g) i, π_in(g) j); a matrix
is equivariant exactly when it is constant on every orbit. The orbits are the connected components
of the graph that joins each pair to its images under the generators: found from the generators
alone (no group enumeration, no SVD), exact 0/1, stored as one label per weight entry.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


def orbit_labels(images_out: list[np.ndarray], images_in: list[np.ndarray]) -> np.ndarray:
    """Label each entry (i, j) of a (d_out, d_in) matrix by its orbit; labels are 0..k-1.

    ``images_out[s]`` and ``images_in[s]`` are the permutations by which generator ``s`` acts.
    Labels are numbered in order of first appearance in row-major order.
    """
    d_out = images_out[0].shape[0] if images_out else None
    d_in = images_in[0].shape[0] if images_in else None
    if d_out is None or d_in is None:
        raise ValueError("orbit_labels needs at least one generator image (use the identity)")
    n = d_out * d_in
    nodes = np.arange(n, dtype=np.int64)
    rows, cols = nodes // d_in, nodes % d_in
    targets = [po[rows] * d_in + pi[cols] for po, pi in zip(images_out, images_in)]
    targets = [t for t in targets if not np.array_equal(t, nodes)]
    if not targets:
        return nodes.reshape(d_out, d_in)
    # every node has exactly one edge per generator: build the CSR arrays directly, no COO sort
    k = len(targets)
    indices = np.stack(targets, axis=1).reshape(-1)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    graph = sp.csr_matrix((np.ones(n * k, dtype=np.int8), indices, indptr), shape=(n, n))
    _, labels = connected_components(graph, directed=True, connection="weak")
    return _in_order_of_first_appearance(labels.astype(np.int64)).reshape(d_out, d_in)


def _in_order_of_first_appearance(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0..k-1 in order of first appearance, so the labelling is canonical."""
    running_max = np.maximum.accumulate(labels)
    if labels[0] == 0 and np.all(np.diff(running_max) <= 1):
        return labels  # already canonical (scipy numbers components as it meets their nodes)
    _, first = np.unique(labels, return_index=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.shape[0])
    return rank[labels]
