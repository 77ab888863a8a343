"""Loss sets: the training objective of a method, as a part given in its config.

A loss set is built with its own settings only (weights, keypoint sets, variants) and called
with the method's estimate, the batch and a :class:`LossContext` (the body model, the poser of
the labels, the crop size): ``losses(est, batch, ctx) -> {name: weighted term}``. The method
sums the terms. Parameter labels (pose, shape, vertices) count only where the sample's labels
belong to the method's body model (:class:`hmrkit.body.labels.LabelBodies`).

- :class:`SPINLosses`: SPIN's terms with the 2D keypoints in the crop (HMR);
- :class:`CLIFFLosses`: the same with CLIFF's full-image 2D keypoint loss;
- :class:`MultiRoILosses`: Multi-RoI eq. 19 (every RoI's full-image 2D loss, local camera
  consistency, contrastive loss over the RoIs);
- :class:`WHMRLosses`: W-HMR's three training stages (FULL2 2D supervision with each stage's
  detach rules, pseudo focal loss, triple vertex loss, IUV and inverse-depth maps, world-frame
  terms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hmrkit.body.estimate import BodyEstimate, roll_about
from hmrkit.body.labels import LabelBodies
from hmrkit.body.model import BodyModel, BodyOutput
from hmrkit.geometry.cameras import (
    Camera,
    focal_from_depth,
    project_weak_perspective,
    world_root_relative,
)
from hmrkit.geometry.crops import CropBox

from .camera import camera_consistency_loss, pseudo_focal_loss
from .contrastive import contrastive_loss
from .dense import inverse_depth_loss, iuv_losses
from .keypoints import (
    full_image_keypoint_loss,
    keypoint_2d_loss,
    keypoint_3d_loss,
    whmr_full_image_keypoint_loss,
)
from .params import camera_scale_prior, pose_loss, shape_loss, vertex_loss
from .weights import WHMR_WEIGHTS, LossWeights

__all__ = ["LOSS_SCALE", "CLIFFLosses", "LossContext", "LossSet", "MultiRoILosses",
           "SPINLosses", "WHMRLosses"]

LOSS_SCALE = 60.0
"""SPIN's global loss factor: Multi-RoI's ``lambda_cam`` and ``lambda_cont`` are multiplied by it
so that they sit on the scale of :class:`LossWeights` (official code: total x 60)."""


@dataclass
class LossContext:
    """What a loss set needs from its method."""

    body: BodyModel
    """The method's body model (keypoint sets of the estimate)."""
    labels: LabelBodies
    """Poses the labels with their own body model."""
    crop_size: int
    """Side of the person crops (normalised crop coordinates)."""
    num_rois: int = 1
    """RoIs per person (Multi-RoI)."""


def gt_rotmat(batch: dict[str, Tensor]) -> Tensor:
    """(B, 24, 3, 3) labelled rotations: root orientation then body pose."""
    return torch.cat([batch["global_orient"][:, None], batch["body_pose"]], dim=1)


class LossSet:
    """Base of the loss sets (see the module doc)."""

    def __call__(self, est: BodyEstimate, batch: dict[str, Tensor], ctx: LossContext
                 ) -> dict[str, Tensor]:
        raise NotImplementedError


