import json
import os
import signal

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import equirelax as er
from equirelax.experiments.kit.guards import CheckpointError, RunInterruptedError
from equirelax.experiments.kit.runner import RunConfig, fit, read_curve


def _setup(seed=0):
    G = er.groups.symmetric(4)
    V, T = er.reps.natural(G), er.reps.trivial(G)
    torch.manual_seed(seed)
    x = torch.randn(96, 4)
    y = torch.tanh(x).sum(-1, keepdim=True)
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=32)
    model = er.nn.EquivariantMLP(V, [2 * V], T, activation="tanh")
    return model, train, val


def _step(model, batch):
    x, y = batch
    return model(x), y


def _mse(p, t):
    return torch.mean((p - t) ** 2)


class _StopAfter(pl.Callback):
    """Ends a run after ``epochs`` epochs (its last checkpoint kept), as a time-sliced job does."""

    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def test_relaxed_run_checkpoints_resumes_and_ends_exact(tmp_path):
    model, train, val = _setup()
    cfg = RunConfig(epochs=4, lr=1e-2, relax="triangular", out_dir=str(tmp_path / "run"),
                    progress=False)
    task, res = fit(model, train, val, val, _step, _mse, cfg, callbacks=[_StopAfter(2)])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert list((tmp_path / "run" / "csv").glob("version_*/metrics.csv"))
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test"]["test/loss"] > 0
    assert res["resumed_from"] is None
    assert task.relaxed.t > 0
    exact = task.exact_model()
    assert type(exact) is type(model)
    assert er.equivariance_error(exact, torch.randn(8, 4)) < 1e-12

    # a different number of epochs is another schedule: its step would mean another θ
    model_long, train_long, val_long = _setup()
    cfg_long = RunConfig(epochs=8, lr=1e-2, relax="triangular", out_dir=str(tmp_path / "run"),
                         progress=False)
    with pytest.raises(ValueError, match=r"\(total 16 != 32\): its step 8 would mean another θ"):
        fit(model_long, train_long, val_long, None, _step, _mse, cfg_long)

    # resume: the two remaining epochs continue the schedule from the checkpoint
    model2, train2, val2 = _setup()
    cfg2 = RunConfig(epochs=4, lr=1e-2, relax="triangular", out_dir=str(tmp_path / "run"),
                     progress=False)
    task2, res2 = fit(model2, train2, val2, None, _step, _mse, cfg2)
    assert res2["resumed_from"] is not None
    assert task2.relaxed is not None
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["state_dict"]["net._extra_state"]["t"] == 4 * len(train2)  # 4 epochs in all
    assert len(res2["val_curve"]) >= 3


def test_exact_run(tmp_path):
    model, train, val = _setup()
    cfg = RunConfig(epochs=1, lr=1e-2, out_dir=str(tmp_path / "exact"), progress=False)
    task, res = fit(model, train, val, val, _step, _mse, cfg,
                    metrics={"mae": lambda p, t: (p - t).abs().mean()})
    assert task.relaxed is None
    assert "test/mae" in res["test"]


def test_study_callbacks_see_and_can_change_each_training_batch(tmp_path):
    class ZeroTargets(pl.Callback):
        """Replaces every training target by 0 in place, before training_step sees it."""

        def __init__(self):
            self.calls = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.calls += 1
            batch[1].zero_()

    model, train, val = _setup()
    seen = []

    def step(m, batch):
        if m.training:
            seen.append(float(batch[1].abs().max()))
        return _step(m, batch)

    callback = ZeroTargets()
    cfg = RunConfig(epochs=1, lr=1e-2, out_dir=str(tmp_path / "cb"), progress=False)
    fit(model, train, val, None, step, _mse, cfg, callbacks=[callback])
    assert callback.calls == len(train) and seen == [0.0] * len(train)


def test_last_checkpoint_is_the_latest_epoch_even_without_improvement(tmp_path):
    """Validation targets that training moves away from: the best epoch is an early one, yet
    last.ckpt holds the final epoch, so resuming a finished run trains nothing more."""
    model, train, _ = _setup()
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(5))
    val = DataLoader(TensorDataset(x, -3 * torch.tanh(x).sum(-1, keepdim=True)), batch_size=32)
    cfg = RunConfig(epochs=4, lr=5e-2, out_dir=str(tmp_path / "run"), progress=False)
    _, res = fit(model, train, val, None, _step, _mse, cfg)
    curve = [loss for _, loss in res["val_curve"]]
    assert min(curve) < curve[-1]  # the last epoch is not the best one
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 3 and last["global_step"] == 4 * len(train)
    model2, train2, _ = _setup()
    _, res2 = fit(model2, train2, val, None, _step, _mse, cfg)
    assert res2["resumed_from"] is not None
    assert res2["best_val_loss"] == res["best_val_loss"]
    assert [v for _, v in res2["val_curve"]] == curve  # no epoch was trained again


# -- interruptions and damaged checkpoints ----------------------------------------------------
def _shuffled_setup():
    """The relaxed S4 regression with its training order drawn by EpochShuffle (4 batches an
    epoch), so a run can stop and resume between two batches."""
    from equirelax.experiments.kit.runner import EpochShuffle

    model, train, val = _setup()
    train = DataLoader(train.dataset, batch_size=16, sampler=EpochShuffle(64, seed=0))
    return model, train, val


