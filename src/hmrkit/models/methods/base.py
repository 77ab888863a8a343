"""The base of every method: backbone + heads + losses + metrics as a LightningModule.

A method turns a batch of :mod:`hmrkit.data.sample` Samples into a :class:`BodyEstimate`
(``forward``), scores it against the labels (``compute_losses``), and is evaluated with the
shared metrics.  Subclasses implement :meth:`MethodModule.estimate` (and add losses).
Configuration = constructor arguments (typed, documented), so Lightning's CLI builds the
YAML configs under ``configs/`` from them and saves them with every run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import lightning as L
import torch
from torch import Tensor

from hmrkit.body import BodyModel, load_body_model
from hmrkit.body.model import BodyOutput
from hmrkit.geometry.cameras import crop_to_full_camera
from hmrkit.metrics import PROTOCOLS, mpjpe, n_mpjpe, pa_mpjpe, pa_pve, pve
from hmrkit.models.optim import adam_with_schedule, check_schedule

log = logging.getLogger(__name__)

@dataclass
class BodyEstimate:
    """What every method predicts for a batch of people (camera frame, metres)."""

    rotmat: Tensor
    """(B, 24, 3, 3) local rotations; joint 0 = root orientation in the camera frame."""
    betas: Tensor
    """(B, K) shape coefficients of the method's body model."""
    cam_crop: Tensor
    """(B, 3) weak-perspective crop camera ``(s, t_x, t_y)``."""
    transl: Tensor
    """(B, 3) full-image camera translation (CLIFF conversion of ``cam_crop``)."""
    vertices: Tensor
    """(B, V, 3) posed vertices without translation (training mesh)."""
    joints: Tensor
    """(B, 24, 3) posed joints without translation."""
    extras: dict[str, Tensor] = field(default_factory=dict)
    """Method-specific outputs (iterations, per-RoI cameras, dense maps, ...)."""


@dataclass
class LossWeights:
    """Loss weights of the SPIN lineage (x60 scale; methods.md "Shared conventions")."""

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


class MethodModule(L.LightningModule):
    """Shared training / validation logic.  Subclasses define :meth:`estimate`."""

    def __init__(
        self,
        body_model: str = "anny24",
        num_betas: int = 10,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        loss_weights: LossWeights | None = None,
        lr_schedule: str = "constant",
        warmup_steps: int = 0,
    ):
        """
        Args:
            body_model: body model name (``anny24``, ``smpl``): predicted parameters drive it.
            num_betas: shape coefficients predicted.
            lr: Adam learning rate (SPIN: 5e-5, CLIFF: 1e-4 with batch 64 / 256).
            weight_decay: Adam weight decay.
            loss_weights: weights of the loss terms.
            lr_schedule: ``constant`` (SPIN, CLIFF) or ``cosine`` decay to 0 at the
                trainer's ``max_steps`` (short budgets).
            warmup_steps: linear learning-rate warm-up steps.
        """
        super().__init__()
        check_schedule(lr_schedule)
        self.body_model_name = body_model
        self.num_betas = num_betas
        self.lr, self.weight_decay = lr, weight_decay
        self.lr_schedule, self.warmup_steps = lr_schedule, int(warmup_steps)
        self.loss_weights = loss_weights or LossWeights()
        self.body: BodyModel = load_body_model(body_model, num_betas=num_betas)

    # ---------------------------------------------------------------- subclass API
    def estimate(self, batch: dict[str, Tensor]) -> BodyEstimate:  # pragma: no cover
        raise NotImplementedError

    def compute_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError  # pragma: no cover

    # ---------------------------------------------------------------- helpers
    def pose_body(self, rotmat: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        out = self.body(rotmat[:, 0], rotmat[:, 1:], betas)
        return out.vertices, out.joints

    def full_translation(self, cam_crop: Tensor, batch: dict[str, Tensor]) -> Tensor:
        return crop_to_full_camera(
            cam_crop, batch["box_center"], batch["box_size"], batch["image_size"], batch["focal"]
        )

    def forward(self, batch: dict[str, Tensor]) -> BodyEstimate:
        return self.estimate(batch)

    # ---------------------------------------------------------------- Lightning
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        est = self(batch)
        losses = self.compute_losses(est, batch)
        total = sum(losses.values())
        bs = batch["image"].shape[0]
        if not torch.isfinite(total):  # skip the step (hmrkit.guard.NonFiniteGuard counts)
            bad = sorted(k for k, v in losses.items() if not torch.isfinite(v))
            log.warning("step %d: non-finite loss terms %s; step skipped", self.global_step, bad)
            return None
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=bs)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=bs)
        return total

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        metrics = self.evaluate_batch(batch)
        bs = batch["image"].shape[0]
        for k, v in metrics.items():
            self.log(f"val/{k}", v.nanmean(), prog_bar=k == "pa_mpjpe", batch_size=bs,
                     sync_dist=True)

    @torch.no_grad()
    def evaluate_batch(self, batch: dict[str, Tensor], protocol: str = "lsp14",
                       est: BodyEstimate | None = None) -> dict[str, Tensor]:
        """Per-sample errors in mm against the labelled pose and shape.

        ``protocol`` (:data:`PROTOCOLS`) picks the joints of MPJPE / PA-MPJPE / N-MPJPE and
        their alignment root; PVE and PA-PVE use every vertex (each mesh's pelvis subtracted).
        ``root_transl`` is the distance between the predicted and the true root joint in the
        full-image camera frame (``joints[:, 0] + transl``): the accuracy of the full-image
        camera translation (NaN without a ``transl`` label, or where ``meta/has_transl`` is 0).
        """
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol '{protocol}'; choose one of {sorted(PROTOCOLS)}")
        est = self(batch) if est is None else est
        gt = self.body(batch["global_orient"], batch["body_pose"], batch["betas"])
        pred = BodyOutput(est.vertices, est.joints)
        joint_set, root = PROTOCOLS[protocol]
        p, g = self.body.keypoints(pred, joint_set), self.body.keypoints(gt, joint_set)
        return {
            "mpjpe": mpjpe(p, g, root=root),
            "pa_mpjpe": pa_mpjpe(p, g),
            "n_mpjpe": n_mpjpe(p, g, root=root),
            "pve": pve(est.vertices, gt.vertices, pred_root=est.joints[:, 0],
                       gt_root=gt.joints[:, 0]),
            "pa_pve": pa_pve(est.vertices, gt.vertices),
            "root_transl": root_translation_error(est, gt, batch),
        }

    def configure_optimizers(self):
        return adam_with_schedule(self, self.lr, self.weight_decay, self.lr_schedule,
                                  self.warmup_steps)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the method class so :func:`hmrkit.models.checkpoints.load_method` can rebuild
        it from the checkpoint alone."""
        cls = type(self)
        checkpoint["hmrkit"] = {"method": f"{cls.__module__}.{cls.__qualname__}"}


def root_translation_error(est: BodyEstimate, gt: BodyOutput, batch: dict[str, Tensor]) -> Tensor:
    """(B,) mm between predicted and labelled root joints in the full-image camera frame."""
    if "transl" not in batch:
        return torch.full_like(est.transl[:, 0], float("nan"))
    pred = est.joints[:, 0] + est.transl
    true = gt.joints[:, 0] + batch["transl"].to(pred)
    error = (pred - true).norm(dim=-1) * 1000.0
    if "meta/has_transl" in batch:  # public formats: transl is not always a label
        error = error.masked_fill(batch["meta/has_transl"].to(error.device) <= 0, float("nan"))
    return error
