"""Camera losses: Multi-RoI local-camera consistency, W-HMR pseudo focal length."""

from __future__ import annotations

import torch
from torch import Tensor

from hmrkit.geometry.cameras import default_focal

from ._common import batch_mean, check_tensor, flags, keep, labelled_mean, per_sample

__all__ = ["camera_consistency_loss", "pseudo_focal_loss"]

PAPER_CONSISTENCY_WEIGHTS = (0.1, 0.1, 1e-4)
"""``(lambda_x, lambda_y, lambda_s)`` of Multi-RoI eq. 16."""


def _image_size(fn: str, image_size, batch: int, like: Tensor) -> Tensor:
    """``(2,)``, ``(B, 2)`` or ``(B, M, 2)`` -> ``(B, 1 or M, 2)``."""
    wh = torch.as_tensor(image_size, dtype=like.dtype, device=like.device)
    if wh.dim() == 1 and wh.shape[0] == 2:
        return wh.expand(batch, 1, 2)
    if wh.dim() == 2 and wh.shape[1] == 2 and wh.shape[0] in (1, batch):
        return wh.expand(batch, 2)[:, None]
    if wh.dim() == 3 and wh.shape[0] == batch and wh.shape[2] == 2:
        return wh
    raise ValueError(f"{fn}: image_size has shape {tuple(wh.shape)}, expected (B, 2) = (W, H)")


def _full_cameras_from_local(cams: Tensor, box_center: Tensor, box_size: Tensor, image_size):
    """Multi-RoI eq. 12 for every RoI: ``(x_full, y_full, b s)``, each ``(B, M)``.

    ``x_full = t_x + 2 (c_x - W/2) / (b s)`` (likewise y) and ``b s = 2 f / t_z^full``: the
    quantities eq. 14 asks to agree across RoIs. ``cams (B, M, 3)`` = ``(s, t_x, t_y)``,
    ``box_center (B, M, 2)`` pixels, ``box_size (B, M)`` pixels, ``image_size`` ``(W, H)``.
    """
    fn = "camera_consistency_loss"
    check_tensor(fn, "cams", cams, (None, None, 3), "(B, M, 3) = (s, t_x, t_y)")
    B, M = cams.shape[:2]
    check_tensor(fn, "box_center", box_center, (B, M, 2), f"(B, M, 2) with B, M = {B}, {M}")
    check_tensor(fn, "box_size", box_size, (B, M), f"(B, M) with B, M = {B}, {M}")
    wh = _image_size(fn, image_size, B, cams)
    off = box_center.to(cams) - wh / 2
    bs = box_size.to(cams) * cams[..., 0]
    x = cams[..., 1] + 2 * off[..., 0] / bs
    y = cams[..., 2] + 2 * off[..., 1] / bs
    return x, y, bs


def _pairs(fn: str, pairs: str, M: int, device) -> tuple[Tensor, Tensor]:
    if pairs == "all":
        idx = torch.triu_indices(M, M, offset=1, device=device)
        return idx[0], idx[1]
    if pairs == "first":
        n = torch.arange(1, M, device=device)
        return torch.zeros_like(n), n
    raise ValueError(f"{fn}: pairs must be 'all' or 'first', got {pairs!r}")


