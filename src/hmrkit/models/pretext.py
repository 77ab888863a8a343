"""Backbone pre-training on a keypoint pretext task: 2D keypoints and root-relative depth.

SPIN and CLIFF start from ImageNet or COCO-keypoint weights; neither can be downloaded here.
The analogue hmrkit can build offline is a backbone trained on the synthetic training split
to locate the body joints. :class:`KeypointPretext` puts a light multi-scale head on a timm
backbone and regresses, per joint ``k``, with integral (soft-argmax) regression
(Sun et al., "Integral human pose regression", ECCV 2018):

    H_k = softmax(h_k) over the grid,   p_k = sum_ij H_k(ij) (x_j, y_i),
    z_k = sum_ij H_k(ij) d_k(ij)

``p_k`` in normalised crop coordinates ([-1, 1]), ``z_k`` the joint depth minus the root's
in metres. Loss: ``mean_k c_k |p_k - p_k^gt|_1 + depth_weight * mean_k |z_k - z_k^gt|``.
Only the backbone is kept: a checkpoint of this module is a valid ``checkpoint`` of the
backbone of every method with the same backbone (:class:`hmrkit.models.backbones.TimmBackbone`;
:func:`hmrkit.models.backbones.load_backbone_weights` keeps its backbone weights).

    hmrkit train --config configs/keypoints-r18-96-cpu.yaml
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmrkit.geometry.crops import CropBox
from hmrkit.models.backbones import TimmBackbone
from hmrkit.models.methods.base import Optim
from hmrkit.models.optim import adam_with_schedule

PRETEXT_JOINTS = "smpl24"
"""The pretext supervises the body model's 24 joints (2D label set ``keypoints2d/smpl24``,
depth from ``joints3d``)."""


def integral_keypoints(logits: Tensor, depth: Tensor) -> tuple[Tensor, Tensor]:
    """Soft-argmax (Sun et al. 2018): ``(B, K, H, W)`` heat logits and depth maps ->
    ``(B, K, 2)`` expected position in normalised coordinates (cell centres at
    ``(2 i + 1) / n - 1``) and ``(B, K)`` expected depth under the same distribution."""
    b, k, h, w = logits.shape
    heat = logits.flatten(2).softmax(-1).view(b, k, h, w)
    ys = (torch.arange(h, device=logits.device, dtype=logits.dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=logits.device, dtype=logits.dtype) + 0.5) / w * 2 - 1
    px = (heat.sum(2) * xs).sum(-1)
    py = (heat.sum(3) * ys).sum(-1)
    return torch.stack([px, py], -1), (heat * depth).flatten(2).sum(-1)


class KeypointPretext(L.LightningModule):
    """Backbone + multi-scale integral-regression head for 2D joints and relative depth."""

    num_rois = 1
    """One crop per person (what the training data must cut, as for methods)."""

    def __init__(
        self,
        backbone: Callable[[int], TimmBackbone] = TimmBackbone,
        crop_size: int = 224,
        head_channels: int = 128,
        scales: int = 3,
        depth_weight: float = 1.0,
        optim: Optim | None = None,
    ):
        """
        Args:
            backbone: the timm backbone to train (:class:`hmrkit.models.backbones.TimmBackbone`),
                built with ``image_size=crop_size``.
            crop_size: crop side in pixels.
            head_channels: width of the head.
            scales: backbone stages fused by the head (the last ``scales`` intermediates).
            depth_weight: weight of the relative-depth term (0: 2D only).
            optim: Adam and its schedule (default: lr 1e-3, cosine, 50 warm-up steps).
        """
        super().__init__()
        self.save_hyperparameters()
        self.crop_size, self.scales, self.depth_weight = int(crop_size), scales, depth_weight
        self.optim = optim or Optim(lr=1e-3, schedule="cosine", warmup_steps=50)
        self.backbone = backbone(image_size=self.crop_size)
        if not hasattr(self.backbone.net, "forward_intermediates"):
            raise ValueError(f"backbone {type(self.backbone.net).__name__} has no "
                             "forward_intermediates in this timm")
        with torch.no_grad():
            maps = self._intermediates(torch.zeros(1, 3, self.crop_size, self.crop_size))
        self.lateral = nn.ModuleList(nn.Conv2d(m.shape[1], head_channels, 1) for m in maps)
        self.fuse = nn.Sequential(
            nn.Conv2d(head_channels, head_channels, 3, padding=1),
            nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True),
        )
        self.num_joints = 24
        self.out = nn.Conv2d(head_channels, 2 * self.num_joints, 1)

    def input_keys(self) -> tuple[str, ...]:
        return ("image", "crop_affine", "box_center", "box_size")

    def _intermediates(self, image: Tensor) -> list[Tensor]:
        _, maps = self.backbone.net.forward_intermediates(image, indices=self.scales)
        return maps

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, S, S) RGB in [0, 1] -> ``(B, 24, 2)`` normalised crop coordinates and
        ``(B, 24)`` depth relative to the root (m)."""
        maps = self._intermediates(self.backbone.normalize(image))
        size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
        fused = sum(F.interpolate(lat(m), size=size, mode="bilinear", align_corners=False)
                    for lat, m in zip(self.lateral, maps, strict=True))
        out = self.out(self.fuse(fused))
        return integral_keypoints(out[:, : self.num_joints], out[:, self.num_joints:])

    def targets(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Labels: normalised crop 2D ``(B, 24, 2)``, confidences ``(B, 24)``, relative depth."""
        crop = CropBox.from_sample(batch, self.crop_size)
        kp = crop.normalize(batch[f"keypoints2d/{PRETEXT_JOINTS}"])
        joints = batch["joints3d"]
        return kp[..., :2], kp[..., 2], joints[..., 2] - joints[:, :1, 2]

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        xy, z = self(batch["image"])
        gt_xy, conf, gt_z = self.targets(batch)
        conf = conf * batch["has_keypoints2d"].to(conf)[:, None]
        has3d = batch["has_joints3d"].to(z)[:, None].expand_as(z)
        return {
            "keypoints_2d": ((xy - gt_xy).abs().sum(-1) * conf).sum() / conf.sum().clamp(min=1),
            "depth": self.depth_weight * ((z - gt_z).abs() * has3d).sum()
            / has3d.sum().clamp(min=1),
        }

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses = self.losses(batch)
        total = sum(losses.values())
        bs = batch["image"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=bs)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=bs)
        return total

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        xy, z = self(batch["image"])
        gt_xy, conf, gt_z = self.targets(batch)
        visible = conf > 0
        px = ((xy - gt_xy).norm(dim=-1) * self.crop_size / 2)[visible].mean()
        mm = ((z - gt_z).abs() * 1000).mean()
        bs = batch["image"].shape[0]
        self.log("val/keypoint_px", px, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log("val/depth_mm", mm, batch_size=bs, sync_dist=True)

    def configure_optimizers(self):
        o = self.optim
        return adam_with_schedule(self, o.lr, o.weight_decay, o.schedule, o.warmup_steps)
