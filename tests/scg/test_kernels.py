"""The composite kernel equals the composition of its layers; parameter counts."""

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from equirelax.scg.kernels import CompositeKernel, FreeKernel, compose_kernels


@settings(max_examples=20, deadline=None)
@given(groups=st.sampled_from([1, 2]), per_in=st.integers(1, 2), per_out=st.integers(1, 3),
       ka=st.sampled_from([1, 3, 5]), kb=st.sampled_from([1, 3]), dilation=st.integers(1, 3),
       seed=st.integers(0, 1000))
def test_compose_matches_sequential_convs(groups, per_in, per_out, ka, kb, dilation, seed):
    g = torch.Generator().manual_seed(seed)
    a, b, c = groups * per_in, groups * per_out, 3
    inner = torch.randn(a, c, ka, ka, generator=g, dtype=torch.float64)
    outer = torch.randn(b, per_in, kb, kb, generator=g, dtype=torch.float64)
    x = torch.randn(2, c, 20, 20, generator=g, dtype=torch.float64)
    seq = F.conv2d(F.conv2d(x, inner), outer, dilation=dilation, groups=groups)
    eff = compose_kernels(inner, outer, dilation=dilation, groups=groups)
    assert eff.shape == (b, c, ka + dilation * (kb - 1), ka + dilation * (kb - 1))
    torch.testing.assert_close(F.conv2d(x, eff), seq)


def test_composite_kernel_shape_and_parameter_count():
    k = CompositeKernel(modules=16, units=4)
    assert k().shape == (64, 3, 21, 21)
    assert sum(p.numel() for p in k.parameters()) == 4400


def test_composite_units_of_a_module_share_their_pathways():
    # Zeroing module 0's inputs (c1, c1a rows) must zero exactly module 0's units.
    k = CompositeKernel(modules=4, units=3)
    with torch.no_grad():
        k.c1[0] = 0
        k.c1a[0] = 0
    w = k()
    assert torch.all(w[:3] == 0)
    assert torch.all(w[3:].abs().sum(dim=(1, 2, 3)) > 0)


def test_free_kernel_rejects_even_size():
    try:
        FreeKernel(2, 2, size=4)
    except ValueError as e:
        assert "odd" in str(e)
    else:
        raise AssertionError("even kernel size accepted")


def test_compose_rejects_mismatched_groups():
    try:
        compose_kernels(torch.zeros(4, 3, 3, 3), torch.zeros(6, 3, 3, 3), groups=2)
    except ValueError as e:
        assert "groups=2" in str(e)
    else:
        raise AssertionError("mismatched grouping accepted")
