"""Tests of the N-body SEGNN (equirelax.models.SEGNN): E(3)/permutation equivariance, per-graph
centring, and the node-update submodules used by the relaxation study."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3
from hypothesis import given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.models.segnn import SEGNN
from equirelax.nn.segnn import (
    SteerableGatedLinear,
    SteerableLinear,
    balanced_hidden_irreps,
)
from equirelax.relaxation import harden, relax
from tests.helpers.irreps import irreps_matrix
from tests.helpers.particles import (
    assert_e3_equivariant,
    fit_losses,
    make_free_equivariant,
    orthogonal,
    particles,
    randomise_free,
    relative_error,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # a fixture of tests/conftest.py


@pytest.fixture(scope="module")
def paper_model() -> SEGNN:
    """The paper's N-body configuration, float32."""
    torch.manual_seed(0)
    return SEGNN().eval()


@pytest.fixture(scope="module")
def small64() -> SEGNN:
    torch.manual_seed(1)
    return SEGNN("4x0e+4x1o", num_layers=2).double().eval()


def test_paper_configuration_and_parameter_count(paper_model):
    assert paper_model.hidden_irreps == o3.Irreps("32x0e+32x1o")
    assert len(paper_model.layers) == 4
    assert paper_model.attr_irreps == o3.Irreps("1x0e+1x1o")
    # 147,424 is the count of the published N-body SEGNN (lmax_h = 1, 64 features, 4 layers)
    assert sum(p.numel() for p in paper_model.parameters()) == 147_424


def test_shapes(paper_model):
    loc, vel, charges = particles(6, 5, torch.float32)
    with torch.no_grad():
        out = paper_model(loc, vel, charges)
    assert out.shape == (6, 5, 3) and out.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(out, paper_model(loc, vel, charges[..., None]))


