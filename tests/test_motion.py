"""Real-motion readers (BVH, DeepMimic) and the positions -> Anny-24 rotations retarget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hmrkit.body.keypoints import SMPL24_NAMES
from hmrkit.data import motion as M
from hmrkit.data.synthetic import poses as P

J = {n: i for i, n in enumerate(SMPL24_NAMES)}

BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Leg
  {
    OFFSET 1 -2 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 -3 0
    }
  }
  JOINT Chest
  {
    OFFSET 0 2 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT Head
    {
      OFFSET 0 1 0
      CHANNELS 3 Zrotation Yrotation Xrotation
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.1
0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
1 2 3 90 0 0 0 0 0 0 0 90 0 0 0
"""


def test_read_bvh_forward_kinematics_golden(tmp_path):
    path = tmp_path / "clip.bvh"
    path.write_text(BVH)
    names, pos = M.read_bvh(path)
    assert names == ["Hips", "Leg", "Chest", "Head"]  # the end site is no joint
    np.testing.assert_allclose(pos[0], [[0, 0, 0], [1, -2, 0], [0, 2, 0], [0, 3, 0]])
    # frame 1: root at (1, 2, 3) turned 90 deg about z (x -> y); the chest turns its child
    # 90 deg about x on top (y -> z, then the root's z turn leaves z alone)
    Rz = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    np.testing.assert_allclose(pos[1, 1], [1, 2, 3] + Rz @ [1, -2, 0], atol=1e-12)
    np.testing.assert_allclose(pos[1, 2], [1, 2, 3] + Rz @ [0, 2, 0], atol=1e-12)
    np.testing.assert_allclose(pos[1, 3], pos[1, 2] + [0, 0, 1], atol=1e-12)


def test_read_bvh_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "x.bvh"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="x.bvh: not a BVH file"):
        M.read_bvh(bad)
    short = tmp_path / "short.bvh"
    short.write_text(BVH.rsplit("\n", 2)[0])  # the last frame is missing
    with pytest.raises(ValueError, match="short.bvh: expected 2 frames of 15 values"):
        M.read_bvh(short)
    with pytest.raises(ValueError, match="not a CMU skeleton"):
        path = tmp_path / "clip.bvh"
        path.write_text(BVH)
        M.cmu_bvh_to_smpl24(path)


def test_read_deepmimic_rest_and_a_bent_knee():
    rest = [1.0, 0, 0.9, 0] + [1.0, 0, 0, 0]  # duration, root position, root quaternion
    for name in M._DM_LAYOUT:
        rest += [0.0] if name in M._DM_HINGES else [1.0, 0, 0, 0]
    bent = list(rest)
    bent[20] = -np.pi / 2  # right knee: 90 deg about z (the urdf's hinge axis)
    pos = M.read_deepmimic(json.dumps({"Frames": [rest, bent]}))
    s = M.DEEPMIMIC_SCALE
    np.testing.assert_allclose(pos[0, J["pelvis"]], [0, 0.9, 0])
    np.testing.assert_allclose(pos[0, J["right_hip"]], [0, 0.9, 0.339548 * s])
    np.testing.assert_allclose(pos[0, J["right_knee"]] - pos[0, J["right_hip"]],
                               [0, -1.686184 * s, 0])
    np.testing.assert_allclose(pos[0, J["left_shoulder"]],
                               [-0.0962 * s, 0.9 + (0.944604 + 0.974) * s, -0.73244 * s])
    shin = pos[1, J["right_ankle"]] - pos[1, J["right_knee"]]
    np.testing.assert_allclose(shin, [-1.63948 * s, 0, 0], atol=1e-12)  # a -90 deg z turn
    with pytest.raises(ValueError, match="clip: frames have shape \\(1, 3\\)"):
        M.read_deepmimic(json.dumps({"Frames": [[1, 2, 3]]}), "clip")
    with pytest.raises(ValueError, match="clip: not a DeepMimic motion"):
        M.read_deepmimic("{}", "clip")


@pytest.fixture(scope="module")
def anny():
    from hmrkit.body import load_body_model

    body = load_body_model("anny24", dtype=torch.float64)
    return body, body.rest()[1][0].numpy()


def _joints(body, R):
    R = torch.as_tensor(R)
    with torch.no_grad():
        return body(R[:, 0], R[:, 1:]).joints.numpy()


def test_retarget_reproduces_joints_and_hinges(anny):
    """Sampled poses -> joint positions -> rotations -> the same positions; knees and elbows
    come back as turns about their hinge (the twist goes to the hip / shoulder)."""
    body, rest = anny
    R = P.PoseSampler(seed=2).sample_numpy(80)
    R[:, 0] = Rotation.random(80, random_state=0).as_matrix()
    positions = _joints(body, R)
    L = M.rotations_from_positions(positions, rest, M.anny24_hinges(rest))
    np.testing.assert_allclose(_joints(body, L), positions, atol=1e-9)
    assert np.allclose(np.swapaxes(L, -1, -2) @ L, np.eye(3), atol=1e-9)
    angles = P.rotmat_to_joint_angles(L)
    for name in ("left_knee", "right_knee", "left_elbow", "right_elbow"):
        assert np.abs(angles[:, J[name], 1:]).max() < 3.0, name  # no twist, no side bend
    assert P.within_limits(L, tol_deg=1.0).mean() > 0.9
    for leaf in ("head", "left_foot", "right_hand"):
        np.testing.assert_allclose(L[:, J[leaf]], np.eye(3)[None].repeat(80, 0))


def test_place_torso_keeps_limbs_and_is_exact_on_the_rest_skeleton(anny):
    body, rest = anny
    np.testing.assert_allclose(M.place_torso(rest[None], rest)[0], rest, atol=1e-12)
    R = P.PoseSampler(seed=3).sample_numpy(10)
    positions = _joints(body, R) * 1.1 + [0.3, 1.0, -2.0]
    placed = M.place_torso(positions, rest)
    moved = [J[n] for n in ("pelvis", "spine1", "spine2", "spine3", "left_collar",
                            "right_collar")]
    kept = [k for k in range(24) if k not in moved]
    np.testing.assert_array_equal(placed[:, kept], positions[:, kept])
    # the collars sit where the rest skeleton has them relative to the shoulders
    for side in ("left", "right"):
        d = placed[:, J[f"{side}_collar"]] - placed[:, J[f"{side}_shoulder"]]
        rest_d = rest[J[f"{side}_collar"]] - rest[J[f"{side}_shoulder"]]
        np.testing.assert_allclose(np.linalg.norm(d, axis=-1) / np.linalg.norm(rest_d),
                                   np.linalg.norm(positions[:, J["neck"]] - (
                                       positions[:, J["left_hip"]] + positions[:, J["right_hip"]]
                                   ) / 2, axis=-1) / np.linalg.norm(rest[J["neck"]] - (
                                       rest[J["left_hip"]] + rest[J["right_hip"]]) / 2))
