"""Multiple regions of interest around one person box (Multi-RoI, methods.md "001").

The paper crops ``M = 5`` fixed RoIs per person: the original box, then four boxes whose
centres move by a tenth of the original side ``b`` and whose sides are the original side
times a resize factor::

    RoI 0: centre c,               side b          (the original box, always first)
    RoI 1: centre c + (+0.1 b, 0),  side 1.50 b
    RoI 2: centre c + (-0.1 b, 0),  side 1.25 b
    RoI 3: centre c + (0, +0.1 b),  side 0.80 b
    RoI 4: centre c + (0, -0.1 b),  side 0.65 b

in full-image pixels (x right, y down). The RoIs are fixed, not random, in training too.
The CLIFF box information of each RoI is :func:`hmrkit.geometry.cameras.cliff_bbox_info`
applied to the returned boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["MULTI_ROI_OFFSETS", "MULTI_ROI_SCALES", "MAX_ROIS", "multi_roi_boxes"]

MULTI_ROI_OFFSETS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.1, 0.0),
    (-0.1, 0.0),
    (0.0, 0.1),
    (0.0, -0.1),
)
"""Centre offsets of the paper's five RoIs, in units of the original box side."""

MULTI_ROI_SCALES: tuple[float, ...] = (1.0, 1.5, 1.25, 0.8, 0.65)
"""Side of each RoI as a multiple of the original box side."""

MAX_ROIS = len(MULTI_ROI_SCALES)
"""Number of RoIs the defaults define (5)."""


def multi_roi_boxes(
    center,
    size,
    m: int = MAX_ROIS,
    offsets: Sequence[Sequence[float]] = MULTI_ROI_OFFSETS,
    scales: Sequence[float] = MULTI_ROI_SCALES,
):
    """The first ``m`` RoIs around the boxes ``(center (..., 2), size (...))``.

    Returns ``centers (..., m, 2)`` and ``sizes (..., m)``: RoI ``k`` has centre
    ``center + offsets[k] * size`` and side ``scales[k] * size`` (the offsets use the ORIGINAL
    side). Works on torch tensors (keeping dtype and device, differentiable) and on numpy
    arrays or plain numbers (returning numpy arrays).
    """
    fn = "multi_roi_boxes"
    if len(offsets) != len(scales):
        raise ValueError(
            f"{fn}: {len(offsets)} offsets but {len(scales)} scales; give one of each per RoI"
        )
    if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or not 1 <= m <= len(scales):
        raise ValueError(f"{fn}: m must be an integer in [1, {len(scales)}], got {m!r}")
    if any(len(o) != 2 for o in offsets):
        raise ValueError(f"{fn}: every offset must be a pair (dx, dy), got {list(offsets)}")
    if any(not s > 0 for s in scales):
        raise ValueError(f"{fn}: scales must be positive, got {list(scales)}")
    m = int(m)
    if isinstance(center, torch.Tensor) or isinstance(size, torch.Tensor):
        ref = center if isinstance(center, torch.Tensor) else size
        dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
        c = torch.as_tensor(center, dtype=dtype, device=ref.device)
        b = torch.as_tensor(size, dtype=dtype, device=ref.device)
        off = torch.as_tensor(offsets[:m], dtype=dtype, device=ref.device)
        sc = torch.as_tensor(scales[:m], dtype=dtype, device=ref.device)
    else:
        c = np.asarray(center, dtype=np.float64)
        b = np.asarray(size, dtype=np.float64)
        off = np.asarray(offsets[:m], dtype=np.float64)
        sc = np.asarray(scales[:m], dtype=np.float64)
    if c.ndim < 1 or c.shape[-1] != 2:
        raise ValueError(f"{fn}: center has shape {tuple(c.shape)}, expected (..., 2)")
    if tuple(b.shape) != tuple(c.shape[:-1]):
        raise ValueError(
            f"{fn}: size has shape {tuple(b.shape)}, expected {tuple(c.shape[:-1])} "
            f"matching center {tuple(c.shape)}"
        )
    centers = c[..., None, :] + off * b[..., None, None]
    sizes = b[..., None] * sc
    return centers, sizes
