"""A library of key poses written in code, for 24-joint SMPL-form bodies.

Rotations are local, in the body frame of SMPL and Anny-24 (x: the body's left, y: up,
z: forward); the zero pose is the model's rest pose (Anny-24: an A-pose with the upper arms
about 48 deg below horizontal).  Sign conventions, checked by tests on the posed mesh:

- hip flexion (thigh forward) is a negative rotation about x, knee flexion positive;
- spine flexion (bending forward) is positive about x;
- raising the left arm sideways is positive about z, the right arm negative.
"""

from __future__ import annotations

import numpy as np
import torch

from hmrkit.body.keypoints import SMPL24_NAMES

_J = {name: i for i, name in enumerate(SMPL24_NAMES)}

# joint -> (axis-angle direction, degrees); several entries per joint are composed in order.
KEY_POSES: dict[str, dict[str, list[tuple[str, float]]]] = {
    "rest": {},
    "t_pose": {"left_shoulder": [("z", 45)], "right_shoulder": [("z", -45)]},
    "walk": {
        "left_hip": [("x", -25)], "right_hip": [("x", 15)], "left_knee": [("x", 10)],
        "right_knee": [("x", 35)], "right_ankle": [("x", -10)],
        "left_shoulder": [("x", 20)], "right_shoulder": [("x", -20)],
        "left_elbow": [("x", -15)], "right_elbow": [("x", -30)],
    },
    "arms_raised": {"left_shoulder": [("z", 125)], "right_shoulder": [("z", -125)]},
    "wave": {
        "right_shoulder": [("z", -95)], "right_elbow": [("y", 80)],
        "spine3": [("z", 5)], "head": [("y", -15)],
    },
    "sit": {
        "left_hip": [("x", -90)], "right_hip": [("x", -90)],
        "left_knee": [("x", 90)], "right_knee": [("x", 90)],
        "left_shoulder": [("x", -20)], "right_shoulder": [("x", -20)],
        "left_elbow": [("x", -40)], "right_elbow": [("x", -40)],
    },
    "squat": {
        "left_hip": [("x", -110), ("z", 10)], "right_hip": [("x", -110), ("z", -10)],
        "left_knee": [("x", 125)], "right_knee": [("x", 125)],
        "left_ankle": [("x", -20)], "right_ankle": [("x", -20)], "spine1": [("x", 20)],
        "left_shoulder": [("x", -60)], "right_shoulder": [("x", -60)],
    },
    "bend": {
        "spine1": [("x", 25)], "spine2": [("x", 20)], "spine3": [("x", 15)],
        "left_hip": [("x", -30)], "right_hip": [("x", -30)],
        "left_shoulder": [("x", -30)], "right_shoulder": [("x", -30)],
    },
    "reach": {
        "left_shoulder": [("x", -80), ("z", 20)], "right_shoulder": [("x", -70), ("z", -20)],
        "spine2": [("x", 10)],
    },
    "lunge": {
        "left_hip": [("x", -70)], "left_knee": [("x", 75)], "right_hip": [("x", 25)],
        "right_knee": [("x", 40)], "left_shoulder": [("z", 30)], "right_shoulder": [("z", -30)],
    },
}


def _axis_angle(axis: str, degrees: float) -> np.ndarray:
    vec = np.zeros(3)
    vec["xyz".index(axis)] = np.deg2rad(degrees)
    return vec


def _rotmat(rotvec: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(rotvec)
    if angle < 1e-12:
        return np.eye(3)
    k = rotvec / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def key_pose(name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Local rotations (24, 3, 3) of the key pose ``name`` (root rotation identity)."""
    if name not in KEY_POSES:
        raise KeyError(f"unknown key pose '{name}'; known: {sorted(KEY_POSES)}")
    rots = np.tile(np.eye(3), (24, 1, 1))
    for joint, steps in KEY_POSES[name].items():
        for axis, degrees in steps:
            rots[_J[joint]] = rots[_J[joint]] @ _rotmat(_axis_angle(axis, degrees))
    return torch.as_tensor(rots, dtype=dtype)