def camera_consistency_loss(
    cams: Tensor,
    box_center: Tensor,
    box_size: Tensor,
    image_size,
    focal=None,
    *,
    pairs: str | None = None,
    weights: tuple[float, float, float] | None = None,
    variant: str = "paper",
    scale_term: str = "bs",
    valid=None,
) -> Tensor:
    """Multi-RoI local camera consistency (Multi-RoI eqs. 12-16).

    Every local crop camera ``(s_m, t_xm, t_ym)`` of the ``M`` RoIs of one person (boxes
    ``(c_m, b_m)``) maps to the same full camera (eq. 12), so for each pair ``(m, n)`` (eq. 15)::

        L_x = (t_xm + 2 c_xm / (b_m s_m) - t_xn - 2 c_xn / (b_n s_n))^2,  L_y likewise,
        L_s = (b_m s_m - b_n s_n)^2

    with ``c`` measured from the image centre, and ``L_cam = sum_pairs lambda_x L_x +
    lambda_y L_y + lambda_s L_s`` (eq. 16, ``weights`` default ``(0.1, 0.1, 1e-4)``).

    ``variant="paper"``: ``pairs="all"`` (default) sums over the ``M (M - 1) / 2`` unordered
    pairs ``m < n``; ``pairs="first"`` over the pairs ``(0, n)`` with the original box only.
    Normalisation: sum over pairs, mean over the persons (``valid (B,)`` optionally drops some).
    ``scale_term="tz"`` compares the full depths ``2 f / (b s)`` (metres; needs ``focal``
    ``(B,)``) instead of ``b s`` (pixels).

    ``variant="code"`` reproduces the official ``train/trainer_sim.py camera_losses``: pairs with
    RoI 0 only, ``mean((w_x r_x + w_y r_y)^2) + mean((w_s r_s)^2)`` over the ``B * M`` RoIs (RoI 0
    counted with its zero residual), where ``r_*`` are the signed residuals; its ``weights``
    default to ``(1, 1, 1e-4)`` (the x and y residuals are summed before squaring, so they can
    cancel).

    Zero (up to rounding) when all local cameras come from one full camera (e.g.
    :func:`hmrkit.geometry.cameras.full_to_crop_camera` of one translation), positive otherwise.
    ``focal`` is used by ``scale_term="tz"`` only: eqs. 14-15 need no focal length.
    """
    fn = "camera_consistency_loss"
    check_tensor(fn, "cams", cams, (None, None, 3), "(B, M, 3) = (s, t_x, t_y)")
    B, M = cams.shape[:2]
    w = flags(fn, valid, B, cams, "valid")
    keep_b = w != 0
    if valid is not None:  # dropped persons: a harmless camera, so no NaN reaches the gradient
        unit = torch.tensor([1.0, 0.0, 0.0], dtype=cams.dtype, device=cams.device)
        cams = torch.where(keep_b[:, None, None], cams, unit)
        box_size = torch.where(keep_b[:, None], box_size.to(cams), 1.0)
        box_center = torch.where(keep_b[:, None, None], box_center.to(cams), 0.0)
    x, y, bs = _full_cameras_from_local(cams, box_center, box_size, image_size)
    if scale_term == "tz":
        if focal is None:
            raise ValueError(f"{fn}: scale_term='tz' needs focal")
        s_full = 2 * per_sample(fn, focal, B, cams, "focal")[:, None] / bs
    elif scale_term == "bs":
        s_full = bs
    else:
        raise ValueError(f"{fn}: scale_term must be 'bs' or 'tz', got {scale_term!r}")
    if variant == "paper":
        wx, wy, ws = PAPER_CONSISTENCY_WEIGHTS if weights is None else weights
        m, n = _pairs(fn, "all" if pairs is None else pairs, M, cams.device)
        per_pair = (
            wx * (x[:, m] - x[:, n]) ** 2
            + wy * (y[:, m] - y[:, n]) ** 2
            + ws * (s_full[:, m] - s_full[:, n]) ** 2
        )
        per_person = keep(keep_b, per_pair).sum(dim=1)
        return labelled_mean(per_person[:, None], w)
    if variant == "code":
        if pairs not in (None, "first"):
            raise ValueError(f"{fn}: variant='code' uses pairs='first' only, got {pairs!r}")
        wx, wy, ws = (1.0, 1.0, 1e-4) if weights is None else weights
        r_xy = wx * (x[:, :1] - x) + wy * (y[:, :1] - y)
        r_s = ws * (s_full - s_full[:, :1])
        return labelled_mean(keep(keep_b, r_xy**2), w) + labelled_mean(keep(keep_b, r_s**2), w)
    raise ValueError(f"{fn}: variant must be 'paper' or 'code', got {variant!r}")


def pseudo_focal_loss(focal: Tensor, image_size, scale: float = 1e-6, has=None) -> Tensor:
    """W-HMR pseudo focal-length loss, stage I only (W-HMR eq. 8; code ``criterion_focal`` x
    ``LOSS.FOCAL_WEIGHTS``): ``scale * MSE(f, sqrt(W^2 + H^2))``.

    ``focal (B,)`` predicted focal lengths in pixels; ``image_size`` ``(B, 2)`` or ``(2,)``
    ``(W, H)``. Normalisation: mean over the samples (``has`` optionally drops some).
    """
    fn = "pseudo_focal_loss"
    if not isinstance(focal, Tensor):
        raise TypeError(f"{fn}: focal must be a torch.Tensor, got {type(focal).__name__}")
    f = focal[:, 0] if focal.dim() == 2 and focal.shape[1] == 1 else focal
    check_tensor(fn, "focal", f, (None,), "(B,)")
    B = f.shape[0]
    wh = torch.as_tensor(image_size, dtype=f.dtype, device=f.device)
    target = default_focal(wh.expand(B, 2) if wh.dim() == 1 else wh)
    if target.shape != (B,):
        raise ValueError(f"{fn}: image_size has shape {tuple(wh.shape)}, expected (B, 2) or (2,)")
    if has is None:
        return scale * batch_mean((f - target) ** 2)
    w = flags(fn, has, B, f)
    labelled = w != 0
    return scale * labelled_mean(keep(labelled, f - target) ** 2, w)
