"""Exact vs relaxed vs baseline comparisons of classifiers over seeds, shared by the
point-cloud and image studies: the training of every arm through the runner, accuracy on
test sets, the markdown report and curves, and the command line both studies share
(:class:`ClassificationStudy`: options, configuration, folders, the run and its summary).

Every random draw of training is a function of (seed, epoch, step), never of torch's global
generator as it happens to stand: the batch order (:class:`~equirelax.experiments.kit.runner.
EpochShuffle`), the augmentation of each batch (:class:`SeededAugmentation`) and the dropout
masks (:class:`~equirelax.experiments.kit.runner.SeedEachStep`). So the arms of one seed see the
same samples, rotations and masks although relaxing a model draws random numbers, and a run
resumed from a checkpoint continues as it would have.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.config import add_config_options, config_from_args
from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE, UsageError
from equirelax.experiments.kit.options import (
    add_common_options,
    add_preset_options,
    add_relax_option,
    add_variants_option,
)
from equirelax.experiments.kit.plots import plot_seed_curves
from equirelax.experiments.kit.runner import (
    EpochShuffle,
    RunConfig,
    SeedEachStep,
    fit,
    parameter_count,
    read_curve,
    step_seed,
)
from equirelax.experiments.kit.runs import prepare_folders
from equirelax.experiments.kit.tables import (
    command_lines,
    format_mean_std,
    markdown_table,
    settings_table,
    write_results,
)

#: A random transformation of a batch of inputs, drawn from the generator it is given.
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of correct arg-max predictions."""
    return (logits.argmax(dim=-1) == labels).float().mean()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, labels)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, dataset: TensorDataset, batch_size: int = 100) -> float:
    """Accuracy of ``model`` (in eval mode) on ``(inputs, labels)``."""
    model.eval()
    correct = 0
    for inputs, labels in DataLoader(dataset, batch_size=batch_size):
        correct += int((model(inputs).argmax(dim=-1) == labels).sum())
    return correct / len(dataset)


class SeededAugmentation(pl.Callback):
    """Replace the inputs of every training batch (``batch[0]``, in place) by ``augment`` of
    them, drawn from a generator seeded by (seed, global step): the same transformation in
    every arm of a seed, and in a resumed run."""

    def __init__(self, seed: int, augment: Augment) -> None:
        self.seed, self.augment = int(seed), augment

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        gen = torch.Generator().manual_seed(step_seed(self.seed, trainer.global_step, stream=2))
        inputs = batch[0]
        inputs.copy_(self.augment(inputs, gen).to(inputs))


def training_loader(dataset: Dataset, batch_size: int, seed: int,
                    distributed: bool = False) -> DataLoader:
    """Full training batches in an order that depends only on (seed, epoch); under DDP
    Lightning's distributed sampler (seeded with the run's seed) splits them over processes."""
    if distributed:
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochShuffle(len(dataset), seed),
                      drop_last=True)


@dataclass
class Variant:
    """One arm of a comparison: how to build its model and its run settings."""

    name: str
    build: Callable[[], nn.Module]
    relax: str | None = None
    relax_layers: Callable[[nn.Module], list[str]] | None = None


def run_comparison(
    variants: Sequence[Variant],
    seeds: Sequence[int],
    loaders: Callable[[int], tuple[DataLoader, DataLoader]],
    step_fn: Callable,
    base: RunConfig,
    runs_dir: Path,
    evaluate: Callable[[nn.Module], dict[str, float]],
    progress: bool = True,
    augment: Augment | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy,
    metrics: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None,
) -> list[dict] | None:
    """Train every variant from every seed with the shared runner; returns one record per run
    (``None`` in the DDP processes other than rank 0, which neither evaluate nor record).

    ``loaders(seed)`` gives the (train, val) loaders; ``augment`` transforms the inputs of every
    training batch (seeded by seed and step); ``evaluate(model)`` the metrics of the final exact
    model (the hardened one for a relaxed run). Runs resume from their checkpoints. The task
    loss and the validation metrics default to classification's (cross-entropy, accuracy); a
    regression study passes its own, and gets a ``val_<name>`` curve per metric.
    """
    metrics = {"acc": accuracy} if metrics is None else metrics
    records: list[dict] = []
    rank_zero = True
    jobs = [(v, s) for s in seeds for v in variants]
    for variant, seed in tqdm(jobs, desc="runs", disable=not progress):
        torch.manual_seed(seed)
        model = variant.build()
        cfg = replace(base, seed=seed, relax=variant.relax,
                      relax_layers=variant.relax_layers(model) if variant.relax_layers else None,
                      out_dir=str(runs_dir / variant.name / f"seed{seed}"), progress=progress)
        train, val = loaders(seed)
        out = Path(cfg.out_dir)
        callbacks: list[pl.Callback] = [SeedEachStep(seed)]
        if augment is not None:
            callbacks.append(SeededAugmentation(seed, augment))
        task, result = fit(model, train, val, None, step_fn, loss_fn, cfg,
                           metrics=metrics, callbacks=callbacks)
        if not task.trainer.is_global_zero:
            rank_zero = False
            continue
        seconds = result["training_seconds"]  # over every (re)start of this run
        exact = task.exact_model().eval()
        records.append({
            "variant": variant.name,
            "seed": seed,
            "parameters": parameter_count(exact),
            "trained_parameters": parameter_count(task.net),
            "fit_seconds": seconds,
            "resumed": result["resumed_from"] is not None,
            "best_val_loss": result["best_val_loss"],
            "curves": {
                **{f"val_{name}": read_curve(out / "csv", f"val/{name}") for name in metrics},
                "val_loss": read_curve(out / "csv", "val/loss"),
                "train_loss": read_curve(out / "csv", "train/loss"),
            },
            **evaluate(exact),
        })
    return records if rank_zero else None


