"""Named keypoint sets, their left-right flip permutations and skeletons, in one place.

A body model computes a keypoint set with a linear map over ``[joints; vertices]``
(:attr:`hmrkit.body.model.BodyModelData.keypoint_regressors`); this module names the sets,
orders their keypoints and builds such maps.

- ``smpl24``: the 24 joints of SMPL's kinematic tree (also Anny-24's own joints);
- ``coco17``: the COCO keypoints;
- ``lsp14``: the 14 evaluation joints in the LSP order of the literature (SPIN's
  ``H36M_TO_J14`` order: ankles, knees, hips, wrists, elbows, shoulders, neck, head top);
- ``blazepose33``: the 33 landmarks of MediaPipe's BlazePose (hmrkit's real-image front end,
  :mod:`hmrkit.blazepose`), regressed from the mesh (Anny-24: ``anny24_blazepose33.npz``, fitted
  to BlazePose's own detections, see ``docs/blazepose.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMPL24_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL24_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO17_EDGES = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

LSP14_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist", "neck", "head_top",
)
LSP14_EDGES = (
    (0, 1), (1, 2), (3, 4), (4, 5), (2, 3), (6, 7), (7, 8), (9, 10), (10, 11), (8, 12),
    (9, 12), (12, 13), (2, 8), (3, 9),
)
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
BLAZEPOSE33_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12),
    (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18),
    (16, 20), (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27),
    (26, 28), (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)
"""MediaPipe's ``POSE_CONNECTIONS``."""

LSP14_FROM_SMPL24 = {
    "right_ankle": 8, "right_knee": 5, "right_hip": 2, "left_hip": 1, "left_knee": 4,
    "left_ankle": 7, "right_wrist": 21, "right_elbow": 19, "right_shoulder": 17,
    "left_shoulder": 16, "left_elbow": 18, "left_wrist": 20, "neck": 12,
}
"""The 13 LSP joints that are SMPL-24 joints; ``head_top`` comes from a vertex."""


def flip_permutation(names: tuple[str, ...]) -> tuple[int, ...]:
    """Index of each keypoint's mirror partner (``left_*`` <-> ``right_*``, others fixed)."""
    index = {n: i for i, n in enumerate(names)}

    def partner(n: str) -> str:
        if n.startswith("left_"):
            return "right_" + n[5:]
        if n.startswith("right_"):
            return "left_" + n[6:]
        return n

    return tuple(index[partner(n)] for n in names)


@dataclass(frozen=True)
class KeypointSet:
    """A named, ordered keypoint set with its mirror permutation and drawing edges."""

    name: str
    names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        return flip_permutation(self.names)

    def __len__(self) -> int:
        return len(self.names)


KEYPOINT_SETS: dict[str, KeypointSet] = {
    "smpl24": KeypointSet(
        "smpl24", SMPL24_NAMES, tuple((k, p) for k, p in enumerate(SMPL24_PARENTS) if p >= 0)
    ),
    "coco17": KeypointSet("coco17", COCO17_NAMES, COCO17_EDGES),
    "lsp14": KeypointSet("lsp14", LSP14_NAMES, LSP14_EDGES),
    "blazepose33": KeypointSet("blazepose33", BLAZEPOSE33_NAMES, BLAZEPOSE33_EDGES),
}


def get_keypoint_set(name: str) -> KeypointSet:
    """The keypoint set called ``name``; ``"joints"`` is an alias of ``"smpl24"``."""
    name = "smpl24" if name == "joints" else name
    if name not in KEYPOINT_SETS:
        raise KeyError(f"unknown keypoint set '{name}'; known sets: {sorted(KEYPOINT_SETS)}")
    return KEYPOINT_SETS[name]


def regressor(
    sources: list[tuple[str, int | np.ndarray]], num_joints: int, num_vertices: int
) -> np.ndarray:
    """Build a (K, J + V) map over ``[joints; vertices]`` from per-keypoint sources.

    Each source is ``("joint", j)``, ``("vertex", v)`` or ``("vertices", w)`` with ``w`` a
    (V,) weight vector (e.g. a row of a vertex regressor).
    """
    out = np.zeros((len(sources), num_joints + num_vertices))
    for k, (kind, value) in enumerate(sources):
        if kind == "joint":
            out[k, int(value)] = 1.0
        elif kind == "vertex":
            out[k, num_joints + int(value)] = 1.0
        elif kind == "vertices":
            out[k, num_joints:] = np.asarray(value)
        else:
            raise ValueError(f"unknown keypoint source kind '{kind}'")
    return out


def head_top_vertex(v_template: np.ndarray) -> int:
    """The highest template vertex (y up): the head top in T- and A-poses."""
    return int(np.argmax(v_template[:, 1]))


def lsp14_regressor(v_template: np.ndarray, num_joints: int = 24) -> np.ndarray:
    """LSP-14 from an SMPL-24 skeleton: 13 joints plus the head-top vertex."""
    sources: list[tuple[str, int | np.ndarray]] = [
        ("joint", LSP14_FROM_SMPL24[n]) for n in LSP14_NAMES[:-1]
    ]
    sources.append(("vertex", head_top_vertex(v_template)))
    return regressor(sources, num_joints, len(v_template))
