"""Parameter, vertex and camera-prior losses of the SPIN lineage.

Normalisation (SPIN ``trainer.py``): each loss is the mean over the elements of the samples that
have the label (``has = 1``, e.g. ``has_smpl``); samples without it contribute zero and a batch
with none gives 0, never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hmrkit.metrics.pose import root_align

from ._common import batch_mean, check_same, check_tensor, flags, keep, labelled_mean

__all__ = ["pose_loss", "shape_loss", "vertex_loss", "camera_scale_prior"]


def _masked_elementwise(fn: str, pred: Tensor, gt: Tensor, has, power: int) -> Tensor:
    w = flags(fn, has, pred.shape[0], pred)
    labelled = w != 0
    diff = keep(labelled, pred) - keep(labelled, gt.to(pred.dtype))
    err = diff.abs() if power == 1 else diff**2
    return labelled_mean(err, w)


def pose_loss(pred_rotmat: Tensor, gt_rotmat: Tensor, has=None) -> Tensor:
    """Pose parameter loss: MSE on rotation matrices (SPIN ``smpl_losses``; Multi-RoI eq. 18
    ``L_smpl``; W-HMR eq. 10 pose term; ImpHMR eq. 5).

    ``pred_rotmat``, ``gt_rotmat`` ``(B, J, 3, 3)`` (J = 24 for SMPL / Anny-24). Normalisation:
    mean over the ``J * 9`` entries of the samples with ``has`` (``has_smpl``).
    """
    fn = "pose_loss"
    check_same(fn, pred_rotmat, gt_rotmat, "pred_rotmat", "gt_rotmat")
    check_tensor(fn, "pred_rotmat", pred_rotmat, (None, None, 3, 3), "(B, J, 3, 3)")
    return _masked_elementwise(fn, pred_rotmat, gt_rotmat, has, 2)


def shape_loss(pred_betas: Tensor, gt_betas: Tensor, has=None) -> Tensor:
    """Shape parameter loss: MSE on the shape coefficients (SPIN ``smpl_losses``; Multi-RoI
    eq. 18 ``L_smpl``; W-HMR eq. 10 shape term; ImpHMR eq. 5).

    ``pred_betas``, ``gt_betas`` ``(B, K)``. Normalisation: mean over the ``K`` coefficients of
    the samples with ``has``.
    """
    fn = "shape_loss"
    check_same(fn, pred_betas, gt_betas, "pred_betas", "gt_betas")
    check_tensor(fn, "pred_betas", pred_betas, (None, None), "(B, K)")
    return _masked_elementwise(fn, pred_betas, gt_betas, has, 2)


def vertex_loss(
    pred: Tensor,
    gt: Tensor,
    has=None,
    *,
    root: int | Sequence[int] | None = None,
    pred_root: Tensor | None = None,
    gt_root: Tensor | None = None,
) -> Tensor:
    """Per-vertex L1 loss (SPIN/PyMAF ``shape_loss``; Multi-RoI eq. 18 ``L_vert``; W-HMR eq. 9,
    applied once per vertex set for its triple loss).

    ``pred``, ``gt`` ``(B, V, 3)`` in metres. No centring by default (SPIN, PyMAF and W-HMR
    compare body-frame vertices without translation); Multi-RoI's code first subtracts each
    mesh's own pelvis: pass ``pred_root=``/``gt_root=`` ``(B, 3)`` (or ``root=`` vertex indices).
    Normalisation: mean over the ``V * 3`` coordinates of the samples with ``has``.
    """
    fn = "vertex_loss"
    check_same(fn, pred, gt)
    check_tensor(fn, "pred", pred, (None, None, 3), "(B, V, 3)")
    w = flags(fn, has, pred.shape[0], pred)
    labelled = w != 0
    g = keep(labelled, gt.to(pred.dtype))
    if gt_root is not None:
        gt_root = keep(labelled, gt_root.to(pred.dtype))
    if pred_root is not None:
        pred_root = keep(labelled, pred_root)
    p, g = root_align(fn, keep(labelled, pred), g, root, pred_root, gt_root)
    return labelled_mean(keep(labelled, (p - g).abs()), w)


def camera_scale_prior(s: Tensor) -> Tensor:
    """Camera scale prior ``mean(exp(-10 s)^2)`` keeping the weak-perspective scale positive
    (SPIN ``trainer.py``, "forces the network to predict positive depth values"; also CLIFF,
    PyMAF, W-HMR).

    ``s`` is the predicted crop-camera scale, any shape (pass ``cam[:, 0]``, not the whole
    camera). No label, hence no mask: mean over every element (0 for an empty tensor).
    """
    if not isinstance(s, Tensor):
        raise TypeError(f"camera_scale_prior: s must be a torch.Tensor, got {type(s).__name__}")
    return batch_mean(torch.exp(-10 * s) ** 2)
