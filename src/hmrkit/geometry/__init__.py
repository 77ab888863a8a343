"""Geometry: rotations (over roma), cameras and crop <-> full conversions, crops, Procrustes.

Conventions: metres and pixels, batch-first tensors, rotations as 3x3 matrices (6D only at
network outputs), camera frame x right / y down / z forward (OpenCV), and ONE pixel convention
(pixel ``i`` covers ``[i, i + 1)``, its centre at ``i + 0.5``; :mod:`.cameras`). The types:
:class:`Camera` (batched intrinsics, image size, rotation to the world) and :class:`CropBox`
(square, optionally rotated, person crops).
"""

from .cameras import (
    Camera,
    box_height,
    cliff_bbox_info,
    crop_to_full_camera,
    default_focal,
    focal_35mm,
    focal_from_35mm,
    focal_from_depth,
    full_to_crop_camera,
    intrinsics_matrix,
    project_perspective,
    project_weak_perspective,
    whmr_full_translation,
    whmr_global_info,
)
from .crops import (
    SPIN_SCALE_UNIT,
    CropBox,
    affine_to_cv2,
    box_from_keypoints,
    crop_matrix,
    crop_to_full_points,
    full_to_crop_points,
    invert_affine,
    normalized_to_pixels,
    pixels_to_normalized,
    size_to_spin_scale,
    spin_scale_to_size,
    transform_points,
)
from .procrustes import similarity_procrustes
from .rotations import (
    axis_angle_to_rotmat,
    flip_rotmat_lr,
    geodesic_angle,
    rot_x,
    rot_y,
    rot_z,
    rotmat_to_axis_angle,
    rotmat_to_sixd,
    sixd_to_rotmat,
    to_rotmat,
)

__all__ = [
    "SPIN_SCALE_UNIT",
    "Camera",
    "CropBox",
    "affine_to_cv2",
    "axis_angle_to_rotmat",
    "box_from_keypoints",
    "box_height",
    "cliff_bbox_info",
    "crop_matrix",
    "crop_to_full_camera",
    "crop_to_full_points",
    "default_focal",
    "flip_rotmat_lr",
    "focal_35mm",
    "focal_from_35mm",
    "focal_from_depth",
    "full_to_crop_camera",
    "full_to_crop_points",
    "geodesic_angle",
    "intrinsics_matrix",
    "invert_affine",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "project_perspective",
    "project_weak_perspective",
    "rot_x",
    "rot_y",
    "rot_z",
    "rotmat_to_axis_angle",
    "rotmat_to_sixd",
    "similarity_procrustes",
    "sixd_to_rotmat",
    "size_to_spin_scale",
    "spin_scale_to_size",
    "to_rotmat",
    "transform_points",
    "whmr_full_translation",
    "whmr_global_info",
]
