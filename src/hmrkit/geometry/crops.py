"""Square crops: affine maps between full-image and crop pixels, boxes from keypoints.

A box is ``(center (B, 2), size (B,))`` in full-image pixels; a crop is ``res x res`` pixels.
Pixel coordinates are continuous (pixel ``i`` covers ``[i, i + 1)``): the box centre maps to
``(res / 2, res / 2)`` and the box edges to ``0`` and ``res``. Crop pixels map to normalised
crop coordinates by ``n = 2 p / res - 1`` (SPIN), the frame of the weak-perspective camera.

Full -> crop (:func:`crop_matrix`)::

    p = R(theta) (res / size) (x - center) + res / 2,   then, if flipped, p_x <- res - p_x

with ``R(theta) = [[cos, -sin], [sin, cos]]`` acting on ``(x right, y down)``: the crop content
turns clockwise on screen by ``theta``, which matches rotating the body by
``hmrkit.geometry.rotations.rot_z(theta)`` in the camera frame. The flip is applied after
cropping (mirror of the crop image).
"""

from __future__ import annotations

import torch

from .cameras import _check, per_sample

__all__ = [
    "crop_matrix",
    "invert_affine",
    "transform_points",
    "full_to_crop_points",
    "crop_to_full_points",
    "pixels_to_normalized",
    "normalized_to_pixels",
    "affine_to_cv2",
    "box_from_keypoints",
    "spin_scale_to_size",
    "size_to_spin_scale",
    "SPIN_SCALE_UNIT",
]

SPIN_SCALE_UNIT = 200.0
"""SPIN-lineage npz files store ``scale = box side / 200`` pixels."""


def crop_matrix(center, size, res: int, rotation=None, flip=None) -> torch.Tensor:
    """Affine ``(B, 2, 3)`` from full-image pixels to crop pixels (see module doc).

    ``rotation``: in-plane angle ``(B,)`` in radians (or a float); ``flip``: bool ``(B,)`` (or a
    bool), horizontal mirror applied after cropping.
    """
    fn = "crop_matrix"
    center = torch.as_tensor(center)
    if not center.is_floating_point():
        center = center.to(torch.get_default_dtype())
    _check(center, (None, 2), fn, "center", "(B, 2)")
    batch = center.shape[0]
    k = res / per_sample(fn, size, batch, center, "size")
    if rotation is None:
        cos, sin = torch.ones_like(k), torch.zeros_like(k)
    else:
        theta = per_sample(fn, rotation, batch, center, "rotation")
        cos, sin = torch.cos(theta), torch.sin(theta)
    lin = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    lin = lin * k[:, None, None]
    offset = res / 2 - (lin @ center[:, :, None])[..., 0]
    affine = torch.cat([lin, offset[:, :, None]], dim=-1)
    if flip is not None:
        flip = torch.as_tensor(flip, device=center.device).to(torch.bool)
        flip = flip.reshape(-1).expand(batch) if flip.numel() == 1 else flip
        if flip.shape != (batch,):
            raise ValueError(
                f"{fn}: flip has shape {tuple(flip.shape)}, expected (B,) with B={batch}"
            )
        mirrored = torch.cat([-affine[:, :1], affine[:, 1:]], dim=1)
        mirrored[:, 0, 2] = mirrored[:, 0, 2] + res
        affine = torch.where(flip[:, None, None], mirrored, affine)
    return affine


def invert_affine(affine: torch.Tensor) -> torch.Tensor:
    """Inverse of ``(B, 2, 3)`` affine maps ``x -> A x + t``: ``x -> A^-1 x - A^-1 t``."""
    _check(affine, (None, 2, 3), "invert_affine", "affine", "(B, 2, 3)")
    inv = torch.linalg.inv(affine[:, :, :2])
    return torch.cat([inv, -(inv @ affine[:, :, 2:])], dim=-1)


