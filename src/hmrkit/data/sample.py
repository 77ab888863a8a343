"""The one ``Sample`` schema every dataset yields and every method consumes.

A sample is a ``dict[str, Tensor]`` for one person (the reader crops around the person's box),
batch-first after collation.  Units: metres and pixels; rotations as 3x3 matrices; 2D
keypoints in FULL-image pixels ``(x, y, visibility)`` so nothing is lost by cropping; 3D
quantities in the camera frame (x right, y down, z forward) unless the key says ``world``.
Absent labels are present as zeros with their ``has_*`` flag 0, so batches collate.

Augmentation keeps one "virtual" full image per sample: box jitter picks another box,
rotation is a camera roll about the principal point (3D labels turn with it), a flip mirrors
the whole image (``x -> W - x``, left/right labels swapped).  So
``Camera.from_sample(s).project(joints3d) == keypoints2d`` holds after augmentation, and
``meta/source_affine`` maps the stored image to the virtual one.  The camera keys
(``camera/*``) are read through :class:`hmrkit.geometry.cameras.Camera` and the box keys
through :class:`hmrkit.geometry.crops.CropBox`; pixel coordinates follow hmrkit's one
convention (pixel ``i`` covers ``[i, i + 1)``).  Keys starting with ``meta/`` are bookkeeping
(dataset index, gender, which body model the parameters belong to, ...); keys starting with
``backbone/`` are a frozen backbone's outputs read from a feature cache instead of ``image``
(:mod:`hmrkit.data.feature_cache`).
"""

from __future__ import annotations

from torch import Tensor

SAMPLE_KEYS: dict[str, str] = {
    # image and geometry of the crop (CropBox)
    "image": "(3, S, S) float in [0, 1]: the square crop around the person (RGB)",
    "crop_affine": "(2, 3) full-image pixels -> crop pixels (after augmentation)",
    "box_center": "(2,) box centre in full-image pixels",
    "box_size": "() side of the square box in full-image pixels",
    "box_rotation": "() in-plane angle of a rotated square box in radians (absent: 0)",
    # the whole image (camera-rotation estimators), same side S as the person crop
    "full_image": "(3, S, S) float in [0, 1]: the whole (virtual) full image, letterboxed into "
                  "a square of side max(W, H) centred on the image (zero outside it)",
    # the full-image camera (Camera)
    "camera/intrinsics": "(4,) f_x, f_y, c_x, c_y in full-image pixels; when unknown "
                         "f = sqrt(W^2 + H^2) and the image centre",
    "camera/image_size": "(2,) full image (W, H) in pixels",
    "camera/to_world": "(3, 3) rotation camera frame -> world frame (y up, ground y = 0)",
    # 2D labels (full image pixels + visibility in {0, 1})
    "keypoints2d/smpl24": "(24, 3) body joints projected, x, y, visible",
    "keypoints2d/coco17": "(17, 3) COCO keypoints, x, y, visible",
    "keypoints2d/lsp14": "(14, 3) LSP-14 evaluation joints, x, y, visible",
    # 3D labels in the camera frame
    "joints3d": "(24, 3) body joints in metres, camera frame",
    "keypoints3d/lsp14": "(14, 3) LSP-14 joints in metres, camera frame",
    "global_orient": "(3, 3) root rotation body -> camera frame",
    "body_pose": "(23, 3, 3) local joint rotations",
    "betas": "(K,) shape coefficients of the body model",
    "transl": "(3,) translation so that body-model output + transl is in the camera frame",
    # world frame (W-HMR)
    "world_global_orient": "(3, 3) root rotation body -> world frame (y up, ground y = 0)",
    # dense labels, crop resolution
    "mask": "(S, S) float {0, 1}: visible silhouette of this person",
    "iuv": "(3, S, S) float: body-part index (0 background), U, V in [0, 1]",
    "depth": "(S, S) float metres, 0 on background",
    # multi-RoI (Multi-RoI HMR), present when the dataset is asked for M > 1 RoIs
    "rois/image": "(M, 3, S, S) crops of the M RoIs; RoI 0 is ``image``",
    "rois/box_center": "(M, 2) RoI box centres, full-image pixels",
    "rois/box_size": "(M,) RoI box sides, full-image pixels",
    "rois/crop_affine": "(M, 2, 3) full-image pixels -> RoI crop pixels",
    "rois/box_rotation": "(M,) in-plane angles of rotated RoI boxes (absent: 0)",
    # availability flags, float {0, 1}
    "has_keypoints2d": "()", "has_joints3d": "()", "has_smpl": "() pose and shape labels",
    "has_world": "()", "has_mask": "()", "has_iuv": "()", "has_depth": "()",
}
"""Every key a sample may hold, with its shape and meaning."""

ROI_KEYS: tuple[str, ...] = ("rois/image", "rois/box_center", "rois/box_size", "rois/crop_affine")
"""Extra keys of samples with ``M > 1`` RoIs (Multi-RoI)."""

ROTATED_BOX_KEYS: tuple[str, ...] = ("box_rotation", "rois/box_rotation")
"""Keys present only for rotated square crops (absent: axis-aligned boxes)."""


def check_sample(sample: dict[str, Tensor], source: str = "sample") -> None:
    """Raise ``ValueError`` naming ``source`` for unknown keys or non-tensor values."""
    for key, value in sample.items():
        if key not in SAMPLE_KEYS and not key.startswith(("meta/", "backbone/")):
            raise ValueError(f"{source}: unknown sample key '{key}' (see hmrkit.data.sample)")
        if not isinstance(value, Tensor):
            raise ValueError(f"{source}: '{key}' is a {type(value).__name__}, not a Tensor")
