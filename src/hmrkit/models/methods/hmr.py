"""HMR / SPIN baseline: backbone -> iterative regressor -> weak-perspective crop camera.

SPIN (Kolotouros et al. 2019) regressor trained with the SPIN-lineage losses: 2D keypoints
in the crop (weak perspective), pelvis-centred 3D joints, rotation-matrix pose, shape, and
the camera-scale prior (methods.md "Shared conventions").
"""

from __future__ import annotations

import torch
from torch import Tensor

from hmrkit.body.model import BodyOutput
from hmrkit.geometry.cameras import Camera, project_weak_perspective
from hmrkit.geometry.crops import CropBox
from hmrkit.losses import (
    camera_scale_prior,
    crop_normalized_keypoints,
    keypoint_2d_loss,
    keypoint_3d_loss,
    pose_loss,
    shape_loss,
    vertex_loss,
)
from hmrkit.losses.weights import LossWeights
from hmrkit.models.backbones import build_backbone, register_imagenet_normalisation
from hmrkit.models.heads import IterativeRegressor

from .base import BodyEstimate, Method, Optim


class HMR(Method):
    """SPIN's regressor on a timm backbone; 2D loss in the crop."""

    info_dim = 0

    def __init__(
        self,
        backbone: str = "resnet18",
        image_size: int = 224,
        backbone_checkpoint: str | None = None,
        iterations: int = 3,
        regressor_hidden: int = 1024,
        keypoint_sets: tuple[str, ...] = ("smpl24", "coco17"),
        body_model: str = "anny24",
        num_betas: int | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        loss_weights: LossWeights | None = None,
        lr_schedule: str = "constant",
        warmup_steps: int = 0,
    ):
        """
        Args:
            backbone: timm backbone (``resnet18/34/50``, ``hrnet_w32/w48``, ``vit_*``).
            image_size: crop side in pixels.
            backbone_checkpoint: optional local weights for the backbone.
            iterations: regressor iterations (SPIN: 3).
            regressor_hidden: width of the regressor's two hidden layers (SPIN: 1024).
            keypoint_sets: 2D keypoint sets supervised.
            body_model, num_betas, lr, weight_decay, loss_weights, lr_schedule, warmup_steps:
                see :class:`MethodModule`.
        """
        super().__init__(body_model, num_betas, Optim(lr, weight_decay, lr_schedule, warmup_steps))
        self.save_hyperparameters()
        self.loss_weights = loss_weights or LossWeights()
        self.crop_size = self.image_size = image_size
        self.keypoint_sets = tuple(keypoint_sets)
        self.backbone, dim = build_backbone(backbone, image_size, backbone_checkpoint)
        self.regressor = IterativeRegressor(
            dim, self.info_dim, self.body.num_joints, self.num_betas, hidden=regressor_hidden,
            iterations=iterations,
        )
        register_imagenet_normalisation(self)

    def input_keys(self) -> tuple[str, ...]:
        return ("image", "box_center", "box_size", "crop_affine", "camera/intrinsics",
                "camera/image_size")

    def pose_body(self, rotmat: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        out = self.body(rotmat[:, 0], rotmat[:, 1:], betas)
        return out.vertices, out.joints

    def full_translation(self, cam_crop: Tensor, batch: dict[str, Tensor]) -> Tensor:
        crop = CropBox.from_sample(batch, self.crop_size)
        return crop.to_full_translation(cam_crop, Camera.from_sample(batch))

    def box_info(self, batch: dict[str, Tensor]) -> Tensor | None:
        """Extra regressor input describing the box (none for HMR)."""
        return None

    def estimate(self, batch: dict[str, Tensor]) -> BodyEstimate:
        features = self.backbone((batch["image"] - self.pixel_mean) / self.pixel_std)
        outs = self.regressor(features, self.box_info(batch))
        last = outs[-1]
        vertices, joints = self.pose_body(last.rotmat, last.betas)
        return BodyEstimate(
            rotmat=last.rotmat, betas=last.betas, cam_crop=last.cam,
            transl=self.full_translation(last.cam, batch), vertices=vertices, joints=joints,
            extras={"iterations": outs},
        )

    # ------------------------------------------------------------------ losses
    def keypoint_2d_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> Tensor:
        """SPIN: weak-perspective projection vs labels in normalised crop coordinates."""
        out = BodyOutput(est.vertices, est.joints)
        total = 0.0
        for name in self.keypoint_sets:
            pred = project_weak_perspective(self.body.keypoints(out, name), est.cam_crop)
            gt = crop_normalized_keypoints(
                batch[f"keypoints2d/{name}"], batch["crop_affine"], self.image_size
            )
            total = total + keypoint_2d_loss(pred, gt, batch["has_keypoints2d"])
        return total / len(self.keypoint_sets)

    def compute_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        w = self.loss_weights
        gt_rotmat = self.gt_rotmat(batch)
        has = batch["has_smpl"] * self.labels.same_model(batch).to(batch["has_smpl"])
        k = min(self.num_betas, batch["betas"].shape[1])
        losses = {
            "keypoints_2d": w.keypoints_2d * self.keypoint_2d_losses(est, batch),
            "keypoints_3d": w.keypoints_3d * keypoint_3d_loss(
                est.joints, batch["joints3d"], batch["has_joints3d"], root=0
            ),
            "pose": w.pose * pose_loss(est.rotmat, gt_rotmat, has),
            "betas": w.betas * shape_loss(est.betas[:, :k], batch["betas"][:, :k], has),
            "cam_prior": w.cam_prior * camera_scale_prior(est.cam_crop[:, 0]),
        }
        if w.vertices:
            gt = self.labels.pose(batch)
            losses["vertices"] = w.vertices * vertex_loss(est.vertices, gt.vertices, has)
        return losses

    @staticmethod
    def gt_rotmat(batch: dict[str, Tensor]) -> Tensor:
        """(B, 24, 3, 3) labelled rotations: root orientation then body pose."""
        return torch.cat([batch["global_orient"][:, None], batch["body_pose"]], dim=1)
