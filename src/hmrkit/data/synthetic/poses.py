"""Body poses without motion-capture data: key poses written in code, and a sampler around them.

hmrkit has no motion-capture data, so its synthetic engine draws poses of 24-joint SMPL-form
bodies (SMPL, Anny-24) from this module:

- :data:`KEY_POSES`: a library of key poses (standing, walking and running phases, sitting,
  squatting, kneeling, reaching, waving, bending, lunging, jumping, throwing, ...) written as
  per-joint Euler angles in degrees; :func:`key_pose` turns one into rotation matrices;
- :class:`PoseSampler`: slerp between two key poses, per-joint noise, left-right mirroring,
  anatomical joint limits (:func:`clamp_to_limits`), optional self-intersection rejection
  (:class:`SelfIntersection`) and an optional pool of user poses;
- :func:`load_pose_file`: SMPL axis-angle pose files (``.npz``/``.npy``, SMPL 72 or
  SMPL-H / AMASS 156 wide), for users who have their own motion data;
- :func:`change_rest`: move poses between SMPL's T-pose rest and Anny-24's A-pose rest.

Frames and rest pose
--------------------
Rotations are local (joint ``k`` relative to its parent) in the body frame of SMPL and
Anny-24: x is the body's left, y up, z forward (the body faces +z).  At rest every joint
frame is aligned with the body frame.  The root (pelvis) rotation is the identity in
everything this module samples: the camera / world orientation is the scene sampler's job
(see :func:`random_yaw`).

The zero pose is the body model's rest pose.  **Anny-24's rest is an A-pose**: upper arms
about 47 deg below horizontal and elbows already flexed about 41 deg (forearms pointing
forward-down); SMPL's is a T-pose.  Every angle here is relative to Anny-24's A-pose (the
T-pose is a shoulder abduction of +47.5 deg with the elbow extended by -41 deg).  Use
``key_pose(name, rest="t_pose")`` or :func:`change_rest` for SMPL.

Joint angles (the one convention for key poses, noise and limits)
-----------------------------------------------------------------
Each joint has an *anatomical frame* ``F_k`` (columns: x, y, z axes in the parent frame) and
three angles ``(x, y, z)`` in degrees; the local rotation is

    ``R_k = F_k Rx(x) Rz(z) Ry(y) F_k^T``  (intrinsic X-Z-Y Euler angles in that frame),

so ``y`` (the twist about the bone) acts first, then ``z``, then ``x``; ``z`` is the middle
angle (|z| < 90 deg).  Angles of right-side joints are written *mirrored*: the same numbers on
``right_*`` give the mirror image of the motion on ``left_*`` (internally ``(x, -y, -z)``),
so "positive z = abduction" holds on both sides.  Meaning of positive angles:

============  ===============================  ==================  =============================
joint         x                                y                   z
============  ===============================  ==================  =============================
spine1-3      flexion (bend forward)           twist to the left   lateral bend to the right
neck, head    flexion (nod down / forward)     turn to the left    tilt to the right
collar        rotation about the clavicle      retraction (back)   elevation (shrug)
hip           extension (thigh backward);      external rotation   abduction (leg outward)
              hip flexion is negative          (toes out)
knee          flexion (shin backward)          twist               (~0)
ankle         plantarflexion (toes down)       toes out            eversion
foot (toes)   toe flexion (down)               --                  --
shoulder      flexion (arm forward)            internal rotation   abduction (raise sideways)
elbow         flexion (rest: ~41 already)      forearm twist       (~0)
wrist, hand   flexion about the elbow's axis   twist               deviation
============  ===============================  ==================  =============================

Legs, spine, neck, head and collars use the body axes (``F_k = I``).  Arm joints use frames
measured on Anny-24's rest (:data:`ANNY24_LEFT_ARM_REST`): y along the bone at rest (upper
arm for the shoulder, forearm for the elbow, hand for wrist and hand) and x the elbow's hinge
axis (the normal of the upper arm / forearm plane), so elbow flexion is a pure x rotation.
The sign conventions are checked by ``tests/test_poses.py`` on posed Anny-24 joints: hip
flexion moves the knee forward (+z), knee flexion moves the ankle backward relative to the
knee, raising the left arm (shoulder z) moves the left wrist up (+y), elbow flexion brings
the wrist up towards the shoulder, spine flexion moves the head forward, head y turns the
face to the left.

Joint limits (:data:`JOINT_LIMITS`) are boxes on these angles, except for the shoulders
(:data:`SHOULDER_LIMIT`): a cone on the upper-arm direction plus a twist range (swing-twist),
because every Euler order puts a common arm pose (reaching forward, arms in a V, waving) on
its gimbal lock.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from hmrkit.body.keypoints import SMPL24_NAMES, SMPL24_PARENTS, flip_permutation
from hmrkit.geometry.rotations import MIRROR

JOINT_NAMES = SMPL24_NAMES
"""The 24 joints of SMPL's tree (also Anny-24's)."""
NUM_JOINTS = 24
PARENTS = np.array(SMPL24_PARENTS)
_J = {name: i for i, name in enumerate(JOINT_NAMES)}

FLIP = np.array(flip_permutation(JOINT_NAMES))
"""Left-right partner of each joint."""
# the body's mirror plane x -> -x: a mirrored pose is ``MIRROR R[FLIP] MIRROR``

_RIGHT = np.array([name.startswith("right_") for name in JOINT_NAMES])
SIDE_SIGN = np.where(_RIGHT[:, None], np.array([1.0, -1.0, -1.0]), 1.0)
"""(24, 3) signs from the written (mirrored) angles of a joint to its frame's Euler angles."""

Spec = dict[str, tuple[float, float, float]]


def _base(name: str) -> str:
    """``left_knee`` -> ``knee``; central joints keep their name."""
    return name.split("_", 1)[1] if name.startswith(("left_", "right_")) else name


# ---------------------------------------------------------------------- anatomical frames
ANNY24_LEFT_ARM_REST = {
    "upper_arm": (0.676, -0.735, 0.052),
    "forearm": (0.513, -0.510, 0.690),
    "hand": (0.442, -0.552, 0.707),
}
"""Unit directions (body frame) of the left upper arm (shoulder -> elbow), forearm (elbow ->
wrist) and hand (wrist -> hand joint) in Anny-24's rest A-pose, mean shape.  The upper arm is
about 47 deg below horizontal and the elbow is flexed about 41 deg; the right arm mirrors it."""


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _frame(bone, hinge) -> np.ndarray:
    """Frame with y along ``bone`` and x along ``hinge`` made orthogonal to it (columns)."""
    y = _unit(bone)
    x = _unit(hinge - (hinge @ y) * y)
    return np.stack([x, y, np.cross(x, y)], axis=1)


_N = np.diag([-1.0, 1.0, 1.0])  # right frame = MIRROR @ left frame @ _N (a proper rotation)


def _arm_frames(upper, forearm, hand) -> dict[str, np.ndarray]:
    """Anatomical frames of the left arm joints for given rest bone directions."""
    hinge = _unit(np.cross(_unit(upper), _unit(forearm)))
    return {
        "left_shoulder": _frame(upper, hinge),
        "left_elbow": _frame(forearm, hinge),
        "left_wrist": _frame(hand, hinge),
        "left_hand": _frame(hand, hinge),
    }


def _joint_frames(left_arm: dict[str, np.ndarray]) -> np.ndarray:
    frames = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    for name, F in left_arm.items():
        frames[_J[name]] = F
        frames[_J["right_" + name[5:]]] = MIRROR @ F @ _N
    return frames


JOINT_FRAMES = _joint_frames(_arm_frames(*ANNY24_LEFT_ARM_REST.values()))
"""(24, 3, 3) anatomical frame of each joint (columns x, y, z in the parent's rest frame)."""

_T_POSE_FRAMES = _joint_frames({
    k: np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])  # x: -y (hinge), y: +x (bone), z: +z
    for k in ("left_shoulder", "left_elbow", "left_wrist", "left_hand")
})

REST_OFFSETS = np.einsum("kij,klj->kil", JOINT_FRAMES, _T_POSE_FRAMES)
"""(24, 3, 3) world rotation of each joint's segment from SMPL's T-pose rest (palms down,
arms straight along +-x) to Anny-24's A-pose rest; the identity off the arms."""


