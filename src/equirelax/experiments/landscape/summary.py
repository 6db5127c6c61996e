"""What a landscape study's seeds add up to: the success and stuck thresholds (relative to the
target variance) and the counts and medians over seeds stored with the results."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


def thresholds(result: dict) -> tuple[float, float]:
    """The (success, stuck) training MSEs of a result: ``success_rel_mse`` and ``stuck_rel_mse``
    times the target variance."""
    cfg, var = result["config"], float(result["target_variance"])
    return cfg["success_rel_mse"] * var, cfg["stuck_rel_mse"] * var


def summarise(result: dict) -> dict:
    """Counts and medians over seeds (thresholds relative to the target variance)."""
    runs = result["runs"]
    success, stuck = thresholds(result)
    ok = [r for r in runs if r["relaxed_mse"] <= success]
    failed = [r for r in runs if r["relaxed_mse"] > success]

    def median(key: str, rows: list[dict]) -> float:
        values = [r[key] for r in rows if not math.isnan(r[key])]
        return float(np.median(values)) if values else float("nan")

    return {
        "seeds": len(runs),
        "stuck": sum(r["polished_mse"] > stuck for r in runs),
        "kinds": dict(Counter(r["hessian"]["kind"] for r in runs)),
        "escapable": sum(r["hessian"]["kind"] == "escapable saddle" for r in runs),
        "relaxed_success": len(ok),
        "detected": dict(Counter(r["detection"]["decomposition"] for r in runs)),
        "detected_among_success": dict(Counter(r["detection"]["decomposition"] for r in ok)),
        "same_type_as_teacher": sum(r["detection"]["same_type_as_teacher"] for r in runs),
        "subgroups": dict(Counter(_subgroup_text(r) for r in runs)),
        "subgroups_of_failures": dict(
            Counter(_subgroup_text(r) for r in failed)
        ),
        "max_subgroup_residual": max(
            (r["subgroup"]["residual"] for r in runs), default=float("nan")
        ),
        "median_exact_mse": median("polished_mse", runs),
        "median_relaxed_mse": median("relaxed_mse", runs),
        "median_proj_original_mse_success": median("proj_original_mse", ok),
        "median_proj_detected_mse_success": median("proj_detected_mse", ok),
        "max_detection_residual_success": max(
            (r["detection"]["residual"] for r in ok), default=float("nan")
        ),
        "seconds": sum(r["seconds"] for r in runs),
    }


def _subgroup_text(record: dict) -> str:
    """``V4a (4)``: the class name and order of a seed's largest subgroup."""
    return f"{record['subgroup']['name']} ({record['subgroup']['order']})"
