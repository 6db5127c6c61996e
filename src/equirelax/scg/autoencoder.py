"""The modular autoencoder: one linear convolution, a tied transposed convolution, and modules.

Encoder ``f = I * W`` (stride ``s``), decoder ``D(f) = f (*)^T W`` with the *same* kernel (tied
weights), as in Chen et al. (NeurIPS 2024), Sec. 3. The ``modules * units`` output channels are
split into modules: module ``i`` owns channels ``i * units ... (i + 1) * units - 1``. Decoding a
subset of modules (the others zeroed) gives the per-module reconstructions and the condition
images of the pattern-completion stage.

Input images are in [0, 1]; the model normalises them with fixed per-channel statistics (those of
the published extractor) before encoding and undoes that after decoding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from equirelax.scg.kernels import CompositeKernel, FreeKernel

NORM_MEAN = (0.50705882, 0.48666667, 0.44078431)
NORM_STD = (0.26745098, 0.25568627, 0.27607843)


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of a modular autoencoder.

    ``kernel`` is ``"composite"`` (the bipolar form; effective size ``base + 4 (base - 1)``) or
    ``"free"`` (a ``kernel_size`` square kernel; default 21, the composite kernel's effective
    size, so that free and composite variants see the same receptive field). ``stride`` 2 as in
    the published model.
    """

    modules: int = 16
    units: int = 4
    kernel: str = "composite"
    base: int = 5
    kernel_size: int = 21
    stride: int = 2

    def __post_init__(self) -> None:
        if self.kernel not in ("composite", "free"):
            raise ValueError(f"kernel must be 'composite' or 'free', got {self.kernel!r}")
        if self.modules < 1 or self.units < 1:
            raise ValueError(f"need modules, units >= 1, got {self.modules}, {self.units}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    def to_dict(self) -> dict:
        """Plain-dict form, stored in checkpoints."""
        return asdict(self)


def tied_decode(f: torch.Tensor, weight: torch.Tensor, stride: int, size: tuple[int, int]
                ) -> torch.Tensor:
    """The transposed convolution ``f (*)^T W`` (padding ``k // 2``) cropped to ``size``.

    Equal to ``F.conv_transpose2d(f, W, stride, padding=k // 2, output_padding=...)``, computed as a
    sub-pixel convolution: output phase ``(r_y, r_x)`` is a stride-1 convolution of ``f`` with the
    sub-kernel ``W[..., r_y::s, r_x::s]``; all phases run in one ``conv2d`` and are interleaved by
    ``pixel_shuffle``. On CPU this is several times faster than ``conv_transpose2d`` (forward and
    backward), which is what brings a training step under 0.2 s.
    """
    c_lat, c_img, k, _ = weight.shape
    if f.dim() != 4 or f.shape[1] != c_lat:
        raise ValueError(f"expected features (B, {c_lat}, h, w), got {tuple(f.shape)}")
    s, pad = stride, k // 2
    h, w = f.shape[-2:]
    natural = ((h - 1) * s - 2 * pad + k, (w - 1) * s - 2 * pad + k)
    if not all(0 <= n_ - n < s for n_, n in zip(size, natural, strict=True)):
        raise ValueError(f"cannot decode features {tuple(f.shape)} at stride {s} to size {size}")
    kmax = -(-k // s)
    # sub-kernel (c, r_y, r_x) = W[:, c, r_y::s, r_x::s], zero-padded to kmax x kmax and flipped:
    # one pad to kmax * s and a reshape give all of them at once
    wp = F.pad(weight, (0, kmax * s - k, 0, kmax * s - k))
    wp = wp.reshape(c_lat, c_img, kmax, s, kmax, s).permute(1, 3, 5, 0, 2, 4)
    kernel = wp.reshape(c_img * s * s, c_lat, kmax, kmax).flip(-1, -2)
    a_min = pad // s
    a_max = [-(-(pad + n) // s) - 1 for n in size]
    right = [max(kmax - 1, a + 1 - n) for a, n in zip(a_max, (h, w), strict=True)]
    fpad = F.pad(f, (kmax - 1, right[1], kmax - 1, right[0]))
    fpad = fpad[..., a_min : a_max[0] + kmax, a_min : a_max[1] + kmax]
    out = F.pixel_shuffle(F.conv2d(fpad, kernel), s) if s > 1 else F.conv2d(fpad, kernel)
    off = pad - s * a_min
    return out[..., off : off + size[0], off : off + size[1]]


def spectral_size(size: int, feature_size: int, kernel_size: int, stride: int) -> int:
    """The FFT length used by :func:`spectral_encode` / :func:`spectral_decode`.

    A multiple of ``stride`` at least ``size + k // 2`` (and ``stride * feature_size``, ``k``): long
    enough that the circular convolution of the zero-padded signals equals the linear one on
    every output the encoder or decoder keeps.
    """
    need = max(size + kernel_size // 2, stride * feature_size, kernel_size)
    return stride * -(-need // stride)


def kernel_spectrum(weight: torch.Tensor, length: int) -> torch.Tensor:
    """Full 2-D DFT ``(C, c_img, L, L)`` of the kernel placed with its centre tap at index 0."""
    k = weight.shape[-1]
    if k > length:
        raise ValueError(f"kernel {k} longer than the FFT length {length}")
    wp = F.pad(weight, (0, length - k, 0, length - k))
    return torch.fft.fft2(torch.roll(wp, (-(k // 2), -(k // 2)), (-2, -1)))


def _phase_blocks(spec: torch.Tensor, stride: int, half_cols: bool) -> torch.Tensor:
    """Regroup a full ``(A, B, L, L)`` spectrum into ``(Lh * Lh', A, B * s * s)``.

    Frequency ``(a + Lh q1, b + Lh q2)`` goes to row ``a * Lh' + b``, column ``(B, q1, q2)``,
    with ``Lh = L / s``; ``half_cols`` keeps only ``b <= Lh // 2`` (``Lh' = Lh // 2 + 1``), the
    columns an inverse real FFT reads.
    """
    a, b, length, _ = spec.shape
    s = stride
    lh = length // s
    x = spec.reshape(a, b, s, lh, s, lh)
    if half_cols:
        x = x[..., : lh // 2 + 1]
    x = x.permute(3, 5, 0, 1, 2, 4)  # (Lh, Lh', A, B, q1, q2)
    return x.reshape(lh * x.shape[1], a, b * s * s)


def _complex_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched complex product ``a @ b`` as one real ``bmm`` on interleaved (re, im) parts.

    ``a``: ``(F, N, C)``, ``b``: ``(F, C, O)`` complex. On CPU the complex ``bmm`` copies its
    transposed operands matrix by matrix in the backward pass; the real form does not.
    """
    f, n, c = a.shape
    o = b.shape[-1]
    ar = torch.view_as_real(a.contiguous()).reshape(f, n, 2 * c)
    br = torch.view_as_real(b.contiguous())  # (F, C, O, 2)
    re, im = br[..., 0], br[..., 1]
    # input (c, re) feeds (o, re) by re and (o, im) by im; input (c, im): -im and re
    w = torch.stack([torch.stack([re, im], -1), torch.stack([-im, re], -1)], 2)
    out = torch.bmm(ar, w.reshape(f, 2 * c, 2 * o)).reshape(f, n, o, 2)
    return torch.view_as_complex(out)


def spectral_encode(x: torch.Tensor, spectrum: torch.Tensor, stride: int) -> torch.Tensor:
    """``conv2d(x, W, stride, padding=k // 2)`` for square ``x`` via FFTs.

    ``spectrum`` is :func:`kernel_spectrum` of ``W`` at the :func:`spectral_size` length. The
    strided output is obtained by folding the spectrum (aliasing) before one inverse FFT of size
    ``L / s``; the channel contraction is one batched complex matrix product per frequency.
    On CPU, for the 21x21 kernels of the SCG extractor, this and :func:`spectral_decode` take a
    fraction of the time of the direct convolutions, forward and backward.
    """
    c_lat, c_img, length, _ = spectrum.shape
    if x.dim() != 4 or x.shape[1] != c_img or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"expected square images (B, {c_img}, S, S), got {tuple(x.shape)}")
    n, _, size, _ = x.shape
    s = stride
    if length % s or length < size:
        raise ValueError(f"FFT length {length} must be a multiple of stride {s} and >= {size}; "
                         "use spectral_size")
    lh = length // s
    h = -(-size // s)
    X = _phase_blocks(torch.fft.fft2(x, s=(length, length)), s, True)  # (F, N, c_img s s)
    Wc = _phase_blocks(spectrum.conj(), s, True).transpose(1, 2)  # (F, c_img s s, C)
    Y = _complex_bmm(X, Wc) / (s * s)  # (F, N, C)
    Y = Y.reshape(lh, lh // 2 + 1, n, c_lat).permute(2, 3, 0, 1)
    return torch.fft.irfft2(Y, s=(lh, lh))[..., :h, :h]


def spectral_decode(f: torch.Tensor, spectrum: torch.Tensor, stride: int, size: int
                    ) -> torch.Tensor:
    """The tied decoder :func:`tied_decode` (square output ``size``) via FFTs.

    The DFT of the zero-interleaved (up-sampled) features is the DFT of the features tiled
    ``s x s`` times, so each feature-map frequency meets ``s * s`` kernel frequencies: one
    batched complex product per feature frequency, then one inverse FFT per image channel.
    """
    c_lat, c_img, length, _ = spectrum.shape
    if f.dim() != 4 or f.shape[1] != c_lat or f.shape[-1] != f.shape[-2]:
        raise ValueError(f"expected square features (B, {c_lat}, h, h), got {tuple(f.shape)}")
    n, _, h, _ = f.shape
    s = stride
    if length % s or length < size or length < s * h:
        raise ValueError(f"FFT length {length} must be a multiple of stride {s} and cover "
                         f"{max(size, s * h)} pixels; use spectral_size")
    lh = length // s
    Fh = torch.fft.fft2(f, s=(lh, lh)).permute(2, 3, 0, 1).reshape(lh * lh, n, c_lat)
    D = _complex_bmm(Fh, _phase_blocks(spectrum, s, False))  # (Lh Lh, N, c_img s s)
    D = D.reshape(lh, lh, n, c_img, s, s).permute(2, 3, 4, 0, 5, 1)
    D = D.reshape(n, c_img, length, length)[..., : length // 2 + 1]
    return torch.fft.irfft2(D, s=(length, length))[..., :size, :size]


class ModularAutoencoder(nn.Module):
    """Tied linear conv encoder / transposed-conv decoder whose channels form modules."""

    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or AutoencoderConfig()
        c = self.config
        if c.kernel == "composite":
            self.kernel: nn.Module = CompositeKernel(c.modules, c.units, base=c.base)
        else:
            self.kernel = FreeKernel(c.modules, c.units, size=c.kernel_size)
        self.register_buffer("mean", torch.tensor(NORM_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(NORM_STD).view(1, 3, 1, 1))

    @property
    def n_modules(self) -> int:
        """Number of modules."""
        return self.config.modules

    @property
    def units(self) -> int:
        """Units (channels) per module."""
        return self.config.units

    @property
    def stride(self) -> int:
        """Encoder stride."""
        return self.config.stride

    @property
    def channels(self) -> int:
        """Total latent channels ``modules * units``."""
        return self.config.modules * self.config.units

    def weight(self) -> torch.Tensor:
        """The effective kernel ``(channels, 3, k, k)`` shared by encoder and decoder."""
        return self.kernel()

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] RGB images to the normalised input space."""
        self._check(images)
        return (images - self.mean) / self.std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalise`."""
        return x * self.std + self.mean

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")

    def encode_normalised(self, x: torch.Tensor, weight: torch.Tensor | None = None
                          ) -> torch.Tensor:
        """Encode already-normalised inputs: ``f = x * W`` with stride ``s``."""
        self._check(x)
        w = self.weight() if weight is None else weight
        return F.conv2d(x, w, stride=self.stride, padding=w.shape[-1] // 2)

    def decode_normalised(self, f: torch.Tensor, size: tuple[int, int],
                          weight: torch.Tensor | None = None) -> torch.Tensor:
        """Decode features with the tied transposed convolution to a ``size`` image."""
        if f.dim() != 4 or f.shape[1] != self.channels:
            raise ValueError(f"expected features (B, {self.channels}, h, w), got {tuple(f.shape)}")
        w = self.weight() if weight is None else weight
        return tied_decode(f, w, self.stride, size)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Encode [0, 1] RGB images to features ``(B, modules * units, h, w)``."""
        return self.encode_normalised(self.normalise(images))

    def decode(self, f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Decode features to [0, 1]-range RGB images (not clipped)."""
        return self.denormalise(self.decode_normalised(f, size))

    def module_mask(self, modules: Iterable[int]) -> torch.Tensor:
        """A ``(1, channels, 1, 1)`` 0/1 mask keeping the channels of ``modules``."""
        mods = sorted(set(int(m) for m in modules))
        if any(m < 0 or m >= self.n_modules for m in mods):
            raise ValueError(f"module indices must lie in [0, {self.n_modules}), got {mods}")
        mask = torch.zeros(self.n_modules, self.units, device=self.mean.device)
        mask[mods] = 1.0
        return mask.view(1, -1, 1, 1)

    def decode_modules(self, images: torch.Tensor, modules: Iterable[int]) -> torch.Tensor:
        """Reconstruct images from the given modules only: ``D(E(I) * mask)``.

        The mean image is *not* added back: a group's reconstruction is its own contribution in
        normalised units, rescaled by the channel std and offset by the channel mean, so an empty
        group decodes to the mean colour.
        """
        f = self.encode(images)
        return self.decode(f * self.module_mask(modules), tuple(images.shape[-2:]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstruct [0, 1] RGB images through all modules."""
        return self.decode(self.encode(images), tuple(images.shape[-2:]))
