"""HMR / SPIN baseline: backbone -> iterative regressor -> weak-perspective crop camera.

SPIN (Kolotouros et al. 2019) regressor trained with the SPIN-lineage losses: 2D keypoints
in the crop (weak perspective), pelvis-centred 3D joints, rotation-matrix pose, shape, and
the camera-scale prior (methods.md "Shared conventions"). Composed from parts
(:mod:`hmrkit.models.parts`): a backbone, a regressor head, optional box information and a
loss set; CLIFF (:mod:`.cliff`) is this method with CLIFF's box information and loss set.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.crops import CropBox
from hmrkit.losses.sets import LossSet, SPINLosses
from hmrkit.models.backbones import Backbone, TimmBackbone
from hmrkit.models.box_info import BoxInfo
from hmrkit.models.heads import IterativeRegressor

from .base import BodyEstimate, Method, Optim

__all__ = ["HMR"]


class HMR(Method):
    """A regressor on a backbone (SPIN's by default): one crop per person in, the body model's
    pose and shape and a crop camera out, the full-image translation by CLIFF's conversion."""

    def __init__(
        self,
        backbone: Callable[[int], Backbone] = TimmBackbone,
        head: Callable[[int, int, int, int], nn.Module] = IterativeRegressor,
        box_info: Callable[[], BoxInfo] | None = None,
        losses: Callable[[], LossSet] = SPINLosses,
        crop_size: int = 224,
        body_model: str = "anny24",
        num_betas: int | None = None,
        optim: Optim | None = None,
    ):
        """
        Args:
            backbone: the image backbone, built with ``image_size=crop_size``
                (:class:`~hmrkit.models.backbones.TimmBackbone`: ``name``, ``checkpoint``).
            head: the regressor, built with the backbone's width, the box information's width
                and the body model's joints and shape coefficients, called as
                ``head(features, info) -> [RegressorOutput per iteration]``
                (:class:`~hmrkit.models.heads.IterativeRegressor`: ``hidden``, ``iterations``;
                or a lifting head).
            box_info: extra regressor input describing the box in the full image (None for
                HMR; CLIFF's :class:`~hmrkit.models.box_info.CliffBoxInfo`).
            losses: the training objective (:mod:`hmrkit.losses.sets`).
            crop_size: side of the person crops in pixels.
            body_model, num_betas, optim: see :class:`~hmrkit.models.methods.base.Method`.
        """
        super().__init__(body_model, num_betas, optim)
        self.save_hyperparameters()
        self.crop_size = int(crop_size)
        self.backbone = backbone(image_size=self.crop_size)
        self.crop_style = getattr(self.backbone, "crop_style", "box")
        self.box_info = box_info() if box_info is not None else None
        self.regressor = head(
            feature_dim=self.backbone.out_features, info_dim=self.box_info.dim if self.box_info
            else 0, num_joints=self.body.num_joints, num_betas=self.num_betas,
        )
        self.losses = losses()

    def input_keys(self) -> tuple[str, ...]:
        rotated = ("box_rotation",) if self.crop_style == "blazepose" else ()
        return ("image", "box_center", "box_size", "crop_affine", *rotated, "camera/intrinsics",
                "camera/image_size")

    def estimate(self, batch: dict[str, Tensor]) -> BodyEstimate:
        camera = Camera.from_sample(batch)
        crop = CropBox.from_sample(batch, self.crop_size)
        features = self.backbone.from_batch(batch)
        info = self.box_info(crop, camera) if self.box_info is not None else None
        outs = self.regressor(features, info)
        last = outs[-1]
        out = self.body(last.rotmat[:, 0], last.rotmat[:, 1:], last.betas)
        est = BodyEstimate(
            rotmat=last.rotmat, betas=last.betas, cam_crop=last.cam,
            transl=crop.to_full_translation(last.cam, camera), vertices=out.vertices,
            joints=out.joints, extras={"iterations": outs},
        )
        # a rotated crop's estimate is in the rolled camera: back to the sample's camera frame
        return est if crop.rotation is None else est.unrolled(crop.roll_matrix())

    def compute_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.losses(est, batch, self.loss_context)
