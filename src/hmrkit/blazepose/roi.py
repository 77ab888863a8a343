"""BlazePose's crops as pure functions: letterbox, rotated square ROI, image warps.

Conventions are hmrkit's (:mod:`hmrkit.geometry.crops`): continuous pixel coordinates (pixel
``i`` covers ``[i, i + 1)``), and every crop is the affine ``crop_matrix(center, size, res,
rotation)`` from full-image to crop pixels, so crop <-> full mappings are exact and invertible.

MediaPipe's ROI from a detection (``AlignmentPointsRectsCalculator`` then
``RectTransformationCalculator``): centre at the hip-centre keypoint, side ``2 * scale * |kp1 -
kp0|`` (``scale = 1.25``), rotation ``r = pi / 2 - atan2(-(y1 - y0), x1 - x0)`` so that the
hip -> kp1 direction points up in the crop. MediaPipe maps crop to image by ``x = c + size *
R(r) (u - 1/2)`` (``u`` in [0, 1]), which is ``crop_matrix`` with ``rotation = -r``.

Half pixels matter: the landmark network moves landmarks by pixels for a 0.1-pixel shift of
its input (measured, see docs/blazepose.md), so the crops reproduce MediaPipe's sampling
exactly. MediaPipe works in OpenCV's convention (pixel centres at integers, hmrkit's ``x -
0.5``) and both networks answer in it. In hmrkit's continuous pixels this means:

- a network output coordinate ``p`` is the hmrkit input-frame pixel ``p + 0.5``
  (:data:`NETWORK_PIXEL_OFFSET`);
- a crop is ``crop_matrix(center, size, res, rotation)`` followed by a half-pixel translation
  (:func:`crop_affine`): MediaPipe puts the ROI centre at the centre of crop pixel
  ``res / 2``, not at the corner between pixels;
- the detector's letterbox is centred at ``((W + 1) / 2, (H + 1) / 2)``, MediaPipe's ``(W / 2,
  H / 2)`` in OpenCV pixels (:func:`letterbox_affine`).

With these, ``affine_to_cv2`` of the hmrkit affines gives exactly MediaPipe's warp matrices.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from hmrkit.geometry.crops import affine_to_cv2, crop_matrix, invert_affine, transform_points

__all__ = [
    "DETECTOR_RES",
    "LANDMARK_RES",
    "NETWORK_PIXEL_OFFSET",
    "ROI_SCALE",
    "crop_to_image",
    "image_to_crop",
    "crop_affine",
    "detection_roi",
    "keypoint_roi",
    "label_radius_candidates",
    "letterbox_affine",
    "normalize_radians",
    "sampling_center",
    "warp_crops",
    "warp_to_image",
]

DETECTOR_RES = 224
LANDMARK_RES = 256
ROI_SCALE = 1.25
NETWORK_PIXEL_OFFSET = 0.5
"""Add to a BlazePose network's output coordinates to get hmrkit pixels of its input frame."""


def _half_pixel_shift(affine: torch.Tensor) -> torch.Tensor:
    shift = torch.zeros_like(affine)
    shift[:, :, 2] = NETWORK_PIXEL_OFFSET
    return affine + shift


def normalize_radians(angle: torch.Tensor) -> torch.Tensor:
    """Angle wrapped to ``[-pi, pi)`` (MediaPipe's ``NormalizeRadians``)."""
    return angle - 2 * math.pi * torch.floor((angle + math.pi) / (2 * math.pi))


def letterbox_affine(width, height, res: int = DETECTOR_RES) -> torch.Tensor:
    """Affine ``(B, 2, 3)`` from image pixels to the ``res x res`` letterboxed detector input.

    The image is scaled to fit (longer side = ``res``) and centred, the rest padded;
    ``width``/``height`` are numbers or ``(B,)`` tensors.
    """
    w = torch.as_tensor(width, dtype=torch.float64).reshape(-1)
    h = torch.as_tensor(height, dtype=torch.float64).reshape(-1)
    center = torch.stack([(w + 1) / 2, (h + 1) / 2], -1)
    return _half_pixel_shift(crop_matrix(center, torch.maximum(w, h), res))


def detection_roi(keypoints: torch.Tensor, scale: float = ROI_SCALE, start: int = 0,
                  end: int = 1, target_angle: float = math.pi / 2):
    """Rotated square ROI of each detection, in full-image pixels.

    ``keypoints (B, K, 2)`` full-image pixels. Returns ``center (B, 2)``, ``size (B,)`` and the
    ``rotation (B,)`` to pass to :func:`crop_affine` (``-r`` of MediaPipe's rect, see the module
    docstring).
    """
    p0, p1 = keypoints[:, start], keypoints[:, end]
    d = p1 - p0
    size = 2 * scale * torch.linalg.norm(d, dim=-1)
    r = normalize_radians(target_angle - torch.atan2(-d[:, 1], d[:, 0]))
    return p0, size, -r


KEYPOINT_RADIUS_SCALE = 0.98
"""Detector radius ``|kp1 - kp0|`` over the labels' :func:`label_radius_candidates`
``"max_keypoint"`` (median ratio on synthetic renders, ``benchmarks/blazepose_roi.py``)."""


