"""The 33 BlazePose landmarks: names, skeleton edges, mirror permutation, COCO-17 subset, the
limb joints BlazePose shares with COCO-17 and SMPL-24."""

from __future__ import annotations

from hmrkit.body.keypoints import (  # the names live with the other keypoint sets
    BLAZEPOSE33_EDGES,
    BLAZEPOSE33_NAMES,
    COCO17_NAMES,
    SMPL24_NAMES,
    flip_permutation,
)

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

NUM_LANDMARKS = 33
NUM_NETWORK_LANDMARKS = 39
"""The network predicts 33 body landmarks and 6 auxiliary points (33, 34: MediaPipe's
tracking ROI points)."""

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
