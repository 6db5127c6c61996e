"""Group convolutions for C4 and D4: the grid actions, exact equivariance for every element."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import equirelax as er
from equirelax.groups import dihedral
from equirelax.nn.gconv import (
    FreeFieldConv2d,
    GroupBatchNorm,
    GroupConv2d,
    GroupInvariantPooling,
    LiftingConv2d,
    grid_act,
    grid_transform,
    project_kernel,
    transform_kernel,
)
from equirelax.relaxation import Relaxed
from equirelax.reps.grid import grid, grid_cayley, grid_elements, grid_group
from tests.helpers.group_convs import (
    DTYPES,
    GENERATORS,
    GROUPS,
    TOL,
    randn,
    relative_error,
)

#: Small convolutions: torch on one thread (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- the groups


@pytest.mark.parametrize("name", GROUPS)
def test_group_structure(name: str) -> None:
    G = grid_group(name)
    n = G.order
    assert n == {"C4": 4, "D4": 8}[name] and grid_elements(G)[0] == (0, 0)
    table, inverse = grid_cayley(G)
    # Identity, Latin square, associativity, inverses.
    assert (table[0] == range(n)).all() and (table[:, 0] == range(n)).all()
    assert all(sorted(row) == list(range(n)) for row in table)
    assert all(sorted(col) == list(range(n)) for col in table.T)
    for a, b, c in itertools.product(range(n), repeat=3):
        assert table[table[a, b], c] == table[a, table[b, c]]
    assert all(table[g, inverse[g]] == 0 == table[inverse[g], g] for g in range(n))
    # The generators generate the whole group.
    reached = {0}
    while True:
        grown = reached | {int(table[s, g]) for s in GENERATORS[name] for g in reached}
        if grown == reached:
            break
        reached = grown
    assert reached == set(range(n))
    abelian = (table == table.T).all()
    assert abelian == (name == "C4")


@pytest.mark.parametrize("name", GROUPS)
def test_transform_is_an_action_on_images(name: str) -> None:
    G = grid_group(name)
    x = randn(2, 3, 7, 7)
    for g, h in itertools.product(range(G.order), repeat=2):
        torch.testing.assert_close(
            grid_transform(grid_transform(x, G, h), G, g),
            grid_transform(x, G, int(grid_cayley(G)[0][g, h])), rtol=0, atol=0
        )
    # The quarter turn is torch.rot90 (counter-clockwise), the D4 mirror flips left-right.
    torch.testing.assert_close(grid_transform(x, G, 1), torch.rot90(x, 1, dims=(-2, -1)))
    if name == "D4":
        torch.testing.assert_close(grid_transform(x, G, 4), torch.flip(x, dims=(-1,)))
    # All elements move a generic image differently.
    images = [grid_transform(x, G, g) for g in range(G.order)]
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(images, 2))


@pytest.mark.parametrize("name", GROUPS)
def test_regular_action_is_an_action(name: str) -> None:
    G = grid_group(name)
    f = randn(2, 3, G.order, 6, 6)
    for g, h in itertools.product(range(G.order), repeat=2):
        torch.testing.assert_close(
            grid_act(grid_act(f, G, h, True), G, g, True),
            grid_act(f, G, int(grid_cayley(G)[0][g, h]), True),
            rtol=0,
            atol=0,
        )
    # On a map that is constant in space, g permutes the group axis as left multiplication.
    const = torch.arange(float(G.order))[None, :, None, None].expand(1, G.order, 3, 3)
    for g in range(G.order):
        moved = grid_act(const, G, g, True)[0, :, 0, 0]
        table, inverse = grid_cayley(G)
        expected = torch.tensor([float(table[inverse[g], h]) for h in range(G.order)])
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
    layer = LiftingConv2d(2, 3, name, kernel_size, image_size=side).to(dtype)
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
            err = relative_error(layer(grid_transform(x, G, g)), grid_act(out, G, g, True))
            assert err < TOL[dtype], f"element {g}: {err}"


@pytest.mark.parametrize("side", [8, 9])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", GROUPS)
def test_group_conv_is_equivariant_for_every_element(
    name: str, dtype: torch.dtype, side: int
) -> None:
    torch.manual_seed(0)
    layer = GroupConv2d(3, 2, name, kernel_size=3, image_size=side).to(dtype)
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
            err = relative_error(layer(grid_act(f, G, g, True)), grid_act(out, G, g, True))
            assert err < TOL[dtype], f"element {g}: {err}"


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", GROUPS)
def test_batch_norm_and_pooling_are_equivariant(name: str, train: bool) -> None:
    G = grid_group(name)
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
            torch.testing.assert_close(bn(grid_act(f, G, g, True)), grid_act(out, G, g, True))
            torch.testing.assert_close(pool(grid_act(f, G, g, True)), pooled)


@pytest.mark.parametrize("reduce", list(itertools.product(["max", "mean"], repeat=2)))
def test_invariant_pooling_reductions(reduce: tuple[str, str]) -> None:
    pool = GroupInvariantPooling(*reduce)
    f = randn(2, 3, 4, 5, 5)
    g = f.amax(2) if reduce[0] == "max" else f.mean(2)
    expected = g.amax((-2, -1)) if reduce[1] == "max" else g.mean((-2, -1))
    torch.testing.assert_close(pool(f), expected)


# ---------------------------------------------------------------- the kernel action


@pytest.mark.parametrize("name", GROUPS)
def test_expanded_kernels_are_fixed_by_the_group(name: str) -> None:
    torch.manual_seed(0)
    lift = LiftingConv2d(2, 3, name, image_size=6).double()
    conv = GroupConv2d(3, 2, name, image_size=6).double()
    G = lift.group
    with torch.no_grad():
        k_lift, k_conv = lift.expanded_weight(), conv.expanded_weight()
        for g in range(G.order):
            torch.testing.assert_close(transform_kernel(k_lift, G, g, False, True), k_lift)
            torch.testing.assert_close(transform_kernel(k_conv, G, g, True, True), k_conv)


@pytest.mark.parametrize("name", GROUPS)
def test_kernel_action_and_projection(name: str) -> None:
    G = grid_group(name)
    n = G.order
    free = randn(2 * n, 3 * n, 3, 3)
    # A group action on kernels.
    for g, h in itertools.product(range(n), repeat=2):
        torch.testing.assert_close(
            transform_kernel(transform_kernel(free, G, h, True, True), G, g, True, True),
            transform_kernel(free, G, int(grid_cayley(G)[0][g, h]), True, True),
        )
    # A free kernel is not fixed by the generators; its projection is, and is idempotent.
    assert all(
        (transform_kernel(free, G, s, True, True) - free).norm() > 0.1 * free.norm()
        for s in GENERATORS[name]
    )
    proj = project_kernel(free, G, True, True)
    for s in GENERATORS[name]:
        torch.testing.assert_close(transform_kernel(proj, G, s, True, True), proj)
    torch.testing.assert_close(project_kernel(proj, G, True, True), proj)
    # The projected kernel is an equivariant convolution.
    f = randn(2, 3, n, 8, 8, seed=1)
    out = F.conv2d(f.flatten(1, 2), proj, padding=1).unflatten(1, (2, n))
    for g in range(n):
        moved = F.conv2d(grid_act(f, G, g, True).flatten(1, 2), proj, padding=1)
        moved = moved.unflatten(1, (2, n))
        torch.testing.assert_close(moved, grid_act(out, G, g, True))
    # Projection is orthogonal: the residual is orthogonal to every fixed kernel.
    residual = free - proj
    assert abs(float((residual * proj).sum())) < 1e-10 * float(free.norm() ** 2)


# ---------------------------------------------------------------- declared actions, relaxation


@pytest.mark.parametrize("regular", [False, True], ids=["image", "regular"])
@pytest.mark.parametrize("name", GROUPS)
def test_grid_rep_is_the_pixel_action(name: str, regular: bool) -> None:
    """The PermRep's generator matrices move flattened fields as grid_transform / grid_act do,
    and it is a representation of cyclic(4) / dihedral(4) (checked by its constructor)."""
    G = grid_group(name)
    rep = grid(name, 5, 2, regular)
    assert rep.group == G and rep.group.order == G.order
    shape = (3, 2, G.order, 5, 5) if regular else (3, 2, 5, 5)
    x = randn(*shape)
    for s, m in zip(GENERATORS[name], rep.generator_matrices()):
        moved = x.flatten(1) @ torch.from_numpy(m).T
        torch.testing.assert_close(moved, grid_act(x, G, s, regular).flatten(1), rtol=0, atol=0)
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
    G = grid_group(name)
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


@pytest.mark.parametrize("name", GROUPS)
@pytest.mark.parametrize("lifting", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_relaxed_conv_forward_adds_the_free_term(name: str, lifting: bool, bias: bool) -> None:
    """The relaxed layer runs one convolution with the summed kernels (relaxed_forward): the
    same values and gradients as the layer plus θ times the free convolution."""
    torch.manual_seed(0)
    n = grid_group(name).order
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
        (lambda: grid_group("C8"), ValueError, "'C4' or 'D4'"),
        (lambda: grid_transform(torch.zeros(3, 4), "C4", 0), ValueError, "square"),
        (lambda: grid_transform(torch.zeros(3, 3), "C4", 4), ValueError, "0..3"),
        (lambda: grid_act(torch.zeros(4, 3, 3), "D4", 1, True), ValueError, "8, H, W"),
        (lambda: grid(dihedral(3), 4), ValueError, "cyclic"),
        (lambda: grid("C4", 0), ValueError, "size"),
        (
            lambda: transform_kernel(torch.zeros(6, 4, 3, 3), "C4", 1, True, True),
            ValueError,
            r"C_out\*4",
        ),
        (lambda: LiftingConv2d(1, 2, "C4", kernel_size=4, image_size=8), ValueError, "odd"),
        (lambda: LiftingConv2d(0, 2, "C4", image_size=8), ValueError, "in_channels"),
        (lambda: LiftingConv2d(1, 2, "C4"), TypeError, "image_size"),
        (lambda: LiftingConv2d(1, 2, "C8", image_size=8), ValueError, "'C4' or 'D4'"),
        (
            lambda: LiftingConv2d(1, 2, "C4", image_size=8)(torch.zeros(2, 3, 8, 8)),
            ValueError,
            r"\(B, 1, 8, 8\)",
        ),
        (lambda: LiftingConv2d(1, 2, "C4", image_size=8)(torch.zeros(2, 1, 8, 9)), ValueError,
         "got"),
        (
            lambda: LiftingConv2d(1, 2, "C4", image_size=8)(
                torch.zeros(2, 1, 8, 8, dtype=torch.int64)),
            TypeError,
            "floating",
        ),
        (lambda: GroupConv2d(2, 2, "D4", image_size=8)(torch.zeros(1, 2, 4, 8, 8)), ValueError,
         "2, 8, 8, 8"),
        (lambda: GroupBatchNorm(3)(torch.zeros(1, 2, 4, 5, 5)), ValueError,
         r"\(B, 3, \|G\|, H, W\)"),
        (lambda: GroupInvariantPooling("sum"), ValueError, "group_reduce"),
        (lambda: LiftingConv2d(1, 2, "C4", image_size=0), ValueError, "image_size"),
        (
            lambda: LiftingConv2d(1, 2, "C4", image_size=8)(torch.zeros(2, 1, 6, 6)),
            ValueError,
            r"\(B, 1, 8, 8\)",
        ),
        (lambda: FreeFieldConv2d(1, 2, "C4", False, init_std=-1.0), ValueError, "init_std"),
    ],
)
def test_bad_input_fails_early(call: Callable[[], object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()
