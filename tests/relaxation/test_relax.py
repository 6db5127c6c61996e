import copy

import numpy as np
import pytest
import torch
from torch import nn

import equirelax as er
from equirelax.relaxation import Relaxed, harden, register, relax


def _train_steps(relaxed, x, y, steps, opt=None):
    opt = opt or torch.optim.Adam(relaxed.parameters(), lr=1e-2)
    loss = None
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((relaxed(x) - y) ** 2) + relaxed.penalty()
        loss.backward()
        opt.step()
        relaxed.step()
    return opt, loss


def _randomise_free(relaxed, scale=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            w = layer.free.weight
            w.copy_(torch.randn(w.shape, generator=gen, dtype=w.dtype) * scale)


@pytest.mark.parametrize("fixture", ["s4_model", "so3_model", "o3_model"])
def test_hardened_model_is_exactly_equivariant(fixture, request):
    model = request.getfixturevalue(fixture)
    relaxed = relax(model, schedule="triangular", total_steps=6)
    x = torch.randn(16, model.rep_in.dim, dtype=torch.float64)
    y = torch.randn(16, model.rep_out.dim, dtype=torch.float64)
    _randomise_free(relaxed)
    _train_steps(relaxed, x, y, 3)
    relaxed.train()
    # mid-training the relaxed model is not equivariant
    assert er.equivariance_error(relaxed, x) > 1e-4
    hard = harden(relaxed)
    assert type(hard) is type(model)
    assert list(hard.state_dict()) == list(model.state_dict())
    assert er.equivariance_error(hard, x) <= 1e-12
    assert er.equivariance_error(hard, x, dtype=torch.float32) <= 1e-5
    assert er.lie_derivative_error(hard, x) <= 1e-12
    er.testing.assert_equivariant(hard, x)


def test_harden_keeps_relaxed_model_and_matches_projected_eval(s4_model):
    relaxed = relax(s4_model, total_steps=10)
    _randomise_free(relaxed)
    relaxed.t = 3
    relaxed._push_theta()
    x = torch.randn(8, 4, dtype=torch.float64)
    hard = harden(relaxed, mode="drop")
    relaxed.eval()
    assert torch.equal(relaxed(x), hard(x))  # eval runs the exact (projected) model
    relaxed.train()
    assert not torch.allclose(relaxed(x), hard(x))
    assert relaxed.relaxed_layers()  # still relaxed


@pytest.mark.parametrize("fixture", ["s4_model", "so3_model", "o3_model"])
def test_penalties_zero_for_equivariant_free_term_and_positive_otherwise(fixture, request):
    model = request.getfixturevalue(fixture)
    relaxed = relax(model, total_steps=10, lie_weight=1.0, norm_weight=1.0, proj_weight=1.0)
    x = torch.randn(32, model.rep_in.dim, dtype=torch.float64)
    _randomise_free(relaxed)
    relaxed.train()
    relaxed(x)
    p = relaxed.penalties()
    assert p["lie"] > 1e-2 and p["norm"] > 1e-2 and p["projection"] > 1e-2
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            layer.free.weight.copy_(er.hom(layer.rep_in, layer.rep_out).project(layer.free.weight))
    relaxed(x)
    squares = [layer.take_squares() for layer in relaxed.relaxed_layers().values()]
    assert all(lie is not None and float(lie.detach()) < 1e-20 for lie, _ in squares)
    assert all(float(norm.detach()) > 0 for _, norm in squares)
    relaxed(x)
    assert float(relaxed.penalties()["projection"].detach()) < 1e-5  # sqrt(0 + eps)


@pytest.mark.parametrize("fixture", ["s4_model", "so3_model"])
def test_penalty_gradients_are_finite_at_zero_free_weights(fixture, request):
    model = request.getfixturevalue(fixture)
    relaxed = relax(model, total_steps=10, lie_weight=1.0, norm_weight=1.0, proj_weight=1.0)
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            layer.free.weight.zero_()
    relaxed.train()
    relaxed(torch.randn(8, model.rep_in.dim, dtype=torch.float64))
    relaxed.penalty().backward()
    for p in relaxed.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()


def test_finite_group_penalty_matches_its_definition():
    G = er.groups.cyclic(5)
    R = er.reps.regular(G)
    layer = er.nn.EquivariantLinear(R, R).double()
    r = Relaxed(layer)
    _ = r.train()
    w = torch.randn(5, 5, dtype=torch.float64)
    with torch.no_grad():
        r.free.weight.copy_(w)
    x = torch.randn(7, 5, dtype=torch.float64)
    r(x)
    lie, norm = r.take_squares()
    g = torch.from_numpy(R.generator_matrices()[0])
    expected = ((x @ g.T @ w.T - x @ w.T @ g.T) ** 2).sum()
    assert torch.allclose(lie, expected)
    assert torch.allclose(norm, ((x @ w.T) ** 2).sum())


def test_lie_penalty_matches_its_definition():
    S = er.groups.SO(3)
    v = er.reps.vector(S)
    layer = er.nn.EquivariantLinear(2 * v, v).double()
    r = Relaxed(layer).train()
    w = torch.randn(3, 6, dtype=torch.float64)
    with torch.no_grad():
        r.free.weight.copy_(w)
    x = torch.randn(4, 6, dtype=torch.float64)
    r(x)
    lie, _ = r.take_squares()
    expected = 0.0
    for a_in, a_out in zip((2 * v).lie_matrices(), v.lie_matrices()):
        a_in, a_out = torch.from_numpy(a_in), torch.from_numpy(a_out)
        expected = expected + ((x @ a_in.T @ w.T - x @ w.T @ a_out.T) ** 2).sum()
    assert torch.allclose(lie, expected)


def test_fused_forward_equals_sum_of_paths():
    G = er.groups.symmetric(3)
    V = er.reps.natural(G)
    layer = er.nn.EquivariantLinear(V, 2 * V).double()
    r = Relaxed(layer, free_bias=True)
    assert r.fused
    r.theta = 0.7
    x = torch.randn(5, 3, dtype=torch.float64)
    expected = layer(x) + 0.7 * r.free(x)
    assert torch.allclose(r.train()(x), expected)


@pytest.mark.parametrize("free_bias", [False, True])
def test_unfused_forward_equals_sum_of_paths(free_bias):
    """A layer that is not one dense matrix (vector neurons: features (C, 3)) adds θ W x to its
    own output, with the same values and gradients as the plain sum."""
    from equirelax.nn.vn import VNLinear

    layer = VNLinear(3, 2).double()
    r = Relaxed(layer, free_bias=free_bias, init_std=0.3).train()
    assert not r.fused and not r.custom_free
    r.theta = 0.7
    x = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    y = r(x)
    flat = r.free(x.reshape(4, 5, 9)).reshape(4, 5, 2, 3)
    expected = layer(x) + 0.7 * flat
    torch.testing.assert_close(y, expected)
    g = torch.randn_like(y)
    params = [x, *layer.parameters(), *r.free.parameters()]
    for a, b in zip(torch.autograd.grad((y * g).sum(), params),
                    torch.autograd.grad((expected * g).sum(), params)):
        torch.testing.assert_close(a, b)


def test_save_and_load_mid_run_resumes_identically(s4_model):
    x = torch.randn(64, 4, dtype=torch.float64)
    y = torch.randn(64, 1, dtype=torch.float64)
    torch.manual_seed(1)
    relaxed = relax(s4_model, total_steps=20)
    opt, _ = _train_steps(relaxed, x, y, 7)
    state = copy.deepcopy({"model": relaxed.state_dict(), "opt": opt.state_dict()})
    theta_before = relaxed.theta
    _, loss_next = _train_steps(relaxed, x, y, 1, opt)

    resumed = relax(s4_model, total_steps=20)
    resumed.load_state_dict(state["model"])
    assert resumed.t == 7
    assert resumed.theta == theta_before
    assert all(layer.theta == theta_before for layer in resumed.relaxed_layers().values())
    opt2 = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    opt2.load_state_dict(state["opt"])
    _, loss_resumed = _train_steps(resumed, x, y, 1, opt2)
    assert float(loss_resumed.detach()) == float(loss_next.detach())


def test_project_mode_is_lossless_for_equivariant_free_part(s4_model):
    relaxed = relax(s4_model, schedule="constant", value=0.4, free_bias=True)
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            w = torch.randn_like(layer.free.weight)
            layer.free.weight.copy_(er.hom(layer.rep_in, layer.rep_out).project(w))
            b = torch.randn(layer.rep_out.dim, 1, dtype=w.dtype)
            fixed = er.homspace.fixed_space(layer.rep_out)
            layer.free.bias.copy_(fixed.project(b).reshape(-1))
    x = torch.randn(16, 4, dtype=torch.float64)
    relaxed.train()
    before = relaxed(x)
    hard = harden(relaxed, mode="project")
    assert torch.allclose(hard(x), before, atol=1e-12)
    dropped = harden(relaxed, mode="drop")
    assert not torch.allclose(dropped(x), before)


def test_rpp_mode(s4_model):
    relaxed = relax(s4_model, rpp=True, rpp_free_weight=10.0, rpp_equiv_weight=1e-3)
    assert relaxed.theta == 1.0
    relaxed.step()
    assert relaxed.theta == 1.0
    x = torch.randn(8, 4, dtype=torch.float64)
    relaxed.train()
    relaxed(x)
    p = relaxed.penalties()
    assert set(p) >= {"rpp_free", "rpp_equiv"}
    free = sum(float((layer.free.weight.detach() ** 2).sum())
               for layer in relaxed.relaxed_layers().values())
    assert float(p["rpp_free"].detach()) == pytest.approx(free)
    hard = harden(relaxed, mode="project")
    assert er.equivariance_error(hard, x) <= 1e-12


def test_relax_a_layer_we_did_not_write():
    G = er.groups.symmetric(4)
    V = er.reps.natural(G)
    lin = nn.Linear(4, 4).double()
    with torch.no_grad():  # an equivariant nn.Linear: a I + b 11^T, constant bias
        lin.weight.copy_(0.5 * torch.eye(4) + 0.1)
        lin.bias.fill_(0.2)
    r = Relaxed(lin, V, V, free_bias=True)
    assert r.fused
    r.theta = 0.5
    with torch.no_grad():
        r.free.weight.copy_(er.hom(V, V).project(torch.randn(4, 4, dtype=torch.float64)))
        r.free.bias.fill_(0.3)
    x = torch.randn(6, 4, dtype=torch.float64)
    before = r.train()(x)
    hard = r.harden("project")
    assert isinstance(hard, nn.Linear)
    assert torch.allclose(hard(x), before)
    assert er.equivariance_error(hard, x, V, V) < 1e-12


class _Doubler(nn.Module):
    """A custom equivariant layer: x -> 2x, with its actions given by registration."""

    def __init__(self, rep):
        super().__init__()
        self.rep = rep
        self.scale = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))

    def forward(self, x):
        return self.scale * x


