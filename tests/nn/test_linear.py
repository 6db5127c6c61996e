"""EquivariantLinear: equivariance, eval-mode cache, export, initialisation, bias, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import equirelax as er
from equirelax.groups import SO, cyclic, dihedral, symmetric
from equirelax.nn import EquivariantLinear
from equirelax.reps import natural, regular, standard, trivial, vector
from tests.helpers.random_layers import randomised


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same torch RNG state, whatever ran before it."""
    torch.manual_seed(0)


def layer_cases():
    S4 = symmetric(4)
    V, T = natural(S4), trivial(S4)
    D4 = dihedral(4)
    so3 = SO(3)
    v = vector(so3)
    return {
        "S4 perm": (2 * V + T, V * V + T),
        "D4 regular": (2 * regular(D4), regular(D4) + natural(D4)),
        "S4 standard": (standard(S4) + V, 2 * standard(S4)),
        "SO3": (v + v * v, v + trivial(so3) + v * v),
        "O3 irreps": (o3_irreps({(0, 1): 6, (1, -1): 3, (2, 1): 2}),
                      o3_irreps({(0, 1): 4, (1, -1): 2, (2, 1): 3, (1, 1): 1})),
    }


def o3_irreps(multiplicities: dict[tuple[int, int], int]) -> er.reps.Rep:
    """A rep of O(3) in irreps form, {(l, parity): copies} (as e3nn's '6x0e+3x1o+...')."""
    O3 = er.groups.O(3)
    return sum(m * er.reps.standard_irrep(O3, er.reps.IrrepLabel(l, p))
               for (l, p), m in multiplicities.items())


CASES = layer_cases()


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_layer_is_equivariant_in_float64_and_float32(case):
    rep_in, rep_out = CASES[case]
    layer = randomised(EquivariantLinear(rep_in, rep_out))
    assert layer.rep_in is rep_in and layer.rep_out is rep_out
    errors = er.testing.assert_equivariant(layer)
    assert errors[torch.float64] < 1e-12
    assert errors[torch.float32] < 1e-5


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_weight_lies_in_the_hom_space_and_bias_is_fixed(case):
    rep_in, rep_out = CASES[case]
    layer = randomised(EquivariantLinear(rep_in, rep_out).double())
    W, b = layer.weight, layer.bias
    assert W.shape == (rep_out.dim, rep_in.dim) and b.shape == (rep_out.dim,)
    torch.testing.assert_close(layer.hom.project(W.detach()), W.detach(), atol=1e-12, rtol=0)
    G = rep_in.group
    elements = G.elements() if G.is_finite else G.sample(20, seed=0)
    for g in elements:
        m_out = torch.from_numpy(rep_out.matrix(g))
        torch.testing.assert_close(m_out @ b.detach(), b.detach(), atol=1e-12, rtol=0)
    for a_out in rep_out.lie_matrices():
        assert torch.from_numpy(a_out).matmul(b.detach()).abs().max() < 1e-12


def test_bias_space_dimension_and_bias_false():
    G = symmetric(5)
    V, T = natural(G), trivial(G)
    layer = EquivariantLinear(V, 2 * V + 3 * T)
    assert layer.bias_coefficients.shape == (5,)  # one constant per orbit of rep_out
    no_bias = EquivariantLinear(V, V, bias=False)
    assert no_bias.bias is None
    assert set(no_bias.state_dict()) == {"coefficients"}
    x = torch.randn(3, 5)
    torch.testing.assert_close(no_bias(x), x @ no_bias.weight.T)
    v = vector(SO(3))
    assert EquivariantLinear(v, v).bias_coefficients.numel() == 0  # no invariant vector


# -- eval-mode cache ---------------------------------------------------------------------------
def test_eval_cache_same_output_and_same_state_dict():
    rep_in, rep_out = CASES["S4 perm"]
    layer = randomised(EquivariantLinear(rep_in, rep_out))
    x = torch.randn(6, rep_in.dim)
    train_out = layer(x)
    train_state = layer.state_dict()
    layer.eval()
    with torch.no_grad():
        eval_out = layer(x)
        assert layer.weight is layer.weight  # cached: the same tensor, no re-materialising
    torch.testing.assert_close(eval_out, train_out.detach(), atol=0, rtol=0)
    eval_state = layer.state_dict()
    assert list(eval_state) == list(train_state) == ["coefficients", "bias_coefficients"]
    for k in train_state:
        assert torch.equal(eval_state[k], train_state[k])