class SPINLosses(LossSet):
    """SPIN's objective (Kolotouros et al. 2019): 2D keypoints in the crop (weak perspective),
    pelvis-centred 3D joints, rotation-matrix pose, shape, optional vertex L1, camera-scale
    prior; weights at SPIN's x60 scale."""

    def __init__(self, keypoint_sets: tuple[str, ...] = ("smpl24", "coco17"),
                 weights: LossWeights | None = None):
        """
        Args:
            keypoint_sets: 2D keypoint sets supervised (averaged).
            weights: weights of the terms (default :class:`LossWeights`: SPIN's).
        """
        self.keypoint_sets = tuple(keypoint_sets)
        self.weights = weights or LossWeights()

    def keypoints_2d(self, est: BodyEstimate, batch: dict[str, Tensor], ctx: LossContext
                     ) -> Tensor:
        """SPIN: weak-perspective projection vs labels in normalised crop coordinates (the
        estimate turned back into the rolled camera of a rotated crop, where its crop camera
        lives)."""
        crop = CropBox.from_sample(batch, ctx.crop_size)
        out = BodyOutput(est.vertices, est.joints)
        if crop.rotation is not None:
            roll, root = crop.roll_matrix().to(est.joints), est.joints[:, :1]
            out = BodyOutput(roll_about(est.vertices, root, roll), roll_about(est.joints, root,
                                                                               roll))
        total = 0.0
        for name in self.keypoint_sets:
            pred = project_weak_perspective(ctx.body.keypoints(out, name), est.cam_crop)
            gt = crop.normalize(batch[f"keypoints2d/{name}"])
            total = total + keypoint_2d_loss(pred, gt, batch["has_keypoints2d"])
        return total / len(self.keypoint_sets)

    def mesh_terms(self, rotmat: Tensor, betas: Tensor, vertices: Tensor, joints: Tensor,
                   batch: dict[str, Tensor], ctx: LossContext, gt: BodyOutput | None,
                   root_vertices: bool = False) -> dict[str, Tensor]:
        """3D joints, pose, shape (and vertices with labelled vertices ``gt``) of one mesh;
        ``root_vertices`` centres each mesh on its own pelvis first (Multi-RoI's code)."""
        w = self.weights
        has = batch["has_smpl"] * ctx.labels.same_model(batch).to(batch["has_smpl"])
        k = min(betas.shape[1], batch["betas"].shape[1])
        terms = {
            "keypoints_3d": w.keypoints_3d * keypoint_3d_loss(
                joints, batch["joints3d"], batch["has_joints3d"], root=0
            ),
            "pose": w.pose * pose_loss(rotmat, gt_rotmat(batch), has),
            "betas": w.betas * shape_loss(betas[:, :k], batch["betas"][:, :k], has),
        }
        if gt is not None:
            roots = {"pred_root": joints[:, 0], "gt_root": gt.joints[:, 0]} if root_vertices else {}
            terms["vertices"] = w.vertices * vertex_loss(vertices, gt.vertices, has, **roots)
        return terms

    def __call__(self, est: BodyEstimate, batch: dict[str, Tensor], ctx: LossContext
                 ) -> dict[str, Tensor]:
        w = self.weights
        gt = ctx.labels.pose(batch).output() if w.vertices else None
        mesh = self.mesh_terms(est.rotmat, est.betas, est.vertices, est.joints, batch, ctx, gt)
        losses = {
            "keypoints_2d": w.keypoints_2d * self.keypoints_2d(est, batch, ctx),
            "keypoints_3d": mesh["keypoints_3d"], "pose": mesh["pose"], "betas": mesh["betas"],
            "cam_prior": w.cam_prior * camera_scale_prior(est.cam_crop[:, 0]),
        }
        if "vertices" in mesh:
            losses["vertices"] = mesh["vertices"]
        return losses


class CLIFFLosses(SPINLosses):
    """SPIN's objective with CLIFF's 2D keypoint loss in the full image (Li et al. 2022): the
    joints placed by the full-image translation and projected with the full-image camera
    (the estimate's predicted camera, else the sample's), compared in the crop frame."""

    def keypoints_2d(self, est: BodyEstimate, batch: dict[str, Tensor], ctx: LossContext
                     ) -> Tensor:
        out = BodyOutput(est.vertices, est.joints)
        camera = est.camera_or(Camera.from_sample(batch))
        crop = CropBox.from_sample(batch, ctx.crop_size)
        total = 0.0
        for name in self.keypoint_sets:
            total = total + full_image_keypoint_loss(
                ctx.body.keypoints(out, name), batch[f"keypoints2d/{name}"], camera, crop,
                batch["has_keypoints2d"], transl=est.transl,
            )
        return total / len(self.keypoint_sets)


