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

from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder
from equirelax.scg.conditions import Condition, ModuleGroupCondition, canny_condition
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
    """AdamW + one-cycle cosine schedule over ``cfg.steps`` with checkpoint/resume.

    ``loss_fn(images, generator, log)`` returns the loss and, when ``log`` is true (every 25
    steps), a dict of extra per-batch values to record beside it (smoothed like the loss).
    """
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
    running: dict[str, float] = {}
    for step in bar:
        images = sampler.sample(cfg.batch)
        log = step % 25 == 0 or step == cfg.steps - 1
        loss, extras = loss_fn(images, gen, log)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if log:
            values = {"loss": float(loss.detach()), **extras}
            for k, v in values.items():
                running[k] = v if k not in running else 0.8 * running[k] + 0.2 * v
            history.append({"step": step, **values,
                            **{f"smoothed_{k}" if k != "loss" else "smoothed": v
                               for k, v in running.items()}})
            bar.set_postfix({k: f"{v:.4f}" for k, v in running.items()})
        if checkpoint is not None and ((step + 1) % cfg.checkpoint_every == 0
                                       or step + 1 == cfg.steps):
            _save_state(Path(checkpoint), {
                "step": step + 1, "net": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "history": history, "config": asdict(cfg),
                **extra_state})
    return history