def test_eval_cache_is_used_until_the_parameters_change():
    rep_in, rep_out = CASES["D4 regular"]
    layer = randomised(EquivariantLinear(rep_in, rep_out)).eval()
    calls = []
    materialise = layer._materialise

    def counting():
        calls.append(1)
        return materialise()

    layer._materialise = counting  # type: ignore[method-assign]
    x = torch.randn(4, rep_in.dim)
    with torch.no_grad():
        for _ in range(3):
            layer(x)
    assert len(calls) == 1
    layer.requires_grad_(False)  # frozen parameters: cached even with grad mode on
    for _ in range(2):
        layer(x)
    assert len(calls) == 1
    layer.requires_grad_(True)
    layer(x)  # grad to the coefficients wanted: the weight is built with its graph
    assert len(calls) == 2


def test_eval_cache_is_invalidated_by_an_optimizer_step_and_by_load_state_dict():
    rep_in, rep_out = CASES["S4 standard"]
    layer = randomised(EquivariantLinear(rep_in, rep_out)).eval()
    x = torch.randn(5, rep_in.dim)
    with torch.no_grad():
        before = layer(x)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).pow(2).sum().backward()
    opt.step()
    with torch.no_grad():
        after = layer(x)
    assert not torch.allclose(after, before)
    fresh = EquivariantLinear(rep_in, rep_out)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(after, fresh(x).detach(), atol=0, rtol=0)
    layer.load_state_dict(randomised(EquivariantLinear(rep_in, rep_out), seed=5).state_dict())
    with torch.no_grad():
        reloaded = layer(x)
    assert not torch.allclose(reloaded, after)
    layer.train()
    torch.testing.assert_close(reloaded, layer(x).detach(), atol=0, rtol=0)


def _assert_cache_follows(layer: EquivariantLinear, how: str) -> None:
    """Eval outputs change after the modification ``how`` and equal the uncached reference."""
    x = torch.randn(4, layer.rep_in.dim)
    with torch.no_grad():
        before = layer(x)
        assert layer.weight is layer.weight  # the cache is in use
    MODIFICATIONS[how](layer)
    with torch.no_grad():
        after = layer(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, _reference_output(layer, x), atol=0, rtol=0)


def _reference_output(layer: EquivariantLinear, x: torch.Tensor) -> torch.Tensor:
    """The layer's output computed without any cache (weight built from the coefficients)."""
    with torch.no_grad():
        w, b = layer._materialise()
        return torch.nn.functional.linear(x, w, b)


def _sgd_step(layer):
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(torch.randn(3, layer.in_features)).pow(2).sum().backward()
    opt.step()


def _adam_step(fused):
    def step(layer):
        opt = torch.optim.Adam(layer.parameters(), lr=0.5, fused=fused)
        layer(torch.randn(3, layer.in_features)).pow(2).sum().backward()
        opt.step()
    return step


def _assign_data(layer):
    layer.coefficients.data = layer.coefficients.data * 3.0  # a new storage, no version bump


def _edit_aliased_storage(layer):
    # p.data = t, then t edited in place: the parameter sees the change, its counter does not
    t = layer.coefficients.detach().clone()
    layer.coefficients.data = t
    layer.weight_and_bias()  # cached with the aliased values
    t.mul_(-1.0)


def _load_state_dict(layer):
    other = randomised(EquivariantLinear(layer.rep_in, layer.rep_out), seed=7)
    layer.load_state_dict(other.state_dict())


def _copy_under_no_grad(layer):
    with torch.no_grad():
        layer.coefficients.copy_(torch.randn_like(layer.coefficients))


def _vector_to_parameters(layer):
    vec = torch.nn.utils.parameters_to_vector(layer.parameters())
    torch.nn.utils.vector_to_parameters(vec * 2.0 + 1.0, layer.parameters())


