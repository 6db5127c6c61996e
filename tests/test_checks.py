"""equivariance_error and lie_derivative_error: ~0 for equivariant models, large otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import equirelax as er
from equirelax.checks import ALL_ELEMENTS_LIMIT, DEFAULT_SAMPLES, default_elements
from equirelax.groups import SO, O, dihedral, symmetric
from equirelax.nn import EquivariantLinear, EquivariantMLP
from equirelax.reps import natural, regular, trivial, vector


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same torch RNG state, whatever ran before it."""
    torch.manual_seed(0)


def dense(rep_in, rep_out, seed=0) -> torch.nn.Linear:
    """A plain nn.Linear with random weights: not equivariant."""
    torch.manual_seed(seed)
    return torch.nn.Linear(rep_in.dim, rep_out.dim)


def s4_pair():
    G = symmetric(4)
    return natural(G) + trivial(G), natural(G) * natural(G)


def so3_pair():
    G = SO(3)
    v = vector(G)
    return v + v * v, v + trivial(G)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("pair", [s4_pair, so3_pair], ids=["S4", "SO3"])
def test_error_is_tiny_for_equivariant_and_large_for_dense_models(pair, dtype):
    rep_in, rep_out = pair()
    x = torch.randn(8, rep_in.dim, dtype=torch.float64)
    layer = EquivariantLinear(rep_in, rep_out)
    with torch.no_grad():
        layer.bias_coefficients.normal_()
    tiny = 1e-13 if dtype == torch.float64 else 1e-5
    assert er.equivariance_error(layer, x, dtype=dtype) < tiny
    big = er.equivariance_error(dense(rep_in, rep_out), x, rep_in, rep_out, dtype=dtype)
    assert big > 0.1


def test_error_is_relative_and_a_maximum_over_elements():
    rep_in, rep_out = s4_pair()
    x = torch.randn(5, rep_in.dim, dtype=torch.float64)
    f = dense(rep_in, rep_out).double()
    err = er.equivariance_error(f, x, rep_in, rep_out)

    def scaled(z):
        return 1000.0 * f(z)

    assert er.equivariance_error(scaled, x, rep_in, rep_out) == pytest.approx(err, rel=1e-12)
    # the same number by hand: max over all 24 elements of ||f(gx) - g f(x)|| / ||f(x)||
    G = rep_in.group
    with torch.no_grad():
        fx = f(x)
        worst = 0.0
        for g in G.elements():
            m_in = torch.from_numpy(rep_in.matrix(g))
            m_out = torch.from_numpy(rep_out.matrix(g))
            diff = f(x @ m_in.T) - fx @ m_out.T
            worst = max(worst, float(diff.norm() / fx.norm()))
    assert err == pytest.approx(worst, rel=1e-12)
    # a subset of elements can only lower the maximum; the identity alone gives 0
    assert er.equivariance_error(f, x, rep_in, rep_out, elements=G.elements()[:5]) <= err
    assert er.equivariance_error(f, x, rep_in, rep_out, elements=G.elements()[:1]) == 0.0


def test_float32_model_is_measured_in_float64():
    rep_in, rep_out = s4_pair()
    layer = EquivariantLinear(rep_in, rep_out)  # float32 parameters
    x = torch.randn(4, rep_in.dim)
    err32 = er.equivariance_error(layer, x, dtype=torch.float32)
    err64 = er.equivariance_error(layer, x)  # a float64 copy by default
    assert err64 < 1e-14 and err32 < 1e-6
    assert layer.coefficients.dtype == torch.float32  # the model itself is untouched


def test_reps_default_to_the_models_own():
    rep_in, rep_out = s4_pair()
    model = EquivariantMLP(rep_in, [2 * natural(rep_in.group)], rep_out)
    x = torch.randn(3, rep_in.dim, dtype=torch.float64)
    assert er.equivariance_error(model, x) == er.equivariance_error(model, x, rep_in, rep_out)


def test_default_elements_all_for_small_groups_and_a_sample_otherwise():
    assert len(default_elements(dihedral(6))) == 12
    assert len(default_elements(symmetric(7))) == DEFAULT_SAMPLES  # 5040 > limit
    assert symmetric(7).order > ALL_ELEMENTS_LIMIT >= symmetric(6).order
    samples = default_elements(SO(3))
    assert samples.shape == (DEFAULT_SAMPLES, 3, 3)


