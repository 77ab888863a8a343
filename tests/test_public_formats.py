"""Public-format readers: SPIN/CLIFF npz files and 3DPW sequence files written here, read back.

Round trips (keypoints land on painted dots in the crop, rotations, boxes, camera-frame SMPL),
keypoint-order mappings against their names, and bad input (missing files, keys, images).
"""

from __future__ import annotations

import math
import pickle

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from hmrkit.body.keypoints import COCO17_NAMES, LSP14_NAMES, SMPL24_NAMES
from hmrkit.body.model import BodyModel
from hmrkit.data.augment import AugmentConfig
from hmrkit.data.images import ImageReadError
from hmrkit.data.public import (
    J24_TO_COCO17,
    J24_TO_SMPL24,
    OPENPOSE18_NAMES,
    OPENPOSE18_TO_COCO17,
    SPIN_J24_NAMES,
    PW3DDataset,
    SpinNpzDataset,
    parse_gender,
    read_pw3d_sequence,
    rest_pelvis,
    smpl_world_to_camera,
)
from hmrkit.data.sample import check_sample
from hmrkit.geometry.crops import box_from_keypoints, crop_matrix
from hmrkit.geometry.rotations import axis_angle_to_rotmat, rot_y, rot_z

from .helpers import random_body_data, random_rotations

F64 = torch.float64
ROTATION_ONLY = dict(
    scale=(0.9, 1.1), translation=0.05, rotation_deg=25.0, rotation_prob=1.0,
    rotation_dist="uniform", flip_prob=0.0, color_gain=None, occlusion_prob=0.0, seed=3,
)


# --------------------------------------------------------------------------- writers


