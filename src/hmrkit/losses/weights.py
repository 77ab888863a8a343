"""Loss weights of each method, at SPIN's x60 scale, and a helper to combine losses.

SPIN's trainer sums ``5 L_2D + 5 L_3D + 1 L_pose + 0.001 L_shape + 0 L_vert + 1 L_cam-prior``
and multiplies the total by 60; the dictionaries below hold the products, so a method's total is
``weighted_sum(losses, WEIGHTS)`` with no further factor. Keys are the names the loss terms are
logged under: ``keypoints_2d`` (:func:`keypoint_2d_loss`, :func:`full_image_keypoint_loss`,
:func:`full2_loss`), ``keypoints_3d``, ``pose``, ``betas`` (:func:`shape_loss`), ``vertices``,
``cam_prior`` (:func:`camera_scale_prior`), and the method-specific terms; :class:`LossWeights`
holds the SPIN-lineage ones for the loss sets (:mod:`hmrkit.losses.sets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

__all__ = ["LossWeights", "SPIN_WEIGHTS", "MULTIROI_WEIGHTS", "WHMR_WEIGHTS", "weighted_sum"]


@dataclass
class LossWeights:
    """Weights of the SPIN-lineage terms (x60 scale; methods.md "Shared conventions")."""

    keypoints_2d: float = 300.0
    """2D keypoints (SPIN: 5 x 60)."""
    keypoints_3d: float = 300.0
    """Pelvis-centred 3D joints (SPIN: 5 x 60)."""
    pose: float = 60.0
    """MSE on rotation matrices (SPIN: 1 x 60)."""
    betas: float = 0.06
    """MSE on shape coefficients (SPIN: 0.001 x 60)."""
    cam_prior: float = 60.0
    """``exp(-10 s)^2`` keeping the camera scale positive (SPIN: 1 x 60)."""
    vertices: float = 0.0
    """L1 on vertices (off in SPIN; W-HMR 15, Multi-RoI 60)."""


SPIN_WEIGHTS: dict[str, float] = asdict(LossWeights())
"""SPIN (Kolotouros et al. 2019, ``train_options.py`` defaults x 60): keypoint weight 5 for 2D
and 3D, pose 1, betas 0.001, camera prior 1 (unweighted in the sum), vertex (``shape_loss``)
weight 0 -- SPIN leaves the per-vertex L1 off. CLIFF, PyMAF and ImpHMR train with these."""

MULTIROI_WEIGHTS: dict[str, float] = {
    "keypoints_2d": 300.0,
    "keypoints_3d": 300.0,
    "vertices": 60.0,
    "pose": 60.0,
    "betas": 0.06,
    "camera_consistency": 60.0,
    "contrastive": 6.0,
}
"""Multi-RoI (paper eq. 19: lambda_cam 1, lambda_cont 0.1, the rest as SPIN; official code
``train/trainer_sim.py``: 5 L2D + 5 L3D + 1 vertex L1 + 1 pose + 0.001 shape + 1 cam
+ 0.1 cont, total x 60). ``keypoints_2d`` is the full-image loss, applied to every RoI. The code
adds no camera scale prior."""

WHMR_WEIGHTS: dict[str, float] = {
    "keypoints_2d": 300.0,
    "keypoints_3d": 300.0,
    "pose": 60.0,
    "betas": 0.06,
    "vertices": 15.0,
    "cam_prior": 1.0,
    "iuv_index": 2.0,
    "iuv_part": 0.3,
    "iuv_uv": 0.5,
    "depth": 0.5,
    "pseudo_focal": 1.0,
}
"""W-HMR (official code ``core/cfgs.py`` / ``core/trainer.py``): ``LOSS.KP_2D_W`` 300 on each of
the two FULL2 terms, ``KP_3D_W`` 300, ``POSE_W`` 60, ``SHAPE_W`` 0.06, ``VERT_W`` 15 on each of
the three vertex sets (eq. 9), camera prior added unweighted (1), IUV ``INDEX_WEIGHTS`` 2.0 /
``PART_WEIGHTS`` 0.3 / ``POINT_REGRESSION_WEIGHTS`` 0.5 (see
:data:`hmrkit.losses.dense.IUV_WEIGHTS`), depth map also x ``POINT_REGRESSION_WEIGHTS``, pseudo
focal 1 (its 1e-6 is inside :func:`pseudo_focal_loss`, stage I only)."""


def weighted_sum(losses: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``sum_k weights[k] * losses[k]`` over the keys of ``losses``.

    Every key of ``losses`` must be in ``weights`` (a typo should not silently drop a term);
    an empty ``losses`` gives a float 0 tensor.
    """
    missing = [k for k in losses if k not in weights]
    if missing:
        raise KeyError(f"weighted_sum: no weight for {missing}; known: {sorted(weights)}")
    total = None
    for key, value in losses.items():
        term = weights[key] * value
        total = term if total is None else total + term
    return torch.zeros(()) if total is None else total