def _foreach_add(layer):
    with torch.no_grad():
        torch._foreach_add_(list(layer.parameters()), 1.0)


def _assign_view_of_other_half(layer):
    # new data of the same dtype and shape, on one storage with the old: only the address differs
    doubled = torch.cat([layer.coefficients.detach(), torch.randn_like(layer.coefficients)])
    layer.coefficients.data = doubled[layer.coefficients.shape[0]:]


def _reallocate_storage(layer):
    # the storage moves (grown through another tensor on it) while the parameter keeps its shape
    data = layer.coefficients.data
    n = data.numel()
    data.resize_(64 * n + 4096)
    data.resize_(n)
    data.mul_(3.0)


MODIFICATIONS = {
    "data.mul_": lambda layer: layer.coefficients.data.mul_(2.0),
    "storage reallocated": _reallocate_storage,
    "data = view of a new storage": _assign_view_of_other_half,
    "data[i] = v": lambda layer: layer.coefficients.data.__setitem__(0, 123.0),
    "data.copy_": lambda layer: layer.coefficients.data.copy_(
        torch.randn_like(layer.coefficients)),
    "bias data.add_": lambda layer: layer.bias_coefficients.data.add_(1.0),
    "data = tensor": _assign_data,
    "aliased storage edited": _edit_aliased_storage,
    "load_state_dict": _load_state_dict,
    "copy_ under no_grad": _copy_under_no_grad,
    "detach().add_": lambda layer: layer.coefficients.detach().add_(0.5),
    "vector_to_parameters": _vector_to_parameters,
    "_foreach_add_": _foreach_add,
    "SGD step": _sgd_step,
    "Adam step (foreach)": _adam_step(fused=None),
    "Adam step (fused)": _adam_step(fused=True),
}


@pytest.mark.parametrize("how", MODIFICATIONS, ids=MODIFICATIONS.keys())
@pytest.mark.parametrize("case", ["S4 perm", "SO3"])
def test_eval_cache_never_serves_stale_weights(case, how):
    """Every way users change parameters is seen, including edits through ``p.data``, which bump
    no version counter of the parameter (a cache keyed on _version/data_ptr served stale
    weights after them)."""
    rep_in, rep_out = CASES[case]
    layer = randomised(EquivariantLinear(rep_in, rep_out)).eval()
    if how == "bias data.add_" and layer.bias_coefficients.numel() == 0:
        pytest.skip("no invariant bias for this rep")
    _assert_cache_follows(layer, how)


def test_eval_cache_sees_in_place_edits_of_the_weight_it_returned():
    rep_in, rep_out = CASES["D4 regular"]
    layer = randomised(EquivariantLinear(rep_in, rep_out)).eval()
    x = torch.randn(3, rep_in.dim)
    with torch.no_grad():
        layer.weight.mul_(0.0)  # edits the cached tensor, not the coefficients
        torch.testing.assert_close(layer(x), _reference_output(layer, x), atol=0, rtol=0)


def test_eval_cache_keeps_the_gradient_of_a_bias_that_still_learns():
    rep_in, rep_out = CASES["S4 perm"]
    layer = randomised(EquivariantLinear(rep_in, rep_out)).eval()
    layer.coefficients.requires_grad_(False)  # weight frozen, bias trained
    layer(torch.randn(2, rep_in.dim)).sum().backward()
    assert layer.bias_coefficients.grad is not None


def test_eval_cache_is_not_kept_on_other_devices_nor_in_copies():
    rep_in, rep_out = CASES["S4 perm"]
    layer = randomised(EquivariantLinear(rep_in, rep_out)).eval()
    with torch.no_grad():
        layer(torch.randn(2, rep_in.dim))
    assert layer._cache is not None
    assert copy.deepcopy(layer)._cache is None  # derived data is rebuilt, not copied
    meta = copy.deepcopy(layer).to("meta")  # off the CPU a value check would synchronise
    with torch.no_grad():
        assert meta.weight is not meta.weight and meta._cache is None


