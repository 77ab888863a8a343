"""Real motion as SMPL-24 joint positions, and joint positions as Anny-24 rotations.

Readers for the small motion files that install by package name (see ``docs/poses.md``):

- :func:`read_bvh`: BVH files (Biovision hierarchy), e.g. the CMU clips of the Debian package
  ``assimp-testmodels`` (``/usr/share/assimp/models/BVH/01_01.bvh``); :data:`CMU_TO_SMPL24`
  maps the CMU skeleton's joints onto SMPL's 24-joint tree;
- :func:`read_deepmimic`: the DeepMimic ``humanoid3d_*.txt`` clips of the PyPI ``pybullet``
  wheel (``pybullet_data/data/motions``), on the humanoid of ``pybullet_data/humanoid/
  humanoid.urdf`` (:data:`DEEPMIMIC_OFFSETS`).

Both return joint positions (N, 24, 3) in metres in the file's y-up world; joints the source
skeleton lacks are placed approximately (spine joints between pelvis and neck, collars
between neck and shoulders, hands and toes along the last bone).
:func:`rotations_from_positions` turns positions into local rotations of Anny-24 (its rest
skeleton, A-pose rest): an approximate retarget that reproduces the bone directions, with the
twist of hips and shoulders chosen so that knees and elbows bend about their hinge axes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from hmrkit.body.keypoints import SMPL24_NAMES, SMPL24_PARENTS

_J = {n: i for i, n in enumerate(SMPL24_NAMES)}


# ---------------------------------------------------------------------- BVH
def read_bvh(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Joint names and world positions (frames, joints, 3) of a BVH file (file units).

    Channels are applied in the order the file lists them (rotations intrinsic, as BVH
    defines: ``R = R_c1 R_c2 R_c3``); end sites are skipped.
    """
    path = Path(path)
    tokens = path.read_text().split()
    if not tokens or tokens[0] != "HIERARCHY" or "MOTION" not in tokens:
        raise ValueError(f"{path}: not a BVH file (no HIERARCHY / MOTION sections)")
    names, parents, offsets, channels = [], [], [], []
    stack: list[int] = []
    i = 1
    while tokens[i] != "MOTION":
        t = tokens[i]
        if t in ("ROOT", "JOINT"):
            names.append(tokens[i + 1])
            parents.append(stack[-1] if stack else -1)
            i += 2
        elif t == "End":  # End Site { OFFSET x y z }: no joint
            i += 8
        elif t == "{":
            stack.append(len(names) - 1)
            i += 1
        elif t == "}":
            stack.pop()
            i += 1
        elif t == "OFFSET":
            offsets.append([float(v) for v in tokens[i + 1 : i + 4]])
            i += 4
        elif t == "CHANNELS":
            n = int(tokens[i + 1])
            channels.append(tokens[i + 2 : i + 2 + n])
            i += 2 + n
        else:
            raise ValueError(f"{path}: unexpected token '{t}' in the hierarchy")
    i += 1
    frames = int(tokens[i + 1])  # "Frames: N"
    i += 5  # "Frame Time: dt"
    width = sum(len(c) for c in channels)
    values = np.array(tokens[i : i + frames * width], dtype=np.float64)
    if values.size != frames * width:
        raise ValueError(f"{path}: expected {frames} frames of {width} values, found "
                         f"{values.size} values")
    values = values.reshape(frames, width)
    offsets_arr = np.array(offsets)
    world_rot = np.zeros((frames, len(names), 3, 3))
    world_pos = np.zeros((frames, len(names), 3))
    col = 0
    for j, chans in enumerate(channels):
        local = np.tile(np.eye(3), (frames, 1, 1))
        pos = np.tile(offsets_arr[j], (frames, 1))
        for c in chans:
            v = values[:, col]
            col += 1
            if c.endswith("position"):
                pos[:, "XYZ".index(c[0])] = v + offsets_arr[j]["XYZ".index(c[0])]
            else:
                turn = Rotation.from_euler(c[0].lower(), v[:, None], degrees=True)
                local = local @ turn.as_matrix()
        p = parents[j]
        if p < 0:
            world_rot[:, j], world_pos[:, j] = local, pos
        else:
            world_rot[:, j] = world_rot[:, p] @ local
            world_pos[:, j] = world_pos[:, p] + np.einsum("nij,nj->ni", world_rot[:, p], pos)
    return names, world_pos