def transform_points(points: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """Apply ``(B, 2, 3)`` affine maps to ``(B, N, 2)`` points."""
    fn = "transform_points"
    _check(points, (None, None, 2), fn, "points", "(B, N, 2)")
    _check(affine, (points.shape[0], 2, 3), fn, "affine", "(B, 2, 3)", ("points", points))
    return points @ affine[:, :, :2].transpose(-1, -2) + affine[:, None, :, 2]


def full_to_crop_points(points, center, size, res: int, rotation=None, flip=None) -> torch.Tensor:
    """Full-image pixels ``(B, N, 2)`` -> crop pixels through :func:`crop_matrix`."""
    center = torch.as_tensor(center, dtype=points.dtype, device=points.device)
    return transform_points(points, crop_matrix(center, size, res, rotation, flip))


def crop_to_full_points(points, center, size, res: int, rotation=None, flip=None) -> torch.Tensor:
    """Crop pixels ``(B, N, 2)`` -> full-image pixels (inverse of :func:`full_to_crop_points`)."""
    center = torch.as_tensor(center, dtype=points.dtype, device=points.device)
    affine = crop_matrix(center, size, res, rotation, flip)
    return transform_points(points, invert_affine(affine))


def pixels_to_normalized(points: torch.Tensor, res) -> torch.Tensor:
    """Crop pixels -> normalised crop coordinates ``2 p / res - 1`` (``[0, res] -> [-1, 1]``)."""
    return 2 * points / res - 1


def normalized_to_pixels(points: torch.Tensor, res) -> torch.Tensor:
    """Normalised crop coordinates -> crop pixels ``(n + 1) res / 2``."""
    return (points + 1) * res / 2


def affine_to_cv2(affine: torch.Tensor) -> torch.Tensor:
    """Re-express an affine between continuous pixel frames for ``cv2.warpAffine``.

    OpenCV puts pixel ``i``'s centre at ``i`` (hmrkit at ``i + 0.5``), so
    ``A_cv(x) = A(x + 0.5) - 0.5``.
    """
    _check(affine, (None, 2, 3), "affine_to_cv2", "affine", "(B, 2, 3)")
    shift = affine[:, :, :2].sum(-1) * 0.5 - 0.5
    return torch.cat([affine[:, :, :2], affine[:, :, 2:] + shift[:, :, None]], dim=-1)


def box_from_keypoints(keypoints: torch.Tensor, visible=None, scale: float = 1.2):
    """Square box around the visible keypoints, as in the SPIN 3DPW protocol.

    ``keypoints (..., N, 2)`` pixels, ``visible (..., N)`` bool/float (None: all). Returns
    ``center (..., 2)`` = middle of the tight box and ``size (...)`` = ``scale`` times its longer
    side. Samples without a visible keypoint get NaN.
    """
    fn = "box_from_keypoints"
    if keypoints.dim() < 2 or keypoints.shape[-1] != 2:
        raise ValueError(
            f"{fn}: keypoints has shape {tuple(keypoints.shape)}, expected (..., N, 2)"
        )
    if visible is None:
        vis = torch.ones(keypoints.shape[:-1], dtype=torch.bool, device=keypoints.device)
    else:
        vis = torch.as_tensor(visible, device=keypoints.device)
        if vis.shape != keypoints.shape[:-1]:
            raise ValueError(
                f"{fn}: visible has shape {tuple(vis.shape)}, expected "
                f"{tuple(keypoints.shape[:-1])} matching keypoints {tuple(keypoints.shape)}"
            )
        vis = vis > 0
    inf = torch.full_like(keypoints, float("inf"))
    lo = torch.where(vis[..., None], keypoints, inf).amin(dim=-2)
    hi = torch.where(vis[..., None], keypoints, -inf).amax(dim=-2)
    center = (lo + hi) / 2
    size = scale * (hi - lo).amax(dim=-1)
    none = ~vis.any(dim=-1)
    nan = torch.full_like(size, float("nan"))
    return torch.where(none[..., None], nan[..., None], center), torch.where(none, nan, size)


def spin_scale_to_size(scale):
    """SPIN ``scale`` -> box side in pixels (``scale * 200``)."""
    return scale * SPIN_SCALE_UNIT


def size_to_spin_scale(size):
    """Box side in pixels -> SPIN ``scale`` (``size / 200``)."""
    return size / SPIN_SCALE_UNIT