def test_eval_cache_follows_dtype_changes():
    rep_in, rep_out = CASES["S4 perm"]
    layer = randomised(EquivariantLinear(rep_in, rep_out)).eval()
    x = torch.randn(2, rep_in.dim)
    with torch.no_grad():
        layer(x)
        y = layer.double()(x.double())
    assert y.dtype == torch.float64 and layer.weight.dtype == torch.float64


# -- export ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_export_gives_identical_outputs(case, dtype):
    rep_in, rep_out = CASES[case]
    layer = randomised(EquivariantLinear(rep_in, rep_out)).to(dtype)
    x = torch.randn(7, rep_in.dim, dtype=dtype)
    for mode in ("train", "eval"):
        layer.train(mode == "train")
        plain = layer.export()
        assert type(plain) is torch.nn.Linear
        assert plain.weight.dtype == dtype
        assert (plain.in_features, plain.out_features) == (rep_in.dim, rep_out.dim)
        with torch.no_grad():
            if layer.blockwise:  # the same map, summed in another order
                tol = 1e-12 if dtype == torch.float64 else 1e-5
                torch.testing.assert_close(plain(x), layer(x), atol=tol, rtol=tol)
            else:
                assert torch.equal(plain(x), layer(x))
    assert not any(p.grad_fn is not None for p in plain.parameters())


def test_export_without_bias():
    G = cyclic(6)
    layer = randomised(EquivariantLinear(natural(G), regular(G), bias=False))
    plain = layer.export()
    assert plain.bias is None
    x = torch.randn(3, 6)
    assert torch.equal(plain(x), layer(x))


# -- initialisation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rep_in", "rep_out", "inits"),
    [
        (natural(symmetric(16)), natural(symmetric(16)), 1500),  # Deep Sets: 2 coefficients
        (4 * regular(cyclic(4)), 2 * regular(cyclic(4)), 300),
        (4 * vector(SO(3)) + 2 * vector(SO(3)) * vector(SO(3)), 3 * vector(SO(3)), 300),
    ],
    ids=["deep-sets", "regular", "SO3"],
)
def test_initialisation_preserves_variance(rep_in, rep_out, inits):
    torch.manual_seed(0)
    x = torch.randn(512, rep_in.dim, dtype=torch.float64)
    layer = EquivariantLinear(rep_in, rep_out).double()
    draws = []
    for _ in range(inits):
        layer.reset_parameters()
        draws.append(layer.coefficients.detach().clone())
    assert torch.all(layer.bias_coefficients == 0)
    weights = layer.hom.weight_batched(torch.stack(draws))  # (inits, d_out, d_in)
    y = torch.einsum("noi,bi->nbo", weights, x)
    ratios = y.pow(2).mean(dim=(1, 2)) / x.pow(2).mean()
    # E over inits and inputs of the output second moment equals the input's (bias starts at 0)
    assert abs(float(ratios.mean()) - 1.0) < 0.15, float(ratios.mean())
    # the expectation is exact: E_c ||W||_F^2 = d_out, by the choice of the coefficient std
    basis = layer.hom.basis
    std = layer.hom.init_std()
    assert std**2 * float(basis.pow(2).sum()) == pytest.approx(rep_out.dim)


def test_gain_scales_the_initialisation():
    V = natural(symmetric(6))
    base = EquivariantLinear(V + V, V).hom.init_std()
    torch.manual_seed(0)
    layer = EquivariantLinear(V + V, V, gain=3.0)
    stds = []
    for _ in range(400):
        layer.reset_parameters()
        stds.append(layer.coefficients.detach().clone())
    assert float(torch.cat(stds).std()) == pytest.approx(3.0 * base, rel=0.1)
    assert torch.all(layer.bias_coefficients == 0)


# -- gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_coefficient_gradient_is_the_basis_projection_of_the_dense_gradient(case):
    rep_in, rep_out = CASES[case]
    layer = randomised(EquivariantLinear(rep_in, rep_out).double())
    x = torch.randn(9, rep_in.dim, dtype=torch.float64)
    target = torch.randn(9, rep_out.dim, dtype=torch.float64)
    (layer(x) - target).pow(2).sum().backward()
    dense = layer.weight.detach().clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)
    (torch.nn.functional.linear(x, dense, bias) - target).pow(2).sum().backward()
    expected = torch.einsum("kij,ij->k", layer.hom.basis, dense.grad)
    torch.testing.assert_close(layer.coefficients.grad, expected, atol=1e-10, rtol=1e-10)
    if layer.bias_coefficients.numel():  # (2 * standard has no fixed vector: no bias)
        expected_bias = torch.einsum("kij,ij->k", layer.bias_space.basis, bias.grad[:, None])
        torch.testing.assert_close(layer.bias_coefficients.grad, expected_bias, atol=1e-10,
                                   rtol=1e-10)


