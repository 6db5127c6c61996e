"""A small pixel-space denoising diffusion model (DDPM training, DDIM sampling) for 32x32 RGB.

This stands in for Stable Diffusion 1.5 in the pattern-completion stage: it is pre-trained
unconditionally, then frozen, and a ControlNet-style branch (:mod:`equirelax.scg.control`) learns
to steer it. The U-Net exposes its encoder (``encode``) and decoder (``decode``) separately so
that the control branch can copy the encoder and add its residuals to the skip connections and
the middle block, as ControlNet does.

Images live in ``[-1, 1]``. Two choices matter at this scale (issue 14):

* The schedule reaches (almost) pure noise at the last step. The cosine schedule of Nichol &
  Dhariwal does, for any number of steps; the linear schedule with ``beta_end = 0.02`` reaches it
  only with about 1,000 steps (with 400 steps ``alpha_bar_T ~ 0.018``: a sampler that starts from
  pure noise then starts from an input the network never saw in training). ``schedule="linear"``
  is kept for comparison.
* The network predicts ``v = sqrt(a) epsilon - sqrt(1 - a) x_0`` (Salimans & Ho). Its MSE weights
  errors of the implied clean image by ``1 + SNR(t)``, the epsilon loss by ``SNR(t)``: with the
  epsilon loss, the high-noise steps, where a condition tells the model most, hardly count, so
  a control branch that learns the image layout barely moves the loss. ``prediction="eps"`` is
  kept for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

SCHEDULES = ("cosine", "linear")
PREDICTIONS = ("v", "eps")


@dataclass(frozen=True)
class DiffusionConfig:
    """U-Net width (``base`` channels, doubled at each of the two down-samplings), noise schedule
    (``schedule``: cosine, or linear from ``beta_start`` to ``beta_end``) and what the network
    predicts (``prediction``: ``"v"`` or ``"eps"``)."""

    base: int = 32
    steps: int = 400
    beta_start: float = 1e-4
    beta_end: float = 0.02
    schedule: str = "cosine"
    prediction: str = "v"

    def __post_init__(self) -> None:
        if self.base < 8 or self.base % 8:
            raise ValueError(f"base must be a positive multiple of 8, got {self.base}")
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2, got {self.steps}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got "
                             f"{self.beta_start}, {self.beta_end}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got "
                             f"{self.prediction!r}")

    def to_dict(self) -> dict:
        """Plain-dict form, stored in checkpoints."""
        return asdict(self)

    def make_schedule(self) -> NoiseSchedule:
        """The noise schedule this configuration describes."""
        return NoiseSchedule(self.steps, self.beta_start, self.beta_end, kind=self.schedule)


def _cosine_alpha_bar(steps: int, s: float = 0.008) -> torch.Tensor:
    """``alpha_bar`` of the cosine schedule, betas clipped at 0.999 (Nichol & Dhariwal 2021)."""
    x = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0)


class NoiseSchedule:
    """DDPM schedule: ``alpha_bar_t`` for ``t = 0 .. steps - 1`` (cosine or linear beta), the
    forward noising and the conversions between the network output and ``(x_0, epsilon)``."""

    def __init__(self, steps: int = 400, beta_start: float = 1e-4, beta_end: float = 0.02,
                 kind: str = "linear") -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"kind must be one of {SCHEDULES}, got {kind!r}")
        self.steps = steps
        self.kind = kind
        if kind == "linear":
            betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
            self.alpha_bar = torch.cumprod(1 - betas, 0).float()
        else:
            self.alpha_bar = _cosine_alpha_bar(steps).float()

    def _a(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alpha_bar.to(like.device)[t.to(like.device)].view(-1, 1, 1, 1)

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) epsilon``."""
        a = self._a(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
               prediction: str) -> torch.Tensor:
        """What the network is trained to output: ``epsilon`` or ``v``."""
        if prediction == "eps":
            return noise
        if prediction == "v":
            a = self._a(t, x0)
            return a.sqrt() * noise - (1 - a).sqrt() * x0
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")

    def split(self, x_t: torch.Tensor, t: torch.Tensor, out: torch.Tensor, prediction: str
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_0, epsilon)`` implied by the network output ``out`` at ``(x_t, t)``."""
        a = self._a(t, x_t)
        if prediction == "eps":
            return (x_t - (1 - a).sqrt() * out) / a.sqrt(), out
        if prediction == "v":
            return a.sqrt() * x_t - (1 - a).sqrt() * out, (1 - a).sqrt() * x_t + a.sqrt() * out
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0)
                      * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv residual block with an additive timestep embedding."""

    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class SmallUNet(nn.Module):
    """A three-level U-Net (32 -> 16 -> 8 pixels) predicting the noise.

    ``encode`` returns the skip features (one per level) and the middle features; ``decode``
    consumes them, optionally adding control residuals of the same shapes first.
    """

    def __init__(self, config: DiffusionConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiffusionConfig()
        c = self.config.base
        self.t_dim = 4 * c
        self.time_mlp = nn.Sequential(nn.Linear(c, self.t_dim), nn.SiLU(),
                                      nn.Linear(self.t_dim, self.t_dim))
        self.inp = nn.Conv2d(3, c, 3, padding=1)
        self.down1 = ResBlock(c, c, self.t_dim)
        self.pool1 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.down2 = ResBlock(c, 2 * c, self.t_dim)
        self.pool2 = nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)
        self.mid = ResBlock(2 * c, 2 * c, self.t_dim)
        self.up2 = ResBlock(4 * c, 2 * c, self.t_dim)
        self.up1 = ResBlock(3 * c, c, self.t_dim)
        self.out_norm = nn.GroupNorm(8, c)
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def skip_channels(self) -> list[int]:
        """Channels of the skip features and of the middle features, in ``encode`` order."""
        c = self.config.base
        return [c, 2 * c, 2 * c]

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """Timestep embedding passed through the MLP."""
        return self.time_mlp(timestep_embedding(t, self.config.base))

    def encode(self, x: torch.Tensor, temb: torch.Tensor,
               hint: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Skip features at 32 and 16 pixels and the middle features at 8 pixels.

        ``hint`` (features with ``base`` channels at full resolution) is added after the input
        convolution; the control branch uses it.
        """
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"expected (B, 3, H, W) with H, W divisible by 4, got "
                             f"{tuple(x.shape)}")
        h = self.inp(x)
        if hint is not None:
            h = h + hint
        s1 = self.down1(h, temb)
        s2 = self.down2(self.pool1(s1), temb)
        m = self.mid(self.pool2(s2), temb)
        return [s1, s2, m]

    def decode(self, feats: list[torch.Tensor], temb: torch.Tensor,
               residuals: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Predict the noise from encoder features plus optional control residuals."""
        if residuals is not None:
            feats = [f + r for f, r in zip(feats, residuals, strict=True)]
        s1, s2, m = feats
        h = F.interpolate(m, scale_factor=2, mode="nearest")
        h = self.up2(torch.cat([h, s2], 1), temb)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.up1(torch.cat([h, s1], 1), temb)
        return self.out(F.silu(self.out_norm(h)))

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                residuals: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``epsilon_theta(x_t, t)``."""
        temb = self.embed_time(t)
        return self.decode(self.encode(x, temb), temb, residuals)


@torch.no_grad()
def ddim_sample(model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                shape: tuple[int, ...], schedule: NoiseSchedule, steps: int = 25,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                prediction: str = "eps", eta: float = 0.0, clip: bool = True) -> torch.Tensor:
    """DDIM sampling from Gaussian noise; returns images in [-1, 1].

    ``model_fn(x_t, t)`` is the network (its output is ``epsilon`` or ``v``, per
    ``prediction``); ``noise`` fixes the start (paired comparisons). ``eta = 0`` is the
    deterministic sampler, ``eta = 1`` the DDPM-like one (its extra noise drawn from
    ``generator``). ``clip`` clamps each step's predicted clean image to [-1, 1] and recomputes
    the noise from it, so that the next step stays consistent with the clamped prediction.
    """
    if not 1 <= steps <= schedule.steps:
        raise ValueError(f"steps must lie in [1, {schedule.steps}], got {steps}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if noise is not None and tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise shape {tuple(noise.shape)} != shape {tuple(shape)}")
    x = torch.randn(shape, generator=generator) if noise is None else noise.clone()
    ts = torch.linspace(schedule.steps - 1, 0, steps).round().long()
    ab = schedule.alpha_bar.to(x.device)
    one = torch.ones((), device=x.device)
    for k, t in enumerate(ts):
        a_t = ab[t]
        a_prev = ab[ts[k + 1]] if k + 1 < len(ts) else one
        tb = t.expand(shape[0]).to(x.device)
        x0, eps = schedule.split(x, tb, model_fn(x, tb), prediction)
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp_min(0).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).clamp_min(0).sqrt() * eps
        if eta > 0 and k + 1 < len(ts):
            x = x + sigma * torch.randn(shape, generator=generator).to(x.device)
    return x.clamp(-1, 1)
