"""assert_equivariant: passes for equivariant modules, fails loudly for others."""

from __future__ import annotations

import pytest
import torch

import equirelax as er
from equirelax.groups import SO, symmetric
from equirelax.nn import EquivariantLinear
from equirelax.reps import natural, trivial, vector
from equirelax.testing import TOLERANCES, assert_equivariant


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same torch RNG state, whatever ran before it."""
    torch.manual_seed(0)


def test_passes_and_reports_errors_per_dtype():
    G = symmetric(4)
    layer = EquivariantLinear(natural(G), natural(G) + trivial(G))
    errors = assert_equivariant(layer)
    assert set(errors) == {torch.float64, torch.float32}
    assert errors[torch.float64] <= TOLERANCES[torch.float64]
    assert errors[torch.float32] <= TOLERANCES[torch.float32]


def test_lie_group_modules_are_checked_on_samples_and_the_algebra():
    v = vector(SO(3))
    layer = EquivariantLinear(v + v * v, v)
    errors = assert_equivariant(layer, dtypes=(torch.float64,))
    assert list(errors) == [torch.float64] and errors[torch.float64] < 1e-12


def test_raises_for_a_dense_layer_naming_dtype_and_errors():
    V = natural(symmetric(4))
    torch.manual_seed(0)
    dense = torch.nn.Linear(4, 4)
    with pytest.raises(AssertionError, match=r"Linear is not equivariant in torch\.float64: "
                                             r"relative error .* over group elements"):
        assert_equivariant(dense, rep_in=V, rep_out=V)


def test_a_small_violation_is_caught_only_by_a_tight_tolerance():
    V = natural(symmetric(5))

    class Perturbed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = EquivariantLinear(V, V)
            self.rep_in = self.rep_out = V

        def forward(self, x):
            return self.inner(x) + 1e-7 * x[..., :1]  # breaks the symmetry a little

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(Perturbed(), dtypes=(torch.float64,))
    errors = assert_equivariant(Perturbed(), dtypes=(torch.float64,), tolerance=1e-4)
    assert 1e-9 < errors[torch.float64] < 1e-4
    per_dtype = {torch.float64: 1e-4, torch.float32: 1e-4}
    assert set(assert_equivariant(Perturbed(), tolerance=per_dtype)) == set(per_dtype)


def test_uses_the_given_input_and_elements():
    G = symmetric(6)
    V = natural(G)
    layer = EquivariantLinear(V, V)
    x = torch.randn(3, 6, dtype=torch.float64)
    errors = assert_equivariant(layer, x, elements=G.sample(10, seed=0), dtypes=(torch.float32,))
    assert list(errors) == [torch.float32]


def test_missing_reps_raise():
    with pytest.raises(ValueError, match="pass rep_in and rep_out"):
        assert_equivariant(torch.nn.Linear(3, 3))


def test_is_exposed_as_er_testing():
    assert er.testing.assert_equivariant is assert_equivariant


# -- degenerate values: never a pass for NaN/inf; a zero output warns ----------------------------
class _Broken(torch.nn.Module):
    """An equivariant layer whose output is replaced by NaN, inf or zero."""

    def __init__(self, rep_in, rep_out, value):
        super().__init__()
        self.inner = EquivariantLinear(rep_in, rep_out)
        self.rep_in, self.rep_out = rep_in, rep_out
        self.value = value

    def forward(self, x):
        return self.inner(x) * 0.0 + self.value


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("group", ["S4", "SO3"])
def test_non_finite_output_fails_loudly(value, group):
    G = symmetric(4) if group == "S4" else SO(3)
    rep = natural(G) if group == "S4" else vector(G)
    with pytest.raises(ValueError, match=r"model output f\(x\) must be finite"):
        assert_equivariant(_Broken(rep, rep, value))


def test_non_finite_input_fails_loudly():
    V = natural(symmetric(4))
    x = torch.randn(2, 4, dtype=torch.float64)
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="the input x must be finite, got 1 NaN"):
        assert_equivariant(EquivariantLinear(V, V), x)


def test_nan_only_on_transformed_inputs_fails_loudly():
    V = natural(symmetric(4))

    class NanOffTheIdentity(torch.nn.Module):
        rep_in = rep_out = V

        def forward(self, x):  # equivariance_error passes transformed inputs with a group axis
            return x * float("nan") if x.dim() == 3 else x

    with pytest.raises(ValueError, match=r"transformed output f\(ρ_in\(g\) x\)"):
        assert_equivariant(NanOffTheIdentity())


@pytest.mark.parametrize("group", ["S4", "SO3"])
def test_identically_zero_output_passes_with_a_warning(group):
    G = symmetric(4) if group == "S4" else SO(3)
    rep = natural(G) if group == "S4" else vector(G)
    with pytest.warns(er.testing.ZeroOutputWarning, match="identically zero"):
        errors = assert_equivariant(_Broken(rep, rep, 0.0))
    assert all(e == 0.0 for e in errors.values())