def _hips_and_shoulders(coco17: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoints of the COCO hips (11, 12) and shoulders (5, 6), ``(B, 2)``."""
    return coco17[:, 11:13, :2].mean(1), coco17[:, 5:7, :2].mean(1)


def label_radius_candidates(coco17: torch.Tensor, smpl24: torch.Tensor
                            ) -> dict[str, torch.Tensor]:
    """Body radii ``(B,)`` from labelled 2D keypoints (full-image pixels, ``(B, 17, 3)`` and
    ``(B, 24, 3)``), measured from the hips' midpoint: ``max_keypoint`` (the farthest COCO-17 or
    SMPL-24 keypoint), ``max_coco`` (the farthest COCO-17 keypoint) and ``torso`` (hips to
    shoulders). :data:`KEYPOINT_RADIUS_SCALE` relates the chosen one to the detector's."""
    hip, shoulders = _hips_and_shoulders(coco17)
    points = torch.cat([coco17[..., :2], smpl24[..., :2]], 1)
    far = (points - hip[:, None]).norm(dim=-1)
    return {"max_keypoint": far.amax(1), "max_coco": far[:, :17].amax(1),
            "torso": (shoulders - hip).norm(dim=-1)}


def keypoint_roi(coco17: torch.Tensor, smpl24: torch.Tensor,
                 radius_scale: float = KEYPOINT_RADIUS_SCALE, scale: float = ROI_SCALE):
    """MediaPipe's rotated square ROI built from labelled keypoints instead of a detection.

    The detector's ``kp0`` is the hips' midpoint, ``kp0 -> kp1`` points from the hips towards
    the shoulders and ``|kp1 - kp0|`` is the radius of a circle around the body; here: the COCO
    hips' midpoint, the direction to the shoulders' midpoint and ``radius_scale`` x the distance
    to the farthest keypoint (:func:`label_radius_candidates`), through
    :func:`detection_roi`. ``coco17 (B, 17, 2+)``, ``smpl24 (B, 24, 2+)`` full-image pixels (all
    keypoints, visible or not). Returns ``center (B, 2)``, ``size (B,)``, ``rotation (B,)``.
    """
    hip, shoulders = _hips_and_shoulders(coco17)
    up = shoulders - hip
    up = up / up.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    radius = radius_scale * label_radius_candidates(coco17, smpl24)["max_keypoint"]
    return detection_roi(torch.stack([hip, hip + radius[:, None] * up], 1), scale=scale)


def crop_affine(center, size, rotation, res: int = LANDMARK_RES) -> torch.Tensor:
    """Full-image -> crop affine ``(B, 2, 3)`` of a rotated square ROI (MediaPipe's sampling:
    ``crop_matrix`` then half a pixel, see the module docstring)."""
    center = torch.as_tensor(center, dtype=torch.float64)
    return _half_pixel_shift(crop_matrix(center, size, res, rotation))


def sampling_center(center, size, rotation, res: int = LANDMARK_RES) -> torch.Tensor:
    """The box centre ``c'`` whose plain ``crop_matrix(c', size, res, rotation)`` is MediaPipe's
    sampling of the ROI ``(center, size, rotation)`` (:func:`crop_affine`: ``crop_matrix`` then
    half a crop pixel): ``c' = c - (size / res) R(rotation)^T (1/2, 1/2)``. Crop builders that
    take a box (:func:`hmrkit.data.images.person_crop`) cut MediaPipe's crop around it."""
    center = torch.as_tensor(center, dtype=torch.float64)
    size = torch.as_tensor(size, dtype=torch.float64).expand(center.shape[:-1])
    rot = torch.as_tensor(rotation, dtype=torch.float64).expand(center.shape[:-1])
    cos, sin = torch.cos(rot), torch.sin(rot)
    half = NETWORK_PIXEL_OFFSET * size / res
    # R^T (h, h) with R = [[cos, -sin], [sin, cos]]
    shift = torch.stack([half * (cos + sin), half * (cos - sin)], -1)
    return center - shift


def warp_crops(image: np.ndarray, affines: torch.Tensor, res: int,
               border: str = "replicate") -> np.ndarray:
    """Crops ``(B, res, res, C)`` (image dtype) of an ``(H, W, C)`` image through ``affines``
    (full -> crop, hmrkit pixels), bilinear. ``border``: ``"replicate"`` (MediaPipe's default
    for landmark crops) or ``"zero"`` (its detector letterbox)."""
    mode = {"replicate": cv2.BORDER_REPLICATE, "zero": cv2.BORDER_CONSTANT}[border]
    cv_aff = affine_to_cv2(affines.double()).cpu().numpy()
    return np.stack([
        cv2.warpAffine(image, a, (res, res), flags=cv2.INTER_LINEAR, borderMode=mode,
                       borderValue=0)
        for a in cv_aff
    ]) if len(cv_aff) else np.zeros((0, res, res, image.shape[2]), image.dtype)


def warp_to_image(crop: np.ndarray, affine: torch.Tensor, width: int, height: int
                  ) -> np.ndarray:
    """Map a crop-frame map ``(res, res)`` back into a ``(height, width)`` image (zeros
    outside the crop); ``affine (2, 3)`` or ``(1, 2, 3)`` is the full -> crop affine."""
    affine = affine.reshape(1, 2, 3).double()
    inv = affine_to_cv2(invert_affine(affine))[0].cpu().numpy()
    return cv2.warpAffine(crop, inv, (int(width), int(height)), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_to_image(points: torch.Tensor, affines: torch.Tensor) -> torch.Tensor:
    """Crop pixels ``(B, N, 2)`` -> full-image pixels through the inverse of ``affines``."""
    return transform_points(points, invert_affine(affines.to(points.dtype)))


def image_to_crop(points: torch.Tensor, affines: torch.Tensor) -> torch.Tensor:
    """Full-image pixels ``(B, N, 2)`` -> crop pixels through ``affines``."""
    return transform_points(points, affines.to(points.dtype))