def claim_sentence(claim: dict) -> str:
    """The verdict on the paper's claim, in words, from the paired differences."""
    diffs = ", ".join(f"{d:+.3f}" for d in claim["differences"])
    n = len(claim["differences"])
    text = (f"{claim['challenger']} − {claim['reference']} on {claim['metric']}: "
            f"{claim['mean']:+.4f} ± {claim['std']:.4f} (std over {n} paired seeds; per seed "
            f"{diffs}; {claim['wins']} better, {claim['losses']} worse). ")
    if n < 2 or not math.isfinite(claim["sem"]):
        return text + "Too few seeds to judge."
    if claim["sem"] == 0:
        if claim["mean"] == 0:
            return text + "The two variants scored the same on every seed."
        direction = "better" if claim["mean"] > 0 else "worse"
        return text + f"The relaxed model was {direction} by the same amount on every seed."
    t = claim["mean"] / claim["sem"]
    if t > 2:
        verdict = "Relaxation improved the exactly equivariant model at the same budget here."
    elif t < -2:
        verdict = "Relaxation made the exactly equivariant model worse at the same budget here."
    else:
        verdict = ("The difference is within about two standard errors of zero: this run does "
                   "not show that relaxation improves (or hurts) the exact model.")
    return text + f"Mean / standard error = {t:+.2f}. " + verdict


def write_report(
    out_dir: Path,
    title: str,
    records: Sequence[dict],
    summary: dict,
    columns: Sequence[tuple[str, str]],
    settings: dict,
    command: str,
    notes: Sequence[str] = (),
    smoke_test: bool = False,
) -> None:
    """Write ``results.json`` (records, summary, settings) and ``results.md`` (the table);
    ``smoke_test`` (a ``--quick`` run) heads both with the smoke-test note."""
    lines = [f"# {title}", ""]
    if smoke_test:
        lines += [f"**{SMOKE_TEST_NOTE}**", ""]
    lines += command_lines(command)
    rows = []
    for name, stats in summary["variants"].items():
        cells = [name]
        for key, _ in columns:
            s = stats[key]
            if key.startswith("equivariance_error"):
                cells.append(f"{s['max']:.1e}")  # the worst seed
            elif key in ("fit_seconds", "parameters"):
                cells.append(f"{s['mean']:.0f}")
            else:
                cells.append(format_mean_std(s))
        rows.append(cells)
    lines += markdown_table(rows, ["variant", *(label for _, label in columns)])
    lines += ["", "Mean ± standard deviation over seeds "
              f"{', '.join(str(s) for s in next(iter(summary['variants'].values()))['seeds'])}."]
    if "claim" in summary:
        lines += ["", "**The paper's claim** (relaxation improves the test accuracy of the "
                  "exactly equivariant model at the same budget): "
                  + claim_sentence(summary["claim"])]
    lines += ["", *notes, "", "Settings:", "", *settings_table(settings)]
    lines += ["", "Training curves: `curves.png`; every run: `results.json`.", ""]
    write_results(out_dir, "results", {"settings": settings, "summary": summary,
                                       "records": list(records)},
                  lines, command, smoke_test=smoke_test)


def plot_curves(out_dir: Path, records: Sequence[dict], title: str) -> Path:
    """Validation accuracy and training loss per epoch, mean over seeds with min/max band."""
    return plot_seed_curves(out_dir, records, title, [
        ("val_acc", "validation accuracy (exact model)", None),
        ("train_loss", "training loss (task only)", "log")])


