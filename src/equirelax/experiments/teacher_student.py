"""Teacher–student regression on permutation-symmetric data: where equivariant training gets stuck.

A teacher is an equivariant MLP with a chosen hidden permutation rep ρ_T; students are equivariant
MLPs with hidden rep ρ_S trained on data that is exactly G-symmetric (every sample appears with
all its images under G). The setting follows the CPU reproduction in the notes on Xie & Smidt
(2025): with S3 acting on R^3, a width-3 tanh teacher of type S3/S2, exactly equivariant students
often stop at poor critical points. This module builds the pieces; ``relax_comparison`` trains
exact and relaxed-then-hardened students from the same seeds and tabulates them, together with
the baselines whose hidden rep is the teacher's (a student whose hidden rep cannot express the
teacher fails by construction, whatever the training).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import equirelax as er
from equirelax.experiments.kit import guards, tables
from equirelax.experiments.kit.argtypes import fraction, non_negative_int, positive_float
from equirelax.groups import PermutationGroup
from equirelax.relaxation import harden, relax
from equirelax.reps import Rep


def _setting(default, help_text: str, **meta):
    """A config field with its command-line help (and ``type=`` check) in its metadata."""
    return field(default=default, metadata={"help": help_text, **meta})


@dataclass
class TeacherStudentConfig:
    """Settings of one teacher–student comparison (defaults: the S3 case of the notes). Every
    field is an option of ``equirelax relax`` (its metadata: help and check)."""

    group: str = _setting("S3", "S3, A4, C5, D4, ...")
    teacher_rep: str = _setting("natural", "the teacher's hidden rep, e.g. natural, 2*natural")
    student_rep: str = _setting("natural", "the students' hidden rep, e.g. 3*trivial")
    activation: str = _setting("tanh", "activation of the hidden layer")
    n_base: int = _setting(1024, "base samples (each appears with all its group images)")
    n_test: int = _setting(2048, "test samples")
    steps: int = _setting(4000, "full-batch Adam steps of the exact and relaxed arms")
    lr: float = _setting(3e-3, "Adam learning rate", type=positive_float)
    seeds: list[int] = field(default_factory=lambda: list(range(10)),
                             metadata={"help": "seed values"})
    lie_weight: float = _setting(1e-2, "weight of the Lie-derivative penalty")
    norm_weight: float = _setting(1e-2, "weight of the free terms' norm penalty")
    schedule: str = _setting("triangular", "schedule θ(t) of the relaxed arms")
    relax_fraction: float = _setting(1.0, "fraction of the steps the schedule spans (then "
                                          "θ = 0)", type=fraction)
    escape_steps: int = _setting(0, "> 0 adds the arm: exact, then relaxed with θ = 1, "
                                    "hardened onto the detected hidden rep",
                                 type=non_negative_int)
    drop_arm: bool = _setting(True, "train the relaxed → drop arms")
    teacher_rep_arms: bool = _setting(True, "the baselines whose hidden rep is the teacher's "
                                            "(when the students' is not)")
    free_init_std: float = _setting(1e-2, "std of the free terms' initialisation")
    init_scale: float = _setting(1.0, "scale of the students' initial coefficients",
                                 type=positive_float)
    success_rel_mse: float = _setting(2e-3, "a seed is solved at test MSE <= this · "
                                            "Var(y_test)", type=positive_float)
    data_seed: int = _setting(1234, "seed of the training and test data",
                              type=non_negative_int)


def reference_teacher(
    G: PermutationGroup, rep_hidden: Rep, activation: str
) -> er.nn.EquivariantMLP:
    """The teacher: for S_n with natural hidden rep the fixed network of the notes,
    f(x) = Σ_i 1.5 tanh(2 x_i − 0.7 Σ_j x_j + 0.3) + 0.1; otherwise a seeded random one."""
    rep_in, rep_out = er.reps.natural(G), er.reps.trivial(G)
    teacher = er.nn.EquivariantMLP(rep_in, [rep_hidden], rep_out, activation=activation)
    teacher = teacher.double()
    first, last = teacher.linears
    n = G.degree
    with torch.no_grad():
        if rep_hidden == er.reps.natural(G) and G.order == math.factorial(n):
            w1 = 2.0 * torch.eye(n, dtype=torch.float64) - 0.7
            first.coefficients.copy_(first.hom.coefficients(w1))
            first.bias_coefficients.fill_(0.3)
            last.coefficients.fill_(1.5)
            last.bias_coefficients.fill_(0.1)
        else:
            gen = torch.Generator().manual_seed(7)
            for layer in (first, last):
                layer.coefficients.copy_(
                    torch.randn(layer.hom.dim, generator=gen, dtype=torch.float64) * 1.5
                )
                layer.bias_coefficients.copy_(
                    torch.randn(layer.bias_space.dim, generator=gen, dtype=torch.float64) * 0.3
                )
    return teacher


def symmetric_data(G: PermutationGroup, n: int, seed: int) -> torch.Tensor:
    """n Gaussian points in R^degree, each with all |G| of its images: exactly G-symmetric."""
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, G.degree)))
    elements = torch.from_numpy(G.elements())
    inverse = torch.argsort(elements, dim=1)
    # (g x)[g(i)] = x[i]  <=>  (g x)[j] = x[g^-1(j)]
    return x[:, inverse].reshape(-1, G.degree)


def train_student(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float,
    relaxed=None,
    desc: str = "train",
    progress: bool = True,
) -> list[float]:
    """Full-batch Adam on MSE; with ``relaxed`` the penalty is added and θ stepped
    (``progress``: a progress bar)."""
    net = relaxed if relaxed is not None else model
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    bar = tqdm(range(steps), desc=desc, leave=False, mininterval=0.5, disable=not progress)
    for _ in bar:
        opt.zero_grad(set_to_none=True)
        mse = torch.mean((net(x).squeeze(-1) - y) ** 2)
        loss = mse + relaxed.penalty() if relaxed is not None else mse
        loss.backward()
        opt.step()
        if relaxed is not None:
            relaxed.step()
        losses.append(mse.item())
    return losses


def _student(
    cfg: TeacherStudentConfig, G: PermutationGroup, seed: int, hidden: str | None = None
) -> er.nn.EquivariantMLP:
    """The seeded student with hidden rep ``hidden`` (default: the configured student rep)."""
    torch.manual_seed(seed)
    student = er.nn.EquivariantMLP(
        er.reps.natural(G), [er.reps.parse(G, hidden or cfg.student_rep)], er.reps.trivial(G),
        activation=cfg.activation,
    ).double()
    with torch.no_grad():
        for layer in student.linears:
            layer.coefficients.mul_(cfg.init_scale)
    return student


def _mse(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.mean((model(x).squeeze(-1) - y) ** 2))


def _relax_then_drop(
    cfg: TeacherStudentConfig, G: PermutationGroup, seed: int, hidden: str | None,
    x: torch.Tensor, y: torch.Tensor, progress: bool = True,
) -> tuple[list[float], torch.nn.Module]:
    """The paper's recipe on the seeded student with hidden rep ``hidden``: relaxed with
    ``cfg.schedule`` over the first ``relax_fraction`` of all steps, free terms dropped at the
    end. Returns the training curve and the hardened model."""
    total = cfg.steps + cfg.escape_steps
    start = _student(cfg, G, seed, hidden)
    torch.manual_seed(10_000 + seed)
    relaxed = relax(start, schedule=cfg.schedule,
                    total_steps=max(1, round(cfg.relax_fraction * total)),
                    lie_weight=cfg.lie_weight, norm_weight=cfg.norm_weight,
                    init_std=cfg.free_init_std)
    name = "relaxed" if hidden is None else "relaxed_teacher"
    curve = train_student(start, x, y, total, cfg.lr, relaxed=relaxed, desc=f"{name} {seed}",
                          progress=progress)
    return curve, harden(relaxed, mode="drop")


def relax_comparison(cfg: TeacherStudentConfig, out_dir: Path | None = None,
                     progress: bool = True) -> dict:
    """Train the students of every arm from each seed; return per-seed results and a summary
    (``progress``: progress bars).

    Every arm starts from the same initial equivariant weights and uses the same data, optimiser
    and total number of steps; every final model is exactly equivariant.

    * ``exact``: the equivariant student trained throughout.
    * ``relaxed``: the paper's recipe — relaxed with ``schedule`` over the first
      ``relax_fraction`` of the steps (θ then held at 0, so the rest trains the exact model),
      hardened by dropping the free terms: same architecture as ``exact``.
    * ``exact_teacher`` / ``relaxed_teacher`` (when ``teacher_rep_arms`` and the student's
      hidden rep is not the teacher's): the same two recipes on a student whose hidden rep *is*
      the teacher's. They are the baselines of ``escape``, which changes the hidden rep: a
      ``3*trivial`` student computes a function of Σx only, so ``exact`` and ``relaxed`` fail
      on it by construction.
    * ``escape`` (when ``escape_steps > 0``): the exact student's end point relaxed with θ = 1
      and no penalty (the free terms' random init breaks the symmetry), then hardened with
      ``mode="detected"``: projected onto the hidden representation the relaxed weights
      satisfy. Xie & Smidt (2025) report that relaxation lands on another hidden rep; hardening
      onto it is equirelax's extension. Same widths and class, possibly another hidden rep.
      When no representation is detected the arm falls back to dropping the free terms.

    Success is relative to the target: test MSE / Var(y_test) <= ``success_rel_mse``.
    """
    G = er.groups.from_name(cfg.group)
    teacher = reference_teacher(G, er.reps.parse(G, cfg.teacher_rep), cfg.activation)
    x = symmetric_data(G, cfg.n_base, cfg.data_seed)
    x_test = torch.from_numpy(
        np.random.default_rng(cfg.data_seed + 1).standard_normal((cfg.n_test, G.degree))
    )
    with torch.no_grad():
        y, y_test = teacher(x).squeeze(-1), teacher(x_test).squeeze(-1)
    total = cfg.steps + cfg.escape_steps
    teacher_arms = cfg.teacher_rep_arms and (er.reps.parse(G, cfg.student_rep)
                                             != er.reps.parse(G, cfg.teacher_rep))
    rows = []
    for seed in tqdm(cfg.seeds, desc=f"seeds ({cfg.group})", disable=not progress):
        guards.mark(f"seed {seed}")
        row: dict = {"seed": seed}
        finals: dict[str, torch.nn.Module] = {}
        curves: dict[str, list[float]] = {}

        exact = _student(cfg, G, seed)
        curves["exact"] = train_student(exact, x, y, cfg.steps, cfg.lr, desc=f"exact {seed}",
                                        progress=progress)
        escape_start = copy.deepcopy(exact)
        if cfg.escape_steps:
            curves["exact"] += train_student(exact, x, y, cfg.escape_steps, cfg.lr,
                                             desc=f"exact {seed} (cont.)", progress=progress)
        finals["exact"] = exact

        if cfg.drop_arm:
            curves["relaxed"], finals["relaxed"] = _relax_then_drop(cfg, G, seed, None, x, y,
                                                                    progress)
        if teacher_arms:
            # the baselines with the teacher's hidden rep, trained for as many steps
            baseline = _student(cfg, G, seed, cfg.teacher_rep)
            curves["exact_teacher"] = train_student(baseline, x, y, total, cfg.lr,
                                                    desc=f"exact_teacher {seed}",
                                                    progress=progress)
            finals["exact_teacher"] = baseline
            if cfg.drop_arm:
                curves["relaxed_teacher"], finals["relaxed_teacher"] = _relax_then_drop(
                    cfg, G, seed, cfg.teacher_rep, x, y, progress)

        if cfg.escape_steps:
            torch.manual_seed(20_000 + seed)
            escaping = relax(escape_start, schedule="constant", value=1.0, lie_weight=0.0,
                             norm_weight=0.0, init_std=cfg.free_init_std)
            curves["escape"] = curves["exact"][: cfg.steps] + train_student(
                escape_start, x, y, cfg.escape_steps, cfg.lr, relaxed=escaping,
                desc=f"escape {seed}", progress=progress)
            row["escape_relaxed_mse"] = curves["escape"][-1]
            try:
                finals["escape"] = harden(escaping, mode="detected")
                row["escape_detected"] = True
            except ValueError:
                finals["escape"] = harden(escaping, mode="drop")
                row["escape_detected"] = False
            row["escape_hidden_rep"] = repr(finals["escape"].hidden_reps[0])
            # back onto the *original* hidden rep, two ways: dropping the free terms, and
            # folding their equivariant part into the layers (the orthogonal projection)
            row["escape_original_drop_mse"] = _mse(harden(escaping, mode="drop"),
                                                   x_test, y_test)
            row["escape_original_project_mse"] = _mse(harden(escaping, mode="project"),
                                                      x_test, y_test)

        row["arms_run"] = list(finals)
        for arm, model in finals.items():
            row[f"{arm}_train_mse"] = _mse(model, x, y)
            row[f"{arm}_test_mse"] = _mse(model, x_test, y_test)
            row[f"{arm}_equivariance_error"] = er.equivariance_error(model, x_test[:64])
            row[f"curve_{arm}"] = curves[arm][:: max(1, total // 200)]
        rows.append(row)
    arms = [a for a in ARMS if a in rows[0]["arms_run"]] if rows else []
    for row in rows:
        del row["arms_run"]
    result = {"config": asdict(cfg), "target_variance": float(y.var()),
              "test_target_variance": float(y_test.var()), "arms": arms, "runs": rows}
    result["summary"] = summarise(result)
    if out_dir is not None:
        write_outputs(result, out_dir)
    return result


ARMS = ("exact", "relaxed", "exact_teacher", "relaxed_teacher", "escape")
ARM_NAMES = {
    "exact": "exact",
    "relaxed": "relaxed → drop (paper)",
    "exact_teacher": "exact, teacher's hidden rep",
    "relaxed_teacher": "relaxed → drop, teacher's hidden rep",
    "escape": "exact → relaxed θ=1 → detected (equirelax)",
}


def success_threshold(result: dict) -> float:
    """The test MSE that counts as solved: ``success_rel_mse`` · Var(y_test) (relative to the
    target, so that a target of variance 68 and one of variance 0.5 are judged alike)."""
    return float(result["config"]["success_rel_mse"]) * float(result["test_target_variance"])


def summarise(result: dict) -> dict:
    """Per arm, the mean (the study kit's :func:`~equirelax.experiments.kit.tables.summarise`)
    and median test MSE, the success count and the largest equivariance error; per arm beside
    ``exact``, the seeds it solved where the exact arm failed and the reverse (paired by
    seed)."""
    threshold = success_threshold(result)
    records = [{"variant": arm, "seed": r["seed"], "test_mse": r[f"{arm}_test_mse"],
                "equivariance_error": r[f"{arm}_equivariance_error"]}
               for arm in result["arms"] for r in result["runs"]]
    stats = tables.summarise(records, ["test_mse", "equivariance_error"])["variants"]
    out: dict = {}
    ok = {}
    for arm in result["arms"]:
        test = np.array([r[f"{arm}_test_mse"] for r in result["runs"]])
        ok[arm] = test <= threshold
        out[arm] = {
            "mean_test_mse": stats[arm]["test_mse"]["mean"],
            "median_test_mse": float(np.median(test)),
            "successes": int(ok[arm].sum()),
            "max_equivariance_error": float(stats[arm]["equivariance_error"]["max"]),
        }
    for arm in result["arms"][1:]:
        out[arm]["solved_where_exact_failed"] = int((ok[arm] & ~ok["exact"]).sum())
        out[arm]["failed_where_exact_solved"] = int((~ok[arm] & ok["exact"]).sum())
    return out


def table(result: dict) -> str:
    """A markdown table of the per-seed results and the summary (headed by the smoke-test
    note when ``result["smoke_test"]`` holds one)."""
    cfg = result["config"]
    arms = result["arms"]
    total = cfg["steps"] + cfg["escape_steps"]
    lines = [f"**{result['smoke_test']}**", ""] if result.get("smoke_test") else []
    lines += [
        f"Teacher–student on {cfg['group']}: teacher hidden rep `{cfg['teacher_rep']}`, student "
        f"hidden rep `{cfg['student_rep']}`, {cfg['activation']}, {total} full-batch Adam "
        f"steps per arm (lr {cfg['lr']})"
        + (f"; `relaxed`: `{cfg['schedule']}` schedule over the first "
           f"{cfg['relax_fraction']:.0%} of the steps, lie_weight {cfg['lie_weight']}, "
           f"norm_weight {cfg['norm_weight']}, free terms dropped at the end"
           if "relaxed" in arms else "")
        + (f"; `exact_teacher`/`relaxed_teacher`: the same recipes on students whose hidden rep "
           f"is the teacher's (`{cfg['teacher_rep']}`)" if "exact_teacher" in arms else "")
        + (f"; `escape`: {cfg['steps']} exact steps, then {cfg['escape_steps']} steps relaxed "
           "with θ = 1, hardened onto the detected hidden rep (equirelax's extension of Xie & "
           "Smidt 2025: they report that relaxation lands on another hidden rep; hardening "
           "onto it is ours)" if "escape" in arms else "")
        + f". Target variance {result['target_variance']:.4f}. All final models exactly "
        "equivariant (error column).",
        "",
        "| seed | " + " | ".join(f"{ARM_NAMES[a]} test MSE" for a in arms)
        + " | max equivariance error |",
        "|---:|" + "---:|" * (len(arms) + 1),
    ]
    for r in result["runs"]:
        cells = [f"{r[f'{a}_test_mse']:.3e}" for a in arms]
        if "escape" in arms:
            cells[-1] += f" ({r['escape_hidden_rep']})"
        err = max(r[f"{a}_equivariance_error"] for a in arms)
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + f" | {err:.1e} |")
    s = result["summary"]
    lines += [
        "",
        f"| arm | mean test MSE | median test MSE | seeds with MSE <= "
        f"{cfg['success_rel_mse']:g} · Var(y_test) = {success_threshold(result):.3g} "
        "| solved where exact failed | failed where exact solved |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arm in arms:
        a = s[arm]
        lines.append(f"| {ARM_NAMES[arm]} | {a['mean_test_mse']:.3e} | "
                     f"{a['median_test_mse']:.3e} | {a['successes']}/{len(result['runs'])} | "
                     f"{a.get('solved_where_exact_failed', '–')} | "
                     f"{a.get('failed_where_exact_solved', '–')} |")
    if "escape" in arms:
        drop = np.median([r["escape_original_drop_mse"] for r in result["runs"]])
        proj = np.median([r["escape_original_project_mse"] for r in result["runs"]])
        lines += ["", "Hardening the escaped networks onto the *original* hidden rep instead "
                  f"gives median test MSE {drop:.3e} by dropping the free terms "
                  f"(`harden(mode=\"drop\")`) and {proj:.3e} by projecting them onto it "
                  f"(`harden(mode=\"project\")`)."]
    return "\n".join(lines)


def write_outputs(result: dict, out_dir: Path, command: str | None = None) -> None:
    """Write results JSON and the markdown table (the study kit's
    :func:`~equirelax.experiments.kit.tables.write_results`, headed by ``command``) and a plot
    of training curves into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = f"relax_teacher_student_{result['config']['group']}"
    head = tables.command_lines(command) if command else []
    tables.write_results(out_dir, stem, {k: v for k, v in result.items() if k != "smoke_test"},
                         [*head, table(result), ""], command or "",
                         smoke_test="smoke_test" in result)
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {"exact": "tab:blue", "relaxed": "tab:orange", "exact_teacher": "tab:purple",
               "relaxed_teacher": "tab:brown", "escape": "tab:green"}
    total = result["config"]["steps"] + result["config"]["escape_steps"]
    for r in result["runs"]:
        for arm in result["arms"]:
            curve = r[f"curve_{arm}"]
            ax.semilogy(np.linspace(0, total, len(curve)), curve, color=colours[arm], alpha=0.6,
                        lw=1)
    for arm in result["arms"]:
        ax.plot([], [], color=colours[arm], label=f"{ARM_NAMES[arm]} (training loss)")
    ax.set_xlabel("step")
    ax.set_ylabel("train MSE")
    ax.set_title(f"{result['config']['group']} teacher–student: exact vs relaxed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}.png", dpi=110)
    plt.close(fig)
