"""The prediction-matrix codebook: exact at nodes, linear between them, periodic in theta."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.scg.codebook import PredictionCodebook, rotation_weights, translation_weights


def _codebook(n_r: int) -> PredictionCodebook:
    torch.manual_seed(0)
    cb = PredictionCodebook(modules=3, units=2, n_t=5, n_r=n_r, init_noise=0.5)
    return cb


def test_nodes_return_table_entries():
    cb = _codebook(6)
    t = cb.node_offsets()
    for r, ang in enumerate(cb.node_angles()):
        for iy in (0, 2, 4):
            for ix in (0, 1, 4):
                m = cb.lookup(torch.tensor([[t[ix], t[iy]]]), torch.tensor([ang]))[0]
                torch.testing.assert_close(m, cb.table[r, iy, ix].detach())


@settings(max_examples=30, deadline=None)
@given(theta=st.floats(-20.0, 20.0), dx=st.floats(-0.5, 0.5), dy=st.floats(-0.5, 0.5))
def test_periodic_in_theta(theta, dx, dy):
    cb = _codebook(8)
    off = torch.tensor([[dx, dy]])
    a = cb.lookup(off, torch.tensor([theta]))
    b = cb.lookup(off, torch.tensor([theta + 2 * math.pi]))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_linear_between_nodes_and_wraps_past_last_angle():
    cb = _codebook(4)
    tab = cb.table.detach()
    # midway between translation nodes 1 and 2 along x, at angle node 0
    t = cb.node_offsets()
    mid = cb.lookup(torch.tensor([[(t[1] + t[2]) / 2, t[0]]]), torch.tensor([0.0]))[0]
    torch.testing.assert_close(mid, (tab[0, 0, 1] + tab[0, 0, 2]) / 2)
    # between the last angle node (3 pi / 2) and 2 pi == node 0
    m = cb.lookup(torch.tensor([[t[0], t[0]]]), torch.tensor([7 * math.pi / 4]))[0]
    torch.testing.assert_close(m, (tab[3, 0, 0] + tab[0, 0, 0]) / 2)


def test_translation_only_and_prediction_shapes():
    cb = _codebook(0)
    assert not cb.rotates
    with pytest.raises(ValueError, match="translation-only"):
        cb.lookup(torch.zeros(1, 2), torch.zeros(1))
    src = torch.randn(2, 6, 4, 4)
    pred = cb.predict(src, torch.zeros(2, 4, 4, 2))
    assert pred.shape == src.shape
    with pytest.raises(ValueError, match="theta is required"):
        _codebook(4).lookup(torch.zeros(1, 2))


def test_identity_codebook_predicts_source_exactly():
    cb = PredictionCodebook(modules=2, units=3, n_t=3, n_r=4, init_noise=0.0)
    src = torch.randn(2, 6, 5, 5)
    off = torch.rand(2, 5, 5, 2) - 0.5
    torch.testing.assert_close(cb.predict(src, off, torch.rand(2) * 7), src)


def test_random_start_and_distance_from_identity():
    torch.manual_seed(0)
    ident = PredictionCodebook(modules=3, units=4, n_t=3, n_r=2, init_noise=0.0)
    assert torch.all(ident.identity_distance() == 0)
    rand = PredictionCodebook(modules=3, units=4, n_t=3, n_r=2, init_noise=0.01, init="random")
    assert rand.table.abs().max() <= 0.01
    # a near-zero table is ||I||_F = 2 away from the identity
    torch.testing.assert_close(rand.identity_distance(), torch.full((3,), 2.0), atol=0.02,
                               rtol=0)
    with pytest.raises(ValueError, match="init"):
        PredictionCodebook(modules=1, units=1, init="zeros")


@pytest.mark.parametrize("n_r", [1, 4, 8])
def test_rotation_axis_is_the_natural_set_of_the_cyclic_group(n_r):
    """What the rotation axis is in the library's vocabulary: its ``n_r`` nodes are the points
    of ``natural(cyclic(n_r))`` and the interpolation weights are C_n_r-equivariant (turning the
    query by ``2 pi j / n_r`` permutes them as the element that shifts by ``j``). The matrices
    stored at the nodes are free parameters, not the images of a representation (see the scg
    paragraph of docs/architecture.md)."""
    G = er.groups.cyclic(n_r)
    V = er.reps.natural(G)
    theta = torch.tensor([0.0, 0.3, 1.0, 2.5, 4.0, -1.7], dtype=torch.float64)
    weights = rotation_weights(theta, n_r)
    for g in G.elements():
        j = int(g[0])  # the element that sends node k to node k + j
        turned = rotation_weights(theta + 2 * math.pi * j / n_r, n_r)
        expected = weights @ torch.as_tensor(V.matrix(g)).T
        torch.testing.assert_close(turned, expected, atol=1e-12, rtol=0)


def test_translation_axis_is_an_interval_not_a_group():
    """The offsets ``(d_x, d_y)`` live on ``[-0.5, 0.5]`` with both end nodes stored (not
    identified): an offset beyond half a feature is clamped, not wrapped, so no action of Z^2
    (or of the torus) permutes the translation nodes."""
    n_t = 5
    edge = translation_weights(torch.tensor([[0.5, 0.0], [-0.5, 0.0], [0.9, 0.0]]), n_t)
    assert not torch.equal(edge[0], edge[1])
    torch.testing.assert_close(edge[2], edge[0])
