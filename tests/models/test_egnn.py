"""Tests of the N-body EGNN (equirelax.models.EGNN): E(3) and permutation equivariance,
batching, and relaxation of its node-update maps."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equirelax.models import EGNN
from equirelax.relaxation import harden, relax
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
def model32() -> EGNN:
    torch.manual_seed(0)
    return EGNN().eval()


def test_shapes_and_default_configuration(model32):
    loc, vel, charges = particles(7, 5, torch.float32)
    out = model32(loc, vel, charges)
    assert out.shape == (7, 5, 3) and out.dtype == torch.float32
    assert model32.hidden_features == 64 and len(model32.layers) == 4
    assert torch.equal(out, model32(loc, vel, charges[..., None]))  # (B, N, 1) charges


@pytest.mark.parametrize("reflect", [False, True])
def test_e3_equivariance_float32(model32, reflect):
    # the prediction, and the displacement alone (what the network adds)
    assert_e3_equivariant(model32, 3, reflect, torch.tensor([2.0, -1.0, 3.0]))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), reflect=st.booleans(), n=st.integers(2, 6))
def test_e3_equivariance_float64(seed, reflect, n):
    torch.manual_seed(seed)
    model = EGNN(hidden_features=16, num_layers=2).double()
    loc, vel, charges = particles(3, n, torch.float64, seed=seed)
    rot = orthogonal(seed, reflect, torch.float64)
    # a different translation for every graph of the batch
    shift = torch.randn(3, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        moved = model(loc @ rot.T + shift, vel @ rot.T, charges)
        expected = model(loc, vel, charges) @ rot.T + shift
    assert relative_error(moved, expected) <= 1e-12


def test_permutation_equivariance_over_nodes(model32):
    loc, vel, charges = particles(4, 5, torch.float32, seed=2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        base = model32(loc, vel, charges)
        permuted = model32(loc[:, perm], vel[:, perm], charges[:, perm])
    torch.testing.assert_close(permuted, base[:, perm], rtol=1e-5, atol=1e-5)


def test_graphs_in_a_batch_do_not_interact(model32):
    loc, vel, charges = particles(5, 5, torch.float32, seed=3)
    with torch.no_grad():
        batched = model32(loc, vel, charges)
        single = model32(loc[2:3], vel[2:3], charges[2:3])
    torch.testing.assert_close(batched[2:3], single, rtol=1e-5, atol=1e-6)


def test_output_depends_on_charges_and_velocities(model32):
    loc, vel, charges = particles(2, 5, torch.float32, seed=4)
    with torch.no_grad():
        base = model32(loc, vel, charges)
        assert not torch.allclose(base, model32(loc, vel, -charges * charges.roll(1, 1)))
        assert not torch.allclose(base, model32(loc, 2 * vel, charges))


def test_fits_a_few_samples():
    torch.manual_seed(0)
    model = EGNN(hidden_features=16, num_layers=2)
    losses = fit_losses(model, 60)
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize(
    ("loc_shape", "vel_shape", "charge_shape", "message"),
    [
        ((2, 5, 2), (2, 5, 2), (2, 5), r"loc \(positions\) expects inputs of shape \(B, N, 3\)"),
        ((2, 5, 3), (2, 4, 3), (2, 5), r"vel \(velocities"),
        ((2, 5, 3), (2, 5, 3), (2, 4), "charges expects"),
        ((2, 1, 3), (2, 1, 3), (2, 1), "at least 2 particles"),
    ],
)
def test_bad_input_fails_early(model32, loc_shape, vel_shape, charge_shape, message):
    with pytest.raises(ValueError, match=message):
        model32(torch.zeros(loc_shape), torch.zeros(vel_shape), torch.zeros(charge_shape))


def test_bad_configuration_fails_early():
    with pytest.raises(ValueError, match="num_layers=0"):
        EGNN(num_layers=0)


def test_relax_picks_the_node_updates_and_the_penalty_sees_o3():
    torch.manual_seed(0)
    model = EGNN(hidden_features=8, num_layers=3).double()
    relaxed = relax(model, schedule="constant", value=0.5, lie_weight=1.0, norm_weight=1.0)
    assert list(relaxed.relaxed_layers()) == [f"layers.{i}.update" for i in range(3)]
    # the default model: one dense (2H + 6) -> (H + 3) free term per layer, no bias
    default = relax(EGNN(), total_steps=3)
    extra = sum(p.numel() for p in default.parameters()) - sum(
        p.numel() for p in EGNN().parameters())
    assert extra == 4 * (2 * 64 + 6) * (64 + 3) == 35_912
    loc, vel, charges = particles(4, 5, torch.float64, seed=6)
    relaxed.train()
    randomise_free(relaxed)
    relaxed(loc, vel, charges)
    assert relaxed.penalties()["lie"].item() > 1e-1
    # an equivariant free term (the projection onto Hom_O(3)) has a vanishing penalty
    make_free_equivariant(relaxed)
    relaxed(loc, vel, charges)
    squares = [layer.take_squares()[0] for layer in relaxed.relaxed_layers().values()]
    assert all(float(s) < 1e-20 for s in squares)


def test_relaxed_egnn_breaks_rotations_but_not_translations_and_hardens_exact():
    torch.manual_seed(0)
    model = EGNN(hidden_features=8, num_layers=2).double()
    relaxed = relax(model, schedule="constant", value=1.0)
    randomise_free(relaxed, std=0.3)
    relaxed.train()
    loc, vel, charges = particles(3, 5, torch.float64, seed=7)
    rot = orthogonal(8, True, torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    with torch.no_grad():
        base = relaxed(loc, vel, charges)
        # the free term sees only relative positions and velocities: translations stay exact
        torch.testing.assert_close(relaxed(loc + shift, vel, charges), base + shift)
        assert relative_error(relaxed(loc @ rot.T, vel @ rot.T, charges), base @ rot.T) > 1e-3
        hard = harden(relaxed)
        assert type(hard) is EGNN and list(hard.state_dict()) == list(model.state_dict())
        torch.testing.assert_close(hard(loc @ rot.T + shift, vel @ rot.T, charges),
                                   hard(loc, vel, charges) @ rot.T + shift)


def test_relaxed_egnn_pickles_and_copies_with_identical_outputs():
    """Users pickle models (DataLoader workers, Ray, joblib): an EGNN holds O(3) reps whose sums
    had closures for their matrices, and a relaxed one closures for its group actions."""
    import copy
    import pickle

    torch.manual_seed(0)
    relaxed = relax(EGNN(hidden_features=8, num_layers=2).double(), total_steps=10)
    randomise_free(relaxed, std=0.3)
    for _ in range(3):
        relaxed.step()
    relaxed.train()
    loc, vel, charges = particles(2, 4, torch.float64, seed=3)
    relaxed(loc, vel, charges)  # fills the action caches
    mine = relaxed.penalties()
    with torch.no_grad():
        expected = relaxed(loc, vel, charges)
    for loaded in (pickle.loads(pickle.dumps(relaxed)), copy.deepcopy(relaxed)):
        assert loaded.theta == relaxed.theta > 0
        torch.testing.assert_close(loaded(loc, vel, charges), expected, atol=0, rtol=0)
        theirs = loaded.penalties()
        for name in mine:
            torch.testing.assert_close(theirs[name], mine[name], atol=0, rtol=0)
        hard = harden(loaded)
        assert type(hard) is EGNN
        torch.testing.assert_close(hard(loc, vel, charges), harden(relaxed)(loc, vel, charges),
                                   atol=0, rtol=0)
    plain = EGNN(hidden_features=8, num_layers=1).double().eval()
    with torch.no_grad():
        torch.testing.assert_close(pickle.loads(pickle.dumps(plain))(loc, vel, charges),
                                   plain(loc, vel, charges), atol=0, rtol=0)
