"""The cheap penalty estimates: ``penalty_rows`` (random rows) and ``penalty_sketch`` (random sign
combinations of the rows) give unbiased squared terms, exactly 0 for an equivariant free term,
and the data and Gram paths compute the same estimate from the same draw."""

from __future__ import annotations

import copy

import pytest
import torch

import equirelax as er
from equirelax.relaxation import FreeLinear, Relaxed, relax


def _reps(kind: str):
    if kind == "S4":
        G = er.groups.symmetric(4)
        V, T = er.reps.natural(G), er.reps.trivial(G)
        return V, 2 * V + T
    G = er.groups.O(3)  # a Lie algebra and a discrete generator (parity)
    v, t = er.reps.vector(G), er.reps.trivial(G)
    return v + t, 2 * v + t


def _layers(kind: str, bias: bool, **options) -> tuple[Relaxed, dict[str, Relaxed]]:
    """An exact reference and the data / Gram / generic (custom free term) estimates, all with
    the same random affine free term."""
    rep_in, rep_out = _reps(kind)
    torch.manual_seed(0)
    layer = er.nn.EquivariantLinear(rep_in, rep_out).double()
    free = FreeLinear(rep_in.dim, rep_out.dim, bias=bias, init_std=0.5).double()
    exact = Relaxed(layer, free_bias=bias).train()
    ways = {}
    for method in ("data", "gram"):
        ways[method] = Relaxed(layer, free_bias=bias, **options).train()
        ways[method].penalty_method = method
    ways["generic"] = Relaxed(layer, free=copy.deepcopy(free), **options).train()
    for r in (exact, *ways.values()):
        r.free.load_state_dict(free.state_dict())
    return exact, ways


def _squares(r: Relaxed, x: torch.Tensor) -> torch.Tensor:
    r(x)
    lie, norm = r.take_squares()
    return torch.stack([lie, norm]).detach()


def _assert_unbiased(r: Relaxed, x: torch.Tensor, exact: torch.Tensor, draws: int = 400
                     ) -> None:
    torch.manual_seed(1)
    samples = torch.stack([_squares(r, x) for _ in range(draws)])
    mean, se = samples.mean(0), samples.std(0) / draws**0.5
    assert (se > 0).all()  # the estimate is random, so the check has power
    assert ((mean - exact).abs() < 4 * se).all(), (mean, exact, se)


# -- penalty_rows -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["S4", "O3"])
@pytest.mark.parametrize("method", ["data", "gram"])
def test_penalty_rows_squares_are_unbiased(kind, method):
    exact, ways = _layers(kind, bias=True, penalty_rows=10)
    x = torch.randn(48, exact.rep_in.dim, dtype=torch.float64)
    _assert_unbiased(ways[method], x, _squares(exact, x))


def test_penalty_rows_are_random_not_strided():
    """Rows ordered as each sample followed by its 6 images under S3: a stride of 6 (384 rows,
    64 kept) saw only the samples themselves. Random rows estimate the full penalty."""
    G = er.groups.symmetric(3)
    V = er.reps.natural(G)
    torch.manual_seed(0)
    samples = torch.zeros(64, 3, dtype=torch.float64)
    samples[:, 0] = torch.randn(64, dtype=torch.float64)  # along the first axis only
    images = torch.stack([samples[:, g] for g in G.elements()], dim=1)  # (64, 6, 3), g = id first
    assert torch.equal(images[:, 0], samples)
    x = images.reshape(384, 3)
    layer = er.nn.EquivariantLinear(V, V).double()
    exact = Relaxed(layer).train()
    sampled = Relaxed(layer, penalty_rows=64).train()
    with torch.no_grad():
        w = torch.zeros(3, 3, dtype=torch.float64)
        w[:, 1:] = torch.randn(3, 2, dtype=torch.float64)  # blind to the first axis
        for r in (exact, sampled):
            r.free.weight.copy_(w)
    full = _squares(exact, x)
    # the strided rows (the identity images) see a norm of 0: the old estimate was useless
    assert float(_squares(exact, x[::6])[1]) == 0.0 and float(full[1]) > 1.0
    _assert_unbiased(sampled, x, full)


