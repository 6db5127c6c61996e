"""Tied encoder/decoder: the fast decoder equals the transposed convolution, the decoder is the
adjoint of the encoder, modules split the reconstruction."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from equirelax.scg.autoencoder import (
    AutoencoderConfig,
    ModularAutoencoder,
    kernel_spectrum,
    spectral_decode,
    spectral_encode,
    spectral_size,
    tied_decode,
)


@settings(max_examples=25, deadline=None)
@given(stride=st.integers(1, 3), half=st.integers(0, 5), h=st.integers(2, 9),
       extra=st.integers(0, 2), seed=st.integers(0, 1000))
def test_tied_decode_equals_conv_transpose(stride, half, h, extra, seed):
    k = 2 * half + 1
    extra = min(extra, stride - 1)
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(2, 5, h, h, generator=g, dtype=torch.float64)
    w = torch.randn(5, 3, k, k, generator=g, dtype=torch.float64)
    natural = (h - 1) * stride - 2 * half + k
    if natural + extra < 1:
        return
    ref = F.conv_transpose2d(f, w, stride=stride, padding=half, output_padding=extra)
    out = tied_decode(f, w, stride, (natural + extra, natural + extra))
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("kernel", ["composite", "free"])
def test_decoder_is_adjoint_of_encoder(kernel):
    torch.manual_seed(0)
    model = ModularAutoencoder(AutoencoderConfig(modules=4, units=2, kernel=kernel)).double()
    x = torch.randn(2, 3, 24, 24, dtype=torch.float64)
    f = model.encode_normalised(x)
    g = torch.randn_like(f)
    lhs = (f * g).sum()
    rhs = (x * model.decode_normalised(g, (24, 24))).sum()
    torch.testing.assert_close(lhs, rhs)


def test_module_reconstructions_sum_to_full_reconstruction():
    torch.manual_seed(1)
    model = ModularAutoencoder(AutoencoderConfig(modules=4, units=2)).double()
    x = torch.rand(2, 3, 20, 20, dtype=torch.float64)
    f = model.encode_normalised(model.normalise(x))
    total = sum(model.decode_normalised(f * model.module_mask([i]), (20, 20)) for i in range(4))
    torch.testing.assert_close(total, model.decode_normalised(f, (20, 20)))
    assert model.module_mask([1, 3]).flatten().tolist() == [0, 0, 1, 1, 0, 0, 1, 1]


def test_shapes_and_bad_input():
    model = ModularAutoencoder()
    x = torch.rand(3, 3, 32, 32)
    assert model.encode(x).shape == (3, 64, 16, 16)
    assert model(x).shape == x.shape
    with pytest.raises(ValueError, match="B, 3, H, W"):
        model.encode(torch.rand(3, 1, 32, 32))
    with pytest.raises(ValueError, match="module indices"):
        model.module_mask([16])
    with pytest.raises(ValueError, match="kernel must be"):
        AutoencoderConfig(kernel="dense")


@settings(max_examples=25, deadline=None)
@given(stride=st.integers(1, 3), half=st.integers(0, 10), size=st.integers(4, 40),
       seed=st.integers(0, 1000))
def test_spectral_convolutions_equal_direct_ones(stride, half, size, seed):
    k = 2 * half + 1
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    w = torch.randn(5, 3, k, k, generator=g, dtype=torch.float64)
    h = -(-size // stride)
    spec = kernel_spectrum(w, spectral_size(size, h, k, stride))
    torch.testing.assert_close(spectral_encode(x, spec, stride),
                               F.conv2d(x, w, stride=stride, padding=half))
    f = torch.randn(2, 5, h, h, generator=g, dtype=torch.float64)
    natural = (h - 1) * stride - 2 * half + k
    if 0 <= size - natural < stride:  # sizes tied_decode accepts
        torch.testing.assert_close(spectral_decode(f, spec, stride, size),
                                   tied_decode(f, w, stride, (size, size)))


def test_spectral_kernel_longer_than_fft_is_rejected():
    with pytest.raises(ValueError, match="longer than the FFT"):
        kernel_spectrum(torch.zeros(1, 3, 9, 9), 8)