def test_a_violation_on_one_element_of_a_large_group_is_seen_when_that_element_is_given():
    G = symmetric(8)
    V = natural(G)

    def almost_equivariant(x):
        # equivariant except that it singles out point 0 a little
        return x + 0.5 * x[..., :1] * torch.nn.functional.one_hot(torch.tensor(0), 8)

    x = torch.randn(4, 8, dtype=torch.float64)
    swap = np.array([1, 0, 2, 3, 4, 5, 6, 7])
    assert er.equivariance_error(almost_equivariant, x, V, V, elements=swap[None]) > 0.1
    assert er.equivariance_error(almost_equivariant, x, V, V, elements=G.identity()[None]) == 0


# -- Lie derivative ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lie_derivative_error_small_for_equivariant_large_for_dense(dtype):
    rep_in, rep_out = so3_pair()
    x = torch.randn(6, rep_in.dim, dtype=torch.float64)
    layer = EquivariantLinear(rep_in, rep_out)
    tiny = 1e-13 if dtype == torch.float64 else 1e-5
    assert er.lie_derivative_error(layer, x, dtype=dtype) < tiny
    assert er.lie_derivative_error(dense(rep_in, rep_out), x, rep_in, rep_out, dtype=dtype) > 0.1


def test_lie_derivative_error_works_in_train_mode_with_orbit_layers():
    # invariant outputs and trivial biases use orbit hom-spaces; under torch.func.jvp their
    # custom gather must cooperate (this once raised)
    G = O(3)
    v, t = vector(G), trivial(G)
    model = EquivariantMLP(v + t + v * v, [2 * t + v], 2 * t).train()
    x = torch.randn(5, model.rep_in.dim, dtype=torch.float64)
    assert er.lie_derivative_error(model, x) < 1e-12


def test_lie_derivative_matches_a_finite_difference():
    rep_in, rep_out = so3_pair()
    f = dense(rep_in, rep_out).double()
    x = torch.randn(3, rep_in.dim, dtype=torch.float64)
    err = er.lie_derivative_error(f, x, rep_in, rep_out)
    t = 1e-6
    worst = 0.0
    with torch.no_grad():
        fx = f(x)
        for a_in, a_out in zip(rep_in.lie_matrices(), rep_out.lie_matrices()):
            step = t * x @ torch.from_numpy(a_in).T
            tangent = (f(x + step) - f(x - step)) / (2 * t)
            diff = tangent - fx @ torch.from_numpy(a_out).T
            worst = max(worst, float(diff.norm() / fx.norm()))
    assert err == pytest.approx(worst, rel=1e-6)


def test_lie_derivative_error_is_zero_for_finite_groups():
    G = symmetric(3)
    assert er.lie_derivative_error(dense(natural(G), natural(G)), torch.randn(2, 3),
                                   natural(G), natural(G)) == 0.0


# -- bad input ---------------------------------------------------------------------------------
def test_missing_reps_raise():
    f = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="declares no rep_in/rep_out: pass rep_in"):
        er.equivariance_error(f, torch.randn(2, 3))
    with pytest.raises(ValueError, match="declares no rep_in/rep_out"):
        er.lie_derivative_error(f, torch.randn(2, 3))
    with pytest.raises(ValueError, match="declares no rep_in/rep_out"):
        er.equivariance_error(f, torch.randn(2, 3), rep_in=natural(symmetric(3)))


def test_size_mismatches_raise_naming_both_sizes():
    V = natural(symmetric(4))
    f = torch.nn.Linear(4, 5)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 4\).*got \(2, 3\)"):
        er.equivariance_error(f, torch.randn(2, 3), V, V)
    with pytest.raises(ValueError, match=r"model output has last axis 5, but rep_out natural has"
                                         r" dim 4"):
        er.equivariance_error(f, torch.randn(2, 4), V, V)
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor, got ndarray"):
        er.equivariance_error(f, np.zeros((2, 4)), V, V)


def test_reps_of_different_groups_raise():
    f = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="different groups"):
        er.equivariance_error(f, torch.randn(2, 3), natural(symmetric(3)),
                              regular(er.groups.cyclic(3)))