def test_register_teaches_relax_a_new_layer_type():
    G = er.groups.cyclic(3)
    R = er.reps.regular(G)
    register(_Doubler, reps=lambda layer: (layer.rep, layer.rep))
    model = nn.Sequential(_Doubler(R), nn.Tanh(), _Doubler(R))
    relaxed = relax(model, total_steps=4)
    assert len(relaxed.relaxed_layers()) == 2
    x = torch.randn(5, 3, dtype=torch.float64)
    hard = harden(relaxed)
    assert isinstance(hard, nn.Sequential) and isinstance(hard[0], _Doubler)
    assert er.equivariance_error(hard, x, R, R) < 1e-12


def test_layer_selection_and_errors(s4_model):
    relaxed = relax(s4_model, total_steps=5, layers=["layers.0"])
    assert list(relaxed.relaxed_layers()) == ["layers.0"]
    relaxed = relax(s4_model, total_steps=5, layers=[er.nn.EquivariantLinear])
    assert len(relaxed.relaxed_layers()) == 3
    with pytest.raises(ValueError, match="found no layer to relax"):
        relax(nn.Sequential(nn.Linear(3, 3)), total_steps=5)
    with pytest.raises(ValueError, match="declares no rep_in/rep_out"):
        Relaxed(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="lie_weight must be a finite number"):
        relax(s4_model, total_steps=5, lie_weight=-1.0)
    with pytest.raises(ValueError, match="unknown hardening mode"):
        harden(relax(s4_model, total_steps=5), mode="melt")
    with pytest.raises(ValueError, match=r"expects inputs of shape \(\.\.\., 4\)"):
        relax(s4_model, total_steps=5).train()(torch.randn(2, 5, dtype=torch.float64))


