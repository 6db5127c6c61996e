"""The equivariance-constrained training objective of the modular autoencoder.

``L = L_recon + lambda_equ L_equ + lambda_sym L_sym`` (Chen et al., Sec. 3), computed for up to
two branches that are summed:

* a translation-rotation branch (random ``t`` and ``theta``) with a codebook over
  ``(d_x, d_y, theta)`` on the rotation partition (``rot_num`` translation modules merged into one
  hypercolumn), and
* a translation-only branch (``theta = 0``) with a codebook over ``(d_x, d_y)``.

Per branch: ``L_equ`` is the masked MSE between ``f' = E(L_delta I)`` and the prediction
``M(delta) f`` from each module's own features; the reconstruction has three terms: ``D(f)`` vs
``I``, ``D(f')`` vs ``I'`` (masked), and the decoded prediction ``D(M f)`` vs ``I'`` (masked; the
published code's third term). ``L_sym`` is the paper's codebook form: for each module and unit
pair ``(m, n)`` the best transformation ``delta*_mn`` is a soft arg-max of ``M_mn(delta)`` over a
dense grid (temperature ``T``; circular mean for ``theta``), and ``||e_m - M(delta*_mn) e_n||^2``
pushes unit ``n`` to become a transformed copy of unit ``m``. We use ``exp(+M/T)`` (the published
code's sign: the large entries of ``M_mn`` mark the transformation that maps ``n`` onto ``m``); the
paper prints ``exp(-M/T)``.

``sym_form="image"`` uses instead the image-space form of the published code: a random unit
``m`` per step; for every unit ``n`` of a module, ``delta*_mn`` (the same soft arg-max) transforms
up to ``sym_images`` training images, kernel ``m`` encodes them, and the responses are pushed
towards unit ``n``'s features of the untransformed images at the corresponding locations (masked
like ``L_equ``). Gradients reach the kernels and, through ``delta*`` and the resampling, the
codebook. It costs one grouped convolution of ``channels x sym_images`` warped images per branch
(the published code's loss-magnitude schedule -- scale by 0.1 when >= 10 or >= 1, zero if still
>= 1 -- is not reproduced: it silently switches the term off).

All terms are means (per element), so the weights below are comparable across sizes. The
defaults (all reconstruction weights 1, ``lambda_equ = 1``, ``lambda_sym = 0.1``, ``T = 0.1``)
are our choice: the paper publishes none of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from equirelax.scg.autoencoder import (
    ModularAutoencoder,
    kernel_spectrum,
    spectral_decode,
    spectral_encode,
    spectral_size,
)
from equirelax.scg.codebook import CODEBOOK_INITS, PredictionCodebook
from equirelax.scg.transforms import (
    RigidTransform,
    feature_correspondence,
    gather_features,
    image_mask,
    warp_images,
)

SYM_FORMS = ("codebook", "image")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Weights and settings of the training objective (see the module docstring)."""

    recon: float = 1.0
    recon_transformed: float = 1.0
    recon_prediction: float = 1.0
    equ: float = 1.0
    sym: float = 0.1
    temperature: float = 0.1
    max_translation: float = 0.3
    rotation_branch: bool = True
    translation_branch: bool = True
    rot_num: int = 1
    mask_radius: float = 0.9
    n_t: int = 5
    n_r: int = 8
    init_noise: float = 0.01
    sym_grid_t: int = 9
    sym_grid_r: int = 16
    sym_form: str = "codebook"
    sym_images: int = 5
    codebook_init: str = "identity"

    def __post_init__(self) -> None:
        for name in ("recon", "recon_transformed", "recon_prediction", "equ", "sym"):
            if getattr(self, name) < 0:
                raise ValueError(f"weight {name} must be >= 0, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.rot_num < 1:
            raise ValueError(f"rot_num must be >= 1, got {self.rot_num}")
        if self.sym_form not in SYM_FORMS:
            raise ValueError(f"sym_form must be one of {SYM_FORMS}, got {self.sym_form!r}")
        if self.sym_images < 1:
            raise ValueError(f"sym_images must be >= 1, got {self.sym_images}")
        if self.codebook_init not in CODEBOOK_INITS:
            raise ValueError(f"codebook_init must be one of {CODEBOOK_INITS}, got "
                             f"{self.codebook_init!r}")

    def to_dict(self) -> dict:
        """Plain-dict form, stored in checkpoints."""
        return asdict(self)


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None
               ) -> torch.Tensor:
    """Mean squared error over the elements where ``mask`` (broadcast over channels) is 1."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    if mask is None:
        return ((a - b) ** 2).mean()
    m = mask.expand_as(a)
    return ((a - b) ** 2 * m).sum() / m.sum().clamp_min(1.0)


def best_transforms(codebook: PredictionCodebook, temperature: float = 0.1, grid_t: int = 9,
                    grid_r: int = 16) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``delta*_mn`` per module: the ``softmax(M_mn / T)``-weighted mean of ``delta`` over a
    dense grid of ``grid_t^2`` offsets (times ``grid_r`` angles for a rotating codebook; circular
    mean). Returns offsets ``(K, l, l, 2)`` in feature units and angles ``(K, l, l)`` (or None)."""
    t = torch.linspace(-0.5, 0.5, grid_t)
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    if codebook.rotates:
        ang = torch.arange(grid_r) * (2 * math.pi / grid_r)
        offset = torch.stack([gx, gy], -1).expand(grid_r, grid_t, grid_t, 2).reshape(-1, 2)
        theta = ang[:, None, None].expand(grid_r, grid_t, grid_t).reshape(-1)
        M = codebook.lookup(offset, theta)
    else:
        offset = torch.stack([gx, gy], -1).reshape(-1, 2)
        theta = None
        M = codebook.lookup(offset)
    weights = torch.softmax(M / temperature, dim=0)  # (G, K, l, l) over grid points
    dx = (weights * offset[:, 0, None, None, None]).sum(0)  # (K, l, l)
    dy = (weights * offset[:, 1, None, None, None]).sum(0)
    best_offset = torch.stack([dx, dy], -1)
    if theta is None:
        return best_offset, None
    s = (weights * torch.sin(theta)[:, None, None, None]).sum(0)
    c = (weights * torch.cos(theta)[:, None, None, None]).sum(0)
    return best_offset, torch.atan2(s, c)


