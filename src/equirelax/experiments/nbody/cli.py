"""The command line of ``equirelax nbody``: its options (the kit's shared vocabulary and the
study's own), the configuration they resolve to, and the entry point."""

from __future__ import annotations

import argparse
import sys

from equirelax.experiments.kit.argtypes import non_negative_float, positive_float, positive_int
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.guards import UsageError
from equirelax.experiments.kit.options import (
    add_common_options,
    add_preset_options,
    add_relax_option,
    add_variants_option,
    chosen_preset,
    preset_default,
)
from equirelax.experiments.kit.runs import default_folders, prepare_folders
from equirelax.experiments.nbody.config import MODELS, PRESETS, SWEEPS, VARIANTS, StudyConfig
from equirelax.experiments.nbody.study import run_study


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``equirelax nbody`` (the sizes default to the chosen preset's)."""
    add_preset_options(parser, PRESETS, "paper")
    add = parser.add_argument
    add("--model", nargs="+", choices=MODELS, default=MODELS, help="models to train")
    add_variants_option(
        parser, VARIANTS, default=("exact", "relaxed"),
        help_text="exact and/or relaxed-then-hardened training (the comparison); no-schedule, "
                  "no-lie, no-penalty: the paper's ablations of the relaxed variant; "
                  "weak-penalty: both penalties at a tenth of their weights")
    add_relax_option(parser, help_text="relaxation schedule θ(epoch) of the relaxed variants "
                                       "(triangular in every preset); none: the exact variant "
                                       "only")
    epochs = add("--epochs", type=positive_int, help="training epochs")
    train = add("--train-size", type=positive_int,
                help="training simulations (first k of the training split)")
    val = add("--val-size", type=positive_int, help="validation simulations")
    test = add("--test-size", type=positive_int, help="test simulations")
    for action in (epochs, train, val, test):
        preset_default(action)
    add("--layers", type=positive_int, default=4, help="message-passing layers")
    add("--egnn-hidden", type=positive_int, default=64, help="EGNN hidden features")
    add("--segnn-hidden", default="32x0e+32x1o", help="SEGNN hidden irreps")
    add("--batch-size", type=positive_int, default=100, help="training batch size")
    add("--eval-batch-size", type=positive_int, default=500,
        help="batch size of validation and test")
    add("--lr", type=positive_float, default=5e-4, help="Adam learning rate")
    add("--weight-decay", type=non_negative_float, default=1e-12, help="Adam weight decay")
    add("--lie-weight", type=non_negative_float, default=1e-2,
        help="weight of the Lie-derivative penalty")
    add("--norm-weight", type=non_negative_float, default=1e-2,
        help="weight of the ||W x|| penalty")
    add("--relax-init-std", type=non_negative_float, default=1e-4,
        help="init std of the free terms")
    add("--penalty-rows", type=positive_int, default=None,
        help="evaluate the penalties on at most this many rows per layer (default: all)")
    add("--penalty-sketch", type=positive_int, default=None,
        help="evaluate the penalties on this many random sign combinations of each layer's "
             "rows (default: all rows, exact)")
    add("--augment", choices=("so3", "o3", "none"), default="so3",
        help="random rotation of every training batch (the paper's: so3)")
    preset_default(add("--val-every", type=positive_int, help="validate every k epochs"))
    add("--sweep", choices=SWEEPS, help="the paper's figure: test MSE vs layers or train size")
    preset_default(add("--sweep-values", type=positive_int, nargs="+",
                       help="values of the swept quantity"))
    add("--tag", help="names the default folders docs/results/nbody/TAG and runs/nbody/TAG "
                      "(default: the preset, plus -sweep-<quantity>); --out and --runs-dir "
                      "name the folders themselves")
    add("--cache-dir", help="data cache (default: $EQUIRELAX_CACHE or ~/.cache/equirelax)")
    add("--stop-after", type=positive_int,
        help="end each run after this many more epochs; rerun the command to resume it")
    add("--report-only", action="store_true",
        help="train nothing: redraw the tables and plots from the per-run JSON files")
    add("--jobs", type=positive_int, default=1,
        help="runs trained at the same time, each in its own process (several small runs per "
        "GPU, or one per CPU core); the tables are written when all have ended")
    add("--shard", help=argparse.SUPPRESS)  # "i/k": the i-th of k processes started by --jobs
    add_common_options(parser, "nbody", seeds_default=None, threads_default=1,
                       out_default="docs/results/nbody/<tag>")
    for action in parser._actions:  # the folders are named by the tag, not the preset
        if action.dest == "runs_dir":
            action.help = "checkpoints and logs (default: runs/nbody/<tag>)"
        if action.dest == "threads":
            action.help = ("torch threads per process (0: torch's own choice); small graphs "
                           "run fastest on one")


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/k"`` -> (i, k): this process trains every k-th run, starting at run i."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must be i/k with integers, got {text!r}") from None
    if not 0 <= index < count:
        raise UsageError(f"--shard i/k needs 0 <= i < k, got {text!r}")
    return index, count


def folder_name(args: argparse.Namespace) -> str:
    """The name of a command's default folders: ``--tag``, else the preset, plus
    ``-sweep-<quantity>`` for a sweep."""
    preset_name = chosen_preset(args, "paper")
    return args.tag or (preset_name + (f"-sweep-{args.sweep}" if args.sweep else ""))


def resolve(args: argparse.Namespace) -> StudyConfig:
    """The preset with the command line's overrides, validated; options that do not fit
    together raise :class:`~equirelax.experiments.kit.guards.UsageError` (status 2)."""
    preset_name = chosen_preset(args, "paper")
    preset = PRESETS[preset_name]

    def pick(value, default):
        return default if value is None else value

    if args.penalty_rows is not None and args.penalty_sketch is not None:
        raise UsageError(f"--penalty-rows {args.penalty_rows} and --penalty-sketch "
                         f"{args.penalty_sketch} cannot be used together: pass one of them")
    sweep_values: tuple[int, ...] = ()
    if args.sweep is not None:
        sweep_values = tuple(pick(args.sweep_values, preset["sweep_values"][args.sweep]))
    elif args.sweep_values is not None:
        raise UsageError("--sweep-values needs --sweep layers or --sweep train-size")
    variants = ("exact",) if args.relax == "none" else tuple(dict.fromkeys(args.variants))
    out, runs = default_folders("nbody", folder_name(args))
    cfg = StudyConfig(
        preset=preset_name,
        models=tuple(dict.fromkeys(args.model)),
        variants=variants,
        schedule="triangular" if args.relax in (None, "none") else args.relax,
        epochs=pick(args.epochs, preset["epochs"]),
        train_size=pick(args.train_size, preset["train_size"]),
        val_size=pick(args.val_size, preset["val_size"]),
        test_size=pick(args.test_size, preset["test_size"]),
        seeds=tuple(pick(args.seeds, preset["seeds"])),
        layers=args.layers,
        egnn_hidden=args.egnn_hidden,
        segnn_hidden=args.segnn_hidden,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        lie_weight=args.lie_weight,
        norm_weight=args.norm_weight,
        relax_init_std=args.relax_init_std,
        penalty_rows=args.penalty_rows,
        penalty_sketch=args.penalty_sketch,
        augment=args.augment,
        val_every=pick(args.val_every, preset["val_every"]),
        devices=args.devices,
        num_nodes=args.num_nodes,
        accelerator=args.accelerator,
        threads=args.threads,
        sweep=args.sweep,
        sweep_values=sweep_values,
        out=str(args.out if args.out is not None else out),
        runs_dir=str(args.runs_dir if args.runs_dir is not None else runs),
        cache_dir=args.cache_dir,
        stop_after=args.stop_after,
        progress=args.progress,
        report_only=args.report_only,
        jobs=args.jobs,
        shard=_parse_shard(args.shard),
    )
    world = cfg.devices * cfg.num_nodes
    if world > 1 and (cfg.val_size % world or cfg.test_size % world):
        print(f"equirelax nbody: warning: with {world} processes the distributed sampler repeats "
              "a few validation/test samples unless --val-size and --test-size are multiples "
              f"of {world} (got {cfg.val_size} and {cfg.test_size})", file=sys.stderr)
    if cfg.jobs > 1 and world > 1:
        raise UsageError(f"--jobs {cfg.jobs} runs one process per run: it needs --devices 1 "
                         f"and --num-nodes 1, got {cfg.devices} and {cfg.num_nodes}")
    if cfg.sweep == "train-size" and max(cfg.sweep_values) > 10_000:
        raise UsageError(f"training sizes must be <= 10000, got {list(cfg.sweep_values)}")
    return cfg


def main(args: argparse.Namespace) -> int:
    """Entry point of ``equirelax nbody``."""
    cfg = resolve(args)
    prepare_folders(args, "nbody", folder_name(args), training=not cfg.report_only,
                    smoke_test=cfg.preset == "quick" and cfg.shard is None)
    run_study(cfg, record_command(args))
    return 0