def test_float32_gradient_of_a_large_orbit_is_accurate():
    V = natural(symmetric(300))  # the off-diagonal orbit sums 89,700 gradient entries
    layer = randomised(EquivariantLinear(V, V))
    x = torch.randn(16, 300)
    layer(x).pow(2).sum().backward()
    grad32 = layer.coefficients.grad.double()
    reference = copy.deepcopy(layer).double()
    reference.zero_grad()
    reference(x.double()).pow(2).sum().backward()
    scale = float(reference.coefficients.grad.abs().max())
    torch.testing.assert_close(grad32, reference.coefficients.grad, rtol=1e-4, atol=1e-5 * scale)


# -- Deep Sets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 7, 20])
def test_deep_sets_layer_is_exactly_a_x_plus_b_sum_x(n):
    V = natural(symmetric(n))
    layer = randomised(EquivariantLinear(V, V).double())
    assert layer.hom.dim == 2 and layer.bias_coefficients.numel() == 1
    W = layer.weight.detach()
    a = W[0, 0] - W[0, 1]
    b = W[0, 1]
    torch.testing.assert_close(W, a * torch.eye(n, dtype=torch.float64) + b, atol=0, rtol=0)
    c = layer.bias.detach()
    torch.testing.assert_close(c, c[0].expand(n), atol=0, rtol=0)
    x = torch.randn(5, n, dtype=torch.float64)
    expected = a * x + b * x.sum(dim=-1, keepdim=True) + c[0]
    torch.testing.assert_close(layer(x).detach(), expected, atol=1e-13, rtol=1e-13)


# -- bad input ---------------------------------------------------------------------------------
def test_wrong_input_size_names_both_sizes():
    V = natural(symmetric(5))
    layer = EquivariantLinear(V, V)
    with pytest.raises(ValueError, match=r"EquivariantLinear expects inputs of shape \(\.\.\., 5\)"
                                         r" for natural, got shape \(3, 4\)"):
        layer(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"\(\.\.\., 5\).*got shape \(\)"):
        layer(torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"expects a torch\.Tensor, got ndarray"):
        layer(np.zeros((3, 5)))


def test_mixed_groups_refused():
    with pytest.raises(ValueError, match="one group"):
        EquivariantLinear(natural(symmetric(3)), natural(symmetric(4)))


def test_layer_sizes_and_repr():
    G = symmetric(4)
    layer = EquivariantLinear(natural(G), 2 * natural(G))
    assert (layer.in_features, layer.out_features) == (4, 8)
    assert "hom dim=4" in repr(layer)
    y = layer(torch.randn(2, 3, 4))  # any leading axes
    assert y.shape == (2, 3, 8)


def test_deepcopy_shares_the_hom_space_but_not_the_parameters():
    G = symmetric(6)
    layer = randomised(EquivariantLinear(natural(G), natural(G) + trivial(G)))
    twin = copy.deepcopy(layer)
    assert twin.hom is layer.hom  # immutable: no copy of its label arrays
    assert twin.coefficients is not layer.coefficients
    with torch.no_grad():
        twin.coefficients.add_(1.0)
    x = torch.randn(3, 6)
    assert not torch.allclose(twin(x), layer(x))
    twin64 = copy.deepcopy(layer).double()
    torch.testing.assert_close(twin64(x.double()).float(), layer(x), atol=1e-5, rtol=1e-5)


