"""W-HMR (Yao et al.): weakly supervised focal length, FULL2 2D supervision, OrientCorrect, and
recovery in camera and world coordinates.

Composed from parts (:mod:`hmrkit.models.parts`):

- ``backbone`` (its spatial map, :meth:`~hmrkit.models.backbones.Backbone.feature_map`) and the
  PyMAF-like ``head`` (:class:`~hmrkit.models.pymaf.PyMAFHead`: deconvolution levels,
  mesh-aligned features, iterative parameter regression, optionally the hybrid vertex
  regressor);
- ``box_info``: W-HMR's 5-D global information (eq. 7,
  :class:`~hmrkit.models.box_info.WHMRGlobalInfo`; None: no global information, PyMAF);
- ``focal``: the focal predictor (:class:`~hmrkit.models.whmr_heads.FocalPredictor`,
  ``T_z = 10 sigmoid(BN(.))``, ``f = s h_box T_z / 2`` with ``s`` detached, eq. 3): the
  estimate's camera (:attr:`BodyEstimate.camera`) carries the predicted focal, its translation
  is eq. 4, and ``hmrkit predict`` places the mesh and draws the overlay with them. None: the
  sample's camera (CLIFF's ``sqrt(W^2 + H^2)`` in ``predict``), crop 2D loss only (PyMAF);
- ``dense``: the auxiliary IUV and inverse-depth heads (eqs. 11-12);
- ``world``: ``"orient_correct"`` (eq. 6, :class:`~hmrkit.models.whmr_heads.OrientCorrect`),
  ``"spec_like"`` (the camera rotation fed into the regressor, whose root output is then the
  world-frame orientation; the paper's Table 6 comparison) or None;
- ``camera_rotation``: where the camera rotation comes from: a trained
  :class:`~hmrkit.models.camcalib.CameraRotationNet` (reads the whole image, Sample key
  ``full_image``; frozen) or None: the sample's known ``camera/to_world`` (none in ``predict``:
  no world output then).

``stage`` sets the training stage and its rules (W-HMR sec. 3.4; losses in
:class:`~hmrkit.losses.sets.WHMRLosses`): I trains regressor and focal predictor (the focal
predictor reads detached decoder features, the full-image 2D path detached joints and camera,
plus the pseudo focal loss); II trains with the full FULL2 supervision (the crop path on
detached joints); III freezes everything but OrientCorrect (kept in eval mode, batch-norm
statistics included) and trains it on world-frame labels, or, SPEC-like, fine-tunes the whole
network with the rotation as input. Each stage's config starts from the previous stage's run
(``init_checkpoint``, read when training starts; a regressor input widened by the SPEC-like
rotation keeps its old columns and starts the new ones at zero).

Outputs: camera frame (``rotmat``, ``vertices``, ``transl``, the predicted camera) and world
frame (``world_global_orient``; the predicted camera's ``cam_to_world``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hmrkit.body.model import BodyModel
from hmrkit.geometry.cameras import (
    LEVEL_CAMERA_TO_WORLD,
    Camera,
    default_focal,
    focal_from_depth,
    world_root_relative,
)
from hmrkit.geometry.crops import CropBox
from hmrkit.geometry.rotations import rotmat_to_sixd
from hmrkit.losses.sets import LossSet, WHMRLosses
from hmrkit.metrics.pose import M_TO_MM, w_mpjpe, w_pve
from hmrkit.models import camcalib  # a module: camcalib's trainer imports methods.base
from hmrkit.models.backbones import Backbone, TimmBackbone
from hmrkit.models.box_info import BoxInfo, WHMRGlobalInfo
from hmrkit.models.pymaf import PyMAFHead
from hmrkit.models.whmr_heads import DenseHeads, FocalPredictor, OrientCorrect

from .base import BodyEstimate, Method, Optim

__all__ = ["WHMR", "WORLD_MODES"]

log = logging.getLogger(__name__)

WORLD_MODES = ("orient_correct", "spec_like")
"""How W-HMR gives the world-frame orientation (``world``; None: not at all)."""

DENSE_LABELS = ("iuv", "depth", "mask", "has_iuv", "has_depth", "has_mask")


def level_frame(like: Tensor) -> Tensor:
    """(3, 3) camera -> world rotation of a level camera (camera y down -> world y up).

    W-HMR and SPEC express the world orientation in a frame where a level camera has the
    identity rotation; hmrkit's world frame is y up. OrientCorrect and the SPEC-like regressor
    work in theirs (``tilt = L^T R_cam`` is the identity for a level camera, so OrientCorrect's
    residual stays small) and their output is turned into hmrkit's by ``L``."""
    return torch.tensor(LEVEL_CAMERA_TO_WORLD, dtype=like.dtype, device=like.device)


