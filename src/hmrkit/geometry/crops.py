"""Square crops: the :class:`CropBox` type, affine maps between full-image and crop pixels,
boxes from keypoints.

A box is ``(center (B, 2), size (B,))`` in full-image pixels, optionally turned by an in-plane
angle (BlazePose's rotated squares); a crop is ``res x res`` pixels. Pixel coordinates follow
hmrkit's one convention (:mod:`hmrkit.geometry.cameras`: pixel ``i`` covers ``[i, i + 1)``):
the box centre maps to
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

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .cameras import Camera, _check, crop_to_full_camera, full_to_crop_camera, per_sample

__all__ = [
    "CropBox",
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


def affine_to_cv2(affine):
    """Re-express an affine between continuous pixel frames for ``cv2.warpAffine``.

    OpenCV puts pixel ``i``'s centre at ``i`` (hmrkit at ``i + 0.5``), so
    ``A_cv(x) = A(x + 0.5) - 0.5``. ``affine`` is ``(..., 2, 3)``, a tensor or a numpy array (the
    result is of the same kind; numpy in float64).
    """
    if isinstance(affine, np.ndarray):
        if affine.shape[-2:] != (2, 3):
            raise ValueError(f"affine_to_cv2: affine has shape {affine.shape}, expected (B, 2, 3)")
        out = affine.astype(np.float64, copy=True)
        out[..., 2] += affine[..., :2].sum(-1) * 0.5 - 0.5
        return out
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


@dataclass(frozen=True)
class CropBox:
    """Square crops of ``res x res`` pixels around boxes of the full image, any leading shape.

    ``(..., )`` is ``(B,)`` for one box per person or ``(B, M)`` for Multi-RoI's RoIs. The affine
    full -> crop pixels is :func:`crop_matrix` of ``(center, size, res, rotation)`` unless given
    (a Sample's ``crop_affine``, which may hold a flip). A rotated box (``rotation`` ``theta``)
    crops the image turned by ``theta`` about the box centre, which is the same as rolling the
    camera by ``rot_z(theta)`` about its axis and cropping that image axis-aligned around
    :meth:`rolled_center`: crop cameras of rotated boxes live in that rolled camera frame.
    """

    center: Tensor
    """(..., 2) box centres, full-image pixels."""
    size: Tensor
    """(...) box sides, full-image pixels."""
    res: int
    """Crop side in pixels."""
    rotation: Tensor | None = None
    """(...) in-plane angle in radians (None: axis-aligned)."""
    affine: Tensor | None = None
    """(..., 2, 3) full-image -> crop pixels, when given explicitly."""

    def __post_init__(self):
        fn = "CropBox"
        if self.center.dim() < 1 or self.center.shape[-1] != 2:
            raise ValueError(f"{fn}: center has shape {tuple(self.center.shape)}, expected "
                             "(..., 2)")
        lead = tuple(self.center.shape[:-1])
        if tuple(self.size.shape) != lead:
            raise ValueError(f"{fn}: size has shape {tuple(self.size.shape)}, expected {lead} "
                             f"matching center {tuple(self.center.shape)}")
        if self.rotation is not None and tuple(self.rotation.shape) != lead:
            raise ValueError(f"{fn}: rotation has shape {tuple(self.rotation.shape)}, "
                             f"expected {lead}")
        if self.affine is not None and tuple(self.affine.shape) != (*lead, 2, 3):
            raise ValueError(f"{fn}: affine has shape {tuple(self.affine.shape)}, expected "
                             f"{(*lead, 2, 3)}")
        if int(self.res) < 1:
            raise ValueError(f"{fn}: res must be a positive crop side, got {self.res!r}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_sample(cls, batch, res: int) -> CropBox:
        """The person boxes of a batch of Samples (``box_center``, ``box_size``,
        ``crop_affine``, optional ``box_rotation``), for crops of side ``res``."""
        return cls(batch["box_center"], batch["box_size"], int(res), batch.get("box_rotation"),
                   batch.get("crop_affine"))

    @classmethod
    def rois_from_sample(cls, batch, res: int, rois: int) -> CropBox:
        """The first ``rois`` RoIs of every person, ``(B, M)`` boxes (``rois/*`` keys; with
        ``rois == 1`` a batch without them gives its person box)."""
        if "rois/box_center" not in batch:
            if rois != 1:
                raise KeyError("rois/box_center")
            box = cls.from_sample(batch, res)
            return cls(box.center[:, None], box.size[:, None], box.res,
                       None if box.rotation is None else box.rotation[:, None],
                       None if box.affine is None else box.affine[:, None])
        have = batch["rois/box_center"].shape[1]
        if have < rois:
            raise ValueError(f"the batch holds {have} RoIs per person, {rois} are needed")
        rot = batch.get("rois/box_rotation")
        return cls(batch["rois/box_center"][:, :rois], batch["rois/box_size"][:, :rois],
                   int(res), None if rot is None else rot[:, :rois],
                   batch["rois/crop_affine"][:, :rois] if "rois/crop_affine" in batch else None)

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, ...]:
        """Leading shape ``(...)``."""
        return tuple(self.size.shape)

    def flatten(self) -> CropBox:
        """The boxes as one ``(N,)`` batch."""
        rot, aff = self.rotation, self.affine
        return CropBox(self.center.reshape(-1, 2), self.size.reshape(-1), self.res,
                       None if rot is None else rot.reshape(-1),
                       None if aff is None else aff.reshape(-1, 2, 3))

    def __getitem__(self, index) -> CropBox:
        rot, aff = self.rotation, self.affine
        return CropBox(self.center[index], self.size[index], self.res,
                       None if rot is None else rot[index], None if aff is None else aff[index])

    # ------------------------------------------------------------------ pixels
    @property
    def matrix(self) -> Tensor:
        """(..., 2, 3) full-image -> crop pixels."""
        if self.affine is not None:
            return self.affine
        flat = self.flatten()
        m = crop_matrix(flat.center, flat.size, self.res, flat.rotation)
        return m.reshape(*self.shape, 2, 3)

    def _apply(self, points: Tensor, affine: Tensor) -> Tensor:
        xy = points[..., :2]
        out = transform_points(xy.reshape(-1, *xy.shape[-2:]), affine.reshape(-1, 2, 3).to(xy))
        return torch.cat([out.reshape(xy.shape), points[..., 2:]], dim=-1)

    def to_crop(self, points: Tensor) -> Tensor:
        """Full-image pixels ``(..., N, 2 or 3)`` -> crop pixels (a third column is kept)."""
        return self._apply(points, self.matrix)

    def to_full(self, points: Tensor) -> Tensor:
        """Crop pixels ``(..., N, 2 or 3)`` -> full-image pixels (a third column is kept)."""
        inv = invert_affine(self.matrix.reshape(-1, 2, 3)).reshape(*self.shape, 2, 3)
        return self._apply(points, inv)

    def normalize(self, points: Tensor) -> Tensor:
        """Full-image pixels ``(..., N, 2 or 3)`` -> normalised crop coordinates ``[-1, 1]``
        (SPIN's frame of the weak-perspective camera; a third column is kept)."""
        crop = self.to_crop(points)
        xy = pixels_to_normalized(crop[..., :2], self.res)
        return torch.cat([xy, crop[..., 2:]], dim=-1)

    # ------------------------------------------------------------------ cameras
    def rolled_center(self, camera: Camera) -> Tensor:
        """(..., 2) the box centre in the image of the camera rolled by the box rotation about
        its principal point ``p``: ``p + R(theta) (c - p)`` (the centre itself when not
        rotated)."""
        if self.rotation is None:
            return self.center
        pp = camera.principal_point.to(self.center)
        pp = pp.reshape(pp.shape[0], *([1] * (len(self.shape) - 1)), 2)
        cos, sin = torch.cos(self.rotation), torch.sin(self.rotation)
        d = self.center - pp
        turned = torch.stack([cos * d[..., 0] - sin * d[..., 1], sin * d[..., 0] + cos * d[..., 1]],
                             dim=-1)
        return pp + turned

    def _per_box_camera(self, camera: Camera) -> Camera:
        n = int(torch.tensor(self.shape).prod()) // max(len(camera), 1)
        return camera if n == 1 else camera.repeat_interleave(n)

    def to_full_translation(self, cam_crop: Tensor, camera: Camera) -> Tensor:
        """Crop cameras ``(..., 3)`` -> full-image translations ``(..., 3)`` (CLIFF; Multi-RoI
        eq. 12) with ``camera``'s focal and principal point (:func:`crop_to_full_camera`). For
        rotated boxes the translation is in the rolled camera frame (class doc)."""
        flat, cam = self.flatten(), self._per_box_camera(camera)
        center = self.rolled_center(camera).reshape(-1, 2)
        out = crop_to_full_camera(cam_crop.reshape(-1, 3), center.to(cam_crop), flat.size,
                                  cam.image_size, cam.focal, principal_point=cam.principal_point)
        return out.reshape(cam_crop.shape)

    def to_crop_camera(self, transl: Tensor, camera: Camera) -> Tensor:
        """Inverse of :meth:`to_full_translation`: full translations ``(..., 3)`` -> crop
        cameras ``(s, t_x, t_y)``."""
        flat, cam = self.flatten(), self._per_box_camera(camera)
        center = self.rolled_center(camera).reshape(-1, 2)
        out = full_to_crop_camera(transl.reshape(-1, 3), center.to(transl), flat.size,
                                  cam.image_size, cam.focal, principal_point=cam.principal_point)
        return out.reshape(transl.shape)

    def roll_matrix(self) -> Tensor:
        """(..., 3, 3) ``rot_z(theta)``: camera frame -> the rolled frame of rotated boxes
        (identity when not rotated)."""
        rot = self.rotation if self.rotation is not None else torch.zeros_like(self.size)
        cos, sin = torch.cos(rot), torch.sin(rot)
        zero, one = torch.zeros_like(rot), torch.ones_like(rot)
        return torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], -1).reshape(
            *self.shape, 3, 3)