CMU_TO_SMPL24 = {
    "left_hip": "LeftUpLeg", "left_knee": "LeftLeg", "left_ankle": "LeftFoot",
    "left_foot": "LeftToeBase", "right_hip": "RightUpLeg", "right_knee": "RightLeg",
    "right_ankle": "RightFoot", "right_foot": "RightToeBase", "spine1": "Spine",
    "spine2": "Spine1", "neck": "Neck", "head": "Head", "left_collar": "LeftShoulder",
    "left_shoulder": "LeftArm", "left_elbow": "LeftForeArm", "left_wrist": "LeftHand",
    "left_hand": "LeftFingerBase", "right_collar": "RightShoulder", "right_shoulder": "RightArm",
    "right_elbow": "RightForeArm", "right_wrist": "RightHand", "right_hand": "RightFingerBase",
}
"""SMPL-24 joint -> joint of the CMU BVH skeleton (pelvis: between the hips; spine3: between
``Spine1`` and ``Neck``; use :func:`place_torso` before retargeting)."""

CMU_UNIT = 0.056444
"""Metres per unit of the CMU BVH conversion (inches times the ASF scale 0.45 / 0.2032...)."""


def cmu_bvh_to_smpl24(path: str | Path) -> np.ndarray:
    """SMPL-24 joint positions (N, 24, 3) in metres of a CMU BVH clip."""
    names, pos = read_bvh(path)
    index = {n: i for i, n in enumerate(names)}
    missing = [b for b in CMU_TO_SMPL24.values() if b not in index]
    if missing:
        raise ValueError(f"{path}: not a CMU skeleton (missing joints {missing})")
    out = np.zeros((len(pos), 24, 3))
    for smpl, bvh in CMU_TO_SMPL24.items():
        out[:, _J[smpl]] = pos[:, index[bvh]]
    out[:, _J["pelvis"]] = (out[:, _J["left_hip"]] + out[:, _J["right_hip"]]) / 2
    out[:, _J["spine3"]] = (out[:, _J["spine2"]] + out[:, _J["neck"]]) / 2
    return out * CMU_UNIT


# ---------------------------------------------------------------------- DeepMimic
DEEPMIMIC_OFFSETS = {  # joint: (parent, offset in the parent's frame), humanoid.urdf x 0.25
    "chest": ("root", (0.0, 0.944604, 0.0)), "neck": ("chest", (0.0, 0.895576, 0.0)),
    "right_hip": ("root", (0.0, 0.0, 0.339548)), "right_knee": ("right_hip", (0, -1.686184, 0)),
    "right_ankle": ("right_knee", (0.0, -1.63948, 0.0)),
    "right_shoulder": ("chest", (-0.0962, 0.974, 0.73244)),
    "right_elbow": ("right_shoulder", (0.0, -1.099152, 0.0)),
    "right_wrist": ("right_elbow", (0.0, -1.035788, 0.0)),
    "left_hip": ("root", (0.0, 0.0, -0.339548)), "left_knee": ("left_hip", (0, -1.686184, 0)),
    "left_ankle": ("left_knee", (0.0, -1.63948, 0.0)),
    "left_shoulder": ("chest", (-0.0962, 0.974, -0.73244)),
    "left_elbow": ("left_shoulder", (0.0, -1.099152, 0.0)),
    "left_wrist": ("left_elbow", (0.0, -1.035788, 0.0)),
}
"""The DeepMimic humanoid (``humanoid.urdf``, loaded at scale 0.25): x forward, y up, z to
its right."""
DEEPMIMIC_SCALE = 0.25
_DM_LAYOUT = ("chest", "neck", "right_hip", "right_knee", "right_ankle", "right_shoulder",
              "right_elbow", "left_hip", "left_knee", "left_ankle", "left_shoulder", "left_elbow")
_DM_HINGES = ("right_knee", "right_elbow", "left_knee", "left_elbow")