class WHMR(Method):
    """W-HMR (see the module doc)."""

    def __init__(
        self,
        backbone: Callable[[int], Backbone] = TimmBackbone,
        head: Callable[[int, int, BodyModel], PyMAFHead] = PyMAFHead,
        box_info: Callable[[], BoxInfo] | None = WHMRGlobalInfo,
        focal: Callable[[int, int], FocalPredictor] | None = FocalPredictor,
        dense: Callable[[int], DenseHeads] | None = DenseHeads,
        world: str | None = "orient_correct",
        orient_correct: Callable[[int], OrientCorrect] = OrientCorrect,
        camera_rotation: Callable[[int], camcalib.CameraRotationNet] | None = None,
        losses: Callable[[int], LossSet] = WHMRLosses,
        stage: int = 1,
        init_checkpoint: str | None = None,
        crop_size: int = 224,
        body_model: str = "anny24",
        num_betas: int | None = None,
        optim: Optim | None = None,
    ):
        """
        Args:
            backbone: image backbone with a spatial map (built with ``image_size=crop_size``).
            head: the PyMAF-like regressor (:class:`~hmrkit.models.pymaf.PyMAFHead`: decoder
                channels, grid, per-point MLP, regressor width, ``vertex_regressor``).
            box_info: global information given to the regressors and OrientCorrect (W-HMR's
                5-D; CLIFF's 3-D :class:`~hmrkit.models.box_info.CliffBoxInfo`; None).
            focal: the focal predictor (None: no predicted focal, no full-image 2D loss).
            dense: the auxiliary IUV / inverse-depth heads (None: off).
            world: ``"orient_correct"``, ``"spec_like"`` or None (no world-frame output).
            orient_correct: OrientCorrect's settings (``hidden``, ``dropout``).
            camera_rotation: the camera-rotation estimator (its ``checkpoint``: a trained
                :class:`~hmrkit.models.camcalib.CameraRotationEstimator` run); None: the
                samples' known rotation.
            losses: the objective (:class:`~hmrkit.losses.sets.WHMRLosses`), built with
                ``stage``.
            stage: training stage 1, 2 or 3 (module doc).
            init_checkpoint: the previous stage's checkpoint, loaded when training starts.
            crop_size: side of the person crops in pixels.
            body_model, num_betas, optim: see :class:`~hmrkit.models.methods.base.Method`.
        """
        super().__init__(body_model, num_betas, optim)
        self.save_hyperparameters()
        if stage not in (1, 2, 3):
            raise ValueError(f"WHMR: stage must be 1, 2 or 3, got {stage!r}")
        if world is not None and world not in WORLD_MODES:
            raise ValueError(f"WHMR: world must be one of {WORLD_MODES} or null, got {world!r}")
        if stage == 2 and focal is None:
            raise ValueError("WHMR: stage 2 trains the full-image 2D loss of the predicted focal; "
                             "without a focal predictor train stage 1 only")
        if stage == 3 and world is None:
            raise ValueError("WHMR: stage 3 trains the world-frame orientation; set world")
        self.stage, self.world, self.init_checkpoint = stage, world, init_checkpoint
        self.crop_size = int(crop_size)
        self.backbone = backbone(image_size=self.crop_size)
        channels, side = self._map_shape()
        self.box_info = box_info() if box_info is not None else None
        info_dim = (self.box_info.dim if self.box_info else 0) + (6 if world == "spec_like" else 0)
        self.head = head(in_channels=channels, info_dim=info_dim, body=self.body)
        decoder_channels = self.head.decoder.levels[-1][0].out_channels
        last_side = side * 2 ** self.head.num_levels
        self.focal = focal(in_channels=decoder_channels, map_size=last_side) if focal else None
        self.dense = dense(in_channels=decoder_channels) if dense is not None else None
        self.orient_correct = None
        if world == "orient_correct":
            self.orient_correct = orient_correct(feature_dim=self._feature_dim())
        self.camera_rotation = camera_rotation(image_size=self.crop_size) if camera_rotation \
            else None
        self.losses = losses(stage=stage)
        self._apply_stage_rules()

    # ------------------------------------------------------------------ construction
    def _map_shape(self) -> tuple[int, int]:
        """Channels and side of the backbone's map at the crop size (one dummy pass in eval
        mode, so no batch-norm statistic moves)."""
        was = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            fmap = self.backbone.feature_map(torch.zeros(1, 3, self.crop_size, self.crop_size))
        self.backbone.train(was)
        return int(fmap.shape[1]), int(fmap.shape[-1])

    def _feature_dim(self) -> int:
        """Width of the last parameter level's features (point features and global info)."""
        reg = self.head.regressors[-1]
        npose = reg.num_joints * 6
        return reg.mlp[0].in_features - npose - reg.num_betas - 3

    def _frozen(self) -> list[nn.Module]:
        """Modules that do not train in this stage (kept in eval mode)."""
        frozen = [self.camera_rotation] if self.camera_rotation is not None else []
        if self.stage == 3 and self.world == "orient_correct":
            frozen += [m for m in (self.backbone, self.head, self.focal, self.dense)
                       if m is not None]
        return frozen

    def _apply_stage_rules(self) -> None:
        """Stage rules on ``requires_grad``: frozen modules, and OrientCorrect trains in
        stage III only."""
        for module in self._frozen():
            module.requires_grad_(False)
            module.eval()  # Lightning keeps each submodule's mode as it finds it
        if self.orient_correct is not None:
            self.orient_correct.requires_grad_(self.stage == 3)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen():
            module.eval()
        return self

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.init_checkpoint:
            self.load_previous_stage(self.init_checkpoint)
        self.train(self.training)  # the frozen modules back in eval mode

    def load_previous_stage(self, path) -> None:
        """Weights of the previous stage's run: tensors of the same shape are copied; a linear
        layer whose input was widened (the SPEC-like rotation) keeps its old input columns and
        starts the new ones at zero; the rest keep their initial values (listed in the log)."""
        from hmrkit.models.checkpoints import read_checkpoint

        state = read_checkpoint(path).get("state_dict") or {}
        own = self.state_dict()
        kept, loaded = [], {}
        for key, value in own.items():
            old = state.get(key)
            if old is None:
                kept.append(key)
            elif old.shape == value.shape:
                loaded[key] = old
            elif old.dim() == 2 and old.shape[0] == value.shape[0] and old.shape[1] < \
                    value.shape[1]:
                wide = torch.zeros_like(value)
                wide[:, : old.shape[1]] = old
                loaded[key] = wide
            else:
                raise ValueError(f"{path}: weight {key} has shape {tuple(old.shape)}, this "
                                 f"model's is {tuple(value.shape)}")
        self.load_state_dict(loaded, strict=False)
        if kept:
            log.warning("%s: %d tensors not in the previous stage keep their initial values "
                        "(e.g. %s)", path, len(kept), kept[:3])

    # ------------------------------------------------------------------ contract
    def input_keys(self) -> tuple[str, ...]:
        keys = ("image", "box_center", "box_size", "crop_affine", "camera/intrinsics",
                "camera/image_size")
        return keys + ((camcalib.FULL_IMAGE_KEY,) if self.camera_rotation is not None else ())

    def label_keys(self) -> tuple[str, ...]:
        return DENSE_LABELS if self.dense is not None else ()

    def camera_rotation_of(self, batch: dict[str, Tensor]) -> Tensor | None:
        """``(B, 3, 3)`` camera -> world rotation: estimated from ``full_image``, else the
        batch's known ``camera/to_world`` (None when it has none; unknown rows, stored as
        zeros, become the identity)."""
        if self.camera_rotation is not None:
            if camcalib.FULL_IMAGE_KEY not in batch:
                raise KeyError(f"W-HMR's camera-rotation estimator reads "
                               f"'{camcalib.FULL_IMAGE_KEY}' (the whole image), which this batch "
                               "does not hold")
            with torch.no_grad():
                return self.camera_rotation.cam_to_world(batch[camcalib.FULL_IMAGE_KEY])
        rotation = batch.get("camera/to_world")
        if rotation is None or not rotation.abs().sum():
            return None
        known = rotation.abs().flatten(1).sum(1) > 0
        eye = torch.eye(3, dtype=rotation.dtype, device=rotation.device)
        return torch.where(known[:, None, None], rotation, eye)

    def estimate(self, batch: dict[str, Tensor]) -> BodyEstimate:
        camera = Camera.from_sample(batch)
        crop = CropBox.from_sample(batch, self.crop_size)
        rotation = self.camera_rotation_of(batch) if self.world is not None else None
        info = self.box_info(crop, camera) if self.box_info is not None else None
        root_to_camera = tilt = None
        if rotation is not None:
            tilt = level_frame(rotation).T @ rotation  # identity for a level camera
        if self.world == "spec_like":
            if tilt is None:
                tilt = torch.eye(3, device=crop.size.device).expand(len(crop.size), 3, 3)
            six = rotmat_to_sixd(tilt).to(crop.size.dtype)
            info = six if info is None else torch.cat([info, six], dim=1)
            root_to_camera = tilt.transpose(1, 2)
        levels, maps = self.head(self.backbone.feature_map(batch["image"]), info, self.body,
                                 root_to_camera)
        last = levels[-1]
        param = next(lv for lv in reversed(levels) if lv.params is not None)
        extras = {"levels": levels, "vertex_sets": self.head.vertex_sets,
                  "world_mode": self.world, "local_orient": param.rotmat[:, 0]}
        intrinsics = camera.intrinsics
        if self.focal is not None:
            fmap = maps[-1].detach() if self.stage == 1 else maps[-1]
            extras["t_z"] = t_z = self.focal(fmap)
            focal = focal_from_depth(last.cam[:, 0], crop.size.to(t_z), t_z)
            intrinsics = camera.with_focal(focal).intrinsics
        predicted = self.focal is not None or rotation is not None
        out_camera = Camera(intrinsics, camera.image_size, rotation) if predicted else None
        transl = crop.to_full_translation(last.cam, out_camera or camera)
        world_orient = None
        if self.world == "orient_correct" and rotation is not None:
            raw = self.orient_correct(param.features.detach(), tilt, param.rotmat[:, 0].detach())
            extras["world_rotmat"] = level_frame(raw) @ raw  # trained as is (the code)
            world_orient = level_frame(raw) @ OrientCorrect.rotation(raw)
        elif self.world == "spec_like" and rotation is not None:
            world_orient = level_frame(tilt) @ param.params.rotmat[:, 0]
            extras["world_rotmat"] = world_orient
        if self.dense is not None:
            extras["dense"] = self.dense(maps[-1])
        return BodyEstimate(
            rotmat=param.rotmat, betas=param.params.betas, vertices=last.vertices,
            joints=last.joints, transl=transl, cam_crop=last.cam, camera=out_camera,
            world_global_orient=world_orient, extras=extras)

    def compute_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.losses(est, batch, self.loss_context)

    # ------------------------------------------------------------------ metrics
    def extra_metrics(self, est: BodyEstimate, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The camera table (predicted focal against the true one and against CLIFF's
        ``sqrt(W^2 + H^2)``, the translation and the reprojection each implies) and the world
        table (world-frame errors of the camera-frame output as is, turned by the estimated or
        the true camera rotation, and OrientCorrect fed the true rotation)."""
        out: dict[str, Tensor] = {}
        if "t_z" in est.extras:
            out.update(self._camera_metrics(est, batch))
        if "world_global_orient" in batch and "global_orient" in batch:
            out.update(self._world_metrics(est, batch))
        return out

    def _camera_metrics(self, est: BodyEstimate, batch) -> dict[str, Tensor]:
        true = Camera.from_sample(batch)
        crop = CropBox.from_sample(batch, self.crop_size)
        f_true = true.focal.to(est.vertices)
        cliff = Camera.default(true.image_size.to(est.vertices))
        transl_cliff = crop.to_full_translation(est.cam_crop, cliff)
        out = {
            "focal_err_pct": 100 * (est.camera.focal - f_true).abs() / f_true,
            "focal_err_cliff_pct": 100 * (default_focal(true.image_size).to(f_true) - f_true
                                          ).abs() / f_true,
        }
        gt = self.labels.pose(batch).joints
        if "transl" in batch:
            root = gt[:, 0] + batch["transl"].to(gt)
            out["root_transl_cliff"] = (est.joints[:, 0] + transl_cliff - root).norm(
                dim=-1) * M_TO_MM
        if "keypoints2d/smpl24" in batch:
            kp = batch["keypoints2d/smpl24"].to(est.joints)
            vis = kp[..., 2] > 0
            size = crop.size.to(kp)[:, None]
            for name, cam, transl in (("reproj_pct", est.camera, est.transl),
                                      ("reproj_cliff_pct", cliff, transl_cliff)):
                px = cam.project(est.joints, transl=transl)
                err = (px - kp[..., :2]).norm(dim=-1) / size * 100
                out[name] = (err * vis).sum(1) / vis.sum(1)  # NaN without a visible joint
        return out

    def _world_metrics(self, est: BodyEstimate, batch) -> dict[str, Tensor]:
        """World-frame errors (root-relative, mm) of the camera-frame output turned by a
        rotation: a level camera's (``camframe``: the camera-frame output taken as the world
        one, as in W-HMR's tables), the estimated (``rotest``), the true (``rottrue``); and
        OrientCorrect fed the true rotation (``octrue``)."""
        gt = self.labels.pose(batch)
        true = (batch["world_global_orient"] @ batch["global_orient"].transpose(1, 2)).to(
            est.vertices)
        g_joints = world_root_relative(gt.joints, gt.joints[:, 0], true)
        g_verts = world_root_relative(gt.vertices, gt.joints[:, 0], true)
        missing = batch.get("has_world", torch.ones(len(true))).to(true.device) <= 0
        missing_v = missing | ~gt.same_model
        root = est.joints[:, 0]
        level = level_frame(true)
        turns = {"camframe": level.expand_as(true), "rottrue": true}
        if self.camera_rotation is not None and est.camera is not None:
            turns["rotest"] = est.camera.cam_to_world.to(true)
        if self.orient_correct is not None:
            local = est.extras["local_orient"]
            levels = est.extras["levels"]
            param = next(lv for lv in reversed(levels) if lv.params is not None)
            tilt = level.T @ true
            world = level @ OrientCorrect.rotation(self.orient_correct(param.features, tilt, local))
            turns["octrue"] = world @ local.transpose(1, 2)
        out = {}
        for name, turn in turns.items():
            joints = world_root_relative(est.joints, root, turn)
            verts = world_root_relative(est.vertices, root, turn)
            out[f"w_mpjpe_{name}"] = w_mpjpe(joints, g_joints).masked_fill(missing, float("nan"))
            out[f"w_pve_{name}"] = w_pve(verts, torch.nan_to_num(g_verts)).masked_fill(
                missing_v, float("nan"))
        return out
