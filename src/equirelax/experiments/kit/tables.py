"""One way to summarise runs over seeds and to write results: statistics, paired comparisons,
markdown tables, and the results files (JSON and markdown, the reproducing command first).

Every study trains arms ("variants": exact, relaxed, a baseline, ablations) from the same seeds;
two runs of one seed share initial weights, data, batch order and augmentation, so arms are
compared per seed ("paired"):

* a difference ``challenger − reference`` of a score (accuracy: higher is better), its mean,
  standard deviation and standard error, and how many seeds it won and lost
  (:func:`paired_differences`);
* a ratio ``arm / reference`` of an error (MSE: lower is better), its geometric mean with a
  t-interval computed on log ratios, and what the interval says (:func:`paired_ratios`,
  :func:`paired_interval`, :func:`verdict`); :func:`mean_interval` is the t-interval of a mean
  (of paired differences, or of the log ratios).

:func:`summarise` gives per arm mean, standard deviation (ddof 1; 0 for one seed) and maximum of
each metric, with either comparison.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from equirelax.experiments.kit.guards import SMOKE_TEST_NOTE


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def statistics(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std", "max"}`` of the values over seeds (see :func:`mean_std`)."""
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "max": max(values)}


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the values (e.g. paired differences over seeds) and its ``level`` Student-t
    interval; with one value the interval is undefined (nan)."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, arr.size - 1) * arr.std(ddof=1) / np.sqrt(arr.size)
    return mean, float(mean - half), float(mean + half)


def paired_interval(ratios: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Geometric mean of paired ratios and its ``level`` t-interval (computed on log ratios).

    An interval that lies below 1 says the arm beat the reference over these seeds; with one
    pair the interval is undefined (nan)."""
    centre, low, high = mean_interval(np.log(np.asarray(ratios, dtype=float)), level)
    return float(np.exp(centre)), float(np.exp(low)), float(np.exp(high))


def verdict(low: float, high: float, pairs: int) -> str:
    """What a paired 95% interval of arm / reference says: ``better`` (all below 1), ``worse``
    (all above 1), ``no difference shown`` (it contains 1), or ``one seed`` (no interval)."""
    if pairs < 2 or not np.isfinite(low):
        return "one seed"
    if high < 1:
        return "better"
    if low > 1:
        return "worse"
    return "no difference shown"


def _by_arm(records: Sequence[Mapping], by: str) -> dict[str, list[Mapping]]:
    groups: dict[str, list[Mapping]] = {}
    for r in records:
        groups.setdefault(r[by], []).append(r)
    return groups


def paired_differences(records: Sequence[Mapping], metric: str, reference: str,
                       challenger: str, by: str = "variant") -> dict[str, Any] | None:
    """``challenger − reference`` on ``metric`` for every seed both ran (in the challenger's
    order): the differences, their mean, std, standard error (nan below two pairs) and the
    numbers of seeds won and lost; ``None`` when either arm is missing."""
    groups = _by_arm(records, by)
    if reference not in groups or challenger not in groups:
        return None
    ref = {r["seed"]: r[metric] for r in groups[reference]}
    diffs = [r[metric] - ref[r["seed"]] for r in groups[challenger] if r["seed"] in ref]
    mean, std = mean_std(diffs)
    sem = std / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return {"metric": metric, "reference": reference, "challenger": challenger,
            "differences": diffs, "mean": mean, "std": std, "sem": sem,
            "wins": int(sum(d > 0 for d in diffs)), "losses": int(sum(d < 0 for d in diffs))}


def paired_ratios(records: Sequence[Mapping], metric: str, reference: str, challenger: str,
                  by: str = "variant") -> dict[str, Any] | None:
    """``challenger / reference`` on ``metric`` (an error: below 1 is better) for every seed
    both ran, in seed order: the ratios, their geometric mean with a 95% t-interval, on how many
    seeds the challenger was lower, and the :func:`verdict`; ``None`` without pairs."""
    groups = _by_arm(records, by)
    ref = {r["seed"]: r for r in groups.get(reference, [])}
    other = {r["seed"]: r for r in groups.get(challenger, [])}
    seeds = sorted(set(ref) & set(other))
    ratios = [other[s][metric] / ref[s][metric] for s in seeds]
    if not ratios:
        return None
    geo, low, high = paired_interval(ratios)
    return {"seeds": seeds, "ratios": ratios, "geometric_mean": geo, "ci95": [low, high],
            "relaxed_lower": int(sum(q < 1 for q in ratios)),
            "verdict": verdict(low, high, len(ratios))}


def summarise(records: Sequence[Mapping], metrics: Sequence[str], *, by: str = "variant",
              reference: str = "exact", challenger: str = "relaxed",
              difference: str | None = None, ratios: Sequence[str] | None = None
              ) -> dict[str, Any]:
    """Per arm (``record[by]``, in the order first met), ``{"mean", "std", "max"}`` over seeds
    of every metric and the arm's seeds; with ``difference``, ``summary["claim"]``: the paired
    differences ``challenger − reference`` on that metric (when both arms ran); with
    ``ratios``, ``summary["paired"][metric]``: the paired ratios ``challenger / reference``
    of each of those metrics."""
    summary: dict[str, Any] = {"variants": {}}
    for name, runs in _by_arm(records, by).items():
        summary["variants"][name] = {m: statistics([r[m] for r in runs]) for m in metrics}
        summary["variants"][name]["seeds"] = [r["seed"] for r in runs]
    if ratios is not None:
        summary["paired"] = {}
        for metric in ratios:
            paired = paired_ratios(records, metric, reference, challenger, by)
            if paired is not None:
                summary["paired"][metric] = paired
    if difference is not None:
        claim = paired_differences(records, difference, reference, challenger, by)
        if claim is not None:
            summary["claim"] = claim
    return summary


def format_mean_std(stat: Mapping[str, float], digits: int = 3) -> str:
    """``mean ± std`` of a summary statistic."""
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown_table(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> list[str]:
    """The lines of a markdown table: a header of ``columns``, then one line per row of cells
    (written with ``str``)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def settings_table(settings: Mapping[str, Any]) -> list[str]:
    """A study's settings as a two-column markdown table (values as JSON)."""
    return markdown_table([(k, json.dumps(v, default=str)) for k, v in settings.items()],
                          ("setting", "value"))


def command_lines(command: str) -> list[str]:
    """The markdown lines that head a results page with the command that reproduces it."""
    return ["Written by the script; reproduce with:", "", "```", command, "```", ""]


def write_results(out_dir: str | Path, stem: str, payload: Mapping[str, Any],
                  markdown_lines: Sequence[str], command: str, *,
                  smoke_test: bool = False) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (``{"smoke_test"?, "command", **payload}``) and ``<stem>.md``
    (``markdown_lines`` joined by newlines) into ``out_dir``; ``smoke_test`` (a ``--quick``
    run) heads the JSON with the smoke-test note (the markdown's lines carry their own).
    Returns the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head: dict[str, Any] = {"smoke_test": SMOKE_TEST_NOTE} if smoke_test else {}
    data = {**head, "command": command, **payload}
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    md_path.write_text("\n".join(markdown_lines))
    return json_path, md_path


__all__ = [
    "command_lines",
    "format_mean_std",
    "markdown_table",
    "mean_interval",
    "mean_std",
    "paired_differences",
    "paired_interval",
    "paired_ratios",
    "settings_table",
    "statistics",
    "summarise",
    "verdict",
    "write_results",
]
