"""The SCG study's markdown tables: rows of scores, the orientation table of a
rotation-grouped model, the ablation table over seeds (means with bootstrap intervals), and the
paired differences of each pattern-completion condition to its baselines; all written with the
kit's :func:`~equirelax.experiments.kit.tables.markdown_table`."""

from __future__ import annotations

import numpy as np

from equirelax.experiments.kit import tables as kit_tables
from equirelax.experiments.scg.config import ABLATION_COLUMNS
from equirelax.scg.metrics import paired_bootstrap
from equirelax.scg.probes import ProbeReport

#: The two baselines every evaluation setting has: a constant grey image and the unconditional
#: base model from the same noise.
GREY, NONE = "grey image", "none (frozen base)"
METRICS = ("psnr_grey", "ssim_grey", "psnr_colour", "ssim_colour")


def markdown_table(rows: list[dict], columns: list[str], fmt: str = "{:.3f}") -> str:
    """The study kit's markdown table of ``columns`` of ``rows``, floats written with
    ``fmt``."""
    cells = [[fmt.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in columns]
             for r in rows]
    return "\n".join(kit_tables.markdown_table(cells, columns))


def orientation_table(report: ProbeReport) -> str:
    """Per hypercolumn of a rotation-grouped model: OSI, orientation coverage, preferred
    orientations of its units (degrees), preferred frequency and energy share."""
    g = report.group_size
    rows = []
    for i in range(len(report.module_types)):
        sl = slice(i * g, (i + 1) * g)
        pref = np.degrees(report.tuning.preferred_orientation[sl])
        rows.append({
            "hypercolumn": i, "type": report.module_types[i],
            "mean_osi": float(report.tuning.orientation_selectivity[sl].mean()),
            "coverage": float(report.module_coverage()[i]),
            "pref_orientations_deg": " ".join(f"{p:.0f}" for p in np.sort(pref)),
            "pref_freq": float(report.module_frequency[i]),
            "energy_share": float(report.energy_share[i]),
        })
    return markdown_table(rows, ["hypercolumn", "type", "mean_osi", "coverage",
                                 "pref_orientations_deg", "pref_freq", "energy_share"])


def ablation_table(rows: list[dict], seeds: list[int]) -> str:
    """Mean and bootstrap 95 % interval over seeds of every ablation score, per model."""
    from equirelax.scg.probes import bootstrap_mean_ci

    models = list(dict.fromkeys(r["model"] for r in rows))
    table_rows = []
    for m in models:
        sub = [r for r in rows if r["model"] == m]
        cells = []
        for col in ABLATION_COLUMNS:
            mean, lo, hi = bootstrap_mean_ci(np.array([r[col] for r in sub], dtype=float))
            fmt = {"recon_mse": "{:.2g}", "n_active": "{:.1f}"}.get(col, "{:.3f}")
            cells.append(f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]")
        table_rows.append([m, len(sub), *cells])
    return "\n".join(kit_tables.markdown_table(table_rows, ["model", "n_seeds",
                                                            *ABLATION_COLUMNS]))


def variant_key(name: str, variant: str = "") -> str:
    """The score key of ``name``'s ``variant`` rows (``"colour, posterior mean"``); the plain
    name without a variant."""
    return f"{name}, {variant}" if variant else name


def difference_table(scores: dict[str, dict[str, np.ndarray]], names: list[str],
                     groups: dict[str, list[int]], metric: str, seed: int, variant: str = ""
                     ) -> tuple[str, list[dict]]:
    """Markdown table (and records) of each condition's mean paired difference to each baseline
    with its bootstrap 95 % interval over images.

    ``variant`` (e.g. ``"posterior mean"``) compares that variant of each condition with the
    same variant of the unconditional model and of Canny, so that both sides of a difference
    are the same kind of output; the grey image and the decode-only rows are single outputs
    and stay as they are."""
    def key(name: str) -> str:
        return variant_key(name, variant)

    baselines = [(GREY, lambda n: GREY), (key(NONE), lambda n: key(NONE)),
                 ("decode-only (same group)", lambda n: f"decode-only {n}" if n in groups
                  else None),
                 (key("canny"), lambda n: key("canny") if n != "canny" else None)]
    rows, records = [], []
    for name in names:
        cells = []
        for _label, pick in baselines:
            other = pick(name)
            if other is None:
                cells.append("—")
                continue
            mean, lo, hi = paired_bootstrap(scores[key(name)][metric], scores[other][metric],
                                            seed=seed)
            cells.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            records.append({"condition": key(name), "baseline": other, "metric": metric,
                            "mean_diff": mean, "ci_low": lo, "ci_high": hi})
        rows.append([key(name), *cells])
    columns = ["condition", *(f"- {b}" for b, _ in baselines)]
    return "\n".join(kit_tables.markdown_table(rows, columns)), records
