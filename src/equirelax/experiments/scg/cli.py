"""The command line of ``equirelax scg``: the subcommands with their help lines, their options
(the study kit's shared vocabulary and each subcommand's own), and the entry point that
resolves the folders and seeds, checks the folders writable and runs one subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from equirelax.experiments.kit.argtypes import (
    SeedsAction,
    non_negative_int,
    positive_int,
    seed_values,
)
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE, UsageError, require_writable
from equirelax.experiments.kit.options import (
    DefaultsHelpFormatter,
    add_common_options,
    add_preset_options,
    preset_default,
)
from equirelax.experiments.scg.config import (
    DEFAULT_PRESET,
    DEFAULT_VARIANTS,
    GENERATOR_FILE,
    PRESETS,
    VARIANTS,
    preset_name,
)
from equirelax.experiments.scg.evaluate import cmd_evaluate
from equirelax.experiments.scg.generate import cmd_generate
from equirelax.experiments.scg.probe import cmd_probe
from equirelax.experiments.scg.stage1 import cmd_train_autoencoder
from equirelax.experiments.scg.stage2 import cmd_train_completion

COMMANDS = {
    "train-autoencoder": cmd_train_autoencoder,
    "probe": cmd_probe,
    "train-completion": cmd_train_completion,
    "evaluate": cmd_evaluate,
    "generate": cmd_generate,
}
HELP = {
    "train-autoencoder": "stage 1: train the modular autoencoder and its ablations",
    "probe": "probe the trained variants and a PCA baseline; module groups for stage 2",
    "train-completion": "stage 2: the diffusion model and one control branch per condition",
    "evaluate": "similarity of generations to held-out sources, with baselines",
    "generate": "complete one image file from one condition with the generator file",
}
#: Subcommands that use one seed (stage 2): ``--seeds`` names exactly one value there.
ONE_SEED = ("train-completion", "evaluate", "generate")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the SCG subcommands and their options to ``parser``: every subcommand takes the
    study kit's options (``--seeds``, ``--out``, ``--runs-dir``, ``--fresh`` where it trains,
    ``--no-progress``, ``--threads``, ``--preset``/``--quick``) and its own."""
    sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    for name in COMMANDS:
        p = sub.add_parser(name, help=HELP[name], description=HELP[name],
                           formatter_class=DefaultsHelpFormatter)
        add_preset_options(p, PRESETS, DEFAULT_PRESET)
        if name == "generate":  # reads one file, writes one PNG (--output)
            p.add_argument("--seeds", nargs="+", type=seed_values, action=SeedsAction,
                           metavar="SEED", default=(0,), help="the seed of the noise")
            p.add_argument("--threads", type=non_negative_int, default=1,
                           help="torch CPU threads (0: torch's own choice)")
            p.set_defaults(out=None)
        else:
            add_common_options(p, "scg", training=name.startswith("train-"), lightning=False,
                               threads_default=1)
        if not name.startswith("train-"):  # reads the checkpoints that training wrote
            p.add_argument("--runs-dir", dest="runs_dir", type=Path, default=None,
                           help="the checkpoints to read (default: runs/scg/<preset>)")
        if name == "train-autoencoder":
            preset_default(p.add_argument("--steps", type=positive_int, default=None,
                                          help="autoencoder steps"))
        if name in ("train-autoencoder", "probe"):
            p.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                           default=list(DEFAULT_VARIANTS), metavar="VARIANT",
                           help=f"autoencoder variants to train / probe, from {list(VARIANTS)} "
                                "(probe also picks up a trained rot8)")
        if name == "probe":
            p.add_argument("--skip-missing", dest="skip_missing", action="store_true",
                           help="probe, per seed, the named variants that are trained and "
                                "leave the others out of that seed (each model's n_seeds "
                                "counts its seeds), instead of stopping at the first missing "
                                "checkpoint")
        if name == "evaluate":
            preset_default(p.add_argument("--eval-seeds", type=positive_int, default=None,
                                          help="noise seeds per image"))
            preset_default(p.add_argument(
                "--posterior-samples", type=positive_int, default=None,
                help="generations averaged per image for the posterior-mean rows (their "
                     "pixel mean estimates E[image | condition], the completion that PSNR "
                     "and SSIM reward)"))
        if name == "generate":
            p.add_argument("--image", default="", help="image file to complete")
            p.add_argument("--condition", default="brightness",
                           help="which branch steers the generation: a module group from "
                                "groups.json or canny")
            p.add_argument("--checkpoint", default="",
                           help=f"generator file (default: <runs-dir>/{GENERATOR_FILE})")
            p.add_argument("--output", default="",
                           help="PNG to write (default: next to the image)")
            p.add_argument("--device", default="cpu",
                           help="torch device for the diffusion model: cpu or cuda")
            preset_default(p.add_argument("--sample-steps", type=positive_int, default=None,
                                          help="DDIM steps"))
            p.add_argument("--samples", type=positive_int, default=1,
                           help="generations from independent noise; above 1 the figure adds "
                                "their pixel mean (the posterior mean, the completion PSNR "
                                "and SSIM reward)")
    parser.epilog = ("Stage 1 writes ae_<variant>.pt checkpoints, probe reads them; stage 2 "
                     "reads the module groups probe wrote (groups.json) from --out.")


def main(args: argparse.Namespace) -> int:
    """Run one SCG subcommand (its folders checked writable first); a ``--quick`` run says,
    on the terminal and in its tables, that it is a smoke test."""
    args.recorded_command = record_command(args)  # before main fills in defaults
    name = preset_name(args)
    args.out = args.out or Path("docs/results/scg") / name
    args.runs_dir = args.runs_dir or Path("runs/scg") / name
    if args.subcommand in ONE_SEED and len(args.seeds) != 1:
        raise UsageError(f"--seeds: {args.subcommand} uses one seed, got "
                         f"{' '.join(map(str, args.seeds))}")
    args.seed = args.seeds[0]
    if args.subcommand != "generate":  # generate reads a file and writes one PNG
        require_writable({"--out": args.out, "--runs-dir": args.runs_dir})
    if name == "quick":
        print(SMOKE_TEST_NOTE, flush=True)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    # denormals make CPU convolutions crawl late in training; restore the default afterwards
    torch.set_flush_denormal(True)
    np.random.seed(args.seed)
    try:
        return COMMANDS[args.subcommand](args)
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)