class MultiRoILosses(CLIFFLosses):
    """Multi-RoI HMR's objective (Nie et al. 2024, eq. 19): ``lambda_cam L_cam + lambda_cont
    L_cont + L_smpl + L_vert + L_3D + L_2D`` (SPIN weights, x60), plus SPIN's camera-scale prior
    on every local camera.

    Reads the estimate's extras: ``cams`` (B, M, 3) local cameras, ``transl_rois`` (B, M, 3)
    their full-image translations, ``embeddings`` (B, M, D) the projected RoI features (the
    contrastive term is left out without them), and ``roi_*`` per-RoI meshes when the method
    regresses one per RoI (their losses are averaged).
    """

    def __init__(
        self,
        keypoint_sets: tuple[str, ...] = ("smpl24", "coco17"),
        weights: LossWeights | None = None,
        camera_consistency: float = 1.0,
        camera_pairs: str = "all",
        camera_variant: str = "paper",
        camera_scale_term: str = "bs",
        contrastive: float = 0.1,
        contrastive_denominator: str = "paper",
        contrastive_temperature: float = 0.5,
        keypoint_frame: str = "roi",
    ):
        """
        Args:
            keypoint_sets: 2D keypoint sets supervised.
            weights: SPIN-lineage weights (x60); default :class:`LossWeights` with the vertex
                L1 at 60 (official code: 1 x 60).
            camera_consistency: ``lambda_cam`` of eq. 19 (paper: 1; 0 disables, the "w/o L_cam"
                ablation); applied x :data:`LOSS_SCALE`.
            camera_pairs: ``"all"`` pairs ``m < n`` (paper eq. 16) or ``"first"`` (pairs with
                RoI 0 only, as the code).
            camera_variant: ``"paper"`` (eq. 16, weights 0.1, 0.1, 1e-4) or ``"code"`` (the
                official ``camera_losses``; :func:`hmrkit.losses.camera_consistency_loss`).
            camera_scale_term: the scale term of eq. 15: ``"bs"`` compares ``b_m s_m`` in
                pixels (paper), ``"tz"`` the full-image depths ``2 f / (b_m s_m)`` in metres.
            contrastive: ``lambda_cont`` of eq. 19 (paper: 0.1; 0 disables); x :data:`LOSS_SCALE`.
            contrastive_denominator: ``"paper"`` (eq. 17: negatives only) or ``"supcon"``
                (official code: SupCon, positives in the denominator, loss x tau).
            contrastive_temperature: ``tau`` (paper: 0.5).
            keypoint_frame: where the full-image 2D loss of RoI ``m`` is normalised: ``"roi"``
                (RoI ``m``'s own crop, as the code) or ``"original"`` (the original box's crop).
        """
        choices = {
            "camera_pairs": (camera_pairs, ("all", "first")),
            "camera_variant": (camera_variant, ("paper", "code")),
            "camera_scale_term": (camera_scale_term, ("bs", "tz")),
            "contrastive_denominator": (contrastive_denominator, ("paper", "supcon")),
            "keypoint_frame": (keypoint_frame, ("roi", "original")),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"MultiRoILosses: {name} must be one of {tuple(allowed)}, "
                                 f"got {value!r}")
        if camera_variant == "code" and camera_pairs != "first":
            raise ValueError("MultiRoILosses: camera_variant='code' pairs every RoI with RoI 0; "
                             "set camera_pairs='first'")
        if camera_consistency < 0 or contrastive < 0 or contrastive_temperature <= 0:
            raise ValueError("MultiRoILosses: camera_consistency and contrastive must be >= 0 "
                             "and contrastive_temperature > 0")
        super().__init__(keypoint_sets, weights or LossWeights(vertices=60.0))
        self.camera_consistency, self.camera_pairs = camera_consistency, camera_pairs
        self.camera_variant, self.camera_scale_term = camera_variant, camera_scale_term
        self.contrastive, self.contrastive_denominator = contrastive, contrastive_denominator
        self.contrastive_temperature = contrastive_temperature
        self.keypoint_frame = keypoint_frame

    def keypoints_2d(self, est: BodyEstimate, batch: dict[str, Tensor], ctx: LossContext
                     ) -> Tensor:
        """Eq. 18 ``L_2D``: the joints projected into the full image through the full camera of
        EACH local camera (CLIFF's loss), averaged over the RoIs and keypoint sets; normalised
        in each RoI's crop (``keypoint_frame="roi"``) or in the original crop."""
        transl = est.extras["transl_rois"]
        M = transl.shape[1]
        rois = CropBox.rois_from_sample(batch, ctx.crop_size, M)
        camera = est.camera_or(Camera.from_sample(batch))
        per_roi = "roi_joints" in est.extras
        total = 0.0
        for m in range(M):
            if per_roi:
                out = BodyOutput(est.extras["roi_vertices"][:, m], est.extras["roi_joints"][:, m])
            else:
                out = BodyOutput(est.vertices, est.joints)
            crop = rois[:, m if self.keypoint_frame == "roi" else 0]
            for name in self.keypoint_sets:
                total = total + full_image_keypoint_loss(
                    ctx.body.keypoints(out, name), batch[f"keypoints2d/{name}"], camera, crop,
                    batch["has_keypoints2d"], transl=transl[:, m],
                )
        return total / (M * len(self.keypoint_sets))

    def camera_consistency_term(self, est: BodyEstimate, batch: dict[str, Tensor],
                                ctx: LossContext) -> Tensor:
        """Eqs. 12-16 on the local cameras (:func:`camera_consistency_loss`), unweighted."""
        cams = est.extras["cams"].float()
        rois = CropBox.rois_from_sample(batch, ctx.crop_size, cams.shape[1])
        camera = Camera.from_sample(batch)
        centers = rois.rolled_center(camera)  # the crop cameras live in the rolled camera
        return camera_consistency_loss(
            cams, centers.float(), rois.size.float(), camera.image_size.float(),
            camera.focal.float(), pairs=self.camera_pairs, variant=self.camera_variant,
            scale_term=self.camera_scale_term,
        )

    def __call__(self, est: BodyEstimate, batch: dict[str, Tensor], ctx: LossContext
                 ) -> dict[str, Tensor]:
        w = self.weights
        gt = ctx.labels.pose(batch).output() if w.vertices else None
        x = est.extras
        if "roi_joints" in x:  # one estimate per RoI: average their losses
            M = x["roi_joints"].shape[1]
            losses: dict[str, Tensor] = {}
            for m in range(M):
                terms = self.mesh_terms(x["roi_rotmat"][:, m], x["roi_betas"][:, m],
                                        x["roi_vertices"][:, m], x["roi_joints"][:, m], batch,
                                        ctx, gt, root_vertices=True)
                for k, v in terms.items():
                    losses[k] = losses.get(k, 0.0) + v / M
        else:
            losses = self.mesh_terms(est.rotmat, est.betas, est.vertices, est.joints, batch, ctx,
                                     gt, root_vertices=True)
        losses["keypoints_2d"] = w.keypoints_2d * self.keypoints_2d(est, batch, ctx)
        cams = x["cams"]
        losses["cam_prior"] = w.cam_prior * camera_scale_prior(cams[..., 0])
        M = cams.shape[1]
        if self.camera_consistency > 0 and M > 1:
            losses["camera_consistency"] = LOSS_SCALE * self.camera_consistency * (
                self.camera_consistency_term(est, batch, ctx)
            )
        if self.contrastive > 0 and M > 1 and "embeddings" in x:
            losses["contrastive"] = LOSS_SCALE * self.contrastive * contrastive_loss(
                x["embeddings"].float(), tau=self.contrastive_temperature,
                variant=self.contrastive_denominator,
            )
        return losses


