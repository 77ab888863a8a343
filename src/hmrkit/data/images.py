"""Images: reading files and the ONE person-crop builder of the readers and ``hmrkit predict``.

:func:`person_crop` cuts the ``res x res`` crops of one person out of a full image: the
person's square box and, for Multi-RoI, the RoIs around it (:func:`hmrkit.data.rois
.multi_roi_boxes`, RoI 0 the box itself), optionally turned by an in-plane angle (BlazePose's
rotated squares), optionally through a view change of the stored image (augmentation's
``meta/source_affine``). It keeps every affine, so everything maps back to the full image, and
returns the crops with their Sample keys (``image``, ``crop_affine``, ``box_*``, ``rois/*``).
The synthetic reader (:mod:`hmrkit.data.dataset`), the public readers (:mod:`hmrkit.data.public`)
and ``hmrkit predict`` all crop through it.

Pixel coordinates follow hmrkit's one convention (pixel ``i`` covers ``[i, i + 1)``);
:func:`warp` is the one place that calls OpenCV's ``warpAffine`` (which puts pixel centres at
integers, :func:`hmrkit.geometry.crops.affine_to_cv2`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from hmrkit.data.rois import multi_roi_boxes
from hmrkit.geometry.crops import CropBox, affine_to_cv2, crop_matrix

__all__ = [
    "AREA_DOWNSCALE_BELOW",
    "CROP_STYLES",
    "ImageReadError",
    "PersonCrop",
    "as_bgr_uint",
    "person_crop",
    "read_image",
    "warp",
]

AREA_DOWNSCALE_BELOW = 0.5
"""Crops that shrink the image below this scale are area-averaged first (no aliasing)."""

CROP_STYLES = ("box", "blazepose")
"""How a method wants its people cut (:attr:`hmrkit.models.methods.base.Method.crop_style`):
``"box"``, the upright square around the person's box; ``"blazepose"``, MediaPipe's rotated
square (centred on the hips, turned so that the hips -> shoulders direction points up, 2.5 body
radii wide, sampled as MediaPipe samples it, the border replicated): from the labelled keypoints
(:func:`hmrkit.blazepose.roi.keypoint_roi`) or from the BlazePose detector
(:func:`hmrkit.blazepose.roi.detection_roi`)."""

_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
_BORDERS = {"zero": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


class ImageReadError(OSError):
    """An image file that is missing or cannot be decoded; ``path`` names it."""

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image '{self.path}': {reason}")


def read_image(path) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` image of ``path`` (grey and alpha images are converted).

    Raises :class:`ImageReadError` naming the file when it is missing or not decodable.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file not found")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(path, f"{type(err).__name__}: {err}") from err
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageReadError(path, "not a decodable image (corrupt or unsupported format)")
    return np.ascontiguousarray(image[..., ::-1])


def as_bgr_uint(image: np.ndarray) -> np.ndarray:
    """A decoded image in OpenCV channel order as ``(H, W, 3)`` B, G, R, uint8 or uint16."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"unsupported image dtype {image.dtype}")
    return image


def warp(src: np.ndarray, affine: np.ndarray, res: int, interpolation: str = "linear",
         border: str = "zero"):
    """``res x res`` crop of ``src`` through ``affine`` ``(2, 3)`` (source -> crop pixels, hmrkit
    convention). ``interpolation``: ``"linear"`` or ``"nearest"`` (labels: masks, part indices,
    depth); ``border``: ``"zero"`` outside the source, or ``"replicate"`` its edge pixels
    (MediaPipe's landmark crops)."""
    cv = affine_to_cv2(np.asarray(affine, np.float64))
    return cv2.warpAffine(src, cv, (res, res), flags=_INTERPOLATION[interpolation],
                          borderMode=_BORDERS[border], borderValue=0)


def _warp_area(image: np.ndarray, affine: np.ndarray, res: int, border: str = "zero"
               ) -> np.ndarray:
    """:func:`warp`, first shrinking the image by area averaging when the crop shrinks it below
    :data:`AREA_DOWNSCALE_BELOW` (the affine is re-expressed for the shrunk image)."""
    h, w = image.shape[:2]
    scale = math.sqrt(abs(np.linalg.det(affine[:, :2])))
    if scale < AREA_DOWNSCALE_BELOW:
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        image = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        affine = affine @ np.diag([w / sw, h / sh, 1.0])  # shrunk pixels -> full -> crop
    return warp(image, affine, res, border=border)