def test_penalty_rows_follow_torch_manual_seed(s4_model):
    relaxed = relax(s4_model, total_steps=10, penalty_rows=8, lie_weight=1.0)
    x = torch.randn(100, 4, dtype=torch.float64)
    values = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        relaxed.train()(x)
        values.append(float(relaxed.penalties()["norm"].detach()))
    assert values[0] == values[1] != values[2]


# -- penalty_sketch ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["S4", "O3"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("method", ["data", "gram"])
def test_sketched_squares_are_unbiased(kind, bias, method):
    exact, ways = _layers(kind, bias, penalty_sketch=6)
    x = torch.randn(40, exact.rep_in.dim, dtype=torch.float64)
    _assert_unbiased(ways[method], x, _squares(exact, x))


@pytest.mark.parametrize("kind", ["S4", "O3"])
@pytest.mark.parametrize("bias", [False, True])
def test_sketch_paths_agree_draw_by_draw(kind, bias):
    """Given the same draw of S, the data path, the Gram path (XᵀSSᵀX) and a custom free term
    (the affine term's constant sketched as Sᵀ1) compute the same squares."""
    _, ways = _layers(kind, bias, penalty_sketch=5)
    x = torch.randn(30, ways["data"].rep_in.dim, dtype=torch.float64)
    for seed in range(3):
        values = {}
        for name, r in ways.items():
            torch.manual_seed(seed)
            values[name] = _squares(r, x)
        for name in ("gram", "generic"):
            torch.testing.assert_close(values[name], values["data"], rtol=1e-10, atol=1e-10)
    torch.manual_seed(0)
    first = _squares(ways["data"], x)
    assert not torch.equal(first, _squares(ways["data"], x))  # a fresh S each call


@pytest.mark.parametrize("kind", ["S4", "O3"])
@pytest.mark.parametrize("method", ["data", "gram", "generic"])
def test_sketch_is_exactly_zero_for_an_equivariant_free_term(kind, method):
    _, ways = _layers(kind, bias=True, penalty_sketch=4)
    r = ways[method]
    with torch.no_grad():
        r.free.weight.copy_(er.hom(r.rep_in, r.rep_out).project(r.free.weight))
        fixed = er.homspace.fixed_space(r.rep_out)
        r.free.bias.copy_(fixed.project(r.free.bias.reshape(-1, 1)).reshape(-1))
    x = torch.randn(25, r.rep_in.dim, dtype=torch.float64)
    lie, norm = _squares(r, x)
    assert float(lie) < 1e-20 and float(norm) > 1e-2


def test_sketch_with_few_rows_is_the_exact_penalty():
    exact, ways = _layers("S4", bias=True, penalty_sketch=32)
    x = torch.randn(20, 4, dtype=torch.float64)
    torch.testing.assert_close(_squares(ways["data"], x), _squares(exact, x))


