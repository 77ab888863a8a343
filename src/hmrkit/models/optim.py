"""Adam with the learning-rate schedules every hmrkit module shares (warm-up, cosine)."""

from __future__ import annotations

import math

import lightning as L
import torch

LR_SCHEDULES = ("constant", "cosine")


def check_schedule(lr_schedule: str) -> None:
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")


def adam_with_schedule(module: L.LightningModule, lr: float, weight_decay: float,
                       lr_schedule: str, warmup_steps: int):
    """Lightning's ``configure_optimizers`` result: Adam, a linear warm-up over
    ``warmup_steps``, then a constant rate or a cosine decay to 0 at the trainer's
    ``max_steps``."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    if lr_schedule == "constant" and warmup_steps == 0:
        return optimizer
    total = getattr(module.trainer, "max_steps", -1) if module._trainer is not None else -1
    if lr_schedule == "cosine" and (total is None or total <= 0):
        raise ValueError("lr_schedule 'cosine' needs the trainer's max_steps")
    warmup = max(int(warmup_steps), 0)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if lr_schedule == "constant":
            return 1.0
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
