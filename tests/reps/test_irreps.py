import numpy as np
import pytest
import torch

import equirelax as er

e3nn = pytest.importorskip("e3nn")
from e3nn import o3  # noqa: E402


@pytest.mark.parametrize("group", ["SO3", "O3"])
def test_irreps_are_homomorphisms_and_match_e3nn(group):
    G = er.groups.SO(3) if group == "SO3" else er.groups.O(3)
    spec = "2x0e+1o+1e+2e+3o"
    R = er.reps.irreps(G, spec)
    assert R.dim == o3.Irreps(spec).dim
    g = G.sample(5, seed=0)
    for a in g:
        for b in g:
            assert np.allclose(R.matrix(a @ b), R.matrix(a) @ R.matrix(b), atol=1e-12)
        d = o3.Irreps(spec).D_from_matrix(torch.from_numpy(a)).numpy()
        assert np.allclose(d, R.matrix(a), atol=1e-5)  # e3nn's own Euler-angle path: ~1e-7
    for m in R.lie_matrices():
        assert np.allclose(m, -m.T, atol=1e-14)


def test_irrep_hom_dimensions_follow_schur_and_parity():
    G = er.groups.O(3)
    one_o, one_e = er.reps.irreps(G, "1o"), er.reps.irreps(G, "1e")
    assert er.hom(er.reps.irreps(G, "2x1o"), one_o).dim == 2
    assert er.hom(one_o, one_e).dim == 0
    assert er.hom(er.reps.irreps(G, "1o"), er.reps.irreps(G, "2e")).dim == 0
    assert er.hom(er.reps.irreps(er.groups.SO(3), "1o"),
                  er.reps.irreps(er.groups.SO(3), "1e")).dim == 1


def test_e3nn_linear_is_equivariant_for_the_matching_reps():
    G = er.groups.O(3)
    lin = o3.Linear("4x0e+2x1o", "3x0e+2x1o").double()
    rep_in, rep_out = er.reps.irreps(G, "4x0e+2x1o"), er.reps.irreps(G, "3x0e+2x1o")
    er.testing.assert_equivariant(lin, rep_in=rep_in, rep_out=rep_out,
                                  dtypes=(torch.float64,))


def test_irrep_bad_input():
    with pytest.raises(ValueError, match="SO\\(3\\) and O\\(3\\)"):
        er.reps.irrep(er.groups.SO(2), 1)
    with pytest.raises(ValueError, match="parity must be"):
        er.reps.irrep(er.groups.O(3), 1, p=0)
