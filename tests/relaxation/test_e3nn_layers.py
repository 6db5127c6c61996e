"""e3nn layers in relax/harden: o3.Linear registered (dense map, fold), tensor products on request,
and relax -> train -> harden giving back e3nn's classes and keys, exactly O(3)-equivariant by
e3nn's own check and ours, in float64 and float32."""

from __future__ import annotations

import contextlib
import copy
import pickle

import pytest
import torch
from torch import nn

import equirelax as er
from equirelax.relaxation.registry import registration

pytest.importorskip("e3nn")
from e3nn import o3
from e3nn.nn import NormActivation
from e3nn.util.test import assert_equivariant as e3nn_assert_equivariant

O3 = er.groups.O(3)


class PointNet(nn.Module):
    """A small plain-e3nn network: linear, tensor product with spherical harmonics of the
    position (attributes), norm nonlinearity, linear."""

    irreps_in = o3.Irreps("2x1o + 1x0e")
    irreps_out = o3.Irreps("1x1o + 1x0e")

    def __init__(self, hidden: str = "6x0e + 3x1o + 1x2e") -> None:
        super().__init__()
        self.irreps_attr = o3.Irreps.spherical_harmonics(2)
        self.embed = o3.Linear(self.irreps_in, hidden, biases=True)
        self.tp = o3.FullyConnectedTensorProduct(hidden, self.irreps_attr, hidden)
        self.act = NormActivation(hidden, torch.tanh)
        self.out = o3.Linear(hidden, self.irreps_out, biases=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attr = o3.spherical_harmonics(self.irreps_attr, x[..., :3], normalize=True)
        return self.out(self.act(self.tp(self.embed(x), attr)))


def point_data(n: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(n, 3, generator=gen, dtype=dtype)
    v = torch.randn(n, 3, generator=gen, dtype=dtype)
    x = torch.cat([r, v, v.norm(dim=-1, keepdim=True)], dim=-1)
    r_hat = r / r.norm(dim=-1, keepdim=True)
    along = (r_hat * v).sum(-1, keepdim=True)
    return x, torch.cat([along * r_hat + 0.5 * v, along**2], dim=-1)


LINEARS = {
    "plain": lambda: o3.Linear("3x0e + 2x1o + 1x2e", "2x0e + 3x1o + 1x1e"),
    "biases": lambda: o3.Linear("3x0e + 2x1o", "2x0e + 1x0o + 3x1o", biases=True),
    "unsimplified": lambda: o3.Linear("3x0e + 1x1o + 7x0e", "0e + 2x1o + 0e", biases=True),
    "path normalisation": lambda: o3.Linear(
        "3x0e + 2x1o + 4x0e", "2x0e + 1x1o", path_normalization="path"
    ),
    "zero multiplicity": lambda: o3.Linear("0x0e + 2x1o + 3x0e", "2x1o + 0x2e + 1x0e"),
}


@pytest.fixture(params=list(LINEARS), ids=list(LINEARS))
def linear(request) -> o3.Linear:
    torch.manual_seed(0)
    lin = LINEARS[request.param]().double()
    with torch.no_grad():
        if lin.bias.numel():
            lin.bias.normal_()
    return lin


def test_o3_linear_is_registered_with_its_o3_irreps(linear):
    reg = registration(linear)
    assert reg is not None and reg.by_default
    rep_in, rep_out = reg.reps(linear)
    assert rep_in == er.reps.irreps(O3, linear.irreps_in)
    assert rep_out == er.reps.irreps(O3, linear.irreps_out)
    tp = o3.FullyConnectedTensorProduct("2x1o", "1x1o", "3x0e")
    assert not registration(tp).by_default  # tensor products only when layers= selects them
    assert registration(tp).reps(tp) == (er.reps.irreps(O3, "2x1o"), er.reps.irreps(O3, "3x0e"))


def test_o3_linear_dense_map_is_its_forward_and_is_equivariant(linear):
    w, b = registration(linear).dense(linear)
    x = torch.randn(7, linear.irreps_in.dim, dtype=torch.float64)
    expected = linear(x)
    got = x @ w.T + (b if b is not None else 0.0)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    space = er.hom(linear.irreps_in, linear.irreps_out)
    torch.testing.assert_close(space.project(w.detach()), w.detach(), rtol=0, atol=1e-12)
    w.sum().backward()  # the fused forward trains the layer's own weight through it
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0


def test_folding_an_equivariant_map_adds_exactly_that_map(linear):
    space = er.hom(linear.irreps_in, linear.irreps_out)
    gen = torch.Generator().manual_seed(1)
    w_eq = space.project(torch.randn(space.shape, generator=gen, dtype=torch.float64))
    fixed = er.homspace.fixed_space(er.reps.irreps(O3, linear.irreps_out))
    b_eq = None
    if linear.bias.numel():
        b_eq = fixed.project(
            torch.randn(space.shape[0], 1, generator=gen, dtype=torch.float64)
        ).reshape(-1)
    x = torch.randn(5, linear.irreps_in.dim, dtype=torch.float64)
    before = linear(x)
    registration(linear).fold(linear, w_eq, b_eq)
    expected = before + x @ w_eq.T + (b_eq if b_eq is not None else 0.0)
    torch.testing.assert_close(linear(x), expected, rtol=1e-12, atol=1e-12)


def test_fold_refuses_what_the_layer_cannot_hold():
    lin = o3.Linear("2x0e + 1x0e", "1x0e", instructions=[(0, 0)]).double()
    w = er.hom("2x0e + 1x0e", "1x0e").project(torch.ones(1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"cannot fold the equivariant weight .* part of norm"):
        registration(lin).fold(lin, w, None)
    plain = o3.Linear("1x0e", "1x0e").double()
    with pytest.raises(ValueError, match="biases=True, or relax with free_bias=False"):
        registration(plain).fold(
            plain, torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
        )
    external = o3.Linear("1x1o", "1x1o", internal_weights=False, shared_weights=False)
    with pytest.raises(ValueError, match="internal_weights=False"):
        registration(external).dense(external)
    with pytest.raises(ValueError, match="f_in/f_out"):
        er.relax(o3.Linear("1x1o", "1x1o", f_in=2, f_out=3), total_steps=4)


def test_relax_finds_the_o3_linears_of_a_model_without_wrapping():
    model = PointNet()
    relaxed = er.relax(model, total_steps=10)
    assert list(relaxed.relaxed_layers()) == ["embed", "out"]
    assert all(layer.fused for layer in relaxed.relaxed_layers().values())
    chosen = er.relax(model, layers=[o3.Linear, o3.FullyConnectedTensorProduct], total_steps=10)
    assert list(chosen.relaxed_layers()) == ["embed", "tp", "out"]
    by_name = er.relax(model, layers=["tp"], total_steps=10)
    assert list(by_name.relaxed_layers()) == ["tp"]


def test_relaxed_o3_linear_is_the_sum_of_its_paths_and_hardens_to_itself():
    torch.manual_seed(0)
    lin = o3.Linear("3x0e + 2x1o", "2x0e + 2x1o", biases=True).double()
    relaxed = er.relax(lin, schedule="constant", value=0.5, total_steps=4, init_std=0.3)
    layer = relaxed.relaxed_layers()[""]
    assert layer.fused
    x = torch.randn(6, lin.irreps_in.dim, dtype=torch.float64)
    expected = layer.layer(x) + 0.5 * layer.free(x)
    torch.testing.assert_close(relaxed(x), expected, rtol=1e-12, atol=1e-12)
    assert (
        float(relaxed.penalties()["lie"].detach()) > 1e-3
    )  # a random free term is not equivariant
    hardened = er.harden(relaxed)
    assert type(hardened) is o3.Linear
    assert list(hardened.state_dict()) == list(lin.state_dict())


def test_project_mode_folds_an_equivariant_free_term_losslessly():
    torch.manual_seed(0)
    lin = o3.Linear("3x0e + 2x1o + 1x2e", "2x0e + 2x1o + 1x2e", biases=True).double()
    relaxed = er.relax(lin, schedule="constant", value=0.5, total_steps=4, free_bias=True)
    layer = relaxed.relaxed_layers()[""]
    space = er.hom(lin.irreps_in, lin.irreps_out)
    fixed = er.homspace.fixed_space(er.reps.irreps(O3, lin.irreps_out))
    with torch.no_grad():
        layer.free.weight.copy_(space.project(torch.randn(space.shape, dtype=torch.float64)))
        layer.free.bias.copy_(
            fixed.project(torch.randn(space.shape[0], 1, dtype=torch.float64)).reshape(-1)
        )
    x = torch.randn(6, lin.irreps_in.dim, dtype=torch.float64)
    trained = relaxed.train()(x)
    hardened = er.harden(relaxed, mode="project")
    assert type(hardened) is o3.Linear
    torch.testing.assert_close(hardened(x), trained, rtol=1e-12, atol=1e-12)


def test_relaxed_tensor_product_relaxes_the_features_with_attributes_held_fixed():
    torch.manual_seed(0)
    tp = o3.FullyConnectedTensorProduct("4x0e + 2x1o", "1x0e + 1x1o", "3x0e + 2x1o").double()
    relaxed = er.relaxation.Relaxed(tp, "4x0e + 2x1o", "3x0e + 2x1o", init_std=0.3)
    assert relaxed.rep_in == er.reps.irreps(O3, "4x0e + 2x1o")
    relaxed.theta = 0.25
    x = torch.randn(5, 10, dtype=torch.float64)
    attr = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(
        relaxed(x, attr), tp(x, attr) + 0.25 * relaxed.free(x), rtol=1e-12, atol=1e-12
    )
    lie, _ = relaxed.take_squares()
    assert float(lie.detach()) > 1e-3
    assert relaxed.harden() is tp


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """e3nn computes its Clebsch-Gordan coefficients in the default dtype: a float64 model built
    in float32 and converted keeps float32-rounded coefficients (equivariant to ~1e-9 only)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _trained_then_hardened(dtype: torch.dtype) -> tuple[nn.Module, nn.Module, nn.Module]:
    torch.manual_seed(0)
    with default_dtype(dtype):
        model = PointNet()
    x, y = point_data(64, dtype)
    steps = 12
    relaxed = er.relax(
        model, layers=[o3.Linear, o3.FullyConnectedTensorProduct], total_steps=steps, init_std=1e-2
    )
    opt = torch.optim.Adam(relaxed.parameters(), lr=1e-2)
    thetas = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((relaxed(x) - y) ** 2) + relaxed.penalty()
        loss.backward()
        opt.step()
        thetas.append(relaxed.step())
    assert max(thetas) > 0.5  # the free terms were on during training
    return model, relaxed, er.harden(relaxed)


def _classes(model: nn.Module) -> dict[str, str]:
    return {
        name: f"{type(m).__module__}.{type(m).__qualname__}" for name, m in model.named_modules()
    }


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_relax_train_harden_gives_the_e3nn_model_back_exactly_equivariant(dtype):
    model, relaxed, exact = _trained_then_hardened(dtype)
    assert type(exact) is PointNet and type(exact.tp) is o3.FullyConnectedTensorProduct
    assert type(exact.embed) is o3.Linear and type(exact.out) is o3.Linear
    # every submodule, e3nn's generated code included (torch.fx makes a class per instance)
    assert _classes(exact) == _classes(model)
    assert list(exact.state_dict()) == list(model.state_dict())
    assert not torch.equal(exact.tp.weight, model.tp.weight)  # trained, not the initial model
    PointNet().load_state_dict(exact.state_dict())

    # e3nn's own check: random rotations, with and without inversion (absolute errors)
    x, _ = point_data(16, dtype, seed=1)
    tolerance = 1e-9 if dtype == torch.float64 else 1e-4
    errors = e3nn_assert_equivariant(
        exact,
        args_in=[x],
        irreps_in=[PointNet.irreps_in],
        irreps_out=[PointNet.irreps_out],
        tolerance=tolerance,
    )
    assert set(errors) == {(0, False), (1, False)}  # parity checked
    # ours: sampled O(3) elements and the Lie derivative, relative errors, in the model's dtype
    # (its Clebsch-Gordan coefficients were computed in that dtype: see default_dtype)
    rep_in, rep_out = er.reps.as_reps(PointNet.irreps_in, PointNet.irreps_out)
    measured = er.testing.assert_equivariant(
        exact, x=x.double(), rep_in=rep_in, rep_out=rep_out, dtypes=(dtype,)
    )
    assert measured[dtype] < (1e-12 if dtype == torch.float64 else 1e-5)
    # the relaxed model with its free terms on is not equivariant: the check can fail
    relaxed.relaxed_layers()["embed"].theta = 0.5  # the schedule ended at θ = 0
    with pytest.raises(AssertionError, match="is not equivariant"):
        er.testing.assert_equivariant(
            relaxed.train(), x=x.double(), rep_in=rep_in, rep_out=rep_out, dtypes=(torch.float64,)
        )


def test_relaxed_e3nn_models_pickle_and_copy():
    model = PointNet().double()
    relaxed = er.relax(
        model,
        layers=[o3.Linear, o3.FullyConnectedTensorProduct],
        schedule="constant",
        value=0.3,
        total_steps=5,
        init_std=0.1,
    )
    x, _ = point_data(8, torch.float64)
    expected = relaxed.train()(x)
    for twin in (copy.deepcopy(relaxed), pickle.loads(pickle.dumps(relaxed))):
        torch.testing.assert_close(twin.train()(x), expected, rtol=0, atol=0)
