"""The N-body study's summary rows and results table: test MSE over seeds per (model, swept
value, variant), paired ratios against the exact variant with intervals (the kit's
:mod:`~equirelax.experiments.kit.tables`), and the markdown page that names its command."""

from __future__ import annotations

from typing import Any

import numpy as np

from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE
from equirelax.experiments.kit.tables import mean_std, paired_interval, verdict
from equirelax.experiments.kit.tables import paired_ratios as paired_ratio_summary
from equirelax.experiments.nbody.config import VARIANTS, StudyConfig, run_name
from equirelax.experiments.nbody.metrics import TRIM


def paired_ratios(runs: list[dict[str, Any]], model: str, arm: str,
                  key: str | None = None, value: Any = None,
                  metric: str = "test_mse") -> list[tuple[int, float]]:
    """(seed, ``metric`` of ``arm`` / ``metric`` of the exact arm) for every seed where both
    completed (same data, batches and rotations: the pairs the study is built on)."""
    chosen = [r for r in runs if r["model"] == model and r["completed"]
              and r.get(metric) is not None and (key is None or r[key] == value)]
    paired = paired_ratio_summary(chosen, metric, "exact", arm, by="arm")
    return [] if paired is None else list(zip(paired["seeds"], paired["ratios"]))


def summarise(runs: list[dict[str, Any]], key: str | None = None) -> list[dict[str, Any]]:
    """Rows (model, [key value,] arm) with test MSE mean ± std over seeds; every relaxed arm
    also gets the ratio of the means to the exact arm, the paired per-seed ratios (geometric
    mean, mean ± std, 95% t-interval) and how many seeds it beat the exact model on."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if not r["completed"] or r["test_mse"] is None:
            continue
        gkey = (r["model"], r[key] if key else None, r["arm"])
        groups.setdefault(gkey, []).append(r)
    rows = []
    for (model, value, arm), members in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1] if kv[0][1] is not None else 0, VARIANTS.index(kv[0][2]))):
        test_mean, test_std = mean_std([m["test_mse"] for m in members])
        val_mean, val_std = mean_std([m["best_val_mse"] for m in members])
        rows.append({
            "model": model, "value": value, "arm": arm, "seeds": sorted(m["seed"] for m in members),
            "test_mse_mean": test_mean, "test_mse_std": test_std,
            "best_val_mse_mean": val_mean, "best_val_mse_std": val_std,
            "fit_seconds_mean": float(np.mean([m["fit_seconds"] for m in members])),
            "max_hardened_e3_error": max(m["hardened_e3_error_float32"]["displacement"]
                                         for m in members),
        })
        if all("test_mse_trimmed" in m for m in members):
            rows[-1]["test_mse_trimmed_mean"], rows[-1]["test_mse_trimmed_std"] = mean_std(
                [m["test_mse_trimmed"] for m in members])
        sizes = [np.mean(list(m["free_term_relative_size"].values())) for m in members
                 if m.get("free_term_relative_size")]
        if sizes:
            rows[-1]["free_term_relative_size"] = float(np.mean(sizes))
        peaks = [max(v for _, v in m["free_term_curve"]) for m in members
                 if m.get("free_term_curve")]
        if peaks:
            rows[-1]["free_term_peak_size"] = float(np.mean(peaks))
        acting = [max(v * dict(m.get("theta_curve") or []).get(e, 0.0)
                      for e, v in m["free_term_curve"]) for m in members
                  if m.get("free_term_curve") and m.get("theta_curve")]
        if acting:  # what the relaxed model adds: θ · ||W x|| / ||F_eq(x)||, at its largest
            rows[-1]["free_term_peak_theta_size"] = float(np.mean(acting))
    by = {(r["model"], r["value"], r["arm"]): r for r in rows}
    for r in rows:
        exact = by.get((r["model"], r["value"], "exact"))
        if r["arm"] != "exact" and exact is not None:
            r["relaxed_over_exact"] = r["test_mse_mean"] / exact["test_mse_mean"]
            pairs = paired_ratios(runs, r["model"], r["arm"], key, r["value"])
            ratios = [q for _, q in pairs]
            r["relaxed_wins"] = f"{sum(q < 1 for q in ratios)}/{len(ratios)}"
            if ratios:
                r["paired_ratios"] = {str(seed): q for seed, q in pairs}
                r["paired_ratio_mean"], r["paired_ratio_std"] = mean_std(ratios)
                geo, low, high = paired_interval(ratios)
                r["paired_ratio_geomean"], r["paired_ratio_ci95"] = geo, [low, high]
                r["verdict"] = verdict(low, high, len(ratios))
            # the same comparison on the trimmed test MSE and on the best validation MSE
            for metric, name in (("test_mse_trimmed", "trimmed"), ("best_val_mse", "val")):
                other = [q for _, q in paired_ratios(runs, r["model"], r["arm"], key,
                                                     r["value"], metric=metric)]
                if other:
                    geo, low, high = paired_interval(other)
                    r[f"paired_{name}_ratios"] = other
                    r[f"paired_{name}_geomean"], r[f"paired_{name}_ci95"] = geo, [low, high]
                    r[f"{name}_wins"] = f"{sum(q < 1 for q in other)}/{len(other)}"
    return rows


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.5f} ± {std:.5f}"


def _ratio_cell(row: dict[str, Any], name: str) -> str:
    """``geometric mean [95% CI], wins`` of the paired ratios ``name`` of a row ("" if none)."""
    if f"paired_{name}_geomean" not in row:
        return ""
    low, high = row[f"paired_{name}_ci95"]
    return (f"{row[f'paired_{name}_geomean']:.4f} [{low:.3f}, {high:.3f}], "
            f"{row[f'{name}_wins']}")


#: Published test MSE at the full budget (SEGNN paper; EGNN paper, as quoted in the notes).
PUBLISHED = {"segnn": 0.0043, "egnn": 0.0071}


def results_table(cfg: StudyConfig, rows: list[dict[str, Any]], runs: list[dict[str, Any]],
                  command: str,
                  key: str | None = None, redrawn_by: str | None = None,
                  invocation: dict | None = None) -> str:
    """Markdown: the command, the budget, and test MSE (mean ± std over seeds) per arm."""
    budget = (f"{cfg.train_size} training samples, {cfg.val_size} validation, {cfg.test_size} "
              f"test; {cfg.epochs} epochs, batch {cfg.batch_size}, Adam lr {cfg.lr:g}, weight "
              f"decay {cfg.weight_decay:g}; {cfg.layers} layers; relaxed arm: schedule "
              f"`{cfg.schedule}` per epoch, λ_Lie = {cfg.lie_weight:g}, λ_norm = "
              f"{cfg.norm_weight:g}, free-term init std {cfg.relax_init_std:g}; training "
              f"batches rotated ({cfg.augment}); seeds {list(cfg.seeds)}")
    if key == "layers":
        budget = budget.replace(f"; {cfg.layers} layers", "")
    if key == "train_size":
        budget = budget.replace(f"{cfg.train_size} training samples, ", "")
    lines = [f"**{SMOKE_TEST_NOTE}**", ""] if cfg.preset == "quick" else []
    lines += [
        f"Written by `{command}`" + (f"; tables and plots redrawn by `{redrawn_by}`."
                                     if redrawn_by else "."),
        "",
        f"Budget: {budget}. Test MSE of the model with the best validation MSE (validated every "
        f"{cfg.val_every} epoch(s)); the relaxed arm is evaluated hardened (θ = 0, the exact "
        "architecture). Published test MSE at the full budget (3000 samples, 1000 epochs): "
        f"SEGNN {PUBLISHED['segnn']}, EGNN {PUBLISHED['egnn']} (the SEGNN and EGNN papers).",
        "",
    ]
    col = {"layers": "layers", "train_size": "training samples"}.get(key or "", "")
    head = "| model | " + (f"{col} | " if key else "") + "arm | test MSE (mean ± std) | " \
        "best val MSE | paired ratio arm / exact (mean ± std) | geometric mean [95% CI]: " \
        "verdict | better than exact (seeds) | trimmed test MSE | trimmed: geometric mean " \
        "ratio [95% CI], better (seeds) | best val: geometric mean ratio [95% CI], better " \
        "(seeds) | ‖W x‖ / ‖F_eq(x)‖ peak, peak of θ × it, end | max E(3) error | s per run |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ratio = interval = ""
        if "paired_ratio_mean" in r:
            ratio = f"{r['paired_ratio_mean']:.4f} ± {r['paired_ratio_std']:.4f}"
            low, high = r["paired_ratio_ci95"]
            interval = (f"{r['paired_ratio_geomean']:.4f} [{low:.3f}, {high:.3f}]: "
                        f"{r['verdict']}")
        wins = r.get("relaxed_wins", "")
        size = ""
        if "free_term_relative_size" in r:
            peak = r.get("free_term_peak_size")
            acting = r.get("free_term_peak_theta_size")
            size = (f"{peak:.2e}, " if peak is not None else "") + (
                f"{acting:.2e}, " if acting is not None else "") + \
                f"{r['free_term_relative_size']:.2e}"
        value = f"{r['value']} | " if key else ""
        trimmed = (_fmt(r["test_mse_trimmed_mean"], r["test_mse_trimmed_std"])
                   if "test_mse_trimmed_mean" in r else "")
        trimmed_ratio, val_ratio = _ratio_cell(r, "trimmed"), _ratio_cell(r, "val")
        lines.append(
            f"| {r['model']} | {value}{r['arm']} | {_fmt(r['test_mse_mean'], r['test_mse_std'])} "
            f"| {_fmt(r['best_val_mse_mean'], r['best_val_mse_std'])} | {ratio} | {interval} | "
            f"{wins} | {trimmed} | {trimmed_ratio} | {val_ratio} | {size} | "
            f"{r['max_hardened_e3_error']:.1e} | {r['fit_seconds_mean']:.0f} |"
        )
    lines += [
        "",
        "Arms: `exact` trains the equivariant model; `relaxed` is the paper's recipe (free terms "
        "θ·W x, schedule above, Lie-derivative and norm penalties), evaluated dropped (θ = 0); "
        "`no-schedule` keeps θ = 0.1 throughout (the paper's no-cycle ablation), `no-lie` drops "
        "the Lie-derivative penalty, `weak-penalty` weighs both penalties a tenth as much, "
        "`no-penalty` drops both. Paired ratio: test MSE of the "
        "arm over that of the exact arm with the same seed (same initial weights, data, batches "
        "and rotations); below 1 is better. 95% CI: t-interval of the mean log ratio over "
        "seeds (nan with one seed). Trimmed test MSE: the mean of the per-sample test MSEs "
        f"without the worst {TRIM:.0%} of the test samples (a model trained on few samples "
        "can fail badly on a single simulation, which then dominates the plain mean). Best "
        "val: the paired ratio of the best validation MSEs (the selection criterion, on 2000 "
        "other simulations: a second, slightly optimistic, measurement of the same models).",
        "‖W x‖ / ‖F_eq(x)‖: size of the free terms next to the equivariant maps they are added "
        "to (with weight θ), mean over relaxed layers and seeds: the largest value recorded at "
        "the validations during training (validation inputs), the largest value of θ times it "
        "(what the relaxed model adds to the equivariant output), and the size at the end "
        "(selected model, test inputs).",
        "max E(3) error: largest relative error of the predicted displacements of the final "
        "(hardened) models under random rotations, reflections and translations, "
        "float32. s per run: training time of a run (all the invocations that trained it).",
    ]
    expected = [run_name(model, arm, value if key == "layers" else cfg.layers,
                         value if key == "train_size" else cfg.train_size, seed)
                for value in (cfg.sweep_values if key else (None,)) for model in cfg.models
                for seed in cfg.seeds for arm in cfg.variants]
    done = {r["name"] for r in runs if r["completed"] and r["test_mse"] is not None}
    pending = [name for name in expected if name not in done]
    if pending:
        lines += ["", f"Not in the table yet ({len(pending)} of the study's {len(expected)} "
                  "runs have no finished results: not started, or stopped before their last "
                  "epoch; rerunning the command resumes them): " + ", ".join(pending) + "."]
    if invocation:
        inv = invocation
        load = ("" if inv.get("load_average_start") is None else
                f"; load average {inv['load_average_start']:.1f} at the start and "
                f"{inv['load_average_end']:.1f} at the end")
        lines += [
            "",
            f"The command trained {inv['trained_runs']} of its {inv['runs']} runs (the others "
            f"were only tested again) in {inv['wall_seconds']:.0f} s of wall time and "
            f"{inv['process_cpu_seconds']:.0f} s of CPU time in its main process, with "
            f"{inv['devices']} process(es) of {inv['torch_threads']} torch thread(s) on "
            f"{inv['cpu_cores']} CPU cores{load}.",
        ]
    return "\n".join(lines) + "\n"