# -- degenerate values: NaN / inf fail loudly, a zero output warns ------------------------------
def _poisoned(rep_out_dim, where):
    """A function that is equivariant for natural(S_4) except that it returns NaN/inf ``where``:
    'output' (always), 'transformed' (only on inputs that are not the original x)."""
    def f(z):
        y = z.sum(-1, keepdim=True).expand(*z.shape[:-1], rep_out_dim).clone()
        if where == "output" or (where == "transformed" and z.dim() == 3):
            y[..., 0] = float("nan")
        return y
    return f


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_raises(bad):
    V = natural(symmetric(4))
    x = torch.randn(3, 4, dtype=torch.float64)
    x[1, 2] = bad
    with pytest.raises(ValueError, match="the input x must be finite"):
        er.equivariance_error(torch.nn.Identity(), x, V, V)
    with pytest.raises(ValueError, match="the input x must be finite"):
        er.lie_derivative_error(torch.nn.Identity(), x, vector(SO(3)), vector(SO(3)))


def test_nan_output_raises_instead_of_returning_zero():
    V = natural(symmetric(4))
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"model output f\(x\) must be finite, got 3 NaN"):
        er.equivariance_error(_poisoned(4, "output"), x, V, V)
    # an infinite output too
    with pytest.raises(ValueError, match=r"f\(x\) must be finite, got 0 NaN and 12 inf"):
        er.equivariance_error(lambda z: z / 0.0, x.abs() + 1, V, V)


def test_nan_in_a_transformed_output_raises_naming_the_element():
    V = natural(symmetric(4))
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"transformed output f\(ρ_in\(g\) x\) for element 0 "
                                         r"of the checked elements, g = \[0 1 2 3\]"):
        er.equivariance_error(_poisoned(4, "transformed"), x, V, V)


def test_nan_output_and_derivative_raise_in_the_lie_derivative():
    v = vector(SO(3))
    x = torch.randn(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"model output f\(x\) must be finite"):
        er.lie_derivative_error(lambda z: z * float("nan"), x, v, v)

    def kinked(z):  # finite everywhere, but its derivative at 0 is infinite
        return z * z.norm(dim=-1, keepdim=True).sqrt()

    with pytest.raises(ValueError, match=r"derivative of f along Lie algebra element 0 must be "
                                         r"finite"):
        at_zero = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
        er.lie_derivative_error(kinked, at_zero, v, v)


@pytest.mark.parametrize("pair", [s4_pair, so3_pair], ids=["S4", "SO3"])
def test_identically_zero_output_warns(pair):
    rep_in, rep_out = pair()
    x = torch.randn(4, rep_in.dim, dtype=torch.float64)

    def zero(z):
        return z.new_zeros(*z.shape[:-1], rep_out.dim)

    with pytest.warns(er.testing.ZeroOutputWarning, match="identically zero"):
        assert er.equivariance_error(zero, x, rep_in, rep_out) == 0.0
    if rep_in.lie_matrices():
        with pytest.warns(er.testing.ZeroOutputWarning, match="lie_derivative_error"):
            assert er.lie_derivative_error(zero, x, rep_in, rep_out) == 0.0


def test_empty_input_and_empty_element_list_raise():
    V = natural(symmetric(4))
    with pytest.raises(ValueError, match=r"at least one sample, got shape \(0, 4\)"):
        er.equivariance_error(torch.nn.Identity(), torch.zeros(0, 4), V, V)
    with pytest.raises(ValueError, match="at least one group element, got none"):
        er.equivariance_error(torch.nn.Identity(), torch.randn(2, 4), V, V,
                              elements=np.zeros((0, 4), dtype=np.int64))


# -- multi-input and multi-output models ------------------------------------------------------
from equirelax.checks import Positions  # noqa: E402


class Particles(torch.nn.Module):
    """An E(3)-equivariant step of particles: positions (B, N, 3), velocities (B, N, 3) and
    charges (B, N) -> new positions (B, N, 3); refuses inputs of another rank, as graph models
    do. ``shift`` breaks translation equivariance, ``tilt`` rotation equivariance."""

    def __init__(self, shift: float = 0.0, tilt: float = 0.0, energy: bool = False):
        super().__init__()
        self.shift, self.tilt, self.energy = shift, tilt, energy

    def forward(self, loc, vel, charges):
        assert loc.dim() == 3 and vel.shape == loc.shape and charges.shape == loc.shape[:2]
        centre = loc.mean(dim=1, keepdim=True)
        rel = loc - centre
        pull = (charges[..., None] * rel).sum(dim=1, keepdim=True)
        moved = loc + 0.1 * vel + 0.01 * torch.tanh(rel.norm(dim=-1, keepdim=True)) * pull
        moved = moved + self.shift * loc + self.tilt * loc[..., :1]
        if self.energy:
            return moved, (vel**2).sum(dim=(1, 2))
        return moved


