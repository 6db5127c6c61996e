import numpy as np
import pytest
import torch

import equirelax as er
from equirelax.experiments.teacher_student import reference_teacher, symmetric_data
from equirelax.landscape import (
    EquivariantSubspace,
    hessian_split,
    isotypic_blocks,
    mse_loss,
    read_mlp,
    split_hessian,
)


def _s3():
    G = er.groups.symmetric(3)
    return G, er.reps.natural(G), er.reps.trivial(G)


def test_isotypic_blocks_of_the_parameter_space():
    G, V, T = _s3()
    space = EquivariantSubspace(V, [V], T)  # D = 16
    blocks = isotypic_blocks(space)
    assert blocks[0].label == "trivial" and blocks[0].dim == space.dim == 5
    labels = {b.label: b.dim for b in blocks[1:]}
    # S3 irreps on the conjugacy classes (identity, transpositions, 3-cycles)
    assert labels == {"chi=(1,-1,1)": 1, "chi=(2,0,-1)": 10}
    basis = torch.cat([b.basis for b in blocks], dim=1)
    assert torch.allclose(basis.T @ basis, torch.eye(16, dtype=torch.float64), atol=1e-10)
    for g in G.elements():  # each block is invariant under every T_g
        t = space.action(g)
        for b in blocks:
            moved = t @ b.basis
            assert torch.allclose(b.basis @ (b.basis.T @ moved), moved, atol=1e-10)


@pytest.mark.parametrize(("a", "c", "kind"), [(1.0, -1.0, "escapable saddle"),
                                               (1.0, 2.0, "minimum"),
                                               (-1.0, 2.0, "saddle in E_rho")])
def test_split_of_a_quadratic_with_known_blocks(a, c, kind):
    """L(θ) = ½ θᵀ (a Π + c (I − Π)) θ with Π the Reynolds projector: curvature a along E_ρ,
    c in every non-equivariant direction; θ = 0 is its critical point."""
    _, V, T = _s3()
    space = EquivariantSubspace(V, [3 * T], T)
    proj = space.reynolds()
    eye = torch.eye(space.n_params, dtype=torch.float64)
    mat = a * proj + c * (eye - proj)
    split = hessian_split(lambda t: 0.5 * t @ mat @ t,
                          torch.zeros(space.n_params, dtype=torch.float64), space)
    assert np.allclose(split.tangent.eigenvalues, a)
    for b in split.normal_blocks:
        assert np.allclose(b.eigenvalues, c)
    assert split.coupling < 1e-12
    cls = split.classify()
    assert cls.kind == kind
    assert cls.escape_directions.shape[1] == (space.n_params - space.dim if c < 0 else 0)


def test_constructed_saddle_escapable_only_by_leaving_the_slice():
    """S3 on R^3 -> 3 trivial tanh neurons -> R^3, target y = x − mean(x) (equivariant, linear),
    at θ = 0. Along E_ρ the network outputs multiples of (1,1,1), orthogonal to every target, so
    the curvature there is >= 0; coupling W_2 and W_1 in non-equivariant directions gives the
    eigenvalue −(2/3) a with a = E[x_0²] − E[x_0 x_1] (exactly, for symmetric data)."""
    G, V, T = _s3()
    x = symmetric_data(G, 64, 0)
    y = x - x.mean(-1, keepdim=True)
    space = EquivariantSubspace(V, [3 * T], V)
    theta = torch.zeros(space.n_params, dtype=torch.float64)
    split = hessian_split(mse_loss(space.layout("tanh"), x, y), theta, space)
    a = float((x[:, 0] ** 2).mean() - (x[:, 0] * x[:, 1]).mean())
    assert split.gradient_norm < 1e-14
    assert split.min_tangent > -1e-12
    assert split.min_normal == pytest.approx(-2 * a / 3, rel=1e-10)
    assert split.coupling < 1e-12
    cls = split.classify()
    assert cls.kind == "escapable saddle" and cls.relaxation_can_escape
    # the loss falls along an escape direction, as the curvature says
    loss = mse_loss(space.layout("tanh"), x, y)
    v = cls.escape_directions[:, 0]
    assert float(loss(theta + 1e-2 * v)) < float(loss(theta))
    assert space.distance(v) > 0.99


