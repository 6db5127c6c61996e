"""Probes measure what they claim on hand-built kernels."""

import math

import numpy as np
import pytest
import torch

from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder
from equirelax.scg.probes import (
    classify_modules,
    colour_statistics,
    eta_squared,
    grating_responses,
    module_correlation,
    summarise_tuning,
)


def _free_model(weight: torch.Tensor, units: int) -> ModularAutoencoder:
    c, _, k, _ = weight.shape
    model = ModularAutoencoder(AutoencoderConfig(modules=c // units, units=units, kernel="free",
                                                 kernel_size=k, stride=1))
    with torch.no_grad():
        model.kernel.weight.copy_(weight * model.std.view(1, 3, 1, 1))  # raw kernel = weight
    return model


def _gabor_kernel(theta: float, freq: float, k: int = 15) -> torch.Tensor:
    c = k // 2
    yy, xx = torch.meshgrid(torch.arange(k) - c, torch.arange(k) - c, indexing="ij")
    arg = 2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta))
    g = torch.exp(-(xx**2 + yy**2) / 18.0) * torch.cos(arg)
    return g.float().expand(3, k, k)


@pytest.mark.parametrize("theta", [0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
def test_grating_tuning_recovers_gabor_orientation_and_frequency(theta):
    model = _free_model(torch.stack([_gabor_kernel(theta, 0.25), _gabor_kernel(theta, 0.1)]), 2)
    tuning = summarise_tuning(grating_responses(model, size=32))
    err = np.abs(((tuning.preferred_orientation - theta) + math.pi / 2) % math.pi - math.pi / 2)
    assert np.all(err < 0.15)
    assert np.all(tuning.orientation_selectivity > 0.4)
    assert tuning.preferred_frequency[0] > tuning.preferred_frequency[1]


def test_colour_statistics_separate_luminance_and_opponent_kernels():
    k = 5
    lum = torch.zeros(3, k, k)
    lum[:, 2, 2] = 1.0  # white dot: achromatic, low-pass
    opp = torch.zeros(3, k, k)
    opp[0, 2, 2], opp[1, 2, 2] = 1.0, -1.0  # red-on / green-off: opponent, chromatic
    stats = colour_statistics(_free_model(torch.stack([lum, opp]), 1))
    assert stats.chromatic_fraction[0] < 1e-6 and stats.chromatic_fraction[1] > 0.99
    assert stats.opponency[0] < 1e-6 and stats.opponency[1] > 0.99
    assert stats.lowpass_index[0] > 0.99
    assert classify_modules(stats.chromatic_fraction, stats.lowpass_index) == [
        "brightness", "colour"]


def test_module_correlation_within_and_between():
    # module 0: two copies of one red-channel kernel (corr 1); module 1: a green-channel and a
    # blue-channel kernel (independent inputs, corr ~0); nothing shared between modules.
    torch.manual_seed(0)
    k = 3
    kernels = torch.zeros(4, 3, k, k)
    kernels[0, 0] = kernels[1, 0] = torch.randn(k, k)
    kernels[2, 1] = torch.randn(k, k)
    kernels[3, 2] = torch.randn(k, k)
    model = _free_model(kernels, 2)
    within, between = module_correlation(model, torch.rand(16, 3, 16, 16))
    assert within > 0.45  # (1 + ~0) / 2
    assert between < 0.1


def test_eta_squared_extremes():
    groups = np.repeat(np.arange(3), 4)
    assert eta_squared(groups.astype(float), groups) == pytest.approx(1.0)
    assert eta_squared(np.tile(np.arange(4.0), 3), groups) == pytest.approx(0.0)
