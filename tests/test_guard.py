"""The NaN guard (issue 15): non-finite steps are skipped and not counted, divergence stops
training with one line, and no checkpoint ever holds the diverged weights."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from hmrkit.models.methods.hmr import HMR
from tests.helpers import tiny_train


def _errors(text: str) -> list[str]:
    assert "Traceback" not in text
    return [line for line in text.splitlines() if line.startswith("hmrkit train:")]


def _load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_lr_1e6_stops_with_one_line_and_saves_no_diverged_weights(tiny_split, tmp_path, capfd):
    """Issue 15's reproduction: 26 skipped losses, then a 112-line traceback, and every
    checkpoint after step 3 held weights of 6.7e26."""
    runs = tmp_path / "runs"
    assert tiny_train(tiny_split, runs, "--model.init_args.optim.lr", "1e6",
                      "--trainer.max_steps", "12") == 1
    (line,) = _errors(capfd.readouterr().err)
    assert line.startswith("hmrkit train: training stopped at step 1: the weights diverged")
    assert "no checkpoint was written" in line and "lower the learning rate (now 1e+06)" in line
    assert not list(runs.glob("**/*.ckpt"))


def test_divergence_keeps_the_last_good_checkpoint(tiny_split, tmp_path, capfd, monkeypatch):
    """Good steps 1-4 (a checkpoint at step 3), then the learning rate jumps to 1e6."""
    from hmrkit.cli import main

    def jump(self, batch, batch_idx):
        if self.trainer.global_step == 4:
            for group in self.trainer.optimizers[0].param_groups:
                group["lr"] = 1e6

    monkeypatch.setattr(HMR, "on_train_batch_start", jump, raising=False)
    runs = tmp_path / "runs"
    assert tiny_train(tiny_split, runs, "--trainer.max_steps", "12") == 1
    checkpoints = runs / "tiny-cpu" / "version_0" / "checkpoints"
    (line,) = _errors(capfd.readouterr().err)
    assert line.startswith("hmrkit train: training stopped at step 5: the weights diverged")
    assert f"the last good checkpoint is {checkpoints}" in line
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch=2-step=3.ckpt", "last.ckpt"]
    assert _load(checkpoints / "last.ckpt")["global_step"] == 3
    # the kept checkpoint evaluates (the diverged one crashed inside the SVD)
    monkeypatch.undo()
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(checkpoints / "last.ckpt"), "--data",
                 str(tiny_split), "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["overall"]["pa_mpjpe"] < 1000


def test_nonfinite_steps_are_skipped_and_not_counted(tiny_split, tmp_path, monkeypatch):
    """Calls 3 and 4 of the loss are NaN (the method skips the step), call 6 is finite with
    NaN gradients (the guard drops them): 6 applied steps take 9 batches, and the warm-up
    (lr 1e-3 x (step + 1) / 10) is at its 7th value."""
    original = HMR.compute_losses
    calls = []

    def flaky(self, est, batch):
        losses = original(self, est, batch)
        calls.append(len(calls) + 1)
        if calls[-1] in (3, 4):
            losses["pose"] = losses["pose"] * float("nan")
        if calls[-1] == 6:  # d sqrt(x)/dx at 0 is inf, times 0: NaN gradients, loss unchanged
            losses["pose"] = losses["pose"] + torch.sqrt(est.betas.sum() * 0.0)
        return losses

    monkeypatch.setattr(HMR, "compute_losses", flaky)
    runs = tmp_path / "runs"
    assert tiny_train(tiny_split, runs, "--trainer.max_steps", "6",
                      "--model.init_args.optim.warmup_steps", "10") == 0
    last = _load(runs / "tiny-cpu" / "version_0" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 6 and len(calls) == 9
    (schedule,) = last["lr_schedulers"]  # the warm-up advanced on applied steps only
    assert schedule["last_epoch"] == 6 and schedule["_last_lr"] == [pytest.approx(7e-4)]
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(7e-4)
    loop = last["loops"]["fit_loop"]
    assert loop["epoch_loop.batch_progress"]["total"]["processed"] == 9
    assert {int(s["step"]) for s in last["optimizer_states"][0]["state"].values()} == {6}
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values()
               if v.is_floating_point())


def test_too_many_skipped_steps_in_a_row_stop_training(tiny_split, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(HMR, "compute_losses",
                        lambda self, est, batch: {"x": est.betas.sum() * float("nan")})
    runs = tmp_path / "runs"
    assert tiny_train(tiny_split, runs, "--trainer.max_steps", "6",
                      "--trainer.callbacks+=hmrkit.guard.NonFiniteGuard",
                      "--trainer.callbacks.max_skipped", "3") == 1
    (line,) = _errors(capfd.readouterr().err)
    assert line.startswith("hmrkit train: training stopped at step 0: 3 steps in a row skipped "
                           "(non-finite loss); no checkpoint was written")


def test_a_checkpoint_with_nonfinite_weights_is_never_written():
    from hmrkit.guard import NonFiniteGuard, TrainingStopped

    guard = NonFiniteGuard()
    trainer = SimpleNamespace(checkpoint_callbacks=[], global_step=7,
                              lightning_module=SimpleNamespace(lr=1e-3))
    guard.on_save_checkpoint(trainer, None, {"state_dict": {"w": torch.ones(3)}})
    with pytest.raises(TrainingStopped, match="refusing to save non-finite weights"):
        guard.on_save_checkpoint(trainer, None,
                                 {"state_dict": {"w": torch.tensor([1.0, float("inf")])}})
    with pytest.raises(TrainingStopped):  # nothing is saved after a stop
        guard.on_save_checkpoint(trainer, None, {"state_dict": {"w": torch.ones(3)}})


def test_evaluating_a_diverged_checkpoint_is_one_line(tiny_split, tmp_path, capsys):
    from hmrkit.cli import main
    from hmrkit.models.checkpoints import load_method

    runs = tmp_path / "runs"
    assert tiny_train(tiny_split, runs, "--trainer.max_steps", "1") == 0
    path = runs / "tiny-cpu" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = _load(path)
    checkpoint["state_dict"]["regressor.dec_cam.weight"].fill_(float("nan"))
    torch.save(checkpoint, tmp_path / "bad.ckpt")
    load_method(path)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "bad.ckpt"), "--data",
                 str(tiny_split), "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "hold NaN or infinity" in err and "bad.ckpt" in err
