"""Residual Pathway Priors (Finzi et al. 2021): the model is the equivariant pathway plus the free
pathway in training and in eval, and the two L2 priors are on the pathways' dense weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import equirelax as er
from equirelax.homspace.space import HomSpace
from equirelax.nn.gconv import GroupConv2d
from equirelax.nn.vn import VNLinear
from equirelax.relaxation import Relaxed, harden, relax
from equirelax.relaxation.prior import BasisGram, basis_gram


def _randomise_free(relaxed, scale=0.3):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            w = layer.free.weight
            w.copy_(torch.randn(w.shape, generator=gen, dtype=w.dtype) * scale)


@pytest.mark.parametrize("fixture", ["s4_model", "so3_model"])
def test_rpp_evaluates_both_pathways_in_eval(fixture, request):
    model = request.getfixturevalue(fixture)  # no dropout, no batch norm
    relaxed = relax(model, rpp=True)
    _randomise_free(relaxed)
    x = torch.randn(8, model.rep_in.dim, dtype=torch.float64)
    train_out = relaxed.train()(x)
    relaxed.penalties()
    eval_out = relaxed.eval()(x)
    torch.testing.assert_close(eval_out, train_out, rtol=0, atol=1e-14)
    # the deployed RPP model is not the equivariant pathway alone
    dropped = harden(relaxed)
    assert not torch.allclose(eval_out, dropped(x))
    assert er.equivariance_error(relaxed.eval(), x) > 1e-4
    # harden is the explicit choice of an exactly equivariant model
    for mode in ("drop", "project"):
        assert er.equivariance_error(harden(relaxed, mode=mode), x) <= 1e-12


def test_rpp_keeps_an_explicit_projected_eval(s4_model):
    relaxed = relax(s4_model, rpp=True, projected_eval=True)
    _randomise_free(relaxed)
    x = torch.randn(8, 4, dtype=torch.float64)
    assert torch.equal(relaxed.eval()(x), harden(relaxed)(x))
    assert relax(s4_model, total_steps=5).relaxed_layers()["layers.0"].projected_eval


@pytest.mark.parametrize("fixture", ["s4_model", "so3_model", "o3_model"])
def test_rpp_priors_are_frobenius_norms_of_the_dense_weights(fixture, request):
    model = request.getfixturevalue(fixture)
    relaxed = relax(model, rpp=True, free_bias=True, rpp_free_weight=10.0,
                    rpp_equiv_weight=1e-3)
    _randomise_free(relaxed)
    with torch.no_grad():  # biases carry no prior: make them count if they were included
        for layer in relaxed.relaxed_layers().values():
            layer.free.bias.fill_(5.0)
            if layer.layer.bias_coefficients is not None:
                layer.layer.bias_coefficients.fill_(5.0)
    x = torch.randn(8, model.rep_in.dim, dtype=torch.float64)
    relaxed.train()(x)
    p = relaxed.penalties()
    layers = relaxed.relaxed_layers().values()
    equiv = sum(float(layer.layer.weight.detach().pow(2).sum()) for layer in layers)
    free = sum(float(layer.free.weight.detach().pow(2).sum()) for layer in layers)
    assert float(p["rpp_equiv"].detach()) == pytest.approx(equiv, rel=1e-12)
    assert float(p["rpp_free"].detach()) == pytest.approx(free, rel=1e-12)
    # the coefficients' norm is not the weight's (orbit sizes, basis normalisation)
    coefficients = sum(float(layer.layer.coefficients.detach().pow(2).sum()) for layer in layers)
    if fixture == "s4_model":
        assert abs(coefficients - equiv) > 0.1 * equiv
    total = relaxed.penalty()
    assert float(total.detach()) == pytest.approx(10.0 * free + 1e-3 * equiv, rel=1e-12)
    total.backward()  # the prior trains the coefficients, through cᵀ G c
    assert all(layer.layer.coefficients.grad is not None for layer in layers)


def _value(t: torch.Tensor) -> float:
    return float(t.detach())


def test_rpp_prior_of_layers_without_coefficients():
    G = er.groups.symmetric(4)
    V = er.reps.natural(G)
    lin = nn.Linear(4, 4, bias=True).double()  # a dense weight parameter
    r = Relaxed(lin, V, V)
    assert _value(r.equivariant_sq()) == pytest.approx(_value(lin.weight.pow(2).sum()))
    vn = VNLinear(3, 2).double()  # kron(W, I_3) on the flattened features
    r = Relaxed(vn)
    assert _value(r.equivariant_sq()) == pytest.approx(3 * _value(vn.weight.pow(2).sum()))
    conv = GroupConv2d(2, 3, "C4", image_size=5).double()  # the kernel with its group copies
    r = Relaxed(conv, free_bias=True, init_std=0.1)
    assert _value(r.equivariant_sq()) == pytest.approx(4 * _value(conv.weight.pow(2).sum()))
    assert _value(r.free_sq()) == pytest.approx(_value(r.free.conv.weight.pow(2).sum()))


class _PlainSpace(HomSpace):
    """A hom-space of no known construction (the dense Gram fallback), backed by another."""

    def __init__(self, inner: HomSpace) -> None:
        super().__init__(inner.rep_in, inner.rep_out)
        self.inner, self.dim = inner, inner.dim

    def weight(self, coefficients):
        return self.inner.weight(coefficients)

    def coefficients(self, w):
        return self.inner.coefficients(w)

    def basis_sq_norm(self):
        return self.inner.basis_sq_norm()


@pytest.mark.parametrize("case", ["orbit", "block", "dense"])
def test_basis_gram_gives_the_frobenius_norm(case):
    if case == "orbit":
        G = er.groups.symmetric(4)
        space = er.hom(er.reps.natural(G), er.reps.regular(G) + er.reps.trivial(G))
    else:
        S = er.groups.SO(3)
        v, t = er.reps.vector(S), er.reps.trivial(S)
        space = er.hom(2 * v + t, 3 * v + 2 * t)
    if case == "dense":
        space = _PlainSpace(space)
    gram = basis_gram(space)
    assert isinstance(gram, BasisGram) and basis_gram(space) is gram  # cached
    c = torch.randn(space.dim, dtype=torch.float64)
    expected = float(space.weight(c).pow(2).sum())
    assert float(gram.sq_norm(c)) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=f"expected {space.dim} coefficients, got"):
        gram.sq_norm(torch.zeros(space.dim + 1, dtype=torch.float64))
