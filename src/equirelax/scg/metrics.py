"""Image-similarity metrics of generated images against their sources: PSNR and SSIM on colour
and grey images (the paper's Table 1 quantities that need no downloaded network)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

GREY_WEIGHTS = (0.299, 0.587, 0.114)


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
        raise ValueError(f"expected two (B, 3, H, W) batches of equal shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, ``(B, 1, H, W)``."""
    w = torch.tensor(GREY_WEIGHTS, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True)


def psnr(generated: torch.Tensor, source: torch.Tensor, grey: bool = False) -> np.ndarray:
    """Per-image PSNR in dB for images in [0, 1]."""
    _check(generated, source)
    a, b = (to_grey(generated), to_grey(source)) if grey else (generated, source)
    mse = ((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).flatten(1).mean(1).double()
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-12))).numpy()


def ssim(generated: torch.Tensor, source: torch.Tensor, grey: bool = False) -> np.ndarray:
    """Per-image SSIM (scikit-image, 7x7 window, data range 1) for images in [0, 1]."""
    _check(generated, source)
    out = []
    for g, s in zip(generated.clamp(0, 1), source.clamp(0, 1), strict=True):
        if grey:
            gg = to_grey(g[None])[0, 0].double().numpy()
            ss = to_grey(s[None])[0, 0].double().numpy()
            out.append(structural_similarity(gg, ss, data_range=1.0))
        else:
            out.append(structural_similarity(g.permute(1, 2, 0).double().numpy(),
                                             s.permute(1, 2, 0).double().numpy(),
                                             data_range=1.0, channel_axis=2))
    return np.asarray(out)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired items (images) and its percentile bootstrap interval.

    ``a`` and ``b`` hold one score per image (already averaged over noise seeds); images are
    resampled with replacement ``n_boot`` times. Returns ``(mean, low, high)``.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"need two 1-D arrays of equal length >= 2, got shapes {a.shape}, "
                         f"{b.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    d = a - b
    idx = np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), float(low), float(high)
