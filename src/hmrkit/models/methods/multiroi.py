"""Multi-RoI HMR (Nie et al. 2024): several RoIs per person, camera consistency, contrastive loss.

Built on the CLIFF baseline (:class:`~hmrkit.models.methods.cliff.CLIFF`). For each person the
batch holds ``M`` crops (the fixed RoIs of :mod:`hmrkit.data.rois`, RoI 0 = the original box):

1. a shared backbone gives one feature ``h_m`` per RoI;
2. a fusion module (:mod:`hmrkit.models.fusion`, RAF by default, eqs. 2-4) gives RoI-specific
   features ``u_m`` and the RoI-shared feature ``u_bar = mean_m u_m``;
3. ``D^mesh(u_bar)`` (SPIN's iterative regressor) gives the pose and shape (eq. 6) and
   ``D^cam(u_m)`` (the same iterative error feedback on the camera alone, weights shared by the
   RoIs) one local weak-perspective camera ``C_m = (s_m, t_xm, t_ym)`` per RoI (eq. 5);
4. losses (eq. 19): the SPIN-lineage 3D joint, pose, shape and vertex losses on the mesh, the
   CLIFF full-image 2D loss through the full camera of EACH local camera (eq. 18 ``L_2D``,
   averaged over the RoIs), the local camera consistency (eqs. 12-16) and the contrastive loss
   over the RoIs of the persons of the batch (eq. 17).

``per_roi_regressor=True`` reproduces the official code's decoder instead (``HMR_sim``): one
shared SPIN regressor run on each ``u_m`` (its input also holds the box information of all the
RoIs), i.e. a full body estimate per RoI, all of them supervised, the original box's used at
test time.

The estimate returned for a batch is the mesh of ``D^mesh`` with the camera of RoI 0 (the
original box); every RoI's camera is in ``extras``. Inference needs the RoI crops
(``rois/image`` ...): datasets build them with ``rois=M`` and ``hmrkit predict`` builds them
from each box (:func:`hmrkit.predict.make_batch`).

Loss scale: everything is at SPIN's x60 scale (:class:`~hmrkit.models.methods.base.LossWeights`);
the paper's ``lambda_cam = 1`` and ``lambda_cont = 0.1`` are the ``camera_consistency`` and
``contrastive`` arguments, multiplied by :data:`LOSS_SCALE` (60) as in the official
``trainer_sim.py`` (:data:`hmrkit.losses.MULTIROI_WEIGHTS`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hmrkit.body.model import BodyOutput
from hmrkit.data.rois import MAX_ROIS
from hmrkit.data.sample import ROI_KEYS
from hmrkit.geometry.cameras import Camera, cliff_bbox_info, crop_to_full_camera
from hmrkit.losses import (
    ProjectionHead,
    camera_consistency_loss,
    camera_scale_prior,
    contrastive_loss,
    full_image_keypoint_loss,
    keypoint_3d_loss,
    pose_loss,
    shape_loss,
    vertex_loss,
)
from hmrkit.losses.weights import LossWeights
from hmrkit.models.fusion import FUSIONS, PE_FREQUENCIES, build_fusion
from hmrkit.models.heads import IterativeRegressor

from .base import BodyEstimate
from .cliff import CLIFF

__all__ = ["LOSS_SCALE", "CameraDecoder", "MultiRoI"]

LOSS_SCALE = 60.0
"""SPIN's global loss factor: the paper's ``lambda_cam`` and ``lambda_cont`` are multiplied by it
so that they sit on the scale of :class:`LossWeights` (official code: total x 60)."""



class CameraDecoder(nn.Module):
    """``D^cam`` (Multi-RoI eq. 5): HMR's iterative error feedback on the camera alone.

    ``C_{t+1} = C_t + dec(MLP([u_m, C_t, info_m]))`` from the mean camera, ``iterations`` times;
    MLP = ``fc hidden - ReLU - dropout - fc hidden - ReLU - dropout`` (the FC layers with
    residual connections of HMR [19]); ``dec`` Xavier-initialised with gain 0.01. Applied to
    every RoI with the same weights. ``info_dim > 0`` adds the RoI's box information.
    """

    def __init__(self, feature_dim: int, info_dim: int = 0, hidden: int = 1024,
                 iterations: int = 3, dropout: float = 0.5, init_cam: Tensor | None = None):
        super().__init__()
        self.iterations = iterations
        self.mlp = nn.Sequential(
            nn.Linear(feature_dim + 3 + info_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        )
        self.dec_cam = nn.Linear(hidden, 3)
        nn.init.xavier_uniform_(self.dec_cam.weight, gain=0.01)
        nn.init.zeros_(self.dec_cam.bias)
        init = torch.tensor([0.9, 0.0, 0.0]) if init_cam is None else init_cam.reshape(3)
        self.register_buffer("init_cam", init.float().clone())

    def forward(self, features: Tensor, info: Tensor | None = None) -> list[Tensor]:
        """``features (..., D)`` [and ``info (..., I)``] -> cameras ``(..., 3)`` of every
        iteration (the last is the estimate)."""
        cam = self.init_cam.to(features.dtype).expand(*features.shape[:-1], 3)
        cams = []
        for _ in range(self.iterations):
            x = [features, cam] + ([info] if info is not None else [])
            cam = cam + self.dec_cam(self.mlp(torch.cat(x, dim=-1)))
            cams.append(cam)
        return cams


class MultiRoI(CLIFF):
    """Multi-RoI HMR on a timm backbone (see the module doc).

    Outputs (``BodyEstimate``): ``rotmat``, ``betas``, ``vertices``, ``joints`` of the shared mesh
    decoder; ``cam_crop`` and ``transl`` of RoI 0 (the original box); ``extras``: ``cams``
    (B, M, 3) local cameras, ``transl_rois`` (B, M, 3) their full-image translations (eq. 12),
    ``fusion_weights`` (B, M, M), ``roi_features`` (B, M, D) backbone features ``h_m``,
    ``roi_box_info`` (B, M, 3), ``iterations`` (the mesh regressor's outputs), and with
    ``per_roi_regressor`` the per-RoI ``roi_rotmat``, ``roi_betas``, ``roi_vertices``,
    ``roi_joints``.
    """

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
        num_rois: int = 5,
        fusion: str = "raf",
        fusion_relation: str = "relative",
        pe_frequencies: int = PE_FREQUENCIES,
        fusion_hidden: int = 256,
        per_roi_regressor: bool = False,
        mesh_box_info: bool = True,
        camera_box_info: bool = False,
        camera_consistency: float = 1.0,
        camera_pairs: str = "all",
        camera_variant: str = "paper",
        camera_scale_term: str = "bs",
        contrastive: float = 0.1,
        contrastive_denominator: str = "paper",
        contrastive_temperature: float = 0.5,
        contrastive_gate: bool = False,
        projection_dim: int | None = None,
        keypoint_frame: str = "roi",
    ):
        """
        Args:
            backbone, image_size, backbone_checkpoint, iterations, regressor_hidden,
                keypoint_sets: see :class:`~hmrkit.models.methods.hmr.HMR` (paper: ResNet-50
                or HRNet-W48 at 224 px, 3 iterations, width 1024).
            body_model, num_betas, lr, weight_decay, lr_schedule, warmup_steps: see
                :class:`~hmrkit.models.methods.base.MethodModule` (paper: Adam, lr 1e-4 for
                ResNet-50, 5e-5 for HRNet-W48).
            loss_weights: SPIN-lineage weights (x60); default :class:`LossWeights` with the
                vertex L1 at 60 (official code: 1 x 60).
            num_rois: RoIs per person ``M`` in 1..5 (paper: 5; Table 4 ablates 1-5); the first
                ``M`` of :data:`hmrkit.data.rois.MULTI_ROI_SCALES` (the batch may hold more).
            fusion: ``"raf"`` (paper eqs. 2-4), ``"raf-code"`` (official code), ``"attention"``
                (self-attention over the RoIs), ``"none"`` ("w/o RAF" ablation: no fusion,
                shared feature = mean of the backbone features); :mod:`hmrkit.models.fusion`.
            fusion_relation: RAF's relation term: ``"relative"`` (PE of the box difference),
                ``"relative-paper"`` (literal eq. 2, cancels in the softmax), ``"absolute"``,
                ``"none"`` (Table 3 ablations).
            pe_frequencies: ``L`` of the positional encoding (paper: 32).
            fusion_hidden: width of ``"raf-code"``'s pair embedding and MLP (code: 256) and
                of ``"attention"``'s queries and keys.
            per_roi_regressor: official-code decoder: one shared SPIN regressor per RoI
                feature ``u_m`` (input also holds all RoIs' box information), a full estimate
                per RoI, all supervised; RoI 0's is returned. False: the paper's ``D^mesh`` on
                ``u_bar`` + ``D^cam`` per ``u_m``.
            mesh_box_info: feed the original box's CLIFF box information to ``D^mesh`` (hmrkit
                reading: without it the camera-frame root orientation cannot depend on where
                the person is in the image; the paper writes ``D^mesh(u_bar)``).
            camera_box_info: feed each RoI's box information to ``D^cam`` (paper: no).
            camera_consistency: ``lambda_cam`` of eq. 19 (paper: 1; 0 disables, the "w/o L_cam"
                ablation); applied x :data:`LOSS_SCALE`.
            camera_pairs: ``"all"`` pairs ``m < n`` (paper eq. 16) or ``"first"`` (pairs with
                RoI 0 only, as the code).
            camera_variant: ``"paper"`` (eq. 16, weights 0.1, 0.1, 1e-4) or ``"code"`` (the
                official ``camera_losses``; :func:`hmrkit.losses.camera_consistency_loss`).
            camera_scale_term: the scale term of eq. 15: ``"bs"`` compares ``b_m s_m`` in
                pixels (paper; it dominates the loss at initialisation for large boxes), ``"tz"``
                the full-image depths ``2 f / (b_m s_m)`` in metres (hmrkit option).
            contrastive: ``lambda_cont`` of eq. 19 (paper: 0.1; 0 disables); x :data:`LOSS_SCALE`.
            contrastive_denominator: ``"paper"`` (eq. 17: negatives only) or ``"supcon"``
                (official code: SupCon, positives in the denominator, loss x tau).
            contrastive_temperature: ``tau`` (paper: 0.5).
            contrastive_gate: gate the features by ``h * sigmoid(relu(h))`` before the
                projection head (official code).
            projection_dim: width of the projection head (default: the feature size, as the
                code's 2048 -> 2048 -> 2048).
            keypoint_frame: where the full-image 2D loss of RoI ``m`` is normalised: ``"roi"``
                (RoI ``m``'s own crop, as the code) or ``"original"`` (the original box's crop for
                every RoI).
        """
        if not isinstance(num_rois, int) or isinstance(num_rois, bool) or not (
            1 <= num_rois <= MAX_ROIS
        ):
            raise ValueError(f"MultiRoI: num_rois must be an integer in [1, {MAX_ROIS}], "
                             f"got {num_rois!r}")
        choices = {
            "fusion": (fusion, FUSIONS), "camera_pairs": (camera_pairs, ("all", "first")),
            "camera_variant": (camera_variant, ("paper", "code")),
            "camera_scale_term": (camera_scale_term, ("bs", "tz")),
            "contrastive_denominator": (contrastive_denominator, ("paper", "supcon")),
            "keypoint_frame": (keypoint_frame, ("roi", "original")),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"MultiRoI: {name} must be one of {tuple(allowed)}, "
                                 f"got {value!r}")
        if camera_variant == "code" and camera_pairs != "first":
            raise ValueError("MultiRoI: camera_variant='code' pairs every RoI with RoI 0; "
                             "set camera_pairs='first'")
        if camera_consistency < 0 or contrastive < 0 or contrastive_temperature <= 0:
            raise ValueError("MultiRoI: camera_consistency and contrastive must be >= 0 and "
                             "contrastive_temperature > 0")
        super().__init__(backbone, image_size, backbone_checkpoint, iterations, regressor_hidden,
                         keypoint_sets, body_model, num_betas, lr, weight_decay, loss_weights,
                         lr_schedule, warmup_steps)
        if loss_weights is None:
            self.loss_weights = LossWeights(vertices=60.0)
        self.num_rois = num_rois
        self.fusion_name = fusion
        self.per_roi_regressor = per_roi_regressor
        self.mesh_box_info, self.camera_box_info = mesh_box_info, camera_box_info
        self.camera_consistency, self.camera_pairs = camera_consistency, camera_pairs
        self.camera_variant, self.camera_scale_term = camera_variant, camera_scale_term
        self.contrastive, self.contrastive_denominator = contrastive, contrastive_denominator
        self.contrastive_temperature = contrastive_temperature
        self.keypoint_frame = keypoint_frame

        dim = int(self.backbone.num_features)
        mean = {k: getattr(self.regressor, f"init_{k}")[0].cpu().numpy()
                for k in ("pose", "betas", "cam")}
        self.fusion = build_fusion(fusion, dim, num_rois, self.info_dim, pe_frequencies,
                                   fusion_relation, fusion_hidden)
        if per_roi_regressor:
            # official code: the regressor sees u_m and the box information of all the RoIs
            self.regressor = IterativeRegressor(
                dim, self.info_dim * num_rois, self.body.num_joints, self.num_betas,
                hidden=regressor_hidden, iterations=iterations, mean=mean,
            )
            self.camera_decoder = None
        else:
            self.regressor = IterativeRegressor(
                dim, self.info_dim if mesh_box_info else 0, self.body.num_joints, self.num_betas,
                hidden=regressor_hidden, iterations=iterations, mean=mean,
            )
            # D^mesh predicts no camera: freeze its camera output at the mean camera (no unused
            # trainable parameters, which DDP would reject)
            nn.init.zeros_(self.regressor.dec_cam.weight)
            nn.init.zeros_(self.regressor.dec_cam.bias)
            self.regressor.dec_cam.requires_grad_(False)
            self.camera_decoder = CameraDecoder(
                dim, self.info_dim if camera_box_info else 0, regressor_hidden, iterations,
                init_cam=self.regressor.init_cam,
            )
        self.projection = (
            ProjectionHead(dim, out_dim=projection_dim, hidden_dim=projection_dim,
                           gate=contrastive_gate)
            if contrastive > 0 and num_rois > 1 else None
        )
        """Projection head to the contrastive space ``z`` (built only when the loss is on)."""

    # ------------------------------------------------------------------ inputs
    def input_keys(self) -> tuple[str, ...]:
        rois = ROI_KEYS if self.num_rois > 1 else ("image", "box_center", "box_size",
                                                     "crop_affine")
        return (*rois, "camera/intrinsics", "camera/image_size")

    def roi_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The first ``num_rois`` RoIs of the batch: crops ``(B, M, 3, S, S)``, centres
        ``(B, M, 2)``, sides ``(B, M)`` and crop affines ``(B, M, 2, 3)``.

        With ``num_rois == 1`` a batch without ``rois/*`` keys uses ``image`` and its box.
        """
        M = self.num_rois
        if "rois/image" in batch:
            missing = [k for k in ROI_KEYS if k not in batch]
            if missing:
                raise ValueError(f"MultiRoI: the batch has rois/image but lacks {missing}")
            have = batch["rois/image"].shape[1]
            if have < M:
                raise ValueError(
                    f"MultiRoI(num_rois={M}): the batch holds {have} RoIs per person; build the "
                    f"data with rois={M} (SyntheticDataset / build_dataset / HMRDataModule)"
                )
            return tuple(batch[k][:, :M] for k in ROI_KEYS)  # type: ignore[return-value]
        if M == 1:
            return (batch["image"][:, None], batch["box_center"][:, None],
                    batch["box_size"][:, None], batch["crop_affine"][:, None])
        raise ValueError(
            f"MultiRoI(num_rois={M}) needs the RoI crops of every person (batch keys "
            f"{', '.join(ROI_KEYS)}), but the batch has only the single box crop 'image'. "
            f"Build the RoIs: datasets with rois={M} (SyntheticDataset(..., rois={M}), "
            f"build_dataset(..., rois={M}), HMRDataModule(rois={M})); hmrkit predict builds them "
            "from each box (hmrkit.predict.make_batch(..., rois=model.num_rois))"
        )

    def roi_box_info(self, centers: Tensor, sizes: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """CLIFF box information of every RoI, ``(B, M, 3)``."""
        B, M = sizes.shape
        camera = Camera.from_sample(batch).repeat_interleave(M)
        info = cliff_bbox_info(
            centers.reshape(B * M, 2), sizes.reshape(B * M), camera.image_size, camera.focal,
            normalise=self.bbox_normalise, principal_point=camera.principal_point,
        )
        return info.view(B, M, 3)

    def roi_full_cameras(self, cams: Tensor, centers: Tensor, sizes: Tensor,
                         batch: dict[str, Tensor]) -> Tensor:
        """Full-image translation of every local camera (Multi-RoI eq. 12, CLIFF), (B, M, 3)."""
        B, M = sizes.shape
        camera = Camera.from_sample(batch).repeat_interleave(M)
        transl = crop_to_full_camera(
            cams.reshape(B * M, 3), centers.reshape(B * M, 2).to(cams), sizes.reshape(B * M),
            camera.image_size, camera.focal, principal_point=camera.principal_point,
        )
        return transl.view(B, M, 3)

    # ------------------------------------------------------------------ forward
    def estimate(self, batch: dict[str, Tensor]) -> BodyEstimate:
        images, centers, sizes, _ = self.roi_inputs(batch)
        B, M = images.shape[:2]
        x = (images.flatten(0, 1) - self.pixel_mean) / self.pixel_std
        h = self.backbone(x).view(B, M, -1)
        info = self.roi_box_info(centers, sizes, batch)
        fused = self.fusion(h, info)
        extras: dict = {"roi_features": h, "fusion_weights": fused.weights, "roi_box_info": info}
        if self.per_roi_regressor:
            all_info = info.reshape(B, 1, M * 3).expand(B, M, M * 3).reshape(B * M, M * 3)
            outs = self.regressor(fused.roi.reshape(B * M, -1), all_info)
            last = outs[-1]
            verts, joints = self.pose_body(last.rotmat, last.betas)
            cams = last.cam.view(B, M, 3)
            rotmat = last.rotmat.view(B, M, *last.rotmat.shape[1:])
            betas = last.betas.view(B, M, -1)
            verts, joints = verts.view(B, M, *verts.shape[1:]), joints.view(B, M, *joints.shape[1:])
            extras.update(roi_rotmat=rotmat, roi_betas=betas, roi_vertices=verts,
                          roi_joints=joints)
            rotmat, betas, vertices, joints = rotmat[:, 0], betas[:, 0], verts[:, 0], joints[:, 0]
        else:
            outs = self.regressor(fused.shared, info[:, 0] if self.mesh_box_info else None)
            last = outs[-1]
            rotmat, betas = last.rotmat, last.betas
            vertices, joints = self.pose_body(rotmat, betas)
            cam_iters = self.camera_decoder(fused.roi, info if self.camera_box_info else None)
            cams = cam_iters[-1]
            extras["cam_iterations"] = cam_iters
        transl_rois = self.roi_full_cameras(cams, centers, sizes, batch)
        extras.update(iterations=outs, cams=cams, transl_rois=transl_rois)
        return BodyEstimate(
            rotmat=rotmat, betas=betas, cam_crop=cams[:, 0], transl=transl_rois[:, 0],
            vertices=vertices, joints=joints, extras=extras,
        )

    # ------------------------------------------------------------------ losses
    def keypoint_2d_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> Tensor:
        """Eq. 18 ``L_2D``: the joints projected into the full image through the full camera of
        EACH local camera (CLIFF's loss, :func:`full_image_keypoint_loss`), averaged over the
        RoIs and keypoint sets; normalised in each RoI's crop (``keypoint_frame="roi"``) or in
        the original crop."""
        _, centers, sizes, affines = self.roi_inputs(batch)
        transl = est.extras["transl_rois"]
        camera = Camera.from_sample(batch)
        M = transl.shape[1]
        per_roi = "roi_joints" in est.extras
        total = 0.0
        for m in range(M):
            if per_roi:
                out = BodyOutput(est.extras["roi_vertices"][:, m], est.extras["roi_joints"][:, m])
            else:
                out = BodyOutput(est.vertices, est.joints)
            k = m if self.keypoint_frame == "roi" else 0
            for name in self.keypoint_sets:
                total = total + full_image_keypoint_loss(
                    self.body.keypoints(out, name), camera.focal_xy, camera.principal_point,
                    batch[f"keypoints2d/{name}"], centers[:, k], sizes[:, k],
                    batch["has_keypoints2d"], transl=transl[:, m], crop_affine=affines[:, k],
                    res=self.image_size,
                )
        return total / (M * len(self.keypoint_sets))

    def mesh_losses(self, rotmat: Tensor, betas: Tensor, vertices: Tensor, joints: Tensor,
                    batch: dict[str, Tensor], gt_rotmat: Tensor,
                    gt_vertices: Tensor | None, gt_pelvis: Tensor | None) -> dict[str, Tensor]:
        """SPIN-lineage terms of one mesh estimate (eq. 18: ``L_3D``, ``L_smpl``, ``L_vert``)."""
        w = self.loss_weights
        has = batch["has_smpl"] * self.labels.same_model(batch).to(batch["has_smpl"])
        k = min(self.num_betas, batch["betas"].shape[1])
        losses = {
            "keypoints_3d": w.keypoints_3d * keypoint_3d_loss(
                joints, batch["joints3d"], batch["has_joints3d"], root=0
            ),
            "pose": w.pose * pose_loss(rotmat, gt_rotmat, has),
            "betas": w.betas * shape_loss(betas[:, :k], batch["betas"][:, :k], has),
        }
        if gt_vertices is not None:
            # official code: each mesh centred on its own pelvis
            losses["vertices"] = w.vertices * vertex_loss(
                vertices, gt_vertices, has, pred_root=joints[:, 0], gt_root=gt_pelvis,
            )
        return losses

    def compute_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Eq. 19: ``lambda_cam L_cam + lambda_cont L_cont + L_smpl + L_vert + L_3D + L_2D``
        (SPIN weights, x60), plus SPIN's camera-scale prior on every local camera."""
        w = self.loss_weights
        gt_rotmat = self.gt_rotmat(batch)
        gt_vertices = gt_pelvis = None
        if w.vertices:
            gt = self.labels.pose(batch)
            gt_vertices, gt_pelvis = gt.vertices, gt.joints[:, 0]
        if "roi_joints" in est.extras:  # one estimate per RoI: average their losses
            x = est.extras
            M = x["roi_joints"].shape[1]
            losses: dict[str, Tensor] = {}
            for m in range(M):
                terms = self.mesh_losses(x["roi_rotmat"][:, m], x["roi_betas"][:, m],
                                         x["roi_vertices"][:, m], x["roi_joints"][:, m], batch,
                                         gt_rotmat, gt_vertices, gt_pelvis)
                for k, v in terms.items():
                    losses[k] = losses.get(k, 0.0) + v / M
        else:
            losses = self.mesh_losses(est.rotmat, est.betas, est.vertices, est.joints, batch,
                                      gt_rotmat, gt_vertices, gt_pelvis)
        losses["keypoints_2d"] = w.keypoints_2d * self.keypoint_2d_losses(est, batch)
        cams = est.extras["cams"]
        losses["cam_prior"] = w.cam_prior * camera_scale_prior(cams[..., 0])
        M = cams.shape[1]
        if self.camera_consistency > 0 and M > 1:
            losses["camera_consistency"] = LOSS_SCALE * self.camera_consistency * (
                self.camera_consistency_term(est, batch)
            )
        if self.projection is not None and self.contrastive > 0 and M > 1:
            losses["contrastive"] = LOSS_SCALE * self.contrastive * self.contrastive_term(est)
        return losses

    def camera_consistency_term(self, est: BodyEstimate, batch: dict[str, Tensor]) -> Tensor:
        """Eqs. 12-16 on the local cameras (:func:`camera_consistency_loss`), unweighted."""
        _, centers, sizes, _ = self.roi_inputs(batch)
        cams = est.extras["cams"].float()
        camera = Camera.from_sample(batch)
        return camera_consistency_loss(
            cams, centers.float(), sizes.float(), camera.image_size.float(),
            camera.focal.float(), pairs=self.camera_pairs, variant=self.camera_variant,
            scale_term=self.camera_scale_term,
        )

    def contrastive_term(self, est: BodyEstimate) -> Tensor:
        """Eq. 17 over the RoI features ``h`` of the persons of the batch, projected to ``z``."""
        z = self.projection(est.extras["roi_features"])
        return contrastive_loss(z.float(), tau=self.contrastive_temperature,
                                variant=self.contrastive_denominator)