class _SignalAt(pl.Callback):
    """Sends ``signum`` to this process after training batch ``step`` (a global step)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_between_batches_checkpoints_there_and_the_rerun_resumes_exactly(
        tmp_path, signum, status):
    """SIGTERM (or Ctrl-C) in the middle of epoch 1: training stops after that batch with
    RunInterruptedError naming the epoch, last.ckpt holds that very step and the position in
    the epoch, and the same run started again ends exactly where an uninterrupted run ends."""
    def cfg(name):
        return RunConfig(epochs=3, lr=1e-2, relax="triangular", out_dir=str(tmp_path / name),
                         progress=False)

    model, train, val = _shuffled_setup()
    fit(model, train, val, None, _step, _mse, cfg("whole"))
    model, train, val = _shuffled_setup()
    with pytest.raises(RunInterruptedError) as info:
        fit(model, train, val, None, _step, _mse, cfg("cut"), callbacks=[_SignalAt(6, signum)])
    assert str(info.value) == "interrupted at epoch 1; rerun the same command to resume"
    assert info.value.status == status
    ckpt = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=False)
    assert saved["global_step"] == 6 and saved["state_dict"]["net._extra_state"]["t"] == 6
    latest = next(k for k in saved["callbacks"] if k.startswith("LatestCheckpoint"))
    assert saved["callbacks"][latest]["position"] == [1, 2]
    model, train, val = _shuffled_setup()
    _, res = fit(model, train, val, None, _step, _mse, cfg("cut"))
    assert res["resumed_from"] == str(ckpt)
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)
    resumed = torch.load(ckpt, weights_only=False)
    assert resumed["global_step"] == whole["global_step"] == 12
    assert resumed["state_dict"].keys() == whole["state_dict"].keys()
    for key, value in whole["state_dict"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(resumed["state_dict"][key], value), key
        else:  # the schedule's position (extra state)
            assert resumed["state_dict"][key] == value, key
    whole_curve = read_curve(tmp_path / "whole" / "csv", "val/loss")
    assert read_curve(tmp_path / "cut" / "csv", "val/loss") == whole_curve


def test_a_truncated_checkpoint_is_named_with_how_to_start_afresh(tmp_path):
    model, train, val = _setup()
    cfg = RunConfig(epochs=1, lr=1e-2, out_dir=str(tmp_path / "run"), progress=False)
    fit(model, train, val, None, _step, _mse, cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100])
    model, train, val = _setup()
    with pytest.raises(CheckpointError, match=f"cannot read the checkpoint {last} .*truncated or "
                       "corrupt. Delete it to train this run afresh"):
        fit(model, train, val, None, _step, _mse, cfg)


def test_seed_each_step_keeps_penalty_draws_off_the_global_generator():
    """Subsampled penalties draw their rows in the forward; under SeedEachStep they come from a
    stream of their own, so a relaxed arm draws the dropout masks an exact arm draws, and the
    rows are a function of (seed, step), as a resumed run needs."""
    from types import SimpleNamespace

    from equirelax.experiments.kit.runner import SeedEachStep
    from equirelax.relaxation import relax

    model, _, _ = _setup()
    relaxed = relax(model, total_steps=10, penalty_rows=4).train()
    x = torch.randn(32, 4)
    seeding = SeedEachStep(7)

    def step(net, global_step):
        seeding.on_train_batch_start(SimpleNamespace(global_step=global_step), net, None, 0)
        net(x)
        after = torch.rand(4)  # a dropout mask drawn after the relaxed layers
        norm = float(relaxed.penalties()["norm"].detach()) if net is relaxed else None
        return after, norm

    exact_after, _ = step(model, 3)
    relaxed_after, norm = step(relaxed, 3)
    assert torch.equal(relaxed_after, exact_after)
    assert step(relaxed, 3)[1] == norm != step(relaxed, 4)[1]


class _Crash(pl.Callback):
    """Dies at the start of epoch ``epoch`` (after the previous epoch's checkpoint), as a job
    killed without warning does: no code after the fit runs."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("killed")


def test_training_time_is_kept_with_the_checkpoints_of_a_killed_run(tmp_path):
    out = tmp_path / "run"
    clock = out / "training_seconds.json"
    model, train, val = _setup()
    cfg = RunConfig(epochs=3, lr=1e-2, out_dir=str(out), progress=False)
    with pytest.raises(RuntimeError, match="killed"):
        fit(model, train, val, None, _step, _mse, cfg, callbacks=[_Crash(2)])
    kept = json.loads(clock.read_text())["seconds"]
    assert kept > 0  # two epochs' time, written with their checkpoints
    model, train, val = _setup()
    _, res = fit(model, train, val, None, _step, _mse, cfg)
    assert res["resumed_from"] is not None
    total = json.loads(clock.read_text())["seconds"]
    assert res["training_seconds"] == pytest.approx(total)
    assert total > kept
    # a finished run that is only restored adds nothing
    model, train, val = _setup()
    _, again = fit(model, train, val, None, _step, _mse, cfg)
    assert again["training_seconds"] == pytest.approx(total)
    assert json.loads(clock.read_text())["seconds"] == pytest.approx(total)