def symmetry_loss(codebook: PredictionCodebook, temperature: float = 0.1, grid_t: int = 9,
                  grid_r: int = 16) -> torch.Tensor:
    """The paper's codebook-form symmetry loss ``mean ||e_m - M(delta*_mn) e_n||^2``.

    ``delta*_mn`` from :func:`best_transforms`.
    """
    best_offset, best_theta = best_transforms(codebook, temperature, grid_t, grid_r)
    if best_theta is not None:
        M_best = codebook.lookup(best_offset, best_theta)  # (K, l, l, K, l, l)
    else:
        M_best = codebook.lookup(best_offset)
    K, L = codebook.modules_, codebook.units
    # M_best[i, m, n] holds every module's matrix at delta*_imn; keep module i's column n:
    # col[i, m, n, :] = M_i(delta*_imn) e_n.
    i = torch.arange(K).view(K, 1, 1)
    m = torch.arange(L).view(1, L, 1)
    n = torch.arange(L).view(1, 1, L)
    col = M_best[i, m, n, i, :, n]  # (K, L, L, L)
    target = torch.eye(L).view(1, L, 1, L)  # e_m
    return ((col - target) ** 2).sum(-1).mean()


def grouped_spectral_conv(images: torch.Tensor, kernels: torch.Tensor, stride: int
                          ) -> torch.Tensor:
    """Each image channel group convolved with its own kernel, via FFTs.

    ``images`` ``(B, C, c_img, S, S)``, ``kernels`` ``(C, c_img, k, k)``; returns ``(B, C, h, h)``
    equal to ``conv2d(images.reshape(B, C * c_img, S, S), kernels, stride, padding=k // 2,
    groups=C)``. On CPU a grouped ``conv2d`` with one 21x21 kernel per group is slow (seconds
    per step in its backward pass); the product of spectra is not.
    """
    if images.dim() != 5 or images.shape[1:3] != kernels.shape[:2] or \
            images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images {tuple(images.shape)} do not match kernels "
                         f"{tuple(kernels.shape)} (expected (B, C, c_img, S, S))")
    b, c, _, size, _ = images.shape
    k, s = kernels.shape[-1], stride
    h = -(-size // s)
    length = spectral_size(size, h, k, s)
    lh = length // s
    X = torch.fft.fft2(images, s=(length, length))
    Y = (X * kernel_spectrum(kernels, length).conj()).sum(2)  # (B, C, L, L)
    Y = Y.reshape(b, c, s, lh, s, lh).sum((2, 4)) / (s * s)  # fold: stride-s subsampling
    return torch.fft.ifft2(Y).real[..., :h, :h]


def image_symmetry_loss(codebook: PredictionCodebook, weight: torch.Tensor, x: torch.Tensor,
                        f: torch.Tensor, stride: int, unit: int, temperature: float = 0.1,
                        grid_t: int = 9, grid_r: int = 16, radius: float = 0.9) -> torch.Tensor:
    """The published code's image-space symmetry loss for one source unit ``unit`` (``m``).

    For every module ``i`` and unit ``n``: ``E_{i,m}(L_{delta*_imn} x)`` at each location must
    equal ``f_{i,n}(x)`` at the source location (nearest feature, masked as ``L_equ``).
    ``x``: normalised images ``(B, 3, S, S)``; ``f``: their features ``(B, K l, h, w)`` with the
    codebook's channel layout; ``weight``: the kernel ``(K l, 3, k, k)``.
    """
    K, L = codebook.modules_, codebook.units
    if not 0 <= unit < L:
        raise ValueError(f"unit must lie in [0, {L}), got {unit}")
    if weight.shape[0] != K * L or f.shape[1] != K * L:
        raise ValueError(f"codebook has {K * L} channels, kernel {weight.shape[0]}, features "
                         f"{f.shape[1]}")
    b, _, size, _ = x.shape
    best_offset, best_theta = best_transforms(codebook, temperature, grid_t, grid_r)
    off = best_offset[:, unit]  # (K, L, 2): delta*_{i, m, n} for n = 0..L-1
    th = best_theta[:, unit] if best_theta is not None else torch.zeros(K, L)
    # feature units -> normalised image units (one feature step = stride pixels = 2 s / S)
    scale = 2 * stride / size
    C = K * L
    tr = RigidTransform(th.reshape(1, C).expand(b, C).reshape(-1),
                        (off[..., 0] * scale).reshape(1, C).expand(b, C).reshape(-1),
                        (off[..., 1] * scale).reshape(1, C).expand(b, C).reshape(-1))
    warped = warp_images(x.repeat_interleave(C, dim=0), tr)  # (B C, 3, S, S)
    kernel = weight.reshape(K, L, *weight.shape[1:])[:, unit]  # (K, 3, k, k): kernel m
    kernel = kernel.repeat_interleave(L, dim=0)  # (C, 3, k, k), one per (i, n)
    resp = grouped_spectral_conv(warped.reshape(b, C, x.shape[1], size, size), kernel, stride)
    h = resp.shape[-1]
    corr = feature_correspondence(size, h, stride, tr, radius)
    idx = corr.index.reshape(b, C, h * h)
    target = f.reshape(b, C, -1).gather(2, idx).reshape(b, C, h, h)
    mask = corr.mask.reshape(b, C, h, h)
    return ((resp - target) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)


class EquivarianceObjective(nn.Module):
    """The full stage-1 loss for a :class:`ModularAutoencoder`; owns the codebooks."""

    def __init__(self, autoencoder: ModularAutoencoder, config: ObjectiveConfig | None = None,
                 spectral: bool = True) -> None:
        """``spectral``: compute the encoder and decoder convolutions through FFTs (several
        times faster on CPU for 21x21 kernels; equal to the direct form up to rounding)."""
        super().__init__()
        self.spectral = spectral
        self.config = config or ObjectiveConfig()
        c = self.config
        K, L = autoencoder.n_modules, autoencoder.units
        if K % c.rot_num:
            raise ValueError(f"rot_num {c.rot_num} must divide the number of modules {K}")
        self.rotation_codebook = (
            PredictionCodebook(K // c.rot_num, L * c.rot_num, c.n_t, c.n_r, c.init_noise,
                               c.codebook_init)
            if c.rotation_branch else None
        )
        self.translation_codebook = (
            PredictionCodebook(K, L, c.n_t, 0, c.init_noise, c.codebook_init)
            if c.translation_branch else None
        )

    def branches(self) -> list[tuple[str, PredictionCodebook]]:
        """The active ``(name, codebook)`` branches."""
        out = []
        if self.rotation_codebook is not None:
            out.append(("rot", self.rotation_codebook))
        if self.translation_codebook is not None:
            out.append(("trans", self.translation_codebook))
        return out

    def forward(self, model: ModularAutoencoder, images: torch.Tensor,
                generator: torch.Generator | None = None,
                transforms: dict[str, RigidTransform] | None = None) -> dict[str, torch.Tensor]:
        """All loss terms for a batch of [0, 1] images; ``"total"`` is the weighted sum.

        ``transforms`` (per branch name) overrides the random transformations, for tests.
        """
        c = self.config
        x = model.normalise(images)
        b, size = x.shape[0], x.shape[-1]
        W = model.weight()
        branches = self.branches()
        plans = []
        for name, codebook in branches:
            if transforms is not None and name in transforms:
                tr = transforms[name]
            else:
                tr = RigidTransform.sample(b, c.max_translation, rotate=(name == "rot"),
                                           generator=generator)
            plans.append((codebook, tr, warp_images(x, tr)))
        # One convolution for I and every I', one transposed convolution for every decode;
        # both through FFTs unless ``spectral`` is off (same values up to float rounding).
        if self.spectral:
            h = -(-size // model.stride)
            spec = kernel_spectrum(W, spectral_size(size, h, W.shape[-1], model.stride))

            def encode(t: torch.Tensor) -> torch.Tensor:
                return spectral_encode(t, spec, model.stride)

            def decode(t: torch.Tensor) -> torch.Tensor:
                return spectral_decode(t, spec, model.stride, size)
        else:
            def encode(t: torch.Tensor) -> torch.Tensor:
                return model.encode_normalised(t, W)

            def decode(t: torch.Tensor) -> torch.Tensor:
                return model.decode_normalised(t, (size, size), W)
        # split (not slicing): its backward is one concatenation instead of a zero-filled
        # full-size gradient per slice
        feats = encode(torch.cat([x] + [p[2] for p in plans])).split(b)
        f = feats[0]
        need_equ = c.equ > 0 or c.recon_prediction > 0
        zero = x.new_zeros(())
        terms = {k: zero for k in ("recon_transformed", "recon_prediction", "equ", "sym")}
        to_decode = [f]
        masks = []
        preds = []
        for k, (codebook, tr, _) in enumerate(plans):
            f2 = feats[k + 1]
            masks.append(image_mask(size, tr, c.mask_radius))
            if c.recon_transformed > 0:
                to_decode.append(f2)
            if need_equ:
                corr = feature_correspondence(size, f.shape[-1], model.stride, tr, c.mask_radius)
                source = gather_features(f, corr.index)
                theta = tr.theta if codebook.rotates else None
                pred = codebook.predict(source, corr.offset, theta)
                terms["equ"] = terms["equ"] + masked_mse(pred, f2, corr.mask)
                preds.append(pred * corr.mask)
            if c.sym > 0 and c.sym_form == "codebook":
                terms["sym"] = terms["sym"] + symmetry_loss(
                    codebook, c.temperature, c.sym_grid_t, c.sym_grid_r)
            elif c.sym > 0:
                n_img = min(c.sym_images, b)
                unit = int(torch.randint(codebook.units, (1,), generator=generator))
                terms["sym"] = terms["sym"] + image_symmetry_loss(
                    codebook, W, x[:n_img], f[:n_img], model.stride, unit, c.temperature,
                    c.sym_grid_t, c.sym_grid_r, c.mask_radius)
        if c.recon_prediction > 0:
            to_decode += preds
        recs = decode(torch.cat(to_decode)).split(b)
        terms["recon"] = masked_mse(recs[0], x)
        pos = 1
        if c.recon_transformed > 0:
            for k, (_, _, x2) in enumerate(plans):
                terms["recon_transformed"] = terms["recon_transformed"] + masked_mse(
                    recs[pos], x2, masks[k])
                pos += 1
        if c.recon_prediction > 0 and need_equ:
            for k, (_, _, x2) in enumerate(plans):
                terms["recon_prediction"] = terms["recon_prediction"] + masked_mse(
                    recs[pos], x2, masks[k])
                pos += 1
        terms["total"] = (
            c.recon * terms["recon"]
            + c.recon_transformed * terms["recon_transformed"]
            + c.recon_prediction * terms["recon_prediction"]
            + c.equ * terms["equ"]
            + c.sym * terms["sym"]
        )
        return terms
