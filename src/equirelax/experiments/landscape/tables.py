"""The pages of a landscape study: its markdown report (setting, one row per seed, summary),
the results files (JSON and markdown headed by the command, then the plots), and the index
``README.md`` of every study and symmetries table in a results folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

from equirelax.experiments.kit import tables
from equirelax.experiments.landscape.config import RESULT_KIND, cfg_tag
from equirelax.experiments.landscape.plots import plot
from equirelax.experiments.landscape.summary import thresholds


def _threshold_text(result: dict, which: str) -> str:
    """How a threshold reads in a table: relative, with its absolute value."""
    value = thresholds(result)[0 if which == "success" else 1]
    return f"{result['config'][f'{which}_rel_mse']:g} · Var(y) = {value:.3g}"


def _subgroup_cell(record: dict) -> str:
    """A seed's largest subgroup H in a table: class, order, generators, hidden rep of H."""
    sub = record["subgroup"]
    if sub["order"] == sub["group_order"]:
        return f"{sub['name']} ({sub['order']}) = G"
    if sub["order"] == 1:
        return "1 (1)"
    return f"{sub['name']} ({sub['order']}) ⟨{sub['cycles']}⟩: {sub['decomposition']}"


def _e(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def table(result: dict) -> str:
    """The markdown report of one study: setting, per-seed table, summary (and the
    smoke-test note of a ``--quick`` run)."""
    cfg, s = result["config"], result["summary"]
    t, st = result["teacher"], result["student"]
    lines = [
        f"# {cfg['group']}: teacher `{cfg['teacher_rep']}` → student `{cfg['student_rep']}`",
        "",
        *([f"**{result['smoke_test']}**", ""] if result.get("smoke_test") else []),
        *tables.command_lines(result["command"]),
        f"Input: {cfg['group']} permuting R^{result['degree']} (Gaussian), invariant scalar "
        f"output, {cfg['activation']}; {cfg['n_base']} base samples"
        f" each with all its group images; target variance {result['target_variance']:.4f}.",
        "",
        "| network | hidden rep | width | dim E_ρ (of D) | hidden symmetry C(ρ) | signed | "
        "conjugate slices |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, info in (("teacher", t), ("student", st)):
        lines.append(
            f"| {name} | {info['rep']} | {info['dim']} | {info['dim_E']} "
            f"({info['n_params']}) | {info['hidden_symmetry_order']} | "
            f"{info['signed_order']} | {info['n_hyperplanes']} |"
        )
    lines += [
        "",
        f"Exact student: {cfg['exact_steps']} full-batch Adam steps (lr {cfg['lr']}) from "
        f"z ~ N(0, {cfg['init_std']}²) in an orthonormal basis of E_ρ"
        + (
            f", then up to {cfg['polish_steps']} L-BFGS iterations inside E_ρ"
            if cfg["polish_steps"]
            else ""
        )
        + f". Relaxed: `er.relax` with schedule "
        f"`{cfg['schedule']}` (θ = 1), free terms initialised N(0, {cfg['noise']}²), "
        f"lie/norm weights {cfg['lie_weight']}/{cfg['norm_weight']}, {cfg['relax_steps']} Adam "
        f"steps (lr {cfg['relax_lr']}). Detection tolerance {cfg['tol']}. MSE on the training "
        "data.",
        "",
        "| seed | exact MSE | Hessian at exact end | min λ in E_ρ | min λ ⟂ E_ρ | relaxed MSE | "
        "min λ at relaxed end | detected rep | match residual | largest subgroup H (order) "
        "⟨generators⟩: hidden rep of H | → original E_ρ | → detected E_ρ' | detected point |",
        "|---:|---:|---|---:|---:|---:|---:|---|---:|---|---:|---:|---|",
    ]
    for r in result["runs"]:
        h, d = r["hessian"], r["detection"]
        dh = r["detected_hessian"]
        end = r["relaxed_end"]["min_eigenvalue"]
        lines.append(
            f"| {r['seed']} | {_e(r['polished_mse'])} | {h['kind']} | {_e(h['min_tangent'])} | "
            f"{_e(h['min_normal'])} | {_e(r['relaxed_mse'])} | {_e(end)} | "
            f"{d['decomposition']} | "
            f"{_e(d['residual'])} | {_subgroup_cell(r)} | {_e(r['proj_original_mse'])} | "
            f"{_e(r['proj_detected_mse'])} | {dh['kind'] if dh else '–'} |"
        )
    n = s["seeds"]
    detected = ", ".join(f"{k}: {v}" for k, v in sorted(s["detected"].items()))
    lines += [
        "",
        "| summary | value |",
        "|---|---:|",
        f"| exact students stuck (MSE > {_threshold_text(result, 'stuck')}) | {s['stuck']}/{n} |",
        f"| stuck points that are escapable saddles | {s['escapable']}/{n} |",
        f"| relaxed students reaching MSE <= {_threshold_text(result, 'success')} | "
        f"{s['relaxed_success']}/{n} |",
        f"| relaxed students on a slice of the teacher's type | {s['same_type_as_teacher']}/{n} |",
        f"| median exact MSE | {_e(s['median_exact_mse'])} |",
        f"| median relaxed MSE | {_e(s['median_relaxed_mse'])} |",
        f"| median MSE projected onto the original E_ρ (successful seeds) | "
        f"{_e(s['median_proj_original_mse_success'])} |",
        f"| median MSE projected onto the detected E_ρ' (successful seeds) | "
        f"{_e(s['median_proj_detected_mse_success'])} |",
        f"| largest match residual (successful seeds) | "
        f"{_e(s['max_detection_residual_success'])} |",
        f"| largest residual of the subgroup detections | "
        f"{_e(s['max_subgroup_residual'])} |",
        f"| wall time of all seeds (s) | {s['seconds']:.0f} |",
        "",
        f"Detected hidden reps over all seeds: {detected}.",
        "",
        "Largest subgroups H of the relaxed students that miss the success threshold: "
        f"{_counts_text(s['subgroups_of_failures'])}; over all seeds: "
        f"{_counts_text(s['subgroups'])}.",
        "",
        "Hessian kinds (see `equirelax.landscape.Classification`): *escapable saddle* = negative "
        "curvature in a non-equivariant block, where the gradient has no non-equivariant part "
        "(relaxation can leave the point); *minimum* = critical, no negative curvature in any "
        "block; *saddle in E_rho* = critical, negative curvature along E_ρ; *not critical* = "
        f"gradient norm above {cfg['rel_grad_tol']:g} · Var(y). Eigenvalues within 1e-3 · "
        "max|λ| of zero count as flat. *min λ at relaxed end*: smallest eigenvalue of the plain "
        "MLP's full Hessian at the relaxed weights (no slice involved). *detected point*: the "
        "kind of the relaxed weights projected onto the detected slice. *largest subgroup H*: "
        "the largest subgroup of G under which the relaxed weights are equivariant with some "
        "hidden permutation rep of H (`equirelax.landscape.detect_subgroup_symmetry`, same "
        "tolerance as the detection; classes named as in `subgroup_classes`), its generators in "
        "cycle notation on the input points, and that hidden rep's transitive pieces [H/K] (K "
        "named among H's subgroups); "
        "*= G* when the detection succeeds, *1 (1)* when only the trivial group fits.",
    ]
    return "\n".join(lines)


def _counts_text(counts: dict) -> str:
    """``V4a (4): 6, S3 (6): 1``, largest order first; ``none`` when empty."""

    def order(item: tuple[str, int]) -> tuple[int, str]:
        return (-int(item[0].rsplit("(", 1)[1].rstrip(")")), item[0])

    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=order)) or "none"


