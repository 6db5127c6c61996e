"""Probes of what a trained modular autoencoder's modules respond to.

The paper shows specialisation visually (kernel mosaics, per-module reconstructions, tuning
curves); these probes turn it into numbers that can be compared across models:

* grating and Gabor-patch tuning of every unit: preferred orientation, orientation selectivity
  index ``OSI = |sum r(phi) e^{2 i phi}| / sum r(phi)``, preferred spatial frequency;
* per-unit colour statistics of the raw-RGB kernel: the fraction of kernel energy outside the
  luminance direction ``R = G = B`` (chromatic fraction), colour opponency of the DC response
  (``1 - |sum_c dc_c| / sum_c |dc_c|``: 0 when all channels share a sign), and a low-pass index
  (luminance DC gain relative to the best grating gain);
* per-module aggregates, the share of each module in held-out reconstructions, and the mean
  absolute correlation of unit activations within and between modules on held-out images;
* specialisation scores: the fraction of the variance of a unit property explained by module
  membership (eta^2), and a module-type label (colour / brightness / edge) per module;
* scores that modules carrying almost nothing cannot inflate: the energy share of each module,
  the number of active modules (share >= ``ACTIVE_SHARE``) and the effective number of modules
  (``exp`` of the entropy of the shares), and energy-weighted versions of the correlation ratio,
  the ``eta^2`` scores and the orientation selectivity (each module weighted by its share);
* for a trained objective, how far each codebook's matrices moved from the identity.

Probes group channels into modules of ``model.units`` consecutive units by default; a
rotation-grouped model (``rot_num > 1``, e.g. 8 one-unit modules per hypercolumn) is probed per
hypercolumn with ``group_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from equirelax.scg.autoencoder import ModularAutoencoder
from equirelax.scg.codebook import PredictionCodebook

DEFAULT_ORIENTATIONS = np.linspace(0, math.pi, 12, endpoint=False)
DEFAULT_FREQUENCIES = np.geomspace(1 / 32, 0.4, 8)


def grating(size: int, orientation: float, frequency: float, phase: float,
            contrast: float = 1.0) -> torch.Tensor:
    """A luminance (grey) sinusoidal grating ``(3, size, size)`` in [0, 1].

    ``orientation`` is the direction of the wave vector (radians), ``frequency`` in cycles/pixel.
    """
    if not 0 < frequency <= 0.5:
        raise ValueError(f"frequency must lie in (0, 0.5] cycles/pixel, got {frequency}")
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    arg = 2 * math.pi * frequency * (xx * math.cos(orientation) + yy * math.sin(orientation))
    g = 0.5 + 0.5 * contrast * torch.cos(arg + phase)
    return g.expand(3, size, size).clone()


def gabor_patch(size: int, orientation: float, frequency: float, phase: float,
                sigma: float = 4.0) -> torch.Tensor:
    """A grey Gabor patch ``(3, size, size)`` centred on pixel ``(size // 2, size // 2)``."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    c = size // 2
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32) - c,
                            torch.arange(size, dtype=torch.float32) - c, indexing="ij")
    arg = 2 * math.pi * frequency * (xx * math.cos(orientation) + yy * math.sin(orientation))
    env = torch.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    g = 0.5 + 0.5 * env * torch.cos(arg + phase)
    return g.expand(3, size, size).clone()


