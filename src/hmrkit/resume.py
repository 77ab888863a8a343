"""Resuming training: which checkpoint ``--resume last`` means, and the state Lightning's
checkpoints lack for an exact continuation.

- :func:`find_resume_checkpoint`: the run ``--resume last`` continues is the latest one of
  the config's run folder (``version_N`` with the highest ``N``), from its newest complete
  checkpoint (highest step; ``last.ckpt`` on a tie); never another run.
- :class:`RunState`: a callback that stores the random-number generators (torch CPU and
  CUDA, NumPy, Python) in every checkpoint and restores them right before the first batch of
  a resumed run, saves ``last.ckpt`` at the step ``max_steps`` stops at, and removes the
  leftovers of killed checkpoint writes (in the checkpoint folders of all the config's runs)
  at the start of a run.

With the data order and augmentation epoch restored by the training loader
(:class:`hmrkit.data.module.ResumableLoader`), a run killed after step ``k`` and resumed ends
with the same weights as a run that was never interrupted (tested on CPU, with and without
DataLoader workers; the README's training section says what is not restored).
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from hmrkit.io import remove_stale_temporaries
from hmrkit.models.checkpoints import CheckpointError, nonfinite_weights, read_training_checkpoint

_VERSION = re.compile(r"^version_(\d+)$")


class ResumeError(ValueError):
    """No checkpoint to resume (the message is one line for the user)."""


def checked_checkpoint(path) -> dict:
    """The training checkpoint ``path`` if it can be resumed: complete (tensors mapped, not
    read) and with finite weights; :class:`CheckpointError` saying why not."""
    checkpoint = read_training_checkpoint(path, mmap=True)
    bad = nonfinite_weights(checkpoint["state_dict"])
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinity "
                              f"(first: {bad[0]})")
    return checkpoint


def find_resume_checkpoint(runs) -> tuple[Path, list[str]]:
    """The checkpoint ``--resume last`` continues in the run folder ``runs`` (e.g.
    ``runs/tiny-cpu``), and a note for each broken checkpoint passed over.

    The run is the latest ``version_N`` (highest ``N``); its checkpoint, the complete one
    (see :func:`checked_checkpoint`) with the highest step, ``last.ckpt`` first on a tie. A
    latest run without one is a :class:`ResumeError`: an older run is never taken instead.
    """
    runs = Path(runs)
    versions = sorted((int(m.group(1)), p) for p in runs.glob("version_*")
                      if (m := _VERSION.match(p.name)) and p.is_dir())
    if not versions:
        raise ResumeError(f"--resume last: no run to continue under {runs} (no version_N folder)")
    latest = versions[-1][1]
    found, notes = [], []
    for path in sorted(latest.glob("checkpoints/*.ckpt")):
        try:
            step = int(checked_checkpoint(path).get("global_step", -1))
        except CheckpointError as err:
            notes.append(f"passed over {err}")  # names the file
            continue
        found.append((step, path.name == "last.ckpt", path.stat().st_mtime_ns, path))
    if not found:
        older = [p for _, run in versions[:-1] for p in sorted(run.glob("checkpoints/*.ckpt"))]
        hint = (f"; to continue an older run pass its checkpoint, e.g. --resume {older[-1]}"
                if older else "; start a new run without --resume")
        broken = f" ({notes[0]}{', ...' if len(notes) > 1 else ''})" if notes else ""
        raise ResumeError(f"--resume last: {latest}, the latest run, has no complete "
                          f"checkpoint{broken}{hint}")
    return max(found)[-1], notes


def save_last(trainer) -> None:
    """Save ``last.ckpt`` for every checkpoint callback with ``save_last``."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "save_last", False) and callback.dirpath:
            trainer.save_checkpoint(Path(callback.dirpath) / "last.ckpt")


class RunState(Callback):
    """Random-number generator states in checkpoints, restored on resume; stale temporaries
    of killed checkpoint writes removed at the start of every run (see the module doc)."""

    def __init__(self):
        self._pending: dict | None = None
        self.removed: list[Path] = []
        """Temporaries removed at the start of this run."""
        self.last_saved_step: int | None = None
        """The step :meth:`on_train_batch_end` saved ``last.ckpt`` at (``max_steps``)."""

    def state_dict(self) -> dict:
        """Plain types and tensors only: checkpoints stay loadable with ``weights_only``."""
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(),
                 "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
                 "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict  # applied at the first batch: nothing may draw in between

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """At ``max_steps``, save ``last.ckpt`` from inside the loop: a checkpoint saved after
        ``fit`` returns marks the interrupted epoch as finished, and a run resumed from it
        would skip that epoch's remaining batches."""
        if 0 < trainer.max_steps <= trainer.global_step and not trainer.sanity_checking:
            save_last(trainer)
            self.last_saved_step = trainer.global_step

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        folders = {Path(cb.dirpath) for cb in trainer.checkpoint_callbacks
                   if getattr(cb, "dirpath", None)}
        ckpt_path = getattr(trainer, "ckpt_path", None)
        if ckpt_path:
            folders.add(Path(ckpt_path).parent)
        root = getattr(trainer.logger, "root_dir", None)  # the config's other runs too
        if root:
            folders.update(Path(root).glob("version_*/checkpoints"))
        for folder in sorted(folders):
            self.removed += remove_stale_temporaries(folder)
        if self.removed:
            names = ", ".join(str(p) for p in self.removed[:3])
            more = ", ..." if len(self.removed) > 3 else ""
            print(f"hmrkit train: removed {len(self.removed)} leftover temporary file(s) of "
                  f"interrupted checkpoint writes ({names}{more})", file=sys.stderr)