def test_penalty_rows_subsample_keeps_exactness(s4_model):
    relaxed = relax(s4_model, total_steps=10, penalty_rows=16, lie_weight=1.0)
    x = torch.randn(100, 4, dtype=torch.float64)
    relaxed.train()
    _randomise_free(relaxed)
    relaxed(x)
    assert float(relaxed.penalties()["lie"].detach()) > 1e-2
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            layer.free.weight.copy_(er.hom(layer.rep_in, layer.rep_out).project(layer.free.weight))
    relaxed(x)
    assert all(float(layer.take_squares()[0].detach()) < 1e-20
               for layer in relaxed.relaxed_layers().values())


def test_float32_relaxed_training_runs():
    G = er.groups.dihedral(4)
    R = er.reps.regular(G)
    model = er.nn.EquivariantMLP(er.reps.natural(G), [R], er.reps.trivial(G))
    relaxed = relax(model, total_steps=5)
    x = torch.randn(16, 4)
    _train_steps(relaxed, x, torch.randn(16, 1), 5)
    hard = harden(relaxed)
    assert er.equivariance_error(hard, x, dtype=torch.float32) <= 1e-5
    assert np.isfinite(er.equivariance_error(hard, x))


def _three_ways(layer, **kwargs):
    """The same relaxed layer evaluated on the rows, from their Gram matrix, and through the
    generic path that any (custom) free term takes."""
    ways = {}
    for method in ("data", "gram"):
        r = Relaxed(layer, **kwargs).train()
        r.penalty_method = method
        ways[method] = r
    free = copy.deepcopy(ways["data"].free)
    ways["generic"] = Relaxed(layer, free=free, **kwargs).train()
    for r in ways.values():
        r.free.load_state_dict(free.state_dict())
    return ways


