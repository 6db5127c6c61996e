"""e3nn irreps where a representation is expected: strings and o3.Irreps read as reps of O(3)
(of SO(3) next to an SO(3) rep) by er.hom, EquivariantLinear, EquivariantMLP and Relaxed, with
the same results as reps made with er.reps.irreps."""

from __future__ import annotations

import pytest
import torch

import equirelax as er

pytest.importorskip("e3nn")
from e3nn import o3

O3, SO3 = er.groups.O(3), er.groups.SO(3)
SPECS = [
    ("2x1o + 1x0e", "8x0e + 4x1o"),
    ("1x0e + 1x1o + 1x2e", "2x2e + 1x1e + 3x0e"),
    ("3x0o + 2x1e", "1x0o + 1x1e + 1x2o"),
]


@pytest.mark.parametrize(("spec_in", "spec_out"), SPECS)
def test_hom_of_irreps_strings_is_hom_of_the_irreps_reps(spec_in, spec_out):
    rep_in, rep_out = er.reps.irreps(O3, spec_in), er.reps.irreps(O3, spec_out)
    expected = er.hom(rep_in, rep_out)
    for given in (
        (spec_in, spec_out),
        (o3.Irreps(spec_in), o3.Irreps(spec_out)),
        (spec_in, rep_out),
        (rep_in, o3.Irreps(spec_out)),
    ):
        space = er.hom(*given)
        assert space.rep_in == rep_in and space.rep_out == rep_out
        torch.testing.assert_close(space.basis, expected.basis, rtol=0, atol=0)
    # and it is the space of e3nn's own linear maps between them
    assert expected.dim == o3.Linear(spec_in, spec_out).weight_numel


def test_irreps_take_the_group_of_the_reps_beside_them():
    assert er.hom(o3.Irrep("1o"), er.reps.vector(SO3)).rep_in == er.reps.irreps(SO3, "1o")
    assert er.hom("1o", "1e").dim == 0  # parity under O(3)
    assert er.hom("1o", er.reps.irreps(SO3, "1e")).dim == 1  # none under SO(3)
    rep_in, rep_out = er.reps.as_reps("2x0e", "1x1o")
    assert rep_in.group == O3 and rep_out == er.reps.irreps(O3, "1o")


def test_what_is_not_a_rep_is_refused_by_name():
    with pytest.raises(TypeError, match=r"hom\(\) needs rep_out to be a Rep, got int"):
        er.hom("1o", 3)
    with pytest.raises(ValueError, match=r"rep_in to be a Rep or e3nn irreps .* got '1q'"):
        er.hom("1q", "1o")
    with pytest.raises(ValueError, match="next to a representation of S3"):
        er.hom("1o", er.reps.natural(er.groups.symmetric(3)))
    with pytest.raises(TypeError, match=r"EquivariantMLP needs hidden_reps\[1\] to be a Rep"):
        er.nn.EquivariantMLP("1o", ["2x1o", 2.0], "1o")


@pytest.mark.parametrize(("spec_in", "spec_out"), SPECS)
def test_equivariant_linear_from_irreps_strings_equals_the_one_from_reps(spec_in, spec_out):
    torch.manual_seed(0)
    from_strings = er.nn.EquivariantLinear(spec_in, spec_out).double()
    torch.manual_seed(0)
    from_reps = er.nn.EquivariantLinear(
        er.reps.irreps(O3, spec_in), er.reps.irreps(O3, spec_out)
    ).double()
    assert from_strings.rep_in == from_reps.rep_in and from_strings.rep_out == from_reps.rep_out
    x = torch.randn(5, from_reps.rep_in.dim, dtype=torch.float64)
    torch.testing.assert_close(from_strings(x), from_reps(x), rtol=0, atol=0)
    er.testing.assert_equivariant(from_strings)


def test_equivariant_mlp_from_irreps_strings_equals_the_one_from_reps():
    spec_in, hidden, spec_out = "2x1o + 1x0e", ["8x0e + 4x1o", o3.Irreps("4x0e + 2x1o")], "1x1o"
    torch.manual_seed(0)
    from_strings = er.nn.EquivariantMLP(spec_in, hidden, spec_out, activation="silu").double()
    torch.manual_seed(0)
    from_reps = er.nn.EquivariantMLP(
        er.reps.irreps(O3, spec_in),
        [er.reps.irreps(O3, h) for h in hidden],
        er.reps.irreps(O3, spec_out),
        activation="silu",
    ).double()
    assert from_strings.hidden_reps == from_reps.hidden_reps
    x = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(from_strings(x), from_reps(x), rtol=0, atol=0)
    er.testing.assert_equivariant(from_strings)
    # one hidden rep, given as a string or an o3.Irreps (a tuple), is one layer, not a list
    for single in ("8x0e + 4x1o", o3.Irreps("8x0e + 4x1o")):
        assert len(er.nn.EquivariantMLP(spec_in, single, spec_out).linears) == 2


def test_relaxed_takes_irreps_strings():
    layer = er.nn.EquivariantLinear("2x1o", "3x1o")
    relaxed = er.relaxation.Relaxed(layer, "2x1o", "3x1o")
    assert relaxed.rep_in == er.reps.irreps(O3, "2x1o")
