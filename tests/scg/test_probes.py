"""Probes measure what they claim on hand-built kernels."""

import math

import numpy as np
import pytest
import torch

from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder
from equirelax.scg.codebook import PredictionCodebook
from equirelax.scg.probes import (
    classify_modules,
    colour_statistics,
    eta_squared,
    grating_responses,
    module_correlation,
    orientation_coverage,
    probe_autoencoder,
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


def test_weighted_eta_squared_ignores_zero_weight_groups():
    groups = np.repeat(np.arange(4), 2)
    values = np.array([0.0, 0.0, 1.0, 1.0, 5.0, -3.0, 7.0, -9.0])
    w = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=float)
    assert eta_squared(values, groups, w) == pytest.approx(1.0)
    assert eta_squared(values, groups) < 0.5
    with pytest.raises(ValueError, match="weights"):
        eta_squared(values, groups, -w)


def test_orientation_coverage_full_family_and_single_orientation():
    family = np.arange(8) * math.pi / 8
    assert orientation_coverage(family, 8)[0] == pytest.approx(1.0)
    assert orientation_coverage(np.full(8, 0.3), 8)[0] == pytest.approx(0.0, abs=1e-12)


def _two_live_two_dead(dead_seed: int) -> ModularAutoencoder:
    """Modules 0, 1: two units each, one Gabor orientation per module (specialised); modules 2,
    3: random kernels scaled by 1e-4 (dead: almost no reconstruction energy)."""
    live = [_gabor_kernel(0.0, 0.2), _gabor_kernel(0.0, 0.2) * 0.8,
            _gabor_kernel(math.pi / 2, 0.1), _gabor_kernel(math.pi / 2, 0.1) * 0.9]
    g = torch.Generator().manual_seed(dead_seed)
    dead = [torch.randn(3, 15, 15, generator=g) * 1e-4 for _ in range(4)]
    return _free_model(torch.stack(live + dead), 2)


def test_dead_modules_cannot_change_energy_weighted_scores():
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = probe_autoencoder(_two_live_two_dead(1), images).summary()
    b = probe_autoencoder(_two_live_two_dead(2), images).summary()
    assert a["n_active"] == b["n_active"] == 2
    assert a["eff_modules"] == pytest.approx(2.0, abs=0.3)
    for key in ("corr_ratio_w", "eta2_log_freq_w", "eta2_chroma_w", "osi_w"):
        assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-3), key
    assert a["osi_w"] > 0.5  # the live Gabor units are oriented


def test_probe_groups_and_codebook_distance():
    model = ModularAutoencoder(AutoencoderConfig(modules=8, units=1, kernel="free",
                                                 kernel_size=7))
    cb = PredictionCodebook(modules=1, units=8, n_t=3, n_r=2, init_noise=0.0)
    report = probe_autoencoder(model, torch.rand(4, 3, 24, 24), group_size=8,
                               codebooks={"rot": cb})
    assert len(report.module_types) == 1 and report.energy_share.shape == (1,)
    s = report.summary()
    assert s["dist_id_rot"] == 0.0 and math.isnan(s["dist_id_trans"])
    with pytest.raises(ValueError, match="group_size"):
        probe_autoencoder(model, torch.rand(2, 3, 24, 24), group_size=3)