@dataclass
class PersonCrop:
    """The crops of one person and where they come from (:func:`person_crop`)."""

    images: np.ndarray | None
    """(M, 3, S, S) float32 RGB in [0, 1] (the first ``count`` RoIs), or None when not cut."""
    box: CropBox
    """The M boxes in the (virtual) full image, RoI 0 the person box; ``box.matrix`` maps that
    image's pixels to each crop."""
    from_stored: np.ndarray
    """(M, 2, 3) float64: stored image pixels -> crop pixels (``crop_affine @ source``); warp
    the person's dense labels with ``from_stored[0]``."""

    def sample_keys(self, rois: bool) -> dict[str, np.ndarray]:
        """Sample keys: ``image``, ``crop_affine``, ``box_center``, ``box_size`` (and
        ``box_rotation`` for rotated boxes); with ``rois`` also ``rois/*`` of every RoI."""
        box = self.box
        affine = box.matrix.numpy()
        out: dict[str, np.ndarray] = {
            "crop_affine": affine[0], "box_center": box.center[0].numpy(),
            "box_size": box.size[0].numpy(),
        }
        if box.rotation is not None:
            out["box_rotation"] = box.rotation[0].numpy()
        if self.images is not None:
            out["image"] = self.images[0].copy() if len(self.images) > 1 else self.images[0]
        if rois:
            out.update({"rois/box_center": box.center.numpy(), "rois/box_size": box.size.numpy(),
                        "rois/crop_affine": affine})
            if box.rotation is not None:
                out["rois/box_rotation"] = box.rotation.numpy()
            if self.images is not None:
                out["rois/image"] = self.images
        return out


def person_crop(
    image: np.ndarray | None,
    center,
    size: float,
    res: int,
    *,
    rois: int = 1,
    rotation: float | None = None,
    source: np.ndarray | None = None,
    count: int | None = None,
    bgr: bool = False,
    gain=None,
    occluders: np.ndarray | None = None,
    area_downscale: bool = True,
    border: str = "zero",
) -> PersonCrop:
    """The ``res x res`` crops of one person around the square box ``(center, size)``.

    Args:
        image: the stored full image, ``(H, W, 3)`` uint8 / uint16 (RGB, or B, G, R with
            ``bgr``), or None to compute the geometry only.
        center, size: the box in the (virtual) full image, pixels.
        res: crop side in pixels.
        rois: number of RoIs ``M`` (:func:`hmrkit.data.rois.multi_roi_boxes`; 1: the box).
        rotation: in-plane angle of the box in radians (BlazePose's rotated squares; the crop
            content turns by it, :func:`hmrkit.geometry.crops.crop_matrix`); None: upright.
        source: ``(2, 3)`` stored image pixels -> the full image of ``center`` (augmentation's
            view change); None: the identity.
        count: how many of the RoIs to cut (default all ``M``; 1 when only ``image`` is needed).
        bgr: ``image`` is in OpenCV's B, G, R order (crops are always RGB).
        gain: per-channel RGB gain (augmentation's colour gain); results are clipped to 1.
        occluders: ``(res, res, 4)`` RGBA float32 layer over RoI 0's crop
            (:func:`hmrkit.data.augment.occluder_layer`), carried to every RoI.
        area_downscale: area-average before strong downscales (:data:`AREA_DOWNSCALE_BELOW`).
            The synthetic reader keeps it off: its trained models and figures were made on
            plain bilinear crops.
        border: ``"zero"`` outside the image, or ``"replicate"`` its edge (MediaPipe's crops).
    """
    c = np.asarray(center, dtype=np.float64).reshape(2)
    centers, sizes = multi_roi_boxes(c[None], np.array([float(size)]), m=rois)
    centers_t, sizes_t = torch.from_numpy(centers[0]), torch.from_numpy(sizes[0])
    angle = None if rotation is None else torch.full((rois,), float(rotation), dtype=torch.float64)
    crop = crop_matrix(centers_t, sizes_t, int(res), angle).numpy()
    box = CropBox(centers_t, sizes_t, int(res), angle, torch.from_numpy(crop))
    from_stored = crop if source is None else crop @ np.vstack([source, [0.0, 0.0, 1.0]])
    if image is None:
        return PersonCrop(None, box, from_stored)
    count = rois if count is None else int(count)
    images = np.empty((count, 3, res, res), np.float32)
    g = np.ones(3, np.float32) if gain is None else np.asarray(gain, np.float32)
    scale = g / np.iinfo(image.dtype).max
    clip = gain is not None and max(gain) > 1
    for m in range(count):
        if area_downscale:
            cut = _warp_area(image, from_stored[m], res, border)
        else:
            cut = warp(image, from_stored[m], res, border=border)
        chw = cut.transpose(2, 0, 1)
        # HWC uint -> CHW RGB float with the colour gain, in one pass
        np.multiply(chw[::-1] if bgr else chw, scale[:, None, None], out=images[m])
        if clip:
            np.clip(images[m], 0.0, 1.0, out=images[m])
        if occluders is not None:
            layer = occluders
            if m > 0:  # the layer is drawn over RoI 0: move it to RoI m
                to_m = crop[m] @ np.linalg.inv(np.vstack([crop[0], [0.0, 0.0, 1.0]]))
                layer = warp(occluders, to_m, res, "nearest")
            alpha = layer[..., 3]
            images[m] *= 1.0 - alpha
            images[m] += layer[..., :3].transpose(2, 0, 1) * alpha
    return PersonCrop(images, box, from_stored)
