"""Refiners that pull any method's estimate onto image evidence with the fitter (:mod:`hmrkit.fit`).

- :class:`KeypointRefiner` (``--refiner keypoints``): fits to 2D landmarks. By default the 33
  BlazePose landmarks: those a front end put in the batch (``keypoints2d/blazepose33``, as
  ``hmrkit fit`` does from the full image), else BlazePose run on the method's person crop
  (the crop's resolution limits them; ``hmrkit fit`` is the better path on photos).
  ``keypoints-labels`` fits to the batch's labelled keypoints instead (synthetic ground truth,
  optionally with noise: an upper bound for benchmarks).
- :class:`~hmrkit.models.dense_refiner.DenseRefiner` (``--refiner dense``): fits to the dense
  per-vertex targets of the displacement network (dense refinement paper, eqs. 5-7).

A person the fitter cannot use (no visible landmark, a degenerate box, a non-finite estimate)
keeps the method's estimate; the refiner logs why (one line per batch) and records the reason
code per person in ``estimate.extras["fit/status"]`` (0: fitted, see :data:`STATUS_CODES`), with
the final and initial per-term losses in ``extras["fit/<term>"]`` and
``extras["fit/initial/<term>"]`` (NaN for persons left unchanged).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from hmrkit.body.estimate import BodyEstimate
from hmrkit.body.model import BodyModel
from hmrkit.fit import FitConfig, FitResult, Fitter, PosePrior, Targets
from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.crops import CropBox

from .refiners import Refiner, RefinerError

__all__ = ["FitRefiner", "KeypointRefiner", "LabelKeypointRefiner", "STATUS_CODES",
           "blazepose_on_crops"]

log = logging.getLogger(__name__)

STATUS_CODES = {"ok": 0, "unchanged": 1, "stopped": 2, "not fitted": 3}
"""``extras["fit/status"]`` per person: fitted, left unchanged (see the log), stopped early on
a non-finite loss (last finite parameters kept), or not fitted by this refiner at all."""

REFINE_CONFIG = FitConfig(iterations=100, camera_iterations=20)
"""The refiners' default fit: a short camera-first stage (translation and root orientation),
then 100 Adam iterations on everything (the paper's 100)."""


class FitRefiner(Refiner):
    """Base of the fitting refiners: targets from the batch -> :class:`~hmrkit.fit.Fitter`
    -> the refined estimate. Subclasses say what the targets are (:meth:`targets`)."""

    name = "fit"

    def __init__(self, config: FitConfig | None = None, prior_path: str | None = None):
        self.config = config or REFINE_CONFIG
        self.prior_path = prior_path
        self._fitters: dict[tuple, Fitter] = {}

    def targets(self, batch: dict[str, Tensor], estimate: BodyEstimate, camera: Camera,
                body: BodyModel) -> Targets:
        raise NotImplementedError

    def fitter(self, body: BodyModel) -> Fitter:
        key = (id(body), body.v_template.dtype, body.v_template.device)
        if key not in self._fitters:
            prior = PosePrior.for_body(body, self.prior_path)
            self._fitters[key] = Fitter(body, self.config, prior)
        return self._fitters[key]

    def __call__(self, batch: dict[str, Tensor], estimate: BodyEstimate, camera: Camera,
                 body: BodyModel) -> BodyEstimate:
        missing = [f for f in ("rotmat", "transl") if getattr(estimate, f) is None]
        if missing:
            log.warning("%s refiner: the estimate has no %s to fit; left unchanged", self.name,
                        " or ".join(missing))
            return estimate
        B = estimate.rotmat.shape[0]
        betas = estimate.betas if estimate.betas is not None else estimate.rotmat.new_zeros(
            B, body.num_betas)
        targets = self.targets(batch, estimate, camera, body)
        if targets.person_size is None and "box_size" in batch:
            targets.person_size = batch["box_size"].reshape(-1)
        with torch.inference_mode(False), torch.enable_grad():
            result = self.fitter(body).fit(estimate.rotmat, betas, estimate.transl, camera,
                                           targets)
        self._report(result)
        return self.refined(batch, estimate, camera, result)

    def _report(self, result: FitResult) -> None:
        reasons: dict[str, int] = {}
        for s in result.status:
            if s != "ok":
                reasons[s] = reasons.get(s, 0) + 1
        if reasons:
            text = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items()))
            log.warning("%s refiner: %d of %d persons not refined as asked: %s", self.name,
                        sum(reasons.values()), len(result.status), text)

    @staticmethod
    def refined(batch, estimate: BodyEstimate, camera: Camera, result: FitResult
                ) -> BodyEstimate:
        """The estimate with the fitted parameters, posed, and the fit's record in extras."""
        like = estimate.rotmat
        codes = torch.tensor([STATUS_CODES[s.split(":")[0]] for s in result.status],
                             device=like.device)
        extras = {**estimate.extras, "fit/status": codes}
        extras.update({f"fit/{k}": v.to(like) for k, v in result.losses.items()})
        extras.update({f"fit/initial/{k}": v.to(like) for k, v in result.initial_losses.items()})
        cam_crop = estimate.cam_crop
        if cam_crop is not None and "box_center" in batch:
            box = CropBox(batch["box_center"].to(like), batch["box_size"].to(like).reshape(-1),
                          1, batch.get("box_rotation"))
            cam_crop = box.to_crop_camera(result.transl.to(like), camera.to(like))
        return replace(estimate, rotmat=result.rotmat.to(like), betas=result.betas.to(like),
                       transl=result.transl.to(like), vertices=result.vertices.to(like),
                       joints=result.joints.to(like), cam_crop=cam_crop, extras=extras)


