"""RelaxedModel.penalty() as one autograd node when only the Lie and norm penalties are weighted:
image_squares.image_penalty when every square comes from fused layers' images, else
relaxed_model.weighted_roots of the recorded squares. The value and every gradient, first and
second order, equal the weighted sum of ``penalties()`` (ordinary operations), in float64 to
1e-12, by either node."""

from __future__ import annotations

import pytest
import torch

from equirelax.relaxation import relax
from equirelax.relaxation.fused import new_step
from equirelax.relaxation.relaxed_model import weighted_roots

#: How the layers record their squares, and the node penalty() then ends in: every layer's
#: images (fused nodes), every layer's squares by the Gram path, or the first layer by Gram
#: and the others by images
ROUTES = {"images": "_ImagePenaltyBackward", "gram": "_WeightedRootsBackward",
          "mixed": "_WeightedRootsBackward"}


def _relaxed(model, route: str = "images", **options):
    relaxed = relax(model, total_steps=10, init_std=0.3, **options).train()
    relaxed.t = 4
    relaxed.step()
    layers = list(relaxed.relaxed_layers().values())
    for layer in layers if route == "gram" else layers[:1] if route == "mixed" else []:
        layer.penalty_method = "gram"
    return relaxed


def _penalty_and_grads(relaxed, x, one_node: str | None, second_order: bool = False):
    for p in relaxed.parameters():
        p.grad = None
    new_step()
    torch.manual_seed(5)
    xg = x.clone().requires_grad_()
    out = relaxed(xg).pow(2).mean()
    if one_node:
        penalty = relaxed.penalty()
        assert penalty.grad_fn.name() == one_node
    else:  # the weighted sum of the penalties' dict, in ordinary operations
        p = relaxed.penalties()
        penalty = relaxed.lie_weight * p["lie"] + relaxed.norm_weight * p["norm"]
        if relaxed.penalty_times_theta:
            penalty = penalty * relaxed.theta
    loss = out + penalty
    if second_order:  # a gradient penalty: differentiates the penalty's backward again
        (dx,) = torch.autograd.grad(loss, xg, create_graph=True)
        grads = torch.autograd.grad(dx.pow(2).sum() + penalty,
                                    [p for p in relaxed.parameters() if p.requires_grad])
    else:
        loss.backward()
        grads = [p.grad for p in relaxed.parameters() if p.requires_grad]
    return penalty.detach(), grads


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("fixture", ["s4_model", "so3_model"])
@pytest.mark.parametrize("options", [{}, {"penalty_sketch": 3}, {"penalty_times_theta": True},
                                     {"lie_weight": 0.3, "norm_weight": 0.0},
                                     {"lie_weight": 0.0, "norm_weight": 0.2},
                                     {"penalty_rows": 7}])
def test_one_node_penalty_equals_the_weighted_penalties(fixture, options, route, request):
    relaxed = _relaxed(request.getfixturevalue(fixture), route, **options)
    x = torch.randn(20, relaxed.rep_in.dim, dtype=torch.float64)
    got, got_grads = _penalty_and_grads(relaxed, x, one_node=ROUTES[route])
    want, want_grads = _penalty_and_grads(relaxed, x, one_node=None)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_one_node_penalty_second_derivatives(so3_model, route):
    relaxed = _relaxed(so3_model, route, penalty_sketch=3)
    x = torch.randn(12, relaxed.rep_in.dim, dtype=torch.float64)
    _, got = _penalty_and_grads(relaxed, x, one_node=ROUTES[route], second_order=True)
    _, want = _penalty_and_grads(relaxed, x, one_node=None, second_order=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_an_equivariant_free_term_gives_the_root_of_epsilon(s4_model, route):
    relaxed = _relaxed(s4_model, route, penalty_sketch=3, norm_weight=0.0)
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            layer.free.weight.zero_()
    relaxed(torch.randn(10, 4, dtype=torch.float64))
    assert float(relaxed.penalty().detach()) == pytest.approx(1e-2 * 1e-6, rel=1e-12)


def test_weighted_roots_refuses_an_empty_list():
    with pytest.raises(ValueError, match="both lists"):
        weighted_roots([], [torch.ones(())], 1.0, 1.0, 1e-12)