def _noised(images: torch.Tensor, schedule: NoiseSchedule, gen: torch.Generator,
            prediction: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, t, target)`` for a batch of [0, 1] images: uniform ``t``, Gaussian noise."""
    x0 = images * 2 - 1
    t = torch.randint(schedule.steps, (x0.shape[0],), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    return schedule.add_noise(x0, t, noise), t, schedule.target(x0, t, noise, prediction)


def train_base_diffusion(config: DiffusionConfig, cfg: CompletionTrainConfig,
                         checkpoint: Path | None = None, progress: bool = True
                         ) -> tuple[SmallUNet, list[dict[str, float]]]:
    """Pre-train the unconditional U-Net on random crops (DDPM epsilon loss)."""
    torch.manual_seed(cfg.seed)
    net = SmallUNet(config)
    schedule = config.make_schedule()

    def loss_fn(images: torch.Tensor, gen: torch.Generator, log: bool
                ) -> tuple[torch.Tensor, dict[str, float]]:
        x_t, t, target = _noised(images, schedule, gen, config.prediction)
        return ((net(x_t, t) - target) ** 2).mean(), {}

    history = _train_loop(net, list(net.parameters()), loss_fn, cfg, checkpoint,
                          "scg diffusion", {"diffusion_config": config.to_dict()}, progress)
    return net.eval(), history


def diffusion_config_from_dict(d: dict) -> DiffusionConfig:
    """A :class:`DiffusionConfig` from its stored dict; dicts written before the schedule and
    prediction became options (issue 14) describe the linear-beta, epsilon-predicting model."""
    d = {"schedule": "linear", "prediction": "eps", **d}
    return DiffusionConfig(**d)


def load_base_diffusion(path: Path) -> SmallUNet:
    """Load a base U-Net written by :func:`train_base_diffusion`."""
    state = _load_state(path)
    if state is None:
        raise FileNotFoundError(f"no diffusion checkpoint at {path}")
    net = SmallUNet(diffusion_config_from_dict(state["diffusion_config"]))
    net.load_state_dict(state["net"])
    return net.eval()


def train_control(base: SmallUNet, condition: Condition, cfg: CompletionTrainConfig,
                  checkpoint: Path | None = None, progress: bool = True, name: str = ""
                  ) -> tuple[ControlledUNet, list[dict[str, float]]]:
    """Train a control branch on ``condition(images)`` to regenerate the images themselves.

    The history records, beside the branch's loss, the frozen base model's loss on the same
    noised batch (``base_loss``, no condition): the gap is what the condition buys.
    """
    torch.manual_seed(cfg.seed)
    model = ControlledUNet(base)
    c = base.config
    schedule = c.make_schedule()
    # hint standardisation from a fixed batch (identical on resume; also stored in checkpoints)
    model.branch.fit_hint(condition(CropSampler(size=32, weights=cfg.weights,
                                                seed=cfg.seed + 7919).sample(64)))

    def loss_fn(images: torch.Tensor, gen: torch.Generator, log: bool
                ) -> tuple[torch.Tensor, dict[str, float]]:
        hint = condition(images)
        x_t, t, target = _noised(images, schedule, gen, c.prediction)
        loss = ((model(x_t, t, hint) - target) ** 2).mean()
        extras = {}
        if log:
            with torch.no_grad():
                extras["base_loss"] = float(((model.base(x_t, t) - target) ** 2).mean())
        return loss, extras

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
    out = ddim_sample(lambda x, t: model(x, t, hint), tuple(noise.shape), c.make_schedule(),
                      steps=sample_steps, noise=noise, prediction=c.prediction)
    return (out + 1) / 2


@torch.no_grad()
def generate_unconditional(base: SmallUNet, noise: torch.Tensor, sample_steps: int = 25
                           ) -> torch.Tensor:
    """DDIM generation by the frozen base model alone from fixed ``noise``; images in [0, 1]."""
    c = base.config
    out = ddim_sample(base, tuple(noise.shape), c.make_schedule(), steps=sample_steps,
                      noise=noise, prediction=c.prediction)
    return (out + 1) / 2


def similarity(generated: torch.Tensor, source: torch.Tensor) -> dict[str, float]:
    """Mean PSNR / SSIM of generations against sources, grey and colour."""
    return {
        "psnr_grey": float(np.mean(psnr(generated, source, grey=True))),
        "psnr_colour": float(np.mean(psnr(generated, source))),
        "ssim_grey": float(np.mean(ssim(generated, source, grey=True))),
        "ssim_colour": float(np.mean(ssim(generated, source))),
    }


# --------------------------------------------------------------------------- self-contained file

GENERATOR_FORMAT = "equirelax-scg-generator/1"


@dataclass
class CompletionGenerator:
    """Everything ``equirelax scg generate`` needs, loaded from one file: the frozen base
    U-Net, one control branch per condition, and the stage-1 autoencoder with its module groups
    (``None`` / empty if only the Canny branch was saved)."""

    base: SmallUNet
    controls: dict[str, ControlledUNet]
    autoencoder: ModularAutoencoder | None
    groups: dict[str, list[int]]

    def condition(self, name: str) -> Condition:
        """The condition extractor of branch ``name`` (a module group's decode, or Canny)."""
        if name not in self.controls:
            raise KeyError(f"no control branch {name!r}; this file has {sorted(self.controls)}")
        if name == "canny":
            return canny_condition
        if self.autoencoder is None or name not in self.groups:
            raise KeyError(f"branch {name!r} needs module group {name!r} and the autoencoder, "
                           "which this file lacks")
        return ModuleGroupCondition(self.autoencoder, self.groups[name])

    @torch.no_grad()
    def complete(self, images: torch.Tensor, name: str, noise: torch.Tensor,
                 sample_steps: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
        """``(condition, generation)`` for [0, 1] images ``(B, 3, 32, 32)``.

        The condition is extracted on the CPU (Canny runs in scikit-image), then moved to the
        device of the generator's weights, as is ``noise``.
        """
        device = next(self.base.parameters()).device
        hint = self.condition(name)(images.cpu())
        out = generate(self.controls[name], hint.to(device), noise.to(device), sample_steps)
        return hint, out.cpu()

    def to(self, device: str | torch.device) -> CompletionGenerator:
        """Move the diffusion model and the branches to ``device`` (the autoencoder stays on
        the CPU, next to the condition extraction)."""
        self.base.to(device)
        for model in self.controls.values():
            model.to(device)
        return self


def save_generator(path: Path, base: SmallUNet, controls: dict[str, ControlledUNet],
                   autoencoder: ModularAutoencoder | None = None,
                   groups: dict[str, list[int]] | None = None) -> Path:
    """Write one self-contained file (configs + weights, no optimiser state) for generation."""
    groups = dict(groups or {})
    missing = [n for n in controls if n != "canny" and n not in groups]
    if missing:
        raise ValueError(f"branches {missing} have no module group; pass groups for them")
    if any(n != "canny" for n in controls) and autoencoder is None:
        raise ValueError("module-group branches need the autoencoder that extracts them")
    state = {
        "format": GENERATOR_FORMAT,
        "diffusion_config": base.config.to_dict(),
        "base": base.state_dict(),
        "controls": {n: m.branch.state_dict() for n, m in controls.items()},
        "autoencoder": None if autoencoder is None else {
            "config": autoencoder.config.to_dict(), "state": autoencoder.state_dict()},
        "groups": {k: [int(i) for i in v] for k, v in groups.items()},
    }
    _save_state(Path(path), state)
    return Path(path)


def load_generator(path: Path, device: str | torch.device = "cpu") -> CompletionGenerator:
    """Load a file written by :func:`save_generator` onto ``device``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no generator file at {path}; `equirelax scg train-completion` "
                                "writes one (scg_generator.pt in its runs folder)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != GENERATOR_FORMAT:
        raise ValueError(f"{path} is not a generator file ({GENERATOR_FORMAT}); a training "
                         "checkpoint is not enough: use scg_generator.pt from train-completion")
    base = SmallUNet(diffusion_config_from_dict(state["diffusion_config"]))
    base.load_state_dict(state["base"])
    base.eval()
    controls = {}
    for name, branch_state in state["controls"].items():
        model = ControlledUNet(base)
        model.branch.load_state_dict(branch_state)
        controls[name] = model.eval()
    autoencoder = None
    if state["autoencoder"] is not None:
        autoencoder = ModularAutoencoder(AutoencoderConfig(**state["autoencoder"]["config"]))
        autoencoder.load_state_dict(state["autoencoder"]["state"])
        autoencoder.eval()
    return CompletionGenerator(base, controls, autoencoder, state["groups"]).to(device)