# --------------------------------------------------------------------------- keypoints
def blazepose_on_crops(model, images: Tensor, affines: Tensor) -> tuple[Tensor, Tensor]:
    """BlazePose landmarks of the person at the centre of each crop, in full-image pixels.

    ``model`` a :class:`hmrkit.blazepose.BlazePose`; ``images`` ``(B, 3, S, S)`` RGB in [0, 1];
    ``affines`` ``(B, 2, 3)`` full-image -> crop pixels. Returns ``landmarks (B, 33, 3)``
    ``x, y, visibility`` (visibility 0 where no person was found) and the world landmarks
    ``(B, 33, 4)`` (metres, hip-centred, camera-frame axes, and the visibility).
    """
    from hmrkit.geometry.crops import invert_affine, transform_points

    crops = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    crops = crops.permute(0, 2, 3, 1).cpu().numpy()
    people = model.detect_batch(list(crops))
    B, S = len(crops), crops.shape[1]
    out = torch.zeros(B, 33, 3, dtype=torch.float64)
    world = torch.zeros(B, 33, 4, dtype=torch.float64)
    for b, found in enumerate(people):
        if not found:
            continue
        centre = np.array([S / 2, S / 2])
        best = min(found, key=lambda p: np.linalg.norm(
            p.landmarks[[23, 24, 11, 12], :2].mean(0) - centre))
        out[b, :, :2] = torch.from_numpy(best.landmarks[:, :2].astype(np.float64))
        out[b, :, 2] = torch.from_numpy(best.visibility.astype(np.float64))
        world[b, :, :3] = torch.from_numpy(best.world.astype(np.float64))
        world[b, :, 3] = out[b, :, 2]
    inverse = invert_affine(affines.detach().cpu().double())
    out[..., :2] = transform_points(out[..., :2], inverse)
    return out, world


