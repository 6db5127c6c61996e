"""A ControlNet-style trainable branch that steers a frozen diffusion U-Net with a condition image.

As in ControlNet (and in SCG, which trains one per module group): the branch is a copy of the
frozen U-Net's encoder, initialised from its weights; a small hint encoder maps the condition
image to the encoder's input width and is added after the input convolution; every encoder output
(skip features and middle block) passes through a zero-initialised 1x1 convolution and is added to
the frozen U-Net's corresponding feature. Because the output convolutions start at zero, training
begins exactly at the frozen model's behaviour and only gradually learns to use the condition.

One addition to ControlNet, for a short CPU budget (issue 14): the hint is standardised per
channel with a fixed mean and std (buffers, set once from the first training batch by
:meth:`ControlBranch.fit_hint`, stored with the weights). Conditions differ in scale (a module
group's decode in the autoencoder's normalised units: per-channel std 0.12 for the high-frequency
edge group up to 0.87 for brightness in a quick-preset model; Canny maps in {0, 1}); standardised,
every condition enters the branch at the scale of the image it is added to.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from equirelax.scg.diffusion import SmallUNet


def zero_conv(channels: int) -> nn.Conv2d:
    """A 1x1 convolution with zero weight and bias."""
    conv = nn.Conv2d(channels, channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ControlBranch(nn.Module):
    """Trainable copy of ``base``'s encoder + hint encoder + zero convolutions."""

    def __init__(self, base: SmallUNet, hint_channels: int = 3) -> None:
        super().__init__()
        if hint_channels < 1:
            raise ValueError(f"hint_channels must be >= 1, got {hint_channels}")
        c = base.config.base
        self.hint_channels = hint_channels
        self.encoder = copy.deepcopy(base)
        # the decoder half of the copy is never used; drop it so it holds no parameters
        for name in ("up2", "up1", "out_norm", "out", "time_mlp"):
            setattr(self.encoder, name, nn.Identity())
        for p in self.encoder.parameters():  # the copy trains even if ``base`` is frozen
            p.requires_grad_(True)
        last = nn.Conv2d(c, c, 3, padding=1)  # zero-initialised, as in ControlNet
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.hint = nn.Sequential(
            nn.Conv2d(hint_channels, 16, 3, padding=1), nn.SiLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, c, 3, padding=1), nn.SiLU(),
            last,
        )
        self.zero = nn.ModuleList(zero_conv(ch) for ch in base.skip_channels())
        self.register_buffer("hint_mean", torch.zeros(1, hint_channels, 1, 1))
        self.register_buffer("hint_std", torch.ones(1, hint_channels, 1, 1))

    @torch.no_grad()
    def fit_hint(self, hints: torch.Tensor) -> None:
        """Set the hint standardisation from a batch of conditions ``(B, C, H, W)``."""
        if hints.dim() != 4 or hints.shape[1] != self.hint_channels:
            raise ValueError(f"expected hints (B, {self.hint_channels}, H, W), got "
                             f"{tuple(hints.shape)}")
        self.hint_mean.copy_(hints.mean((0, 2, 3), keepdim=True))
        self.hint_std.copy_(hints.std((0, 2, 3), keepdim=True).clamp_min(1e-6))

    def forward(self, x: torch.Tensor, temb: torch.Tensor, hint: torch.Tensor
                ) -> list[torch.Tensor]:
        """Residuals for the frozen U-Net's skip and middle features."""
        if hint.dim() != 4 or hint.shape[1] != self.hint_channels:
            raise ValueError(f"expected a hint (B, {self.hint_channels}, H, W), got "
                             f"{tuple(hint.shape)}")
        if hint.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"hint size {tuple(hint.shape[-2:])} != image size "
                             f"{tuple(x.shape[-2:])}")
        h = self.hint((hint - self.hint_mean) / self.hint_std)
        feats = self.encoder.encode(x, temb, hint=h)
        return [z(f) for z, f in zip(self.zero, feats, strict=True)]


class ControlledUNet(nn.Module):
    """A frozen :class:`SmallUNet` plus a trainable :class:`ControlBranch`."""

    def __init__(self, base: SmallUNet, hint_channels: int = 3) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.branch = ControlBranch(base, hint_channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
        """The network output (``epsilon`` or ``v``, as the base predicts) at ``(x_t, t)``,
        steered by the condition ``hint``."""
        temb = self.base.embed_time(t)
        residuals = self.branch(x, temb, hint)
        return self.base.decode(self.base.encode(x, temb), temb, residuals)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The branch's parameters (the base stays frozen)."""
        return [p for p in self.branch.parameters() if p.requires_grad]
