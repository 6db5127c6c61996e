"""``equirelax landscape``: loss landscape and hidden symmetries in the teacher–student setting.

Subcommands:

* ``teacher-student``: a teacher with hidden rep ρ_T; per seed, an exact student with hidden rep
  ρ_S trained on exactly G-symmetric data and refined to a critical point inside E_ρS; the
  Hessian at that point split into equivariant and non-equivariant blocks and classified
  (saddle that relaxation can escape, or minimum); a relaxed student started from that point
  (``er.relax`` with a constant schedule: every weight free, the free terms' random
  initialisation being the symmetry-breaking noise); detection of the hidden rep the relaxed
  weights satisfy; projection back onto the original E_ρS (``harden(mode="project")``) and onto
  the detected E_ρ' (``harden(mode="detected")``); the largest subgroup H of G under which the
  relaxed weights are equivariant with some hidden rep of H (a student that leaves its slice
  without reaching another slice of G is often caught on the fixed points of a subgroup). Writes
  a markdown table, JSON and plots into ``--out`` and an index of every study there
  (``README.md``).
* ``symmetries``: the hidden-symmetry groups of some hidden reps of a group (orders, structure,
  number of conjugate slices), as a table.

``teacher-student`` speaks the study kit's vocabulary: ``--seeds`` (seed values), presets
(``standard``; ``--quick``, a smoke test), one option per :class:`StudyConfig` field (the relaxed
student's schedule is ``--relax``), ``--out`` for results (default
``docs/results/landscape/<preset>``) and ``--runs-dir`` for checkpoints (default
``runs/landscape/<preset>``): each seed's record is saved there as soon as the seed is done and
a rerun with the same settings resumes from there (``--fresh`` deletes them first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import equirelax as er
from equirelax.experiments.kit import guards, tables
from equirelax.experiments.kit.argtypes import non_negative_int, positive_float
from equirelax.experiments.kit.commands import record_command
from equirelax.experiments.kit.config import add_config_options, config_from_args
from equirelax.experiments.kit.options import (
    DefaultsHelpFormatter,
    add_common_options,
    add_preset_options,
    chosen_preset,
    schedule_names,
)
from equirelax.experiments.kit.runs import prepare_folders
from equirelax.experiments.teacher_student import (
    reference_teacher,
    symmetric_data,
    train_student,
)
from equirelax.groups.subgroups import describe_pieces, transitive_pieces
from equirelax.landscape import (
    EquivariantSubspace,
    MLPLayout,
    detect_hidden_rep,
    detect_subgroup_symmetry,
    effective_mlp,
    equivariant_mlp,
    gradient_and_hessian,
    hessian_split,
    hidden_symmetry_group,
    mse_loss,
    project_onto_detected,
    read_mlp,
)
from equirelax.relaxation import harden, relax

RESULT_KIND = "landscape-teacher-student"


def _setting(default, help_text: str, **meta):
    """A config field with its command-line help (and ``type=`` check) in its metadata."""
    return field(default=default, metadata={"help": help_text, **meta})


@dataclass
class StudyConfig:
    """Settings of one teacher–student landscape study (defaults: the S3 case of the notes).
    Every field is an option of ``equirelax landscape teacher-student`` (its metadata: help
    and check)."""

    group: str = _setting("S3", "S3, A4, C5, D4, ...")
    teacher_rep: str = _setting("natural", "the teacher's hidden rep, e.g. natural, regular")
    student_rep: str = _setting("3*trivial", "the students' hidden rep, e.g. 3*trivial")
    activation: str = _setting("tanh", "activation of the hidden layer")
    seeds: tuple[int, ...] = _setting(tuple(range(10)), "seed values")
    n_base: int = _setting(1024, "base samples (each appears with all its group images)")
    n_test: int = _setting(2048, "test samples")
    init_std: float = _setting(0.5, "std of the exact student's coordinates in E_ρ",
                               type=positive_float)
    exact_steps: int = _setting(6000, "Adam steps of the exact student", type=non_negative_int)
    polish_steps: int = _setting(0, "L-BFGS iterations inside E_ρ after Adam",
                                 type=non_negative_int)
    relax_steps: int = _setting(15000, "Adam steps of the relaxed student")
    lr: float = _setting(3e-3, "learning rate of the exact student", type=positive_float)
    relax_lr: float = _setting(3e-3, "learning rate of the relaxed student",
                               type=positive_float)
    noise: float = _setting(1e-2, "std of the free terms' initialisation (the "
                                  "symmetry-breaking noise)")
    schedule: str = _setting("constant", "schedule θ(t) of the relaxed student (θ = 1 "
                                         "throughout with constant)", flag="--relax",
                             choices=schedule_names())
    lie_weight: float = _setting(0.0, "weight of the Lie-derivative penalty")
    norm_weight: float = _setting(0.0, "weight of the free terms' norm penalty")
    # thresholds relative to the target variance Var(y): success is an unexplained fraction of
    # the variance of at most 1e-4 (an S3 regular -> 6 x trivial target has variance 68, and
    # the absolute 1e-6 called students at MSE / Var(y) = 3e-5 failures)
    stuck_rel_mse: float = _setting(1e-3, "an exact student is stuck above this · Var(y)",
                                    type=positive_float)
    success_rel_mse: float = _setting(1e-4, "a relaxed student succeeds at or below this · "
                                            "Var(y)", type=positive_float)
    tol: float = _setting(1e-2, "tolerance of the hidden-rep and subgroup detections",
                          type=positive_float)
    rel_grad_tol: float = _setting(1e-3, "a point is critical at gradient norm <= this · "
                                         "Var(y)", type=positive_float)
    data_seed: int = _setting(1234, "seed of the training and test data",
                              type=non_negative_int)

    def tag(self) -> str:
        """File stem of the study's outputs, e.g. ``S3_natural_to_3xtrivial``."""

        def clean(s: str) -> str:
            return s.replace("*", "x").replace("+", "-").replace("/", "")

        return f"{self.group}_{clean(self.teacher_rep)}_to_{clean(self.student_rep)}"

    def key(self) -> str:
        """A hash of every setting except the seeds (per-seed checkpoints depend on it)."""
        d = asdict(self)
        d.pop("seeds")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


