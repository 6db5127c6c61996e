"""Settings of the teacher–student landscape study: the configuration (one command-line option
per field), its presets, the file stem and settings hash that name a study's outputs and
checkpoints, and the kind that marks its results files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from equirelax.experiments.kit.argtypes import non_negative_int, positive_float
from equirelax.experiments.kit.options import schedule_names

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


def cfg_tag(result: dict) -> str:
    """The output stem of a result."""
    return StudyConfig(**result["config"]).tag()