# ---------------------------------------------------------------------- rotation helpers
def _rx(a):
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*np.shape(a), 3, 3)


def _ry(a):
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*np.shape(a), 3, 3)


def _rz(a):
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*np.shape(a), 3, 3)


def euler_to_rotmat(angles_deg) -> np.ndarray:
    """``Rx(x) Rz(z) Ry(y)`` for angles ``(..., 3)`` = (x, y, z) in degrees (intrinsic XZY)."""
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    return _rx(a[..., 0]) @ _rz(a[..., 2]) @ _ry(a[..., 1])


def rotmat_to_euler(R) -> np.ndarray:
    """Inverse of :func:`euler_to_rotmat`: (..., 3) angles (x, y, z) in degrees, |z| <= 90.

    At gimbal lock (|z| = 90) x is set to 0.
    """
    R = np.asarray(R, dtype=np.float64)
    z = np.arcsin(np.clip(-R[..., 0, 1], -1.0, 1.0))
    x = np.arctan2(R[..., 2, 1], R[..., 1, 1])
    y = np.arctan2(R[..., 0, 2], R[..., 0, 0])
    lock = np.hypot(R[..., 1, 1], R[..., 2, 1]) < 1e-9
    if np.any(lock):
        x = np.where(lock, 0.0, x)
        y = np.where(lock, np.arctan2(-R[..., 2, 0], R[..., 2, 2]), y)
    return np.rad2deg(np.stack([x, y, z], axis=-1))


def joint_angles_to_rotmat(angles_deg) -> np.ndarray:
    """(..., 24, 3) written joint angles (degrees, see the module doc) -> (..., 24, 3, 3)."""
    angles = np.asarray(angles_deg, dtype=np.float64)
    E = euler_to_rotmat(angles * SIDE_SIGN)
    R = JOINT_FRAMES @ E @ np.swapaxes(JOINT_FRAMES, -1, -2)
    return np.where(np.all(angles == 0, axis=-1)[..., None, None], np.eye(3), R)


def rotmat_to_joint_angles(R) -> np.ndarray:
    """(..., 24, 3, 3) local rotations -> (..., 24, 3) written joint angles in degrees."""
    E = np.swapaxes(JOINT_FRAMES, -1, -2) @ np.asarray(R, dtype=np.float64) @ JOINT_FRAMES
    return rotmat_to_euler(E) * SIDE_SIGN


def _as_numpy(rotations) -> np.ndarray:
    if isinstance(rotations, torch.Tensor):
        return rotations.detach().cpu().to(torch.float64).numpy()
    return np.asarray(rotations, dtype=np.float64)


def _like(x: np.ndarray, like, dtype=None):
    """``x`` as a tensor when ``like`` is one (same dtype/device unless ``dtype``)."""
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(x, dtype=dtype or like.dtype, device=like.device)
    return x


def mirror_pose(rotations):
    """Left-right mirror image of poses (..., 24, 3, 3): ``MIRROR R[..., FLIP] MIRROR``.

    Works on numpy arrays and tensors; mirroring twice gives the pose back exactly.
    """
    if isinstance(rotations, torch.Tensor):
        m = torch.as_tensor(MIRROR, dtype=rotations.dtype, device=rotations.device)
        return m @ rotations[..., torch.as_tensor(FLIP), :, :] @ m
    rotations = np.asarray(rotations)
    return MIRROR @ rotations[..., FLIP, :, :] @ MIRROR


def change_rest(rotations, to: str):
    """Re-express poses (..., 24, 3, 3) for the other rest pose, keeping the posed body.

    ``to="t_pose"``: from Anny-24's A-pose rest to SMPL's T-pose rest (for SMPL);
    ``to="a_pose"``: from SMPL's T-pose rest to Anny-24's A-pose rest (e.g. AMASS poses for
    Anny-24).  With ``W`` = :data:`REST_OFFSETS`, ``R_t[k] = W[p]^T R_a[k] W[k]``.  The offsets
    are pure rotations of the arm segments, so the result is exact up to the small difference
    of the two skeletons' rest shapes.
    """
    R = _as_numpy(rotations)
    Wp = np.concatenate([np.eye(3)[None], REST_OFFSETS[PARENTS[1:]]])
    if to == "t_pose":
        out = np.swapaxes(Wp, -1, -2) @ R @ REST_OFFSETS
    elif to == "a_pose":
        out = Wp @ R @ np.swapaxes(REST_OFFSETS, -1, -2)
    else:
        raise ValueError(f"change_rest: unknown rest '{to}'; use 't_pose' or 'a_pose'")
    return _like(out, rotations)


def slerp(A: np.ndarray, B: np.ndarray, weight) -> np.ndarray:
    """Per-joint geodesic interpolation ``A exp(w log(A^T B))`` of rotations (..., 3, 3).

    ``weight`` broadcasts against the batch shape (e.g. (N, 1) for (N, 24, 3, 3) poses).
    """
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    rel = np.swapaxes(A, -1, -2) @ B
    rotvec = Rotation.from_matrix(rel.reshape(-1, 3, 3)).as_rotvec().reshape(*rel.shape[:-2], 3)
    w = np.asarray(weight, dtype=np.float64)[..., None]
    step = Rotation.from_rotvec((w * rotvec).reshape(-1, 3)).as_matrix()
    return A @ step.reshape(rel.shape)


def _expmap(rotvec: np.ndarray) -> np.ndarray:
    return Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(*rotvec.shape, 3)


def random_yaw(n: int, seed: int | np.random.Generator | None = None, max_deg: float = 180.0,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, 3, 3) rotations about the vertical (y) axis, angles uniform in +-``max_deg``.

    A helper for scene samplers that put the root orientation on top of sampled poses
    (``pose[:, 0] = yaw @ pose[:, 0]``).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    angle = rng.uniform(-np.deg2rad(max_deg), np.deg2rad(max_deg), size=n)
    return torch.as_tensor(_ry(angle), dtype=dtype)


