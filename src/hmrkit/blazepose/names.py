"""The 33 BlazePose landmarks: names, skeleton edges, mirror permutation, COCO-17 subset, the
limb joints BlazePose shares with COCO-17 and SMPL-24."""

from __future__ import annotations

from hmrkit.body.keypoints import COCO17_NAMES, SMPL24_NAMES, flip_permutation

__all__ = [
    "BLAZEPOSE33_EDGES",
    "BLAZEPOSE33_FLIP",
    "BLAZEPOSE33_NAMES",
    "COCO17_FROM_BLAZEPOSE33",
    "LIMB_INDICES",
    "LIMB_NAMES",
    "NUM_LANDMARKS",
    "NUM_NETWORK_LANDMARKS",
]

BLAZEPOSE33_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "left_mouth", "right_mouth", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)
"""MediaPipe's order (``mouth_left`` is called ``left_mouth`` here so that mirroring is by
name). Left and right are the person's own."""

NUM_LANDMARKS = 33
NUM_NETWORK_LANDMARKS = 39
"""The network predicts 33 body landmarks and 6 auxiliary points (33, 34: MediaPipe's
tracking ROI points)."""

BLAZEPOSE33_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12),
    (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18),
    (16, 20), (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27),
    (26, 28), (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)
"""MediaPipe's ``POSE_CONNECTIONS``."""

BLAZEPOSE33_FLIP = flip_permutation(BLAZEPOSE33_NAMES)

COCO17_FROM_BLAZEPOSE33 = tuple(BLAZEPOSE33_NAMES.index(n) for n in COCO17_NAMES)
"""BlazePose index of each COCO-17 keypoint, in COCO order."""

LIMB_NAMES = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
              "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
              "right_ankle")
"""The 12 limb joints that BlazePose, COCO-17 and SMPL-24 all name (for comparing them)."""

LIMB_INDICES = {name: tuple(names.index(n) for n in LIMB_NAMES) for name, names in (
    ("blazepose33", BLAZEPOSE33_NAMES), ("coco17", COCO17_NAMES), ("smpl24", SMPL24_NAMES))}
"""Index of each of :data:`LIMB_NAMES` in each keypoint set, by set name."""