def _pair(group):
    if group == "S4":
        G = er.groups.symmetric(4)
        return er.reps.natural(G) + er.reps.trivial(G), 2 * er.reps.natural(G)
    G = er.groups.O(3)
    v, t = er.reps.vector(G), er.reps.trivial(G)
    return 2 * v + t, v + 2 * t


@pytest.mark.parametrize("free_bias", [False, True])
@pytest.mark.parametrize("group", ["S4", "O3"])
def test_gram_data_and_generic_penalties_agree(group, free_bias):
    rep_in, rep_out = _pair(group)
    layer = er.nn.EquivariantLinear(rep_in, rep_out).double()
    ways = _three_ways(layer, free_bias=free_bias, init_std=0.5)
    x = torch.randn(3, 50, rep_in.dim, dtype=torch.float64)
    values, grads = {}, {}
    for name, r in ways.items():
        r(x)
        lie, norm = r.take_squares()
        values[name] = (lie.detach(), norm.detach())
        (lie + norm).backward()
        grads[name] = torch.cat([p.grad.reshape(-1) for p in r.free.parameters()])
    for name in ("gram", "generic"):
        for a, b in zip(values["data"], values[name]):
            assert torch.allclose(a, b, rtol=1e-10)
        assert torch.allclose(grads["data"], grads[name], rtol=1e-9)


