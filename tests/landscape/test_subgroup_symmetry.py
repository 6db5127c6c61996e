import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import equirelax as er
from equirelax.groups.subgroups import identify_subgroup, subgroup_classes
from equirelax.landscape import (
    detect_hidden_rep,
    detect_subgroup_symmetry,
    permute_hidden,
    read_mlp,
)

S4_ORDER_FOUR = {
    # two disjoint transpositions (not normal), a 4-cycle, the normal Klein group
    "V4a": [[1, 0, 2, 3], [0, 1, 3, 2]],
    "C4": [[1, 2, 3, 0]],
    "V4b": [[1, 0, 3, 2], [2, 3, 0, 1]],
}


def _subgroup_network(G, H_generators, hidden, seed=0, dtype=torch.float64):
    """A generic network natural(G) -> hidden -> trivial that is H-equivariant by construction:
    an EquivariantMLP of H (on G's points) with random weights and biases, its hidden neurons
    scrambled by a random permutation with sign flips (same function, tanh). Returns H, the
    plain MLP, the hidden rep of H as built and the scrambling permutation."""
    H = G.subgroup(H_generators)
    rep_in = er.reps.natural(H)
    rep_h = hidden(H)
    torch.manual_seed(seed)
    model = er.nn.EquivariantMLP(rep_in, [rep_h], er.reps.trivial(H), activation="tanh").double()
    with torch.no_grad():
        for layer in model.linears:
            layer.coefficients.normal_()
            layer.bias_coefficients.normal_()
    layout, theta = read_mlp(model)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(rep_h.dim)
    moved = permute_hidden(layout, theta, [perm], [rng.choice([-1.0, 1.0], size=rep_h.dim)])
    return H, layout.module(moved).to(dtype), rep_h, perm


def _same_rep_after_scrambling(found_H, found_rep, H, planted_rep, perm) -> bool:
    """The found rep is the planted one conjugated by the scrambling: ρ'(h) = σ ρ(h) σ⁻¹ on
    every element of H (compared element by element, the generators may differ)."""
    if found_rep.dim != planted_rep.dim:
        return False
    return all(
        np.array_equal(found_rep.perm(h)[perm], perm[planted_rep.perm(h)]) for h in H.elements()
    )


def _regular_plus_trivial(H):
    return er.reps.regular(H) + er.reps.trivial(H)


@pytest.mark.parametrize("name", sorted(S4_ORDER_FOUR))
def test_s4_networks_equivariant_under_an_order_four_subgroup(name):
    """The failed S4 students' case: equivariant under a subgroup of order 4 with a hidden rep
    of it, not under S4 (detect_hidden_rep says none); the detector names the subgroup's
    class, its order, the subgroup itself and the hidden rep, exactly."""
    G = er.groups.symmetric(4)
    H, net, planted, perm = _subgroup_network(G, S4_ORDER_FOUR[name], _regular_plus_trivial)
    rep_in, rep_out = er.reps.natural(G), er.reps.trivial(G)
    assert not detect_hidden_rep(net, G, rep_in, rep_out).success
    x = torch.randn(32, 4, dtype=torch.float64)
    found = detect_subgroup_symmetry(net, G, rep_in, rep_out, x=x)
    assert found.order == 4 and found.name == identify_subgroup(G, H).name == name
    assert set(map(tuple, found.subgroup.elements())) == set(map(tuple, H.elements()))
    assert found.residual < 1e-10 and found.detection.equivariance_error < 1e-12
    assert found.decomposition == f"[{name}/{name[:2]}] + [{name}/1]"
    assert _same_rep_after_scrambling(found.subgroup, found.hidden_reps[0], H, planted, perm)
    assert not found.is_full and not found.is_trivial
    assert [t.order for t in found.trials] == sorted((t.order for t in found.trials), reverse=True)
    assert f"largest subgroup {name} (order 4 of 24" in found.describe()