def write_outputs(result: dict, out_dir: Path) -> list[Path]:
    """JSON and markdown of one study (the study kit's
    :func:`~equirelax.experiments.kit.tables.write_results`, the command first), its plots,
    then the index of all studies in ``out_dir``."""
    payload = {k: v for k, v in result.items() if k not in ("smoke_test", "command")}
    paths = list(tables.write_results(out_dir, cfg_tag(result), payload, [table(result), ""],
                                      result["command"], smoke_test="smoke_test" in result))
    paths += plot(result, out_dir)
    paths.append(write_index(out_dir))
    return paths


def write_index(out_dir: Path) -> Path:
    """``README.md``: one row per study found in ``out_dir``."""
    rows = []
    for path in sorted(out_dir.glob("*.json")):
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if result.get("kind") != RESULT_KIND:
            continue
        cfg, s = result["config"], result["summary"]
        n = s["seeds"]
        main_rep = max(s["detected_among_success"].items(), key=lambda kv: kv[1], default=("–", 0))
        rows.append(
            f"| [{path.stem}]({path.stem}.md) | {cfg['teacher_rep']} → {cfg['student_rep']} | "
            f"{result['student']['dim']} | {s['stuck']}/{n} | {s['escapable']}/{n} | "
            f"{s['relaxed_success']}/{n} | {main_rep[0]} ({main_rep[1]}) | "
            f"{_counts_text(s['subgroups_of_failures']) if 'subgroups_of_failures' in s else '–'}"
            " | "
            f"{s['same_type_as_teacher']}/{n} | {_e(s['median_exact_mse'])} | "
            f"{_e(s['median_proj_original_mse_success'])} | "
            f"{_e(s['median_proj_detected_mse_success'])} |"
        )
    lines = [
        "# Loss landscape studies",
        "",
        "Written by `equirelax landscape teacher-student ...` (each study's page names "
        "its exact command). Counts are over seeds; the projection columns are medians over the "
        "seeds whose relaxed student reached the success threshold. *largest subgroup "
        "(failures)*: for the relaxed students that did not, the largest subgroup of G "
        "(class and order) under which their weights are equivariant, with counts.",
        "",
        "| study | teacher → student | width | exact stuck | escapable saddles | relaxed "
        "success | most detected (successes) | largest subgroup (failures) | teacher's type | "
        "exact MSE | → original | → detected |",
        "|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|",
        *rows,
    ]
    tables = sorted(out_dir.glob("symmetries_*.md"))
    if tables:
        lines += [
            "",
            "Hidden-symmetry tables (`equirelax landscape symmetries ...`): "
            + ", ".join(f"[{t.stem.removeprefix('symmetries_')}]({t.name})" for t in tables)
            + ".",
        ]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
