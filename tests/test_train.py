"""train / resume / evaluate / export end to end on a few synthetic samples (tiny config)."""

from __future__ import annotations

import errno
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from hmrkit.cli import main
from tests.helpers import one_line, tiny_train

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny-cpu.yaml")


@pytest.fixture(scope="module")
def data(tiny_split) -> Path:
    return tiny_split


def _losses(run: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for events in sorted(run.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        values += [e.value for e in acc.Scalars("train/loss")] if "train/loss" in acc.Tags()[
            "scalars"] else []
    return values


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    """A tiny run: 8 steps, then resumed to 12 (same run folder)."""
    work = tmp_path_factory.mktemp("train")
    args = ["train", "--config", TINY, "--data.train", str(data), "--data.val", str(data),
            "--data.augment", "null", "--trainer.logger.init_args.save_dir", str(work / "runs")]
    assert main([*args, "--trainer.max_steps", "8"]) == 0
    run = work / "runs" / "tiny-cpu" / "version_0"
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert first["global_step"] == 8
    assert main([*args, "--trainer.max_steps", "12", "--resume", "last"]) == 0
    assert not (work / "runs" / "tiny-cpu" / "version_1").exists()
    return run


def test_training_writes_config_and_checkpoints_and_the_loss_goes_down(trained):
    assert (trained / "config.yaml").is_file()
    last = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 12  # resumed from step 8, not restarted
    assert last["hmrkit"]["method"] == "hmrkit.models.methods.hmr.HMR"
    assert not list(trained.glob("checkpoints/*.tmp"))
    losses = _losses(trained)
    assert len(losses) >= 10 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_evaluate_and_export(trained, data, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data),
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["count"] > 0
    for name in ("mpjpe", "pa_mpjpe", "n_mpjpe", "pve", "pa_pve"):
        assert 0 < metrics["overall"][name] < 2000
    assert metrics["overall"]["pa_mpjpe"] <= metrics["overall"]["mpjpe"] + 1e-6
    assert "PA-MPJPE" in (out / "metrics.md").read_text()
    # the export reloads to the same predictions, in half the size
    exported = tmp_path / "model.pt"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(exported)]) == 0
    assert exported.stat().st_size < 0.6 * ckpt.stat().st_size
    out2 = tmp_path / "eval2"
    assert main(["evaluate", "--checkpoint", str(exported), "--data", str(data),
                 "--out", str(out2)]) == 0
    again = json.loads((out2 / "metrics.json").read_text())["overall"]
    assert again["pa_mpjpe"] == pytest.approx(metrics["overall"]["pa_mpjpe"], abs=1.0)


def test_mean_pose_floor_is_evaluated(data, tmp_path):
    assert main(["evaluate", "--method", "mean-pose", "--data", str(data),
                 "--out", str(tmp_path), "--protocol", "smpl24"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["protocol"] == "smpl24" and metrics["overall"]["pa_mpjpe"] > 10


def _train_error(capfd) -> str:
    """The one line ``hmrkit train`` printed about what is wrong (no traceback)."""
    err = capfd.readouterr().err
    assert "Traceback" not in err and "usage:" not in err
    return one_line("\n".join(line for line in err.splitlines()
                               if line.startswith("hmrkit train:")))


@pytest.mark.parametrize(("extra", "message"), [
    (["--model.init_args.backbon", "resnet18"],
     "model: no such key 'backbon' (class hmrkit.models.methods.HMR)"),
    (["--data.batchsize", "3"], "data.batchsize: no such key"),
    (["--data.batch_size", "four"], "data.batch_size: Expected a <class 'int'>. Got value: four"),
    (["--model.init_args.optim.lr", "fast"],
     "model.lr: Expected a <class 'float'>. Got value: fast"),
    (["--data.crop_size", "32"],  # set once, in the model: the data's is linked to it
     'Linked "data.crop_size" must be given via "model.crop_size"'),
    (["--data.batch_size", "0"], "data.batch_size must be an integer >= 1, got 0"),
    (["--model.init_args.crop_size", "-64"],
     "model.init_args.crop_size must be an integer >= 8, got -64"),
    (["--data.num_workers", "-1"], "data.num_workers must be an integer >= 0, got -1"),
])
def test_config_errors_are_one_line_naming_the_key(extra, message, data, tmp_path, capfd):
    """Issue 15: the useful line came after a 50-line usage dump; a crop size of -64 trained."""
    assert tiny_train(data, tmp_path / "runs", *extra) == 2
    assert message in _train_error(capfd)
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_folder_is_one_line(tmp_path, capfd):
    """Issue 15: a 40-line traceback."""
    assert tiny_train(tmp_path / "nowhere", tmp_path / "runs") == 2
    line = _train_error(capfd)
    assert f"data.train: SyntheticDataset: data folder {tmp_path / 'nowhere'} does not exist" \
        in line
    assert not (tmp_path / "runs").exists()  # no empty run folder for --resume last to find


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:672] . "
                                                "unexpected pos 704 vs 598")])
def test_a_full_disk_is_one_line_naming_the_checkpoint(error, data, tmp_path, capfd,
                                                       monkeypatch):
    """Issue 15: a full disk surfaced as PyTorch's 'unexpected pos'."""
    from hmrkit.models import checkpoints

    def full(path, obj):
        raise error

    monkeypatch.setattr(checkpoints, "atomic_torch_save", full)
    runs = tmp_path / "runs"
    assert tiny_train(data, runs, "--trainer.max_steps", "6") == 1
    path = runs / "tiny-cpu" / "version_0" / "checkpoints" / "epoch=2-step=3.ckpt"
    assert _train_error(capfd) == f"hmrkit train: disk full while writing {path}"


def test_missing_checkpoint_is_a_clear_error(data, tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    assert main(["evaluate", "--checkpoint", str(missing), "--data", str(data),
                 "--out", str(tmp_path)]) == 2
    assert f"checkpoint {missing} does not exist" in capsys.readouterr().err
    not_a_ckpt = tmp_path / "bad.ckpt"
    not_a_ckpt.write_bytes(b"not a checkpoint")
    assert main(["export", "--checkpoint", str(not_a_ckpt), "--out", str(tmp_path / "x")]) == 2
    assert str(not_a_ckpt) in capsys.readouterr().err


def test_a_nonfinite_loss_skips_the_step():
    """The method returns no loss; :class:`hmrkit.guard.NonFiniteGuard` counts (test_guard)."""
    from hmrkit.models.heads import IterativeRegressor
    from hmrkit.models.methods import HMR

    model = HMR(crop_size=32, head=partial(IterativeRegressor, hidden=16))
    model.compute_losses = lambda est, batch: {"x": torch.tensor(float("nan"))}
    model.estimate = lambda batch: None
    batch = {"image": torch.zeros(2, 3, 32, 32)}
    for _ in range(30):
        assert model.training_step(batch, 0) is None


def test_unknown_protocol_and_method_are_clear_errors(data, tmp_path, capsys):
    assert main(["evaluate", "--method", "mean-pose", "--data", str(data), "--out",
                 str(tmp_path), "--protocol", "h36m17"]) == 2
    assert "unknown protocol 'h36m17'" in capsys.readouterr().err
    assert main(["evaluate", "--method", "nope", "--data", str(data), "--out", str(tmp_path)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
