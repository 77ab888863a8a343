"""Training losses: one function per loss, each naming the paper equation it implements.

Conventions (SPIN lineage, followed by CLIFF, Multi-RoI, PyMAF, W-HMR):

- All losses are batched torch, dtype- and device-generic, and return a scalar tensor (except
  :func:`iuv_losses`, a dict of three scalars).
- Availability: a loss over a label some samples lack takes ``has`` (the Sample's ``has_*``
  flag, ``(B,)``) and is the MEAN OVER THE ELEMENTS OF THE LABELLED SAMPLES (SPIN's
  ``pred[has == 1]`` then ``.mean()``); unlabelled samples contribute exactly zero (value and
  gradient, even with NaN placeholders) and a batch with no labelled sample gives 0, never NaN.
- 2D keypoint losses follow SPIN's confidence weighting instead: the mean over ALL ``B * K * 2``
  elements, invisible keypoints weighted 0 (so they still count in the denominator).
- Weights are not applied inside the losses (except where a paper fixes a scale inside the
  term, e.g. W-HMR eq. 8's 1e-6); see :mod:`hmrkit.losses.weights`.
- A method's objective is a loss set (:mod:`hmrkit.losses.sets`), a part of its config.
"""

from .camera import camera_consistency_loss, pseudo_focal_loss
from .contrastive import ProjectionHead, contrastive_loss, sigmoid_relu_gate
from .dense import (
    IUV_WEIGHTS,
    endpoint_error_loss,
    inverse_depth_loss,
    iuv_losses,
    silhouette_bce,
)
from .keypoints import (
    full2_loss,
    full_image_keypoint_loss,
    keypoint_2d_loss,
    keypoint_3d_loss,
    whmr_full_image_keypoint_loss,
)
from .params import camera_scale_prior, pose_loss, shape_loss, vertex_loss
from .sets import CLIFFLosses, LossContext, LossSet, MultiRoILosses, SPINLosses
from .weights import MULTIROI_WEIGHTS, SPIN_WEIGHTS, WHMR_WEIGHTS, LossWeights, weighted_sum

__all__ = [
    "CLIFFLosses",
    "IUV_WEIGHTS",
    "LossContext",
    "LossSet",
    "LossWeights",
    "MultiRoILosses",
    "SPINLosses",
    "MULTIROI_WEIGHTS",
    "SPIN_WEIGHTS",
    "WHMR_WEIGHTS",
    "ProjectionHead",
    "camera_consistency_loss",
    "camera_scale_prior",
    "contrastive_loss",
    "endpoint_error_loss",
    "full2_loss",
    "full_image_keypoint_loss",
    "inverse_depth_loss",
    "iuv_losses",
    "keypoint_2d_loss",
    "keypoint_3d_loss",
    "pose_loss",
    "pseudo_focal_loss",
    "shape_loss",
    "sigmoid_relu_gate",
    "silhouette_bce",
    "vertex_loss",
    "weighted_sum",
    "whmr_full_image_keypoint_loss",
]
