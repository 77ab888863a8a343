"""The 33 BlazePose landmarks: names, skeleton edges, mirror permutation, COCO-17 subset."""

from __future__ import annotations

from hmrkit.body.keypoints import (  # the names live with the other keypoint sets
    BLAZEPOSE33_EDGES,
    BLAZEPOSE33_NAMES,
    COCO17_NAMES,
    flip_permutation,
)

__all__ = [
    "BLAZEPOSE33_EDGES",
    "BLAZEPOSE33_FLIP",
    "BLAZEPOSE33_NAMES",
    "COCO17_FROM_BLAZEPOSE33",
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
