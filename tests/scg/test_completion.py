"""Stage 2: diffusion schedule and sampler, zero-initialised control branch, conditions, metrics,
checkpoint/resume of the training loops."""

import pytest
import torch

from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder
from equirelax.scg.completion import (
    CompletionTrainConfig,
    load_base_diffusion,
    load_control,
    train_base_diffusion,
    train_control,
)
from equirelax.scg.conditions import (
    ModuleGroupCondition,
    blur_downsample,
    canny_condition,
    haze,
    line_drawing,
)
from equirelax.scg.control import ControlledUNet
from equirelax.scg.diffusion import DiffusionConfig, NoiseSchedule, SmallUNet, ddim_sample
from equirelax.scg.metrics import psnr, ssim


def test_schedule_and_ddim_shapes():
    sch = NoiseSchedule(50)
    assert sch.alpha_bar[0] > 0.99 and sch.alpha_bar[-1] < sch.alpha_bar[0]
    net = SmallUNet(DiffusionConfig(base=8, steps=50))
    x = ddim_sample(net, (2, 3, 16, 16), sch, steps=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 16, 16) and x.abs().max() <= 1
    with pytest.raises(ValueError, match="steps must lie"):
        ddim_sample(net, (1, 3, 16, 16), sch, steps=51)


def test_ddim_with_oracle_noise_recovers_the_image():
    # If eps_fn returns the true noise of x_T = sqrt(a) x0 + sqrt(1-a) eps, DDIM returns x0.
    sch = NoiseSchedule(100)
    x0 = torch.rand(2, 3, 8, 8) * 1.6 - 0.8
    eps = torch.randn(2, 3, 8, 8)
    a = sch.alpha_bar[-1]
    xT = a.sqrt() * x0 + (1 - a).sqrt() * eps

    def oracle(x, t):
        at = sch.alpha_bar[t[0]]
        return (x - at.sqrt() * x0) / (1 - at).sqrt()

    out = ddim_sample(oracle, tuple(xT.shape), sch, steps=10, noise=xT)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


def test_control_branch_starts_as_the_frozen_model_and_only_branch_trains():
    torch.manual_seed(0)
    base = SmallUNet(DiffusionConfig(base=8, steps=50))
    ctl = ControlledUNet(base)
    x, t, hint = torch.randn(2, 3, 16, 16), torch.tensor([3, 40]), torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(ctl(x, t, hint), base(x, t))
    assert all(not p.requires_grad for p in base.parameters())
    ((ctl(x, t, hint) - 1) ** 2).mean().backward()
    assert all(p.grad is None for p in base.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ctl.trainable_parameters())
    # the branch's encoder is a trainable copy of the frozen encoder
    n_encoder = sum(p.numel() for p in ctl.branch.encoder.parameters())
    assert n_encoder > 0 and all(p.requires_grad for p in ctl.branch.encoder.parameters())
    assert sum(p.numel() for p in ctl.trainable_parameters()) > n_encoder
    with pytest.raises(ValueError, match="hint size"):
        ctl(x, t, torch.rand(2, 3, 8, 8))


def test_conditions_shapes_and_ranges():
    images = torch.rand(3, 3, 32, 32)
    ae = ModularAutoencoder(AutoencoderConfig(modules=4, units=2))
    cond = ModuleGroupCondition(ae, [1, 2])
    assert cond(images).shape == images.shape
    edges = canny_condition(images)
    assert edges.shape == images.shape and set(edges.unique().tolist()) <= {0.0, 1.0}
    assert line_drawing(images).min() >= 0
    assert blur_downsample(images, 4).shape == images.shape
    torch.testing.assert_close(haze(torch.zeros(1, 3, 4, 4), 0.5, 0.8),
                               torch.full((1, 3, 4, 4), 0.4))
    with pytest.raises(ValueError, match="at least one module"):
        ModuleGroupCondition(ae, [])


def test_metrics():
    a = torch.rand(2, 3, 16, 16)
    assert (psnr(a, a) > 100).all()
    assert ssim(a, a) == pytest.approx([1.0, 1.0])
    b = (a + 0.1).clamp(0, 1)
    assert (psnr(b, a) < 30).all() and (ssim(b, a, grey=True) < 1).all()
    with pytest.raises(ValueError, match="equal shape"):
        psnr(a, a[:1])


def test_training_loops_checkpoint_and_resume(tmp_path):
    dc = DiffusionConfig(base=8, steps=20)
    cfg = CompletionTrainConfig(steps=2, batch=2, weights=(0, 1, 0), checkpoint_every=1)
    base, hist = train_base_diffusion(dc, cfg, checkpoint=tmp_path / "base.pt", progress=False)
    assert [h["step"] for h in hist] == [0, 1]
    # resuming a finished run trains nothing more and returns the same weights
    again, hist2 = train_base_diffusion(dc, cfg, checkpoint=tmp_path / "base.pt",
                                        progress=False)
    assert len(hist2) == 2
    torch.testing.assert_close(again.out.weight, base.out.weight)
    loaded = load_base_diffusion(tmp_path / "base.pt")
    torch.testing.assert_close(loaded.out.weight, base.out.weight)
    ctl, _ = train_control(loaded, canny_condition, cfg, checkpoint=tmp_path / "c.pt",
                           progress=False)
    ctl2 = load_control(loaded, tmp_path / "c.pt")
    torch.testing.assert_close(ctl2.branch.zero[0].weight, ctl.branch.zero[0].weight)