def _particles(batch=4, n=5, dtype=torch.float64):
    gen = torch.Generator().manual_seed(1)
    loc = torch.randn(batch, n, 3, generator=gen, dtype=dtype)
    vel = torch.randn(batch, n, 3, generator=gen, dtype=dtype)
    charges = torch.randint(0, 2, (batch, n), generator=gen).to(dtype) * 2 - 1
    return loc, vel, charges


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("group", [O, SO], ids=["O3", "SO3"])
def test_a_multi_input_model_of_positions_is_checked_with_translations(group, dtype):
    V = vector(group(3))
    kinds = dict(rep_in=(Positions(V), V, None), rep_out=Positions(V))
    tiny = 1e-13 if dtype == torch.float64 else 1e-5
    assert er.equivariance_error(Particles(), _particles(), dtype=dtype, **kinds) < tiny
    assert er.equivariance_error(Particles(tilt=0.3), _particles(), dtype=dtype, **kinds) > 1e-2
    # a model that moves with rotations but not translations: caught only through Positions
    not_translating = Particles(shift=0.5)
    assert er.equivariance_error(not_translating, _particles(), dtype=dtype, **kinds) > 1e-2
    assert er.equivariance_error(not_translating, _particles(), rep_in=(V, V, None), rep_out=V,
                                 dtype=dtype) < tiny
    if group is SO:
        assert er.lie_derivative_error(Particles(), _particles(), dtype=dtype, **kinds) < tiny
        assert er.lie_derivative_error(Particles(tilt=0.3), _particles(), **kinds) > 1e-2


def test_several_outputs_are_compared_together():
    V = vector(O(3))
    model = Particles(energy=True)
    rep_out = (Positions(V), None)  # the energy is invariant
    args = dict(rep_in=(Positions(V), V, None), rep_out=rep_out)
    assert er.equivariance_error(model, _particles(), **args) < 1e-13
    assert er.lie_derivative_error(model, _particles(), **args) < 1e-13

    def broken(loc, vel, charges):
        moved, energy = model(loc, vel, charges)
        return moved, energy + loc[:, 0, 0]

    assert er.equivariance_error(broken, _particles(), **args) > 1e-2
    with pytest.raises(ValueError, match=r"the model returned 2 output\(s\), but rep_out "
                                         r"declares 1"):
        er.equivariance_error(model, _particles(), rep_in=args["rep_in"], rep_out=Positions(V))


def test_model_declared_argument_types_are_used():
    V = vector(O(3))
    model = Particles()
    model.rep_in, model.rep_out = (Positions(V), V, None), Positions(V)
    assert er.equivariance_error(model, _particles()) < 1e-13
    assert er.testing.assert_equivariant(model, _particles(), dtypes=(torch.float64,))


def test_multi_input_finite_group_model_every_element():
    G = symmetric(4)
    V = natural(G)

    def gated(a, b):  # equivariant: elementwise product with an invariant of b
        return a * b.sum(-1, keepdim=True) + b

    x = (torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64))
    assert er.equivariance_error(gated, x, (V, V), V) < 1e-14
    assert er.equivariance_error(lambda a, b: a * b[..., :1], x, (V, V), V) > 0.1
    errors = er.testing.assert_equivariant(gated, x, (V, V), V)
    assert set(errors) == {torch.float64, torch.float32}


