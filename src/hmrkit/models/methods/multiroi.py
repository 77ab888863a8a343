"""Multi-RoI HMR (Nie et al. 2024): several RoIs per person, camera consistency, contrastive loss.

Composed like the CLIFF baseline (:class:`~hmrkit.models.methods.cliff.CLIFF`) from parts
(:mod:`hmrkit.models.parts`). For each person the batch holds ``M`` crops (the fixed RoIs of
:mod:`hmrkit.data.rois`, RoI 0 = the original box):

1. a shared backbone gives one feature ``h_m`` per RoI;
2. a fusion module (:mod:`hmrkit.models.fusion`, RAF by default, eqs. 2-4) gives RoI-specific
   features ``u_m`` and the RoI-shared feature ``u_bar = mean_m u_m``;
3. ``D^mesh(u_bar)`` (SPIN's iterative regressor) gives the pose and shape (eq. 6) and
   ``D^cam(u_m)`` (the same iterative error feedback on the camera alone, weights shared by the
   RoIs) one local weak-perspective camera ``C_m = (s_m, t_xm, t_ym)`` per RoI (eq. 5);
4. losses (eq. 19, :class:`~hmrkit.losses.sets.MultiRoILosses`): the SPIN-lineage 3D joint,
   pose, shape and vertex losses on the mesh, the CLIFF full-image 2D loss through the full
   camera of EACH local camera (eq. 18 ``L_2D``, averaged over the RoIs), the local camera
   consistency (eqs. 12-16) and the contrastive loss over the RoIs of the persons of the batch
   (eq. 17) on the RoI features projected by the projection head.

``per_roi_regressor=True`` reproduces the official code's decoder instead (``HMR_sim``): one
shared SPIN regressor run on each ``u_m`` (its input also holds the box information of all the
RoIs), i.e. a full body estimate per RoI, all of them supervised, the original box's used at
test time.

The estimate returned for a batch is the mesh of ``D^mesh`` with the camera of RoI 0 (the
original box); every RoI's camera is in ``extras``. Inference needs the RoI crops
(``rois/image`` ...): datasets build them with ``rois=M`` and ``hmrkit predict`` builds them
from each box (:func:`hmrkit.predict.make_batch`).

Loss scale: everything is at SPIN's x60 scale (:class:`~hmrkit.losses.weights.LossWeights`);
the paper's ``lambda_cam = 1`` and ``lambda_cont = 0.1`` are the ``camera_consistency`` and
``contrastive`` arguments of the loss set, multiplied by
:data:`~hmrkit.losses.sets.LOSS_SCALE` (60) as in the official ``trainer_sim.py``
(:data:`hmrkit.losses.MULTIROI_WEIGHTS`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from hmrkit.body.estimate import roll_about, unroll_translation
from hmrkit.data.rois import MAX_ROIS
from hmrkit.data.sample import ROI_KEYS
from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.crops import CropBox
from hmrkit.losses import ProjectionHead
from hmrkit.losses.sets import LossSet, MultiRoILosses
from hmrkit.models.backbones import Backbone, TimmBackbone
from hmrkit.models.box_info import BoxInfo, CliffBoxInfo
from hmrkit.models.fusion import RoIAwareFusion
from hmrkit.models.heads import CameraDecoder, IterativeRegressor

from .base import BodyEstimate, Method, Optim

__all__ = ["MultiRoI"]


class MultiRoI(Method):
    """Multi-RoI HMR (see the module doc).

    Outputs (``BodyEstimate``): ``rotmat``, ``betas``, ``vertices``, ``joints`` of the shared mesh
    decoder; ``cam_crop`` and ``transl`` of RoI 0 (the original box); ``extras``: ``cams``
    (B, M, 3) local cameras, ``transl_rois`` (B, M, 3) their full-image translations (eq. 12),
    ``fusion_weights`` (B, M, M), ``roi_features`` (B, M, D) backbone features ``h_m``,
    ``embeddings`` (B, M, D') their projections (with a projection head), ``roi_box_info``
    (B, M, 3), ``iterations`` (the mesh regressor's outputs), and with ``per_roi_regressor`` the
    per-RoI ``roi_rotmat``, ``roi_betas``, ``roi_vertices``, ``roi_joints``.
    """

    def __init__(
        self,
        backbone: Callable[[int], Backbone] = TimmBackbone,
        fusion: Callable[[int, int, int], nn.Module] = RoIAwareFusion,
        head: Callable[[int, int, int, int], IterativeRegressor] = IterativeRegressor,
        camera_head: Callable[[int, int], CameraDecoder] = CameraDecoder,
        projection: Callable[[int], ProjectionHead] | None = ProjectionHead,
        box_info: Callable[[], BoxInfo] = CliffBoxInfo,
        losses: Callable[[], LossSet] = MultiRoILosses,
        num_rois: int = 5,
        per_roi_regressor: bool = False,
        mesh_box_info: bool = True,
        camera_box_info: bool = False,
        crop_size: int = 224,
        body_model: str = "anny24",
        num_betas: int | None = None,
        optim: Optim | None = None,
    ):
        """
        Args:
            backbone: the image backbone shared by the RoIs, built with
                ``image_size=crop_size`` (paper: ResNet-50 or HRNet-W48 at 224 px).
            fusion: the RoI fusion (:mod:`hmrkit.models.fusion`: ``RoIAwareFusion``, the
                paper's RAF, default; ``CodeRoIFusion``, ``AttentionFusion``, ``NoFusion`` the
                "w/o RAF" ablation), built with the feature width, ``num_rois`` and the box
                information width.
            head: ``D^mesh``, SPIN's regressor (paper: 3 iterations, width 1024).
            camera_head: ``D^cam``, the camera decoder applied to every RoI.
            projection: the projection head of the contrastive loss (official code's), built
                with the feature width when ``num_rois > 1``; None: no contrastive term.
            box_info: the box information of every RoI (CLIFF's).
            losses: the objective (:class:`~hmrkit.losses.sets.MultiRoILosses`, eq. 19).
            num_rois: RoIs per person ``M`` in 1..5 (paper: 5; Table 4 ablates 1-5); the first
                ``M`` of :data:`hmrkit.data.rois.MULTI_ROI_SCALES` (the batch may hold more).
            per_roi_regressor: official-code decoder: one shared SPIN regressor per RoI
                feature ``u_m`` (input also holds all RoIs' box information), a full estimate
                per RoI, all supervised; RoI 0's is returned. False: the paper's ``D^mesh`` on
                ``u_bar`` + ``D^cam`` per ``u_m``.
            mesh_box_info: feed the original box's box information to ``D^mesh`` (hmrkit
                reading: without it the camera-frame root orientation cannot depend on where
                the person is in the image; the paper writes ``D^mesh(u_bar)``).
            camera_box_info: feed each RoI's box information to ``D^cam`` (paper: no).
            crop_size: side of the RoI crops in pixels.
            body_model, num_betas, optim: see :class:`~hmrkit.models.methods.base.Method`
                (paper: Adam, lr 1e-4 for ResNet-50, 5e-5 for HRNet-W48).
        """
        if not isinstance(num_rois, int) or isinstance(num_rois, bool) or not (
            1 <= num_rois <= MAX_ROIS
        ):
            raise ValueError(f"MultiRoI: num_rois must be an integer in [1, {MAX_ROIS}], "
                             f"got {num_rois!r}")
        super().__init__(body_model, num_betas, optim)
        self.save_hyperparameters()
        self.crop_size, self.num_rois = int(crop_size), num_rois
        self.per_roi_regressor = per_roi_regressor
        self.mesh_box_info, self.camera_box_info = mesh_box_info, camera_box_info
        self.backbone = backbone(image_size=self.crop_size)
        self.crop_style = getattr(self.backbone, "crop_style", "box")
        dim = self.backbone.out_features
        self.box_info = box_info()
        info_dim = self.box_info.dim
        self.fusion = fusion(dim=dim, num_rois=num_rois, box_dim=info_dim)
        sizes = {"feature_dim": dim, "num_joints": self.body.num_joints,
                 "num_betas": self.num_betas}
        if per_roi_regressor:
            # official code: the regressor sees u_m and the box information of all the RoIs
            self.regressor = head(info_dim=info_dim * num_rois, **sizes)
            self.camera_decoder = None
        else:
            self.regressor = head(info_dim=info_dim if mesh_box_info else 0, **sizes)
            self.regressor.freeze_camera()  # D^mesh predicts no camera
            self.camera_decoder = camera_head(feature_dim=dim,
                                              info_dim=info_dim if camera_box_info else 0)
        self.projection = projection(dim=dim) if projection is not None and num_rois > 1 else None
        """Projection head to the contrastive space ``z`` (built only with several RoIs)."""
        self.losses = losses()

    # ------------------------------------------------------------------ inputs
    def input_keys(self) -> tuple[str, ...]:
        crops = ROI_KEYS if self.num_rois > 1 else ("image", "box_center", "box_size",
                                                      "crop_affine")
        if self.crop_style == "blazepose":
            crops = (*crops, "rois/box_rotation" if self.num_rois > 1 else "box_rotation")
        return (*crops, "camera/intrinsics", "camera/image_size")

    def roi_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, CropBox]:
        """The first ``num_rois`` RoIs of the batch: crops ``(B, M, 3, S, S)`` and their boxes
        ``(B, M)``. With ``num_rois == 1`` a batch without ``rois/*`` keys uses ``image`` and
        its box."""
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
            return batch["rois/image"][:, :M], CropBox.rois_from_sample(batch, self.crop_size, M)
        if M == 1:
            return batch["image"][:, None], CropBox.rois_from_sample(batch, self.crop_size, 1)
        raise ValueError(
            f"MultiRoI(num_rois={M}) needs the RoI crops of every person (batch keys "
            f"{', '.join(ROI_KEYS)}), but the batch has only the single box crop 'image'. "
            f"Build the RoIs: datasets with rois={M} (SyntheticDataset(..., rois={M}), "
            f"build_dataset(..., rois={M}), HMRDataModule(rois={M})); hmrkit predict builds them "
            "from each box (hmrkit.predict.make_batch(..., rois=model.num_rois))"
        )

    # ------------------------------------------------------------------ forward
    def estimate(self, batch: dict[str, Tensor]) -> BodyEstimate:
        images, rois = self.roi_inputs(batch)
        camera = Camera.from_sample(batch)
        B, M = images.shape[:2]
        h = self.backbone.from_batch({"image": images}).view(B, M, -1)
        info = self.box_info(rois, camera)
        fused = self.fusion(h, info)
        extras: dict = {"roi_features": h, "fusion_weights": fused.weights, "roi_box_info": info}
        if self.projection is not None:
            extras["embeddings"] = self.projection(h)
        if self.per_roi_regressor:
            all_info = info.reshape(B, 1, M * 3).expand(B, M, M * 3).reshape(B * M, M * 3)
            outs = self.regressor(fused.roi.reshape(B * M, -1), all_info)
            last = outs[-1]
            posed = self.body(last.rotmat[:, 0], last.rotmat[:, 1:], last.betas)
            cams = last.cam.view(B, M, 3)
            rotmat = last.rotmat.view(B, M, *last.rotmat.shape[1:])
            betas = last.betas.view(B, M, -1)
            verts = posed.vertices.view(B, M, *posed.vertices.shape[1:])
            joints = posed.joints.view(B, M, *posed.joints.shape[1:])
            extras.update(roi_rotmat=rotmat, roi_betas=betas, roi_vertices=verts,
                          roi_joints=joints)
            rotmat, betas, vertices, joints = rotmat[:, 0], betas[:, 0], verts[:, 0], joints[:, 0]
        else:
            outs = self.regressor(fused.shared, info[:, 0] if self.mesh_box_info else None)
            last = outs[-1]
            rotmat, betas = last.rotmat, last.betas
            posed = self.body(rotmat[:, 0], rotmat[:, 1:], betas)
            vertices, joints = posed.vertices, posed.joints
            cam_iters = self.camera_decoder(fused.roi, info if self.camera_box_info else None)
            cams = cam_iters[-1]
            extras["cam_iterations"] = cam_iters
        transl_rois = rois.to_full_translation(cams, camera)
        extras.update(iterations=outs, cams=cams, transl_rois=transl_rois)
        est = BodyEstimate(
            rotmat=rotmat, betas=betas, cam_crop=cams[:, 0], transl=transl_rois[:, 0],
            vertices=vertices, joints=joints, extras=extras,
        )
        if rois.rotation is None:
            return est
        # rotated RoIs (one angle per person): estimates in the rolled camera -> camera frame
        roll = rois.roll_matrix()[:, 0]
        rt = roll.transpose(-1, -2).to(joints)
        roots = extras["roi_joints"][:, :, 0] if "roi_joints" in extras else joints[:, 0]
        extras["transl_rois"] = unroll_translation(transl_rois, roots, rt)
        if "roi_joints" in extras:
            root = extras["roi_joints"][..., :1, :]
            for key in ("roi_joints", "roi_vertices"):
                extras[key] = roll_about(extras[key].flatten(0, 1), root.flatten(0, 1),
                                         rt.repeat_interleave(M, 0)).view(extras[key].shape)
            rot = extras["roi_rotmat"]
            extras["roi_rotmat"] = torch.cat([(rt[:, None] @ rot[:, :, 0])[:, :, None],
                                              rot[:, :, 1:]], 2)
        return est.unrolled(roll)

    def compute_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.losses(est, batch, self.loss_context)
