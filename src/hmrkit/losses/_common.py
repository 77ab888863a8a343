"""Shared helpers of :mod:`hmrkit.losses`: shape checks, availability flags, masked means.

The masking convention (SPIN): a loss over a label that some samples lack is the mean over the
elements of the samples that HAVE it (``has_* = 1``); the samples without it contribute exactly
zero (their label is replaced by zeros before any arithmetic, so a NaN or garbage placeholder
cannot leak into the value or the gradient), and a batch with no labelled sample gives ``0``
(still attached to the graph), never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from hmrkit.geometry.cameras import per_sample, per_sample_2  # noqa: F401 - used by the losses


def check_tensor(fn: str, name: str, x, shape: Sequence[int | None], want: str) -> Tensor:
    """Raise a readable error unless ``x`` is a tensor of ``shape`` (``None`` entries free)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    ok = x.dim() == len(shape) and all(
        s is None or s == d for s, d in zip(shape, x.shape, strict=False)
    )
    if not ok:
        raise ValueError(f"{fn}: {name} has shape {tuple(x.shape)}, expected {want}")
    return x


def check_same(fn: str, pred: Tensor, gt: Tensor, pred_name: str = "pred", gt_name: str = "gt"):
    """Raise unless ``pred`` and ``gt`` are tensors of the same shape."""
    for name, x in ((pred_name, pred), (gt_name, gt)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if pred.shape != gt.shape:
        raise ValueError(
            f"{fn}: {pred_name} has shape {tuple(pred.shape)}, expected the shape of "
            f"{gt_name} {tuple(gt.shape)}"
        )


def flags(fn: str, has, batch: int, like: Tensor, name: str = "has") -> Tensor:
    """Availability flags ``None`` / bool / float ``()``, ``(B,)`` or ``(B, 1)`` -> ``(B,)``.

    Returned as 0/1 (or fractional) weights in ``like``'s dtype and device. ``None`` means every
    sample is labelled.
    """
    if has is None:
        return torch.ones(batch, dtype=like.dtype, device=like.device)
    h = torch.as_tensor(has, device=like.device)
    if h.dim() == 2 and h.shape[1] == 1:
        h = h[:, 0]
    if h.dim() == 0:
        h = h.reshape(1).expand(batch)
    if h.shape != (batch,):
        raise ValueError(f"{fn}: {name} has shape {tuple(h.shape)}, expected (B,) with B={batch}")
    return h.to(like.dtype)


def box_wh(fn: str, box_size, batch: int, like: Tensor) -> Tensor:
    """Square side ``(B,)`` / ``(B, 1)`` / float, or ``(w, h)`` ``(B, 2)`` -> ``(B, 2)``."""
    b = torch.as_tensor(box_size, dtype=like.dtype, device=like.device)
    if b.dim() == 2 and b.shape[1] == 2:
        return per_sample_2(fn, b, batch, like, "box_size")
    side = per_sample(fn, b, batch, like, "box_size")
    return side[:, None].expand(batch, 2)


def keep(mask: Tensor, x: Tensor) -> Tensor:
    """``x`` where ``mask`` (broadcast from the left) is true, zero elsewhere (NaN-safe)."""
    m = mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim()))
    return torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0``, else ``0`` (no NaN in the value or the gradient)."""
    ok = den > 0
    return torch.where(ok, num, torch.zeros_like(num)) / torch.where(ok, den, torch.ones_like(den))


def per_sample_rows(err: Tensor) -> Tensor:
    """``(B, ...)`` -> ``(B, N)`` (also for ``B = 0`` and for ``(B,)``)."""
    return err.reshape(err.shape[0], math.prod(err.shape[1:]))


def labelled_mean(err: Tensor, w: Tensor) -> Tensor:
    """SPIN's masked mean: ``sum_b w_b sum(err_b) / (sum_b w_b * numel(err_b))``.

    ``err`` is ``(B, ...)`` elementwise errors (already zero where unlabelled), ``w`` the
    ``(B,)`` flags. Zero when no sample is labelled.
    """
    per = per_sample_rows(err)
    num = (w * per.sum(dim=1)).sum()
    den = w.sum() * per.shape[1]
    return safe_div(num, den)


def batch_mean(err: Tensor) -> Tensor:
    """Mean over every element; ``0`` (not NaN) for an empty tensor."""
    if err.numel() == 0:
        return err.sum()
    return err.mean()
