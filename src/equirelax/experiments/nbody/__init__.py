"""``equirelax nbody``: constraint relaxation on charged N-body with EGNN and SEGNN.

The study of the constraint-relaxation paper that can be reproduced from locally generated
data: predict the positions of 5 charged particles 1000 integrator steps ahead
(``equirelax.data.nbody``) with an exactly E(3)-equivariant EGNN or SEGNN, trained either as
is ("exact") or relaxed with the public ``equirelax.relaxation.relax`` API and hardened back to
the same exact architecture at the end ("relaxed", and the paper's ablations of it). The
variants of a comparison use the same seed (same initial weights, same data, same batch order,
same rotations), the same optimiser and the same number of epochs; validation and test always
run the exact (θ = 0) model.

What is relaxed is what the models declare (``rep_in``/``rep_out``): the two node-update maps
of every SEGNN layer (as in the paper) and the node/position update of every EGNN layer (see
``docs/nbody.md``). The relaxation schedule is stepped once per epoch, as in the paper.

Presets (``--preset``, ``--quick``): ``paper`` (3000 training samples, 1000 epochs, 3 seeds),
``cpu`` (the largest budget run on a 2-core CPU), ``quick`` (a few minutes). Every option
overrides its preset value. Sweeps of the paper's figure: ``--sweep layers`` or
``--sweep train-size`` with ``--sweep-values``. ``--devices N`` trains each run with DDP on N
processes (gloo on CPU, NCCL on GPUs), ``--num-nodes`` scales to several nodes.

Outputs: checkpoints and Lightning logs (CSV, TensorBoard) under ``--runs-dir``; a results JSON
per run, a results table (mean ± std over seeds) and plots of validation MSE per epoch, or the
sweep table and plot, under ``--out`` (both default to folders named by ``--tag``, else the
preset). Every table names the command that wrote it. Rerunning a command resumes every
unfinished run from its last checkpoint (``--fresh`` starts them afresh; ``--stop-after K``
ends each run after K more epochs, for time-sliced jobs).

The package, by concern: :mod:`.config` (variants, presets, the configuration),
:mod:`.sampler` (random rotations), :mod:`.data`, :mod:`.models`, :mod:`.metrics`
(equivariance error, free-term sizes, test-error profile), :mod:`.callbacks`,
:mod:`.training` (one run), :mod:`.tables`, :mod:`.plots`, :mod:`.study` (every run of a
command, ``--jobs``, ``--report-only``) and :mod:`.cli`.
"""

from equirelax.experiments.nbody.cli import configure, main, resolve
from equirelax.experiments.nbody.config import (
    MODELS,
    PRESETS,
    VARIANTS,
    StudyConfig,
    arm_relaxation,
    run_name,
    run_settings,
)
from equirelax.experiments.nbody.metrics import e3_equivariance_error
from equirelax.experiments.nbody.models import build_model, mse, predict
from equirelax.experiments.nbody.sampler import RandomRotations, random_orthogonal
from equirelax.experiments.nbody.study import run_study
from equirelax.experiments.nbody.tables import summarise
from equirelax.experiments.nbody.training import epochs_checkpointed, train_one

__all__ = [
    "MODELS",
    "PRESETS",
    "VARIANTS",
    "RandomRotations",
    "StudyConfig",
    "arm_relaxation",
    "build_model",
    "configure",
    "e3_equivariance_error",
    "epochs_checkpointed",
    "main",
    "mse",
    "predict",
    "random_orthogonal",
    "resolve",
    "run_name",
    "run_settings",
    "run_study",
    "summarise",
    "train_one",
]
