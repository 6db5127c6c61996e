"""Invariant graph network: exactly invariant under node relabelling (float64 and float32),
applied by partitions at graph sizes of the study, with no dense weight in training,
inference or relaxation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import equirelax as er
from equirelax.homspace.partition import PartitionHomSpace
from equirelax.models import InvariantGraphNetwork
from equirelax.relaxation.registry import FreeLowRank


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def random_adjacency(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    upper = torch.triu((torch.rand(batch, n, n, generator=gen) < 0.2).float(), diagonal=1)
    return upper + upper.transpose(1, 2)


def relabelled(a: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    return a[:, perm][:, :, perm]


@pytest.mark.parametrize("structured", [True, False])
def test_invariant_over_every_element_of_s5(structured):
    model = InvariantGraphNetwork(5, (3, 2), 4, (6,), structured=structured)
    assert all(m.structured == structured for m in model.equivariant_layers)
    errors = er.testing.assert_equivariant(model, random_adjacency(6, 5).flatten(-2))
    assert errors[torch.float64] < 1e-12 and errors[torch.float32] < 1e-5


def test_structured_and_dense_paths_compute_the_same_function():
    fast = InvariantGraphNetwork(6, (2, 3), 4, (5,), structured=True).double()
    dense = InvariantGraphNetwork(6, (2, 3), 4, (5,), structured=False).double()
    dense.load_state_dict(fast.state_dict())
    x = random_adjacency(4, 6).double().flatten(-2)
    torch.testing.assert_close(fast(x), dense(x), atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_invariant_under_random_relabellings_of_100_nodes(dtype, tol):
    n = 100
    model = InvariantGraphNetwork(n, (3, 3), 4, (8,)).to(dtype).eval()
    a = random_adjacency(3, n).to(dtype)
    with torch.no_grad():
        y = model(a.flatten(-2))
        for seed in range(4):
            perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
            moved = model(relabelled(a, perm).flatten(-2))
            assert float((moved - y).abs().max() / y.abs().max()) < tol


@pytest.mark.parametrize("n", [50, 100, 200])
def test_the_study_sizes_choose_the_partition_path(n):
    model = InvariantGraphNetwork(n, (8, 8), 16, (32,))
    layers = model.equivariant_layers
    assert len(layers) == 3 and all(m.structured for m in layers)


def test_no_dense_weight_in_training_inference_or_relaxation_at_100_nodes(monkeypatch):
    n = 100
    model = InvariantGraphNetwork(n, (8, 8), 16, (8,))  # the quick preset's widths
    assert all(m.structured for m in model.equivariant_layers)

    def refuse(*args, **kwargs):
        raise AssertionError("a dense matrix was built")

    monkeypatch.setattr(PartitionHomSpace, "weight", refuse)
    monkeypatch.setattr(type(model.rep_in), "generator_matrices", refuse)
    x = random_adjacency(2, n).flatten(-2)
    model(x).pow(2).sum().backward()
    assert all(m.coefficients.grad is not None for m in model.equivariant_layers)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 1)
    relaxed = er.relax(model.train(), total_steps=4, free_rank=2)
    assert all(isinstance(m.free, FreeLowRank) for m in relaxed.relaxed_layers().values())
    assert len(relaxed.relaxed_layers()) == 3
    (relaxed(x).pow(2).sum() + relaxed.penalty()).backward()
    relaxed.step()
    exact = er.harden(relaxed)
    assert isinstance(exact, InvariantGraphNetwork)
    assert all(m.structured for m in exact.equivariant_layers)
    perm = torch.from_numpy(np.random.default_rng(1).permutation(n))
    with torch.no_grad():
        y = exact(x)
        moved = exact(relabelled(x.reshape(2, n, n), perm).flatten(-2))
    assert float((moved - y).abs().max() / y.abs().max()) < 1e-5


def test_inputs_of_the_wrong_size_and_bad_widths_are_refused():
    model = InvariantGraphNetwork(6, (2,), 3, ())
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 36\)"):
        model(torch.zeros(2, 6, 6))
    with pytest.raises(ValueError, match="n must be an integer >= 4"):
        InvariantGraphNetwork(3)
    with pytest.raises(ValueError, match="channels must name at least one"):
        InvariantGraphNetwork(6, ())
    with pytest.raises(ValueError, match="channels must be a positive integer, got 0"):
        InvariantGraphNetwork(6, (4, 0))
