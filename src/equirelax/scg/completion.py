"""Pattern completion: pre-train the diffusion model, train control branches, evaluate them.

Self-supervised as in the paper: the control branch sees only a condition extracted from an
image (one module group's decode, or Canny edges for the baseline) and is trained to regenerate
that same image, ``L_MC = ||epsilon - epsilon_theta(x_t, t, c)||^2``. No labels, no captions (there
is no text model offline). Training loops show a progress bar, checkpoint every
``checkpoint_every`` steps and resume from the checkpoint file.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from equirelax.scg.conditions import Condition
from equirelax.scg.control import ControlledUNet
from equirelax.scg.datasets import CropSampler
from equirelax.scg.diffusion import DiffusionConfig, NoiseSchedule, SmallUNet, ddim_sample
from equirelax.scg.metrics import psnr, ssim


@dataclass(frozen=True)
class CompletionTrainConfig:
    """Optimisation settings shared by the base model and the control branches."""

    steps: int = 2000
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0
    weights: tuple[float, float, float] = (0.7, 0.3, 0.0)
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise ValueError(f"need steps, batch >= 1, got {self.steps}, {self.batch}")


def _load_state(path: Path | None) -> dict | None:
    if path is not None and Path(path).exists():
        return torch.load(path, map_location="cpu", weights_only=False)
    return None


def _save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _train_loop(net: torch.nn.Module, params: list[torch.nn.Parameter], loss_fn,
                cfg: CompletionTrainConfig, checkpoint: Path | None, desc: str,
                extra_state: dict, progress: bool) -> list[dict[str, float]]:
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps + 1,
                                                pct_start=0.05, anneal_strategy="cos",
                                                cycle_momentum=False)
    history: list[dict[str, float]] = []
    start = 0
    state = _load_state(checkpoint)
    if state is not None:
        net.load_state_dict(state["net"])
        history = list(state["history"])
        start = int(state["step"])
        if start < cfg.steps:
            opt.load_state_dict(state["optimizer"])
            if state["config"]["steps"] == cfg.steps:
                sched.load_state_dict(state["scheduler"])
            else:  # extended run: replay the new schedule up to ``start``
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    for _ in range(start):
                        sched.step()
    sampler = CropSampler(size=32, weights=cfg.weights, seed=cfg.seed + start)
    gen = torch.Generator().manual_seed(cfg.seed * 104729 + start)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc,
               disable=not progress)
    running = None
    for step in bar:
        images = sampler.sample(cfg.batch)
        loss = loss_fn(images, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % 25 == 0 or step == cfg.steps - 1:
            history.append({"step": step, "loss": value, "smoothed": running})
            bar.set_postfix(loss=f"{running:.4f}")
        if checkpoint is not None and ((step + 1) % cfg.checkpoint_every == 0
                                       or step + 1 == cfg.steps):
            _save_state(Path(checkpoint), {
                "step": step + 1, "net": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "history": history, "config": asdict(cfg),
                **extra_state})
    return history


def _noised(images: torch.Tensor, schedule: NoiseSchedule, gen: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x0 = images * 2 - 1
    t = torch.randint(schedule.steps, (x0.shape[0],), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    return schedule.add_noise(x0, t, noise), t, noise


def train_base_diffusion(config: DiffusionConfig, cfg: CompletionTrainConfig,
                         checkpoint: Path | None = None, progress: bool = True
                         ) -> tuple[SmallUNet, list[dict[str, float]]]:
    """Pre-train the unconditional U-Net on random crops (DDPM epsilon loss)."""
    torch.manual_seed(cfg.seed)
    net = SmallUNet(config)
    schedule = NoiseSchedule(config.steps, config.beta_start, config.beta_end)

    def loss_fn(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x_t, t, noise = _noised(images, schedule, gen)
        return ((net(x_t, t) - noise) ** 2).mean()

    history = _train_loop(net, list(net.parameters()), loss_fn, cfg, checkpoint,
                          "scg diffusion", {"diffusion_config": config.to_dict()}, progress)
    return net.eval(), history


def load_base_diffusion(path: Path) -> SmallUNet:
    """Load a base U-Net written by :func:`train_base_diffusion`."""
    state = _load_state(path)
    if state is None:
        raise FileNotFoundError(f"no diffusion checkpoint at {path}")
    net = SmallUNet(DiffusionConfig(**state["diffusion_config"]))
    net.load_state_dict(state["net"])
    return net.eval()


def train_control(base: SmallUNet, condition: Condition, cfg: CompletionTrainConfig,
                  checkpoint: Path | None = None, progress: bool = True, name: str = ""
                  ) -> tuple[ControlledUNet, list[dict[str, float]]]:
    """Train a control branch on ``condition(images)`` to regenerate the images themselves."""
    torch.manual_seed(cfg.seed)
    model = ControlledUNet(base)
    c = base.config
    schedule = NoiseSchedule(c.steps, c.beta_start, c.beta_end)

    def loss_fn(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        hint = condition(images)
        x_t, t, noise = _noised(images, schedule, gen)
        return ((model(x_t, t, hint) - noise) ** 2).mean()

    history = _train_loop(model.branch, model.trainable_parameters(), loss_fn, cfg, checkpoint,
                          f"scg control {name}".strip(), {}, progress)
    return model.eval(), history


def load_control(base: SmallUNet, path: Path) -> ControlledUNet:
    """Load a control branch written by :func:`train_control` onto ``base``."""
    state = _load_state(path)
    if state is None:
        raise FileNotFoundError(f"no control checkpoint at {path}")
    model = ControlledUNet(base)
    model.branch.load_state_dict(state["net"])
    return model.eval()


@torch.no_grad()
def generate(model: ControlledUNet, hint: torch.Tensor, noise: torch.Tensor,
             sample_steps: int = 25) -> torch.Tensor:
    """DDIM generation steered by ``hint`` from fixed ``noise``; images in [0, 1]."""
    c = model.base.config
    schedule = NoiseSchedule(c.steps, c.beta_start, c.beta_end)
    out = ddim_sample(lambda x, t: model(x, t, hint), tuple(noise.shape), schedule,
                      steps=sample_steps, noise=noise)
    return (out + 1) / 2


def similarity(generated: torch.Tensor, source: torch.Tensor) -> dict[str, float]:
    """Mean PSNR / SSIM of generations against sources, grey and colour."""
    return {
        "psnr_grey": float(np.mean(psnr(generated, source, grey=True))),
        "psnr_colour": float(np.mean(psnr(generated, source))),
        "ssim_grey": float(np.mean(ssim(generated, source, grey=True))),
        "ssim_colour": float(np.mean(ssim(generated, source))),
    }
