"""Evaluation metrics: per-sample tensors (mm for 3D errors, px for 2D), and their summary.

See :mod:`hmrkit.metrics.pose` for the alignment conventions (root, Procrustes, scale, world).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from .image import epe
from .pose import mpjpe, n_mpjpe, n_pve, pa_mpjpe, pa_pve, pve, root_align, w_mpjpe, w_pve
from .shape import esv

PROTOCOLS: dict[str, tuple[str, int | tuple[int, ...]]] = {
    "lsp14": ("lsp14", (2, 3)),
    "smpl24": ("joints", 0),
}
"""Evaluation joint sets: name -> (keypoint set of the body model, root joint(s) for MPJPE).
``lsp14`` is the literature's 14-joint protocol (3DPW / H36M, SPIN's evaluation code) aligned
at the mid-hip; ``smpl24`` is the body model's 24 joints aligned at the pelvis."""

__all__ = [
    "PROTOCOLS",
    "epe",
    "esv",
    "mpjpe",
    "n_mpjpe",
    "n_pve",
    "pa_mpjpe",
    "pa_pve",
    "pve",
    "root_align",
    "summarize",
    "w_mpjpe",
    "w_pve",
]


def summarize(per_sample: Mapping[str, torch.Tensor | Sequence[torch.Tensor]]) -> dict[str, float]:
    """Mean of each metric over samples -> ``{name: float}``.

    Values are per-sample tensors, or lists of them (e.g. one per batch, concatenated). NaN
    samples (no valid joint) are skipped; a metric with no finite sample gives NaN.
    """
    out = {}
    for name, values in per_sample.items():
        if isinstance(values, torch.Tensor):
            flat = values.detach().reshape(-1)
        else:
            flat = torch.cat([torch.as_tensor(v).detach().reshape(-1) for v in values])
        flat = flat.to(torch.float64)
        out[name] = float(torch.nanmean(flat)) if flat.numel() else float("nan")
    return out