def test_flattening_wrappers_are_no_longer_needed_and_give_the_same_bits():
    """A model of clouds (B, N, 3): the checker acts on the trailing (N, 3) axes and stacks
    elements into the batch, exactly as a hand-written flattening wrapper did."""
    n, G = 6, SO(3)
    rep_in, rep_out = n * vector(G), 2 * er.reps.trivial(G)
    torch.manual_seed(3)
    head = torch.nn.Linear(1, 2).double()

    def cloud_model(points):
        assert points.dim() == 3
        return head(points.norm(dim=-1).sum(dim=-1, keepdim=True)) + 0.01 * points[:, :1, 0]

    points = torch.randn(4, n, 3, dtype=torch.float64)
    elements = G.sample(8, seed=0)

    def flat(x):
        lead = x.shape[:-1]
        return cloud_model(x.reshape(-1, n, 3)).reshape(*lead, -1)

    wrapped = er.equivariance_error(flat, points.reshape(4, -1), rep_in, rep_out,
                                    elements=elements)
    direct = er.equivariance_error(cloud_model, points, rep_in, rep_out, elements=elements)
    assert direct == wrapped and direct > 1e-4


def test_images_are_acted_on_through_their_pixel_axes():
    """A rep of the pixels of a 1 x 3 x 3 image acts on its (H, W) axes: rotating by 90 degrees."""
    G = er.groups.cyclic(4)
    turn = np.rot90(np.arange(9).reshape(3, 3)).reshape(-1)
    pixels = er.reps.PermRep(G, [turn])

    def image_model(images):  # (B, 1, 3, 3) -> (B, 1, 3, 3), a rotation-equivariant blur
        assert images.dim() == 4
        padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
        cross = torch.tensor([[0.0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=images.dtype)
        return torch.nn.functional.conv2d(padded, cross[None, None])

    images = torch.randn(5, 1, 3, 3, dtype=torch.float64)
    assert er.equivariance_error(image_model, images, pixels, pixels) < 1e-14

    def skewed(images):
        return image_model(images) + images[..., :1, :]

    assert er.equivariance_error(skewed, images, pixels, pixels) > 0.1


def test_stacking_on_a_new_axis_and_in_the_batch_agree():
    rep_in, rep_out = s4_pair()
    layer = EquivariantLinear(rep_in, rep_out).double()
    x = torch.randn(8, rep_in.dim, dtype=torch.float64)
    dense_layer = dense(rep_in, rep_out).double()
    for model in (layer, dense_layer):
        a = er.equivariance_error(model, x, rep_in, rep_out, stack="new_axis")
        b = er.equivariance_error(model, x, rep_in, rep_out, stack="batch")
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15)


def test_arguments_that_cannot_be_batched_are_passed_as_given_with_chunk_one():
    V = vector(SO(3))
    edges = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])

    def graph_model(x, edge_index):  # (N, 3) nodes, (2, E) edges: sum of neighbour offsets
        assert edge_index.shape == (2, 4)
        out = torch.zeros_like(x)
        return out.index_add(0, edge_index[1], x[edge_index[0]] - x[edge_index[1]])

    x = torch.randn(4, 3, dtype=torch.float64)
    args = dict(rep_in=(V, None), rep_out=V, chunk=1)
    assert er.equivariance_error(graph_model, (x, edges), **args) < 1e-14
    assert er.equivariance_error(graph_model, (x, edges), dtype=torch.float32, **args) < 1e-6
    assert er.lie_derivative_error(graph_model, (x, edges), (V, None), V) < 1e-14


def test_multi_input_non_finite_values_are_refused_naming_the_argument():
    V = vector(O(3))
    loc, vel, charges = _particles()
    vel[0, 0, 0] = float("nan")
    args = dict(rep_in=(Positions(V), V, None), rep_out=Positions(V))
    with pytest.raises(ValueError, match=r"the input x\[1\] must be finite, got 1 NaN"):
        er.equivariance_error(Particles(), (loc, vel, charges), **args)
    with pytest.raises(ValueError, match=r"the input x\[1\] must be finite"):
        er.lie_derivative_error(Particles(), (loc, vel, charges), **args)

    def nan_on_moved(loc, vel, charges):
        out = Particles()(loc, vel, charges)
        return out * float("nan") if loc.shape[0] > 4 else out

    with pytest.raises(ValueError, match=r"transformed output f\(ρ_in\(g\) x\) for element 0"):
        er.equivariance_error(nan_on_moved, _particles(), **args)


