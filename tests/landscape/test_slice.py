import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import equirelax as er
from equirelax.experiments.teacher_student import symmetric_data
from equirelax.landscape import (
    EquivariantSubspace,
    MLPLayout,
    equivariant_mlp,
    mse_loss,
    plain_mlp,
    read_mlp,
)


@pytest.mark.parametrize(("spec", "dim"), [("natural", 5), ("3*trivial", 10)])
def test_dimension_of_the_slice_is_the_orbit_count(spec, dim):
    # the notes' worked check: S3 on R^3, width 3, invariant output; D = 16
    G = er.groups.symmetric(3)
    space = EquivariantSubspace(er.reps.natural(G), [er.reps.parse(G, spec)], er.reps.trivial(G))
    assert (space.dim, space.n_params) == (dim, 16)


@pytest.mark.parametrize(("group", "spec"), [("S3", "regular"), ("D4", "natural+2*trivial"),
                                             ("C4", "2*natural")])
def test_basis_is_orthonormal_and_its_projector_is_the_reynolds_average(group, spec):
    G = er.groups.from_name(group)
    space = EquivariantSubspace(er.reps.natural(G), [er.reps.parse(G, spec)], er.reps.natural(G))
    B = space.basis
    assert torch.allclose(B.T @ B, torch.eye(space.dim, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(space.reynolds(), B @ B.T, atol=1e-12)
    theta = space.embed(torch.randn(space.dim, dtype=torch.float64))
    for g in G.elements():
        assert torch.allclose(space.action(g) @ theta, theta, atol=1e-12)
    comp = space.complement()
    assert comp.shape == (space.n_params, space.n_params - space.dim)
    assert torch.allclose(B.T @ comp, torch.zeros(space.dim, comp.shape[1], dtype=torch.float64),
                          atol=1e-12)


def test_equivariant_and_plain_mlp_convert_both_ways(planted):
    _, rep_in, rep_out, model = planted("S4", "natural+pairs", "relu")
    plain = plain_mlp(model)
    x = torch.randn(20, 4, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(plain(x), model(x), atol=1e-13)
    hidden = model.hidden_reps
    back = equivariant_mlp(plain, rep_in, hidden, rep_out)
    for a, b in zip(back.linears, model.linears):
        assert torch.allclose(a.coefficients, b.coefficients, atol=1e-13)
        assert torch.allclose(a.bias_coefficients, b.bias_coefficients, atol=1e-13)
    layout, theta = read_mlp(plain)
    assert layout == MLPLayout((4, 16, 1), "relu")
    space = EquivariantSubspace(rep_in, hidden, rep_out)
    assert space.distance(theta) < 1e-14


def test_projection_of_a_plain_mlp_is_orthogonal():
    G = er.groups.symmetric(3)
    rep_in, rep_out = er.reps.natural(G), er.reps.trivial(G)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    model = equivariant_mlp(net, rep_in, [er.reps.natural(G)], rep_out)
    space = EquivariantSubspace(rep_in, [er.reps.natural(G)], rep_out)
    _, theta = read_mlp(net)
    _, projected = read_mlp(model)
    assert torch.allclose(projected, space.project(theta), atol=1e-13)
    assert torch.allclose(space.basis.T @ (theta - projected),
                          torch.zeros(space.dim, dtype=torch.float64), atol=1e-13)


def test_bad_input_fails_early_with_both_shapes():
    layout = MLPLayout((3, 4, 1), "tanh")
    with pytest.raises(ValueError, match=r"\(21,\).*\(20,\)"):
        layout.split(torch.zeros(20))
    with pytest.raises(ValueError, match="unknown activation"):
        MLPLayout((3, 4, 1), "swish3")
    net = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.Tanh(),
                              torch.nn.Linear(4, 1))
    with pytest.raises(ValueError, match="bias"):
        read_mlp(net)


@given(
    st.sampled_from([("S3", "natural"), ("S3", "3*trivial"), ("S3", "regular"), ("C4", "natural"),
                     ("D4", "natural+trivial"), ("S4", "2*natural"), ("C5", "2*natural")]),
    st.sampled_from(["tanh", "relu", "gelu"]),
    st.integers(0, 2**16),
)
def test_gradient_at_a_point_of_the_slice_lies_in_the_slice(case, activation, seed):
    """Corollary A1: with symmetric data and an invariant target, the unconstrained MLP's
    gradient at any θ ∈ E_ρ is in E_ρ, so gradient descent cannot leave the slice."""
    group, spec = case
    G = er.groups.from_name(group)
    space = EquivariantSubspace(er.reps.natural(G), [er.reps.parse(G, spec)], er.reps.trivial(G))
    layout = space.layout(activation)
    gen = torch.Generator().manual_seed(seed)
    theta = space.embed(torch.randn(space.dim, generator=gen, dtype=torch.float64))
    x = symmetric_data(G, 16, seed)
    y = torch.tanh(x).sum(-1) + (x**2).prod(-1)  # an arbitrary invariant target
    t = theta.clone().requires_grad_(True)
    grad = torch.autograd.grad(mse_loss(layout, x, y)(t), t)[0]
    normal = grad - space.project(grad)
    assert float(grad.norm()) > 1e-6
    assert float(normal.norm()) <= 1e-12 * max(1.0, float(grad.norm()))


def test_gradient_leaves_the_slice_without_symmetric_data():
    # the converse check: the same computation on data that is not symmetric leaves E_ρ
    G = er.groups.symmetric(3)
    space = EquivariantSubspace(er.reps.natural(G), [er.reps.parse(G, "3*trivial")],
                                er.reps.trivial(G))
    layout = space.layout("tanh")
    theta = space.embed(torch.randn(space.dim, dtype=torch.float64))
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((64, 3)))
    y = torch.tanh(2 * x[:, 0])
    t = theta.clone().requires_grad_(True)
    grad = torch.autograd.grad(mse_loss(layout, x, y)(t), t)[0]
    assert float((grad - space.project(grad)).norm()) > 1e-3