def write_image(path, width, height, dots=(), radius=1, seed=0, quality=98):
    """Dark noisy JPEG with white square dots centred on the pixels ``dots`` (x, y)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    for x, y in dots:
        image[y - radius : y + radius + 1, x - radius : x + radius + 1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])


SPIN_ROWS = (  # image (W, H), box side, dot radius
    ((160, 120), 64.0, 1),
    ((128, 96), 100.0, 1),
    ((480, 400), 400.0, 7),
)


def write_spin(tmp_path, cliff=True, drop=(), rows=SPIN_ROWS, extra=None):
    """A small SPIN/CLIFF npz (one row per entry of ``rows``) and its images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "spin"
    n = len(rows)
    part = np.zeros((n, 24, 3))
    center = np.zeros((n, 2))
    scale = np.zeros(n)
    names = []
    for i, ((w, h), side, radius) in enumerate(rows):
        margin = radius + 2
        part[i, :, 0] = rng.integers(margin, w - margin, 24)
        part[i, :, 1] = rng.integers(margin, h - margin, 24)
        part[i, :, 2] = rng.random(24) < 0.8
        center[i] = [w / 2 + rng.integers(-8, 9), h / 2 + rng.integers(-8, 9)]
        # head top: painted, visible, within a fifth of the box side from the box centre
        part[i, 13] = [*(center[i] + rng.integers(-side // 5, side // 5 + 1, 2)), 1.0]
        scale[i] = side / 200.0
        names.append(f"images/img_{i:03d}.jpg")
        dot = (int(part[i, 13, 0]), int(part[i, 13, 1]))
        write_image(root / names[-1], w, h, dots=[dot], radius=radius, seed=i)
    S = np.concatenate([rng.normal(0, 0.3, (n, 24, 3)), rng.random((n, 24, 1)) < 0.9], -1)
    arrays = {
        "imgname": np.array(names),
        "center": center,
        "scale": scale,
        "part": part,
        "S": S,
        "pose": rng.normal(0, 0.4, (n, 72)),
        "shape": rng.normal(0, 1, (n, 10)),
        "has_smpl": np.array([1.0, 0.0, 1.0][:n]),
        "gender": np.array(["m", "f", "m"][:n]),
    }
    if cliff:
        arrays["global_t"] = np.stack([[0.1 * i, -0.2, 5.0 + i] for i in range(n)])
        arrays["focal_l"] = 300.0 + np.arange(n)
    arrays.update(extra or {})
    for key in drop:
        arrays.pop(key)
    path = root / "train.npz"
    np.savez(path, **arrays)
    return path, root, arrays


SEQ = "courtyard_test_00"
K = np.array([[110.0, 0.0, 47.3], [0.0, 112.0, 63.1], [0.0, 0.0, 1.0]])


def op_keypoints(actor, frame):
    """OpenPose-18 keypoints (3, 18) whose x encodes the OpenPose index: x = 20 + 3 k + 10 a."""
    k = np.arange(18)
    return np.stack([20.0 + 3 * k + 10 * actor, 30.0 + 2 * k + frame, np.ones(18)])


def write_pw3d(root, body, split="test", drop=(), frames=3, size=(96, 128)):
    """A 3DPW-like sequence file (protocol-2 pickle) and its images, plus the ground truth.

    Two actors; actor 1 has an invalid camera pose in frame 1 and no visible keypoint in
    frame 2; actor 0's right ear (OpenPose 16) is unseen in frame 0.
    """
    rng = np.random.default_rng(1)
    model = BodyModel(body, dtype=F64)
    rot_c = random_rotations(frames, generator=torch.Generator().manual_seed(2)).numpy()
    t_c = np.stack([[0.05 * f, -0.1, 0.3] for f in range(frames)])
    data = {
        "sequence": SEQ, "genders": ["m", b"f"], "poses": [], "betas": [], "trans": [],
        "poses2d": [], "jointPositions": [], "campose_valid": [],
        "cam_poses": np.tile(np.eye(4), (frames, 1, 1)), "cam_intrinsics": K,
        "img_frame_ids": np.arange(frames), "texture_maps": [np.zeros((4, 4, 3))] * 2,
        "v_template_clothed": [np.zeros((5, 3))] * 2,
    }
    data["cam_poses"][:, :3, :3], data["cam_poses"][:, :3, 3] = rot_c, t_c
    truth = {"camera_joints": [], "world_orient": []}
    for a in range(2):
        betas = rng.normal(0, 1, 10)
        j0 = rest_pelvis(model, betas)
        poses = rng.normal(0, 0.4, (frames, 72))
        # world translation that puts the pelvis at q in the camera frame
        q = np.stack([[0.3 * a - 0.15, 0.1, 4.0 + 0.1 * f] for f in range(frames)])
        world_root = np.einsum("fji,fj->fi", rot_c, q - t_c)  # R_c^T (q - t_c)
        trans = world_root - j0
        rot = axis_angle_to_rotmat(torch.from_numpy(poses.reshape(frames, 24, 3)))
        out = model(
            global_orient=rot[:, 0], body_pose=rot[:, 1:],
            betas=torch.from_numpy(betas)[None].expand(frames, 10),
            transl=torch.from_numpy(trans),
        )
        joints_w = out.joints.numpy()
        truth["camera_joints"].append(np.einsum("fij,fkj->fki", rot_c, joints_w) + t_c[:, None])
        truth["world_orient"].append(rot[:, 0].numpy())
        p2d = np.stack([op_keypoints(a, f) for f in range(frames)])
        if a == 0:
            p2d[0, 2, 16] = 0.0
        valid = np.ones(frames)
        if a == 1:
            p2d[2, 2, :] = 0.0
            valid[1] = 0.0
        data["poses"].append(poses)
        data["betas"].append(betas)
        data["trans"].append(trans)
        data["poses2d"].append(p2d)
        data["jointPositions"].append(joints_w.reshape(frames, 72))
        data["campose_valid"].append(valid)
    for key in drop:
        data.pop(key)
    folder = root / "sequenceFiles" / split
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{SEQ}.pkl", "wb") as f:
        pickle.dump(data, f, protocol=2)
    for f in range(frames):
        write_image(root / "imageFiles" / SEQ / f"image_{f:05d}.jpg", *size, seed=10 + f)
    return data, truth


@pytest.fixture(scope="module")
def body():
    return random_body_data(num_vertices=40, num_betas=10, seed=4)


@pytest.fixture()
def pw3d(tmp_path, body):
    root = tmp_path / "3DPW"
    data, truth = write_pw3d(root, body)
    return root, data, truth


def dot_centroid(image: torch.Tensor, at, window=6):
    """Centroid (continuous crop pixels) of the bright pixels of ``image`` near ``at``."""
    bright = image.mean(0).numpy()
    x0, y0 = (int(math.floor(v)) for v in at)
    ys, xs = np.mgrid[0 : bright.shape[0], 0 : bright.shape[1]]
    near = (abs(xs - x0) <= window) & (abs(ys - y0) <= window)
    weight = np.where(near, np.clip(bright - 0.3, 0, None), 0.0)
    assert weight.sum() > 0, f"no bright pixel near {at}"
    return np.array([(weight * (xs + 0.5)).sum(), (weight * (ys + 0.5)).sum()]) / weight.sum()


def to_crop(sample, key, index):
    kp = sample[key][index, :2].double()
    affine = sample["crop_affine"].double()
    return (affine[:, :2] @ kp + affine[:, 2]).numpy()


def model_joints(model, sample):
    out = model(
        global_orient=sample["global_orient"][None].double(),
        body_pose=sample["body_pose"][None].double(),
        betas=sample["betas"][None].double(),
        transl=sample["transl"][None].double(),
    )
    return out.joints[0]


# --------------------------------------------------------------------------- orders


def test_keypoint_orders_follow_names():
    assert SPIN_J24_NAMES[:14] == LSP14_NAMES
    assert [SPIN_J24_NAMES[j] for j in J24_TO_COCO17] == list(COCO17_NAMES)
    assert list(J24_TO_COCO17) == [19, 20, 21, 22, 23, 9, 8, 10, 7, 11, 6, 3, 2, 4, 1, 5, 0]
    assert all(SMPL24_NAMES[s] == SPIN_J24_NAMES[j] for s, j in J24_TO_SMPL24.items())
    assert len(J24_TO_SMPL24) == 13
    assert [OPENPOSE18_NAMES[j] for j in OPENPOSE18_TO_COCO17] == list(COCO17_NAMES)
    assert list(OPENPOSE18_TO_COCO17) == [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]


def test_parse_gender():
    assert [parse_gender(g) for g in ("m", b"f", "Female", "male", "n", -1)] == [1, 2, 2, 1, 0, 0]


# --------------------------------------------------------------------------- SPIN npz


def test_spin_labels_round_trip(tmp_path):
    path, root, arr = write_spin(tmp_path)
    ds = SpinNpzDataset(path, root, crop_size=64)
    assert len(ds) == 3
    for i in range(3):
        s = ds[i]
        check_sample(s, f"row {i}")
        (w, h), side, _ = SPIN_ROWS[i]
        assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
        assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
        torch.testing.assert_close(s["camera/image_size"], torch.tensor([w, h], dtype=torch.float32))
        part = torch.from_numpy(arr["part"][i]).float()
        kp = torch.cat([part[:, :2] + 0.5, (part[:, 2:] > 0).float()], 1)
        torch.testing.assert_close(s["keypoints2d/lsp14"], kp[:14])
        torch.testing.assert_close(s["keypoints2d/coco17"], kp[list(J24_TO_COCO17)])
        smpl = s["keypoints2d/smpl24"]
        for si, ji in J24_TO_SMPL24.items():
            torch.testing.assert_close(smpl[si], kp[ji])
        assert smpl[[0, 3, 6, 9, 10, 11, 13, 14, 15, 22, 23], 2].sum() == 0
        # box from center / scale (SPIN: side = scale * 200)
        center = torch.from_numpy(arr["center"][i] + 0.5).float()
        torch.testing.assert_close(s["box_center"], center)
        torch.testing.assert_close(s["box_size"], torch.tensor(side))
        torch.testing.assert_close(
            s["crop_affine"], crop_matrix(center[None].double(), side, 64)[0].float()
        )
        # SMPL parameters
        aa = torch.from_numpy(arr["pose"][i]).reshape(24, 3)
        rot = axis_angle_to_rotmat(aa).float()
        torch.testing.assert_close(s["global_orient"], rot[0])
        torch.testing.assert_close(s["body_pose"], rot[1:])
        torch.testing.assert_close(s["betas"], torch.from_numpy(arr["shape"][i]).float())
        assert s["has_smpl"] == arr["has_smpl"][i]
        assert s["meta/gender"] == (1 if i != 1 else 2) and s["meta/gender"].dtype == torch.int64
        assert s["meta/body_model"] == 1
        assert s["meta/index"].tolist() == [i, 0, 0]
        # 3D: S[:14] root-relative with its confidence
        S = torch.from_numpy(arr["S"][i]).float()
        conf = (S[:, 3] > 0).float()
        torch.testing.assert_close(s["keypoints3d/lsp14"], S[:14, :3] * conf[:14, None])
        torch.testing.assert_close(s["meta/keypoints3d_conf/lsp14"], conf[:14])
        assert s["has_joints3d"] == 1 and s["meta/root_relative3d"] == 1
        # CLIFF camera
        torch.testing.assert_close(s["camera/intrinsics"],
                                   torch.tensor([300.0 + i, 300.0 + i, w / 2, h / 2]))
        want_t = torch.from_numpy(arr["global_t"][i]).float() * arr["has_smpl"][i]
        torch.testing.assert_close(s["transl"], want_t)
        assert s["meta/has_transl"] == arr["has_smpl"][i]
        torch.testing.assert_close(s["meta/source_affine"], torch.eye(3)[:2])
    batch = default_collate([ds[0], ds[2]])
    assert batch["image"].shape == (2, 3, 64, 64)


def test_spin_without_cliff_or_smpl(tmp_path):
    path, root, _ = write_spin(tmp_path, cliff=False, drop=("pose", "shape", "has_smpl", "S"))
    ds = SpinNpzDataset(path, root, crop_size=32, body_model_joints=None, dense_zeros=True)
    s = ds[1]
    check_sample(s)
    (w, h), _, _ = SPIN_ROWS[1]
    torch.testing.assert_close(s["camera/intrinsics"][:2],
                               torch.tensor([math.hypot(w, h)] * 2, dtype=torch.float32))
    assert s["has_smpl"] == 0 and s["has_joints3d"] == 0 and s["meta/has_transl"] == 0
    torch.testing.assert_close(s["body_pose"], torch.eye(3).expand(23, 3, 3))
    assert s["keypoints2d/smpl24"].abs().sum() == 0
    assert s["mask"].shape == (32, 32) and s["iuv"].shape == (3, 32, 32) and s["has_iuv"] == 0


@pytest.mark.parametrize("row", [0, 1, 2])
def test_spin_crop_puts_keypoint_on_its_dot(tmp_path, row):
    path, root, arr = write_spin(tmp_path)
    s = SpinNpzDataset(path, root, crop_size=64)[row]
    at = to_crop(s, "keypoints2d/lsp14", 13)  # the painted head top
    side = SPIN_ROWS[row][1]
    dot = arr["part"][row, 13, :2] + 0.5
    np.testing.assert_allclose(at, (dot - (arr["center"][row] + 0.5)) * 64 / side + 32)
    np.testing.assert_allclose(dot_centroid(s["image"], at), at, atol=0.35)


def test_spin_augmented_crop_keeps_keypoints_on_dots(tmp_path):
    path, root, arr = write_spin(tmp_path)
    config = AugmentConfig(
        scale=(0.8, 1.2), translation=0.1, rotation_deg=30.0, rotation_prob=1.0,
        flip_prob=0.5, color_gain=None, occlusion_prob=0.0, seed=0,
    )
    ds = SpinNpzDataset(path, root, crop_size=64, augment=config)
    flips = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for row in (0, 1):
            params = ds.augmentation_params(row)
            flips.add(params.flip)
            s = ds[row]
            check_sample(s)
            center, size = s["box_center"][None].double(), s["box_size"].double()
            torch.testing.assert_close(
                s["crop_affine"], crop_matrix(center, size, 64)[0].float(), atol=1e-4, rtol=0
            )
            at = to_crop(s, "keypoints2d/lsp14", 13)  # head top is its own mirror partner
            np.testing.assert_allclose(dot_centroid(s["image"], at), at, atol=0.5)
            # the stored keypoints reach the sample's through meta/source_affine
            src = torch.from_numpy(arr["part"][row, 13, :2] + 0.5)
            a = s["meta/source_affine"].double()
            torch.testing.assert_close(
                a[:, :2] @ src + a[:, 2], s["keypoints2d/lsp14"][13, :2].double(), atol=1e-4,
                rtol=0,
            )
    assert flips == {False, True}


def test_spin_transl_follows_rotation_augmentation(tmp_path, body):
    path, root, _ = write_spin(tmp_path)
    model = BodyModel(body, dtype=F64)
    plain = SpinNpzDataset(path, root, crop_size=32, body_model=model)
    aug = SpinNpzDataset(
        path, root, crop_size=32, body_model=model, augment=AugmentConfig(**ROTATION_ONLY)
    )
    for row in (0, 2):
        theta = aug.augmentation_params(row).rotation
        assert theta != 0
        a, p = aug[row], plain[row]
        assert a["meta/has_transl"] == 1
        rolled = model_joints(model, p) @ rot_z(torch.tensor(theta, dtype=F64)).T
        torch.testing.assert_close(model_joints(model, a), rolled, atol=2e-5, rtol=0)
        # root-relative 3D keypoints roll too
        want = p["keypoints3d/lsp14"].double() @ rot_z(torch.tensor(theta, dtype=F64)).T
        torch.testing.assert_close(a["keypoints3d/lsp14"].double(), want, atol=1e-5, rtol=0)
    # without a body model the rolled translation is unknown: dropped, not guessed
    blind = SpinNpzDataset(path, root, crop_size=32, augment=AugmentConfig(**ROTATION_ONLY))
    s = blind[0]
    assert s["meta/has_transl"] == 0 and s["transl"].abs().sum() == 0


def test_spin_flip_swaps_labels_and_confidences(tmp_path):
    path, root, _ = write_spin(tmp_path)
    flip = AugmentConfig(
        scale=(1.0, 1.0), translation=0.0, rotation_prob=0.0, flip_prob=1.0, color_gain=None,
        occlusion_prob=0.0, seed=0,
    )
    plain = SpinNpzDataset(path, root, crop_size=32)[0]
    s = SpinNpzDataset(path, root, crop_size=32, augment=flip)[0]
    def mirror(name):
        return name.replace("left_", "@").replace("right_", "left_").replace("@", "right_")

    perm = [LSP14_NAMES.index(mirror(n)) for n in LSP14_NAMES]
    assert perm != list(range(14))
    w = SPIN_ROWS[0][0][0]
    want2d = plain["keypoints2d/lsp14"][perm].clone()
    want2d[:, 0] = w - want2d[:, 0]
    torch.testing.assert_close(s["keypoints2d/lsp14"], want2d)
    want3d = plain["keypoints3d/lsp14"][perm] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(s["keypoints3d/lsp14"], want3d)
    conf = "meta/keypoints3d_conf/lsp14"
    torch.testing.assert_close(s[conf], plain[conf][perm])
    assert s["meta/has_transl"] == 0  # mirrored translation needs the body model's pelvis


def test_spin_missing_and_corrupt_images(tmp_path):
    path, root, arr = write_spin(tmp_path)
    (root / arr["imgname"][1]).unlink()
    (root / arr["imgname"][2]).write_bytes(b"this is not a jpeg")
    ds = SpinNpzDataset(path, root, crop_size=32)
    with pytest.raises(ImageReadError, match=r"img_001\.jpg.*file not found"):
        ds[1]
    with pytest.raises(ImageReadError, match=r"img_002\.jpg.*not a decodable image"):
        ds[2]
    ds = SpinNpzDataset(path, root, crop_size=32, skip_bad=True)
    assert ds[1]["meta/index"][0] == 0  # rows 1 and 2 skipped, wraps around to row 0
    assert ds.num_skipped == 2
    assert {p.rsplit("/", 1)[-1] for p in ds.bad_images} == {"img_001.jpg", "img_002.jpg"}
    assert ds[2]["meta/index"][0] == 0 and ds.num_skipped == 2  # bad rows remembered


@pytest.mark.parametrize("key", ["imgname", "center", "scale", "part"])
def test_spin_missing_required_key(tmp_path, key):
    path, root, _ = write_spin(tmp_path, drop=(key,))
    with pytest.raises(ValueError, match=rf"train\.npz: missing key '{key}'"):
        SpinNpzDataset(path, root)


def test_spin_bad_files(tmp_path):
    path, root, _ = write_spin(tmp_path, drop=("shape",))
    with pytest.raises(ValueError, match=r"train\.npz: missing key 'shape'"):
        SpinNpzDataset(path, root)
    path, root, _ = write_spin(tmp_path, extra={"part": np.zeros((3, 14, 3))})
    with pytest.raises(ValueError, match=r"'part' has shape \(3, 14, 3\)"):
        SpinNpzDataset(path, root)
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        SpinNpzDataset(tmp_path / "nothing.npz", root)
    with pytest.raises(ValueError, match="body_model_joints"):
        SpinNpzDataset(path, root, body_model_joints="coco17")


# --------------------------------------------------------------------------- 3DPW


def test_smpl_world_to_camera_golden():
    j0 = np.array([0.0, -0.2, 0.1])
    rc = rot_y(torch.tensor(math.pi, dtype=F64)).numpy()  # x -> -x, z -> -z
    orient, transl = smpl_world_to_camera(np.eye(3), [1.0, 0.0, 0.0], rc, [0.0, 0.0, 5.0], j0)
    np.testing.assert_allclose(orient, rc, atol=1e-12)
    # world root J0 + t = (1, -0.2, 0.1) -> camera (-1, -0.2, 4.9) = J0 + transl
    np.testing.assert_allclose(transl, [-1.0, 0.0, 4.8], atol=1e-12)


def test_pw3d_index_and_validity(pw3d):
    root, _, _ = pw3d
    ds = PW3DDataset(root, crop_size=48)
    assert ds.items.tolist() == [[0, 0, 0], [0, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert ds.num_without_keypoints == 1 and ds.sequence_names == [SEQ]
    everything = PW3DDataset(root, crop_size=48, valid_only=False)
    assert len(everything) == 5 and [0, 1, 1] in everything.items.tolist()
    s = everything[everything.items.tolist().index([0, 1, 1])]
    assert s["has_smpl"] == 0 and s["has_joints3d"] == 0 and s["meta/has_transl"] == 0
    assert s["keypoints2d/smpl24"][:, 2].sum() == 0 and s["keypoints2d/coco17"][:, 2].sum() == 17
    assert ds[0]["meta/gender"] == 1 and ds[3]["meta/gender"] == 2
    raw = read_pw3d_sequence(root / "sequenceFiles" / "test" / f"{SEQ}.pkl")
    assert raw["sequence"] == SEQ and "texture_maps" not in raw
    assert raw["jointPositions"][0].shape == (3, 24, 3)


def test_pw3d_camera_frame(pw3d, body):
    root, data, truth = pw3d
    model = BodyModel(body, dtype=F64)
    with_model = PW3DDataset(root, crop_size=48, body_model={"male": model, "female": model})
    without = PW3DDataset(root, crop_size=48)
    for i, (_, f, a) in enumerate(with_model.items.tolist()):
        s, t = with_model[i], without[i]
        check_sample(s)
        want = torch.from_numpy(truth["camera_joints"][a][f])
        rc = torch.from_numpy(data["cam_poses"][f, :3, :3])
        orient = rc @ torch.from_numpy(truth["world_orient"][a][f])
        for x in (s, t):
            torch.testing.assert_close(x["joints3d"].double(), want, atol=1e-5, rtol=0)
            torch.testing.assert_close(x["global_orient"].double(), orient, atol=1e-6, rtol=0)
            torch.testing.assert_close(x["camera/to_world"].double(), rc.T, atol=1e-6, rtol=0)
            torch.testing.assert_close(x["betas"].double(), torch.from_numpy(data["betas"][a]).float().double())
        # the camera-frame SMPL parameters rebuild the camera-frame body
        assert s["meta/has_transl"] == 1
        torch.testing.assert_close(model_joints(model, s), want, atol=2e-5, rtol=0)
        assert t["meta/has_transl"] == 0 and t["transl"].abs().sum() == 0
        lsp = [LSP14_NAMES.index(n) for n in LSP14_NAMES[:13]]
        smpl = [SMPL24_NAMES.index(n) for n in LSP14_NAMES[:13]]
        torch.testing.assert_close(s["keypoints3d/lsp14"][lsp], s["joints3d"][smpl])
        assert s["meta/keypoints3d_conf/lsp14"].tolist() == [1.0] * 13 + [0.0]


def test_pw3d_with_one_gendered_model_missing(pw3d, body):
    root, _, _ = pw3d
    with pytest.raises(KeyError, match="no 'female' body model"):
        PW3DDataset(root, body_model={"male": BodyModel(body)})


def test_pw3d_keypoints_box_and_camera(pw3d):
    root, data, _ = pw3d
    ds = PW3DDataset(root, crop_size=48)
    for i, (_, f, a) in enumerate(ds.items.tolist()):
        s = ds[i]
        op = torch.from_numpy(data["poses2d"][a][f].T)
        xy, vis = op[:, :2] + 0.5, (op[:, 2] > 0)
        coco = s["keypoints2d/coco17"].double()
        torch.testing.assert_close(coco[:, :2], xy[list(OPENPOSE18_TO_COCO17)])
        torch.testing.assert_close(coco[:, 2], vis[list(OPENPOSE18_TO_COCO17)].double())
        # x encodes the OpenPose index: every COCO keypoint comes from its namesake
        k = ((coco[:, 0] - 0.5 - 20 - 10 * a) / 3).round().long()
        assert [OPENPOSE18_NAMES[j] for j in k] == list(COCO17_NAMES)
        if (a, f) == (0, 0):
            assert coco[COCO17_NAMES.index("right_ear"), 2] == 0
        center, size = box_from_keypoints(xy, vis, 1.2)
        torch.testing.assert_close(s["box_center"].double(), center)
        torch.testing.assert_close(s["box_size"].double(), size.double())
        torch.testing.assert_close(s["camera/image_size"], torch.tensor([96.0, 128.0]))
        torch.testing.assert_close(s["camera/intrinsics"], torch.tensor([110.0, 112.0, 47.8, 63.6]))
        j = s["joints3d"].double()
        uv = j[:, :2] / j[:, 2:] * torch.tensor([110.0, 112.0], dtype=F64) + torch.tensor(
            [47.8, 63.6], dtype=F64
        )
        torch.testing.assert_close(s["keypoints2d/smpl24"][:, :2].double(), uv, atol=1e-4, rtol=0)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < 96) & (uv[:, 1] >= 0) & (uv[:, 1] < 128)
        assert s["keypoints2d/smpl24"][:, 2].bool().tolist() == inside.tolist()


def test_pw3d_rotation_augmentation(pw3d, body):
    root, _, _ = pw3d
    model = BodyModel(body, dtype=F64)
    plain = PW3DDataset(root, crop_size=48, body_model=model)
    aug = PW3DDataset(
        root, crop_size=48, body_model=model, augment=AugmentConfig(**ROTATION_ONLY)
    )
    for i in range(len(aug)):
        a, p = aug[i], plain[i]
        check_sample(a)
        rz = rot_z(torch.tensor(aug.augmentation_params(i).rotation, dtype=F64))
        rolled = p["joints3d"].double() @ rz.T
        torch.testing.assert_close(a["joints3d"].double(), rolled, atol=1e-5, rtol=0)
        torch.testing.assert_close(model_joints(model, a), rolled, atol=3e-5, rtol=0)
        # projection of the rolled joints with the moved principal point = moved 2D labels, up
        # to the non-square pixels (f_x = 110, f_y = 112): a camera roll is an image rotation
        # only for f_x = f_y, so the match is within |f_x - f_y| / f of the offsets (~0.05 px)
        j = a["joints3d"].double()
        uv = j[:, :2] / j[:, 2:] * a["camera/intrinsics"][:2].double() + a["camera/intrinsics"][2:].double()
        torch.testing.assert_close(a["keypoints2d/smpl24"][:, :2].double(), uv, atol=0.1, rtol=0)


def test_pw3d_bad_input(tmp_path, pw3d, body):
    root, _, _ = pw3d
    with pytest.raises(ValueError, match="unknown split 'tset'"):
        PW3DDataset(root, split="tset")
    with pytest.raises(FileNotFoundError, match=r"sequenceFiles/train"):
        PW3DDataset(root, split="train")
    (root / "sequenceFiles" / "validation").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \.pkl sequence files in .*validation"):
        PW3DDataset(root, split="validation")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PW3DDataset(tmp_path / "nowhere")
    (root / "imageFiles" / SEQ / "image_00002.jpg").unlink()
    ds = PW3DDataset(root, crop_size=32)
    with pytest.raises(ImageReadError, match=rf"{SEQ}/image_00002\.jpg"):
        ds[2]
    other = tmp_path / "other"
    write_pw3d(other, body, drop=("campose_valid",))
    with pytest.raises(ValueError, match=rf"{SEQ}\.pkl: missing key 'campose_valid'"):
        PW3DDataset(other)
    bad = tmp_path / "bad" / "sequenceFiles" / "test"
    bad.mkdir(parents=True)
    (bad / "x.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=2)[:-3])
    with pytest.raises(ValueError, match=r"x\.pkl"):
        PW3DDataset(tmp_path / "bad")


def test_pw3d_refuses_code_in_pickles(tmp_path):
    folder = tmp_path / "evil" / "sequenceFiles" / "test"
    folder.mkdir(parents=True)

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    (folder / "e.pkl").write_bytes(pickle.dumps({"sequence": Evil()}, protocol=2))
    with pytest.raises(ValueError, match="e.pkl"):
        PW3DDataset(tmp_path / "evil")
