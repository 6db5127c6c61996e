"""Settings of the SCG study: the autoencoder variants (the model and its ablations), the
presets, the file names the stages hand on to each other, and what every subcommand reads
from its parsed command (the preset, its folders, the smoke-test note, checkpoint names per
seed, the held-out crops)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE
from equirelax.experiments.kit.options import chosen_preset
from equirelax.scg.datasets import CropSampler

NO_EQU = {"equ": 0.0, "recon_prediction": 0.0, "sym": 0.0}
# variant -> (autoencoder overrides, objective overrides). The composite kernel shares its two
# input pathways among the units of a module, which by itself ties units together; the free-kernel
# pair separates what the architecture does from what the equivariance constraint does.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "full": ({}, {}),
    "no_equ": ({}, NO_EQU),
    "no_sym": ({}, {"sym": 0.0}),
    "no_rot": ({}, {"rotation_branch": False}),
    "free": ({"kernel": "free"}, {}),
    "free_no_equ": ({"kernel": "free"}, NO_EQU),
    # opt-in variants (not trained unless named in --variants):
    # the paper's orientation setup: one-unit translation modules, 8 per rotation hypercolumn
    # (rot_num = 8, as the published nv128/vl1/rn8 checkpoint; 64 channels here like the others)
    "rot8": ({"modules": 64, "units": 1}, {"rot_num": 8}),
    # the published code's image-space symmetry loss instead of the paper's codebook form
    "sym_image": ({}, {"sym_form": "image"}),
    # the published code's pure-noise codebook start instead of identity + noise
    "random_codebook": ({}, {"codebook_init": "random"}),
}
DEFAULT_VARIANTS = ("full", "no_equ", "no_sym", "no_rot", "free", "free_no_equ")
# channels per probed module where it differs from the model's units: rot8 is probed per
# hypercolumn of 8 one-unit modules
PROBE_GROUP = {"rot8": 8}
# scores of the multi-seed ablation table (summary keys of ProbeReport, plus recon_mse)
ABLATION_COLUMNS = ("recon_mse", "corr_ratio", "corr_ratio_w", "eta2_chroma_w",
                    "eta2_log_freq_w", "eta2_lowpass_w", "osi_w", "coverage_w", "n_active",
                    "eff_modules")


@dataclass(frozen=True)
class Preset:
    """Sizes of one preset."""

    ae_steps: int
    ae_crop: int
    probe_images: int
    diff_base: int
    diff_steps: int
    control_steps: int
    diff_batch: int
    eval_images: int
    sample_steps: int
    noise_levels: tuple[float, ...]
    diff_lr: float = 2e-3
    control_lr: float = 1e-3
    eval_seeds: int = 2
    posterior_samples: int = 8


#: The preset a command runs without ``--preset``/``--quick``.
DEFAULT_PRESET = "full"
PRESETS = {
    "quick": Preset(ae_steps=400, ae_crop=32, probe_images=64, diff_base=16, diff_steps=1500,
                    control_steps=600, diff_batch=16, eval_images=16, sample_steps=10,
                    noise_levels=(0.0, 0.1, 0.2, 0.4), posterior_samples=4),
    "full": Preset(ae_steps=3000, ae_crop=40, probe_images=256, diff_base=32, diff_steps=3000,
                   control_steps=800, diff_batch=32, eval_images=64, sample_steps=20,
                   noise_levels=(0.0, 0.1, 0.2, 0.4)),
}

#: The self-contained generator file (configs and weights) that ``train-completion`` writes
#: into the checkpoint folder and ``generate`` reads.
GENERATOR_FILE = "scg_generator.pt"


def preset_name(args: argparse.Namespace) -> str:
    """The preset a command runs (``--preset``/``--quick``, else the default)."""
    return chosen_preset(args, DEFAULT_PRESET)


def dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The results and checkpoint folders of a run (``main`` resolved their defaults),
    created."""
    args.out.mkdir(parents=True, exist_ok=True)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    return args.out, args.runs_dir


def smoke(args: argparse.Namespace) -> str:
    """The smoke-test paragraph that heads the tables of a ``--quick`` run (else nothing)."""
    return f"**{SMOKE_TEST_NOTE}**\n\n" if preset_name(args) == "quick" else ""


def quick_flag(args: argparse.Namespace) -> str:
    """`` --quick`` for the commands a ``--quick`` run names as its prerequisites."""
    return " --quick" if preset_name(args) == "quick" else ""


def remove(paths) -> None:
    """``--fresh``: delete the checkpoints a run would otherwise resume from."""
    for path in paths:
        path.unlink(missing_ok=True)


def seed_tag(seed: int) -> str:
    """File-name suffix of a seed: none for seed 0 (the single-seed files), else ``_seed<k>``."""
    return "" if seed == 0 else f"_seed{seed}"


def checkpoint_name(variant: str, seed: int) -> str:
    """File name of a trained autoencoder variant's checkpoint for ``seed``, in the runs
    folder: written by stage 1, read by the probe."""
    return f"ae_{variant}{seed_tag(seed)}.pt"


def held_out(n: int, size: int, seed: int = 123) -> torch.Tensor:
    """``n`` held-out ``size`` x ``size`` crops: photos never used in training and held-out
    dead leaves."""
    return CropSampler(size=size, weights=(0.7, 0.3, 0.0), split="held_out", seed=seed).sample(n)
