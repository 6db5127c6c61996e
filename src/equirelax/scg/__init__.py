"""SCG: a modular autoencoder trained with an equivariance constraint, and pattern completion.

A CPU-scale re-implementation of Chen et al., *Learning from Pattern Completion: Self-supervised
Controllable Generation* (NeurIPS 2024). Stage 1 (:mod:`autoencoder`, :mod:`codebook`,
:mod:`losses`, :mod:`training`, :mod:`probes`) learns functionally specialised modules; stage 2
(:mod:`diffusion`, :mod:`control`) regenerates images from the decoded output of one group of
modules. See ``docs/scg.md``.
"""

from equirelax.scg.autoencoder import AutoencoderConfig, ModularAutoencoder
from equirelax.scg.codebook import PredictionCodebook
from equirelax.scg.datasets import CropSampler
from equirelax.scg.losses import EquivarianceObjective, ObjectiveConfig
from equirelax.scg.probes import probe_autoencoder
from equirelax.scg.training import TrainConfig, load_autoencoder, train_autoencoder

__all__ = [
    "AutoencoderConfig",
    "CropSampler",
    "EquivarianceObjective",
    "ModularAutoencoder",
    "ObjectiveConfig",
    "PredictionCodebook",
    "TrainConfig",
    "load_autoencoder",
    "probe_autoencoder",
    "train_autoencoder",
]
