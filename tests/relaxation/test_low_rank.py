"""Low-rank free terms (W = U Vᵀ) and relaxation of structured S_n layers without dense weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import equirelax as er
from equirelax.homspace.partition import PartitionHomSpace
from equirelax.nn import EquivariantLinear
from equirelax.relaxation.actions import PermutationMap
from equirelax.relaxation.registry import FreeLinear, FreeLowRank


def square(n):
    v = er.reps.natural(er.groups.symmetric(n))
    return v, v * v


def test_low_rank_term_starts_like_the_dense_one_and_refuses_bad_ranks():
    torch.manual_seed(0)
    free = FreeLowRank(300, 200, rank=4, init_std=1e-2)
    w = (free.u @ free.v.T).detach()
    assert 0.7e-2 < float(w.std()) < 1.3e-2
    torch.testing.assert_close(free.weight_sq_norm(), w.pow(2).sum(), rtol=1e-5, atol=0)
    for rank in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            FreeLowRank(3, 3, rank=rank)


def test_penalties_equal_those_of_the_same_dense_free_term():
    V, VV = square(5)
    layer = EquivariantLinear(VV + V, VV, structured=True).double()
    low = er.relaxation.Relaxed(layer, free_rank=2, free_bias=True).double()
    dense = er.relaxation.Relaxed(layer, free_bias=True).double()
    dense.penalty_method = "data"
    with torch.no_grad():
        dense.free.weight.copy_(low.free.u @ low.free.v.T)
        dense.free.bias.copy_(low.free.bias)
    for m in (low, dense):
        m.theta = 0.5
    x = torch.randn(6, VV.dim + V.dim, dtype=torch.float64)
    torch.testing.assert_close(low(x), dense(x), atol=1e-12, rtol=0)
    for got, want in zip(low.take_squares(), dense.take_squares()):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(
        low.weight_residual_sq(), dense.weight_residual_sq(), atol=1e-12, rtol=1e-9
    )
    torch.testing.assert_close(low.free_sq(), dense.free_sq(), atol=1e-14, rtol=1e-10)


def test_harden_project_folds_the_factors_projection_like_the_dense_one():
    V, VV = square(5)
    model = torch.nn.Sequential(EquivariantLinear(VV, VV + V, structured=True)).double()
    relaxed = er.relax(model, total_steps=4, free_rank=3, free_bias=True)
    relaxed.step()
    layer = relaxed.relaxed_layers()["0"]
    w = (layer.free.u @ layer.free.v.T).detach()
    hardened = er.harden(relaxed, mode="project")[0]
    expected = model[0].coefficients + layer.theta * er.hom(VV, VV + V).coefficients(w)
    torch.testing.assert_close(hardened.coefficients, expected, atol=1e-12, rtol=0)
    assert er.equivariance_error(hardened, torch.randn(3, VV.dim, dtype=torch.float64)) < 1e-12


def test_rpp_prior_of_a_structured_layer_is_its_dense_weight_norm():
    V, VV = square(5)
    layer = EquivariantLinear(VV, V, structured=True).double()
    torch.testing.assert_close(
        er.relaxation.Relaxed(layer).equivariant_sq(),
        layer.weight.pow(2).sum(),
        atol=1e-10,
        rtol=1e-12,
    )


def test_permutation_maps_act_as_the_representation():
    _, VV = square(4)
    for image, m in zip(VV.images, VV.generator_matrices()):
        x = torch.randn(3, VV.dim, dtype=torch.float64)
        torch.testing.assert_close(PermutationMap(image, (VV.dim,))(x), x @ torch.from_numpy(m).T)


def test_large_structured_layers_relax_train_and_harden_without_dense_matrices(monkeypatch):
    V, VV = square(70)  # d = 4900: dense actions and a dense free term are not built
    model = torch.nn.Sequential(
        EquivariantLinear(VV, VV), torch.nn.ReLU(), EquivariantLinear(VV, V)
    )
    assert all(m.structured for m in model if isinstance(m, EquivariantLinear))

    def refuse(*args, **kwargs):
        raise AssertionError("a dense matrix was built")

    monkeypatch.setattr(PartitionHomSpace, "weight", refuse)
    monkeypatch.setattr(type(VV), "generator_matrices", refuse)
    relaxed = er.relax(model, total_steps=6, free_rank=2, proj_weight=1e-2)
    assert all(isinstance(m.free, FreeLowRank) for m in relaxed.relaxed_layers().values())
    opt = torch.optim.SGD(relaxed.parameters(), lr=1e-6)
    x = torch.randn(3, VV.dim)
    for _ in range(2):
        loss = relaxed(x).pow(2).mean() + relaxed.penalty()
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        relaxed.step()
    exact = er.harden(relaxed, mode="project")
    assert isinstance(exact[0], EquivariantLinear) and exact[0].structured
    g = np.random.default_rng(0).permutation(70)
    perm = torch.from_numpy(np.argsort(g))
    xs = x.reshape(3, 70, 70)[:, perm][:, :, perm].reshape(3, -1)
    with torch.no_grad():
        y = exact(x)
        assert float((exact(xs) - y[:, perm]).abs().max() / y.abs().max()) < 1e-5


def test_dense_free_terms_are_not_fused_into_structured_layers():
    _, VV = square(5)
    relaxed = er.relaxation.Relaxed(EquivariantLinear(VV, VV, structured=True))
    assert isinstance(relaxed.free, FreeLinear) and not relaxed.fused
