"""Relaxing structured layers whose features are shaped tensors (``layout=``): the same free
term, outputs and penalties as the flat layer; channels last refused early."""

from __future__ import annotations

import pytest
import torch

import equirelax as er
from equirelax.nn import EquivariantLinear


def _square(n: int = 5):
    v = er.reps.natural(er.groups.symmetric(n))
    return v * v


@pytest.mark.parametrize("layout, copies_in, copies_out",
                         [("tensor", 1, 1), ("channels_first", 3, 2)])
def test_shaped_layers_relax_like_their_flat_twin(layout, copies_in, copies_out):
    VV = _square()
    shaped = EquivariantLinear(copies_in * VV, copies_out * VV, layout=layout,
                               structured=True).double()
    flat = EquivariantLinear(copies_in * VV, copies_out * VV, structured=True).double()
    flat.load_state_dict(shaped.state_dict())
    relaxed = []
    for layer in (shaped, flat):
        torch.manual_seed(1)  # the same free term for both
        r = er.relaxation.Relaxed(layer, free_rank=2, free_bias=True).double()
        r.theta = 0.5
        relaxed.append(r)
    x = torch.randn(4, copies_in, 5, 5, dtype=torch.float64)
    x_shaped = x[:, 0] if layout == "tensor" else x
    y_shaped = relaxed[0](x_shaped)
    y_flat = relaxed[1](x.flatten(1))
    assert y_shaped.shape == (4, *shaped.tensor_layout.shape_out)
    torch.testing.assert_close(y_shaped.reshape(4, -1), y_flat, atol=1e-12, rtol=0)
    for got, want in zip(relaxed[0].take_squares(), relaxed[1].take_squares()):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
        assert float(want.detach()) > 0  # a random free term is not equivariant


def test_relaxed_shaped_model_trains_and_hardens_to_an_equivariant_layer():
    VV = _square()
    model = torch.nn.Sequential(
        EquivariantLinear(2 * VV, 3 * VV, layout="channels_first", structured=True)).double()
    relaxed = er.relax(model, total_steps=3, free_rank=2)
    opt = torch.optim.SGD(relaxed.parameters(), lr=1e-3)
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    for _ in range(2):
        loss = relaxed(x).pow(2).mean() + relaxed.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        relaxed.step()
    exact = er.harden(relaxed, mode="project")[0]
    assert exact.layout == "channels_first"
    from equirelax.testing import assert_equivariant

    assert_equivariant(exact)


def test_channels_last_layers_are_refused_with_the_way_out():
    VV = _square()
    layer = EquivariantLinear(2 * VV, 3 * VV, layout="channels_last")
    with pytest.raises(ValueError, match=r"layout='channels_first'.*got layout='channels_last'"):
        er.relax(torch.nn.Sequential(layer), total_steps=3, free_rank=2)