@pytest.mark.parametrize("transposition", [[1, 0, 2], [0, 2, 1], [2, 1, 0]])
def test_s3_network_equivariant_under_a_transposition(transposition):
    """The failed S3 students' case: a transposition; the conjugate that fits is found."""
    G = er.groups.symmetric(3)
    H, net, planted, perm = _subgroup_network(
        G, [transposition], lambda H: er.reps.regular(H) + 2 * er.reps.trivial(H), seed=1
    )
    found = detect_subgroup_symmetry(net, G, er.reps.natural(G), er.reps.trivial(G))
    assert found.order == 2 and found.subgroup.contains(transposition)
    assert found.matches == 1  # the other two transpositions do not fit
    assert _same_rep_after_scrambling(found.subgroup, found.hidden_reps[0], H, planted, perm)
    assert [(t.name, t.success) for t in found.trials] == [
        ("S3", False),
        ("C3", False),
        ("C2", True),
    ]


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(["S3", "D4", "A4", "S4"]), st.integers(0, 2**16))
def test_a_network_built_from_any_subgroup_gives_back_that_subgroup(group, seed):
    """Every class of subgroups, its regular rep plus a trivial neuron as hidden rep (faithful,
    generic weights): the largest subgroup found is the one planted, up to conjugacy, with the
    planted rep."""
    G = er.groups.from_name(group)
    classes = subgroup_classes(G)
    cls = classes[seed % len(classes)]
    H, net, planted, perm = _subgroup_network(
        G, cls.representative.generators, _regular_plus_trivial, seed=seed % 5
    )
    found = detect_subgroup_symmetry(net, G, er.reps.natural(G), er.reps.trivial(G))
    assert found.subgroup_class is cls
    assert found.residual < 1e-10
    assert _same_rep_after_scrambling(found.subgroup, found.hidden_reps[0], H, planted, perm)


@pytest.mark.parametrize(
    ("group", "spec"), [("S3", "natural"), ("S4", "natural+pairs"), ("D4", "regular")]
)
def test_a_fully_equivariant_network_gives_the_whole_group(planted, group, spec):
    G, rep_in, rep_out, model = planted(group, spec)
    found = detect_subgroup_symmetry(model, G, rep_in, rep_out)
    whole = detect_hidden_rep(model, G, rep_in, rep_out)
    assert found.is_full and found.order == G.order and found.subgroup_class.conjugates == 1
    assert found.decomposition == whole.decomposition
    assert [t.name for t in found.trials] == [subgroup_classes(G)[-1].name]


@pytest.mark.parametrize("group", ["S3", "D4", "S4"])
def test_a_generic_network_gives_the_trivial_group(group):
    G = er.groups.from_name(group)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(G.degree, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)
    ).double()
    found = detect_subgroup_symmetry(net, G, er.reps.natural(G), er.reps.trivial(G))
    assert found.is_trivial and found.order == 1 and found.residual == 0.0
    assert found.decomposition == "6*[1/1]"
    assert all(not t.success and t.residual > found.tol for t in found.trials[:-1])
    assert len(found.trials) == len(subgroup_classes(G))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(S4_ORDER_FOUR))
def test_half_a_percent_of_weight_noise_keeps_the_subgroup(name, seed):
    """Noise of relative size 0.5% moves each residual by at most 2 × 0.5%: the same subgroup
    and hidden rep are found, and the residual is reported."""
    G = er.groups.symmetric(4)
    H, net, planted, perm = _subgroup_network(
        G, S4_ORDER_FOUR[name], _regular_plus_trivial, seed=seed
    )
    layout, theta = read_mlp(net)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(theta.shape, generator=gen, dtype=torch.float64)
    noisy = layout.module(theta + 0.005 * float(theta.norm()) * noise / noise.norm())
    found = detect_subgroup_symmetry(noisy, G, er.reps.natural(G), er.reps.trivial(G))
    assert found.name == name and found.order == 4
    assert 0 < found.residual <= 2 * 0.005
    assert f"residual {found.residual:.2e}" in found.describe()
    assert _same_rep_after_scrambling(found.subgroup, found.hidden_reps[0], H, planted, perm)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64_networks(dtype):
    G = er.groups.symmetric(4)
    H, net, planted, perm = _subgroup_network(
        G, S4_ORDER_FOUR["C4"], _regular_plus_trivial, dtype=dtype
    )
    assert next(net.parameters()).dtype == dtype
    x = torch.randn(16, 4, dtype=dtype)
    found = detect_subgroup_symmetry(net, G, er.reps.natural(G), er.reps.trivial(G), x=x)
    assert found.name == "C4"
    tiny = 1e-6 if dtype == torch.float32 else 1e-12
    assert found.residual < tiny and found.detection.equivariance_error < tiny
    assert _same_rep_after_scrambling(found.subgroup, found.hidden_reps[0], H, planted, perm)


def test_bad_input_fails_early():
    G = er.groups.symmetric(3)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    V, T = er.reps.natural(G), er.reps.trivial(G)
    with pytest.raises(TypeError, match="PermutationGroup"):
        detect_subgroup_symmetry(net, er.groups.SO(3), V, T)
    with pytest.raises(ValueError, match="rep_out must be a Rep of S3"):
        detect_subgroup_symmetry(net, G, V, er.reps.trivial(er.groups.symmetric(4)))
    with pytest.raises(ValueError, match="tol must be > 0, got 0"):
        detect_subgroup_symmetry(net, G, V, T, tol=0.0)
    with pytest.raises(ValueError, match="R\\^3 -> R\\^1 but rep_in/rep_out have dims 3 and 3"):
        detect_subgroup_symmetry(net, G, V, V)