class KeypointRefiner(FitRefiner):
    """Fit to 2D landmarks (module doc).

    Args:
        keypoint_set: the body's keypoint set the landmarks are (``blazepose33``, ``coco17``).
        source: ``"blazepose"``: the batch's ``keypoints2d/blazepose33`` if present, else
            BlazePose on the person crops; ``"labels"``: the batch's ``keypoints2d/<set>``.
        min_confidence: landmarks below this confidence / visibility count with weight 0;
            the others with their confidence.
        noise_px: Gaussian noise (pixels, per coordinate) added to the landmarks (benchmarks:
            "true keypoints with noise").
        world_landmarks: also fit BlazePose's world landmarks (root-aligned 3D term).
        variant: BlazePose landmark network (``lite``, ``full``, ``heavy``).
        config: the fit (default :data:`REFINE_CONFIG`).
    """

    name = "keypoints"

    def __init__(self, keypoint_set: str = "blazepose33", source: str = "blazepose",
                 min_confidence: float = 0.5, noise_px: float = 0.0,
                 world_landmarks: bool = False, variant: str = "full",
                 config: FitConfig | None = None, seed: int = 0):
        super().__init__(config)
        if source not in ("blazepose", "labels"):
            raise RefinerError(f"keypoints refiner: source must be 'blazepose' or 'labels', "
                               f"got {source!r}")
        if source == "blazepose" and keypoint_set != "blazepose33":
            raise RefinerError("keypoints refiner: BlazePose gives the blazepose33 set")
        self.keypoint_set, self.source = keypoint_set, source
        self.min_confidence, self.noise_px = float(min_confidence), float(noise_px)
        self.world_landmarks, self.variant = world_landmarks, variant
        self.generator = torch.Generator().manual_seed(seed)
        self._blazepose = None
        if source == "blazepose":
            self.blazepose()  # a missing model file is a one-line error now, not mid-run

    def input_keys(self) -> tuple[str, ...]:
        if self.source == "labels":
            return (f"keypoints2d/{self.keypoint_set}",)
        return ("image", "crop_affine")

    def blazepose(self):
        if self._blazepose is None:
            from hmrkit.blazepose import BlazePose, BlazePoseModelError

            try:
                self._blazepose = BlazePose(self.variant)
            except BlazePoseModelError as err:
                raise RefinerError(f"keypoints refiner: {err}") from None
        return self._blazepose

    def landmarks(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """``(B, K, 3)`` 2D landmarks and optional ``(B, K, 4)`` world landmarks."""
        key = f"keypoints2d/{self.keypoint_set}"
        if self.source == "labels" or key in batch:
            if key not in batch:
                raise RefinerError(f"keypoints refiner: the batch has no '{key}' labels")
            kp = batch[key].detach().cpu().double()
            world = batch.get(f"keypoints3d/{self.keypoint_set}")
            return kp, None if world is None else world.detach().cpu().double()
        if "image" not in batch or "crop_affine" not in batch:
            raise RefinerError("keypoints refiner: no landmarks in the batch and no person "
                               "crop ('image', 'crop_affine') to run BlazePose on")
        return blazepose_on_crops(self.blazepose(), batch["image"], batch["crop_affine"])

    def targets(self, batch, estimate, camera, body) -> Targets:
        kp, world = self.landmarks(batch)
        kp = kp.clone()
        conf = kp[..., 2]
        kp[..., 2] = torch.where(conf >= self.min_confidence, conf, 0.0)
        if self.noise_px > 0:
            kp[..., :2] += self.noise_px * torch.randn(kp[..., :2].shape, dtype=kp.dtype,
                                                       generator=self.generator)
        like = estimate.rotmat
        kp3 = {}
        if self.world_landmarks and world is not None:
            world = world.clone()
            world[..., 3] = torch.where(world[..., 3] >= self.min_confidence, world[..., 3], 0.0)
            kp3[self.keypoint_set] = world.to(like)
        return Targets(keypoints2d={self.keypoint_set: kp.to(like)}, keypoints3d=kp3)


class LabelKeypointRefiner(KeypointRefiner):
    """``keypoints-labels``: fit to the batch's labelled COCO-17 keypoints (visible ones), no
    noise: an upper bound of keypoint fitting on labelled (synthetic) data."""

    name = "keypoints-labels"

    def __init__(self, keypoint_set: str = "coco17", noise_px: float = 0.0, **kwargs):
        super().__init__(keypoint_set=keypoint_set, source="labels", noise_px=noise_px,
                         **kwargs)
