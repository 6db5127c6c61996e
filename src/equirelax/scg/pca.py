"""The PCA baseline of the ablation study: principal components of image patches as kernels.

The paper (Appendix A.2, Fig. S2) contrasts its modules with PCA features. Here the top
``modules * units`` principal components of normalised ``k x k`` RGB patches become the kernels of
a :class:`ModularAutoencoder` with a free kernel, grouped into modules of ``units`` consecutive
components (by decreasing variance), so that every probe applies to it unchanged.
"""

from __future__ import annotations

import torch

from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder
from equirelax.scg.datasets import CropSampler


@torch.no_grad()
def pca_autoencoder(sampler: CropSampler, modules: int = 16, units: int = 4,
                    kernel_size: int = 21, stride: int = 2, n_images: int = 512,
                    patches_per_image: int = 16, seed: int = 0) -> ModularAutoencoder:
    """A modular autoencoder whose kernels are the leading principal components of patches.

    All kernels share one scale, chosen by least squares so that the tied decoder reconstructs the
    sampled images as well as a common scale allows (decoding is quadratic in the scale).
    """
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    n = modules * units
    dim = 3 * kernel_size * kernel_size
    if n > dim:
        raise ValueError(f"{n} components requested but patches have only {dim} dimensions")
    model = ModularAutoencoder(AutoencoderConfig(modules=modules, units=units, kernel="free",
                                                 kernel_size=kernel_size, stride=stride))
    gen = torch.Generator().manual_seed(seed)
    if sampler.size < kernel_size:
        raise ValueError(f"crop size {sampler.size} smaller than kernel {kernel_size}")
    images = model.normalise(sampler.sample(n_images))
    patches = torch.nn.functional.unfold(images, kernel_size)  # (B, dim, L)
    pick = torch.randint(patches.shape[-1], (n_images, patches_per_image), generator=gen)
    sel = patches.gather(2, pick[:, None, :].expand(-1, dim, -1))
    data = sel.permute(0, 2, 1).reshape(-1, dim).double()
    data = data - data.mean(0, keepdim=True)
    cov = data.T @ data / data.shape[0]
    _, vecs = torch.linalg.eigh(cov)
    comps = vecs[:, -n:].flip(1).T  # (n, dim), decreasing variance
    # fix the sign so that each component has a non-negative sum (deterministic output)
    comps = comps * torch.where(comps.sum(1, keepdim=True) < 0, -1.0, 1.0)
    weight = comps.reshape(n, 3, kernel_size, kernel_size).float()
    model.kernel.weight.copy_(weight)
    size = tuple(images.shape[-2:])
    rec = model.decode_normalised(model.encode_normalised(images), size)
    scale2 = float((rec * images).sum() / (rec * rec).sum().clamp_min(1e-30))
    model.kernel.weight.mul_(max(scale2, 1e-12) ** 0.5)
    return model
