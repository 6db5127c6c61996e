"""The objective is zero where it must be: equivariant toy encoders, permutation codebooks."""

import math

import pytest
import torch

from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder
from equirelax.scg.codebook import PredictionCodebook
from equirelax.scg.losses import (
    EquivarianceObjective,
    ObjectiveConfig,
    grouped_spectral_conv,
    image_symmetry_loss,
    symmetry_loss,
)
from equirelax.scg.transforms import RigidTransform


def _cyclic(k: int, n: int = 4) -> torch.Tensor:
    """Matrix with M[u, (u + k) mod n] = 1."""
    return torch.roll(torch.eye(n), shifts=k, dims=1)


def _rotating_toy() -> tuple[ModularAutoencoder, EquivarianceObjective]:
    """One module of 4 units = the 4 quarter-turns of one asymmetric 3x3 kernel, stride 1."""
    torch.manual_seed(0)
    model = ModularAutoencoder(AutoencoderConfig(modules=1, units=4, kernel="free",
                                                 kernel_size=3, stride=1))
    base = torch.randn(3, 3, 3)
    with torch.no_grad():
        for u in range(4):
            # unit u = base kernel turned by u quarter turns (same sense as warp_images)
            model.kernel.weight[u] = torch.rot90(base, k=u, dims=(-1, -2))
    cfg = ObjectiveConfig(n_t=3, n_r=4, init_noise=0.0, translation_branch=True)
    obj = EquivarianceObjective(model, cfg)
    with torch.no_grad():
        for k in range(4):
            obj.rotation_codebook.table[k] = _cyclic(k).expand(3, 3, 1, 4, 4)
    return model, obj


def _framed_images(model: ModularAutoencoder, n: int = 2, size: int = 16) -> torch.Tensor:
    """Random content in the centre, the normalisation mean colour around it: in normalised
    units the frame is zero, like the zero padding of convolutions and warps, so equivariance
    holds exactly also next to the image border."""
    images = model.mean.expand(n, 3, size, size).clone()
    images[..., 4:-4, 4:-4] = torch.rand(n, 3, size - 8, size - 8)
    return images


@pytest.mark.parametrize("quarter", [0, 1, 2, 3])
def test_equivariance_loss_vanishes_for_an_equivariant_encoder(quarter):
    model, obj = _rotating_toy()
    images = _framed_images(model)
    rot = RigidTransform(torch.full((2,), quarter * math.pi / 2),
                         torch.tensor([2 / 16, -4 / 16]), torch.tensor([0.0, 2 / 16]))
    trans = RigidTransform(torch.zeros(2), torch.tensor([-2 / 16, 6 / 16]),
                           torch.tensor([4 / 16, 0.0]))
    terms = obj(model, images, transforms={"rot": rot, "trans": trans})
    assert terms["equ"].item() < 1e-10


def test_equivariance_loss_detects_a_wrong_codebook():
    model, obj = _rotating_toy()
    with torch.no_grad():
        obj.rotation_codebook.table[1] = _cyclic(3).expand(3, 3, 1, 4, 4)
    images = _framed_images(model)
    rot = RigidTransform(torch.full((2,), math.pi / 2), torch.zeros(2), torch.zeros(2))
    terms = obj(model, images, transforms={"rot": rot, "trans": RigidTransform(
        torch.zeros(2), torch.zeros(2), torch.zeros(2))})
    assert terms["equ"].item() > 1e-3


def test_symmetry_loss_vanishes_for_permutation_codebook_and_not_for_identity():
    cb = PredictionCodebook(modules=2, units=4, n_t=3, n_r=4, init_noise=0.0)
    assert symmetry_loss(cb).item() > 0.5  # units unrelated: e_m != e_n
    with torch.no_grad():
        for k in range(4):
            cb.table[k] = _cyclic(k).expand(3, 3, 2, 4, 4)
    assert symmetry_loss(cb).item() < 1e-6