def test_relax_with_a_sketch_trains(s4_model):
    relaxed = relax(s4_model, total_steps=4, penalty_sketch=8, lie_weight=1.0, norm_weight=1.0)
    assert all(r.penalty_sketch == 8 for r in relaxed.relaxed_layers().values())
    x = torch.randn(64, 4, dtype=torch.float64)
    opt = torch.optim.Adam(relaxed.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        loss = relaxed.train()(x).pow(2).mean() + relaxed.penalty()
        loss.backward()
        opt.step()
        relaxed.step()
    assert all(r.free.weight.grad is not None for r in relaxed.relaxed_layers().values())
    assert torch.isfinite(loss)


@pytest.mark.parametrize("option", [{"penalty_rows": 8}, {"penalty_sketch": 8}])
def test_seeded_penalties_leave_the_default_generator_alone(s4_model, option):
    relaxed = relax(s4_model, total_steps=10, **option)
    x = torch.randn(100, 4, dtype=torch.float64)
    relaxed.train()
    values = []
    for seed in (5, 5, 6):
        relaxed.seed_penalties(seed)
        torch.manual_seed(0)
        relaxed(x)
        after = torch.rand(3)  # what a dropout layer after the relaxed ones would draw
        torch.manual_seed(0)
        assert torch.equal(after, torch.rand(3))
        values.append(float(relaxed.penalties()["norm"].detach()))
    assert values[0] == values[1] != values[2]
    relaxed.seed_penalties(None)  # the default generator again: the forward draws from it
    assert all(r.penalty_generator is None for r in relaxed.relaxed_layers().values())
    torch.manual_seed(0)
    relaxed(x)
    shifted = torch.rand(3)
    relaxed.penalties()
    assert not torch.equal(shifted, after)


# -- penalty_sketch="auto" --------------------------------------------------------------------
def _regular_layer(**options) -> Relaxed:
    """A 96 → 96 layer (4 copies of the regular rep of S4): on 256 rows its exact penalties
    cost more than the layer, and a sketch of 16 rows far less."""
    rep = 4 * er.reps.regular(er.groups.symmetric(4))
    torch.manual_seed(0)
    return Relaxed(er.nn.EquivariantLinear(rep, rep).double(), init_std=0.3, **options).train()


def test_auto_sketches_only_where_it_pays():
    from equirelax.relaxation.relaxed import AUTO_SKETCH

    big = _regular_layer(penalty_sketch="auto")
    assert big.sketch_size(256) == AUTO_SKETCH
    assert big.sketch_size(AUTO_SKETCH) is None  # too few rows to sketch
    big.penalty_rows = 32  # rows asked for explicitly win over the automatic sketch
    assert big.sketch_size(256) is None
    G = er.groups.symmetric(4)
    small = Relaxed(er.nn.EquivariantLinear(er.reps.natural(G), 2 * er.reps.natural(G)),
                    penalty_sketch="auto")
    assert small.sketch_size(10_000) is None  # its exact penalty costs less than the layer
    rep = 4 * er.reps.regular(G)
    out = Relaxed(er.nn.EquivariantLinear(rep, er.reps.trivial(G)), penalty_sketch="auto")
    assert out.sketch_size(256) is None  # forming SᵀX would cost about what the exact penalty does
    # a wider output layer: few multiply-adds, but every row's images gathered (0.37M elements
    # on 256 rows): there the sketch saves time, though the multiply-adds alone say it does not
    S5 = er.groups.symmetric(5)
    wide = Relaxed(er.nn.EquivariantLinear(4 * er.reps.regular(S5), er.reps.trivial(S5)),
                   penalty_sketch="auto")
    assert wide.sketch_size(256) == AUTO_SKETCH
    tiny = Relaxed(er.nn.EquivariantLinear(er.reps.natural(G), er.reps.trivial(G)),
                   penalty_sketch="auto")
    assert tiny.sketch_size(256) is None
    custom = Relaxed(er.nn.EquivariantLinear(rep, rep), penalty_sketch="auto",
                     free=FreeLinear(rep.dim, rep.dim))
    assert custom.sketch_size(256) is None


def test_auto_sketch_choice_is_remembered_per_rows_and_method():
    """"auto" compares costs once per number of rows and penalty method; a changed method or
    penalty_rows set later still decide (as a fresh layer with them would)."""
    from equirelax.relaxation.relaxed import AUTO_SKETCH

    layer = _regular_layer(penalty_sketch="auto")
    assert [layer.sketch_size(m) for m in (256, AUTO_SKETCH, 256)] == [AUTO_SKETCH, None,
                                                                       AUTO_SKETCH]
    assert layer._auto_sketch_choices == {(256, "auto"): AUTO_SKETCH, (AUTO_SKETCH, "auto"): None}
    for method in ("data", "gram"):
        layer.penalty_method = method
        fresh = _regular_layer(penalty_sketch="auto")
        fresh.penalty_method = method
        assert layer.sketch_size(256) == fresh.sketch_size(256)
        assert (256, method) in layer._auto_sketch_choices
    layer.penalty_rows = 32
    assert layer.sketch_size(256) is None


def test_auto_is_the_default_sketch_on_a_large_layer_and_exact_on_a_small_one():
    """Draw by draw, "auto" computes what penalty_sketch=16 computes on the large layer, and the
    exact squares on a batch it does not sketch."""
    from equirelax.relaxation.relaxed import AUTO_SKETCH

    auto, fixed, exact = (_regular_layer(penalty_sketch=p) for p in ("auto", AUTO_SKETCH, None))
    x = torch.randn(256, 96, dtype=torch.float64)
    for seed in range(2):
        torch.manual_seed(seed)
        a = _squares(auto, x)
        torch.manual_seed(seed)
        torch.testing.assert_close(a, _squares(fixed, x), rtol=1e-12, atol=0)
    assert not torch.allclose(_squares(auto, x), _squares(exact, x))
    few = x[:AUTO_SKETCH]
    torch.testing.assert_close(_squares(auto, few), _squares(exact, few))


def test_auto_sketch_is_exactly_zero_for_an_equivariant_free_term():
    r = _regular_layer(penalty_sketch="auto")
    with torch.no_grad():
        r.free.weight.copy_(er.hom(r.rep_in, r.rep_out).project(r.free.weight))
    lie, norm = _squares(r, torch.randn(256, 96, dtype=torch.float64))
    assert r.sketch_size(256) is not None
    assert float(lie) < 1e-20 and float(norm) > 1e-2


def test_relax_passes_auto_to_every_layer(s4_model):
    relaxed = relax(s4_model, total_steps=4, penalty_sketch="auto")
    assert {r.penalty_sketch for r in relaxed.relaxed_layers().values()} == {"auto"}
    with pytest.raises(ValueError, match="penalty_sketch must be a positive integer, 'auto' or "
                                         "None, got 'exact'"):
        relax(s4_model, total_steps=4, penalty_sketch="exact")
    # "auto" with penalty_rows is not a conflict: the rows are used
    rows = relax(s4_model, total_steps=4, penalty_sketch="auto", penalty_rows=8)
    assert all(r.sketch_size(100) is None for r in rows.relaxed_layers().values())


def test_gram_path_is_not_taken_for_a_handful_of_rows():
    """Few input features make the Gram path cheapest in multiply-adds at any row count; its
    fixed cost (more, smaller operations) keeps a sketch's few rows on the data path."""
    from equirelax.relaxation.gram import GramPenalty

    G = er.groups.symmetric(5)
    hidden = 4 * er.reps.regular(G)
    r = Relaxed(er.nn.EquivariantLinear(er.reps.natural(G), hidden))
    gram = r._gram_penalty()
    assert isinstance(gram, GramPenalty)
    assert not gram.cheaper_than_data(8, 5, hidden.dim)
    assert gram.cheaper_than_data(256, 5, hidden.dim)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p, m", [(4, 256), (3, 7), (16, 33)])
def test_eager_signs_equal_the_compiled_paths_signs_bit_for_bit(dtype, p, m):
    """The eager draw (bits, then one add of a kept −1/√p) and the compiled path's
    (``signs_from_bits``: two in-place ops) give the same S from the same seed, to the last bit,
    so that both paths see one S per seed."""
    from equirelax.relaxation.fused import draw_signs, signs_from_bits

    torch.manual_seed(3)
    eager = draw_signs(m, p, dtype, torch.device("cpu"), None)
    torch.manual_seed(3)
    bits = torch.randint(0, 2, (p, m), dtype=dtype)
    compiled = signs_from_bits(bits, p)
    assert eager.shape == (m, p) and eager.T.is_contiguous()
    assert torch.equal(eager, compiled)
    assert torch.allclose(eager.abs(), torch.full_like(eager, p**-0.5))
    assert (eager > 0).any() and (eager < 0).any()
    again = draw_signs(m, p, dtype, torch.device("cpu"), None)  # the kept constant is reused
    assert not torch.equal(again, eager) or p * m < 8