def _detached(out: BodyOutput) -> BodyOutput:
    return BodyOutput(out.vertices.detach(), out.joints.detach())


class WHMRLosses(SPINLosses):
    """W-HMR's objective (Yao et al.; paper eqs. 5 and 8-12, official ``core/trainer.py``), for
    the training stage the method gives (``stage``, W-HMR sec. 3.4):

    - every regression level (the code sums them; ``all_levels=False``: the last only) gets the
      2D terms, 3D joints, pose and shape (parameter levels), the camera prior; the last level
      the triple vertex loss (eq. 9: sparse, intermediate and full vertices, each x
      ``weights.vertices``);
    - FULL2 (eq. 5): ``keypoints_2d`` in the crop (weak perspective) and, with a focal
      predictor, ``keypoints_2d_full`` in the full image (the predicted focal ``f = s h T_z / 2``,
      ``s`` detached, the full-image translation of eq. 4 from the detached crop camera,
      normalised ``2 x / W - 1`` with the balance ``[W / w_box, H / h_box]``,
      :func:`~hmrkit.losses.keypoints.whmr_full_image_keypoint_loss`). Stage I: the full-image
      path projects detached joints (only ``T_z`` learns from it) and ``pseudo_focal`` (eq. 8,
      ``1e-6 MSE(f, sqrt(W^2 + H^2))``) holds the focal near CLIFF's; stage II: the crop path
      projects detached joints, the full-image path trains the body;
    - ``iuv_*`` (eq. 11) and ``depth`` (eq. 12) on the decoder's maps, labels nearest-resized to
      them and masked to the person;
    - stage III, OrientCorrect: only the world-frame terms (root-relative joints, vertices and
      the root rotation against ``world_global_orient``); SPEC-like (the whole network with the
      rotation as input): stage II's terms plus the world-frame terms.

    Reads the estimate's extras: ``levels`` (:class:`hmrkit.models.pymaf.LevelOutput` list),
    ``vertex_sets``, ``t_z``, ``dense``, ``world_rotmat`` / ``local_orient``.
    """

    def __init__(self, stage: int = 1, keypoint_sets: tuple[str, ...] = ("smpl24", "coco17"),
                 weights: LossWeights | None = None, iuv_index: float = WHMR_WEIGHTS["iuv_index"],
                 iuv_part: float = WHMR_WEIGHTS["iuv_part"], iuv_uv: float = WHMR_WEIGHTS["iuv_uv"],
                 depth: float = WHMR_WEIGHTS["depth"], pseudo_focal: float = 1.0,
                 all_levels: bool = True):
        """
        Args:
            stage: training stage 1, 2 or 3 (given by the method).
            keypoint_sets: 2D keypoint sets supervised (averaged).
            weights: SPIN-lineage weights; default W-HMR's (:data:`WHMR_WEIGHTS`: vertices 15,
                camera prior 1).
            iuv_index, iuv_part, iuv_uv: IUV weights (code: 2.0, 0.3, 0.5).
            depth: inverse-depth weight (code: ``POINT_REGRESSION_WEIGHTS`` 0.5).
            pseudo_focal: weight of eq. 8 (its 1e-6 is inside the loss; stage I only).
            all_levels: supervise every regression level (code) or the last only.
        """
        if stage not in (1, 2, 3):
            raise ValueError(f"WHMRLosses: stage must be 1, 2 or 3, got {stage!r}")
        w = WHMR_WEIGHTS
        super().__init__(keypoint_sets, weights or LossWeights(
            keypoints_2d=w["keypoints_2d"], keypoints_3d=w["keypoints_3d"], pose=w["pose"],
            betas=w["betas"], cam_prior=w["cam_prior"], vertices=w["vertices"]))
        self.stage = stage
        self.iuv_weights = {"index": iuv_index, "part": iuv_part, "uv": iuv_uv}
        self.depth, self.pseudo_focal, self.all_levels = depth, pseudo_focal, all_levels

    # ------------------------------------------------------------------ 2D
    def crop_2d(self, out: BodyOutput, cam: Tensor, batch, crop: CropBox, ctx) -> Tensor:
        """FULL2's crop term: weak perspective vs labels in normalised crop coordinates."""
        total = 0.0
        for name in self.keypoint_sets:
            pred = project_weak_perspective(ctx.body.keypoints(out, name), cam)
            gt = crop.normalize(batch[f"keypoints2d/{name}"])
            total = total + keypoint_2d_loss(pred, gt, batch["has_keypoints2d"])
        return total / len(self.keypoint_sets)

    @staticmethod
    def full_camera(cam: Tensor, t_z: Tensor, crop: CropBox, camera: Camera
                    ) -> tuple[Camera, Tensor]:
        """The full-perspective camera of eq. 3 (``f = s h T_z / 2``, ``s`` detached) and the
        translation of eq. 4 (from the detached crop camera: ``t_z = T_z``)."""
        focal = focal_from_depth(cam[:, 0], crop.size.to(cam), t_z)
        full = camera.with_focal(focal)
        return full, crop.to_full_translation(cam.detach(), full)

    def full_2d(self, out: BodyOutput, cam: Tensor, t_z: Tensor, batch, crop: CropBox,
                camera: Camera, ctx) -> Tensor:
        """FULL2's full-image term with the dynamic balance of eq. 5."""
        full, transl = self.full_camera(cam, t_z, crop, camera)
        total = 0.0
        for name in self.keypoint_sets:
            pred = full.project(ctx.body.keypoints(out, name), transl=transl)
            total = total + whmr_full_image_keypoint_loss(
                pred, batch[f"keypoints2d/{name}"], camera.image_size.to(pred),
                crop.size.to(pred), batch["has_keypoints2d"])
        return total / len(self.keypoint_sets)

    # ------------------------------------------------------------------ 3D
    def vertex_terms(self, level, gt: BodyOutput, sets, has: Tensor) -> Tensor:
        """Eq. 9: L1 on the sparse, intermediate and full vertices (each x the vertex weight)."""
        if level.sparse is not None:
            sparse, mid = level.sparse, level.intermediate
        else:
            sparse, mid = sets.subsets(level.vertices)
        gt_sparse, gt_mid = sets.subsets(gt.vertices)
        return self.weights.vertices * (vertex_loss(sparse, gt_sparse, has)
                                        + vertex_loss(mid, gt_mid, has)
                                        + vertex_loss(level.vertices, gt.vertices, has))

    def world_terms(self, est: BodyEstimate, batch, ctx, gt: BodyOutput) -> dict[str, Tensor]:
        """World-frame joints (root-relative), vertices and root rotation of the last level,
        turned by ``R_w R_c^T`` (``R_w``: the world root as trained, ``R_c``: the camera-frame
        root it corrects)."""
        w, x = self.weights, est.extras
        level = x["levels"][-1]
        R_w, R_c = x["world_rotmat"], x["local_orient"]
        delta = R_w @ R_c.transpose(1, 2)
        true = batch["world_global_orient"] @ batch["global_orient"].transpose(1, 2)
        has = batch.get("has_world", torch.zeros(len(R_w), device=R_w.device))
        same = has * ctx.labels.same_model(batch).to(has)
        pred_j = world_root_relative(level.joints, level.joints[:, 0], delta)
        gt_j = world_root_relative(gt.joints, gt.joints[:, 0], true.to(gt.joints))
        terms = {
            "world_keypoints_3d": w.keypoints_3d * keypoint_3d_loss(pred_j, gt_j, has, root=None),
            "world_pose": w.pose * pose_loss(R_w[:, None], batch["world_global_orient"][:, None],
                                             has),
        }
        if w.vertices:
            pred_v = world_root_relative(level.vertices, level.joints[:, 0], delta)
            gt_v = world_root_relative(gt.vertices, gt.joints[:, 0], true.to(gt.vertices))
            terms["world_vertices"] = w.vertices * vertex_loss(pred_v, gt_v, same)
        return terms

    # ------------------------------------------------------------------ dense
    def dense_terms(self, dense: dict[str, Tensor], batch) -> dict[str, Tensor]:
        """Eqs. 11-12 on the decoder's resolution; the person's own pixels only (``mask``)."""
        import torch.nn.functional as F

        from hmrkit.models.whmr_heads import coarse_part_table

        terms: dict[str, Tensor] = {}
        size = next(iter(dense.values())).shape[-2:]
        mask = batch["mask"] if "mask" in batch else None

        def resize(x: Tensor) -> Tensor:
            return F.interpolate(x, size=size, mode="nearest")

        if "part_logits" in dense and "iuv" in batch:
            iuv = batch["iuv"] * (mask[:, None] if mask is not None else 1.0)
            parts = iuv_losses(dense["part_logits"], dense["uv"], resize(iuv), batch["has_iuv"],
                               pred_coarse_logits=dense.get("coarse_logits"),
                               coarse_of_part=coarse_part_table())
            for k, v in parts.items():
                terms[f"iuv_{k}"] = self.iuv_weights[k] * v
        if "inverse_depth" in dense and "depth" in batch:
            depth = batch["depth"] * (mask if mask is not None else 1.0)
            terms["depth"] = self.depth * inverse_depth_loss(
                dense["inverse_depth"], resize(depth[:, None]), batch["has_depth"])
        return terms

    # ------------------------------------------------------------------ all
    def __call__(self, est: BodyEstimate, batch: dict[str, Tensor], ctx: LossContext
                 ) -> dict[str, Tensor]:
        w, x = self.weights, est.extras
        levels, sets, t_z = x["levels"], x["vertex_sets"], x.get("t_z")
        gt = ctx.labels.pose(batch).output()
        if self.stage == 3 and x.get("world_mode") == "orient_correct":
            return self.world_terms(est, batch, ctx, gt)
        crop = CropBox.from_sample(batch, ctx.crop_size)
        camera = Camera.from_sample(batch)
        has = batch["has_smpl"] * ctx.labels.same_model(batch).to(batch["has_smpl"])
        k = min(est.betas.shape[1], batch["betas"].shape[1])
        losses: dict[str, Tensor] = {}

        def add(name: str, value: Tensor) -> None:
            losses[name] = losses[name] + value if name in losses else value

        stage_2d = 2 if self.stage == 3 else self.stage  # SPEC-like trains on stage II's terms
        for level in levels if self.all_levels else levels[-1:]:
            out = BodyOutput(level.vertices, level.joints)
            crop_out = _detached(out) if stage_2d == 2 else out
            add("keypoints_2d", w.keypoints_2d * self.crop_2d(crop_out, level.cam, batch, crop,
                                                                ctx))
            if t_z is not None:
                full_out = _detached(out) if stage_2d == 1 else out
                add("keypoints_2d_full", w.keypoints_2d * self.full_2d(
                    full_out, level.cam, t_z, batch, crop, camera, ctx))
            add("keypoints_3d", w.keypoints_3d * keypoint_3d_loss(
                level.joints, batch["joints3d"], batch["has_joints3d"], root=0))
            if level.params is not None:
                add("pose", w.pose * pose_loss(level.rotmat, gt_rotmat(batch), has))
                add("betas", w.betas * shape_loss(level.params.betas[:, :k],
                                                  batch["betas"][:, :k], has))
                add("cam_prior", w.cam_prior * camera_scale_prior(level.cam[:, 0]))
                if t_z is not None and self.stage == 1 and self.pseudo_focal:
                    focal = focal_from_depth(level.cam[:, 0], crop.size.to(t_z), t_z)
                    add("pseudo_focal", self.pseudo_focal * pseudo_focal_loss(
                        focal, camera.image_size.to(focal)))
        if w.vertices:
            losses["vertices"] = self.vertex_terms(levels[-1], gt, sets, has)
        if x.get("dense"):
            losses.update(self.dense_terms(x["dense"], batch))
        if self.stage == 3:
            losses.update(self.world_terms(est, batch, ctx, gt))
        return losses
