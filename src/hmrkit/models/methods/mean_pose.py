"""The "mean pose" floor: every person gets the mean pose and shape, the camera from the box.

No learning and no image: the prediction is the regressor's initial parameters (mean pose
of hmrkit's pose distribution, shape 0, crop camera ``(0.9, 0, 0)``), so its errors are the
floor any trained method must beat (issue 4's baseline target is measured against it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hmrkit.geometry.rotations import sixd_to_rotmat
from hmrkit.models.heads import mean_parameters

from .base import BodyEstimate, MethodModule


class MeanPose(MethodModule):
    """Constant mean parameters; the translation follows the box (CLIFF conversion)."""

    def __init__(self, body_model: str = "anny24", num_betas: int = 10):
        """
        Args:
            body_model: body model name (``anny24``, ``smpl``).
            num_betas: shape coefficients (all zero).
        """
        super().__init__(body_model, num_betas)
        self.save_hyperparameters()
        mean = mean_parameters(self.body.num_joints, num_betas)
        self.register_buffer("mean_pose", torch.as_tensor(mean["pose"]).view(-1, 6))
        self.register_buffer("mean_betas", torch.as_tensor(mean["betas"]))
        self.register_buffer("mean_cam", torch.as_tensor(mean["cam"]))

    def estimate(self, batch: dict[str, Tensor]) -> BodyEstimate:
        B = batch["box_center"].shape[0]
        rotmat = sixd_to_rotmat(self.mean_pose).expand(B, -1, -1, -1)
        betas = self.mean_betas.expand(B, -1)
        cam = self.mean_cam.expand(B, -1)
        vertices, joints = self.pose_body(rotmat, betas)
        return BodyEstimate(rotmat, betas, cam, self.full_translation(cam, batch), vertices, joints)

    def compute_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise TypeError("MeanPose has nothing to train")
