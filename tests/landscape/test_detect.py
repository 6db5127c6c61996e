import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.groups.subgroups import transitive_pieces
from equirelax.landscape import (
    EquivariantSubspace,
    detect_hidden_rep,
    hidden_symmetry_group,
    permute_hidden,
    read_mlp,
)

CASES = [
    ("S3", "natural"),
    ("S3", "3*trivial"),
    ("S3", "regular"),
    ("S3", "natural+2*trivial"),
    ("C4", "regular+natural"),
    ("C5", "2*natural+trivial"),
    ("D4", "natural+pairs"),
    ("A4", "natural+trivial"),
    ("S4", "natural+pairs"),
    ("S4", "2*natural"),
]


def _types(G, images):
    return sorted(p.stabiliser.index for p in transitive_pieces(G, images))


def _scramble(layout, theta, rng, activation):
    """A random hidden-neuron permutation, with sign flips (tanh) or positive rescalings (relu)
    that keep the function."""
    h = layout.widths[1]
    perm = rng.permutation(h)
    if activation == "tanh":
        return permute_hidden(layout, theta, [perm], [rng.choice([-1.0, 1.0], size=h)]), perm
    moved = permute_hidden(layout, theta, [perm])
    if activation == "relu":
        scale = torch.from_numpy(rng.uniform(0.3, 3.0, size=h))
        (w1, b1), (w2, b2) = layout.split(moved)
        moved = layout.join([(w1 * scale[:, None], b1 * scale), (w2 / scale[None, :], b2)])
    return moved, perm


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(CASES), st.sampled_from(["tanh", "relu", "gelu"]), st.integers(0, 2**16))
def test_recovers_a_planted_rep_after_scrambling_the_neurons(planted, case, activation, seed):
    group, spec = case
    G, rep_in, rep_out, model = planted(group, spec, activation, seed=seed % 7)
    layout, theta = read_mlp(model)
    rng = np.random.default_rng(seed)
    moved, perm = _scramble(layout, theta, rng, activation)
    x = torch.randn(16, G.degree, dtype=torch.float64)
    scrambled = layout.module(moved)
    assert torch.allclose(scrambled(x), model(x), atol=1e-12)  # same function
    det = detect_hidden_rep(scrambled, G, rep_in, rep_out, x=x)
    assert det.success, det.reason
    assert det.residual < 1e-10 and det.distance < 1e-12
    assert det.equivariance_error < 1e-12
    # the planted rep conjugated by the scrambling permutation, found exactly
    planted_rep = model.hidden_reps[0]
    assert _types(G, det.hidden_reps[0].images) == _types(G, planted_rep.images)
    for found, image in zip(det.hidden_reps[0].images, planted_rep.images):
        assert np.array_equal(found[perm], perm[image])  # found = σ ρ σ⁻¹
    assert torch.allclose(det.canonical(x), model(x), atol=1e-12)


def test_two_hidden_layers():
    G = er.groups.dihedral(4)
    rep_in, rep_out = er.reps.natural(G), er.reps.natural(G)
    hidden = [er.reps.parse(G, "regular"), er.reps.parse(G, "natural+trivial")]
    torch.manual_seed(3)
    model = er.nn.EquivariantMLP(rep_in, hidden, rep_out, activation="tanh").double()
    with torch.no_grad():
        for layer in model.linears:
            layer.bias_coefficients.normal_()
    layout, theta = read_mlp(model)
    rng = np.random.default_rng(0)
    perms = [rng.permutation(8), rng.permutation(5)]
    moved = permute_hidden(layout, theta, perms, [rng.choice([-1.0, 1.0], 8),
                                                  rng.choice([-1.0, 1.0], 5)])
    det = detect_hidden_rep(layout.module(moved), G, rep_in, rep_out)
    assert det.success, det.reason
    assert det.decomposition == "[D4/1]; [D4/D4] + [D4/C2a]"
    assert len(det.layers) == 2 and det.distance < 1e-12


@pytest.mark.parametrize("group", ["S3", "D4", "S4"])
def test_a_network_that_is_not_equivariant_is_reported_as_a_failure(group):
    G = er.groups.from_name(group)
    rep_in, rep_out = er.reps.natural(G), er.reps.trivial(G)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(G.degree, 6), torch.nn.Tanh(),
                              torch.nn.Linear(6, 1)).double()
    det = detect_hidden_rep(net, G, rep_in, rep_out)
    assert not det.success
    assert "not equivariant" in det.reason or "no representation" in det.reason
    assert det.residual > det.tol


def test_an_equivariant_network_with_large_noise_fails_and_small_noise_passes(planted):
    G, rep_in, rep_out, model = planted("S3", "regular")
    layout, theta = read_mlp(model)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(theta.shape, generator=gen, dtype=torch.float64)
    small = detect_hidden_rep(layout.module(theta + 1e-5 * noise), G, rep_in, rep_out)
    assert small.success and small.residual < 1e-3
    large = detect_hidden_rep(layout.module(theta + 0.3 * noise), G, rep_in, rep_out)
    assert not large.success and large.residual > large.tol


