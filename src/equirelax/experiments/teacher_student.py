"""Teacher–student regression on permutation-symmetric data: where equivariant training gets stuck.

A teacher is an equivariant MLP with a chosen hidden permutation rep ρ_T; students are equivariant
MLPs with hidden rep ρ_S trained on data that is exactly G-symmetric (every sample appears with
all its images under G). The setting follows the CPU reproduction in the notes on Xie & Smidt
(2025): with S3 acting on R^3, a width-3 tanh teacher of type S3/S2, exactly equivariant students
often stop at poor critical points. This module builds the pieces; ``relax_comparison`` trains
exact and relaxed-then-hardened students from the same seeds and tabulates both.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import equirelax as er
from equirelax.groups import PermutationGroup
from equirelax.relaxation import harden, relax
from equirelax.reps import Rep


def parse_group(name: str) -> PermutationGroup:
    """'S3', 'A4', 'C5', 'D4' -> the group acting on its natural points."""
    kinds = {"S": er.groups.symmetric, "A": er.groups.alternating, "C": er.groups.cyclic,
             "D": er.groups.dihedral}
    if len(name) < 2 or name[0].upper() not in kinds or not name[1:].isdigit():
        raise ValueError(f"group must look like S3, A4, C5 or D4; got {name!r}")
    return kinds[name[0].upper()](int(name[1:]))


def parse_rep(G: PermutationGroup, spec: str) -> Rep:
    """A hidden rep from a spec: '+'-separated terms 'k*name' with name in natural, trivial,
    regular, or 'G/H' given as the order of a point stabiliser chain, e.g. '3*trivial',
    'natural', '2*natural+trivial', 'regular'."""
    terms = []
    for term in spec.replace(" ", "").split("+"):
        k, _, name = term.rpartition("*")
        mult = int(k) if k else 1
        if name == "natural":
            rep = er.reps.natural(G)
        elif name == "trivial":
            rep = er.reps.trivial(G)
        elif name == "regular":
            rep = er.reps.regular(G)
        elif name == "pairs":  # action on ordered pairs of distinct points
            rep = er.reps.quotient(G, G.stabilizer(0).stabilizer(1))
        else:
            raise ValueError(f"unknown rep {name!r} in {spec!r}; use natural, trivial, regular "
                             "or pairs, with multiplicities like 3*trivial")
        terms.append(mult * rep)
    return er.reps.direct_sum(terms)


@dataclass
class TeacherStudentConfig:
    """Settings of one teacher–student comparison (defaults: the S3 case of the notes)."""

    group: str = "S3"
    teacher_rep: str = "natural"
    student_rep: str = "natural"
    activation: str = "tanh"
    n_base: int = 1024
    n_test: int = 2048
    steps: int = 4000
    lr: float = 3e-3
    seeds: list[int] = field(default_factory=lambda: list(range(10)))
    lie_weight: float = 1e-2
    norm_weight: float = 1e-2
    schedule: str = "triangular"
    relax_fraction: float = 1.0
    free_init_std: float = 1e-2
    init_scale: float = 1.0
    success_mse: float = 1e-3
    data_seed: int = 1234


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
) -> list[float]:
    """Full-batch Adam on MSE; with ``relaxed`` the penalty is added and θ stepped."""
    net = relaxed if relaxed is not None else model
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    bar = tqdm(range(steps), desc=desc, leave=False, mininterval=0.5)
    for _ in bar:
        opt.zero_grad(set_to_none=True)
        mse = torch.mean((net(x).squeeze(-1) - y) ** 2)
        loss = mse + relaxed.penalty() if relaxed is not None else mse
        loss.backward()
        opt.step()
        if relaxed is not None:
            relaxed.step()
        losses.append(float(mse))
    return losses


def _student(cfg: TeacherStudentConfig, G: PermutationGroup, seed: int) -> er.nn.EquivariantMLP:
    torch.manual_seed(seed)
    student = er.nn.EquivariantMLP(
        er.reps.natural(G), [parse_rep(G, cfg.student_rep)], er.reps.trivial(G),
        activation=cfg.activation,
    ).double()
    with torch.no_grad():
        for layer in student.linears:
            layer.coefficients.mul_(cfg.init_scale)
    return student


def relax_comparison(cfg: TeacherStudentConfig, out_dir: Path | None = None) -> dict:
    """Train an exact and a relaxed-then-hardened student from each seed; return the results.

    Both start from the same initial equivariant weights and use the same data, optimiser and
    number of steps. The relaxation schedule spans the first ``relax_fraction`` of the steps
    (θ is then held at 0, so the rest trains the exact model). The relaxed student is hardened
    with ``mode="drop"`` (the paper), so both final models have the same architecture and are
    exactly equivariant.
    """
    G = parse_group(cfg.group)
    teacher = reference_teacher(G, parse_rep(G, cfg.teacher_rep), cfg.activation)
    x = symmetric_data(G, cfg.n_base, cfg.data_seed)
    x_test = torch.from_numpy(
        np.random.default_rng(cfg.data_seed + 1).standard_normal((cfg.n_test, G.degree))
    )
    with torch.no_grad():
        y, y_test = teacher(x).squeeze(-1), teacher(x_test).squeeze(-1)
    rows = []
    for seed in tqdm(cfg.seeds, desc=f"seeds ({cfg.group})"):
        exact = _student(cfg, G, seed)
        start = _student(cfg, G, seed)
        torch.manual_seed(10_000 + seed)
        relax_steps = max(1, round(cfg.relax_fraction * cfg.steps))
        relaxed = relax(start, schedule=cfg.schedule, total_steps=relax_steps,
                        lie_weight=cfg.lie_weight, norm_weight=cfg.norm_weight,
                        init_std=cfg.free_init_std)
        curve_exact = train_student(exact, x, y, cfg.steps, cfg.lr, desc=f"exact {seed}")
        curve_relaxed = train_student(start, x, y, cfg.steps, cfg.lr, relaxed=relaxed,
                                      desc=f"relaxed {seed}")
        hard = harden(relaxed, mode="drop")
        with torch.no_grad():
            row = {
                "seed": seed,
                "exact_train_mse": float(torch.mean((exact(x).squeeze(-1) - y) ** 2)),
                "exact_test_mse": float(torch.mean((exact(x_test).squeeze(-1) - y_test) ** 2)),
                "relaxed_train_mse": float(torch.mean((hard(x).squeeze(-1) - y) ** 2)),
                "relaxed_test_mse": float(torch.mean((hard(x_test).squeeze(-1) - y_test) ** 2)),
            }
        row["exact_equivariance_error"] = er.equivariance_error(exact, x_test[:64])
        row["relaxed_equivariance_error"] = er.equivariance_error(hard, x_test[:64])
        row["curve_exact"] = curve_exact[:: max(1, cfg.steps // 200)]
        row["curve_relaxed"] = curve_relaxed[:: max(1, cfg.steps // 200)]
        rows.append(row)
    result = {"config": asdict(cfg), "target_variance": float(y.var()), "runs": rows}
    result["summary"] = summarise(result)
    if out_dir is not None:
        write_outputs(result, out_dir)
    return result


def summarise(result: dict) -> dict:
    """Mean/median test MSE and success counts for both arms."""
    cfg = result["config"]
    out = {}
    for arm in ("exact", "relaxed"):
        test = np.array([r[f"{arm}_test_mse"] for r in result["runs"]])
        out[arm] = {
            "mean_test_mse": float(test.mean()),
            "median_test_mse": float(np.median(test)),
            "successes": int((test <= cfg["success_mse"]).sum()),
            "max_equivariance_error": float(
                max(r[f"{arm}_equivariance_error"] for r in result["runs"])
            ),
        }
    exact = np.array([r["exact_test_mse"] for r in result["runs"]])
    relaxed = np.array([r["relaxed_test_mse"] for r in result["runs"]])
    ok_exact, ok_relaxed = exact <= cfg["success_mse"], relaxed <= cfg["success_mse"]
    # a seed counts for an arm when that arm solved the task and the other did not
    out["relaxed_better"] = int((ok_relaxed & ~ok_exact).sum())
    out["exact_better"] = int((ok_exact & ~ok_relaxed).sum())
    return out


def table(result: dict) -> str:
    """A markdown table of the per-seed results and the summary."""
    cfg = result["config"]
    lines = [
        f"Teacher–student on {cfg['group']}: teacher hidden rep `{cfg['teacher_rep']}`, student "
        f"hidden rep `{cfg['student_rep']}`, {cfg['activation']}, {cfg['steps']} full-batch Adam "
        f"steps (lr {cfg['lr']}), relaxation `{cfg['schedule']}` with lie_weight "
        f"{cfg['lie_weight']}, norm_weight {cfg['norm_weight']}, hardened by dropping the free "
        f"terms. Target variance {result['target_variance']:.4f}.",
        "",
        "| seed | exact test MSE | relaxed→hardened test MSE | equiv. error (exact / hardened) |",
        "|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['seed']} | {r['exact_test_mse']:.3e} | {r['relaxed_test_mse']:.3e} | "
            f"{r['exact_equivariance_error']:.1e} / {r['relaxed_equivariance_error']:.1e} |"
        )
    s = result["summary"]
    lines += [
        "",
        "| arm | mean test MSE | median test MSE | seeds with MSE <= "
        f"{cfg['success_mse']:g} |",
        "|---|---:|---:|---:|",
    ]
    for arm in ("exact", "relaxed"):
        a = s[arm]
        lines.append(f"| {arm} | {a['mean_test_mse']:.3e} | {a['median_test_mse']:.3e} | "
                     f"{a['successes']}/{len(result['runs'])} |")
    lines += ["", f"Seeds solved (test MSE <= {cfg['success_mse']:g}) only by the relaxed "
              f"student: {s['relaxed_better']}; only by the exact student: {s['exact_better']}."]
    return "\n".join(lines)


def write_outputs(result: dict, out_dir: Path, command: str | None = None) -> None:
    """Write results JSON, the markdown table and a plot of training curves into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"relax_teacher_student_{result['config']['group']}"
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1))
    md = table(result)
    if command:
        md = f"Reproduce with `{command}`.\n\n" + md
    (out_dir / f"{stem}.md").write_text(md + "\n")
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in result["runs"]:
        steps = np.linspace(0, result["config"]["steps"], len(r["curve_exact"]))
        ax.semilogy(steps, r["curve_exact"], color="tab:blue", alpha=0.6, lw=1)
        ax.semilogy(steps, r["curve_relaxed"], color="tab:orange", alpha=0.6, lw=1)
    ax.plot([], [], color="tab:blue", label="exact")
    ax.plot([], [], color="tab:orange", label="relaxed (training loss, θ>0)")
    ax.set_xlabel("step")
    ax.set_ylabel("train MSE")
    ax.set_title(f"{result['config']['group']} teacher–student: exact vs relaxed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}.png", dpi=110)
    plt.close(fig)