@pytest.mark.parametrize("group", ["S4", "O3"])
def test_affine_free_term_penalty_matches_its_definition(group):
    """With a bias, a group generator compares f(g x) with g f(x), and a Lie algebra element
    compares the derivatives W(A x) with A f(x): an equivariant affine map has zero penalty."""
    rep_in, rep_out = _pair(group)
    layer = er.nn.EquivariantLinear(rep_in, rep_out).double()
    ways = _three_ways(layer, free_bias=True, init_std=0.5)
    w, b = ways["data"].free.weight.detach(), ways["data"].free.bias.detach()
    x = torch.randn(20, rep_in.dim, dtype=torch.float64)
    expected = 0.0
    gens = list(zip(rep_in.generator_matrices(), rep_out.generator_matrices()))
    lies = list(zip(rep_in.lie_matrices(), rep_out.lie_matrices()))
    for (a_in, a_out), lie in [(g, False) for g in gens] + [(g, True) for g in lies]:
        a_in, a_out = torch.from_numpy(a_in), torch.from_numpy(a_out)
        moved = x @ a_in.T @ w.T + (0.0 if lie else b)
        expected = expected + ((moved - (x @ w.T + b) @ a_out.T) ** 2).sum()
    for r in ways.values():
        r(x)
        assert torch.allclose(r.take_squares()[0], expected)
    # an equivariant weight and an invariant bias: exactly zero on every path
    with torch.no_grad():
        for r in ways.values():
            r.free.weight.copy_(er.hom(rep_in, rep_out).project(r.free.weight))
            fixed = er.homspace.fixed_space(rep_out)
            r.free.bias.copy_(fixed.project(r.free.bias.reshape(-1, 1)).reshape(-1))
    for r in ways.values():
        r(x)
        assert float(r.take_squares()[0].detach()) < 1e-20


def test_penalty_method_is_checked():
    G = er.groups.symmetric(3)
    V = er.reps.natural(G)
    layer = er.nn.EquivariantLinear(V, V).double()
    r = Relaxed(layer)
    with pytest.raises(ValueError, match="penalty_method must be 'auto', 'data' or 'gram'"):
        r.penalty_method = "fast"
    custom = Relaxed(layer, free=er.relaxation.FreeLinear(3, 3).double()).train()
    custom.penalty_method = "gram"
    with pytest.raises(ValueError, match="needs the default dense free term"):
        custom(torch.randn(4, 3, dtype=torch.float64))


def test_relax_sets_the_penalty_method_and_fails_early():
    G = er.groups.symmetric(3)
    V = er.reps.natural(G)
    model = er.nn.EquivariantMLP(V, [2 * V], V).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    squares = {}
    for method in ("auto", "data", "gram"):
        torch.manual_seed(0)
        r = relax(model, total_steps=4, penalty_method=method, init_std=0.3)
        assert {layer.penalty_method for layer in r.relaxed_layers().values()} == {method}
        r.train()(x)
        squares[method] = r.penalty().detach()
    assert torch.allclose(squares["data"], squares["gram"], rtol=1e-10)
    assert torch.allclose(squares["auto"], squares["gram"], rtol=1e-10)
    with pytest.raises(ValueError, match="penalty_method must be"):
        relax(model, total_steps=4, penalty_method="exact")
    from equirelax.models import GCNN

    convs = GCNN("C4", in_channels=1, num_classes=2, channels=(2,), pool_after=(), image_size=6)
    with pytest.raises(ValueError, match=r"(Lifting|Group)Conv2d has its own free term"):
        relax(convs, total_steps=4, penalty_method="gram")


def test_stacked_matrix_map_applies_every_matrix():
    from equirelax.relaxation.actions import matrix_map, stacked_matrix_map

    G = er.groups.O(3)
    rep = er.reps.irreps(G, "3x0e+2x1o") if _has_e3nn() else 2 * er.reps.vector(G)
    perm = er.reps.regular(er.groups.symmetric(3)).generator_matrices()
    rng = np.random.default_rng(0)
    for mats in (rep.generator_matrices() + rep.lie_matrices(), perm,
                 [rng.normal(size=(5, 5)) for _ in range(3)]):
        x = torch.randn(4, 7, mats[0].shape[1], dtype=torch.float64)
        stacked = stacked_matrix_map(mats)(x)
        assert stacked.shape == (4, 7, len(mats), mats[0].shape[0])
        for k, m in enumerate(mats):
            assert torch.allclose(stacked[..., k, :], x @ torch.from_numpy(m).T)
            assert torch.allclose(matrix_map(m, (m.shape[0],))(x), stacked[..., k, :])


def _has_e3nn():
    try:
        import e3nn  # noqa: F401
    except ImportError:
        return False
    return True