def test_all_terms_finite_and_backward_reaches_kernels_and_codebooks():
    model = ModularAutoencoder(AutoencoderConfig(modules=4, units=2))
    obj = EquivarianceObjective(model, ObjectiveConfig(n_t=3, n_r=4))
    terms = obj(model, torch.rand(2, 3, 24, 24), generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"recon", "recon_transformed", "recon_prediction", "equ", "sym", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    assert model.kernel.c2.grad.abs().sum() > 0
    assert obj.rotation_codebook.table.grad.abs().sum() > 0
    assert obj.translation_codebook.table.grad.abs().sum() > 0


def test_ablation_switches():
    model = ModularAutoencoder(AutoencoderConfig(modules=4, units=2))
    no_rot = EquivarianceObjective(model, ObjectiveConfig(rotation_branch=False))
    assert [n for n, _ in no_rot.branches()] == ["trans"]
    no_equ = EquivarianceObjective(model, ObjectiveConfig(equ=0.0, recon_prediction=0.0, sym=0.0))
    terms = no_equ(model, torch.rand(2, 3, 24, 24))
    assert terms["equ"].item() == 0 and terms["sym"].item() == 0
    with pytest.raises(ValueError, match="rot_num"):
        EquivarianceObjective(model, ObjectiveConfig(rot_num=3))


def test_spectral_and_direct_objectives_agree_in_value_and_gradient():
    torch.manual_seed(0)
    model = ModularAutoencoder(AutoencoderConfig(modules=4, units=2)).double()
    images = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    out = []
    for spectral in (True, False):
        torch.manual_seed(1)  # same codebook initialisation for both
        obj = EquivarianceObjective(model, ObjectiveConfig(n_t=3, n_r=4),
                                    spectral=spectral).double()
        terms = obj(model, images, generator=torch.Generator().manual_seed(0))
        model.zero_grad()
        terms["total"].backward()
        out.append(({k: v.item() for k, v in terms.items()}, model.kernel.c2.grad.clone()))
    for key in out[0][0]:
        assert out[0][0][key] == pytest.approx(out[1][0][key], rel=1e-9, abs=1e-12)
    torch.testing.assert_close(out[0][1], out[1][1])


def test_image_space_symmetry_loss_vanishes_for_rotated_copies():
    model, obj = _rotating_toy()
    images = _framed_images(model)
    x = model.normalise(images)
    f = model.encode_normalised(x)
    cb = obj.rotation_codebook
    for unit in range(4):
        loss = image_symmetry_loss(cb, model.weight(), x, f, 1, unit)
        assert loss.item() < 1e-8
    # an identity codebook claims every unit is an untransformed copy of every other: wrong
    with torch.no_grad():
        cb.table.copy_(torch.eye(4).expand_as(cb.table))
    assert image_symmetry_loss(cb, model.weight(), x, f, 1, 0).item() > 1e-3


def test_image_space_symmetry_option_trains_kernels_and_codebooks():
    model = ModularAutoencoder(AutoencoderConfig(modules=4, units=2))
    obj = EquivarianceObjective(model, ObjectiveConfig(n_t=3, n_r=4, sym_form="image",
                                                       sym_images=2, equ=0.0,
                                                       recon_prediction=0.0))
    terms = obj(model, torch.rand(3, 3, 24, 24), generator=torch.Generator().manual_seed(0))
    assert terms["sym"].item() > 0
    terms["sym"].backward()
    assert model.kernel.c2.grad.abs().sum() > 0
    assert obj.rotation_codebook.table.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="sym_form"):
        ObjectiveConfig(sym_form="kernel")
    with pytest.raises(ValueError, match="codebook_init"):
        ObjectiveConfig(codebook_init="zeros")


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_grouped_spectral_conv_equals_grouped_conv2d(stride):
    g = torch.Generator().manual_seed(stride)
    images = torch.randn(2, 4, 3, 17, 17, generator=g, dtype=torch.float64)
    kernels = torch.randn(4, 3, 7, 7, generator=g, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(images.reshape(2, 12, 17, 17), kernels, stride=stride,
                                     padding=3, groups=4)
    torch.testing.assert_close(grouped_spectral_conv(images, kernels, stride), ref)
    with pytest.raises(ValueError, match="do not match"):
        grouped_spectral_conv(images, kernels[:3], stride)
