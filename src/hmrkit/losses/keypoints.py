"""Keypoint losses of the SPIN lineage: crop 2D, 3D, CLIFF full-image 2D, W-HMR FULL2.

Frames: 2D losses of the SPIN lineage compare keypoints in NORMALISED CROP coordinates
(the crop spans ``[-1, 1]``, :func:`hmrkit.geometry.crops.pixels_to_normalized`); the Sample
schema stores 2D labels in full-image pixels, so :meth:`hmrkit.geometry.crops.CropBox.normalize`
converts them with the sample's ``crop_affine``. 3D keypoints are in metres.

Normalisation (SPIN's ``trainer.py``, kept by CLIFF, Multi-RoI, PyMAF and W-HMR):

- 2D losses: ``mean_{b, k, xy}(c_bk * (p - p_gt)^2)`` over the WHOLE batch (``B * K * 2``
  elements); unlabelled keypoints / samples have confidence 0 and contribute zero but still count
  in the denominator, exactly as SPIN.
- 3D loss: the same confidence-weighted squared error, averaged over the ``K * 3`` elements of the
  samples that have 3D labels only (``has = 1``); 0 when none has.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.crops import CropBox
from hmrkit.metrics.pose import root_align

from ._common import (
    batch_mean,
    box_wh,
    check_tensor,
    flags,
    keep,
    labelled_mean,
    per_sample_2,
)

__all__ = [
    "keypoint_2d_loss",
    "keypoint_3d_loss",
    "full_image_keypoint_loss",
    "whmr_full_image_keypoint_loss",
    "full2_loss",
]


class _Required:
    def __repr__(self) -> str:
        return "<required>"


_REQUIRED = _Required()


def _conf_2d(fn, gt, has, openpose_weight, gt_weight, num_openpose):
    """Per-keypoint weights ``(B, K)``: confidence x has x (openpose | gt) weight."""
    B, K = gt.shape[:2]
    if not 0 <= num_openpose <= K:
        raise ValueError(f"{fn}: num_openpose={num_openpose} outside [0, K={K}]")
    w = flags(fn, has, B, gt)
    kw = torch.full((K,), float(gt_weight), dtype=gt.dtype, device=gt.device)
    kw[:num_openpose] = float(openpose_weight)
    return keep(w != 0, gt[..., 2]) * w[:, None] * kw


def _weighted_sq_2d(pred_xy: Tensor, gt: Tensor, conf: Tensor) -> Tensor:
    """``conf * (pred - gt)^2`` per element ``(B, K, 2)``; labels with weight 0 are zeroed."""
    labelled = conf != 0
    gt_xy = keep(labelled, gt[..., :2])
    return conf[..., None] * (keep(labelled, pred_xy) - gt_xy) ** 2


def keypoint_2d_loss(
    pred: Tensor,
    gt: Tensor,
    has=None,
    *,
    openpose_weight: float = 0.0,
    gt_weight: float = 1.0,
    num_openpose: int = 0,
) -> Tensor:
    """2D reprojection loss, SPIN's confidence-weighted MSE (HMR's ``L_reproj``, there an L1;
    SPIN ``trainer.keypoint_loss``; Multi-RoI eq. 18 ``L_2D``; ImpHMR eq. 5 2D term; W-HMR eq. 5
    crop term).

    ``pred (B, K, 2)`` and ``gt (B, K, 3)`` ``(x, y, confidence)`` in normalised crop coordinates
    ``[-1, 1]``. The first ``num_openpose`` keypoints are weighted by ``openpose_weight`` and the
    rest by ``gt_weight`` (SPIN's 49 = 25 OpenPose + 24 GT joints use ``num_openpose=25``,
    weights 0 and 1). ``has (B,)`` optionally zeroes whole samples.
    Normalisation: mean over all ``B * K * 2`` elements (SPIN).
    """
    fn = "keypoint_2d_loss"
    check_tensor(fn, "gt", gt, (None, None, 3), "(B, K, 3) = (x, y, confidence)")
    check_tensor(
        fn, "pred", pred, (gt.shape[0], gt.shape[1], 2), f"(B, K, 2) matching gt {tuple(gt.shape)}"
    )
    conf = _conf_2d(fn, gt.to(pred.dtype), has, openpose_weight, gt_weight, num_openpose)
    return batch_mean(_weighted_sq_2d(pred, gt.to(pred.dtype), conf))


def keypoint_3d_loss(
    pred: Tensor,
    gt: Tensor,
    has=None,
    *,
    root: int | Sequence[int] | None = _REQUIRED,  # type: ignore[assignment]
    pred_root: Tensor | None = None,
    gt_root: Tensor | None = None,
) -> Tensor:
    """Root-relative 3D keypoint loss, confidence-weighted MSE (SPIN ``keypoint_3d_loss``;
    Multi-RoI eq. 18 ``L_3D``; ImpHMR eq. 5; W-HMR eq. 5 3D term).

    ``pred (B, K, 3)``; ``gt (B, K, 3)`` or ``(B, K, 4)`` with a confidence column (SPIN's ``S``).
    ``root`` is required, as in :mod:`hmrkit.metrics`: an index, indices averaged (SPIN centres
    on the mid-hip, ``root=(2, 3)`` of the LSP-14 / SPIN-24 orders; ``root=0`` for the SMPL-24
    pelvis), ``None`` for no centring, or ``pred_root=``/``gt_root=`` tensors ``(B, 3)``. Each
    set is centred on its own root. Normalisation: mean over the ``K * 3`` elements of the
    labelled samples (``has = 1``); 0 when none.
    """
    fn = "keypoint_3d_loss"
    check_tensor(fn, "gt", gt, (None, None, None), "(B, K, 3 or 4)")
    if gt.shape[-1] not in (3, 4):
        raise ValueError(f"{fn}: gt has shape {tuple(gt.shape)}, expected (B, K, 3 or 4)")
    check_tensor(
        fn, "pred", pred, (gt.shape[0], gt.shape[1], 3), f"(B, K, 3) matching gt {tuple(gt.shape)}"
    )
    if root is _REQUIRED and pred_root is None and gt_root is None:
        raise TypeError(
            f"{fn}: choose the root: root=<index or indices> (SPIN: the mid-hip, e.g. (2, 3) for "
            "LSP-14; 0 for the SMPL-24 pelvis), root=None, or pred_root=/gt_root= tensors"
        )
    if root is _REQUIRED:
        root = None
    gt = gt.to(pred.dtype)
    B, K = gt.shape[:2]
    w = flags(fn, has, B, pred)
    labelled = w != 0
    conf = gt[..., 3] if gt.shape[-1] == 4 else torch.ones_like(gt[..., 0])
    conf = keep(labelled, conf)
    gt_xyz = keep(labelled, gt[..., :3])
    if gt_root is not None:
        gt_root = keep(labelled, gt_root.to(pred.dtype))
    if pred_root is not None:
        pred_root = keep(labelled, pred_root)
    p, g = root_align(fn, keep(labelled, pred), gt_xyz, root, pred_root, gt_root)
    err = keep(labelled, conf[..., None] * (p - g) ** 2)
    return labelled_mean(err, w)


def full_image_keypoint_loss(
    pred_joints_cam: Tensor,
    gt_2d_full: Tensor,
    camera: Camera,
    crop: CropBox,
    has=None,
    *,
    transl: Tensor | None = None,
    openpose_weight: float = 0.0,
    gt_weight: float = 1.0,
    num_openpose: int = 0,
) -> Tensor:
    """CLIFF full-image 2D loss (CLIFF sec. 3; Multi-RoI eq. 18 ``L_2D`` "in the full image").

    ``pred_joints_cam (B, K, 3)`` are body-model joints in the camera frame (joints + the
    predicted full-image translation, or give ``transl (B, 3)`` to add it here). They are
    projected with the full-image camera ``camera`` (:class:`~hmrkit.geometry.cameras.Camera`),
    then prediction and ``gt_2d_full (B, K, 3)`` (pixels + confidence) are both normalised to the
    crop frame of ``crop`` (:meth:`~hmrkit.geometry.crops.CropBox.normalize`: full -> crop pixels
    by the crop transform, rotation and flip included, then ``2 p / res - 1``), as CLIFF's code
    does. Then :func:`keypoint_2d_loss` (confidence-weighted MSE, mean over ``B * K * 2``).
    """
    fn = "full_image_keypoint_loss"
    check_tensor(fn, "gt_2d_full", gt_2d_full, (None, None, 3), "(B, K, 3) = (x, y, confidence)")
    check_tensor(
        fn,
        "pred_joints_cam",
        pred_joints_cam,
        (gt_2d_full.shape[0], gt_2d_full.shape[1], 3),
        f"(B, K, 3) matching gt_2d_full {tuple(gt_2d_full.shape)}",
    )
    pred_px = camera.project(pred_joints_cam, transl=transl)
    gt = gt_2d_full.to(pred_px.dtype)
    return keypoint_2d_loss(
        crop.normalize(pred_px),
        crop.normalize(gt),
        has,
        openpose_weight=openpose_weight,
        gt_weight=gt_weight,
        num_openpose=num_openpose,
    )


def whmr_full_image_keypoint_loss(
    pred_2d_full: Tensor,
    gt_2d_full: Tensor,
    image_size,
    box_size,
    has=None,
    *,
    openpose_weight: float = 0.0,
    gt_weight: float = 1.0,
    num_openpose: int = 0,
) -> Tensor:
    """W-HMR FULL2 full-image term (W-HMR eq. 5, last term; code ``loss_keypoints_world``).

    ``pred_2d_full (B, K, 2)`` projected with the full-perspective camera and
    ``gt_2d_full (B, K, 3)`` in full-image pixels are normalised to ``2 x / W - 1``,
    ``2 y / H - 1``; the confidence-weighted squared error is multiplied per axis by the dynamic
    balance weight ``[W / w_box, H / h_box]`` (``box_size`` ``(B,)`` square side or ``(B, 2)``
    ``(w, h)``), then averaged over all ``B * K * 2`` elements (SPIN).
    """
    fn = "whmr_full_image_keypoint_loss"
    check_tensor(fn, "gt_2d_full", gt_2d_full, (None, None, 3), "(B, K, 3) = (x, y, confidence)")
    check_tensor(
        fn,
        "pred_2d_full",
        pred_2d_full,
        (gt_2d_full.shape[0], gt_2d_full.shape[1], 2),
        f"(B, K, 2) matching gt_2d_full {tuple(gt_2d_full.shape)}",
    )
    B = gt_2d_full.shape[0]
    gt = gt_2d_full.to(pred_2d_full.dtype)
    wh = per_sample_2(fn, image_size, B, pred_2d_full, "image_size")
    balance = wh / box_wh(fn, box_size, B, pred_2d_full)
    pred_n = 2 * pred_2d_full / wh[:, None] - 1
    gt_n = torch.cat([2 * gt[..., :2] / wh[:, None] - 1, gt[..., 2:]], -1)
    conf = _conf_2d(fn, gt_n, has, openpose_weight, gt_weight, num_openpose)
    return batch_mean(_weighted_sq_2d(pred_n, gt_n, conf) * balance[:, None])


def full2_loss(
    pred_2d_crop: Tensor,
    gt_2d_crop: Tensor,
    pred_2d_full: Tensor,
    gt_2d_full: Tensor,
    image_size,
    box_size,
    has=None,
    *,
    openpose_weight: float = 0.0,
    gt_weight: float = 1.0,
    num_openpose: int = 0,
) -> Tensor:
    """W-HMR FULL2 2D supervision (W-HMR eq. 5, both 2D terms; code ``core/trainer.py``).

    ``keypoint_2d_loss(pred_2d_crop, gt_2d_crop)`` (normalised crop coordinates, weak
    perspective) ``+ whmr_full_image_keypoint_loss(pred_2d_full, gt_2d_full, image_size,
    box_size)`` (full-image pixels, full perspective with the predicted focal). Both terms are
    means over ``B * K * 2`` and share the 2D weight (300 at the x60 scale). Detaching per
    training stage (W-HMR 3.4) is the caller's business.
    """
    kw = dict(openpose_weight=openpose_weight, gt_weight=gt_weight, num_openpose=num_openpose)
    crop = keypoint_2d_loss(pred_2d_crop, gt_2d_crop, has, **kw)
    full = whmr_full_image_keypoint_loss(pred_2d_full, gt_2d_full, image_size, box_size, has, **kw)
    return crop + full