def test_sparse_generator_actions_match_dense_matrices():
    pytest.importorskip("e3nn")
    from equirelax.relaxation.actions import pair_actions

    G = er.groups.O(3)
    rep_in = er.reps.irreps(G, "4x0e+4x1o+2x2e")
    rep_out = er.reps.irreps(G, "2x0e+3x1o")
    act_in, act_out = pair_actions(rep_in, rep_out)
    x = torch.randn(5, rep_in.dim, dtype=torch.float64)
    y = torch.randn(5, rep_out.dim, dtype=torch.float64)
    for a, m in zip(act_in.discrete + act_in.lie, act_in.matrices):
        assert torch.allclose(a(x), x @ torch.from_numpy(m).T)
    for a, m in zip(act_out.discrete + act_out.lie, act_out.matrices):
        assert torch.allclose(a(y), y @ torch.from_numpy(m).T)


# -- refused input: each names what was expected and what it got --------------------------------
def test_relaxing_a_relaxed_model_is_refused(s4_model):
    relaxed = relax(s4_model, total_steps=5)
    with pytest.raises(TypeError, match=r"not relaxed yet, got a RelaxedModel \(returned by "
                                        r"relax\(\)\); relax the original model, or harden"):
        relax(relaxed, total_steps=5)
    with pytest.raises(TypeError, match=r"got EquivariantMLP whose modules layers.0, layers.2, "
                                        r"layers.4 are relaxed already"):
        relax(relaxed.model, total_steps=5)
    with pytest.raises(TypeError, match=r"got a Relaxed layer \(around a EquivariantLinear\)"):
        relax(relax(s4_model.layers[0], total_steps=5).model, total_steps=5)
    relax(harden(relaxed), total_steps=5)  # the hardened model can be relaxed again


@pytest.mark.parametrize(("layer", "reps", "message"), [
    (nn.Linear(4, 5), "V V", r"Linear has out_features=5, but the output rep natural gives "
                             r"output features of shape \(4,\): expected a last axis of 5, got 4"),
    (nn.Linear(3, 4), "V V", r"Linear has in_features=3, .* expected a last axis of 3, got 4"),
    ("EquivariantLinear(V, V)", "2V V", r"EquivariantLinear has in_features=4, but the input rep "
                                        r"2\*natural .* expected a last axis of 4, got 8"),
])
def test_relaxed_reps_must_fit_the_layer(layer, reps, message):
    G = er.groups.symmetric(4)
    V = er.reps.natural(G)
    named = {"V": V, "2V": 2 * V}
    if layer == "EquivariantLinear(V, V)":
        layer = er.nn.EquivariantLinear(V, V)
    rep_in, rep_out = (named[k] for k in reps.split())
    with pytest.raises(ValueError, match=message):
        Relaxed(layer, rep_in, rep_out)


def test_relaxed_reps_must_match_the_dims_the_layer_declares():
    G = er.groups.symmetric(4)
    V, T = er.reps.natural(G), er.reps.trivial(G)

    class Declares(nn.Module):
        rep_in, rep_out = V, T

        def forward(self, x):
            return x.sum(-1, keepdim=True)

    with pytest.raises(ValueError, match=r"Declares declares rep_out trivial of dim 1, but the "
                                         r"output rep passed, natural, has dim 4"):
        Relaxed(Declares(), V, V)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"penalty_rows": 0}, ValueError, "penalty_rows must be a positive integer or None, got 0"),
    ({"penalty_rows": -3}, ValueError, "penalty_rows must be a positive integer or None, got -3"),
    ({"penalty_rows": 2.5}, TypeError, "penalty_rows must be a positive integer or None, got 2.5"),
    ({"penalty_rows": True}, TypeError, "penalty_rows must be a positive integer or None, got "
                                        "True"),
    ({"penalty_sketch": 0}, ValueError, "penalty_sketch must be a positive integer or None, "
                                        "got 0"),
    ({"penalty_sketch": 2.5}, TypeError, "penalty_sketch must be a positive integer or None, "
                                         "got 2.5"),
    ({"penalty_sketch": True}, TypeError, "penalty_sketch must be a positive integer or None, "
                                          "got True"),
    ({"penalty_sketch": 8, "penalty_rows": 16}, ValueError,
     "penalty_rows=16 and penalty_sketch=8 cannot be used together"),
    ({"init_std": -1e-3}, ValueError, "init_std must be a finite number >= 0, got -0.001"),
    ({"init_std": float("nan")}, ValueError, "init_std must be a finite number >= 0, got nan"),
    ({"init_std": "0.1"}, TypeError, "init_std must be a number >= 0, got '0.1'"),
    ({"peak": -1.0}, ValueError, "peak must be a finite number >= 0, got -1.0"),
    ({"total_steps": 10.5}, TypeError, r"total_steps must be an integer >= 1, got 10.5 \(float\)"),
    ({"total_steps": "10"}, TypeError, r"total_steps must be an integer >= 1, got '10' \(str\)"),
    ({"total_steps": True}, TypeError, r"total_steps must be an integer >= 1, got True \(bool\)"),
    ({"total_steps": 0}, ValueError, "needs total_steps >= 1, got 0"),
])
def test_bad_relax_options_are_refused(s4_model, kwargs, error, message):
    kwargs = {"total_steps": 10, **kwargs}
    with pytest.raises(error, match=message):
        relax(s4_model, **kwargs)
    layer_kwargs = {k: v for k, v in kwargs.items()
                    if k in ("penalty_rows", "penalty_sketch", "init_std")}
    if layer_kwargs:  # the layer wrapper refuses them too
        with pytest.raises(error, match=message):
            Relaxed(s4_model.layers[0], **layer_kwargs)


