import subprocess
import sys

import numpy as np
import pytest
import torch

import equirelax as er
from equirelax.groups.subgroups import transitive_pieces
from equirelax.landscape import (
    detect_hidden_rep,
    effective_mlp,
    permute_hidden,
    project_onto,
    project_onto_detected,
    read_mlp,
)
from equirelax.relaxation import harden, relax


def _relaxed_onto(target_layout, target_theta, G):
    """A relaxed 3 x trivial student whose effective weights (θ = 1) equal the target's."""
    V, T = er.reps.natural(G), er.reps.trivial(G)
    torch.manual_seed(0)
    student = er.nn.EquivariantMLP(V, [3 * T], T, activation="tanh").double()
    relaxed = relax(student, schedule="constant", value=1.0, lie_weight=0.0, norm_weight=0.0,
                    free_bias=True, projected_eval=False)
    layers = list(relaxed.relaxed_layers().values())
    with torch.no_grad():
        for layer, (w, b) in zip(layers, target_layout.split(target_theta)):
            w_eq, b_eq = layer.layer.weight_and_bias()
            layer.free.weight.copy_(w - w_eq)
            layer.free.bias.copy_(b - b_eq)
    return relaxed


def test_effective_mlp_is_the_relaxed_function(planted):
    G, _, _, model = planted("S3", "natural")
    layout, theta = read_mlp(model)
    relaxed = _relaxed_onto(layout, theta, G)
    x = torch.randn(12, 3, dtype=torch.float64)
    relaxed.train()
    with torch.no_grad():
        assert torch.allclose(effective_mlp(relaxed)(x), relaxed(x), atol=1e-12)
        assert torch.allclose(effective_mlp(relaxed)(x), model(x), atol=1e-12)


def test_harden_detected_keeps_a_solution_that_projecting_back_destroys(planted):
    G, _, T, model = planted("S3", "natural")
    layout, theta = read_mlp(model)
    rng = np.random.default_rng(0)
    theta = permute_hidden(layout, theta, [rng.permutation(3)], [np.array([1.0, -1.0, 1.0])])
    relaxed = _relaxed_onto(layout, theta, G)
    x = torch.randn(256, 3, dtype=torch.float64)
    with torch.no_grad():
        target = model(x)
        detected = harden(relaxed, mode="detected")
        original = harden(relaxed, mode="project")
        assert isinstance(detected, er.nn.EquivariantMLP)
        assert torch.allclose(detected(x), target, atol=1e-12)
        assert float(((original(x) - target) ** 2).mean()) > 1e-2 * float(target.var())
    hidden = detected.hidden_reps[0]
    assert [p.label for p in transitive_pieces(G, hidden.images)] == ["[S3/C2]"]
    assert er.equivariance_error(detected, x) < 1e-12
    assert original.hidden_reps[0] == 3 * T  # "project" keeps the original rep


def test_detected_mode_needs_no_import_of_landscape():
    """harden(mode="detected") works in a fresh process that never imports equirelax.landscape,
    and importing the relaxation package does not import it either (imports go downward)."""
    code = """
import sys, torch
import equirelax as er
from equirelax.relaxation import harden, relax
assert "equirelax.landscape" not in sys.modules, "relaxation imported landscape"
G = er.groups.symmetric(3)
V, T = er.reps.natural(G), er.reps.trivial(G)
torch.manual_seed(0)
student = er.nn.EquivariantMLP(V, [3 * T], T, activation="tanh").double()
relaxed = relax(student, schedule="constant", value=1.0, init_std=0.0)
exact = harden(relaxed, mode="detected")
assert isinstance(exact, er.nn.EquivariantMLP), type(exact)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_harden_detected_names_a_norm_activation():
    G = er.groups.symmetric(3)
    model = er.nn.EquivariantMLP(er.reps.natural(G), [er.reps.standard(G)], er.reps.trivial(G),
                                 activation="tanh").double()
    assert any(isinstance(m, er.nn.NormActivation) for m in model.layers)
    relaxed = relax(model, total_steps=10)
    with pytest.raises(ValueError, match="expected PointwiseActivation, got NormActivation"):
        harden(relaxed, mode="detected")


def test_unknown_harden_mode_lists_the_detected_one():
    relaxed = relax(er.nn.EquivariantMLP(er.reps.natural(er.groups.symmetric(3)),
                                         [er.reps.natural(er.groups.symmetric(3))],
                                         er.reps.trivial(er.groups.symmetric(3))).double(),
                    total_steps=10)
    with pytest.raises(ValueError, match=r"unknown hardening mode 'nope'; expected one of "
                                         r"\['drop', 'project', .*'detected'"):
        harden(relaxed, mode="nope")


def test_harden_detected_refuses_weights_on_no_slice():
    G = er.groups.symmetric(3)
    V, T = er.reps.natural(G), er.reps.trivial(G)
    torch.manual_seed(0)
    student = er.nn.EquivariantMLP(V, [3 * T], T, activation="tanh").double()
    relaxed = relax(student, schedule="constant", value=1.0, init_std=0.5, free_bias=True)
    with pytest.raises(ValueError, match="no hidden permutation representation fits"):
        harden(relaxed, mode="detected")


def test_projections_of_plain_networks(planted):
    G, V, T, model = planted("D4", "natural+trivial")
    layout, theta = read_mlp(model)
    exact = project_onto(layout.module(theta), V, model.hidden_reps, T)
    assert torch.allclose(read_mlp(exact)[1], theta, atol=1e-13)
    noisy = layout.module(theta + 1e-4 * torch.randn(theta.shape, dtype=torch.float64))
    det = detect_hidden_rep(noisy, G, V, T)
    assert det.success
    back = project_onto_detected(det, V, T)
    x = torch.randn(64, 4, dtype=torch.float64)
    with torch.no_grad():
        assert er.equivariance_error(back, x, V, T) < 1e-12
        assert float((back(x) - model(x)).abs().max()) < 1e-2
    with pytest.raises(ValueError, match="widths"):
        project_onto(layout.module(theta), V, [3 * T], T)
