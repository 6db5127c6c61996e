"""Stage 2: diffusion schedule and sampler, zero-initialised control branch, conditions, metrics,
checkpoint/resume of the training loops."""

import numpy as np
import pytest
import torch

from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder
from equirelax.scg.completion import (
    CompletionTrainConfig,
    generate,
    load_base_diffusion,
    load_control,
    load_generator,
    save_generator,
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
from equirelax.scg.metrics import paired_bootstrap, psnr, ssim


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


def test_cosine_schedule_reaches_noise_and_linear_400_does_not():
    # issue 14: the linear schedule with 400 steps ends at alpha_bar ~ 0.018 (not pure noise)
    assert DiffusionConfig(steps=400).make_schedule().alpha_bar[-1] < 1e-4
    lin = DiffusionConfig(steps=400, schedule="linear").make_schedule().alpha_bar[-1]
    assert 0.01 < lin < 0.03
    with pytest.raises(ValueError, match="schedule must be"):
        DiffusionConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="prediction must be"):
        DiffusionConfig(prediction="x0")


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_target_and_split_are_inverse(prediction):
    sch = NoiseSchedule(50, kind="cosine")
    x0, eps = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 10, 30, 49])
    x_t = sch.add_noise(x0, t, eps)
    got_x0, got_eps = sch.split(x_t, t, sch.target(x0, t, eps, prediction), prediction)
    torch.testing.assert_close(got_eps, eps, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(got_x0[:3], x0[:3], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize(("prediction", "eta"), [("v", 0.0), ("eps", 0.0), ("v", 1.0)])
def test_ddim_with_oracle_recovers_the_image_cosine(prediction, eta):
    # With an oracle network DDIM returns x0 for any prediction type; with eta > 0 the extra
    # noise is re-absorbed because the oracle always points at the same x0.
    sch = NoiseSchedule(100, kind="cosine")
    x0 = torch.rand(2, 3, 8, 8) * 1.6 - 0.8
    xT = torch.randn(2, 3, 8, 8)

    def oracle(x, t):
        a = sch.alpha_bar[t].view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return sch.target(x0, t, eps, prediction)

    out = ddim_sample(oracle, tuple(xT.shape), sch, steps=10, noise=xT, prediction=prediction,
                      eta=eta, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(oracle, tuple(xT.shape), sch, steps=2, noise=xT, eta=-1)
    with pytest.raises(ValueError, match="noise shape"):
        ddim_sample(oracle, (1, 3, 8, 8), sch, steps=2, noise=xT)


def test_hint_standardisation():
    torch.manual_seed(0)
    base = SmallUNet(DiffusionConfig(base=8, steps=50))
    ctl = ControlledUNet(base)
    hints = 0.01 * torch.rand(6, 3, 16, 16) + 3.0  # small amplitude, large offset
    ctl.branch.fit_hint(hints)
    normed = (hints - ctl.branch.hint_mean) / ctl.branch.hint_std
    torch.testing.assert_close(normed.std((0, 2, 3)), torch.ones(3), atol=1e-4, rtol=1e-4)
    x, t = torch.randn(6, 3, 16, 16), torch.randint(50, (6,))
    torch.testing.assert_close(ctl(x, t, hints), base(x, t))  # still starts at the base
    # once the zero layers have moved, the output depends on the hint
    for z in [*ctl.branch.zero, ctl.branch.hint[-1]]:
        torch.nn.init.normal_(z.weight, std=0.1)
    assert not torch.allclose(ctl(x, t, hints), ctl(x, t, hints.flip(0)))
    with pytest.raises(ValueError, match="expected hints"):
        ctl.branch.fit_hint(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="expected a hint"):
        ctl(x, t, torch.rand(6, 1, 16, 16))


def test_control_history_records_the_base_loss(tmp_path):
    dc = DiffusionConfig(base=8, steps=20)
    cfg = CompletionTrainConfig(steps=2, batch=2, weights=(0, 1, 0))
    base, _ = train_base_diffusion(dc, cfg, progress=False)
    _, hist = train_control(base, canny_condition, cfg, progress=False)
    assert all("base_loss" in h and "smoothed_base_loss" in h for h in hist)


def test_old_diffusion_checkpoints_load_as_linear_eps(tmp_path):
    net = SmallUNet(DiffusionConfig(base=8, steps=20, schedule="linear", prediction="eps"))
    d = net.config.to_dict()
    del d["schedule"], d["prediction"]
    torch.save({"diffusion_config": d, "net": net.state_dict()}, tmp_path / "old.pt")
    cfg = load_base_diffusion(tmp_path / "old.pt").config
    assert (cfg.schedule, cfg.prediction) == ("linear", "eps")


def test_generator_file_round_trip(tmp_path):
    torch.manual_seed(0)
    base = SmallUNet(DiffusionConfig(base=8, steps=20))
    ae = ModularAutoencoder(AutoencoderConfig(modules=4, units=2))
    controls = {"bright": ControlledUNet(base), "canny": ControlledUNet(base)}
    for m in controls.values():
        torch.nn.init.normal_(m.branch.zero[0].weight)
    path = save_generator(tmp_path / "g.pt", base, controls, ae, {"bright": [0, 1]})
    loaded = load_generator(path)
    assert sorted(loaded.controls) == ["bright", "canny"]
    images, noise = torch.rand(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    for name in controls:
        hint, out = loaded.complete(images, name, noise, sample_steps=2)
        ref_hint = (ModuleGroupCondition(ae, [0, 1]) if name == "bright" else canny_condition)(
            images)
        torch.testing.assert_close(hint, ref_hint)
        torch.testing.assert_close(out, generate(controls[name], ref_hint, noise, 2))
        assert out.shape == images.shape
    with pytest.raises(KeyError, match="no control branch"):
        loaded.condition("colour")
    with pytest.raises(ValueError, match="no module group"):
        save_generator(tmp_path / "h.pt", base, {"x": ControlledUNet(base)}, ae, {})
    with pytest.raises(ValueError, match="need the autoencoder"):
        save_generator(tmp_path / "h.pt", base, {"x": ControlledUNet(base)}, None, {"x": [0]})
    torch.save({"net": {}}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="not a generator file"):
        load_generator(tmp_path / "ckpt.pt")
    with pytest.raises(FileNotFoundError, match="train-completion"):
        load_generator(tmp_path / "missing.pt")


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    b = rng.normal(size=200)
    mean, lo, hi = paired_bootstrap(b + 1.0 + 0.1 * rng.normal(size=200), b)
    assert lo < mean < hi and lo > 0.95 and hi < 1.05
    mean, lo, hi = paired_bootstrap(b, b)
    assert mean == lo == hi == 0
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap(b, b[:5])