# -- the schedule in the saved state -------------------------------------------------------------
def test_state_records_every_schedule_parameter(s4_model):
    relaxed = relax(s4_model, schedule="linear", total_steps=37, peak=0.5)
    for _ in range(3):
        relaxed.step()
    extra = relaxed.state_dict()["_extra_state"]
    assert extra == {"t": 3, "schedule": {"kind": "linear", "total": 37, "peak": 0.5,
                                          "value": 0.1}}


@pytest.mark.parametrize(("saved", "loaded", "difference"), [
    ({"total_steps": 37}, {"total_steps": 100}, "total 37 != 100"),
    ({"total_steps": 37, "peak": 0.5}, {"total_steps": 37}, "peak 0.5 != 1.0"),
    ({"total_steps": 37}, {"total_steps": 37, "schedule": "cosine"},
     "kind 'triangular' != 'cosine'"),
    ({"schedule": "constant", "value": 0.2}, {"schedule": "constant", "value": 0.3},
     "value 0.2 != 0.3"),
])
def test_loading_a_state_of_another_schedule_is_refused(s4_model, saved, loaded, difference):
    source = relax(s4_model, **saved)
    for _ in range(13):
        source.step()
    target = relax(s4_model, **loaded)
    with pytest.raises(ValueError, match=r"checkpoint was saved with schedule .*but this model has "
                                         rf".*\({difference}\): its step 13 would mean another"):
        target.load_state_dict(source.state_dict())
    assert target.t == 0  # nothing was loaded


def test_the_issue_example_no_longer_jumps_theta(s4_model):
    source = relax(s4_model, total_steps=37)
    for _ in range(13):
        source.step()
    assert source.theta == pytest.approx(0.722, abs=1e-3)
    with pytest.raises(ValueError, match="total 37 != 100"):
        relax(s4_model, total_steps=100).load_state_dict(source.state_dict())
    same = relax(s4_model, total_steps=37)
    same.load_state_dict(source.state_dict())
    assert same.t == 13 and same.theta == source.theta


def test_old_states_with_only_the_step_still_load(s4_model):
    source = relax(s4_model, total_steps=20)
    for _ in range(4):
        source.step()
    state = source.state_dict()
    for old in ({"t": 4}, {"t": 4, "schedule": {"kind": "triangular"}}):
        state["_extra_state"] = old
        target = relax(s4_model, total_steps=20)
        target.load_state_dict(state)
        assert target.t == 4 and target.theta == source.theta
    state["_extra_state"] = {"t": 4, "schedule": {"kind": "linear"}}
    with pytest.raises(ValueError, match="kind 'linear' != 'triangular'"):
        relax(s4_model, total_steps=20).load_state_dict(state)
    state["_extra_state"] = {"t": -1}
    with pytest.raises(ValueError, match="step must be an integer >= 0, got -1"):
        relax(s4_model, total_steps=20).load_state_dict(state)


# -- serialisation: relaxed models pickle (DataLoader workers, Ray, joblib) and copy -----------
def _round_trips(model):
    import pickle

    return {"pickle": pickle.loads(pickle.dumps(model)), "deepcopy": copy.deepcopy(model)}