@pytest.mark.parametrize("reflect", [False, True])
def test_e3_equivariance_float32(paper_model, reflect):
    # the prediction, and the predicted displacement alone to the same tolerance
    assert_e3_equivariant(paper_model, 7, reflect, torch.tensor([3.0, -2.0, 1.0]))


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), reflect=st.booleans(), n=st.integers(2, 6))
def test_e3_equivariance_float64(small64, seed, reflect, n):
    loc, vel, charges = particles(3, n, torch.float64, seed=seed)
    rot = orthogonal(seed, reflect, torch.float64)
    # a different translation for every graph: centring must be per graph
    shift = 5 * torch.randn(3, 1, 3, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        moved = small64(loc @ rot.T + shift, vel @ rot.T, charges)
        base = small64(loc, vel, charges)
    torch.testing.assert_close(moved, base @ rot.T + shift, rtol=0, atol=1e-11)


def test_per_node_coordinate_averaging_would_break_equivariance(small64):
    """The upstream input transform subtracts each node's mean over x, y, z; the same network
    fed such inputs is far from equivariant, ours is exact (this is what the centring fixes)."""
    loc, vel, charges = particles(4, 5, torch.float64, seed=11)
    rot = orthogonal(11, False, torch.float64)

    def per_node_centred(l: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # per-graph centring of per-node-centred positions = per-node centring (plus a shift)
        return small64(l - l.mean(dim=-1, keepdim=True), v, charges)

    with torch.no_grad():
        wrong = relative_error(per_node_centred(loc @ rot.T, vel @ rot.T),
                               per_node_centred(loc, vel) @ rot.T)
        right = relative_error(small64(loc @ rot.T, vel @ rot.T, charges),
                               small64(loc, vel, charges) @ rot.T)
    assert right < 1e-12 and wrong > 1e-3


def test_permutation_equivariance_over_nodes(small64):
    loc, vel, charges = particles(3, 5, torch.float64, seed=2)
    perm = torch.tensor([2, 4, 0, 1, 3])
    with torch.no_grad():
        base = small64(loc, vel, charges)
        permuted = small64(loc[:, perm], vel[:, perm], charges[:, perm])
    torch.testing.assert_close(permuted, base[:, perm])


def test_graphs_in_a_batch_do_not_interact(small64):
    loc, vel, charges = particles(4, 5, torch.float64, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(
            small64(loc, vel, charges)[1:2], small64(loc[1:2], vel[1:2], charges[1:2])
        )


def test_node_update_layers_are_exposed_with_their_irreps(paper_model):
    layers = paper_model.node_update_layers()
    names = [name for name, _ in layers]
    assert names == [f"layers.{i}.{part}" for i in range(4) for part in ("update_gated", "update")]
    hidden = o3.Irreps("32x0e+32x1o")
    for name, module in layers:
        assert module.irreps_out == hidden
        assert module.irreps_attr == paper_model.attr_irreps
        expected_in = hidden + hidden if name.endswith("gated") else hidden
        assert module.irreps_in == expected_in
    # dims of the paper's relaxation maps: W1 256 -> 128 and W2 128 -> 128 per layer
    assert [(m.irreps_in.dim, m.irreps_out.dim) for _, m in layers[:2]] == [(256, 128), (128, 128)]


def test_higher_order_hidden_irreps_remain_equivariant():
    torch.manual_seed(2)
    model = SEGNN(balanced_hidden_irreps(2, 2), num_layers=1, lmax_attr=2).double().eval()
    loc, vel, charges = particles(2, 4, torch.float64, seed=4)
    rot = orthogonal(9, True, torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(loc @ rot.T - 1.0, vel @ rot.T, charges),
                                   model(loc, vel, charges) @ rot.T - 1.0)


def test_fits_a_few_samples():
    torch.manual_seed(0)
    model = SEGNN("8x0e+8x1o", num_layers=2)
    losses = fit_losses(model, 40)
    assert losses[-1] < 0.3 * losses[0]


def test_bad_input_fails_early(small64):
    loc, vel, charges = particles(2, 5, torch.float64)
    with pytest.raises(ValueError, match=r"vel \(velocities"):
        small64(loc, vel[:, :4], charges)
    with pytest.raises(ValueError, match="charges expects"):
        small64(loc, vel, charges[:, :3])
    layer = SteerableLinear("2x0e", "1x0e", "1x0e")
    with pytest.raises(ValueError, match=r"x \(2x0e\) expects inputs of shape \(\.\.\., 2\)"):
        layer(torch.zeros(4, 3), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="no tensor-product path"):
        SteerableLinear("1x0e", "1x1o", "1x0e")
    with pytest.raises(ValueError, match="scalars before non-scalars"):
        SteerableGatedLinear("1x0e", "1x1o+1x0e", "1x0e")
    with pytest.raises(ValueError, match="num_layers=0"):
        SEGNN(num_layers=0)


def test_relax_picks_exactly_the_node_update_maps(paper_model, small64):
    relaxed = relax(paper_model, total_steps=10, init_std=1e-4)
    names = [name for name, _ in paper_model.node_update_layers()]
    assert list(relaxed.relaxed_layers()) == names
    # the paper's count: 344,032 parameters while training, 196,608 of them in the free terms
    assert sum(p.numel() for p in relaxed.parameters()) == 344_032
    free = sum(p.numel() for layer in relaxed.relaxed_layers().values()
               for p in layer.free.parameters())
    assert free == 196_608
    # every other steerable map opts out, but can still be chosen by name
    assert not paper_model.embedding.relaxable and not paper_model.layers[0].message.relaxable
    assert not paper_model.layers[0].update_gated.linear.relaxable
    chosen = relax(small64, total_steps=10, layers=["layers.0.message"])
    assert list(chosen.relaxed_layers()) == ["layers.0.message"]


@pytest.mark.parametrize("name", ["layers.0.update_gated", "layers.0.update", "embedding",
                                  "layers.1.message_gated", "head"])
def test_declared_reps_are_the_actions_of_the_layer(small64, name):
    """rep_in/rep_out (equirelax reps of O(3)) act as e3nn's irreps: the layer commutes with
    them (the attribute transforming by its own irreps) for rotations and reflections."""
    layer = dict(small64.named_modules())[name]
    assert layer.rep_in.dim == layer.irreps_in.dim and layer.rep_out.dim == layer.irreps_out.dim
    assert layer.rep_in.group == er.groups.O(3)
    x = layer.irreps_in.randn(7, -1, dtype=torch.float64)
    a = layer.irreps_attr.randn(7, -1, dtype=torch.float64)
    for g in er.groups.O(3).sample(4, seed=1):
        d_in = torch.from_numpy(layer.rep_in.matrix(g))
        d_out = torch.from_numpy(layer.rep_out.matrix(g))
        d_attr = irreps_matrix(layer.irreps_attr, torch.from_numpy(g))
        torch.testing.assert_close(layer(x @ d_in.T, a @ d_attr.T), layer(x, a) @ d_out.T)


def test_relaxed_penalty_vanishes_exactly_for_equivariant_free_terms(small64):
    relaxed = relax(small64, schedule="constant", value=0.5, lie_weight=1.0, norm_weight=1.0)
    loc, vel, charges = particles(3, 5, torch.float64, seed=12)
    relaxed.train()
    relaxed(loc, vel, charges)
    assert relaxed.penalties()["lie"].item() > 1e-6  # random init: not equivariant
    randomise_free(relaxed)
    make_free_equivariant(relaxed)
    relaxed(loc, vel, charges)
    squares = [layer.take_squares() for layer in relaxed.relaxed_layers().values()]
    assert all(lie.item() < 1e-20 and norm.item() > 0 for lie, norm in squares)


def test_relaxed_segnn_hardens_to_an_exactly_equivariant_model(small64):
    relaxed = relax(small64, schedule="constant", value=1.0)
    randomise_free(relaxed, std=0.3)
    relaxed.train()
    loc, vel, charges = particles(3, 5, torch.float64, seed=13)
    rot = orthogonal(14, True, torch.float64)
    with torch.no_grad():
        moved = relaxed(loc @ rot.T, vel @ rot.T, charges)
        base = relaxed(loc, vel, charges)
        assert relative_error(moved - loc @ rot.T, (base - loc) @ rot.T) > 1e-3
        hard = harden(relaxed)
        assert type(hard) is SEGNN and list(hard.state_dict()) == list(small64.state_dict())
        torch.testing.assert_close(hard(loc @ rot.T + 2.0, vel @ rot.T, charges),
                                   hard(loc, vel, charges) @ rot.T + 2.0)