def test_output_layer_violations_are_caught():
    G, rep_in = er.groups.symmetric(3), er.reps.natural(er.groups.symmetric(3))
    rep_out = er.reps.trivial(G)
    torch.manual_seed(1)
    model = er.nn.EquivariantMLP(rep_in, [rep_in], rep_out, activation="tanh").double()
    layout, theta = read_mlp(model)
    (w1, b1), (w2, b2) = layout.split(theta)
    w2 = w2 + torch.tensor([[0.5, -0.5, 0.0]], dtype=torch.float64)
    det = detect_hidden_rep(layout.module(layout.join([(w1, b1), (w2, b2)])), G, rep_in, rep_out)
    assert not det.success and "output layer" in det.reason


def test_signed_rep_that_no_flip_removes():
    """C2 swapping two inputs, a neuron tanh(x0 - x1) and a sign output: the neuron goes to
    minus itself, a signed rep that is not a coboundary (no flip makes it a permutation rep)."""
    G = er.groups.cyclic(2)
    rep_in, rep_out = er.reps.natural(G), er.reps.sign(G)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(),
                              torch.nn.Linear(3, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0], [0.7, -0.3], [0.3, -0.7]]))
        net[0].bias.copy_(torch.tensor([0.0, 0.2, -0.2]))
        net[2].weight.copy_(torch.tensor([[1.5, 0.8, 0.8]]))
        net[2].bias.zero_()
    x = torch.randn(32, 2, dtype=torch.float64)
    det = detect_hidden_rep(net, G, rep_in, rep_out, x=x)
    assert det.success, det.reason
    assert det.equivariance_error < 1e-12
    assert not det.layers[0].coboundary and not det.is_permutation
    assert "signed" in det.decomposition
    assert det.distance < 1e-12
    # without sign flips (a generic activation) no permutation rep fits
    assert not detect_hidden_rep(net, G, rep_in, rep_out, activation="gelu").success


def test_duplicated_neurons_are_reported(planted):
    G, rep_in, rep_out, model = planted("S3", "2*natural")
    layout, theta = read_mlp(model)
    (w1, b1), (w2, b2) = layout.split(theta)
    w1, b1 = w1.clone(), b1.clone()
    w1[3:], b1[3:] = w1[:3], b1[:3]  # the second natural copy duplicates the first
    det = detect_hidden_rep(layout.module(layout.join([(w1, b1), (w2, b2)])), G, rep_in,
                            rep_out)
    assert {(i, j) for _, i, j in det.duplicates} == {(0, 3), (1, 4), (2, 5)}
    assert det.success


def test_hidden_symmetry_of_the_detected_rep(planted):
    G, rep_in, rep_out, model = planted("S3", "regular")
    det = detect_hidden_rep(model, G, rep_in, rep_out)
    assert hidden_symmetry_group(det.hidden_reps).order == 6


def test_bad_input_fails_early():
    G = er.groups.symmetric(3)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    with pytest.raises(ValueError, match="R\\^4"):
        detect_hidden_rep(net, G, er.reps.natural(G), er.reps.trivial(G))
    with pytest.raises(ValueError, match="rep_in must be a Rep of S3"):
        detect_hidden_rep(net, G, er.reps.natural(er.groups.symmetric(4)), er.reps.trivial(G))
    space = EquivariantSubspace(er.reps.natural(G), [er.reps.natural(G)], er.reps.trivial(G))
    assert space.dim == 5


@pytest.mark.parametrize(("group", "spec"), [("S3", "natural"), ("S3", "regular"),
                                             ("S4", "natural"), ("S4", "regular"),
                                             ("D4", "natural+2*trivial")])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_half_a_percent_of_weight_noise_keeps_the_decomposition(planted, group, spec, seed):
    """Noise of 0.5% of the weight norm failed detection (the residual was a worst row against
    the mean row norm); relative to the weight norm it moves each residual by at most 2 × 0.5%,
    and the answer is the planted decomposition, reported with its residual."""
    G, rep_in, rep_out, model = planted(group, spec, seed=seed)
    layout, theta = read_mlp(model)
    clean = detect_hidden_rep(model, G, rep_in, rep_out)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(theta.shape, generator=gen, dtype=torch.float64)
    noisy = theta + 0.005 * float(theta.norm()) * noise / noise.norm()
    det = detect_hidden_rep(layout.module(noisy), G, rep_in, rep_out)
    assert det.success, det.reason
    assert det.decomposition == clean.decomposition
    assert 0 < det.residual <= 2 * 0.005
    assert f"residual {det.residual:.2e}" in det.describe()
    assert det.layers[0].row_residuals  # the per-neuron view is still reported
