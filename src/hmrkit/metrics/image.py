"""2D image-space errors, in pixels."""

from __future__ import annotations

import torch

from .pose import check_pair, check_valid, mean_distance

__all__ = ["epe"]


def epe(pred_2d: torch.Tensor, gt_2d: torch.Tensor, mask=None) -> torch.Tensor:
    """End-point error (pixels, ``(B,)``): mean Euclidean distance between ``(B, N, 2)`` points.

    No alignment. ``mask (B, N)`` (bool, or 0/1 float weights) keeps only the masked points (e.g.
    visible keypoints or rendered pixels); samples with an empty mask give NaN.
    """
    check_pair("epe", pred_2d, gt_2d, dim=2, what="(B, N, 2)")
    return mean_distance(pred_2d - gt_2d, check_valid("epe", mask, gt_2d, "mask"))
