"""Evaluation metrics: per-sample tensors (mm for 3D errors, px for 2D).

See :mod:`hmrkit.metrics.pose` for the alignment conventions (root, Procrustes, scale, world)
and :mod:`hmrkit.metrics.scoring` for the metrics an estimate supports.
"""

from __future__ import annotations

from .image import epe
from .pose import mpjpe, n_mpjpe, n_pve, pa_mpjpe, pa_pve, pve, root_align, w_mpjpe, w_pve
from .scoring import METRIC_ORDER, PROTOCOLS, root_translation_error, score
from .shape import esv

__all__ = [
    "METRIC_ORDER",
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
    "root_translation_error",
    "score",
    "w_mpjpe",
    "w_pve",
]