def read_deepmimic(text: str, source: str = "motion") -> np.ndarray:
    """SMPL-24 joint positions (N, 24, 3) in metres of a DeepMimic humanoid3d motion (the
    JSON text: ``Frames`` of 44 values: duration, root position, root quaternion (w, x, y, z),
    then per joint of :data:`_DM_LAYOUT` a quaternion, or an angle about z for knees and
    elbows)."""
    import json

    try:
        frames = np.asarray(json.loads(text)["Frames"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{source}: not a DeepMimic motion ({err})") from err
    if frames.ndim != 2 or frames.shape[1] != 44:
        raise ValueError(f"{source}: frames have shape {frames.shape}, expected (N, 44)")
    n = len(frames)

    def quat(c):  # (w, x, y, z) -> matrices
        return Rotation.from_quat(frames[:, [c + 1, c + 2, c + 3, c]]).as_matrix()

    local = {"root": quat(4)}
    col = 8
    for name in _DM_LAYOUT:
        if name in _DM_HINGES:
            local[name] = Rotation.from_euler("z", frames[:, col, None]).as_matrix()
            col += 1
        else:
            local[name] = quat(col)
            col += 4
    rot = {"root": local["root"]}
    pos = {"root": frames[:, 1:4]}
    for name, (parent, offset) in DEEPMIMIC_OFFSETS.items():
        off = np.asarray(offset) * DEEPMIMIC_SCALE
        pos[name] = pos[parent] + rot[parent] @ off
        rot[name] = rot[parent] @ local.get(name, np.tile(np.eye(3), (n, 1, 1)))
    out = np.zeros((n, 24, 3))
    for side in ("left", "right"):
        for part in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist"):
            out[:, _J[f"{side}_{part}"]] = pos[f"{side}_{part}"]
        # toes: ahead of the ankle along the foot; hand: on along the forearm
        out[:, _J[f"{side}_foot"]] = pos[f"{side}_ankle"] + rot[f"{side}_ankle"] @ np.array(
            [0.14, -0.045, 0.0])
        fore = pos[f"{side}_wrist"] - pos[f"{side}_elbow"]
        out[:, _J[f"{side}_hand"]] = pos[f"{side}_wrist"] + 0.35 * fore
        out[:, _J[f"{side}_collar"]] = (pos["neck"] + 2 * pos[f"{side}_shoulder"]) / 3
    out[:, _J["pelvis"]] = pos["root"]
    chest = pos["chest"]
    out[:, _J["spine1"]] = pos["root"] + 0.45 * (chest - pos["root"])
    out[:, _J["spine2"]] = chest
    out[:, _J["spine3"]] = chest + 0.5 * (pos["neck"] - chest)
    out[:, _J["neck"]] = pos["neck"]
    out[:, _J["head"]] = pos["neck"] + rot["neck"] @ np.array([0.0, 0.1, 0.0])
    return out


# ---------------------------------------------------------------------- retarget
_CHILDREN = [[c for c, p in enumerate(SMPL24_PARENTS) if p == k] for k in range(24)]
_HINGED = {_J["left_hip"]: _J["left_knee"], _J["right_hip"]: _J["right_knee"],
           _J["left_shoulder"]: _J["left_elbow"], _J["right_shoulder"]: _J["right_elbow"]}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _swing(u: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Shortest rotations (N, 3, 3) taking unit vectors u (N, 3) to d (N, 3)."""
    axis = np.cross(u, d)
    sin = np.linalg.norm(axis, axis=-1)
    cos = np.sum(u * d, -1)
    angle = np.arctan2(sin, cos)
    fallback = np.cross(u, np.where(np.abs(u[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
    axis = np.where(sin[:, None] > 1e-9, axis / np.maximum(sin, 1e-12)[:, None], _unit(fallback))
    return Rotation.from_rotvec(axis * angle[:, None]).as_matrix()


def _kabsch(rest: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotations (N, 3, 3) best mapping rest vectors (K, 3) onto target vectors (N, K, 3)."""
    H = np.einsum("ki,nkj->nij", rest, target)
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.tile(np.eye(3), (len(H), 1, 1))
    D[:, 2, 2] = d
    return np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)


def _hinge_local(s: np.ndarray, t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local rotations (..., 3, 3) of a hinge joint taking its rest bone ``s`` (3,) onto
    ``t`` (..., 3) (parent frame): the turn about the hinge axis ``h`` (3,) that best does
    it, then the shortest swing left to reach ``t`` exactly; and the turn's angle (...,)."""
    ps = s - (s @ h) * h
    pt = t - (t @ h)[..., None] * h
    angle = np.arctan2(np.cross(ps, pt) @ h, pt @ ps)
    turn = Rotation.from_rotvec((angle[..., None] * h).reshape(-1, 3)).as_matrix()
    turn = turn.reshape(*angle.shape, 3, 3)
    a = turn @ s
    swing = _swing(a.reshape(-1, 3), t.reshape(-1, 3)).reshape(turn.shape)
    return swing @ turn, angle


def _best_twist(G: np.ndarray, d: np.ndarray, s_rest: np.ndarray, d_child: np.ndarray,
                hinge: np.ndarray, flexion: tuple[float, float]) -> np.ndarray:
    """World rotations (N, 3, 3) ``T(d, psi) G`` of a joint, twisted about its bone ``d`` so
    that its child's bone ``d_child`` is reached by a turn about the child's hinge axis
    (within ``flexion``, degrees) with as little extra swing as possible, and little twist
    (grid of 5 degrees, then of 0.5)."""
    lo, hi = np.deg2rad(flexion)
    best = np.zeros(len(G))
    for step, span in ((5.0, 180.0), (0.5, 5.0)):
        cand = best[:, None] + np.deg2rad(np.arange(-span, span, step))[None]  # (N, M)
        Gk = np.einsum("nmij,njk->nmik", _about_each(d, cand), G)
        t = np.einsum("nmji,nj->nmi", Gk, d_child)  # the child's bone in the joint's frame
        ps = s_rest - (s_rest @ hinge) * hinge
        pt = t - (t @ hinge)[..., None] * hinge
        angle = np.arctan2(np.cross(ps, pt) @ hinge, pt @ ps)
        off_cone = (t @ hinge - s_rest @ hinge) ** 2
        outside = np.maximum(lo - angle, 0) + np.maximum(angle - hi, 0)
        cost = off_cone + outside**2 + 1e-3 * cand**2
        best = cand[np.arange(len(G)), cost.argmin(1)]
    return np.einsum("nij,njk->nik", _about_each(d, best[:, None])[:, 0], G)


def _about_each(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotations (N, M, 3, 3) by angles (N, M) about unit axes (N, 3)."""
    rotvec = axis[:, None, :] * angle[..., None]
    return Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(*rotvec.shape, 3)


def rotations_from_positions(positions: np.ndarray, rest_joints: np.ndarray,
                             hinges: dict[int, tuple[np.ndarray, tuple[float, float]]]
                             ) -> np.ndarray:
    """Local rotations (N, 24, 3, 3) whose forward kinematics on ``rest_joints`` (24, 3)
    points every bone along the bones of ``positions`` (N, 24, 3).

    Joints with several children (pelvis, spine3) take the rotation that best aligns the
    directions to their children (Kabsch); every other joint takes the shortest swing from
    its parent, except hips and shoulders, whose twist about the bone is chosen so that the
    knee or elbow below turns about its rest hinge axis, within its flexion range, as nearly
    as the target allows (``hinges``: hip / shoulder joint -> ((3,) axis of positive flexion
    of the knee / elbow in the rest frame, (low, high) flexion in degrees)).  Leaf
    joints keep the identity.  Bone lengths are the rest skeleton's, so joint positions are
    reproduced up to them.
    """
    P = np.asarray(positions, dtype=np.float64)
    n = len(P)
    rest = np.asarray(rest_joints, dtype=np.float64)
    world = np.zeros((n, 24, 3, 3))
    local = np.tile(np.eye(3), (n, 24, 1, 1))
    for k in range(24):
        parent = SMPL24_PARENTS[k]
        G_parent = world[:, parent] if parent >= 0 else np.tile(np.eye(3), (n, 1, 1))
        children = _CHILDREN[k]
        if not children:
            world[:, k] = G_parent
            continue
        if len(children) > 1:
            r = _unit(rest[children] - rest[k])
            G = _kabsch(r, _unit(P[:, children] - P[:, k, None]))
        elif parent in _HINGED:  # knee, elbow: a turn about the hinge (see _best_twist)
            c = children[0]
            u = _unit(rest[c] - rest[k])
            t = np.einsum("nji,nj->ni", G_parent, _unit(P[:, c] - P[:, k]))
            G = G_parent @ _hinge_local(u, t, hinges[parent][0])[0]
        else:
            c = children[0]
            u = _unit(rest[c] - rest[k])
            d = _unit(P[:, c] - P[:, k])
            G = _swing(np.einsum("nij,j->ni", G_parent, u), d) @ G_parent
            if k in _HINGED:
                grand = _CHILDREN[c][0]
                G = _best_twist(G, d, _unit(rest[grand] - rest[c]),
                                _unit(P[:, grand] - P[:, c]), *hinges[k])
        world[:, k] = G
        local[:, k] = np.swapaxes(G_parent, -1, -2) @ G
    return local


def anny24_hinges(rest_joints: np.ndarray) -> dict[int, tuple[np.ndarray, tuple[float, float]]]:
    """:func:`rotations_from_positions`'s ``hinges`` for Anny-24: knees flex about the body's x
    axis, elbows about the normal of the rest upper arm / forearm plane (the x axes of
    :data:`~hmrkit.data.synthetic.poses.JOINT_FRAMES`), within the flexion ranges of
    :data:`~hmrkit.data.synthetic.poses.JOINT_LIMITS`; keyed by the hip / shoulder above."""
    from hmrkit.data.synthetic.poses import JOINT_FRAMES, JOINT_LIMITS

    out = {}
    for side in ("left", "right"):
        out[_J[f"{side}_hip"]] = (np.array([1.0, 0, 0]), JOINT_LIMITS["knee"][0])
        axis = JOINT_FRAMES[_J[f"{side}_elbow"]][:, 0]
        u = rest_joints[_J[f"{side}_elbow"]] - rest_joints[_J[f"{side}_shoulder"]]
        f = rest_joints[_J[f"{side}_wrist"]] - rest_joints[_J[f"{side}_elbow"]]
        if np.dot(np.cross(u, f), axis) < 0:  # positive flexion folds the forearm in
            axis = -axis
        out[_J[f"{side}_shoulder"]] = (axis, JOINT_LIMITS["elbow"][0])
    return out


def _torso_frame(P: np.ndarray, left: str, right: str) -> np.ndarray:
    """Frames (..., 3, 3) (columns: left, up, forward) from the ``left`` - ``right`` joints
    and the pelvis -> neck direction."""
    up = _unit(P[..., _J["neck"], :] - P[..., _J["pelvis"], :])
    lat = P[..., _J[left], :] - P[..., _J[right], :]
    lat = _unit(lat - np.sum(lat * up, -1, keepdims=True) * up)
    return np.stack([lat, up, np.cross(lat, up)], axis=-1)


def place_torso(positions: np.ndarray, rest_joints: np.ndarray) -> np.ndarray:
    """Positions (N, 24, 3) with the pelvis, spine1-3 and collars replaced by copies of the
    rest skeleton's (``rest_joints`` (24, 3)), scaled to the pelvis -> neck length: the lower
    part turned with the hips, spine3 (from the neck) and the collars (from the shoulders,
    so that collars do not shrug) with the shoulders (about the pelvis -> neck axis), spine2
    in between.  Skeletons place these joints differently (the CMU
    collars start at the neck, DeepMimic has one chest joint); this puts every source's in
    the same place relative to hips, shoulders and neck before
    :func:`rotations_from_positions`."""
    P = np.array(positions, dtype=np.float64)
    rest = np.asarray(rest_joints, dtype=np.float64)
    hips = (P[:, _J["left_hip"]] + P[:, _J["right_hip"]]) / 2
    rest_hips = (rest[_J["left_hip"]] + rest[_J["right_hip"]]) / 2
    scale = (np.linalg.norm(P[:, _J["neck"]] - hips, axis=-1)
             / np.linalg.norm(rest[_J["neck"]] - rest_hips))[:, None]
    low = _torso_frame(P, "left_hip", "right_hip") @ _torso_frame(rest, "left_hip",
                                                                   "right_hip").T
    high = _torso_frame(P, "left_shoulder", "right_shoulder") @ _torso_frame(
        rest, "left_shoulder", "right_shoulder").T
    U, _, Vt = np.linalg.svd(low + high)
    mid = U @ Vt  # the rotation nearest to the mean of the two
    P[:, _J["pelvis"]] = hips + scale * (low @ (rest[_J["pelvis"]] - rest_hips))
    P[:, _J["spine1"]] = hips + scale * (low @ (rest[_J["spine1"]] - rest_hips))
    P[:, _J["spine2"]] = hips + scale * (mid @ (rest[_J["spine2"]] - rest_hips))
    P[:, _J["spine3"]] = P[:, _J["neck"]] + scale * (high @ (rest[_J["spine3"]]
                                                             - rest[_J["neck"]]))
    for side in ("left", "right"):  # collars rigid with the shoulders (no shrug)
        shoulder, collar = _J[f"{side}_shoulder"], _J[f"{side}_collar"]
        P[:, collar] = P[:, shoulder] + scale * (high @ (rest[collar] - rest[shoulder]))
    return P


def deepmimic_clips(wheel: str | Path) -> dict[str, np.ndarray]:
    """Every ``humanoid3d_*.txt`` clip of a pybullet wheel (read from the zip), as SMPL-24
    positions, keyed by clip name."""
    import zipfile

    out = {}
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            m = re.fullmatch(r"pybullet_data/data/motions/humanoid3d_(\w+)\.txt", name)
            if m:
                out[m.group(1)] = read_deepmimic(z.read(name).decode(), f"{wheel}:{name}")
    if not out:
        raise ValueError(f"{wheel}: no pybullet_data/data/motions/humanoid3d_*.txt clips")
    return out