@pytest.mark.parametrize("fixture", ["s4_model", "so3_model"])
def test_relaxed_models_pickle_and_copy_with_identical_outputs(fixture, request):
    model = request.getfixturevalue(fixture)
    dim = model.rep_in.dim
    x = torch.randn(32, dim, dtype=torch.float64)
    y = torch.randn(32, model.rep_out.dim, dtype=torch.float64)
    relaxed = relax(model, total_steps=20, free_bias=True)
    _train_steps(relaxed, x, y, 5)  # θ > 0, action caches filled, penalties recorded
    relaxed.train()
    relaxed(x)  # leaves recorded penalty terms behind: they are not part of a copy
    with torch.no_grad():
        expected_train = relaxed(x)
        expected_eval = relaxed.eval()(x)
    relaxed.train()
    copies = _round_trips(relaxed)
    relaxed.penalties()  # clears the records left by the training-mode forward
    for how, loaded in copies.items():
        assert all(sq is None for layer in loaded.relaxed_layers().values()
                   for sq in layer.take_squares())
        assert loaded.t == relaxed.t == 5 and loaded.theta == relaxed.theta > 0, how
        assert loaded.training
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), expected_train, atol=0, rtol=0)
            torch.testing.assert_close(loaded.eval()(x), expected_eval, atol=0, rtol=0)
        loaded.train()
        relaxed.train()
        # the penalties (built from the actions, now classes instead of closures) agree too
        relaxed(x)
        loaded(x)
        mine, theirs = relaxed.penalties(), loaded.penalties()
        assert set(theirs) == set(mine) and float(mine["lie"].detach()) > 0
        for name in mine:
            torch.testing.assert_close(theirs[name], mine[name], atol=0, rtol=0)
        hard = harden(loaded)
        assert er.equivariance_error(hard, x) < 1e-12
        _train_steps(loaded, x, y, 1)  # and it still trains


class _ScaledLinear(nn.Linear):
    """An nn.Linear subclass registered with lambdas (which pickle cannot save)."""


def test_a_layer_registered_with_lambdas_still_pickles():
    register(_ScaledLinear, dense=lambda layer: (layer.weight, layer.bias),
             fold=lambda layer, w, b: None)
    V = er.reps.natural(er.groups.symmetric(3))
    r = Relaxed(_ScaledLinear(3, 3).double(), V, V)
    assert r.fused
    r.theta = 0.5
    x = torch.randn(4, 3, dtype=torch.float64)
    for loaded in _round_trips(r).values():
        assert loaded.fused and loaded._dense is not None and loaded._fold is not None
        torch.testing.assert_close(loaded(x), r(x), atol=0, rtol=0)


def test_the_step_sees_the_relaxed_layers_that_relaxed_layers_lists(s4_model):
    """penalties() and step() walk the model without names; they find the layers (in order)
    that relaxed_layers() names, also after a relaxed layer is replaced or shared."""
    relaxed = relax(s4_model, total_steps=10)
    assert relaxed._layers() == list(relaxed.relaxed_layers().values())
    inner = relaxed.model.layers
    first = next(i for i, m in enumerate(inner) if isinstance(m, Relaxed))
    inner[first] = copy.deepcopy(inner[first])  # replaced after relax()
    inner.append(inner[first])  # and shared: listed once
    relaxed.model.register_module("absent", None)  # an empty slot is skipped
    nested = torch.nn.Sequential(torch.nn.Sequential(copy.deepcopy(inner[first])))
    relaxed.model.register_module("nested", nested)  # and deeper modules are found, in order
    assert relaxed._layers() == list(relaxed.relaxed_layers().values())
    assert relaxed._layers()[-1] is nested[0][0]
    assert relaxed._layers() == list(relaxed.relaxed_layers().values())
    relaxed.step()
    assert all(layer.theta == relaxed.theta for layer in relaxed.relaxed_layers().values())
    single = relax(er.nn.EquivariantLinear(er.reps.natural(er.groups.symmetric(3)),
                                           er.reps.natural(er.groups.symmetric(3))),
                   total_steps=4)
    assert single._layers() == [single.model]
