"""The autoencoder training loop: checkpoints, resume, round trip, PCA baseline."""

import pytest
import torch

from equirelax.scg.autoencoder import AutoencoderConfig
from equirelax.scg.datasets import CropSampler
from equirelax.scg.losses import ObjectiveConfig
from equirelax.scg.pca import pca_autoencoder
from equirelax.scg.training import TrainConfig, load_autoencoder, train_autoencoder

SMALL = AutoencoderConfig(modules=2, units=2, kernel="free", kernel_size=5)
OBJ = ObjectiveConfig(n_t=3, n_r=4)


def test_train_checkpoint_resume_and_load(tmp_path):
    ckpt = tmp_path / "ae.pt"
    short = TrainConfig(steps=4, batch=2, crop=16, weights=(0, 1, 0), checkpoint_every=2)
    first = train_autoencoder(SMALL, OBJ, short, checkpoint=ckpt, progress=False, log_every=1)
    assert [h["step"] for h in first.history] == [0, 1, 2, 3]
    longer = TrainConfig(steps=6, batch=2, crop=16, weights=(0, 1, 0), checkpoint_every=2)
    resumed = train_autoencoder(SMALL, OBJ, longer, checkpoint=ckpt, progress=False, log_every=1)
    assert [h["step"] for h in resumed.history] == [0, 1, 2, 3, 4, 5]
    loaded = load_autoencoder(ckpt)
    torch.testing.assert_close(loaded.model.weight(), resumed.model.weight())
    with pytest.raises(ValueError, match="different configuration"):
        train_autoencoder(SMALL, ObjectiveConfig(n_t=3, n_r=4, sym=0.5), longer, checkpoint=ckpt,
                          progress=False)


def test_pca_baseline_kernels_are_orthogonal_and_ordered():
    sampler = CropSampler(size=16, weights=(0, 1, 0), seed=0, n_leaf_images=4)
    model = pca_autoencoder(sampler, modules=2, units=2, kernel_size=5, n_images=64)
    w = model.weight().flatten(1).double()
    gram = w @ w.T
    off = gram - torch.diag(torch.diag(gram))
    assert off.abs().max() < 1e-4 * gram.diag().max()
    torch.testing.assert_close(gram.diag(), gram.diag()[0].expand(4))  # one common scale
