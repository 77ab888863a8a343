"""CLIFF baseline (Li et al. 2022): box information in, 2D loss in the full image.

The regressor also sees the normalised box ``[c_x - W/2, c_y - H/2, b]`` (CLIFF eq. 1 /
methods.md "Shared conventions"), and the predicted crop camera is converted to the
full-image camera (``t_z = 2 f / (b s)``...), whose projection of the joints is compared with
the labelled 2D keypoints in the full image (focal ``sqrt(W^2 + H^2)`` or the known one).
"""

from __future__ import annotations

from torch import Tensor

from hmrkit.body.model import BodyOutput
from hmrkit.geometry.cameras import Camera, cliff_bbox_info
from hmrkit.losses import full_image_keypoint_loss

from .base import BodyEstimate
from .hmr import HMR


class CLIFF(HMR):
    """HMR + CLIFF box information + full-image 2D loss."""

    info_dim = 3
    bbox_normalise = "cliff"

    def box_info(self, batch: dict[str, Tensor]) -> Tensor:
        camera = Camera.from_sample(batch)
        return cliff_bbox_info(
            batch["box_center"], batch["box_size"], camera.image_size, camera.focal,
            normalise=self.bbox_normalise, principal_point=camera.principal_point,
        )

    def keypoint_2d_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> Tensor:
        """CLIFF: full-image perspective projection with the converted camera."""
        out = BodyOutput(est.vertices, est.joints)
        camera = Camera.from_sample(batch)
        total = 0.0
        for name in self.keypoint_sets:
            total = total + full_image_keypoint_loss(
                self.body.keypoints(out, name), camera.focal_xy, camera.principal_point,
                batch[f"keypoints2d/{name}"], batch["box_center"], batch["box_size"],
                batch["has_keypoints2d"], transl=est.transl, crop_affine=batch["crop_affine"],
                res=self.image_size,
            )
        return total / len(self.keypoint_sets)