def test_multi_input_declarations_are_checked():
    V = vector(O(3))
    loc, vel, charges = _particles()
    with pytest.raises(ValueError, match=r"takes 3 argument\(s\) by rep_in, but x holds 2"):
        er.equivariance_error(Particles(), (loc, vel), (V, V, None), V)
    with pytest.raises(TypeError, match=r"rep_in\[1\] must be a Rep, Positions\(rep\), "
                                        r"ChannelsLast\(rep\) or None, "
                                        r"got str"):
        er.equivariance_error(Particles(), (loc, vel, charges), (V, "1o", None), V)
    with pytest.raises(ValueError, match=r"x\[0\] must have shape \(\.\.\., 6\) for "
                                         r"rep_in\[0\] Positions"):
        er.equivariance_error(Particles(), (loc, vel, charges), (Positions(2 * V), V, None), V)
    with pytest.raises(ValueError, match="every entry is None"):
        er.equivariance_error(Particles(), (loc, vel, charges), (None, None, None), (None,))
    with pytest.raises(ValueError, match="different groups"):
        er.equivariance_error(Particles(), (loc, vel, charges), (V, vector(SO(3)), None), V)
    with pytest.raises(ValueError, match=r"stack must be one of .*, got 'sideways'"):
        er.equivariance_error(Particles(), (loc, vel, charges), (V, V, None), V, stack="sideways")
    with pytest.raises(TypeError, match="Positions needs a Rep, got str"):
        Positions("1o")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass x for a model whose rep_in is"):
        er.testing.assert_equivariant(Particles(), rep_in=(V, V, None), rep_out=V)


# -- features stored channels last -------------------------------------------------------------
def _mix_channels(c_in: int, c_out: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(c_in, c_out, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_channels_last_vectors_of_so3_pass_and_the_wrong_declaration_fails(dtype):
    """Mixing the channels of (B, 3, C) vector features is equivariant; declared as
    ChannelsLast the checks see it (group elements and the Lie algebra), declared as the flat
    rep C * vector (channels first) they must not."""
    from equirelax.checks import ChannelsLast, lie_derivative_error

    v = vector(SO(3))
    mix = _mix_channels(4, 2)

    def model(x):
        return x @ mix.to(x.dtype)

    x = torch.randn(5, 3, 4, dtype=torch.float64)
    kinds = dict(rep_in=ChannelsLast(4 * v), rep_out=ChannelsLast(2 * v))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert er.equivariance_error(model, x, dtype=dtype, **kinds) < tol
    assert lie_derivative_error(model, x, dtype=dtype, **kinds) < tol
    assert er.equivariance_error(model, x, 4 * v, 2 * v, dtype=dtype) > 0.1
    assert lie_derivative_error(model, x, 4 * v, 2 * v, dtype=dtype) > 0.1


def test_channels_last_catches_a_model_that_breaks_the_symmetry():
    """A fixed per-position offset on (B, n, n, C) features breaks permutation equivariance."""
    from equirelax.checks import ChannelsLast

    V = natural(symmetric(5))
    offset = torch.randn(5, 5, 1, dtype=torch.float64)
    x = torch.randn(3, 5, 5, 2, dtype=torch.float64)
    kind = ChannelsLast(2 * (V * V))
    assert er.equivariance_error(lambda t: t * 2.0, x, kind, kind) < 1e-12
    assert er.equivariance_error(lambda t: t + offset, x, kind, kind) > 0.1


@pytest.mark.parametrize("layout", ["tensor", "channels_first", "channels_last"])
def test_shaped_layers_are_checked_in_their_own_layout(layout):
    """A layer built with layout=... declares how its features lie: the default checks (and
    assert_equivariant's default input) use it, so an equivariant layer passes in every
    layout, and its channels-last features are not read as channels first."""
    from equirelax.checks import ChannelsLast, declared_type
    from equirelax.testing import assert_equivariant

    V = natural(symmetric(5))
    copies = 1 if layout == "tensor" else 3
    layer = EquivariantLinear(copies * (V * V), copies * V, layout=layout).double()
    errors = assert_equivariant(layer)
    assert errors[torch.float64] < 1e-12
    assert isinstance(declared_type(layer, "rep_in"), ChannelsLast) == (layout == "channels_last")
    if layout == "channels_last":
        x = torch.randn(4, 5, 5, 3, dtype=torch.float64)
        assert er.equivariance_error(layer, x, layer.rep_in, ChannelsLast(layer.rep_out)) > 0.1


def test_channels_last_needs_a_rep():
    from equirelax.checks import ChannelsLast

    with pytest.raises(TypeError, match="ChannelsLast needs a Rep, got int"):
        ChannelsLast(3)  # type: ignore[arg-type]
