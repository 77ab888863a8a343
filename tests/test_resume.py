"""Resume and determinism (issue 15): ``--resume last`` continues the run the user means, bad
checkpoints are one line, leftovers of killed writes go, a killed and resumed run ends with
the weights of an uninterrupted one, and one config gives one result."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import tiny_train


def _errors(text: str) -> list[str]:
    """The lines hmrkit itself printed (Lightning's own info lines aside); no traceback."""
    assert "Traceback" not in text
    return [line for line in text.splitlines() if line.startswith("hmrkit train:")]


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _assert_same_weights(a, b) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _fake_checkpoint(path, step: int, nan: bool = False) -> None:
    """A small file with the layout of a Lightning training checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    weight = torch.full((3,), float("nan") if nan else 1.0)
    torch.save({"state_dict": {"w": weight}, "optimizer_states": [], "loops": {},
                "global_step": step}, path)


def _dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --------------------------------------------------------------------------- which checkpoint


def test_resume_last_picks_the_latest_run_and_its_newest_complete_checkpoint(tmp_path):
    from hmrkit.resume import ResumeError, find_resume_checkpoint

    runs = tmp_path / "runs"
    _fake_checkpoint(runs / "version_2" / "checkpoints" / "last.ckpt", 50)
    _fake_checkpoint(runs / "version_10" / "checkpoints" / "epoch=0-step=3.ckpt", 3)
    _fake_checkpoint(runs / "version_10" / "checkpoints" / "epoch=1-step=6.ckpt", 6)
    _fake_checkpoint(runs / "version_10" / "checkpoints" / "last.ckpt", 6)
    os.utime(runs / "version_2" / "checkpoints" / "last.ckpt")  # the newest file: not chosen
    path, notes = find_resume_checkpoint(runs)
    assert path == runs / "version_10" / "checkpoints" / "last.ckpt" and notes == []
    # a truncated last.ckpt and one holding NaN are passed over, with a note each
    last = runs / "version_10" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:300])
    _fake_checkpoint(runs / "version_10" / "checkpoints" / "epoch=2-step=9.ckpt", 9, nan=True)
    path, notes = find_resume_checkpoint(runs)
    assert path == runs / "version_10" / "checkpoints" / "epoch=1-step=6.ckpt"
    assert len(notes) == 2 and any("last.ckpt: not a complete checkpoint" in n for n in notes)
    assert any("epoch=2-step=9.ckpt" in n and "NaN" in n for n in notes)
    # the latest run without a complete checkpoint: an error, never version_2
    (runs / "version_11" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ResumeError, match="version_11, the latest run, has no complete") as err:
        find_resume_checkpoint(runs)
    assert "--resume" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ResumeError, match="no run to continue"):
        find_resume_checkpoint(tmp_path / "nothing")


def test_resume_last_never_continues_another_run(tiny_split, tmp_path, capfd):
    """Issue 15: with version_1 killed before its first checkpoint, ``--resume last`` resumed
    version_0 and overwrote its last.ckpt."""
    runs = tmp_path / "runs"
    assert tiny_train(tiny_split, runs, "--trainer.max_steps", "2") == 0
    first = runs / "tiny-cpu" / "version_0" / "checkpoints" / "last.ckpt"
    before = first.read_bytes()
    killed = runs / "tiny-cpu" / "version_1" / "checkpoints"
    killed.mkdir(parents=True)
    dead = _dead_pid()
    stale = killed / f".last.ckpt.{dead}.k2j3h4g5.tmp"  # killed writes' leftovers
    stale.write_bytes(b"\0" * 1000)
    stale_0 = first.parent / f".epoch=0-step=2.ckpt.{dead}.a1b2c3d4.tmp"
    stale_0.write_bytes(b"\0" * 1000)
    capfd.readouterr()
    assert tiny_train(tiny_split, runs, "--trainer.max_steps", "4", "--resume", "last") == 2
    (line,) = _errors(capfd.readouterr().err)
    assert "version_1, the latest run, has no complete checkpoint" in line
    assert f"--resume {first}" in line
    assert first.read_bytes() == before
    # a complete checkpoint in version_1 and a truncated last.ckpt: resumes version_1 from it
    (killed / "epoch=0-step=2.ckpt").write_bytes(before)
    (killed / "last.ckpt").write_bytes(before[: len(before) // 2])
    assert tiny_train(tiny_split, runs, "--trainer.max_steps", "4", "--resume", "last") == 0
    err = capfd.readouterr().err
    assert f"passed over {killed / 'last.ckpt'}: not a complete checkpoint" in err
    assert f"resuming {killed / 'epoch=0-step=2.ckpt'} (step 2)" in err
    assert torch.load(killed / "last.ckpt", weights_only=False)["global_step"] == 4
    assert "removed 2 leftover temporary file(s) of interrupted checkpoint writes" in err
    assert first.read_bytes() == before and not stale.exists() and not stale_0.exists()
    assert not (runs / "tiny-cpu" / "version_2").exists()


def test_resume_from_a_truncated_or_exported_checkpoint_is_one_line(tiny_split, tmp_path, capfd):
    from hmrkit.cli import main

    runs = tmp_path / "runs"
    assert tiny_train(tiny_split, runs, "--trainer.max_steps", "1") == 0
    last = runs / "tiny-cpu" / "version_0" / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:100_000])
    exported = tmp_path / "model.pt"
    assert main(["export", "--checkpoint", str(last), "--out", str(exported)]) == 0
    capfd.readouterr()
    assert tiny_train(tiny_split, runs, "--resume", str(truncated)) == 2
    (line,) = _errors(capfd.readouterr().err)
    assert f"{truncated}: not a complete checkpoint (truncated or corrupt" in line
    assert tiny_train(tiny_split, runs, "--resume", str(exported)) == 2
    (line,) = _errors(capfd.readouterr().err)
    assert f"{exported}: an exported model" in line and "resume from a training .ckpt" in line
    assert tiny_train(tiny_split, runs, "--resume", str(tmp_path / "none.ckpt")) == 2
    (line,) = _errors(capfd.readouterr().err)
    assert "none.ckpt does not exist" in line


# --------------------------------------------------------------------------- leftovers


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    from hmrkit.io import remove_stale_temporaries

    dead, alive = _dead_pid(), os.getpid()
    names = {
        f".last.ckpt.{dead}.abcd_123.tmp": True,  # a killed writer's
        ".epoch=1-step=6.ckpt.k2j3h4g5.tmp": True,  # hmrkit <= 0.1.0 named them so
        f".last.ckpt.{alive}.abcd1234.tmp": False,  # a write in progress
        "last.ckpt": False, "notes.tmp": False, ".hidden.tmp": False,
        "shard-00001.tar.tmp-123": False,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, stale in names.items() if stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n for n, stale in names.items() if not stale)
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_atomic_writes_name_their_temporaries_for_the_cleanup(tmp_path, monkeypatch):
    from hmrkit import io

    seen = []
    monkeypatch.setattr(io.os, "replace", lambda src, dst: seen.append(src))
    io.atomic_write_text(tmp_path / "a.txt", "x")
    (name,) = [os.path.basename(s) for s in seen]
    match = io._TEMPORARY.match(name)
    assert match and match.group("pid") == str(os.getpid()) and match.group("name") == "a.txt"


# --------------------------------------------------------------------------- determinism


def test_killed_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(
        tiny_split, tmp_path):
    """Issue 15: a run killed at step k and resumed ended with other weights than an
    uninterrupted run, and two runs of one config differed unless augment.seed was given.
    Batches of 2 from 7 persons: 3 steps an epoch, so step 4 is in the middle of epoch 1;
    the default augmentation is on, its seed unset (it follows seed_everything)."""
    common = ["--data.batch_size", "2", "--data.max_train_samples", "100",
              "--trainer.callbacks.init_args.save_top_k", "-1"]  # keep step 3's checkpoint
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert tiny_train(tiny_split, whole, *common, "--trainer.max_steps", "7") == 0
    assert tiny_train(tiny_split, killed, *common, "--trainer.max_steps", "4") == 0
    run_w, run_k = whole / "tiny-cpu" / "version_0", killed / "tiny-cpu" / "version_0"
    # two runs of the same config: the same weights at step 3
    _assert_same_weights(run_w / "checkpoints" / "epoch=0-step=3.ckpt",
                         run_k / "checkpoints" / "epoch=0-step=3.ckpt")
    state = torch.load(run_k / "checkpoints" / "last.ckpt", weights_only=True)  # plain data
    assert state["global_step"] == 4
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "samples": 2, "seed": 0}]
    assert tiny_train(tiny_split, killed, *common, "--trainer.max_steps", "7",
                      "--resume", "last") == 0
    _assert_same_weights(run_w / "checkpoints" / "last.ckpt", run_k / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_resume_is_exact_over_dozens_of_steps_with_workers(tiny_split, tmp_path):
    """30 steps, killed at 13 (mid-epoch) and at 20, two DataLoader workers, validation on."""
    common = ["--data.batch_size", "2", "--data.max_train_samples", "100",
              "--data.num_workers", "2", "--data.val", str(tiny_split),
              "--trainer.val_check_interval", "5"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert tiny_train(tiny_split, whole, *common, "--trainer.max_steps", "30") == 0
    assert tiny_train(tiny_split, killed, *common, "--trainer.max_steps", "13") == 0
    assert tiny_train(tiny_split, killed, *common, "--trainer.max_steps", "20",
                      "--resume", "last") == 0
    assert tiny_train(tiny_split, killed, *common, "--trainer.max_steps", "30",
                      "--resume", "last") == 0
    _assert_same_weights(whole / "tiny-cpu" / "version_0" / "checkpoints" / "last.ckpt",
                         killed / "tiny-cpu" / "version_0" / "checkpoints" / "last.ckpt")