#: The presets: ``standard`` is the config's defaults; ``quick`` a smoke test of a few minutes.
PRESETS: dict[str, dict] = {
    "standard": {},
    "quick": {"seeds": (0, 1), "n_base": 64, "n_test": 256, "exact_steps": 200,
              "relax_steps": 300},
}
DEFAULT_PRESET = "standard"


# -- one seed ----------------------------------------------------------------------------------
def _mse(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.mean((model(x).reshape(y.shape) - y) ** 2))


def _polish(
    space: EquivariantSubspace,
    layout: MLPLayout,
    theta: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """L-BFGS inside E_ρ (θ = B z) from θ: brings Adam's end point to a constrained critical
    point, where the Hessian split applies."""
    if steps <= 0:
        return space.project(theta)
    loss_fn = mse_loss(layout, x, y)
    z = space.coordinates(theta).clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [z],
        lr=1.0,
        max_iter=steps,
        tolerance_grad=1e-12,
        tolerance_change=1e-16,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(space.embed(z))
        loss.backward()
        return loss

    opt.step(closure)
    return space.embed(z.detach())


def _hessian_record(
    space: EquivariantSubspace,
    layout: MLPLayout,
    theta: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    rel_grad_tol: float,
) -> dict:
    """The Hessian split at θ and its kind; critical means a gradient norm at most
    ``rel_grad_tol`` · Var(y) (the loss scale of the MSE)."""
    split = hessian_split(mse_loss(layout, x, y), theta, space)
    c = split.classify(rel_grad_tol=rel_grad_tol, loss_scale=float(y.var()))
    return {
        "kind": c.kind,
        "gradient_norm": split.gradient_norm,
        "gradient_tangent": split.gradient_tangent,
        "gradient_normal": split.gradient_normal,
        "min_tangent": c.min_tangent,
        "min_normal": c.min_normal,
        "n_negative_tangent": c.n_negative_tangent,
        "n_negative_normal": c.n_negative_normal,
        "tol": c.tol,
        "grad_tol": c.grad_tol,
        "coupling": split.coupling,
        "blocks": [
            {
                "label": b.label,
                "dim": b.dim,
                "min": b.min_eigenvalue,
                "eigenvalues": b.eigenvalues.tolist(),
            }
            for b in split.blocks
        ],
    }


def _curve(values: list[float], points: int = 200) -> list[float]:
    return values[:: max(1, len(values) // points)]


def run_seed(cfg: StudyConfig, seed: int, data: dict, progress: bool = True) -> dict:
    """The whole pipeline for one seed; returns a JSON-able record (``progress``: progress
    bars)."""
    G, rep_in, rep_out = data["G"], data["rep_in"], data["rep_out"]
    x, y, x_test, y_test = data["x"], data["y"], data["x_test"], data["y_test"]
    rep_s = er.reps.parse(G, cfg.student_rep)
    space = EquivariantSubspace(rep_in, [rep_s], rep_out)
    layout = space.layout(cfg.activation)
    # exact student: θ = B z with z ~ N(0, init_std²) in the orthonormal basis of E_ρS
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(space.dim, generator=gen, dtype=torch.float64) * cfg.init_std
    student = equivariant_mlp(layout.module(space.embed(z0)), rep_in, [rep_s], rep_out)
    curve_exact = train_student(student, x, y, cfg.exact_steps, cfg.lr, desc=f"exact {seed}",
                                progress=progress)
    record: dict = {"seed": seed, "exact_mse": _mse(student, x, y)}
    _, theta = read_mlp(student)
    theta = _polish(space, layout, theta, x, y, cfg.polish_steps)
    student = equivariant_mlp(layout.module(theta), rep_in, [rep_s], rep_out)
    record["polished_mse"] = _mse(student, x, y)
    record["exact_test_mse"] = _mse(student, x_test, y_test)
    record["hessian"] = _hessian_record(space, layout, theta, x, y, cfg.rel_grad_tol)
    # relaxed student from the stuck point
    torch.manual_seed(10_000 + seed)
    relaxed = relax(
        student,
        schedule=cfg.schedule,
        total_steps=cfg.relax_steps,
        value=1.0,
        lie_weight=cfg.lie_weight,
        norm_weight=cfg.norm_weight,
        init_std=cfg.noise,
        free_bias=True,
        projected_eval=False,
    )
    curve_relaxed = train_student(
        relaxed.model, x, y, cfg.relax_steps, cfg.relax_lr, relaxed=relaxed,
        desc=f"relaxed {seed}", progress=progress,
    )
    plain = effective_mlp(relaxed)
    record["relaxed_mse"] = _mse(plain, x, y)
    record["relaxed_test_mse"] = _mse(plain, x_test, y_test)
    _, theta_r = read_mlp(plain)
    grad_r, hess_r = gradient_and_hessian(mse_loss(layout, x, y), theta_r)
    eig_r = torch.linalg.eigvalsh(hess_r)
    record["relaxed_end"] = {
        "gradient_norm": float(grad_r.norm()),
        "min_eigenvalue": float(eig_r[0]),
        "max_eigenvalue": float(eig_r[-1]),
        "theta": theta_r.tolist(),
    }
    record["exact_theta"] = theta.tolist()
    detection = detect_hidden_rep(plain, G, rep_in, rep_out, tol=cfg.tol, x=x_test[:256])
    record["detection"] = {
        "success": detection.success,
        "decomposition": detection.decomposition if detection.success else "none",
        "found": detection.decomposition,
        "reason": detection.reason,
        "residual": detection.residual,
        "distance": detection.distance,
        "equivariance_error": detection.equivariance_error,
        "duplicates": len(detection.duplicates),
        "dead": len(detection.dead),
        "same_type_as_teacher": bool(
            detection.success and _types(detection.layers[0].pieces) == data["teacher_types"]
        ),
    }
    record["subgroup"] = subgroup_record(plain, data, cfg.tol)
    original = harden(relaxed, mode="project")
    record["proj_original_mse"] = _mse(original, x, y)
    record["proj_original_test_mse"] = _mse(original, x_test, y_test)
    record["proj_detected_mse"] = record["proj_detected_test_mse"] = float("nan")
    record["detected_hessian"] = None
    if detection.success and detection.hidden_reps is not None:
        if detection.is_permutation:
            detected = harden(relaxed, mode="detected")
        else:
            detected = project_onto_detected(detection, rep_in, rep_out)
        record["proj_detected_mse"] = _mse(detected, x, y)
        record["proj_detected_test_mse"] = _mse(detected, x_test, y_test)
        space_d = EquivariantSubspace(rep_in, detection.hidden_reps, rep_out)
        _, theta_d = read_mlp(detected)
        theta_d = _polish(space_d, layout, space_d.project(theta_d), x, y, cfg.polish_steps)
        record["detected_polished_mse"] = float(mse_loss(layout, x, y)(theta_d))
        record["detected_hessian"] = _hessian_record(
            space_d, layout, theta_d, x, y, cfg.rel_grad_tol
        )
    record["curve_exact"] = _curve(curve_exact)
    record["curve_relaxed"] = _curve(curve_relaxed)
    return record


def _cycles(perm: list[int]) -> str:
    """A permutation in cycle notation, e.g. ``(0 1)(2 3)``; ``()`` for the identity."""
    seen, cycles = set(), []
    for start in range(len(perm)):
        if start in seen or perm[start] == start:
            continue
        cycle, i = [], start
        while i not in seen:
            seen.add(i)
            cycle.append(str(i))
            i = perm[i]
        cycles.append(f"({' '.join(cycle)})")
    return "".join(cycles) or "()"


def subgroup_record(plain: torch.nn.Module, data: dict, tol: float) -> dict:
    """The largest subgroup of G under which the plain MLP ``plain`` is equivariant, as a
    JSON-able record (its class name, order, generators, the hidden rep of H, the residual)."""
    found = detect_subgroup_symmetry(plain, data["G"], data["rep_in"], data["rep_out"], tol=tol)
    return {
        "name": found.name,
        "order": found.order,
        "group_order": found.group.order,
        "generators": found.generators,
        "cycles": ", ".join(_cycles(g) for g in found.generators),
        "conjugates": found.subgroup_class.conjugates,
        "decomposition": found.decomposition,
        "residual": found.residual,
        "distance": found.detection.distance,
        "matches": found.matches,
        "trials": [asdict(t) for t in found.trials],
    }


def _types(pieces) -> list[int]:
    return sorted(p.stabiliser.index for p in pieces)


# -- the study ---------------------------------------------------------------------------------
def prepare(cfg: StudyConfig) -> dict:
    """Group, reps, teacher and data shared by all seeds."""
    G = er.groups.from_name(cfg.group)
    rep_in, rep_out = er.reps.natural(G), er.reps.trivial(G)
    rep_t = er.reps.parse(G, cfg.teacher_rep)
    teacher = reference_teacher(G, rep_t, cfg.activation)
    x = symmetric_data(G, cfg.n_base, cfg.data_seed)
    x_test = torch.from_numpy(
        np.random.default_rng(cfg.data_seed + 1).standard_normal((cfg.n_test, G.degree))
    )
    with torch.no_grad():
        y, y_test = teacher(x).squeeze(-1), teacher(x_test).squeeze(-1)
    return {
        "G": G,
        "rep_in": rep_in,
        "rep_out": rep_out,
        "rep_t": rep_t,
        "x": x,
        "y": y,
        "x_test": x_test,
        "y_test": y_test,
        "teacher_types": _types(transitive_pieces(G, rep_t.images)),
    }


def _symmetry_info(G, rep) -> dict:
    hs = hidden_symmetry_group(rep)
    space = EquivariantSubspace(er.reps.natural(G), [rep], er.reps.trivial(G))
    return {
        "rep": describe_pieces(hs.pieces[0]),
        "dim": rep.dim,
        "dim_E": space.dim,
        "n_params": space.n_params,
        "hidden_symmetry_order": hs.order,
        "signed_order": hs.signed_order,
        "n_hyperplanes": hs.n_hyperplanes,
    }


def run_study(cfg: StudyConfig, runs_dir: Path | None = None, *, fresh: bool = False,
              command: str = "", progress: bool = True) -> dict:
    """Every seed of a study; returns the results. With ``runs_dir``, each seed's record is
    saved in ``<runs_dir>/<tag>_<settings hash>/seed_<k>.json`` as soon as it is done and a
    rerun resumes the finished seeds (``fresh``: that folder is deleted first). ``command`` is
    the command line recorded with the results."""
    data = prepare(cfg)
    G = data["G"]
    ckpt = None
    if runs_dir is not None:
        ckpt = runs_dir / f"{cfg.tag()}_{cfg.key()}"
        if fresh and ckpt.exists():
            shutil.rmtree(ckpt)
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    runs = []
    for seed in tqdm(cfg.seeds, desc=f"{cfg.tag()} seeds", disable=not progress):
        guards.mark(f"seed {seed}")
        path = ckpt / f"seed_{seed}.json" if ckpt is not None else None
        if path is not None and path.exists():
            runs.append(json.loads(path.read_text()))
            continue
        start = time.perf_counter()
        record = run_seed(cfg, seed, data, progress)
        record["seconds"] = time.perf_counter() - start
        if path is not None:
            path.write_text(json.dumps(record))
        runs.append(record)
    result = {
        "kind": RESULT_KIND,
        "config": asdict(cfg),
        "command": command,
        "degree": G.degree,
        "target_variance": float(data["y"].var()),
        "teacher": _symmetry_info(G, data["rep_t"]),
        "student": _symmetry_info(G, er.reps.parse(G, cfg.student_rep)),
        "runs": runs,
    }
    result["summary"] = summarise(result)
    return result


def thresholds(result: dict) -> tuple[float, float]:
    """The (success, stuck) training MSEs of a result: ``success_rel_mse`` and ``stuck_rel_mse``
    times the target variance."""
    cfg, var = result["config"], float(result["target_variance"])
    return cfg["success_rel_mse"] * var, cfg["stuck_rel_mse"] * var


def _threshold_text(result: dict, which: str) -> str:
    """How a threshold reads in a table: relative, with its absolute value."""
    value = thresholds(result)[0 if which == "success" else 1]
    return f"{result['config'][f'{which}_rel_mse']:g} · Var(y) = {value:.3g}"


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


# -- outputs -----------------------------------------------------------------------------------
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


def plot(result: dict, out_dir: Path) -> list[Path]:
    """Training curves, MSE per arm, and Hessian spectra at the stuck points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, runs = result["config"], result["runs"]
    stem = out_dir / cfg_tag(result)
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        ok = r["relaxed_mse"] <= thresholds(result)[0]
        e = np.array(r["curve_exact"])
        rl = np.array(r["curve_relaxed"])
        xe = np.linspace(0, cfg["exact_steps"], len(e))
        xr = cfg["exact_steps"] + np.linspace(0, cfg["relax_steps"], len(rl))
        color = "tab:green" if ok else "tab:red"
        ax.semilogy(xe, e, color="tab:blue", alpha=0.5, lw=1)
        ax.semilogy(xr, rl, color=color, alpha=0.6, lw=1)
    ax.axvline(cfg["exact_steps"], color="k", lw=0.8, ls=":")
    ax.axhline(result["target_variance"], color="gray", lw=0.8, ls="--")
    ax.plot([], [], color="tab:blue", label="exact (E_ρS)")
    ax.plot([], [], color="tab:green", label=f"relaxed, reaches <= {thresholds(result)[0]:.3g}")
    ax.plot([], [], color="tab:red", label="relaxed, does not")
    ax.plot([], [], color="gray", ls="--", label="target variance")
    ax.set_xlabel("Adam step (exact, then relaxed)")
    ax.set_ylabel("train MSE")
    ax.set_title(f"{cfg['group']}: {cfg['teacher_rep']} teacher, {cfg['student_rep']} student")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(stem.with_name(stem.name + "_curves.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    arms = [
        ("exact", "polished_mse"),
        ("relaxed", "relaxed_mse"),
        ("→ original E_ρ", "proj_original_mse"),
        ("→ detected E_ρ'", "proj_detected_mse"),
    ]
    fig, ax = plt.subplots(figsize=(7, 4))
    rng = np.random.default_rng(0)
    for i, (_, key) in enumerate(arms):
        vals = np.array([r[key] for r in runs], dtype=float)
        vals = vals[~np.isnan(vals)]
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), np.maximum(vals, 1e-16), s=18)
    ax.axhline(result["target_variance"], color="gray", lw=0.8, ls="--", label="target variance")
    ax.set_yscale("log")
    ax.set_xticks(range(len(arms)), [a for a, _ in arms])
    ax.set_ylabel("train MSE (one point per seed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(stem.with_name(stem.name + "_mse.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(runs):
        for b in r["hessian"]["blocks"]:
            tangent = b["label"] == "trivial"
            ev = np.array(b["eigenvalues"])
            ax.scatter(
                np.full(len(ev), i) + (-0.15 if tangent else 0.15),
                ev,
                s=10,
                color="tab:blue" if tangent else "tab:orange",
            )
    ax.scatter([], [], color="tab:blue", label="tangent to E_ρ")
    ax.scatter([], [], color="tab:orange", label="non-equivariant blocks")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xticks(range(len(runs)), [str(r["seed"]) for r in runs])
    ax.set_xlabel("seed")
    ax.set_ylabel("Hessian eigenvalue at the exact end point")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(stem.with_name(stem.name + "_spectra.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def cfg_tag(result: dict) -> str:
    """The output stem of a result."""
    return StudyConfig(**result["config"]).tag()


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


# -- hidden symmetries table -------------------------------------------------------------------
def symmetries_table(group: str, specs: list[str], command: str | None = None) -> str:
    """A markdown table of hidden-symmetry groups for some hidden reps of ``group``, headed by
    the ``command`` that wrote it (the default: the command that prints it)."""
    G = er.groups.from_name(group)
    if command is None:
        command = shlex.join(["equirelax", "landscape", "symmetries", "--group", group,
                              "--reps", *specs])
    lines = [
        f"Hidden symmetries of {group}-equivariant MLPs R^{G.degree} -> hidden -> R "
        f"(`{command}`).",
        "",
        "| hidden rep | pieces | width | dim E_ρ (of D) | C(ρ) | closed form | signed | "
        "conjugate slices |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for spec in specs:
        rep = er.reps.parse(G, spec)
        hs = hidden_symmetry_group(rep)
        info = _symmetry_info(G, rep)
        lines.append(
            f"| `{spec}` | {info['rep']} | {rep.dim} | {info['dim_E']} "
            f"({info['n_params']}) | {hs.order} | {hs.formula_order} | "
            f"{hs.signed_order} | {hs.n_hyperplanes} |"
        )
    return "\n".join(lines)


# -- CLI ---------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """``teacher-student`` (the kit's options, presets and one option per
    :class:`StudyConfig` field) and ``symmetries`` subcommands."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    ts = sub.add_parser("teacher-student", help="exact vs relaxed students, detection, Hessians",
                        description="exact vs relaxed students, detection, Hessians",
                        formatter_class=DefaultsHelpFormatter)
    add_preset_options(ts, PRESETS, DEFAULT_PRESET)
    add_common_options(ts, "landscape", lightning=False, seeds_default=None, threads_default=1)
    add_config_options(ts, StudyConfig, exclude=("seeds",))
    sy = sub.add_parser("symmetries", help="hidden-symmetry groups of hidden reps",
                        description="hidden-symmetry groups of hidden reps",
                        formatter_class=DefaultsHelpFormatter)
    sy.add_argument("--group", default="S3", help="S3, A4, C5, D4, ...")
    sy.add_argument("--reps", nargs="+", default=["natural", "3*trivial", "regular"],
                    help="hidden reps, e.g. natural '3*trivial' regular pairs")
    sy.add_argument("--out", type=Path, default=None,
                    help="also write symmetries_<group>.md (and the index) here")


def config_from_options(args: argparse.Namespace) -> StudyConfig:
    """The config of a ``teacher-student`` command: the preset's values, then every option
    given."""
    overrides = {"seeds": tuple(args.seeds)} if args.seeds is not None else {}
    return config_from_args(args, StudyConfig, PRESETS, chosen_preset(args, DEFAULT_PRESET),
                            **overrides)


def main(args: argparse.Namespace) -> int:
    """Run a landscape subcommand."""
    if args.command == "symmetries":
        guards.require_writable({"--out": args.out})
        text = symmetries_table(args.group, args.reps, record_command(args))
        print(text)
        if args.out:
            (args.out / f"symmetries_{args.group}.md").write_text(text + "\n")
            write_index(args.out)
        return 0
    preset = chosen_preset(args, DEFAULT_PRESET)
    cfg = config_from_options(args)
    threads = torch.get_num_threads()
    # --fresh deletes this study's checkpoints only (run_study), not the other settings' ones
    # that share the runs folder
    out, runs_dir = prepare_folders(argparse.Namespace(**{**vars(args), "fresh": False}),
                                    "landscape", preset)
    try:
        result = run_study(cfg, runs_dir, fresh=args.fresh, command=record_command(args),
                           progress=args.progress)
    finally:
        torch.set_num_threads(threads)
    if preset == "quick":
        result = {"smoke_test": guards.SMOKE_TEST_NOTE, **result}
    paths = write_outputs(result, out)
    print(table(result))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="equirelax landscape", description=__doc__,
                                formatter_class=DefaultsHelpFormatter)
    configure(p)
    parsed = p.parse_args()
    parsed.argv = ["landscape", *sys.argv[1:]]  # the command recorded with the results
    sys.exit(main(parsed))
