"""Tests of the EGNN layers (equirelax.nn.egnn): the edges, the position update, and the
node-update map that declares its O(3) actions for constraint relaxation."""

from __future__ import annotations

import pytest
import torch

import equirelax as er
from equirelax.nn.egnn import EGNNLayer, EGNNNodeUpdate, fully_connected_edges
from tests.helpers.particles import (
    orthogonal,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # a fixture of tests/conftest.py


def test_fully_connected_edges_lists_every_ordered_pair_once_per_graph():
    receivers, senders = fully_connected_edges(3, 4)
    assert receivers.shape == senders.shape == (3 * 4 * 3,)
    pairs = set(zip(receivers.tolist(), senders.tolist()))
    assert len(pairs) == 36
    assert all(r != s and r // 4 == s // 4 for r, s in pairs)


def test_layer_moves_positions_by_equivariant_increments():
    torch.manual_seed(0)
    layer = EGNNLayer(8).double()
    receivers, senders = fully_connected_edges(1, 4)
    h = torch.randn(4, 8, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    v = torch.randn(4, 3, dtype=torch.float64)
    attr = torch.randn(12, 2, dtype=torch.float64)
    rot = orthogonal(5, True, torch.float64)
    h1, x1 = layer(h, x, v, attr, receivers, senders)
    h2, x2 = layer(h, x @ rot.T + 1.5, v @ rot.T, attr, receivers, senders)
    torch.testing.assert_close(h2, h1)  # node features are invariant
    torch.testing.assert_close(x2, x1 @ rot.T + 1.5)


def test_node_update_declares_the_o3_actions_it_is_equivariant_for():
    torch.manual_seed(0)
    update = EGNNNodeUpdate(6).double()
    assert (update.rep_in.dim, update.rep_out.dim) == (2 * 6 + 6, 6 + 3)
    assert update.rep_in.group == er.groups.O(3)
    features = torch.randn(10, 18, dtype=torch.float64)
    # sampled rotations and reflections, and the Lie algebra
    assert er.equivariance_error(update, features) <= 1e-12
    assert er.lie_derivative_error(update, features) <= 1e-10
    # the declaration is specific: vectors listed before the scalars would be wrong
    O3 = er.groups.O(3)
    swapped = 2 * er.reps.vector(O3) + 12 * er.reps.trivial(O3)
    assert er.equivariance_error(update, features, swapped, update.rep_out) > 1e-2
    with pytest.raises(ValueError, match=r"\(\.\.\., 18\)"):
        update(torch.zeros(3, 17, dtype=torch.float64))


def test_layer_output_is_unchanged_by_the_node_update_factoring():
    """EGNNLayer computes the published update: x + mean_j (x_i - x_j) phi_x + phi_v(h) v and
    h + phi_h(h, sum_j m)."""
    torch.manual_seed(0)
    layer = EGNNLayer(5).double()
    receivers, senders = fully_connected_edges(2, 3)
    h = torch.randn(6, 5, dtype=torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64)
    v = torch.randn(6, 3, dtype=torch.float64)
    attr = torch.randn(12, 2, dtype=torch.float64)
    diff = x[receivers] - x[senders]
    m = layer.edge_mlp(torch.cat([h[receivers], h[senders], diff.square().sum(-1, keepdim=True),
                                  attr], dim=-1))
    agg_x = torch.zeros_like(x).index_add_(0, receivers, diff * layer.coord_mlp(m)) / 2
    agg_h = torch.zeros_like(h).index_add_(0, receivers, m)
    expected_x = x + agg_x + layer.update.vel_mlp(h) * v
    expected_h = h + layer.update.node_mlp(torch.cat([h, agg_h], dim=-1))
    h1, x1 = layer(h, x, v, attr, receivers, senders)
    torch.testing.assert_close(x1, expected_x)
    torch.testing.assert_close(h1, expected_h)
