"""Tests of the steerable SEGNN layers (equirelax.nn.segnn): O(3) equivariance, linearity in the
feature, the bias, the parameterisation."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from equirelax.nn.segnn import (
    SteerableGatedLinear,
    SteerableLinear,
    balanced_hidden_irreps,
)
from tests.helpers.irreps import irreps_matrix
from tests.helpers.particles import (
    orthogonal,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # a fixture of tests/conftest.py


def test_irreps_matrix_is_a_representation():
    irreps = o3.Irreps("2x0e+1x0o+1x1o+1x1e+1x2e+1x2o")
    a, b = orthogonal(1, True, torch.float64), orthogonal(2, False, torch.float64)
    torch.testing.assert_close(
        irreps_matrix(irreps, a @ b), irreps_matrix(irreps, a) @ irreps_matrix(irreps, b)
    )
    torch.testing.assert_close(irreps_matrix(o3.Irreps("1o"), a), a)  # xyz order, polar vector
    torch.testing.assert_close(irreps_matrix(o3.Irreps("1e"), a), -a)  # axial vector
    torch.testing.assert_close(irreps_matrix(irreps, a), irreps.D_from_matrix(a), atol=1e-6,
                               rtol=0)


def steerable_layer_cases():
    return [
        (SteerableLinear, "2x0e+3x1o+1x2e", "4x0e+2x1o+1x1e", "1x0e+1x1o+1x2e"),
        (SteerableGatedLinear, "3x0e+2x1o+2x0e+1x1o", "5x0e+3x1o", "1x0e+1x1o"),
        (SteerableLinear, "1x1o+1x1o+1x0e", "32x0e+32x1o", "1x0e+1x1o"),
    ]


@pytest.mark.parametrize(("cls", "irreps_in", "irreps_out", "irreps_attr"),
                         steerable_layer_cases())
@pytest.mark.parametrize("reflect", [False, True])
def test_steerable_layers_are_o3_equivariant(cls, irreps_in, irreps_out, irreps_attr, reflect):
    torch.manual_seed(0)
    layer = cls(irreps_in, irreps_out, irreps_attr).double()
    with torch.no_grad():
        layer.linear.bias.normal_() if cls is SteerableGatedLinear else layer.bias.normal_()
    x = layer.irreps_in.randn(10, -1, dtype=torch.float64)
    a = layer.irreps_attr.randn(10, -1, dtype=torch.float64)
    rot = orthogonal(3, reflect, torch.float64)
    d_in, d_attr, d_out = (irreps_matrix(ir, rot) for ir in
                           (layer.irreps_in, layer.irreps_attr, layer.irreps_out))
    torch.testing.assert_close(layer(x @ d_in.T, a @ d_attr.T), layer(x, a) @ d_out.T)


@pytest.mark.parametrize("cls", [SteerableLinear, SteerableGatedLinear])
def test_steerable_maps_are_linear_in_the_feature_before_the_gate(cls):
    torch.manual_seed(0)
    layer = cls("4x0e+2x1o", "3x0e+2x1o", "1x0e+1x1o").double()
    linear = layer if cls is SteerableLinear else layer.linear
    with torch.no_grad():
        linear.bias.normal_()
    x, y = (layer.irreps_in.randn(5, -1, dtype=torch.float64) for _ in range(2))
    a = layer.irreps_attr.randn(5, -1, dtype=torch.float64)
    zero = linear(torch.zeros_like(x), a)
    torch.testing.assert_close(linear(2 * x - y, a) - zero,
                               2 * (linear(x, a) - zero) - (linear(y, a) - zero))


def test_bias_only_on_even_scalars():
    layer = SteerableLinear("2x0e+1x1o", "3x0e+2x0o+2x1o", "1x0e")
    assert layer.bias.shape == (3,)
    assert layer.bias_mask.tolist() == [True] * 3 + [False] * (2 + 6)


def _relative_adam_step(weight: torch.nn.Parameter, loss_fn) -> float:
    before = weight.detach().clone()
    opt = torch.optim.Adam([weight], lr=1e-3)
    opt.zero_grad()
    loss_fn().backward()
    opt.step()
    return float((weight.detach() - before).norm() / before.norm())


def test_parameterised_like_nn_linear_under_adam():
    """The reference SEGNN's parameterisation: one Adam step moves a steerable layer's weights
    by the same relative amount as an nn.Linear of the same fan-in (e3nn's N(0, 1) weights with
    a 1/sqrt(fan_in) output moved sqrt(3 fan_in) ≈ 10x less here), and the forward scale and
    bias match nn.Linear's too."""
    torch.manual_seed(0)
    irreps_in, irreps_attr = o3.Irreps("16x0e+16x1o"), o3.Irreps("1x0e+1x1o")  # fan_in 32
    layer = SteerableLinear(irreps_in, "16x0e", irreps_attr)
    linear = torch.nn.Linear(32, 16)
    x, a = irreps_in.randn(256, -1), irreps_attr.randn(256, -1)
    target = torch.randn(256, 16)
    ours = _relative_adam_step(layer.tp.weight, lambda: ((layer(x, a) - target) ** 2).mean())
    xs = torch.randn(256, 32)
    ref = _relative_adam_step(linear.weight, lambda: ((linear(xs) - target) ** 2).mean())
    assert 0.7 < ours / ref < 1.4
    # weights and bias drawn from U(±1/sqrt(fan_in)); outputs as large as nn.Linear's
    assert float(layer.tp.weight.abs().max()) <= 32 ** -0.5
    assert float(layer.bias.abs().max()) <= 32 ** -0.5 and float(layer.bias.abs().max()) > 0
    big_x, big_a = irreps_in.randn(4000, -1), irreps_attr.randn(4000, -1)
    with torch.no_grad():
        var_ours = float(layer(big_x, big_a).var(0).mean())
        var_ref = float(linear(torch.randn(4000, 32)).var(0).mean())
    assert 0.6 < var_ours / var_ref < 1.6


def test_balanced_hidden_irreps():
    assert balanced_hidden_irreps(32, 1) == o3.Irreps("32x0e+32x1o")
    assert balanced_hidden_irreps(8, 2) == o3.Irreps("8x0e+8x1o+8x2e")
    with pytest.raises(ValueError, match="lmax=-1"):
        balanced_hidden_irreps(8, -1)
