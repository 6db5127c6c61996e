"""The teacher–student landscape study itself: the group, reps, teacher and data shared by all
seeds; one seed's pipeline (exact student trained inside E_ρS and refined to a critical point,
its Hessian, the relaxed student started there, detection of the hidden rep and the subgroup
it satisfies, the projections back onto E_ρS and onto the detected slice); and every seed of a
study, each saved as soon as it is done so that a rerun resumes."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import equirelax as er
from equirelax.experiments.kit import guards
from equirelax.experiments.landscape.config import RESULT_KIND, StudyConfig
from equirelax.experiments.landscape.records import hessian_record, piece_types, subgroup_record
from equirelax.experiments.landscape.summary import summarise
from equirelax.experiments.landscape.symmetries import symmetry_info
from equirelax.experiments.teacher_student import (
    reference_teacher,
    symmetric_data,
    train_student,
)
from equirelax.groups.subgroups import transitive_pieces
from equirelax.landscape import (
    EquivariantSubspace,
    MLPLayout,
    detect_hidden_rep,
    effective_mlp,
    equivariant_mlp,
    gradient_and_hessian,
    mse_loss,
    project_onto_detected,
    read_mlp,
)
from equirelax.relaxation import harden, relax


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
    record["hessian"] = hessian_record(space, layout, theta, x, y, cfg.rel_grad_tol)
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
            detection.success and piece_types(detection.layers[0].pieces) == data["teacher_types"]
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
        record["detected_hessian"] = hessian_record(
            space_d, layout, theta_d, x, y, cfg.rel_grad_tol
        )
    record["curve_exact"] = _curve(curve_exact)
    record["curve_relaxed"] = _curve(curve_relaxed)
    return record


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
        "teacher_types": piece_types(transitive_pieces(G, rep_t.images)),
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
        "teacher": symmetry_info(G, data["rep_t"]),
        "student": symmetry_info(G, er.reps.parse(G, cfg.student_rep)),
        "runs": runs,
    }
    result["summary"] = summarise(result)
    return result
