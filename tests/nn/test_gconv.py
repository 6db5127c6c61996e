"""Group convolutions for C4 and D4: group structure, exact equivariance for every element."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import equirelax as er
from equirelax.nn.gconv import (
    CNN,
    GCNN,
    FreeFieldConv2d,
    GroupBatchNorm,
    GroupConv2d,
    GroupInvariantPooling,
    ImageGroup,
    LiftingConv2d,
    image_group,
)
from equirelax.relaxation import Relaxed, harden, relax

GROUPS = ["C4", "D4"]
DTYPES = [torch.float64, torch.float32]
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions: one thread avoids oversubscribing a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randn(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# ---------------------------------------------------------------- the groups


@pytest.mark.parametrize("name", GROUPS)
def test_group_structure(name: str) -> None:
    G = ImageGroup(name)
    n = G.order
    assert n == {"C4": 4, "D4": 8}[name] and G.elements[0] == (0, 0)
    table = G.cayley
    # Identity, Latin square, associativity, inverses.
    assert (table[0] == range(n)).all() and (table[:, 0] == range(n)).all()
    assert all(sorted(row) == list(range(n)) for row in table)
    assert all(sorted(col) == list(range(n)) for col in table.T)
    for a, b, c in itertools.product(range(n), repeat=3):
        assert table[table[a, b], c] == table[a, table[b, c]]
    assert all(table[g, G.inverse[g]] == 0 == table[G.inverse[g], g] for g in range(n))
    # The generators generate the whole group.
    reached = {0}
    while True:
        grown = reached | {int(table[s, g]) for s in G.generators for g in reached}
        if grown == reached:
            break
        reached = grown
    assert reached == set(range(n))
    abelian = (table == table.T).all()
    assert abelian == (name == "C4")


@pytest.mark.parametrize("name", GROUPS)
def test_transform_is_an_action_on_images(name: str) -> None:
    G = ImageGroup(name)
    x = randn(2, 3, 7, 7)
    for g, h in itertools.product(range(G.order), repeat=2):
        torch.testing.assert_close(
            G.transform(G.transform(x, h), g), G.transform(x, G.multiply(g, h)), rtol=0, atol=0
        )
    # The quarter turn is torch.rot90 (counter-clockwise), the D4 mirror flips left-right.
    torch.testing.assert_close(G.transform(x, 1), torch.rot90(x, 1, dims=(-2, -1)))
    if name == "D4":
        torch.testing.assert_close(G.transform(x, 4), torch.flip(x, dims=(-1,)))
    # All elements move a generic image differently.
    images = [G.transform(x, g) for g in range(G.order)]
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(images, 2))


@pytest.mark.parametrize("name", GROUPS)
def test_regular_action_is_an_action(name: str) -> None:
    G = ImageGroup(name)
    f = randn(2, 3, G.order, 6, 6)
    for g, h in itertools.product(range(G.order), repeat=2):
        torch.testing.assert_close(
            G.act_regular(G.act_regular(f, h), g),
            G.act_regular(f, G.multiply(g, h)),
            rtol=0,
            atol=0,
        )
    # On a map that is constant in space, g permutes the group axis as left multiplication.
    const = torch.arange(float(G.order))[None, :, None, None].expand(1, G.order, 3, 3)
    for g in range(G.order):
        moved = G.act_regular(const, g)[0, :, 0, 0]
        expected = torch.tensor([float(G.cayley[G.inverse[g], h]) for h in range(G.order)])
        torch.testing.assert_close(moved, expected)


# ---------------------------------------------------------------- layers


@pytest.mark.parametrize("side", [8, 9])
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", GROUPS)
def test_lifting_conv_is_equivariant_for_every_element(
    name: str, dtype: torch.dtype, kernel_size: int, side: int
) -> None:
    torch.manual_seed(0)
    layer = LiftingConv2d(2, 3, name, kernel_size).to(dtype)
    with torch.no_grad():
        layer.bias.normal_()
    x = randn(2, 2, side, side, dtype=dtype)
    G = layer.group
    with torch.no_grad():
        out = layer(x)
        assert out.shape == (2, 3, G.order, side, side)
        # The identity slice is the plain convolution with the free filter.
        plain = F.conv2d(x, layer.weight, layer.bias, padding=kernel_size // 2)
        torch.testing.assert_close(out[:, :, 0], plain)
        for g in range(G.order):
            err = relative_error(layer(G.transform(x, g)), G.act_regular(out, g))
            assert err < TOL[dtype], f"element {g}: {err}"


@pytest.mark.parametrize("side", [8, 9])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", GROUPS)
def test_group_conv_is_equivariant_for_every_element(
    name: str, dtype: torch.dtype, side: int
) -> None:
    torch.manual_seed(0)
    layer = GroupConv2d(3, 2, name, kernel_size=3).to(dtype)
    with torch.no_grad():
        layer.bias.normal_()
    G = layer.group
    f = randn(2, 3, G.order, side, side, dtype=dtype)
    with torch.no_grad():
        out = layer(f)
        assert out.shape == (2, 2, G.order, side, side)
        # Output map of the identity: Σ_{c,h} conv(f[:, c, h], ψ[:, c, h]).
        plain = F.conv2d(f.flatten(1, 2), layer.weight.flatten(1, 2), layer.bias, padding=1)
        torch.testing.assert_close(out[:, :, 0], plain)
        for g in range(G.order):
            err = relative_error(layer(G.act_regular(f, g)), G.act_regular(out, g))
            assert err < TOL[dtype], f"element {g}: {err}"


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", GROUPS)
def test_batch_norm_and_pooling_are_equivariant(name: str, train: bool) -> None:
    G = image_group(name)
    bn = GroupBatchNorm(3).double()
    bn.bn.momentum = 0.5
    with torch.no_grad():
        bn(randn(4, 3, G.order, 6, 6, seed=3) * 2 + 1)  # non-trivial running statistics
    bn.train(train)
    pool = GroupInvariantPooling()
    f = randn(4, 3, G.order, 6, 6)
    with torch.no_grad():
        out, pooled = bn(f), pool(f)
        assert pooled.shape == (4, 3)
        for g in range(G.order):
            torch.testing.assert_close(bn(G.act_regular(f, g)), G.act_regular(out, g))
            torch.testing.assert_close(pool(G.act_regular(f, g)), pooled)


@pytest.mark.parametrize("reduce", list(itertools.product(["max", "mean"], repeat=2)))
def test_invariant_pooling_reductions(reduce: tuple[str, str]) -> None:
    pool = GroupInvariantPooling(*reduce)
    f = randn(2, 3, 4, 5, 5)
    g = f.amax(2) if reduce[0] == "max" else f.mean(2)
    expected = g.amax((-2, -1)) if reduce[1] == "max" else g.mean((-2, -1))
    torch.testing.assert_close(pool(f), expected)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", GROUPS)
def test_gcnn_logits_are_invariant_for_every_element(
    name: str, dtype: torch.dtype, train: bool
) -> None:
    torch.manual_seed(0)
    model = GCNN(name, in_channels=1, num_classes=5, channels=(4, 6, 8)).to(dtype)
    x = randn(3, 1, 16, 16, dtype=dtype)
    if not train:
        with torch.no_grad():
            model(randn(3, 1, 16, 16, dtype=dtype, seed=4) + 0.5)  # running statistics
        model.eval()
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (3, 5)
        for g in range(model.group.order):
            err = relative_error(model(model.group.transform(x, g)), logits)
            assert err < 10 * TOL[dtype], f"element {g}: {err}"


@pytest.mark.parametrize("name", GROUPS)
def test_plain_cnn_is_not_invariant(name: str) -> None:
    torch.manual_seed(0)
    model = CNN(1, 5, channels=(4, 6, 8)).double().eval()
    G = image_group(name)
    x = randn(3, 1, 16, 16)
    with torch.no_grad():
        logits = model(x)
        errors = [relative_error(model(G.transform(x, g)), logits) for g in range(1, G.order)]
    assert logits.shape == (3, 5) and min(errors) > 1e-3


# ---------------------------------------------------------------- the kernel action


@pytest.mark.parametrize("name", GROUPS)
def test_expanded_kernels_are_fixed_by_the_group(name: str) -> None:
    torch.manual_seed(0)
    lift = LiftingConv2d(2, 3, name).double()
    conv = GroupConv2d(3, 2, name).double()
    G = lift.group
    with torch.no_grad():
        k_lift, k_conv = lift.expanded_weight(), conv.expanded_weight()
        for g in range(G.order):
            torch.testing.assert_close(G.transform_kernel(k_lift, g, False, True), k_lift)
            torch.testing.assert_close(G.transform_kernel(k_conv, g, True, True), k_conv)


@pytest.mark.parametrize("name", GROUPS)
def test_kernel_action_and_projection(name: str) -> None:
    G = image_group(name)
    n = G.order
    free = randn(2 * n, 3 * n, 3, 3)
    # A group action on kernels.
    for g, h in itertools.product(range(n), repeat=2):
        torch.testing.assert_close(
            G.transform_kernel(G.transform_kernel(free, h, True, True), g, True, True),
            G.transform_kernel(free, G.multiply(g, h), True, True),
        )
    # A free kernel is not fixed by the generators; its projection is, and is idempotent.
    assert all(
        (G.transform_kernel(free, s, True, True) - free).norm() > 0.1 * free.norm()
        for s in G.generators
    )
    proj = G.project_kernel(free, True, True)
    for s in G.generators:
        torch.testing.assert_close(G.transform_kernel(proj, s, True, True), proj)
    torch.testing.assert_close(G.project_kernel(proj, True, True), proj)
    # The projected kernel is an equivariant convolution.
    f = randn(2, 3, n, 8, 8, seed=1)
    out = F.conv2d(f.flatten(1, 2), proj, padding=1).unflatten(1, (2, n))
    for g in range(n):
        moved = F.conv2d(G.act_regular(f, g).flatten(1, 2), proj, padding=1).unflatten(1, (2, n))
        torch.testing.assert_close(moved, G.act_regular(out, g))
    # Projection is orthogonal: the residual is orthogonal to every fixed kernel.
    residual = free - proj
    assert abs(float((residual * proj).sum())) < 1e-10 * float(free.norm() ** 2)


# ---------------------------------------------------------------- declared actions, relaxation


@pytest.mark.parametrize("regular", [False, True], ids=["image", "regular"])
@pytest.mark.parametrize("name", GROUPS)
def test_field_rep_is_the_pixel_action(name: str, regular: bool) -> None:
    """The PermRep's generator matrices move flattened fields as transform / act_regular do,
    and it is a representation of cyclic(4) / dihedral(4) (checked by its constructor)."""
    G = ImageGroup(name)
    rep = G.field_rep(2, 5, regular)
    assert rep.group == G.permutation_group() and rep.group.order == G.order
    shape = (3, 2, G.order, 5, 5) if regular else (3, 2, 5, 5)
    x = randn(*shape)
    for s, m in zip(G.generators, rep.generator_matrices()):
        moved = x.flatten(1) @ torch.from_numpy(m).T
        torch.testing.assert_close(moved, G.act(x, s, regular).flatten(1), rtol=0, atol=0)
    assert rep.dim == x[0].numel()


def _on_flat_features(module: torch.nn.Module, shape: tuple[int, ...]) -> Callable:
    """``module`` as a function of flattened fields ``(..., prod(shape))``."""

    def apply(x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return module(x.reshape(-1, *shape)).reshape(*lead, -1)

    return apply


@pytest.mark.parametrize("name", GROUPS)
def test_convs_with_image_size_pass_the_library_check_for_every_element(name: str) -> None:
    """With image_size, rep_in/rep_out describe the layers exactly: er.equivariance_error over
    all elements of cyclic(4) / dihedral(4) on flattened fields."""
    torch.manual_seed(0)
    G = ImageGroup(name)
    for layer, shape in (
        (LiftingConv2d(2, 3, name, image_size=6).double(), (4, 2, 6, 6)),
        (GroupConv2d(2, 3, name, image_size=6).double(), (4, 2, G.order, 6, 6)),
    ):
        assert layer.feature_shapes == (shape[1:], (3, G.order, 6, 6))

        x = randn(*shape).flatten(1)
        flat = _on_flat_features(layer, shape[1:])
        assert er.equivariance_error(flat, x, layer.rep_in, layer.rep_out) < 1e-12
        # A free convolution with the same layout is not equivariant.
        free = _on_flat_features(layer.free_term(init_std=1.0).double(), shape[1:])
        assert er.equivariance_error(free, x, layer.rep_in, layer.rep_out) > 1e-2
    assert LiftingConv2d(1, 2, name).rep_in is None  # no image size: nothing declared


def _randomise_free(relaxed, scale: float = 0.3) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in relaxed.relaxed_layers().values():
            for p in layer.free.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


@pytest.mark.parametrize("name", GROUPS)
def test_relaxed_gcnn_penalty_and_hardening(name: str) -> None:
    """relax(GCNN) relaxes every convolution with a free conv2d; the generator penalty is
    Σ_s ||W(s·x) − s·(W x)||², zero exactly for an equivariant free kernel; the hardened model
    is the original architecture and invariant for every element."""
    torch.manual_seed(0)
    model = GCNN(name, in_channels=1, num_classes=3, channels=(2, 3), pool_after=(0,),
                 image_size=8).double()
    relaxed = relax(model, total_steps=6, lie_weight=1.0, norm_weight=1.0)
    layers = relaxed.relaxed_layers()
    assert list(layers) == ["convs.0", "convs.1"]
    assert all(isinstance(r.free, FreeFieldConv2d) for r in layers.values())
    G = ImageGroup(name)
    x = randn(4, 1, 8, 8)
    _randomise_free(relaxed)
    relaxed.train()
    relaxed.step()
    relaxed(x)
    lie_sq = [float(r.take_squares()[0].detach()) for r in layers.values()]
    # The definition, for the lifting layer (its input is the image itself).
    w = layers["convs.0"].free
    expected = sum(float((w(G.transform(x, s)) - G.act_regular(w(x), s)).pow(2).sum())
                   for s in G.generators)
    assert lie_sq[0] == pytest.approx(expected, rel=1e-12)
    assert all(v > 1e-2 for v in lie_sq)
    # Equivariant free kernels give a zero generator penalty.
    with torch.no_grad():
        for r in layers.values():
            k = r.free.conv.weight
            k.copy_(G.project_kernel(k, r.free.in_regular, True))
    relaxed(x)
    assert all(float(r.take_squares()[0]) < 1e-20 for r in layers.values())
    # Mid-training (θ > 0, random free terms) the model is not invariant; hardened, it is.
    _randomise_free(relaxed)
    relaxed.train()
    with torch.no_grad():
        logits = relaxed(x)
        assert max(relative_error(relaxed(G.transform(x, g)), logits)
                   for g in range(G.order)) > 1e-3
    hard = harden(relaxed).eval()
    assert type(hard) is GCNN and list(hard.state_dict()) == list(model.state_dict())
    with torch.no_grad():
        logits = hard(x)
        for g in range(G.order):
            assert relative_error(hard(G.transform(x, g)), logits) < 1e-12


@pytest.mark.parametrize("name", GROUPS)
@pytest.mark.parametrize("lifting", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_relaxed_conv_forward_adds_the_free_term(name: str, lifting: bool, bias: bool) -> None:
    """The relaxed layer runs one convolution with the summed kernels (relaxed_forward): the
    same values and gradients as the layer plus θ times the free convolution."""
    torch.manual_seed(0)
    n = ImageGroup(name).order
    if lifting:
        layer = LiftingConv2d(2, 3, name, bias=bias, image_size=6).double()
        f = randn(2, 2, 6, 6)
    else:
        layer = GroupConv2d(2, 3, name, bias=bias, image_size=6).double()
        f = randn(2, 2, n, 6, 6)
    with torch.no_grad():
        if layer.bias is not None:
            layer.bias.normal_()
    r = Relaxed(layer, init_std=0.1, free_bias=bias).train()
    assert r._layer_adds_free  # the fused path is the one under test
    r.theta = 0.4
    f.requires_grad_(True)
    fused = r(f)
    reference = layer(f) + 0.4 * r.free(f)
    torch.testing.assert_close(fused, reference)
    g = torch.randn_like(fused)
    params = [f, *layer.parameters(), *r.free.parameters()]
    grads = torch.autograd.grad((fused * g).sum(), params)
    expected = torch.autograd.grad((reference * g).sum(), params)
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(r.eval()(f), layer(f))  # eval: θ = 0, the exact layer


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ImageGroup("C8"), ValueError, "'C4' or 'D4'"),
        (lambda: ImageGroup("C4").transform(torch.zeros(3, 4), 0), ValueError, "square"),
        (lambda: ImageGroup("C4").multiply(4, 0), ValueError, "0..3"),
        (lambda: ImageGroup("D4").act_regular(torch.zeros(4, 3, 3), 1), ValueError, "8, H, W"),
        (
            lambda: ImageGroup("C4").transform_kernel(torch.zeros(6, 4, 3, 3), 1, True, True),
            ValueError,
            r"C_out\*4",
        ),
        (lambda: LiftingConv2d(1, 2, "C4", kernel_size=4), ValueError, "odd"),
        (lambda: LiftingConv2d(0, 2, "C4"), ValueError, "in_channels"),
        (lambda: LiftingConv2d(1, 2, "C4")(torch.zeros(2, 3, 8, 8)), ValueError, r"\(B, 1, H, H\)"),
        (lambda: LiftingConv2d(1, 2, "C4")(torch.zeros(2, 1, 8, 9)), ValueError, "got"),
        (
            lambda: LiftingConv2d(1, 2, "C4")(torch.zeros(2, 1, 8, 8, dtype=torch.int64)),
            TypeError,
            "floating",
        ),
        (lambda: GroupConv2d(2, 2, "D4")(torch.zeros(1, 2, 4, 8, 8)), ValueError, "2, 8, H, H"),
        (lambda: GroupBatchNorm(3)(torch.zeros(1, 2, 4, 5, 5)), ValueError, "3, |G|"),
        (lambda: GroupInvariantPooling("sum"), ValueError, "group_reduce"),
        (lambda: GCNN("C4", channels=()), ValueError, "channels"),
        (lambda: GCNN("C4", channels=(2, 2), pool_after=(2,)), ValueError, "pool_after"),
        (lambda: GCNN("C4", channels=(2, 2))(torch.zeros(2, 1, 14, 14)), ValueError, "even"),
        (lambda: CNN(1, 3)(torch.zeros(2, 3, 8, 8)), ValueError, r"\(B, 1, H, H\)"),
        (lambda: LiftingConv2d(1, 2, "C4", image_size=0), ValueError, "image_size"),
        (
            lambda: LiftingConv2d(1, 2, "C4", image_size=8)(torch.zeros(2, 1, 6, 6)),
            ValueError,
            "image_size = 8",
        ),
        (lambda: GCNN("C4", channels=(2, 2), image_size=14), ValueError, "side 7 at block 1"),
        (lambda: GCNN("C4", image_size=28)(torch.zeros(1, 1, 32, 32)), ValueError, "side 32"),
        (lambda: FreeFieldConv2d(1, 2, "C4", False, init_std=-1.0), ValueError, "init_std"),
    ],
)
def test_bad_input_fails_early(call: Callable[[], object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()