@torch.no_grad()
def grating_responses(model: ModularAutoencoder, orientations: np.ndarray = DEFAULT_ORIENTATIONS,
                      frequencies: np.ndarray = DEFAULT_FREQUENCIES, phases: int = 4,
                      size: int = 48, kind: str = "grating") -> np.ndarray:
    """Response energy of every unit, ``(channels, orientations, frequencies)``.

    ``kind="grating"``: full-field gratings, energy averaged over phases and over feature positions
    away from the border. ``kind="gabor"``: Gabor patches at the image centre, energy of the
    centre unit averaged over phases. The response to uniform grey is subtracted first (the
    encoder is linear, so what remains is the response to the pattern alone).
    """
    if kind not in ("grating", "gabor"):
        raise ValueError(f"kind must be 'grating' or 'gabor', got {kind!r}")
    make = grating if kind == "grating" else gabor_patch
    ph = np.arange(phases) * (2 * math.pi / phases)
    stims = torch.stack([make(size, float(o), float(f), float(p))
                         for o in orientations for f in frequencies for p in ph])
    feats = model.encode(stims) - model.encode(torch.full((1, 3, size, size), 0.5))
    n_o, n_f = len(orientations), len(frequencies)
    feats = feats.reshape(n_o, n_f, phases, *feats.shape[1:])
    if kind == "grating":
        k = model.weight().shape[-1]
        border = -(-(k // 2) // model.stride)
        inner = feats[..., border : feats.shape[-2] - border, border : feats.shape[-1] - border]
        energy = (inner**2).mean(dim=(-1, -2, 2))
    else:
        c = (size // 2) // model.stride
        energy = (feats[..., c, c] ** 2).mean(dim=2)
    return energy.permute(2, 0, 1).numpy()


@dataclass
class UnitTuning:
    """Per-unit tuning summary (arrays of length ``channels``)."""

    preferred_orientation: np.ndarray
    orientation_selectivity: np.ndarray
    preferred_frequency: np.ndarray
    peak_energy: np.ndarray


def summarise_tuning(energy: np.ndarray, orientations: np.ndarray = DEFAULT_ORIENTATIONS,
                     frequencies: np.ndarray = DEFAULT_FREQUENCIES) -> UnitTuning:
    """Preferred orientation, OSI (at the preferred frequency) and preferred frequency per unit.

    The preferred frequency is the energy-weighted geometric mean over frequencies of each unit's
    best-orientation energy (robust to the coarse frequency grid).
    """
    if energy.ndim != 3 or energy.shape[1:] != (len(orientations), len(frequencies)):
        raise ValueError(f"energy must be (units, {len(orientations)}, {len(frequencies)}), "
                         f"got {energy.shape}")
    amp = np.sqrt(np.maximum(energy, 0))
    best_f = amp.max(axis=1).argmax(axis=1)
    r = amp[np.arange(amp.shape[0]), :, best_f]  # (units, orientations)
    z = (r * np.exp(2j * orientations)[None]).sum(1)
    osi = np.abs(z) / np.maximum(r.sum(1), 1e-12)
    pref_o = (np.angle(z) / 2) % math.pi
    per_f = amp.max(axis=1)
    w = per_f / np.maximum(per_f.sum(1, keepdims=True), 1e-12)
    pref_f = np.exp((w * np.log(frequencies)[None]).sum(1))
    return UnitTuning(pref_o, osi, pref_f, amp.max(axis=(1, 2)))


@dataclass
class ColourStatistics:
    """Per-unit colour statistics of the raw-RGB kernels (arrays of length ``channels``)."""

    chromatic_fraction: np.ndarray
    opponency: np.ndarray
    lowpass_index: np.ndarray
    energy: np.ndarray


@torch.no_grad()
def colour_statistics(model: ModularAutoencoder, fft_size: int = 64) -> ColourStatistics:
    """Chromatic energy fraction, DC colour opponency and low-pass index of every unit."""
    w = (model.weight() / model.std.view(1, 3, 1, 1)).double()  # raw-RGB kernels
    energy = (w**2).sum(dim=(1, 2, 3))
    lum = w.sum(1) / math.sqrt(3)  # luminance component per pixel (projection on (1,1,1)/sqrt3)
    chroma = 1 - (lum**2).sum(dim=(1, 2)) / energy.clamp_min(1e-30)
    dc = w.sum(dim=(2, 3))  # (units, 3)
    opp = 1 - dc.sum(1).abs() / dc.abs().sum(1).clamp_min(1e-30)
    spec = torch.fft.fft2(w.sum(1), s=(fft_size, fft_size)).abs()  # luminance transfer function
    lowpass = spec[:, 0, 0] / spec.amax(dim=(1, 2)).clamp_min(1e-30)
    return ColourStatistics(chroma.numpy(), opp.numpy(), lowpass.numpy(), energy.numpy())


ACTIVE_SHARE = 0.02


def _group_size(model: ModularAutoencoder, group_size: int | None) -> int:
    g = model.units if group_size is None else int(group_size)
    if g < 1 or model.channels % g:
        raise ValueError(f"group_size {g} must divide the {model.channels} channels")
    return g


@torch.no_grad()
def module_energy_share(model: ModularAutoencoder, images: torch.Tensor,
                        group_size: int | None = None) -> np.ndarray:
    """Share of each module (``group_size`` consecutive channels; default ``model.units``) in
    the energy of held-out reconstructions (sums to ~1)."""
    g = _group_size(model, group_size)
    x = model.normalise(images)
    f = model.encode_normalised(x)
    size = tuple(images.shape[-2:])
    out = []
    for i in range(model.channels // g):
        mask = torch.zeros(1, model.channels, 1, 1)
        mask[:, i * g : (i + 1) * g] = 1.0
        rec = model.decode_normalised(f * mask, size)
        out.append(float((rec**2).mean()))
    e = np.asarray(out)
    return e / max(e.sum(), 1e-30)


@torch.no_grad()
def correlation_matrix(model: ModularAutoencoder, images: torch.Tensor) -> np.ndarray:
    """|correlation| of every pair of unit activations on ``images`` ``(channels, channels)``."""
    f = model.encode(images)
    v = f.permute(1, 0, 2, 3).reshape(f.shape[1], -1).double()
    v = v - v.mean(1, keepdim=True)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return (v @ v.T).abs().numpy()


def within_between(corr: np.ndarray, group_size: int, share: np.ndarray | None = None
                   ) -> tuple[float, float]:
    """Mean |correlation| within and between modules; with ``share`` (per module), each module
    is weighted by its share and each pair of modules by the product of theirs."""
    n = corr.shape[0]
    module = np.arange(n) // group_size
    same = module[:, None] == module[None, :]
    off = ~np.eye(n, dtype=bool)
    if share is None:
        w = np.ones((n, n))
    else:
        s = np.asarray(share, dtype=np.float64)[module]
        w = s[:, None] * s[None, :]
    win, btw = same & off, ~same
    within = (corr * w)[win].sum() / w[win].sum() if w[win].sum() > 0 else float("nan")
    between = (corr * w)[btw].sum() / w[btw].sum() if w[btw].sum() > 0 else float("nan")
    return float(within), float(between)


@torch.no_grad()
def module_correlation(model: ModularAutoencoder, images: torch.Tensor,
                       group_size: int | None = None) -> tuple[float, float]:
    """Mean |correlation| of unit activations within and between modules on ``images``."""
    return within_between(correlation_matrix(model, images), _group_size(model, group_size))


def eta_squared(values: np.ndarray, groups: np.ndarray, weights: np.ndarray | None = None
                ) -> float:
    """Fraction of the (optionally ``weights``-weighted) variance of ``values`` explained by
    ``groups`` (between / total)."""
    values = np.asarray(values, dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != values.shape or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative, of the values' shape, with a positive sum")
    mean = (w * values).sum() / w.sum()
    total = (w * (values - mean) ** 2).sum()
    if total <= 0:
        return 0.0
    between = 0.0
    for g in np.unique(groups):
        sel = groups == g
        if w[sel].sum() > 0:
            gm = (w[sel] * values[sel]).sum() / w[sel].sum()
            between += w[sel].sum() * (gm - mean) ** 2
    return float(between / total)


def orientation_coverage(preferred: np.ndarray, group_size: int) -> np.ndarray:
    """Per module, ``1 - |mean e^{2 i phi}|`` of its units' preferred orientations: 1 when they
    spread evenly over 180 degrees (a complete orientation family), 0 when all agree."""
    z = np.exp(2j * np.asarray(preferred)).reshape(-1, group_size)
    return 1 - np.abs(z.mean(1))


MODULE_TYPES = ("colour", "brightness", "edge")


@dataclass
class ProbeReport:
    """Everything the probes measure for one model (modules = groups of ``group_size``)."""

    tuning: UnitTuning
    gabor_tuning: UnitTuning
    colour: ColourStatistics
    energy_share: np.ndarray
    within_correlation: float
    between_correlation: float
    module_chroma: np.ndarray
    module_lowpass: np.ndarray
    module_frequency: np.ndarray
    module_types: list[str]
    grating_energy: np.ndarray
    group_size: int = 4
    weighted_within: float = float("nan")
    weighted_between: float = float("nan")
    identity_distance: dict[str, np.ndarray] = field(default_factory=dict)

    def unit_weights(self) -> np.ndarray:
        """Per unit: its module's energy share divided by the module size (sums to ~1)."""
        return np.repeat(self.energy_share, self.group_size) / self.group_size

    def module_coverage(self) -> np.ndarray:
        """Orientation coverage of each module (:func:`orientation_coverage`)."""
        return orientation_coverage(self.tuning.preferred_orientation, self.group_size)

    def summary(self) -> dict[str, float]:
        """Scalar summary used in the comparison table.

        ``*_w`` scores weight each module by its energy share, so modules that carry (almost)
        nothing of the reconstruction cannot make a model look specialised; ``n_active`` counts
        modules with share >= ``ACTIVE_SHARE``, ``eff_modules`` is ``exp(entropy)`` of the shares.
        """
        modules = len(self.module_types)
        group = np.repeat(np.arange(modules), self.group_size)
        counts = {t: self.module_types.count(t) for t in MODULE_TYPES}
        w = self.unit_weights()
        share = np.asarray(self.energy_share, dtype=np.float64)
        p = share[share > 0] / share.sum()
        log_f = np.log(self.tuning.preferred_frequency)
        out = {
            "within_corr": self.within_correlation,
            "between_corr": self.between_correlation,
            "corr_ratio": self.within_correlation / max(self.between_correlation, 1e-12),
            "corr_ratio_w": self.weighted_within / max(self.weighted_between, 1e-12),
            "eta2_chroma": eta_squared(self.colour.chromatic_fraction, group),
            "eta2_log_freq": eta_squared(log_f, group),
            "eta2_lowpass": eta_squared(self.colour.lowpass_index, group),
            "eta2_chroma_w": eta_squared(self.colour.chromatic_fraction, group, w),
            "eta2_log_freq_w": eta_squared(log_f, group, w),
            "eta2_lowpass_w": eta_squared(self.colour.lowpass_index, group, w),
            "mean_osi": float(self.tuning.orientation_selectivity.mean()),
            "osi_w": float((w * self.tuning.orientation_selectivity).sum() / w.sum()),
            "mean_gabor_osi": float(self.gabor_tuning.orientation_selectivity.mean()),
            "n_active": int((share >= ACTIVE_SHARE).sum()),
            "eff_modules": float(np.exp(-(p * np.log(p)).sum())),
            "max_share": float(share.max()),
            "n_colour": counts["colour"],
            "n_brightness": counts["brightness"],
            "n_edge": counts["edge"],
            "share_colour": float(sum(s for s, t in zip(share, self.module_types, strict=True)
                                      if t == "colour")),
            "share_brightness": float(sum(s for s, t in zip(share, self.module_types,
                                                            strict=True) if t == "brightness")),
            "freq_spread_octaves": float(np.log2(self.module_frequency.max()
                                                 / self.module_frequency.min())),
            "coverage_w": float((share * self.module_coverage()).sum() / share.sum()),
        }
        for name in ("rot", "trans"):
            d = self.identity_distance.get(name)
            out[f"dist_id_{name}"] = float(np.mean(d)) if d is not None else float("nan")
        return out


def classify_modules(chroma: np.ndarray, lowpass: np.ndarray, chroma_threshold: float = 0.75,
                     lowpass_threshold: float = 0.5) -> list[str]:
    """Label modules: ``colour`` if chromatic, else ``brightness`` if low-pass, else ``edge``.

    The chromatic threshold sits above 2/3, the expected chromatic fraction of a kernel with
    random (unstructured) colour, so that unconverged noise-like kernels are not called colour.
    """
    out = []
    for c, lp in zip(chroma, lowpass, strict=True):
        if c >= chroma_threshold:
            out.append("colour")
        elif lp >= lowpass_threshold:
            out.append("brightness")
        else:
            out.append("edge")
    return out


def probe_autoencoder(model: ModularAutoencoder, held_out: torch.Tensor,
                      group_size: int | None = None,
                      codebooks: dict[str, PredictionCodebook] | None = None) -> ProbeReport:
    """Run every probe on ``model`` with ``held_out`` images ``(B, 3, S, S)`` in [0, 1].

    ``group_size``: channels per probed module (default ``model.units``; e.g. 8 for the
    hypercolumns of a ``rot_num = 8`` model). ``codebooks`` (branch name -> codebook, e.g. from
    :meth:`EquivarianceObjective.branches`) adds their distance from the identity.
    """
    g = _group_size(model, group_size)
    energy = grating_responses(model, kind="grating")
    tuning = summarise_tuning(energy)
    gabor = summarise_tuning(grating_responses(model, kind="gabor"))
    colour = colour_statistics(model)
    share = module_energy_share(model, held_out, g)
    corr = correlation_matrix(model, held_out)
    within, between = within_between(corr, g)
    w_within, w_between = within_between(corr, g, share)
    K = model.channels // g
    w = colour.energy.reshape(K, g)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-30)
    m_chroma = (colour.chromatic_fraction.reshape(K, g) * w).sum(1)
    m_lowpass = (colour.lowpass_index.reshape(K, g) * w).sum(1)
    m_freq = np.exp((np.log(tuning.preferred_frequency).reshape(K, g) * w).sum(1))
    types = classify_modules(m_chroma, m_lowpass)
    dist = {name: cb.identity_distance().numpy() for name, cb in (codebooks or {}).items()}
    return ProbeReport(tuning, gabor, colour, share, within, between, m_chroma, m_lowpass,
                       m_freq, types, energy, g, w_within, w_between, dist)


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = 10000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` (e.g. one score over seeds) and its percentile bootstrap interval.

    With a handful of seeds the interval is coarse (3 seeds give at most 10 distinct resampled
    means) and tends to be too narrow; it shows the spread, not a test.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))