# ---------------------------------------------------------------------- key poses
def _both(joint: str, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Spec:
    """The same (mirrored) angles on ``left_<joint>`` and ``right_<joint>``."""
    return {f"left_{joint}": (x, y, z), f"right_{joint}": (x, y, z)}


def _j(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> tuple[float, float, float]:
    return (float(x), float(y), float(z))


ELBOW_STRAIGHT = -40.0
"""Elbow x angle of a (nearly) straight arm: Anny-24's rest elbow is flexed about 41 deg."""
ARM_HORIZONTAL = 47.5
"""Shoulder z angle that lifts Anny-24's rest upper arm to horizontal (the T-pose)."""

_E0 = ELBOW_STRAIGHT

KEY_POSES: dict[str, Spec] = {
    # ---- the first eight: a varied set for demos
    "stand_relaxed": {
        **_both("shoulder", 5, 0, -22), **_both("elbow", -30), "head": _j(5),
    },
    "walk_contact": {  # left heel strike, right toe-off; arms swing opposite
        "left_hip": _j(-28, 5, 2), "left_knee": _j(4), "left_ankle": _j(-12),
        "right_hip": _j(18, 0, 2), "right_knee": _j(25), "right_ankle": _j(22),
        "right_foot": _j(-30), "spine1": _j(0, -4), "spine3": _j(0, -4),
        "left_shoulder": _j(-25, 0, -20), "right_shoulder": _j(25, 0, -22),
        "left_elbow": _j(-30), "right_elbow": _j(-10),
    },
    "run_push_off": {  # left foot pushes off behind, right thigh drives forward
        "left_hip": _j(25), "left_knee": _j(25), "left_ankle": _j(35), "left_foot": _j(-35),
        "right_hip": _j(-60, 5), "right_knee": _j(95), "right_ankle": _j(5),
        "spine1": _j(10, 6), "spine2": _j(5), "head": _j(-10),
        "left_shoulder": _j(50, 0, -20), "right_shoulder": _j(-45, 0, -20),
        "left_elbow": _j(40), "right_elbow": _j(40),
    },
    "sit_chair": {
        **_both("hip", -88, 0, 6), **_both("knee", 88), **_both("ankle", 2),
        "spine1": _j(5), **_both("shoulder", 30, 0, -20), **_both("elbow", 5),
    },
    "squat": {
        **_both("hip", -115, 15, 16), **_both("knee", 135), **_both("ankle", -25),
        "spine1": _j(25), "spine2": _j(10), "head": _j(-20),
        **_both("shoulder", 80, 0, -10), **_both("elbow", -30),
    },
    "arms_raised": {
        **_both("shoulder", 0, 0, 130), **_both("elbow", -40), "head": _j(-10),
    },
    "wave": {  # left hand waves beside the head
        "left_shoulder": _j(10, -60, 55), "left_elbow": _j(55, 0), "left_wrist": _j(0, 0, 15),
        "right_shoulder": _j(0, 0, -22), "right_elbow": _j(-20),
        "spine3": _j(0, 0, 4), "head": _j(0, 10),
    },
    "lunge_front": {
        "left_hip": _j(-85, 5, 5), "left_knee": _j(95), "left_ankle": _j(-10),
        "right_hip": _j(30, 0, 5), "right_knee": _j(35), "right_ankle": _j(-5),
        "right_foot": _j(-40), "spine1": _j(-5),
        **_both("shoulder", 0, 0, -20), **_both("elbow", 10),
    },
    # ---- standing
    "rest": {},
    "t_pose": {  # SMPL's zero pose (arms straight, palms down) within 1 deg
        **_both("shoulder", 0, 4, ARM_HORIZONTAL), **_both("elbow", -40.7),
        **_both("wrist", -1, 0, 4.7),
    },
    "stand_contrapposto": {
        "left_hip": _j(0, 5, -3), "right_hip": _j(-12, 10, 6), "right_knee": _j(20),
        "right_ankle": _j(8), "spine1": _j(0, 0, -4), "spine3": _j(0, 0, 4),
        "head": _j(0, 10, 5), **_both("shoulder", 0, 0, -22), **_both("elbow", -20),
    },
    "hands_on_hips": {
        **_both("shoulder", -20, 60, 15), **_both("elbow", 60), **_both("wrist", 0, 0, 20),
        **_both("hip", 0, 5, 3),
    },
    "arms_crossed": {
        "left_shoulder": _j(50, 40, -15), "right_shoulder": _j(40, 40, -15),
        "left_elbow": _j(60), "right_elbow": _j(75), "head": _j(5),
    },
    "hand_to_face": {
        "left_shoulder": _j(60, 0, 0), "left_elbow": _j(100), "left_wrist": _j(-20),
        "right_shoulder": _j(0, 0, -22), "right_elbow": _j(-20), "head": _j(10, 10),
    },
    "point_forward": {
        "left_shoulder": _j(85, 0, 10), "left_elbow": _j(_E0), "left_wrist": _j(-10),
        "right_shoulder": _j(0, 0, -22), "right_elbow": _j(-20), "head": _j(0, 15),
        "spine2": _j(0, 8),
    },
    # ---- walking: the left leg forward; mirroring gives the other half of the cycle
    "walk_down": {  # loading: left foot flat, weight on it, knee bends
        "left_hip": _j(-22, 5), "left_knee": _j(18), "left_ankle": _j(0),
        "right_hip": _j(15), "right_knee": _j(45), "right_ankle": _j(25), "right_foot": _j(-20),
        "left_shoulder": _j(-20, 0, -22), "right_shoulder": _j(20, 0, -22),
        "left_elbow": _j(-25), "right_elbow": _j(-5),
    },
    "walk_passing": {  # right leg swings past the left
        "left_hip": _j(-2), "left_knee": _j(8), "right_hip": _j(-25), "right_knee": _j(60),
        "right_ankle": _j(-8), **_both("shoulder", 0, 0, -22), **_both("elbow", -20),
    },
    "walk_up": {  # left leg behind pushing up on its toes, right leg reaching forward
        "left_hip": _j(12), "left_knee": _j(5), "left_ankle": _j(18), "left_foot": _j(-25),
        "right_hip": _j(-30), "right_knee": _j(20), "right_ankle": _j(-10),
        "left_shoulder": _j(18, 0, -22), "right_shoulder": _j(-18, 0, -22),
        "left_elbow": _j(-5), "right_elbow": _j(-25),
    },
    # ---- running: the left leg forward
    "run_contact": {
        "left_hip": _j(-35), "left_knee": _j(20), "left_ankle": _j(-5),
        "right_hip": _j(10), "right_knee": _j(75), "right_ankle": _j(20),
        "spine1": _j(10, -6), "spine2": _j(5), "head": _j(-10),
        "left_shoulder": _j(-40, 0, -20), "right_shoulder": _j(45, 0, -20),
        "left_elbow": _j(45), "right_elbow": _j(40),
    },
    "run_down": {  # mid-stance on the left leg, right heel high behind
        "left_hip": _j(-15), "left_knee": _j(40), "left_ankle": _j(-15),
        "right_hip": _j(-5), "right_knee": _j(115), "right_ankle": _j(25),
        "spine1": _j(12, -2), "spine2": _j(5), "head": _j(-10),
        "left_shoulder": _j(-10, 0, -20), "right_shoulder": _j(15, 0, -20),
        "left_elbow": _j(50), "right_elbow": _j(45),
    },
    "run_float": {  # both feet off the ground, legs split
        "left_hip": _j(-50), "left_knee": _j(70), "left_ankle": _j(10),
        "right_hip": _j(20), "right_knee": _j(60), "right_ankle": _j(30),
        "spine1": _j(10, -5), "spine2": _j(5), "head": _j(-10),
        "left_shoulder": _j(-45, 0, -20), "right_shoulder": _j(50, 0, -20),
        "left_elbow": _j(40), "right_elbow": _j(45),
    },
    # ---- sitting, squatting, kneeling
    "sit_floor_cross_legged": {
        **_both("hip", -80, 45, 45), **_both("knee", 135), **_both("ankle", 15, 0, -15),
        "spine1": _j(10), "spine2": _j(8), **_both("shoulder", 20, 10, -20),
        **_both("elbow", 10),
    },
    "sit_floor_legs_out": {
        **_both("hip", -85, 5, 8), **_both("knee", 5), **_both("ankle", 15),
        "spine1": _j(-5), **_both("shoulder", -35, 0, -20), **_both("elbow", -40),
    },
    "crouch": {  # low and forward, on the balls of the feet
        **_both("hip", -115, 15, 25), **_both("knee", 140), **_both("ankle", -10),
        **_both("foot", -35), "spine1": _j(30), "spine2": _j(15), "neck": _j(-15),
        "head": _j(-20), **_both("shoulder", 75, 0, 10), **_both("elbow", 20),
    },
    "kneel_one_knee": {  # right knee on the ground, left foot planted forward
        "left_hip": _j(-90, 5, 5), "left_knee": _j(90), "left_ankle": _j(0),
        "right_hip": _j(5), "right_knee": _j(95), "right_ankle": _j(-10), "right_foot": _j(-40),
        "left_shoulder": _j(20, 0, -20), "left_elbow": _j(30),
        "right_shoulder": _j(0, 0, -22), "right_elbow": _j(-20),
    },
    "kneel_two_knees": {
        **_both("hip", 0, 0, 4), **_both("knee", 92), **_both("ankle", 40),
        **_both("shoulder", 5, 0, -22), **_both("elbow", -20),
    },
    "kneel_sit_on_heels": {
        **_both("hip", -50, 0, 6), **_both("knee", 150), **_both("ankle", 45),
        "spine1": _j(10), **_both("shoulder", 25, 5, -20), **_both("elbow", 15),
    },
    # ---- reaching
    "reach_forward": {
        **_both("shoulder", 90, 0, 5), **_both("elbow", _E0), "spine1": _j(10),
        "spine2": _j(5), **_both("hip", -10), **_both("ankle", -5),
    },
    "reach_up": {
        "left_shoulder": _j(10, 0, 125), "left_elbow": _j(_E0), "left_wrist": _j(-10),
        "right_shoulder": _j(0, 0, -20), "right_elbow": _j(-20), "spine2": _j(0, 0, 5),
        "spine3": _j(0, 0, 5), "head": _j(-20), **_both("ankle", 25), **_both("foot", -30),
    },
    "reach_side": {
        "left_shoulder": _j(5, 0, 75), "left_elbow": _j(_E0), "spine1": _j(0, 0, -8),
        "spine2": _j(0, 0, -8), "spine3": _j(0, 0, -5), "left_hip": _j(0, 0, 10),
        "right_shoulder": _j(0, 0, -35), "right_elbow": _j(-10), "head": _j(0, 20),
    },
    "reach_floor": {
        "spine1": _j(35), "spine2": _j(25), "spine3": _j(15), **_both("hip", -65, 5, 8),
        **_both("knee", 45), **_both("ankle", -10), "left_shoulder": _j(55, 0, 0),
        "left_elbow": _j(-35), "right_shoulder": _j(25, 0, -15), "right_elbow": _j(0),
        "head": _j(-20),
    },
    # ---- bending
    "bend_forward": {
        "spine1": _j(35), "spine2": _j(25), "spine3": _j(15), "neck": _j(5),
        **_both("hip", -45), **_both("knee", 5), **_both("shoulder", 60, 0, -15),
        **_both("elbow", -30),
    },
    "side_bend": {  # bending to the right, left arm over the head
        "spine1": _j(0, 0, 15), "spine2": _j(0, 0, 15), "spine3": _j(0, 0, 10),
        "neck": _j(0, 0, 5), "left_shoulder": _j(0, 0, 115), "left_elbow": _j(-10),
        "right_shoulder": _j(0, 0, -10), "right_elbow": _j(-20), **_both("hip", 0, 0, 6),
    },
    "twist": {  # upper body turned to the left
        "spine1": _j(0, 15), "spine2": _j(0, 15), "spine3": _j(0, 10), "head": _j(0, 20),
        **_both("shoulder", 10, 0, -20), **_both("elbow", 20),
    },
    # ---- lunging, jumping, throwing, kicking
    "lunge_side": {  # stepping out to the left on a bent left knee
        "left_hip": _j(-60, 20, 40), "left_knee": _j(95), "left_ankle": _j(-15, 0, -10),
        "right_hip": _j(0, 10, 35), "right_knee": _j(0), "right_ankle": _j(0, 0, -20),
        "spine1": _j(15, 0, 5), **_both("shoulder", 30, 0, -10), **_both("elbow", 10),
    },
    "jump_crouch": {  # loading before a jump: arms swung back
        **_both("hip", -75, 5, 6), **_both("knee", 95), **_both("ankle", -20),
        "spine1": _j(30), "spine2": _j(15), "head": _j(-20),
        **_both("shoulder", -45, 0, -20), **_both("elbow", -20),
    },
    "jump_tuck": {
        **_both("hip", -75, 5, 8), **_both("knee", 100), **_both("ankle", 30),
        **_both("shoulder", 0, 0, 115), **_both("elbow", -30), "head": _j(-10),
    },
    "jump_star": {
        **_both("hip", 0, 15, 30), **_both("knee", 5), **_both("ankle", 30),
        **_both("shoulder", 0, 0, 120), **_both("elbow", -40),
    },
    "throw": {  # right-handed throw: right arm cocked behind, left arm and leg forward
        "right_shoulder": _j(0, -70, 45), "right_elbow": _j(45), "right_wrist": _j(-30),
        "left_shoulder": _j(65, 0, 15), "left_elbow": _j(-20),
        "left_hip": _j(-35, 10, 8), "left_knee": _j(20), "right_hip": _j(10, 15, 8),
        "right_knee": _j(20), "spine1": _j(0, -12, 5), "spine2": _j(0, -10, 5),
        "spine3": _j(0, -8), "head": _j(0, 25),
    },
    "kick_front": {
        "left_hip": _j(-80, 5), "left_knee": _j(25), "left_ankle": _j(-10),
        "right_knee": _j(15), "right_ankle": _j(-10), "spine1": _j(-10),
        **_both("shoulder", 15, 0, 10), **_both("elbow", 30),
    },
    # ---- added for the photo-like mix (hmrkit.data.synthetic.mix); not in V1_KEY_POSES
    "stand_phone": {  # looking down at a phone held in both hands
        "neck": _j(20), "head": _j(20), "spine3": _j(5),
        **_both("shoulder", 30, 20, -12), **_both("elbow", 65), **_both("hip", 0, 5, 3),
    },
    "stand_hold_cup": {  # left forearm forward holding something, right arm relaxed
        "left_shoulder": _j(10, 10, -25), "left_elbow": _j(55), "left_wrist": _j(-15),
        "right_shoulder": _j(0, 0, -30), "right_elbow": _j(-25), "head": _j(8, 5),
        "left_hip": _j(0, 5, 2), "right_hip": _j(-8, 10, 5), "right_knee": _j(12),
    },
    "sit_chair_lean_back": {  # leaning against a backrest, feet forward
        **_both("hip", -78, 0, 8), **_both("knee", 68), **_both("ankle", -8),
        "spine1": _j(-12), "spine2": _j(-4), "head": _j(12),
        **_both("shoulder", 20, 0, -15), **_both("elbow", 15),
    },
    "sit_elbows_on_knees": {  # leaning forward, forearms resting on the thighs
        **_both("hip", -100, 0, 12), **_both("knee", 100), **_both("ankle", 5),
        "spine1": _j(28), "spine2": _j(12), "neck": _j(-10), "head": _j(-15),
        **_both("shoulder", 45, 0, 0), **_both("elbow", 60),
    },
    "sit_typing": {  # upright, forearms forward as over a desk
        **_both("hip", -90, 0, 6), **_both("knee", 90), **_both("ankle", 0),
        "spine1": _j(5), "head": _j(10),
        **_both("shoulder", 35, 10, -10), **_both("elbow", 35),
    },
    "sit_phone": {  # seated, looking down at a phone in both hands
        **_both("hip", -88, 0, 8), **_both("knee", 95), **_both("ankle", 5),
        "spine1": _j(12), "neck": _j(15), "head": _j(20),
        **_both("shoulder", 35, 20, -12), **_both("elbow", 70),
    },
    "sit_stool_high": {  # on a high seat, thighs sloping down, feet hanging
        **_both("hip", -70, 5, 8), **_both("knee", 55), **_both("ankle", 15),
        **_both("shoulder", 25, 0, -15), **_both("elbow", 20),
    },
    "sit_floor_legs_forward": {  # on the floor, legs straight ahead, hands on the thighs
        **_both("hip", -95, 5, 8), **_both("knee", 10), **_both("ankle", 0), "spine1": _j(5),
        **_both("shoulder", 35, 0, -15), **_both("elbow", 10),
    },
    "sit_floor_knees_bent": {  # on the floor, knees up, feet flat
        **_both("hip", -110, 5, 8), **_both("knee", 60), **_both("ankle", 0), "spine1": _j(5),
        **_both("shoulder", 35, 0, -15), **_both("elbow", 10),
    },
    "kneel_on_one_knee": {  # right knee and toes on the ground, left foot flat ahead
        "left_hip": _j(-90, 5, 5), "left_knee": _j(115), "left_ankle": _j(-20),
        "right_hip": _j(0), "right_knee": _j(105), "right_ankle": _j(10), "right_foot": _j(-30),
        "left_shoulder": _j(20, 0, -20), "left_elbow": _j(30),
        "right_shoulder": _j(0, 0, -22), "right_elbow": _j(-20),
    },
}
"""Key poses: joint name -> written angles ``(x, y, z)`` in degrees (see the module doc)
relative to Anny-24's rest A-pose; joints not listed keep the rest rotation, the root is the
identity.  Asymmetric poses put the left side forward/active; :func:`mirror_pose` (which the
sampler applies half of the time) gives the other side."""


V1_KEY_POSES: tuple[str, ...] = (
    "stand_relaxed", "walk_contact", "run_push_off", "sit_chair", "squat", "arms_raised",
    "wave", "lunge_front", "rest", "t_pose", "stand_contrapposto", "hands_on_hips",
    "arms_crossed", "hand_to_face", "point_forward", "walk_down", "walk_passing", "walk_up",
    "run_contact", "run_down", "run_float", "sit_floor_cross_legged", "sit_floor_legs_out",
    "crouch", "kneel_one_knee", "kneel_two_knees", "kneel_sit_on_heels", "reach_forward",
    "reach_up", "reach_side", "reach_floor", "bend_forward", "side_bend", "twist", "lunge_side",
    "jump_crouch", "jump_tuck", "jump_star", "throw", "kick_front",
)
"""The 40 key poses of the first library, in order: :class:`PoseSampler`'s default library
(so the synth-v1 benchmarks and :func:`hmrkit.models.heads.mean_parameters` stay fixed when
key poses are added)."""


def key_pose_angles(spec: str | Spec) -> np.ndarray:
    """(24, 3) written angles of a key pose (a name of :data:`KEY_POSES` or a spec dict)."""
    if isinstance(spec, str):
        if spec not in KEY_POSES:
            raise KeyError(f"unknown key pose '{spec}'; known: {sorted(KEY_POSES)}")
        spec = KEY_POSES[spec]
    angles = np.zeros((NUM_JOINTS, 3))
    for joint, value in spec.items():
        if joint not in _J or joint == "pelvis":
            raise KeyError(f"key pose joint '{joint}' is not a non-root joint of {JOINT_NAMES}")
        angles[_J[joint]] = value
    return angles


def key_pose(name: str | Spec, dtype: torch.dtype = torch.float32,
             rest: str = "a_pose") -> torch.Tensor:
    """Local rotations (24, 3, 3) of a key pose (root rotation identity).

    ``rest="a_pose"`` (default) is for Anny-24; ``rest="t_pose"`` re-expresses the same body
    pose for SMPL's T-pose rest (:func:`change_rest`).
    """
    R = joint_angles_to_rotmat(key_pose_angles(name))
    if rest == "t_pose":
        R = change_rest(R, "t_pose")
    elif rest != "a_pose":
        raise ValueError(f"key_pose: unknown rest '{rest}'; use 'a_pose' or 't_pose'")
    return torch.as_tensor(R, dtype=dtype)


def key_poses(names: Sequence[str] | None = None, dtype: torch.dtype = torch.float32,
              rest: str = "a_pose") -> torch.Tensor:
    """(K, 24, 3, 3) key poses ``names`` (all of :data:`KEY_POSES` by default)."""
    names = list(KEY_POSES) if names is None else list(names)
    return torch.stack([key_pose(n, dtype, rest) for n in names])


# ---------------------------------------------------------------------- joint limits
JOINT_LIMITS: dict[str, tuple[tuple[float, float], ...]] = {
    "spine1": ((-30, 45), (-25, 25), (-25, 25)),
    "spine2": ((-20, 35), (-20, 20), (-20, 20)),
    "spine3": ((-20, 30), (-20, 20), (-20, 20)),
    "neck": ((-40, 45), (-40, 40), (-25, 25)),
    "head": ((-40, 40), (-50, 50), (-30, 30)),
    "collar": ((-15, 15), (-20, 20), (-10, 30)),
    "hip": ((-135, 40), (-45, 50), (-35, 70)),
    "knee": ((-8, 155), (-10, 10), (-5, 5)),
    "ankle": ((-35, 55), (-25, 25), (-25, 25)),
    "foot": ((-50, 25), (-5, 5), (-5, 5)),
    "elbow": ((-45, 105), (-60, 60), (-5, 5)),
    "wrist": ((-70, 70), (-60, 60), (-35, 35)),
    "hand": ((-30, 60), (-10, 10), (-20, 20)),
}
"""Anatomical limits: joint (side-less name) -> ``((x_lo, x_hi), (y_lo, y_hi), (z_lo, z_hi))``
in degrees on the written angles (module doc), relative to Anny-24's rest, for both sides.
Knees and elbows flex one way only (the negative ends allow full extension: Anny-24's rest
knee is flexed about 8 deg, its elbow about 41 deg) with near-zero abduction."""


@dataclass(frozen=True)
class ShoulderLimit:
    """Swing-twist limit of the left shoulder (the right one mirrors it).

    The upper-arm direction ``d = R u`` (``u``: rest direction) must lie within ``cone_deg``
    of ``cone_axis`` (body frame), and the twist about ``u`` left after the shortest swing
    from ``u`` to ``d`` must lie in ``twist_deg`` (positive: internal rotation).
    """

    cone_axis: tuple[float, float, float] = (0.707, 0.0, 0.707)
    cone_deg: float = 120.0
    twist_deg: tuple[float, float] = (-100.0, 100.0)


SHOULDER_LIMIT = ShoulderLimit()
"""Default shoulder limit: the arm may point anywhere within 120 deg of forward-outward
(down, up, across the chest, but not far behind the back), twist +-100 deg."""

_SHOULDERS = (_J["left_shoulder"], _J["right_shoulder"])
_BOX = np.array(
    [JOINT_LIMITS.get(_base(n), ((0, 0),) * 3) if n != "pelvis" else ((0, 0),) * 3
     for n in JOINT_NAMES], dtype=np.float64,
)  # (24, 3, 2)
_BOX_JOINTS = np.array([k for k in range(1, NUM_JOINTS) if k not in _SHOULDERS])


def _axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    return _expmap(axis * angle[..., None])


def _shoulder_frame(k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(rest bone direction, cone axis, twist sign) of shoulder joint ``k`` (body frame)."""
    u = JOINT_FRAMES[k][:, 1]
    axis = _unit(SHOULDER_LIMIT.cone_axis)
    if _RIGHT[k]:
        axis = MIRROR @ axis
    return u, axis, float(SIDE_SIGN[k, 1])


def swing_twist(R: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split rotations (..., 3, 3) as ``R = S(u -> R u) T(u, twist)``.

    Returns the swung direction ``d = R u`` (..., 3) and the twist angle (...,) in radians.
    """
    d = R @ u
    S = _swing(u, d)
    T = np.swapaxes(S, -1, -2) @ R
    rv = Rotation.from_matrix(T.reshape(-1, 3, 3)).as_rotvec().reshape(*R.shape[:-2], 3)
    return d, rv @ u


def _swing(u: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Shortest rotations taking unit ``u`` (3,) to unit ``d`` (..., 3)."""
    axis = np.cross(u, d)
    sin = np.linalg.norm(axis, axis=-1)
    cos = np.clip(d @ u, -1.0, 1.0)
    fallback = np.cross(u, [0.0, 0.0, 1.0] if abs(u[2]) < 0.9 else [1.0, 0.0, 0.0])
    axis = np.where(sin[..., None] > 1e-9, axis / np.maximum(sin, 1e-12)[..., None],
                    _unit(fallback))
    return _axis_angle(axis, np.arctan2(sin, cos))


def _shoulder_angles(R: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(cone angle, written twist) in degrees of shoulder ``k`` for rotations (..., 3, 3)."""
    u, axis, sign = _shoulder_frame(k)
    d, twist = swing_twist(R, u)
    cone = np.rad2deg(np.arccos(np.clip(d @ axis, -1.0, 1.0)))
    return cone, np.rad2deg(twist) * sign


def limit_violation(rotations) -> np.ndarray:
    """(N, 24) how far (degrees) each joint of poses (N, 24, 3, 3) lies outside its limits."""
    R = _as_numpy(rotations)
    out = np.zeros(R.shape[:2])
    ang = rotmat_to_joint_angles(R)
    lo, hi = _BOX[..., 0], _BOX[..., 1]
    box = np.maximum(np.maximum(lo - ang, ang - hi), 0.0).max(-1)
    out[:, _BOX_JOINTS] = box[:, _BOX_JOINTS]
    for k in _SHOULDERS:
        cone, twist = _shoulder_angles(R[:, k], k)
        t_lo, t_hi = SHOULDER_LIMIT.twist_deg
        out[:, k] = np.maximum.reduce([
            np.zeros_like(cone), cone - SHOULDER_LIMIT.cone_deg, t_lo - twist, twist - t_hi,
        ])
    return out


def within_limits(rotations, tol_deg: float = 1e-3) -> np.ndarray:
    """(N,) True where every joint of poses (N, 24, 3, 3) is within its limits."""
    return limit_violation(rotations).max(-1) <= tol_deg


def clamp_to_limits(rotations):
    """Clamp poses (N, 24, 3, 3) to the joint limits; returns (clamped poses, (N, 24) changed).

    Box joints: written angles clipped to :data:`JOINT_LIMITS` and recomposed (the principal
    Euler solution, |z| <= 90, is the only one that can satisfy |z| limits below 90 deg).
    Shoulders: the arm direction is pulled back onto the cone and the twist clipped.
    Joints within limits are returned unchanged (bit for bit); the root is not limited.
    """
    R = _as_numpy(rotations).copy()
    changed = np.zeros(R.shape[:2], dtype=bool)
    ang = rotmat_to_joint_angles(R)
    clipped = np.clip(ang, _BOX[..., 0], _BOX[..., 1])
    fix = np.zeros_like(changed)
    fix[:, _BOX_JOINTS] = np.any(clipped != ang, axis=-1)[:, _BOX_JOINTS]
    if np.any(fix):
        k = np.nonzero(fix)[1]
        F = JOINT_FRAMES[k]
        R[fix] = F @ euler_to_rotmat(clipped[fix] * SIDE_SIGN[k]) @ np.swapaxes(F, -1, -2)
        changed |= fix
    for k in _SHOULDERS:
        R[:, k], changed[:, k] = _clamp_shoulder(R[:, k], k)
    return _like(R, rotations), changed


def _clamp_shoulder(R: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    u, axis, sign = _shoulder_frame(k)
    d, twist = swing_twist(R, u)
    cone = np.arccos(np.clip(d @ axis, -1.0, 1.0))
    max_cone = np.deg2rad(SHOULDER_LIMIT.cone_deg)
    t_lo, t_hi = np.deg2rad(SHOULDER_LIMIT.twist_deg)
    written = twist * sign
    bad_cone = cone > max_cone
    bad_twist = (written < t_lo) | (written > t_hi)
    bad = bad_cone | bad_twist
    if not np.any(bad):
        return R, bad
    side = d - (d @ axis)[..., None] * axis
    norm = np.linalg.norm(side, axis=-1, keepdims=True)
    perp = _unit(np.cross(axis, [0.0, 1.0, 0.0]))
    side = np.where(norm > 1e-9, side / np.maximum(norm, 1e-12), perp)
    d_new = np.where(bad_cone[..., None],
                     np.cos(max_cone) * axis + np.sin(max_cone) * side, d)
    twist_new = np.clip(written, t_lo, t_hi) * sign
    R_new = _swing(u, d_new) @ _axis_angle(u, twist_new)
    return np.where(bad[..., None, None], R_new, R), bad


# ---------------------------------------------------------------------- pose files
def _pose_array(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".npy"):
        raise ValueError(f"{path}: unsupported pose file type '{suffix}' (use .npz or .npy)")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                keys = list(f.files)
                for key in ("poses", "pose"):
                    if key in keys:
                        return np.asarray(f[key])
                if "body_pose" in keys and "global_orient" in keys:
                    n = len(f["body_pose"])
                    return np.concatenate(
                        [f["global_orient"].reshape(n, -1), f["body_pose"].reshape(n, -1)], -1
                    )
            raise ValueError(
                f"{path}: no pose array: expected key 'poses' or 'pose' (or 'global_orient' "
                f"and 'body_pose'), found keys {keys}"
            )
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, EOFError, ValueError) as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable pose file ({err})") from err


def load_pose_file(path: str | os.PathLike, rest: str = "t_pose",
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Poses (N, 24, 3, 3) from an SMPL axis-angle pose file.

    Accepted: ``.npz`` with key ``poses`` or ``pose`` (or ``global_orient`` + ``body_pose``),
    or ``.npy``; arrays (N, 72) = 24 joints x axis-angle (SMPL's layout, joint 0 the root),
    (72,) for one pose, (N, 24, 3), or (N, D >= 66) for the layouts that share SMPL's first
    22 joints, such as AMASS's SMPL-H (N, 156) or SMPL-X (N, 165): the first 66 values are
    used and the two hand joints set to the identity.  (N, 69), SMPL's body pose without the
    root, is refused as ambiguous.  The root rotation is kept as in the file (AMASS: z-up
    world).

    ``rest="t_pose"`` returns the file's rotations as they are (relative to SMPL's T-pose);
    ``rest="a_pose"`` re-expresses them for Anny-24's A-pose rest (:func:`change_rest`), which
    is what driving Anny-24 with SMPL poses needs.  Raises ``ValueError`` naming the file and
    the shape found when the layout is not one of these.
    """
    path = Path(path)
    a = _pose_array(path)
    shape = tuple(a.shape)
    if a.ndim == 1:
        a = a[None]
    elif a.ndim == 3 and a.shape[2] == 3:
        a = a.reshape(len(a), -1)
    if not (a.ndim == 2 and a.shape[1] >= 66 and a.shape[1] != 69 and a.shape[0] > 0):
        hint = (" (69 values look like SMPL's body_pose without the root: prepend the root "
                "rotation)" if a.ndim == 2 and a.shape[1] == 69 else "")
        raise ValueError(
            f"{path}: pose array has shape {shape}; expected (N, 72) SMPL axis-angle, (72,), "
            f"(N, 24, 3) or (N, D >= 66) such as AMASS's (N, 156){hint}"
        )
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{path}: pose array of shape {shape} has dtype {a.dtype}, not numbers")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{path}: pose array of shape {shape} has non-finite values")
    n = len(a)
    aa = np.zeros((n, NUM_JOINTS, 3))
    if a.shape[1] == 72:
        aa[:] = a.reshape(n, 24, 3)
    else:
        aa[:, :22] = a[:, :66].reshape(n, 22, 3)
    R = _expmap(aa)
    if rest == "a_pose":
        R = change_rest(R, "a_pose")
    elif rest != "t_pose":
        raise ValueError(f"load_pose_file: unknown rest '{rest}'; use 't_pose' or 'a_pose'")
    return torch.as_tensor(R, dtype=dtype)


# ---------------------------------------------------------------------- self-intersection
SEGMENTS: dict[str, tuple[str, ...]] = {
    "torso": ("pelvis", "spine1", "spine2", "spine3", "left_collar", "right_collar"),
    "head": ("neck", "head"),
    **{f"{s}_{seg}": tuple(f"{s}_{j}" for j in joints) for s in ("left", "right")
       for seg, joints in (("upper_arm", ("shoulder",)), ("forearm", ("elbow",)),
                           ("hand", ("wrist", "hand")), ("thigh", ("hip",)),
                           ("shin", ("knee",)), ("foot", ("ankle", "foot")))},
}
"""Rigid-ish body segments for the self-intersection test, as groups of skinning joints.
(Anny-24's own ``vertex_parts`` only separate body / head / hands / feet, too coarse for
telling an arm from the torso, so segments come from the skinning weights.)"""

ADJACENT_SEGMENTS: tuple[tuple[str, str], ...] = (
    ("torso", "head"),
    *((a.format(s), b.format(s)) for s in ("left", "right") for a, b in (
        ("torso", "{}_upper_arm"), ("{}_upper_arm", "{}_forearm"), ("{}_forearm", "{}_hand"),
        ("torso", "{}_thigh"), ("{}_thigh", "{}_shin"), ("{}_shin", "{}_foot"),
    )),
)
"""Segment pairs joined at a joint: their skin blends there, so they are not tested."""


def vertex_segments(lbs_weights) -> tuple[np.ndarray, np.ndarray]:
    """Segment of every vertex: (V,) index into :data:`SEGMENTS` holding most of its skinning
    weight (``lbs_weights`` (V, 24)), and (V,) that weight."""
    weights = _as_numpy(lbs_weights)
    seg_of_joint = np.zeros((NUM_JOINTS, len(SEGMENTS)))
    for s, joints in enumerate(SEGMENTS.values()):
        for j in joints:
            seg_of_joint[_J[j], s] = 1.0
    seg_w = weights @ seg_of_joint
    return seg_w.argmax(1), seg_w.max(1)


class SelfIntersection:
    """Cheap self-penetration test of posed bodies.

    Criterion: every vertex is given the segment (:data:`SEGMENTS`) that holds most of its
    skinning weight; vertices with at least ``core_weight`` of it are *core* vertices.  For
    each pair of segments that are not adjacent (:data:`ADJACENT_SEGMENTS`) and whose
    bounding boxes overlap, each core vertex ``v`` of one is matched to the nearest vertex
    ``w`` of the other (``scipy.spatial.cKDTree``), and ``v`` penetrates when it lies behind
    the other surface, ``(v - w) . n_w < -depth`` (``n_w``: area-weighted vertex normal)
    while ``|v - w| < reach``.  A pose intersects itself when at least ``min_vertices``
    vertices penetrate.  Touching (hands on hips, arms crossed, sitting on heels) passes;
    limbs sunk deeper than ``depth`` into another segment do not.

    Cost on Anny-24's decimated mesh (1,229 vertices, 14 segments), one CPU core: about
    1.1 ms per pose for the test plus 0.1 ms for posing it (batched).  Rejection rate of the
    default :class:`PoseSampler` (noise 8 deg, interpolation 1/2): about 10 % of the poses
    (2 % without noise, 6.5 % at 4 deg, 15 % at 12 deg); mostly hands and forearms sunk in
    the thighs or the torso after noise or interpolation.  Every key pose passes.

    Args:
        body: a :class:`~hmrkit.body.model.BodyModel`, its data, or a name for
            :func:`hmrkit.body.load_body_model` (default ``"anny24"``).
        depth: penetration depth in metres counted as intersecting.
        reach: largest vertex distance searched (metres).
        min_vertices: penetrating vertices that make a pose intersect.
        core_weight: skin weight of its segment for a vertex to be tested.
    """

    def __init__(self, body=None, depth: float = 0.015, reach: float = 0.08,
                 min_vertices: int = 3, core_weight: float = 0.9):
        from hmrkit.body import BodyModel, BodyModelData, load_body_model

        if body is None or isinstance(body, str):
            body = load_body_model(body or "anny24")
        elif isinstance(body, BodyModelData):
            body = BodyModel(body)
        self.body = body
        self.depth, self.reach, self.min_vertices = depth, reach, min_vertices
        names = list(SEGMENTS)
        self.segment, weight = vertex_segments(body.lbs_weights)
        self.core = weight >= core_weight
        found = [s for s in range(len(names)) if np.any(self.segment == s)]
        self.members = [np.flatnonzero(self.segment == s) for s in found]
        self.queries = [np.flatnonzero((self.segment == s) & self.core) for s in found]
        names = [names[s] for s in found]
        adjacent = {frozenset(p) for p in ADJACENT_SEGMENTS}
        self.pairs = [
            (a, b) for a in range(len(names)) for b in range(len(names))
            if a != b and frozenset((names[a], names[b])) not in adjacent
            and len(self.queries[a])
        ]
        self.faces = body.faces.detach().cpu().numpy().astype(np.int64)
        self.segment_names = tuple(names)

    def vertices(self, rotations, betas=None) -> np.ndarray:
        """Posed vertices (N, V, 3) of poses (N, 24, 3, 3) (root included) and shapes."""
        p = self.body.v_template
        R = torch.as_tensor(_as_numpy(rotations), dtype=p.dtype, device=p.device)
        if betas is not None:
            betas = torch.as_tensor(betas, dtype=p.dtype, device=p.device)
        with torch.no_grad():
            out = self.body(R[:, 0], R[:, 1:], betas)
        return out.vertices.cpu().double().numpy()

    def _normals(self, v: np.ndarray) -> np.ndarray:
        f = self.faces
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        out = np.zeros_like(v)
        for c in range(3):
            for k in range(3):
                out[:, k] += np.bincount(f[:, c], n[:, k], minlength=len(v))
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def penetrating(self, vertices: np.ndarray) -> np.ndarray:
        """(V,) bool: vertices of one posed body (V, 3) inside a non-adjacent segment."""
        normals = self._normals(vertices)
        lo = np.array([vertices[m].min(0) for m in self.members])
        hi = np.array([vertices[m].max(0) for m in self.members])
        hit = np.zeros(len(vertices), dtype=bool)
        trees: dict[int, cKDTree] = {}
        for a, b in self.pairs:  # a vertex inside segment b lies inside b's bounding box
            if np.any(lo[a] > hi[b]) or np.any(lo[b] > hi[a]):
                continue
            q = self.queries[a]
            pts = vertices[q]
            near = np.all((pts >= lo[b]) & (pts <= hi[b]), axis=1)
            if not np.any(near):
                continue
            if b not in trees:
                trees[b] = cKDTree(vertices[self.members[b]])
            dist, idx = trees[b].query(pts[near], distance_upper_bound=self.reach)
            ok = np.isfinite(dist)
            if not np.any(ok):
                continue
            w = self.members[b][idx[ok]]
            signed = np.einsum("nd,nd->n", pts[near][ok] - vertices[w], normals[w])
            inside = q[near][ok][signed < -self.depth]
            hit[inside] = True
        return hit

    def count(self, rotations, betas=None) -> np.ndarray:
        """(N,) number of penetrating vertices of each pose (N, 24, 3, 3)."""
        verts = self.vertices(rotations, betas)
        return np.array([int(self.penetrating(v).sum()) for v in verts])

    def __call__(self, rotations, betas=None) -> np.ndarray:
        """(N,) True where a pose (N, 24, 3, 3) intersects itself."""
        return self.count(rotations, betas) >= self.min_vertices


# ---------------------------------------------------------------------- sampler
NOISE_SCALE: dict[str, tuple[float, float, float]] = {
    "spine1": (0.5, 0.4, 0.35), "spine2": (0.4, 0.35, 0.3), "spine3": (0.4, 0.35, 0.3),
    "neck": (0.5, 0.5, 0.3), "head": (0.8, 1.0, 0.5), "collar": (0.3, 0.3, 0.4),
    "hip": (1.5, 0.7, 0.8), "knee": (1.5, 0.2, 0.1), "ankle": (0.8, 0.5, 0.5),
    "foot": (0.5, 0.1, 0.1), "shoulder": (1.4, 1.2, 1.2), "elbow": (1.5, 0.8, 0.1),
    "wrist": (1.0, 1.0, 0.6), "hand": (0.6, 0.2, 0.3),
}
"""Per-joint noise standard deviation about the joint's (x, y, z) axes, in units of
``noise_deg``: large for shoulders, hips and the hinge directions of knees and elbows, small
for the spine, collars, feet and hands."""

_SIGMA = np.array([NOISE_SCALE.get(_base(n), (0.0, 0.0, 0.0)) for n in JOINT_NAMES])


def _library(specs: Sequence[Spec]) -> np.ndarray:
    """(P, 24, 3, 3) rotations of key-pose specs."""
    return np.stack([joint_angles_to_rotmat(key_pose_angles(s)) for s in specs])


@functools.lru_cache(maxsize=32)
def _named_library(names: tuple[str, ...]) -> np.ndarray:
    """:func:`_library` of named :data:`KEY_POSES`, cached (samplers are made per scene)."""
    library = _library([KEY_POSES[n] for n in names])
    library.flags.writeable = False
    return library


class PoseSampler:
    """Random poses (N, 24, 3, 3) around the key-pose library, deterministic for a seed.

    Per pose: a key pose (or, with ``pose_pool``, a pool pose with probability
    ``pool_prob``); with probability ``interpolate_prob`` a per-joint slerp towards a second
    key pose with a uniform weight; a left-right mirror with probability 1/2 (``mirror``);
    per-joint noise ``F exp(n) F^T`` with ``n ~ N(0, (noise_deg NOISE_SCALE)^2)`` per axis of
    the joint's anatomical frame; joint limits; optionally self-intersection rejection.  The
    root is always the identity.

    Randomness comes only from a ``numpy.random.Generator`` seeded with ``seed`` (torch's
    global RNG is not touched): the same seed gives the same sequence of :meth:`sample` calls.

    Args:
        seed: seed of the generator.
        key_poses: names of :data:`KEY_POSES` to use, or a dict name -> spec of new ones
            (default: :data:`V1_KEY_POSES`).
        interpolate_prob: probability of slerping towards a second key pose.
        noise_deg: noise scale in degrees per axis, times :data:`NOISE_SCALE` (shoulders
            and hips about 1.2-1.5x, the spine about 0.4x).
        limits: ``True``/``"clamp"``: clamp to the joint limits; ``"reject"``: redraw poses
            outside the limits (up to ``max_tries``, then clamp); ``False``: no limits.
        reject_self_intersection: redraw poses that :class:`SelfIntersection` flags (up to
            ``max_tries``; a pose still failing is replaced by its clean key pose).
        body: body for the self-intersection test (model, data or name; default Anny-24).
        mirror: mirror half of the poses (doubles the library).
        pose_pool: extra poses (P, 24, 3, 3) in the A-pose rest convention, or pose file
            path(s) for :func:`load_pose_file` (SMPL files, converted with
            ``rest=pool_rest``); their root rotation is dropped.
        pool_prob: probability of drawing from ``pose_pool``.
        pool_rest: ``rest`` passed to :func:`load_pose_file` for pool files.
        max_tries: redraws for rejected poses.
    """

    def __init__(
        self,
        seed: int = 0,
        key_poses: Sequence[str] | dict[str, Spec] | None = None,
        interpolate_prob: float = 0.5,
        noise_deg: float = 8.0,
        limits: bool | str = True,
        reject_self_intersection: bool = False,
        body=None,
        mirror: bool = True,
        pose_pool=None,
        pool_prob: float = 0.5,
        pool_rest: str = "a_pose",
        max_tries: int = 10,
    ):
        if limits is True:
            limits = "clamp"
        if limits not in (False, "clamp", "reject"):
            raise ValueError(f"PoseSampler: limits must be True, False, 'clamp' or 'reject', "
                             f"got {limits!r}")
        if isinstance(key_poses, dict):
            specs = dict(key_poses)
        else:
            names = list(V1_KEY_POSES) if key_poses is None else list(key_poses)
            specs = {n: KEY_POSES[n] for n in names if n in KEY_POSES}
            unknown = [n for n in names if n not in KEY_POSES]
            if unknown:
                raise KeyError(f"unknown key poses {unknown}; known: {sorted(KEY_POSES)}")
        if not specs:
            raise ValueError("PoseSampler needs at least one key pose")
        self.names = tuple(specs)
        if isinstance(key_poses, dict):
            self.library = _library(tuple(specs.values()))
        else:
            self.library = _named_library(self.names)
        self.pool = self._pool(pose_pool, pool_rest)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.interpolate_prob = float(interpolate_prob)
        self.noise_deg = float(noise_deg)
        self.limits = limits
        self.mirror = mirror
        self.pool_prob = float(pool_prob) if self.pool is not None else 0.0
        self.max_tries = int(max_tries)
        self.intersection = (
            (body if isinstance(body, SelfIntersection) else SelfIntersection(body))
            if reject_self_intersection else None
        )
        self.stats = {"drawn": 0, "limit_rejected": 0, "intersection_rejected": 0,
                      "intersection_fallbacks": 0, "clamped_joints": 0}

    @staticmethod
    def _pool(pose_pool, pool_rest: str) -> np.ndarray | None:
        if pose_pool is None:
            return None
        if isinstance(pose_pool, (str, os.PathLike)):
            pose_pool = [pose_pool]
        if isinstance(pose_pool, (list, tuple)) and all(
            isinstance(p, (str, os.PathLike)) for p in pose_pool
        ):
            pose_pool = torch.cat([load_pose_file(p, rest=pool_rest, dtype=torch.float64)
                                   for p in pose_pool])
        pool = _as_numpy(pose_pool)
        if pool.ndim != 4 or pool.shape[1:] != (NUM_JOINTS, 3, 3) or len(pool) == 0:
            raise ValueError(f"pose_pool has shape {pool.shape}, expected (P, 24, 3, 3)")
        pool = pool.copy()
        pool[:, 0] = np.eye(3)
        return pool

    # -------------------------------------------------------------- drawing
    def _draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n raw poses (before limits) and the (n, 24, 3, 3) clean pose each came from."""
        rng, K = self.rng, len(self.library)
        first = rng.integers(K, size=n)
        second = rng.integers(K, size=n)
        weight = rng.random(n)
        interp = rng.random(n) < self.interpolate_prob
        use_pool = rng.random(n) < self.pool_prob
        pool_idx = rng.integers(len(self.pool), size=n) if self.pool is not None else None
        flip = (rng.random(n) < 0.5) if self.mirror else np.zeros(n, dtype=bool)
        noise = rng.standard_normal((n, NUM_JOINTS, 3))
        base = self.library[first]
        if np.any(interp):
            base[interp] = slerp(base[interp], self.library[second[interp]],
                                 weight[interp, None])
        if np.any(use_pool):
            base[use_pool] = self.pool[pool_idx[use_pool]]
        clean = self.library[first].copy()
        if np.any(flip):
            base[flip] = mirror_pose(base[flip])
            clean[flip] = mirror_pose(clean[flip])
        rotvec = np.einsum("kij,nkj->nki", JOINT_FRAMES,
                           noise * np.deg2rad(self.noise_deg) * _SIGMA * SIDE_SIGN)
        poses = base @ _expmap(rotvec)
        poses[:, 0] = np.eye(3)
        self.stats["drawn"] += n
        return poses, clean

    def _draw_limited(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        poses, clean = self._draw(n)
        if self.limits == "reject":
            for _ in range(self.max_tries):
                bad = ~within_limits(poses)
                if not np.any(bad):
                    break
                self.stats["limit_rejected"] += int(bad.sum())
                poses[bad], clean[bad] = self._draw(int(bad.sum()))
        if self.limits:
            poses, changed = clamp_to_limits(poses)
            self.stats["clamped_joints"] += int(changed.sum())
        return poses, clean

    def sample_numpy(self, n: int) -> np.ndarray:
        """Like :meth:`sample`, as a float64 numpy array."""
        poses, clean = self._draw_limited(n)
        if self.intersection is not None:
            todo = np.arange(n)
            for _ in range(self.max_tries):
                bad = self.intersection(poses[todo])
                todo = todo[bad]
                if len(todo) == 0:
                    break
                self.stats["intersection_rejected"] += len(todo)
                poses[todo], clean[todo] = self._draw_limited(len(todo))
            else:
                if len(todo):
                    bad = self.intersection(poses[todo])
                    todo = todo[bad]
                    self.stats["intersection_fallbacks"] += len(todo)
                    poses[todo] = clamp_to_limits(clean[todo])[0] if self.limits else clean[todo]
        return poses

    def sample(self, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(n, 24, 3, 3) local rotations, root = identity."""
        return torch.as_tensor(self.sample_numpy(n), dtype=dtype)

    def __repr__(self) -> str:
        return (f"PoseSampler(seed={self.seed}, {len(self.names)} key poses, "
                f"interpolate_prob={self.interpolate_prob}, noise_deg={self.noise_deg}, "
                f"limits={self.limits!r}, mirror={self.mirror}, "
                f"pool={0 if self.pool is None else len(self.pool)}, "
                f"self_intersection={self.intersection is not None})")


def benchmark(n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Poses per second of the default sampler, with and without self-intersection tests."""
    t = time.perf_counter()
    PoseSampler(seed).sample(n)
    plain = n / (time.perf_counter() - t)
    sampler = PoseSampler(seed, reject_self_intersection=True)
    m = max(n // 10, 1)
    t = time.perf_counter()
    sampler.sample(m)
    checked = m / (time.perf_counter() - t)
    return {"poses_per_s": plain, "poses_per_s_self_intersection": checked,
            "intersection_rejected_fraction": sampler.stats["intersection_rejected"]
            / max(sampler.stats["drawn"], 1)}


MEAN_POSE_SAMPLES = 4096
"""Poses averaged by :func:`mean_pose` (with :class:`PoseSampler` seed 0)."""


def mean_pose(samples: int = MEAN_POSE_SAMPLES, seed: int = 0) -> torch.Tensor:
    """(24, 3, 3) float64 mean of the pose distribution: per joint, the rotation closest to the
    average rotation matrix of ``samples`` poses of :class:`PoseSampler` (``seed``). The
    regressors start from it: ``hmrkit/models/weights/mean_pose.npz`` holds it
    (``python -m hmrkit.data.synthetic.poses OUT.npz`` writes it again)."""
    import roma

    poses = PoseSampler(seed=seed).sample(samples).double()
    return roma.special_procrustes(poses.mean(0))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="write the mean pose of the distribution")
    parser.add_argument("out", help="the .npz to write (key 'rotmat', (24, 3, 3) float64)")
    args = parser.parse_args()
    np.savez(args.out, rotmat=mean_pose().numpy(), samples=MEAN_POSE_SAMPLES, seed=0)
    print(f"wrote {args.out}")
