"""The "mean pose" floor: every person gets the mean pose and shape, the camera from the box.

No learning and no image: the prediction is the regressor's initial parameters (mean pose
of hmrkit's pose distribution, shape 0, crop camera ``(0.9, 0, 0)``), so its errors are the
floor any trained method must beat (issue 4's baseline target is measured against it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.crops import CropBox
from hmrkit.geometry.rotations import sixd_to_rotmat
from hmrkit.models.heads import mean_parameters

from .base import BodyEstimate, Method


class MeanPose(Method):
    """Constant mean parameters; the translation follows the box (CLIFF conversion)."""

    crop_size = None  # reads no image

    def __init__(self, body_model: str = "anny24", num_betas: int | None = None):
        """
        Args:
            body_model: body model name (``anny24``, ``smpl``).
            num_betas: shape coefficients (all zero; None: the body model's default).
        """
        super().__init__(body_model, num_betas)
        self.save_hyperparameters()
        mean = mean_parameters(self.body.num_joints, self.num_betas)
        self.register_buffer("mean_pose", torch.as_tensor(mean["pose"]).view(-1, 6))
        self.register_buffer("mean_betas", torch.as_tensor(mean["betas"]))
        self.register_buffer("mean_cam", torch.as_tensor(mean["cam"]))

    def input_keys(self) -> tuple[str, ...]:
        return ("box_center", "box_size", "camera/intrinsics", "camera/image_size")

    def estimate(self, batch: dict[str, Tensor]) -> BodyEstimate:
        B = batch["box_center"].shape[0]
        rotmat = sixd_to_rotmat(self.mean_pose).expand(B, -1, -1, -1)
        cam = self.mean_cam.expand(B, -1)
        crop = CropBox(batch["box_center"], batch["box_size"], 1)
        return BodyEstimate(rotmat=rotmat, betas=self.mean_betas.expand(B, -1), cam_crop=cam,
                            transl=crop.to_full_translation(cam, Camera.from_sample(batch)))