# -- irreps form: block-by-block application -----------------------------------------------------
def test_irreps_form_layers_apply_blocks_and_equal_the_dense_layer():
    rep_in, rep_out = CASES["O3 irreps"]
    layer = randomised(EquivariantLinear(rep_in, rep_out).double())
    assert layer.blockwise and "blockwise" in repr(layer)
    # the bias basis is derived data: a buffer outside the state_dict, converted with the layer
    assert layer.bias_basis.dtype == torch.float64 and "bias_basis" not in layer.state_dict()
    assert not EquivariantLinear(*CASES["SO3"]).blockwise  # tensor reps: the dense weight
    x = torch.randn(2, 5, rep_in.dim, dtype=torch.float64)
    dense = torch.nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), dense, atol=1e-12, rtol=0)
    layer.eval()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), dense.detach(), atol=1e-12, rtol=0)


def test_cached_inference_of_blockwise_layers_takes_the_cheaper_path(monkeypatch):
    from equirelax.nn import linear as linear_module

    rep_in, rep_out = CASES["O3 irreps"]
    layer = randomised(EquivariantLinear(rep_in, rep_out).double()).eval()
    x = torch.randn(8, rep_in.dim, dtype=torch.float64)
    with torch.no_grad():
        small = layer(x)  # a small product: the cached dense weight
        assert layer._cache is not None
        monkeypatch.setattr(linear_module, "CACHED_DENSE_BELOW", 0)
        layer._cache = None
        large = layer(x)  # counted as large: the blocks, no weight built
        assert layer._cache is None
    torch.testing.assert_close(small, large, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_irreps_form_layer_is_equivariant_on_samples_and_the_algebra(dtype, tol):
    rep_in, rep_out = CASES["O3 irreps"]
    layer = randomised(EquivariantLinear(rep_in, rep_out))
    x = torch.randn(4, rep_in.dim, dtype=torch.float64)
    samples = rep_in.group.sample(30, seed=3)
    assert er.equivariance_error(layer, x, elements=samples, dtype=dtype) < tol
    assert er.lie_derivative_error(layer, x, dtype=dtype) < tol


def test_blockwise_layers_relax_and_harden():
    rep_in, rep_out = CASES["O3 irreps"]
    model = randomised(EquivariantLinear(rep_in, rep_out)).double()
    relaxed = er.relax(model, total_steps=4)
    x = torch.randn(3, rep_in.dim, dtype=torch.float64)
    opt = torch.optim.SGD(relaxed.parameters(), lr=0.1)
    for _ in range(4):
        opt.zero_grad()
        (relaxed(x).pow(2).mean() + relaxed.penalty()).backward()
        opt.step()
        relaxed.step()
    exact = er.harden(relaxed)
    assert isinstance(exact, EquivariantLinear) and exact.blockwise
    assert er.equivariance_error(exact, x, elements=rep_in.group.sample(10, seed=0)) < 1e-12


@pytest.mark.parametrize("how", ["data.mul_", "data[i] = v", "data = tensor", "storage reallocated",
                                 "data = view of a new storage", "SGD step"])
def test_eval_cache_of_a_large_layer_never_serves_stale_weights(how):
    """32768 coefficients: the cache compares them through its numpy word views."""
    from equirelax.nn.linear import _Snapshot

    rep = 64 * er.reps.regular(er.groups.dihedral(4))
    layer = randomised(EquivariantLinear(rep, rep, structured=False)).eval()
    assert _Snapshot(layer.coefficients).words is not None
    _assert_cache_follows(layer, how)


def test_eval_cache_works_under_inference_mode_and_follows_edits_made_there():
    """Lightning validates under torch.inference_mode(): the cache must build there, serve the
    same outputs as no_grad, and still see an edit of the coefficients made in between."""
    rep = 4 * er.reps.regular(er.groups.symmetric(3))
    layer = randomised(EquivariantLinear(rep, rep)).eval()
    x = torch.randn(5, rep.dim)
    with torch.inference_mode():
        first = layer(x)
        assert layer.weight is layer.weight  # cached
    with torch.no_grad():
        torch.testing.assert_close(layer(x), first, atol=0, rtol=0)
        layer.coefficients.data.mul_(2.0)
    with torch.inference_mode():
        after = layer(x)
    assert not torch.allclose(after, first)
    torch.testing.assert_close(after, _reference_output(layer, x), atol=0, rtol=0)