def test_constructed_minimum_at_the_teacher():
    """At the teacher's own weights (student rep = teacher rep) the loss is 0: every block is
    positive semi-definite and the point is a minimum of both the constrained and the full
    loss."""
    G, V, T = _s3()
    teacher = reference_teacher(G, V, "tanh")
    x = symmetric_data(G, 64, 1)
    with torch.no_grad():
        y = teacher(x)
    layout, theta = read_mlp(teacher)
    space = EquivariantSubspace(V, [V], T)
    split = hessian_split(mse_loss(layout, x, y), theta, space)
    assert split.gradient_norm < 1e-12
    assert split.coupling < 1e-12
    assert min(b.min_eigenvalue for b in split.blocks) > -1e-12
    assert split.classify().kind == "minimum"
    merged = np.sort(np.concatenate([b.eigenvalues for b in split.blocks]))
    assert np.allclose(merged, np.sort(split.eigenvalues), atol=1e-10)


def test_off_the_slice_the_split_reports_coupling():
    _, V, T = _s3()
    space = EquivariantSubspace(V, [V], T)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((64, 3)))  # not symmetric
    y = torch.tanh(x[:, 0])
    theta = torch.randn(space.n_params, dtype=torch.float64)
    split = hessian_split(mse_loss(space.layout("tanh"), x, y), theta, space)
    assert split.coupling > 1e-3


def test_shapes_are_checked():
    _, V, T = _s3()
    space = EquivariantSubspace(V, [V], T)
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        split_hessian(torch.zeros(15, 15), torch.zeros(15), space)


def test_a_point_the_gradient_leaves_is_not_critical_whatever_the_curvature():
    """L(θ) = ½ θᵀ (Π − (I − Π)) θ + gᵀθ with g in E_ρ: negative curvature off the slice, but a
    gradient along it. It was labelled an escapable saddle; it is no critical point at all."""
    _, V, T = _s3()
    space = EquivariantSubspace(V, [3 * T], T)
    proj = space.reynolds()
    eye = torch.eye(space.n_params, dtype=torch.float64)
    mat = proj - (eye - proj)
    g = space.project(torch.randn(space.n_params, dtype=torch.float64))
    g = g / g.norm()
    split = hessian_split(lambda t: 0.5 * t @ mat @ t + g @ t,
                          torch.zeros(space.n_params, dtype=torch.float64), space)
    assert split.gradient_norm == pytest.approx(1.0)
    cls = split.classify()
    assert cls.kind == "not critical" and not cls.relaxation_can_escape
    assert cls.n_negative_normal > 0  # the curvature is still reported


def test_criticality_is_relative_to_the_loss_scale():
    """A gradient of norm 1e-3 is large for a loss of size 1 and small for one of size 1e3."""
    _, V, T = _s3()
    space = EquivariantSubspace(V, [3 * T], T)
    proj = space.reynolds()
    eye = torch.eye(space.n_params, dtype=torch.float64)
    g = space.project(torch.randn(space.n_params, dtype=torch.float64))
    g = 1e-3 * g / g.norm()
    split = hessian_split(lambda t: 0.5 * t @ (proj - (eye - proj)) @ t + g @ t,
                          torch.zeros(space.n_params, dtype=torch.float64), space)
    assert split.classify(rel_grad_tol=1e-5, loss_scale=1.0).kind == "not critical"
    assert split.classify(rel_grad_tol=1e-5, loss_scale=1e3).kind == "escapable saddle"
    assert split.classify(grad_tol=1e-2).kind == "escapable saddle"  # an absolute one still works
    with pytest.raises(ValueError, match=r"loss_scale must be a finite number >= 0, got -1\.0"):
        split.classify(loss_scale=-1.0)
