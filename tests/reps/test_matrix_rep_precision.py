"""MatrixRep checks its matrices up to the round-off of the precision they were given in: float32
generators (from torch, from e3nn) are accepted, and a failed relation or orthogonality is
reported with its size and the tolerance."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import equirelax as er
from equirelax.groups import cyclic, dihedral, symmetric
from equirelax.reps import MatrixRep, standard
from equirelax.reps.base import relation_tolerance


def rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("n", [3, 4, 5, 7, 12])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "torch"])
def test_float32_rotations_of_a_cyclic_group_are_accepted(n, as_tensor):
    m32 = rotation(2 * np.pi / n).astype(np.float32)
    rep = MatrixRep(cyclic(n), [torch.from_numpy(m32) if as_tensor else m32])
    exact = MatrixRep(cyclic(n), [rotation(2 * np.pi / n)])
    assert er.hom(rep, rep).dim == er.hom(exact, exact).dim == 3
    np.testing.assert_allclose(
        rep.generator_matrices()[0], exact.generator_matrices()[0], atol=1e-7
    )


@pytest.mark.parametrize(
    "G", [symmetric(5), dihedral(6), er.groups.alternating(5)], ids=["S5", "D6", "A5"]
)
def test_float32_standard_reps_are_accepted_with_the_same_equivariant_maps(G):
    St = standard(G)
    rep32 = MatrixRep(G, [m.astype(np.float32) for m in St.generator_matrices()])
    space, exact = er.hom(rep32, St), er.hom(St, St)
    assert space.dim == exact.dim
    # the same subspace, up to the float32 rounding of the generators
    torch.testing.assert_close(space.project(exact.basis), exact.basis, rtol=0, atol=1e-5)


def test_the_tolerance_follows_the_dtype_given():
    m32 = rotation(2 * np.pi / 3).astype(np.float32)
    with pytest.raises(ValueError, match=r"off by .* tolerance 1\.0e-09 for float64"):
        MatrixRep(cyclic(3), [m32.astype(np.float64)])  # float32 values, claimed float64
    assert relation_tolerance(4, 9, 2.0**-52) == 1e-8  # float64: the fixed floor
    assert relation_tolerance(4, 9, 2.0**-23) == pytest.approx(8 * 4 * 3 * 2.0**-23)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_failed_relation_is_reported_with_its_size(dtype):
    third_turn = rotation(2 * np.pi / 3).astype(dtype)  # generates C3, not C4: R^4 = R ≠ I
    with pytest.raises(ValueError) as info:
        MatrixRep(cyclic(4), [third_turn])
    message = str(info.value)
    assert "do not define a representation of C4" in message
    off = float(re.search(r"off the identity by ([0-9.e+-]+)", message).group(1))
    assert off == pytest.approx(
        np.abs(np.linalg.matrix_power(rotation(2 * np.pi / 3), 4) - np.eye(3)).max(), rel=1e-2
    )
    assert f"for {np.dtype(dtype).name} matrices" in message
    # a relation off by less than float32 round-off passes in float32, not in float64
    nearly = rotation(2 * np.pi / 4 + 3e-7)
    MatrixRep(cyclic(4), [nearly.astype(np.float32)])
    with pytest.raises(ValueError, match="a relation of the group is not satisfied"):
        MatrixRep(cyclic(4), [nearly])


def test_non_orthogonal_and_non_antisymmetric_matrices_are_reported_with_their_size():
    with pytest.raises(ValueError, match=r"must be orthogonal .* generator 0 is off by 3\.00e\+00"):
        MatrixRep(cyclic(2), [np.array([[2.0]], dtype=np.float32)])
    with pytest.raises(ValueError, match=r"antisymmetric: matrix 0 is off by 2\.00e\+00"):
        MatrixRep(er.groups.SO(2), [], [np.eye(2)])


def test_e3nn_wigner_matrices_in_float32_define_reps_of_finite_subgroups():
    o3 = pytest.importorskip("e3nn.o3")
    quarter = torch.from_numpy(rotation(np.pi / 2)).float()
    D = o3.Irreps("1x2e").D_from_matrix(quarter)
    assert D.dtype == torch.float32
    rep = MatrixRep(cyclic(4), [D])
    # l = 2 under a quarter turn: m = 0 fixed (1), m = ±1 a quarter turn (2), m = ±2 two signs (4)
    assert er.hom(rep, rep).dim == 7
