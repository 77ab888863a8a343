"""hmrkit's camera-rotation estimator: the pitch and roll (optionally the vertical field of view)
of the camera from the whole image.

W-HMR takes the camera rotation from SPEC's CamCalib network (trained on SPEC's own synthetic
scenes), which cannot be had here. hmrkit's synthetic scenes know their camera (pitch and roll
over a ground plane, no yaw: :func:`hmrkit.geometry.cameras.camera_to_world`), so a small
network learns them from the full images: :class:`CameraRotationNet` (a backbone on the
letterboxed full image, Sample key ``full_image``, and a 2-layer head regressing pitch, roll
[, vertical FoV] in radians, L1 loss in degrees), trained by :class:`CameraRotationEstimator`::

    hmrkit train --config configs/camrot-r18-96-cpu.yaml

W-HMR reads a trained net as its ``camera_rotation`` part (``checkpoint``: the estimator's run).
Its accuracy is measured by ``benchmarks/ablation_whmr.py`` (row "camera rotation"; docs/whmr.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmrkit.geometry.cameras import Camera, camera_to_world, pitch_roll, vertical_fov
from hmrkit.models.backbones import Backbone, TimmBackbone
from hmrkit.models.methods.base import Optim
from hmrkit.models.optim import adam_with_schedule

__all__ = ["FULL_IMAGE_KEY", "CameraRotationEstimator", "CameraRotationNet", "camera_targets"]

FULL_IMAGE_KEY = "full_image"
"""The Sample key of the letterboxed full image (:mod:`hmrkit.data.sample`)."""


def camera_targets(batch: dict[str, Tensor]) -> Tensor:
    """``(B, 3)`` pitch, roll, vertical FoV (radians) of a batch's cameras
    (``camera/to_world``, ``camera/intrinsics``, ``camera/image_size``)."""
    camera = Camera.from_sample(batch)
    if camera.cam_to_world is None:
        raise KeyError("camera targets need 'camera/to_world'")
    pitch, roll = pitch_roll(camera.cam_to_world)
    return torch.stack([pitch, roll, vertical_fov(camera.focal_xy[:, 1], camera.image_size)], 1)


class CameraRotationNet(nn.Module):
    """A backbone on the full image and a head: ``(B, 2)`` pitch, roll (``(B, 3)`` with the
    vertical FoV) in radians."""

    def __init__(self, image_size: int = 96, backbone: Callable[[int], Backbone] = TimmBackbone,
                 fov: bool = False, hidden: int = 256, checkpoint: str | None = None):
        """
        Args:
            image_size: side of the letterboxed full image it reads (other sizes are resized).
            backbone: the image backbone (built with ``image_size``).
            fov: also predict the vertical field of view.
            hidden: width of the head's hidden layer.
            checkpoint: a :class:`CameraRotationEstimator` run to load the weights from.
        """
        super().__init__()
        self.image_size = int(image_size)
        self.backbone = backbone(image_size=self.image_size)
        self.outputs = 3 if fov else 2
        self.head = nn.Sequential(nn.Linear(self.backbone.out_features, hidden), nn.ReLU(),
                                  nn.Linear(hidden, self.outputs))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        if fov:
            with torch.no_grad():
                self.head[-1].bias[2] = 0.9  # about 50 degrees, the middle of the synthetic range
        if checkpoint is not None:
            self.load(checkpoint)

    def load(self, checkpoint: str | Path) -> None:
        """The ``net`` weights of a :class:`CameraRotationEstimator` checkpoint; errors name
        the file."""
        from hmrkit.models.checkpoints import read_checkpoint

        path = Path(checkpoint)
        state = read_checkpoint(path).get("state_dict") or {}
        state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
        if not state:
            raise ValueError(f"{path}: not a camera-rotation estimator run (no 'net.' weights)")
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: camera-rotation weights do not fit: missing "
                             f"{missing[:3]}, unexpected {unexpected[:3]}")

    def forward(self, full_image: Tensor) -> Tensor:
        if full_image.shape[-1] != self.image_size:
            full_image = F.interpolate(full_image, size=(self.image_size, self.image_size),
                                       mode="bilinear", align_corners=False, antialias=True)
        return self.head(self.backbone(full_image))

    def cam_to_world(self, full_image: Tensor) -> Tensor:
        """``(B, 3, 3)`` camera -> world rotation of the estimated pitch and roll."""
        out = self(full_image)
        return camera_to_world(out[:, 0], out[:, 1])


class CameraRotationEstimator(L.LightningModule):
    """Trains a :class:`CameraRotationNet` on full synthetic images (``hmrkit train``):
    L1 of pitch, roll (and FoV) in degrees; validation logs the mean absolute errors."""

    num_rois = 1
    """One crop per person (the data still cuts the person's crop; only ``full_image`` is read)."""

    def __init__(self, net: Callable[[int], CameraRotationNet] = CameraRotationNet,
                 crop_size: int = 96, optim: Optim | None = None):
        """
        Args:
            net: the estimator network (built with ``image_size=crop_size``).
            crop_size: side of the letterboxed full image (the data's crop size).
            optim: Adam and its schedule.
        """
        super().__init__()
        self.save_hyperparameters()
        self.crop_size = int(crop_size)
        self.net = net(image_size=self.crop_size)
        self.optim = optim or Optim(lr=1e-3, schedule="cosine", warmup_steps=50)

    def input_keys(self) -> tuple[str, ...]:
        return (FULL_IMAGE_KEY,)

    def errors_deg(self, batch: dict[str, Tensor]) -> Tensor:
        """``(B, outputs)`` absolute errors in degrees."""
        pred = self.net(batch[FULL_IMAGE_KEY])
        true = camera_targets(batch)[:, : pred.shape[1]].to(pred)
        return torch.rad2deg((pred - true).abs())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        err = self.errors_deg(batch)
        loss = err.mean()
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(err))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        err = self.errors_deg(batch)
        names = ("pitch_deg", "roll_deg", "vfov_deg")
        for i in range(err.shape[1]):
            self.log(f"val/{names[i]}", err[:, i].mean(), prog_bar=i < 2, batch_size=len(err),
                     sync_dist=True)

    def configure_optimizers(self):
        o = self.optim
        return adam_with_schedule(self, o.lr, o.weight_decay, o.schedule, o.warmup_steps)
