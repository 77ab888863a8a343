"""The NaN guard of training: skip bad steps, stop on divergence, never save bad weights.

:class:`NonFiniteGuard` is a Lightning callback (``hmrkit train`` adds it to every run):

- a step whose loss is not finite (the method's ``training_step`` then returns None and no
  gradient exists) or whose gradients hold NaN or infinity is *skipped*: the gradients are
  dropped before the optimizer step, so neither the weights nor the optimizer state change,
  and the step is not counted (``trainer.global_step``, the learning-rate schedule and
  ``max_steps`` count applied steps only);
- after ``max_skipped`` skipped steps in a row, or when the weights diverge after a step
  (a non-finite weight, or a parameter norm ``max_growth`` times its norm at the start of
  the run), training stops with :class:`TrainingStopped`, whose message is the one line
  ``hmrkit train`` prints. The diverged weights are never saved: the stop happens before the
  step's checkpoint, and :meth:`on_save_checkpoint` refuses non-finite weights, so the last
  checkpoint on disk (and ``save_top_k``'s choice) holds the last good weights.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from hmrkit.models.checkpoints import nonfinite_weights

log = logging.getLogger(__name__)

MAX_SKIPPED_STEPS = 25
"""Consecutive skipped (non-finite) steps tolerated before training stops."""
MAX_WEIGHT_GROWTH = 1000.0
"""Parameter-norm growth over a run taken for divergence (healthy runs stay within a few x)."""


class TrainingStopped(RuntimeError):
    """Training stopped by :class:`NonFiniteGuard`; the message is one line for the user."""


def parameter_norm(module: torch.nn.Module) -> float:
    """The 2-norm of all trainable parameters (inf or NaN when one of them is not finite)."""
    norms = [p.detach().float().norm() for p in module.parameters() if p.requires_grad]
    return float(torch.stack(norms).norm()) if norms else 0.0


class NonFiniteGuard(Callback):
    """Skip non-finite steps without counting them; stop on divergence (see the module doc)."""

    def __init__(self, max_skipped: int = MAX_SKIPPED_STEPS,
                 max_growth: float = MAX_WEIGHT_GROWTH):
        self.max_skipped = int(max_skipped)
        self.max_growth = float(max_growth)
        self.skipped_in_row = 0
        self.skipped = 0
        """Steps skipped in this run."""
        self._skip_reason: str | None = None
        self._schedulers: list[dict] = []
        self._start_norm = math.nan
        self._stopped: str | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_norm = parameter_norm(pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            self._skip_reason = "non-finite loss"
        elif not torch.stack([torch.isfinite(g).all() for g in grads]).all():
            self._skip_reason = "non-finite gradients"
            log.warning("step %d: non-finite gradients; step skipped", trainer.global_step)
        else:
            return
        for group in optimizer.param_groups:  # the optimizer skips parameters without grad
            for p in group["params"]:
                p.grad = None
        self._schedulers = [config.scheduler.state_dict()
                            for config in trainer.lr_scheduler_configs]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._skip_reason is not None:
            self._uncount_step(trainer)
            self.skipped += 1
            self.skipped_in_row += 1
            if self.skipped_in_row >= self.max_skipped:
                self._stop(trainer, f"{self.skipped_in_row} steps in a row skipped "
                           f"({self._skip_reason})")
            self._skip_reason = None
            return
        self.skipped_in_row = 0
        norm = parameter_norm(pl_module)
        if not math.isfinite(norm):
            self._stop(trainer, "the weights became non-finite")
        if norm > self.max_growth * max(self._start_norm, 1.0):
            self._stop(trainer, f"the weights diverged (parameter norm {norm:.3g}, "
                       f"{norm / max(self._start_norm, 1e-12):.3g} x its {self._start_norm:.3g} "
                       "at the start)")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self._stopped is not None:  # e.g. ModelCheckpoint(save_on_exception=True)
            raise TrainingStopped(self._stopped)
        bad = nonfinite_weights(checkpoint.get("state_dict", {}))
        if bad:
            self._stop(trainer, f"refusing to save non-finite weights ({bad[0]}, ...)")

    def _uncount_step(self, trainer) -> None:
        """Undo Lightning's count of the skipped step and the schedulers' step after it."""
        loop = trainer.fit_loop.epoch_loop
        progress = (loop.automatic_optimization.optim_progress.optimizer.step
                    if trainer.lightning_module.automatic_optimization
                    else loop.manual_optimization.optim_step_progress)
        progress.total.increment_by(-1)
        progress.current.increment_by(-1)
        for config, state in zip(trainer.lr_scheduler_configs, self._schedulers, strict=True):
            config.scheduler.load_state_dict(state)
            lrs = getattr(config.scheduler, "_last_lr", None)
            if lrs is not None:  # the optimizer's rates follow the restored schedule
                for group, lr in zip(config.scheduler.optimizer.param_groups, lrs, strict=True):
                    group["lr"] = lr
        self._schedulers = []

    def _stop(self, trainer, what: str) -> None:
        good = _last_checkpoint(trainer)
        kept = f"the last good checkpoint is {good}" if good else "no checkpoint was written"
        lr = getattr(getattr(trainer.lightning_module, "optim", None), "lr", None)
        hint = "lower the learning rate" + (f" (now {lr:g})" if lr is not None else "")
        self._stopped = (f"training stopped at step {trainer.global_step}: {what}; {kept}; "
                         f"{hint} or check the data")
        raise TrainingStopped(self._stopped)


def _last_checkpoint(trainer) -> Path | None:
    """The newest checkpoint file the run's checkpoint callbacks wrote (None if none)."""
    paths = [Path(p) for cb in trainer.checkpoint_callbacks
             for p in (getattr(cb, "last_model_path", ""), getattr(cb, "best_model_path", ""))
             if p and Path(p).is_file()]
    return max(paths, key=lambda p: p.stat().st_mtime_ns) if paths else None