def checked_variants_and_seeds(
    variants: Sequence[str], seeds: Sequence[int], known: Sequence[str]
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``variants`` and ``seeds`` of a study config as tuples, refused (naming what was given)
    when a variant is not one of ``known`` or when either is empty."""
    variants = tuple(variants)
    unknown = [v for v in variants if v not in known]
    if not variants or unknown:
        raise ValueError(f"variants must be some of {tuple(known)}, got {variants!r}")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed, got ()")
    return variants, seeds


# ------------------------------------------------------------------------------------------
# The command line both classification studies share
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassificationStudy:
    """What a classification study plugs into the shared command line.

    ``config``: its dataclass (fields with the metadata of :mod:`~equirelax.experiments.kit.
    config`; ``variants``, ``seeds``, ``schedule``, ``devices``, ``num_nodes`` and
    ``accelerator`` come from the kit's options); ``models``: the choices of ``--model``, the
    equivariant one first, ``models[1]`` the unconstrained baseline; ``preset_name(args)``: the
    preset a command runs; ``results_name(preset, cfg)``: its folder name; ``check(cfg)``:
    fails early (a :class:`StudyError`) on missing data, before any folder is made;
    ``run(cfg, out, runs, command, progress, smoke_test)``: trains, evaluates and writes the
    report, returning ``{"records", "summary"}`` (``None`` in DDP processes other than rank 0);
    ``summary_lines(cfg, summary)``: what the command prints per variant."""

    name: str
    config: type
    presets: dict[str, dict[str, Any]]
    variants: tuple[str, ...]
    models: tuple[str, str]
    preset_name: Callable[[argparse.Namespace], str]
    results_name: Callable[[str, Any], str]
    check: Callable[[Any], None]
    run: Callable[..., dict | None]
    summary_lines: Callable[[Any, dict], list[str]]
    preset_help: str = "standard"

    # The command-line entry points a study module exports (``configure``, ``config_from_args``
    # and ``main``, bound to its STUDY): the same for every classification study.

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Options of ``equirelax <study>`` (:func:`configure_study`)."""
        configure_study(parser, self)

    def config_from_args(self, args: argparse.Namespace) -> Any:
        """The study configuration of a command: the preset, then every option given
        (:func:`study_config`)."""
        return study_config(args, self)

    def main(self, args: argparse.Namespace) -> int:
        """Run the comparison and write its report (:func:`run_study_command`)."""
        return run_study_command(args, self)


#: config fields set by the kit's shared options rather than one option each
KIT_FIELDS = ("variants", "seeds", "schedule", "devices", "num_nodes", "accelerator")


def configure_study(parser: argparse.ArgumentParser, study: ClassificationStudy) -> None:
    """The options of ``equirelax <study>``: the preset, ``--model``/``--relax``/``--variants``
    (which arms), one option per config field, and the kit's shared options."""
    add_preset_options(parser, study.presets, None, study.preset_help)
    parser.add_argument(
        "--model", choices=study.models, default=None,
        help=f"train one model only ({study.models[0]}: exact, or relaxed with --relax; "
             f"{study.models[1]}: the baseline) instead of the three-way comparison")
    add_relax_option(parser, help_text="relaxation schedule of the relaxed variant; none with "
                                       f"--model {study.models[0]}: the exact model")
    add_variants_option(parser, study.variants)
    add_config_options(parser, study.config, exclude=KIT_FIELDS)
    add_common_options(parser, study.name, seeds_default=None, threads_default=2)


def study_config(args: argparse.Namespace, study: ClassificationStudy) -> Any:
    """The configuration of a command: the preset, then every option given; ``--model`` picks
    one variant (``exact`` or, with a schedule, ``relaxed``; the baseline's model:
    ``baseline``) and ``--relax`` the schedule (``none``: no relaxation)."""
    overrides: dict[str, Any] = {}
    for key in ("variants", "seeds"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    for key in ("devices", "num_nodes", "accelerator"):
        overrides[key] = getattr(args, key)
    if args.model is not None:
        if args.model == study.models[1]:
            overrides["variants"] = ("baseline",)
        else:
            overrides["variants"] = ("exact",) if args.relax == "none" else ("relaxed",)
    if args.relax not in (None, "none"):
        overrides["schedule"] = args.relax
    try:
        return config_from_args(args, study.config, study.presets, study.preset_name(args),
                                **overrides)
    except ValueError as err:
        raise UsageError(str(err)) from None


def run_study_command(args: argparse.Namespace, study: ClassificationStudy) -> int:
    """``equirelax <study>``: check the data, prepare the folders, run the comparison, print
    its summary."""
    cfg = study_config(args, study)
    study.check(cfg)
    preset = study.preset_name(args)
    out, runs = prepare_folders(args, study.name, study.results_name(preset, cfg),
                                smoke_test=preset == "quick")
    start = time.perf_counter()
    result = study.run(cfg, out, runs, record_command(args), args.progress,
                       smoke_test=preset == "quick")
    if result is None:  # a DDP process other than rank 0
        return 0
    summary = result["summary"]
    for line in study.summary_lines(cfg, summary):
        print(line)
    if "claim" in summary:
        print(claim_sentence(summary["claim"]))
    print(f"wrote {out}/results.md ({time.perf_counter() - start:.0f} s)")
    if preset == "quick":
        print(SMOKE_TEST_NOTE)
    return 0
