"""Dense (per-pixel) losses: silhouette, IUV, inverse depth, displacement end-point error.

Maps are batch-first ``(B, C, H, W)``; single-channel maps may also be ``(B, H, W)``. Samples
without the label (``has_mask``, ``has_iuv``, ``has_depth`` = 0) contribute zero and a batch with
none gives 0; their predictions are zeroed before any arithmetic, so nothing (not even NaN)
flows back from them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import check_tensor, flags, keep, labelled_mean, per_sample_rows, safe_div

__all__ = [
    "silhouette_bce",
    "iuv_losses",
    "inverse_depth_loss",
    "endpoint_error_loss",
    "IUV_WEIGHTS",
]

IUV_WEIGHTS: dict[str, float] = {"index": 2.0, "part": 0.3, "uv": 0.5}
"""W-HMR / PyMAF weights of the three IUV terms (W-HMR ``core/cfgs.py``: ``INDEX_WEIGHTS``,
``PART_WEIGHTS``, ``POINT_REGRESSION_WEIGHTS``): ``index`` = cross-entropy on the fine body-part
index I of every pixel (background + the body parts, DensePose's 24 in PyMAF); ``part`` =
cross-entropy on the coarse part segmentation (DensePose's 14 "AnnIndex" parts + background);
``uv`` = smooth-L1 on the U and V coordinates at foreground pixels."""

_REDUCTIONS = ("sum_per_sample", "mean")


def _single_channel(fn: str, name: str, x: Tensor) -> Tensor:
    """``(B, H, W)`` or ``(B, 1, H, W)`` -> ``(B, H, W)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() != 3:
        raise ValueError(
            f"{fn}: {name} has shape {tuple(x.shape)}, expected (B, H, W) or (B, 1, H, W)"
        )
    return x


def _same_map(fn: str, pred: Tensor, gt: Tensor, pred_name: str, gt_name: str) -> None:
    if pred.shape != gt.shape:
        raise ValueError(
            f"{fn}: {pred_name} has shape {tuple(pred.shape)}, expected {gt_name}'s "
            f"{tuple(gt.shape)}"
        )


def _single_channel_pair(fn: str, pred: Tensor, gt: Tensor, gt_name: str, has):
    """Checked single-channel ``pred`` and ``gt`` maps ``(B, H, W)`` (``gt`` in ``pred``'s
    dtype), the availability weights ``(B,)`` and which samples are labelled."""
    p = _single_channel(fn, "pred", pred)
    g = _single_channel(fn, gt_name, gt).to(p.dtype)
    _same_map(fn, p, g, "pred", gt_name)
    w = flags(fn, has, p.shape[0], p)
    return p, g, w, w != 0


def _reduce(fn: str, err: Tensor, w: Tensor, count: Tensor, reduction: str) -> Tensor:
    """``sum_per_sample``: total over labelled samples / their number (PyMAF ``sum / B``);
    ``mean``: total / ``count`` elements."""
    total = (w * per_sample_rows(err).sum(dim=1)).sum()
    if reduction == "sum_per_sample":
        return safe_div(total, w.sum())
    if reduction == "mean":
        return safe_div(total, count)
    raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def silhouette_bce(pred: Tensor, gt_mask: Tensor, has=None, *, from_logits: bool = True) -> Tensor:
    """Silhouette binary cross-entropy of ImpHMR's geometric guidance branch (ImpHMR eq. 6,
    silhouette term; BCE is our reading).

    ``pred`` logits (or probabilities with ``from_logits=False``) and ``gt_mask`` in ``{0, 1}``,
    each ``(B, H, W)`` or ``(B, 1, H, W)``. Normalisation: mean over the pixels of the samples
    with ``has`` (``has_mask``). With logits the loss only tends to 0 as the logits tend to
    ``+-inf``; probabilities equal to the mask give exactly 0 (PyTorch clamps ``log`` at -100;
    note ``F.binary_cross_entropy`` refuses autocast, prefer logits for training).
    """
    fn = "silhouette_bce"
    p, g, w, labelled = _single_channel_pair(fn, pred, gt_mask, "gt_mask", has)
    p, g = keep(labelled, p), keep(labelled, g)
    if from_logits:
        err = F.binary_cross_entropy_with_logits(p, g, reduction="none")
    else:
        err = F.binary_cross_entropy(p, g, reduction="none")
    return labelled_mean(keep(labelled, err), w)


def iuv_losses(
    pred_part_logits: Tensor,
    pred_uv: Tensor,
    gt_iuv: Tensor,
    has=None,
    *,
    pred_coarse_logits: Tensor | None = None,
    coarse_of_part: Tensor | None = None,
    uv_reduction: str = "sum_per_sample",
) -> dict[str, Tensor]:
    """IUV auxiliary losses (W-HMR eq. 11; PyMAF / DaNet ``body_uv_losses``) -> dict of three
    unweighted terms, weighted by :data:`IUV_WEIGHTS`.

    ``gt_iuv (B, 3, H, W)``: part index I (0 background, 1..P-1 body parts, stored as float in
    the Sample), U and V in ``[0, 1]``.

    - ``"index"``: cross-entropy of ``pred_part_logits (B, P, H, W)`` against I at every pixel
      (background included); mean over the pixels of the labelled samples.
    - ``"uv"``: smooth-L1 (beta 1) between ``pred_uv`` and (U, V) at the foreground pixels
      (I > 0) only. ``pred_uv`` is ``(B, 2, H, W)``, or ``(B, 2, P, H, W)`` with one UV pair per
      part (PyMAF), read at the GT part. ``uv_reduction="sum_per_sample"`` (PyMAF: sum over
      pixels and both coordinates divided by the number of labelled samples) or ``"mean"``
      (mean over foreground pixels and coordinates).
    - ``"part"``: cross-entropy of ``pred_coarse_logits (B, C, H, W)`` against the coarse part
      ``coarse_of_part[I]`` (``coarse_of_part (P,)`` long, background -> 0); mean over the
      pixels of the labelled samples. A zero tensor when no coarse head is given.
    """
    fn = "iuv_losses"
    check_tensor(fn, "gt_iuv", gt_iuv, (None, 3, None, None), "(B, 3, H, W) = (I, U, V)")
    B, _, H, W = gt_iuv.shape
    check_tensor(
        fn,
        "pred_part_logits",
        pred_part_logits,
        (B, None, H, W),
        f"(B, P, H, W) with B, H, W = {B}, {H}, {W}",
    )
    like = pred_part_logits
    w = flags(fn, has, B, like)
    labelled = w != 0
    P = pred_part_logits.shape[1]
    index = keep(labelled, gt_iuv[:, 0]).round().long()
    fg = (index > 0) & labelled[:, None, None]
    gt_uv = keep(fg[:, None], gt_iuv[:, 1:].to(like.dtype))

    logits = keep(labelled, pred_part_logits)
    ce = F.cross_entropy(logits, index, reduction="none")
    out = {"index": labelled_mean(keep(labelled, ce), w)}

    if pred_uv.dim() == 5:
        check_tensor(
            fn, "pred_uv", pred_uv, (B, 2, P, H, W), f"(B, 2, P, H, W) = {(B, 2, P, H, W)}"
        )
        at = index.clamp(0, P - 1)[:, None, None].expand(B, 2, 1, H, W)
        uv = pred_uv.gather(2, at)[:, :, 0]
    else:
        check_tensor(fn, "pred_uv", pred_uv, (B, 2, H, W), f"(B, 2, H, W) = {(B, 2, H, W)}")
        uv = pred_uv
    uv = keep(fg[:, None], uv)
    err = F.smooth_l1_loss(uv, gt_uv, reduction="none", beta=1.0)
    count = 2 * fg.sum().to(like.dtype)
    out["uv"] = _reduce(fn, err, w, count, uv_reduction)

    if pred_coarse_logits is None:
        none = torch.zeros((), dtype=torch.bool, device=like.device)
        out["part"] = torch.where(none, like, 0.0).sum()  # 0 on the graph, even with -inf logits
    else:
        if coarse_of_part is None:
            raise ValueError(f"{fn}: pred_coarse_logits needs coarse_of_part (P,) part -> coarse")
        check_tensor(fn, "pred_coarse_logits", pred_coarse_logits, (B, None, H, W), "(B, C, H, W)")
        lut = torch.as_tensor(coarse_of_part, device=index.device).long()
        coarse = lut[index.clamp(0, lut.shape[0] - 1)]
        ce = F.cross_entropy(keep(labelled, pred_coarse_logits), coarse, reduction="none")
        out["part"] = labelled_mean(keep(labelled, ce), w)
    return out


def inverse_depth_loss(
    pred: Tensor, gt_depth: Tensor, has=None, *, reduction: str = "sum_per_sample"
) -> Tensor:
    """Inverse-depth map loss (W-HMR eq. 12; code ``depth_losses``): smooth-L1 (beta 1) between
    ``pred`` and ``1 / z`` (0 on the background, where ``gt_depth`` is 0).

    ``pred`` (the predicted inverse depth) and ``gt_depth`` (metres) ``(B, H, W)`` or
    ``(B, 1, H, W)``. Every pixel counts (background targets 0). ``reduction="sum_per_sample"``
    (W-HMR code: sum over pixels / number of labelled samples) or ``"mean"`` (mean over the
    pixels of the labelled samples).
    """
    fn = "inverse_depth_loss"
    p, z, w, labelled = _single_channel_pair(fn, pred, gt_depth, "gt_depth", has)
    fg = (z > 0) & labelled[:, None, None]
    target = torch.where(fg, 1 / torch.where(fg, z, torch.ones_like(z)), torch.zeros_like(z))
    err = F.smooth_l1_loss(keep(labelled, p), target, reduction="none", beta=1.0)
    count = w.sum() * p[0].numel()
    return _reduce(fn, keep(labelled, err), w, count, reduction)


def endpoint_error_loss(pred_disp: Tensor, gt_disp: Tensor, mask: Tensor) -> Tensor:
    """Displacement-field loss of the refinement network (dense-displacement refinement eq. 3):
    mean end-point error ``||Delta_pred(p) - Delta_gt(p)||_2`` over the rendered pixels.

    ``pred_disp``, ``gt_disp`` ``(B, 2, H, W)`` pixels; ``mask`` ``(B, H, W)`` or
    ``(B, 1, H, W)`` (1 where a triangle was rendered). Normalisation: pooled over every
    rendered pixel of the batch; 0 when nothing was rendered. Apply once per hourglass stack.
    """
    fn = "endpoint_error_loss"
    check_tensor(fn, "gt_disp", gt_disp, (None, 2, None, None), "(B, 2, H, W)")
    _same_map(fn, pred_disp, gt_disp, "pred_disp", "gt_disp")
    m = _single_channel(fn, "mask", torch.as_tensor(mask, device=pred_disp.device))
    if m.shape != (gt_disp.shape[0],) + gt_disp.shape[2:]:
        raise ValueError(
            f"{fn}: mask has shape {tuple(m.shape)}, expected (B, H, W) matching gt_disp"
        )
    m = m.to(pred_disp.dtype)
    rendered = m != 0
    r = rendered[:, None]
    diff = keep(r, pred_disp) - keep(r, gt_disp.to(pred_disp.dtype))
    sq = (diff**2).sum(dim=1)
    # sqrt with a zero (not NaN) gradient where the error vanishes
    nonzero = sq > 0
    epe = torch.where(nonzero, torch.sqrt(torch.where(nonzero, sq, torch.ones_like(sq))), 0.0)
    return safe_div((m * epe).sum(), m.sum())
