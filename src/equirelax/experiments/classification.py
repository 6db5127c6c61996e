"""Exact vs relaxed vs baseline comparisons of classifiers over seeds, shared by the
point-cloud and image studies: the training of every arm through the runner, accuracy on
test sets, summaries with paired differences, the markdown report, curves and command lines.

Every random draw of training is a function of (seed, epoch, step), never of torch's global
generator as it happens to stand: the batch order (:class:`~equirelax.experiments.kit.runner.
EpochShuffle`), the augmentation of each batch (:class:`SeededAugmentation`) and the dropout
masks (:class:`~equirelax.experiments.kit.runner.SeedEachStep`). So the arms of one seed see the
same samples, rotations and masks although relaxing a model draws random numbers, and a run
resumed from a checkpoint continues as it would have.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE
from equirelax.experiments.kit.runner import (
    EpochShuffle,
    RunConfig,
    SeedEachStep,
    fit,
    parameter_count,
    read_curve,
    step_seed,
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
        # training time over every (re)start of this run, kept beside its checkpoints
        timing = out / "training_seconds.json"
        before = 0.0
        if timing.exists():
            before = json.loads(timing.read_text())["seconds"]
        elif (out / "results.json").exists():  # a completed fit from before this file existed
            before = json.loads((out / "results.json").read_text())["fit_seconds"]
        callbacks: list[pl.Callback] = [SeedEachStep(seed)]
        if augment is not None:
            callbacks.append(SeededAugmentation(seed, augment))
        task, result = fit(model, train, val, None, step_fn, loss_fn, cfg,
                           metrics=metrics, callbacks=callbacks)
        if not task.trainer.is_global_zero:
            rank_zero = False
            continue
        seconds = before + result["fit_seconds"]
        timing.write_text(json.dumps({"seconds": seconds}))
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


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarise(records: Sequence[dict], metrics: Sequence[str], reference: str = "exact",
              challenger: str = "relaxed", claim_metric: str | None = None) -> dict:
    """Mean and standard deviation over seeds of each metric per variant, and the paired
    difference ``challenger − reference`` on ``claim_metric`` (the paper's claim)."""
    by_variant: dict[str, list[dict]] = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)
    summary: dict[str, Any] = {"variants": {}}
    for name, runs in by_variant.items():
        summary["variants"][name] = {}
        for m in metrics:
            values = [r[m] for r in runs]
            mean, std = _mean_std(values)
            summary["variants"][name][m] = {"mean": mean, "std": std, "max": max(values)}
        summary["variants"][name]["seeds"] = [r["seed"] for r in runs]
    if claim_metric and reference in by_variant and challenger in by_variant:
        ref = {r["seed"]: r[claim_metric] for r in by_variant[reference]}
        diffs = [r[claim_metric] - ref[r["seed"]] for r in by_variant[challenger]
                 if r["seed"] in ref]
        mean, std = _mean_std(diffs)
        sem = std / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
        summary["claim"] = {
            "metric": claim_metric, "reference": reference, "challenger": challenger,
            "differences": diffs, "mean": mean, "std": std, "sem": sem,
            "wins": int(sum(d > 0 for d in diffs)), "losses": int(sum(d < 0 for d in diffs)),
        }
    return summary


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


def format_mean_std(stat: dict, digits: int = 3) -> str:
    """``mean ± std`` of a summary statistic."""
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


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
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "settings": settings, "summary": summary,
               "records": list(records)}
    if smoke_test:
        payload = {"smoke_test": SMOKE_TEST_NOTE, **payload}
    (out_dir / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    lines = [f"# {title}", ""]
    if smoke_test:
        lines += [f"**{SMOKE_TEST_NOTE}**", ""]
    lines += ["Written by the script; reproduce with:", "", "```", command, "```", ""]
    header = "| variant | " + " | ".join(label for _, label in columns) + " |"
    lines += [header, "|" + "---|" * (len(columns) + 1)]
    for name, stats in summary["variants"].items():
        cells = []
        for key, _ in columns:
            s = stats[key]
            if key.startswith("equivariance_error"):
                cells.append(f"{s['max']:.1e}")  # the worst seed
            elif key in ("fit_seconds", "parameters"):
                cells.append(f"{s['mean']:.0f}")
            else:
                cells.append(format_mean_std(s))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Mean ± standard deviation over seeds "
              f"{', '.join(str(s) for s in next(iter(summary['variants'].values()))['seeds'])}."]
    if "claim" in summary:
        lines += ["", "**The paper's claim** (relaxation improves the test accuracy of the "
                  "exactly equivariant model at the same budget): "
                  + claim_sentence(summary["claim"])]
    lines += ["", *notes, "", "Settings:", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {json.dumps(v, default=str)} |" for k, v in settings.items()]
    lines += ["", "Training curves: `curves.png`; every run: `results.json`.", ""]
    (out_dir / "results.md").write_text("\n".join(lines))


def plot_curves(out_dir: Path, records: Sequence[dict], title: str) -> Path:
    """Validation accuracy and training loss per epoch, mean over seeds with min/max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    variants = list(dict.fromkeys(r["variant"] for r in records))
    for name in variants:
        runs = [r for r in records if r["variant"] == name]
        for ax, key in zip(axes, ("val_acc", "train_loss")):
            curves = [dict(r["curves"][key]) for r in runs]
            epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
            if not epochs:
                continue
            values = np.array([[c[e] for e in epochs] for c in curves])
            x = np.asarray(epochs) + 1
            (line,) = ax.plot(x, values.mean(0), marker="o", label=name)
            ax.fill_between(x, values.min(0), values.max(0), alpha=0.2, color=line.get_color())
    axes[0].set(xlabel="epoch", ylabel="validation accuracy (exact model)", title=title)
    axes[1].set(xlabel="epoch", ylabel="training loss (task only)", yscale="log")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = out_dir / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def command_line(
    study: str, preset: str, cfg: Any, presets: dict[str, dict], options: dict[str, str]
) -> str:
    """The command that reproduces ``cfg``: the preset, then every field that differs from it
    (``options`` maps config fields to command-line flags; a boolean field's flag is a
    ``BooleanOptionalAction``, written ``--flag`` or ``--no-flag``)."""
    words = ["equirelax", study, "--preset", preset]
    defaults = type(cfg)(**presets[preset])
    for f in fields(cfg):
        value, default = getattr(cfg, f.name), getattr(defaults, f.name)
        if value == default or f.name not in options:
            continue
        flag = options[f.name]
        if isinstance(value, (tuple, list)):
            words += [flag, *map(str, value)]
        elif isinstance(value, bool):  # a BooleanOptionalAction flag: --x or --no-x
            words += [flag] if value else [f"--no-{flag.removeprefix('--')}"]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


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
