"""The pose sampler: key poses, conventions on the posed Anny-24 body, limits, files, intersections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hmrkit.body.keypoints import SMPL24_NAMES
from hmrkit.data.synthetic import poses as P

J = {n: i for i, n in enumerate(SMPL24_NAMES)}


def _anny24_file_exists() -> bool:
    try:
        from hmrkit.body.anny24 import data_file

        return data_file("anny24_decimated.npz").exists()
    except ImportError:
        return False


needs_anny24 = pytest.mark.skipif(
    not _anny24_file_exists(),
    reason="Anny-24 data file hmrkit/body/data/anny24_decimated.npz not built yet",
)


@pytest.fixture(scope="module")
def body():
    from hmrkit.body import load_body_model

    return load_body_model("anny24", dtype=torch.float64)


@pytest.fixture(scope="module")
def checker(body):
    return P.SelfIntersection(body)


def pose_joints(body, rotations) -> np.ndarray:
    R = torch.as_tensor(np.asarray(rotations), dtype=torch.float64)
    if R.ndim == 3:
        R = R[None]
    with torch.no_grad():
        return body(R[:, 0], R[:, 1:]).joints.numpy()


def spec_joints(body, spec: dict) -> np.ndarray:
    return pose_joints(body, P.joint_angles_to_rotmat(P.key_pose_angles(spec)))[0]


def assert_rotations(R, tol=1e-5):
    R = torch.as_tensor(R, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    assert (R.transpose(-1, -2) @ R - eye).abs().max() < tol
    assert (torch.linalg.det(R) - 1).abs().max() < tol


# ---------------------------------------------------------------------- angles and frames
def test_euler_convention_matches_scipy_intrinsic_xzy():
    rng = np.random.default_rng(0)
    ang = rng.uniform(-170, 170, (500, 3))
    ang[:, 2] = rng.uniform(-89, 89, 500)
    R = P.euler_to_rotmat(ang)
    ref = Rotation.from_euler("XZY", ang[:, [0, 2, 1]], degrees=True).as_matrix()
    np.testing.assert_allclose(R, ref, atol=1e-12)
    np.testing.assert_allclose(P.rotmat_to_euler(R), ang, atol=1e-9)
    # gimbal lock: still an exact representation
    lock = P.euler_to_rotmat(np.array([[30.0, 20.0, 90.0], [0.0, -40.0, -90.0]]))
    np.testing.assert_allclose(P.euler_to_rotmat(P.rotmat_to_euler(lock)), lock, atol=1e-9)


def test_joint_frames_are_rotations_and_mirror_each_other():
    F = P.JOINT_FRAMES
    assert_rotations(F, 1e-12)
    left = [J[n] for n in SMPL24_NAMES if n.startswith("left_")]
    right = [P.FLIP[k] for k in left]
    np.testing.assert_allclose(F[right], P.MIRROR @ F[left] @ np.diag([-1.0, 1, 1]), atol=1e-12)


def test_joint_angles_round_trip_and_mirror_rule():
    rng = np.random.default_rng(1)
    A = rng.uniform(-80, 80, (50, 24, 3))
    A[:, 0] = 0
    R = P.joint_angles_to_rotmat(A)
    np.testing.assert_allclose(P.rotmat_to_joint_angles(R), A, atol=1e-9)
    # written angles are mirrored: the mirror pose has the partner's numbers (central: x, -y, -z)
    expected = A[:, P.FLIP].copy()
    central = [J[n] for n in SMPL24_NAMES if not n.startswith(("left_", "right_"))]
    expected[:, central, 1:] *= -1
    np.testing.assert_allclose(P.rotmat_to_joint_angles(P.mirror_pose(R)), expected, atol=1e-9)


def test_mirror_of_mirror_is_identity_numpy_and_torch():
    R = Rotation.random(10 * 24, random_state=2).as_matrix().reshape(10, 24, 3, 3)
    np.testing.assert_allclose(P.mirror_pose(P.mirror_pose(R)), R, atol=1e-15)
    T = torch.as_tensor(R, dtype=torch.float32)
    assert torch.equal(P.mirror_pose(P.mirror_pose(T)), T)
    assert not np.allclose(P.mirror_pose(R), R)


def test_slerp_endpoints_and_midpoint():
    A = Rotation.random(20, random_state=3).as_matrix()
    B = Rotation.random(20, random_state=4).as_matrix()
    np.testing.assert_allclose(P.slerp(A, B, 0.0), A, atol=1e-12)
    np.testing.assert_allclose(P.slerp(A, B, np.ones(20)), B, atol=1e-9)
    M = P.slerp(A, B, 0.5)
    d = lambda X, Y: Rotation.from_matrix(np.swapaxes(X, -1, -2) @ Y).magnitude()  # noqa: E731
    np.testing.assert_allclose(d(A, M), d(M, B), atol=1e-9)


def test_change_rest_round_trip_and_t_pose():
    K = P.key_poses(dtype=torch.float64).numpy()
    back = P.change_rest(P.change_rest(K, "t_pose"), "a_pose")
    np.testing.assert_allclose(back, K, atol=1e-12)
    # the T-pose key pose is (nearly) SMPL's zero pose
    T = P.key_pose("t_pose", rest="t_pose", dtype=torch.float64).numpy()
    angles = np.rad2deg(Rotation.from_matrix(T).magnitude())
    assert angles.max() < 1.0, angles
    with pytest.raises(ValueError, match="rest"):
        P.change_rest(K, "x_pose")


# ---------------------------------------------------------------------- key poses
REQUIRED = [
    "rest", "stand_relaxed", "hands_on_hips", "arms_crossed", "t_pose", "walk_contact",
    "walk_down", "walk_passing", "walk_up", "run_contact", "run_down", "run_push_off",
    "run_float", "sit_chair", "sit_floor_cross_legged", "squat", "kneel_one_knee",
    "kneel_two_knees", "reach_forward", "reach_up", "reach_side", "reach_floor", "arms_raised",
    "wave", "bend_forward", "side_bend", "lunge_front", "lunge_side", "jump_tuck", "throw",
    "crouch",
]


def test_key_pose_library():
    assert len(P.KEY_POSES) >= 25
    assert not set(REQUIRED) - set(P.KEY_POSES)
    K = P.key_poses()
    assert K.shape == (len(P.KEY_POSES), 24, 3, 3) and K.dtype == torch.float32
    assert_rotations(K)
    assert torch.equal(K[:, 0], torch.eye(3).expand(len(K), 3, 3))
    assert torch.equal(P.key_pose("rest"), torch.eye(3).expand(24, 3, 3))
    # distinct poses
    flat = K.reshape(len(K), -1)
    assert torch.cdist(flat, flat).add(torch.eye(len(K)) * 10).min() > 0.1
    with pytest.raises(KeyError, match="unknown key pose"):
        P.key_pose("moonwalk")
    with pytest.raises(KeyError, match="knee_cap"):
        P.key_pose({"knee_cap": (1, 2, 3)})


def test_key_poses_within_limits():
    K = P.key_poses(dtype=torch.float64).numpy()
    violation = P.limit_violation(K)
    bad = {n: violation[i].max() for i, n in enumerate(P.KEY_POSES) if violation[i].max() > 0}
    assert not bad
    clamped, changed = P.clamp_to_limits(K)
    assert not changed.any() and np.array_equal(clamped, K)


# ---------------------------------------------------------------------- limits
def test_clamp_random_rotations_into_limits():
    R = Rotation.random(300 * 24, random_state=5).as_matrix().reshape(300, 24, 3, 3)
    R[:, 0] = np.eye(3)
    assert not P.within_limits(R).any()
    C, changed = P.clamp_to_limits(R)
    assert_rotations(C, 1e-9)
    assert P.within_limits(C, tol_deg=1e-6).all()
    assert changed[:, 1:].mean() > 0.5
    np.testing.assert_array_equal(C[~changed], R[~changed])  # within-limit joints untouched
    C2, changed2 = P.clamp_to_limits(C)  # idempotent
    np.testing.assert_allclose(C2, C, atol=1e-9)
    # torch in, torch out
    Ct, _ = P.clamp_to_limits(torch.as_tensor(R[:5]))
    assert isinstance(Ct, torch.Tensor) and Ct.dtype == torch.float64


def test_knees_and_elbows_hinge_one_way():
    bent_back = P.key_pose_angles({"left_knee": (-60, 0, 0), "right_elbow": (-120, 0, 0),
                                   "left_elbow": (60, 40, 30)})
    C, _ = P.clamp_to_limits(P.joint_angles_to_rotmat(bent_back)[None])
    ang = P.rotmat_to_joint_angles(C)[0]
    lo_k, lo_e = P.JOINT_LIMITS["knee"][0][0], P.JOINT_LIMITS["elbow"][0][0]
    np.testing.assert_allclose(ang[J["left_knee"]], [lo_k, 0, 0], atol=1e-9)
    np.testing.assert_allclose(ang[J["right_elbow"]], [lo_e, 0, 0], atol=1e-9)
    np.testing.assert_allclose(ang[J["left_elbow"]], [60, 40, P.JOINT_LIMITS["elbow"][2][1]],
                               atol=1e-9)


def test_shoulder_swing_twist_limit():
    k = J["left_shoulder"]
    u = P.JOINT_FRAMES[k][:, 1]
    behind = np.array([-0.3, -0.3, -0.9]) / np.linalg.norm([-0.3, -0.3, -0.9])
    R = np.tile(np.eye(3), (24, 1, 1))
    R[k] = P._swing(u, behind)  # arm pointing behind the back, towards the other side
    C, changed = P.clamp_to_limits(R[None])
    assert changed[0, k] and P.within_limits(C, 1e-6).all()
    d = C[0, k] @ u
    axis = np.array(P.SHOULDER_LIMIT.cone_axis) / np.linalg.norm(P.SHOULDER_LIMIT.cone_axis)
    np.testing.assert_allclose(np.rad2deg(np.arccos(d @ axis)), P.SHOULDER_LIMIT.cone_deg,
                               atol=1e-6)
    # a twist beyond the range is clipped, the direction kept
    R[k] = Rotation.from_rotvec(u * np.deg2rad(150)).as_matrix()
    C, _ = P.clamp_to_limits(R[None])
    d, twist = P.swing_twist(C[0, k], u)
    np.testing.assert_allclose(d, u, atol=1e-9)
    np.testing.assert_allclose(np.rad2deg(twist), P.SHOULDER_LIMIT.twist_deg[1], atol=1e-6)


# ---------------------------------------------------------------------- sampler
def test_sampler_is_deterministic_and_independent_of_torch_rng():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = P.PoseSampler(seed=3).sample(64)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)
    b = P.PoseSampler(seed=3).sample(64)
    assert torch.equal(a, b)
    s1, s2 = P.PoseSampler(seed=3), P.PoseSampler(seed=3)
    first, second = s1.sample(32), s1.sample(32)
    assert (first - second).abs().max() > 0.1  # consecutive calls move on
    assert torch.equal(s2.sample(32), first) and torch.equal(s2.sample(32), second)
    c = P.PoseSampler(seed=4).sample(64)
    assert (a - c).abs().max() > 0.1


def test_sampler_outputs_rotations_with_identity_root():
    s = P.PoseSampler(seed=0)
    R = s.sample(500)
    assert R.shape == (500, 24, 3, 3) and R.dtype == torch.float32
    assert_rotations(R, 1e-5)
    assert torch.equal(R[:, 0], torch.eye(3).expand(500, 3, 3))
    assert s.sample(4, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("limits", [True, "reject"])
def test_sampler_respects_limits(limits):
    for noise in (8.0, 40.0):
        s = P.PoseSampler(seed=1, noise_deg=noise, limits=limits)
        assert P.within_limits(s.sample_numpy(400), tol_deg=1e-6).all()
    assert P.within_limits(P.PoseSampler(seed=1).sample(400), tol_deg=1e-2).all()


def test_sampler_without_limits_can_leave_them_and_options():
    wild = P.PoseSampler(seed=1, noise_deg=40.0, limits=False).sample_numpy(400)
    assert not P.within_limits(wild).all()
    with pytest.raises(ValueError, match="limits"):
        P.PoseSampler(limits="soft")
    with pytest.raises(KeyError, match="unknown key poses"):
        P.PoseSampler(key_poses=["squat", "moonwalk"])


def test_sampler_without_noise_returns_key_poses_and_mirrors():
    K = P.key_poses(["squat", "throw"], dtype=torch.float64).numpy()
    s = P.PoseSampler(seed=0, key_poses=["squat", "throw"], interpolate_prob=0.0,
                      noise_deg=0.0)
    out = s.sample_numpy(40)
    candidates = np.concatenate([K, P.mirror_pose(K)])
    dist = np.abs(out[:, None] - candidates[None]).max(axis=(2, 3, 4))
    assert dist.min(1).max() < 1e-12
    assert set(dist.argmin(1)) >= {0, 1, 3}  # both poses, the asymmetric one on both sides
    # custom key poses as specs
    custom = P.PoseSampler(key_poses={"bow": {"spine1": (30, 0, 0)}}, noise_deg=0.0,
                           mirror=False).sample_numpy(3)
    np.testing.assert_allclose(P.rotmat_to_joint_angles(custom)[:, J["spine1"]],
                               [[30, 0, 0]] * 3, atol=1e-9)


def test_sampler_interpolates_between_key_poses():
    s = P.PoseSampler(seed=0, key_poses=["rest", "t_pose"], interpolate_prob=1.0,
                      noise_deg=0.0, mirror=False)
    z = P.rotmat_to_joint_angles(s.sample_numpy(200))[:, J["left_shoulder"]]
    # in between the two key poses, not only at the ends
    assert ((np.abs(z) > 1) & (np.abs(z - P.rotmat_to_joint_angles(
        P.key_pose("t_pose", dtype=torch.float64).numpy())[J["left_shoulder"]]) > 1)).any(1).mean() > 0.3


def test_random_yaw():
    R = P.random_yaw(50, seed=0)
    assert_rotations(R)
    assert torch.allclose(R[:, 1], torch.tensor([0.0, 1.0, 0.0]).expand(50, 3))
    assert torch.equal(R, P.random_yaw(50, seed=0))
    assert not torch.equal(R, P.random_yaw(50, seed=1))


# ---------------------------------------------------------------------- pose files
def _rotmat(aa: np.ndarray) -> np.ndarray:
    return Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(*aa.shape[:-1], 3, 3)


def test_pose_file_round_trip_npz_and_npy(tmp_path):
    rng = np.random.default_rng(0)
    aa = rng.normal(scale=0.4, size=(7, 72)).astype(np.float32)
    expected = _rotmat(aa.astype(np.float64).reshape(7, 24, 3))
    np.savez(tmp_path / "a.npz", poses=aa, betas=np.zeros(10))
    np.savez(tmp_path / "b.npz", pose=aa)
    np.save(tmp_path / "c.npy", aa)
    np.save(tmp_path / "one.npy", aa[0])
    for name in ("a.npz", "b.npz", "c.npy"):
        R = P.load_pose_file(tmp_path / name)
        assert R.shape == (7, 24, 3, 3) and R.dtype == torch.float32
        np.testing.assert_allclose(R.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(P.load_pose_file(tmp_path / "one.npy")[0].numpy(), expected[0],
                               atol=1e-6)
    # SMPL's T-pose rest re-expressed for Anny-24's A-pose rest
    a_pose = P.load_pose_file(tmp_path / "a.npz", rest="a_pose", dtype=torch.float64).numpy()
    np.testing.assert_allclose(a_pose, P.change_rest(expected, "a_pose"), atol=1e-6)


def test_pose_file_amass_layout(tmp_path):
    rng = np.random.default_rng(1)
    aa = rng.normal(scale=0.3, size=(5, 156))
    np.savez(tmp_path / "amass.npz", poses=aa, trans=np.zeros((5, 3)), gender="neutral")
    R = P.load_pose_file(tmp_path / "amass.npz", dtype=torch.float64).numpy()
    np.testing.assert_allclose(R[:, :22], _rotmat(aa[:, :66].reshape(5, 22, 3)), atol=1e-12)
    np.testing.assert_allclose(R[:, 22:], np.broadcast_to(np.eye(3), (5, 2, 3, 3)))
    # one frame, and SMPL-H in joint layout (N, 52, 3)
    np.save(tmp_path / "frame.npy", aa[0])
    np.testing.assert_allclose(P.load_pose_file(tmp_path / "frame.npy", dtype=torch.float64)[0],
                               R[0], atol=1e-12)
    np.save(tmp_path / "joints.npy", aa.reshape(5, 52, 3))
    np.testing.assert_allclose(P.load_pose_file(tmp_path / "joints.npy", dtype=torch.float64),
                               R, atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 60), (5, 24, 4), (3,), (5, 72, 2), (0, 72), (5, 69)])
def test_pose_file_bad_shapes_name_the_file(tmp_path, shape):
    path = tmp_path / "bad_poses.npy"
    np.save(path, np.zeros(shape))
    with pytest.raises(ValueError, match=r"bad_poses\.npy.*" + re_shape(shape)):
        P.load_pose_file(path)


def re_shape(shape) -> str:
    return r"\(" + r",\s*".join(str(s) for s in shape) + (r",?" if len(shape) == 1 else "") + r"\)"


def test_pose_file_bad_keys_and_types(tmp_path):
    np.savez(tmp_path / "nokey.npz", rotations=np.zeros((2, 72)))
    with pytest.raises(ValueError, match=r"nokey\.npz.*'rotations'"):
        P.load_pose_file(tmp_path / "nokey.npz")
    (tmp_path / "poses.txt").write_text("0 0 0")
    with pytest.raises(ValueError, match=r"poses\.txt.*\.txt"):
        P.load_pose_file(tmp_path / "poses.txt")
    np.save(tmp_path / "nan.npy", np.full((2, 72), np.nan))
    with pytest.raises(ValueError, match=r"nan\.npy.*non-finite"):
        P.load_pose_file(tmp_path / "nan.npy")


def test_sampler_pose_pool(tmp_path):
    rng = np.random.default_rng(2)
    aa = rng.normal(scale=0.05, size=(6, 72))
    np.save(tmp_path / "pool.npy", aa)
    s = P.PoseSampler(seed=0, pose_pool=tmp_path / "pool.npy", pool_prob=1.0,
                      interpolate_prob=0.0, noise_deg=0.0, mirror=False, pool_rest="t_pose",
                      limits=False)
    out = s.sample_numpy(30)
    pool = _rotmat(aa.reshape(6, 24, 3))
    pool[:, 0] = np.eye(3)  # the pool's root is dropped
    dist = np.abs(out[:, None] - pool[None]).max(axis=(2, 3, 4))
    assert dist.min(1).max() < 1e-9
    with pytest.raises(ValueError, match="pose_pool"):
        P.PoseSampler(pose_pool=np.zeros((3, 23, 3, 3)))


# ---------------------------------------------------------------------- on the Anny-24 body
@needs_anny24
def test_arm_rest_directions_match_anny24(body):
    j = body.rest()[1][0].numpy()
    for name, (a, b) in {"upper_arm": ("left_shoulder", "left_elbow"),
                         "forearm": ("left_elbow", "left_wrist"),
                         "hand": ("left_wrist", "left_hand")}.items():
        d = j[J[b]] - j[J[a]]
        d /= np.linalg.norm(d)
        angle = np.rad2deg(np.arccos(np.clip(d @ P.ANNY24_LEFT_ARM_REST[name], -1, 1)))
        assert angle < 3.0, (name, angle)


@needs_anny24
def test_sign_conventions_on_posed_joints(body):
    rest = spec_joints(body, {})

    def moved(spec, joint, rel=None):
        p = spec_joints(body, spec)
        if rel is None:
            return p[J[joint]] - rest[J[joint]]
        return (p[J[joint]] - p[J[rel]]) - (rest[J[joint]] - rest[J[rel]])

    # hip flexion (negative x) moves the knee forward; knee flexion moves the ankle back
    assert moved({"left_hip": (-45, 0, 0)}, "left_knee")[2] > 0.1
    assert moved({"right_hip": (-45, 0, 0)}, "right_knee")[2] > 0.1
    assert moved({"left_knee": (60, 0, 0)}, "left_ankle", "left_knee")[2] < -0.1
    # hip abduction moves each knee outward
    assert moved({"left_hip": (0, 0, 30)}, "left_knee")[0] > 0.1
    assert moved({"right_hip": (0, 0, 30)}, "right_knee")[0] < -0.1
    # raising an arm (shoulder z) moves its wrist up; shoulder flexion moves it forward
    assert moved({"left_shoulder": (0, 0, 60)}, "left_wrist")[1] > 0.2
    assert moved({"right_shoulder": (0, 0, 60)}, "right_wrist")[1] > 0.2
    assert moved({"left_shoulder": (60, 0, 0)}, "left_wrist")[2] > 0.2
    # elbow flexion brings the wrist forward and up, closer to the shoulder
    d = moved({"left_elbow": (40, 0, 0)}, "left_wrist", "left_elbow")
    assert d[1] > 0.05
    p = spec_joints(body, {"left_elbow": (40, 0, 0)})
    assert (np.linalg.norm(p[J["left_wrist"]] - p[J["left_shoulder"]])
            < np.linalg.norm(rest[J["left_wrist"]] - rest[J["left_shoulder"]]) - 0.05)
    # spine flexion moves the head forward, ankle plantarflexion moves the toes down
    assert moved({"spine1": (30, 0, 0)}, "head")[2] > 0.1
    assert moved({"left_ankle": (30, 0, 0)}, "left_foot", "left_ankle")[1] < -0.03
    # head y turns it to the left, spine z bends to the right
    with torch.no_grad():
        R = torch.as_tensor(P.joint_angles_to_rotmat(P.key_pose_angles({"head": (0, 40, 0)})))
        turned, front = body(R[None, 0], R[None, 1:]).vertices[0], body().vertices[0]
    head = body.lbs_weights[:, J["head"]] > 0.9
    nose = torch.where(head, front[:, 2], -np.inf).argmax()  # the head's most forward vertex
    assert turned[nose, 0] - front[nose, 0] > 0.03
    assert moved({"spine1": (0, 0, 20)}, "head")[0] < -0.1


@needs_anny24
def test_t_pose_and_elbow_straight(body):
    p = spec_joints(body, P.KEY_POSES["t_pose"])
    for side, sign in (("left", 1), ("right", -1)):
        arm = p[J[f"{side}_wrist"]] - p[J[f"{side}_shoulder"]]
        arm /= np.linalg.norm(arm)
        assert sign * arm[0] > np.cos(np.deg2rad(10)), (side, arm)


@needs_anny24
def test_key_poses_look_right(body):
    def joints(name):
        return dict(zip(SMPL24_NAMES, spec_joints(body, P.KEY_POSES[name]), strict=True))

    w = joints("walk_contact")
    assert w["left_ankle"][2] - w["right_ankle"][2] > 0.3  # left foot ahead
    assert w["right_wrist"][2] > w["left_wrist"][2]  # arms swing opposite
    s = joints("sit_chair")
    assert abs(s["left_knee"][1] - s["left_hip"][1]) < 0.1  # thighs horizontal
    assert s["left_knee"][2] - s["left_hip"][2] > 0.3
    assert s["left_ankle"][1] < s["left_knee"][1] - 0.3  # shins vertical
    a = joints("arms_raised")
    assert min(a["left_wrist"][1], a["right_wrist"][1]) > a["head"][1] + 0.2
    r = joints("reach_floor")
    assert r["left_wrist"][1] < r["left_knee"][1]
    k = joints("kneel_two_knees")
    assert k["left_ankle"][2] < k["left_knee"][2] - 0.3  # shins behind the knees
    sq = joints("squat")
    assert sq["pelvis"][1] - sq["left_ankle"][1] < 0.45
    wave = joints("wave")
    assert wave["left_wrist"][1] > wave["left_elbow"][1] + 0.15  # forearm up
    assert wave["left_elbow"][0] > wave["left_shoulder"][0] + 0.15  # upper arm out


@needs_anny24
def test_mirrored_pose_gives_mirrored_body(body):
    K = P.key_poses(["throw", "walk_contact", "wave"], dtype=torch.float64).numpy()
    a = pose_joints(body, K)
    b = pose_joints(body, P.mirror_pose(K))
    np.testing.assert_allclose(b, a[:, P.FLIP] * np.array([-1.0, 1, 1]), atol=0.01)


@needs_anny24
def test_self_intersection_flags_arm_in_torso_and_passes_key_poses(checker):
    K = P.key_poses(dtype=torch.float64).numpy()
    counts = checker.count(K)
    assert not {n: c for n, c in zip(P.KEY_POSES, counts, strict=True) if c >= checker.min_vertices}
    bad = P.key_pose_angles({"left_shoulder": (75, 80, -30), "left_elbow": (95, 0, 0)})
    into_torso = P.joint_angles_to_rotmat(bad)  # forearm swung into the chest
    across = P.key_pose_angles({"left_shoulder": (0, 0, -75), "left_elbow": (-45, 0, 0)})
    through = P.joint_angles_to_rotmat(across)  # straight arm pushed through the hip
    legs = P.joint_angles_to_rotmat(P.key_pose_angles({"left_hip": (0, 0, -45),
                                                        "right_hip": (0, 0, -45)}))
    flagged = checker(np.stack([into_torso, through, legs]))
    assert flagged.all(), checker.count(np.stack([into_torso, through, legs]))
    assert not checker(np.eye(3)[None, None].repeat(24, 1)).any()


@needs_anny24
def test_sampler_rejects_self_intersections(checker):
    s = P.PoseSampler(seed=0, noise_deg=15.0, reject_self_intersection=True, body=checker)
    R = s.sample_numpy(40)
    assert not checker(R).any()
    assert s.stats["intersection_rejected"] >= 0 and s.stats["drawn"] >= 40


def test_shipped_mean_pose_is_the_distributions_mean():
    """The regressors' start (hmrkit/models/weights/mean_pose.npz) is what
    ``python -m hmrkit.data.synthetic.poses`` computes from the pose distribution today."""
    from hmrkit.data.synthetic.poses import MEAN_POSE_SAMPLES, mean_pose
    from hmrkit.models.heads import MEAN_POSE_FILE

    with np.load(MEAN_POSE_FILE) as f:
        shipped, samples = f["rotmat"], int(f["samples"])
    assert samples == MEAN_POSE_SAMPLES and shipped.shape == (24, 3, 3)
    np.testing.assert_array_equal(mean_pose().numpy(), shipped)
