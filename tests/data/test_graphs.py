"""Random graphs: valid adjacency matrices, exact targets (against brute force), determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equirelax.data.graphs import component_count, random_graphs, triangle_density


def brute_triangles(a: np.ndarray) -> int:
    n = len(a)
    return sum(
        bool(a[i, j] and a[j, k] and a[i, k]) for i, j, k in itertools.combinations(range(n), 3)
    )


def brute_components(a: np.ndarray) -> int:
    """Components by depth-first search from every node not yet reached."""
    n, seen, count = len(a), set(), 0
    for start in range(n):
        if start in seen:
            continue
        count += 1
        stack = [start]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(int(j) for j in np.flatnonzero(a[node]) if j not in seen)
    return count


@settings(max_examples=15, deadline=None)
@given(n=st.integers(3, 9), seed=st.integers(0, 2**16), low=st.floats(0.2, 2.0))
def test_targets_equal_brute_force_on_small_graphs(n, seed, low):
    degrees = (low, min(n - 1.0, low + 3.0))
    tri = random_graphs(6, n, "triangles", degrees, seed=seed)
    comp = random_graphs(6, n, "components", degrees, seed=seed)
    torch.testing.assert_close(tri.adjacency, comp.adjacency, atol=0, rtol=0)
    for a, t, c in zip(tri.adjacency.numpy(), tri.target.numpy(), comp.target.numpy()):
        expected = brute_triangles(a) / (n * (n - 1) * (n - 2) / 6)
        assert t == pytest.approx(expected, rel=1e-6, abs=1e-7)
        assert c == brute_components(a)


def test_known_graphs():
    complete = np.ones((1, 5, 5)) - np.eye(5)
    assert triangle_density(complete)[0] == pytest.approx(1.0)
    assert component_count(complete)[0] == 1
    empty = np.zeros((1, 6, 6))
    assert triangle_density(empty)[0] == 0 and component_count(empty)[0] == 6
    two_triangles = np.zeros((1, 6, 6))
    for block in ((0, 1, 2), (3, 4, 5)):
        for i, j in itertools.permutations(block, 2):
            two_triangles[0, i, j] = 1
    assert triangle_density(two_triangles)[0] == pytest.approx(2 / 20)
    assert component_count(two_triangles)[0] == 2


def test_adjacency_is_symmetric_binary_without_loops_and_both_kinds_appear():
    graphs = random_graphs(40, 30, seed=3)
    a = graphs.adjacency
    assert a.shape == (40, 30, 30) and a.dtype == torch.float32
    assert torch.equal(a, a.transpose(1, 2))
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(a.diagonal(dim1=1, dim2=2) == 0)
    assert set(graphs.kind.tolist()) == {0, 1}
    assert graphs.target.shape == (40,) and len(graphs) == 40


def test_mean_degree_follows_the_range():
    graphs = random_graphs(200, 60, degree_range=(2.0, 6.0), seed=0)
    observed = graphs.adjacency.sum((1, 2)) / 60
    assert 3.0 < float(observed.mean()) < 5.0  # the range's mean is 4
    assert float((observed - graphs.mean_degree).abs().mean()) < 1.0


def test_same_seed_same_graphs_other_seed_other_graphs():
    a, b = random_graphs(8, 20, seed=5), random_graphs(8, 20, seed=5)
    assert torch.equal(a.adjacency, b.adjacency) and torch.equal(a.target, b.target)
    assert not torch.equal(a.adjacency, random_graphs(8, 20, seed=6).adjacency)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"count": 0}, "count must be a positive integer"),
        ({"n": 2}, "n must be an integer >= 3"),
        ({"target": "cliques"}, "target must be one of"),
        ({"degree_range": (5.0, 2.0)}, "degree_range must satisfy"),
        ({"degree_range": (1.0, 30.0)}, "n - 1 = 9"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    args = {"count": 4, "n": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        random_graphs(**args)
