"""Condition images for pattern completion, the Canny baseline, and input corruptions.

* ``ModuleGroupCondition``: the SCG condition ``c = D(E(I) * mask_group)``, the pixel-space decode
  of one group of modules of a frozen modular autoencoder (a 3-channel image).
* ``canny_condition``: scikit-image Canny edges of the grey image (the ControlNet-Canny baseline).
* Corruptions applied to the *source* before a condition is extracted: Gaussian noise (the
  robustness curve), blur + down-sampling (super-resolution), haze ``I t + A (1 - t)`` and a
  line drawing (dark edges on white): the zero-shot inputs. None is seen during training.
* ``groups_from_probe``: module groups chosen from the probes of stage 1 (the analogues of the
  paper's HC0 colour / HC1 brightness / HC2-HC5 edge groups).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from equirelax.scg.autoencoder import ModularAutoencoder
from equirelax.scg.probes import ProbeReport

Condition = Callable[[torch.Tensor], torch.Tensor]


class ModuleGroupCondition:
    """Decode only the given modules of a frozen autoencoder: ``D(E(I) * mask)``."""

    def __init__(self, model: ModularAutoencoder, modules: list[int]) -> None:
        if not modules:
            raise ValueError("a module group needs at least one module")
        self.model = model.eval()
        self.modules = sorted(modules)
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Condition images (B, 3, H, W), in the autoencoder's normalised units."""
        x = self.model.normalise(images)
        f = self.model.encode_normalised(x) * self.model.module_mask(self.modules)
        return self.model.decode_normalised(f, tuple(images.shape[-2:]))


def _grey(images: torch.Tensor) -> np.ndarray:
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * w).sum(1).numpy()


def canny_condition(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Canny edge maps of the grey images, replicated to 3 channels, values in {0, 1}."""
    from skimage.feature import canny

    grey = _grey(images.clamp(0, 1))
    edges = np.stack([canny(g, sigma=sigma) for g in grey]).astype(np.float32)
    return torch.from_numpy(edges)[:, None].repeat(1, 3, 1, 1)


def add_gaussian_noise(images: torch.Tensor, sigma: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Source corrupted by i.i.d. Gaussian noise of std ``sigma`` (clipped to [0, 1])."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noise = torch.randn(images.shape, generator=generator)
    return (images + sigma * noise).clamp(0, 1)


def blur_downsample(images: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Down-sample by ``factor`` (area) and up-sample back (bilinear): a low-resolution input."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    size = images.shape[-2:]
    small = F.avg_pool2d(images, factor)
    return F.interpolate(small, size=size, mode="bilinear", align_corners=False)


def haze(images: torch.Tensor, transmission: float = 0.5, airlight: float = 0.9) -> torch.Tensor:
    """Uniform haze ``I t + A (1 - t)``."""
    if not 0 < transmission <= 1:
        raise ValueError(f"transmission must lie in (0, 1], got {transmission}")
    return images * transmission + airlight * (1 - transmission)


def line_drawing(images: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """A line drawing of the images: dark Canny lines on a white background, grey RGB."""
    return 1.0 - canny_condition(images, sigma=sigma)


def groups_from_probe(report: ProbeReport) -> dict[str, list[int]]:
    """Module groups from the stage-1 probes (empty groups are left out).

    ``colour``: modules labelled colour; ``brightness``: achromatic low-pass modules; the edge
    modules are split at their median preferred frequency into ``edge_low`` and ``edge_high``.
    """
    types = report.module_types
    groups = {
        "colour": [i for i, t in enumerate(types) if t == "colour"],
        "brightness": [i for i, t in enumerate(types) if t == "brightness"],
    }
    edges = [i for i, t in enumerate(types) if t == "edge"]
    if edges:
        freq = report.module_frequency[edges]
        median = float(np.median(freq))
        groups["edge_low"] = [i for i, f in zip(edges, freq, strict=True) if f <= median]
        groups["edge_high"] = [i for i, f in zip(edges, freq, strict=True) if f > median]
    return {k: v for k, v in groups.items() if v}
