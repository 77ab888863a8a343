"""W-HMR: the PyMAF-like parts, the focal path, FULL2 through the loss set, the stage rules,
OrientCorrect, camera <-> world, the camera-rotation estimator, and every stage's tiny config
through train, evaluate and predict.

The losses themselves (FULL2 against a loop, the pseudo focal loss) and ``focal_from_depth`` /
eq. 4 are tested in test_losses.py and test_cameras.py; here they are checked through the
method.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hmrkit.cli import main as cli_main
from hmrkit.data.augment import AugmentConfig
from hmrkit.data.dataset import SyntheticDataset
from hmrkit.data.formats import SPARSE_KEYS
from hmrkit.geometry.cameras import (
    LEVEL_CAMERA_TO_WORLD,
    Camera,
    camera_to_world,
    crop_to_full_camera,
    pitch_roll,
    whmr_full_translation,
    world_root_relative,
)
from hmrkit.geometry.crops import CropBox
from hmrkit.geometry.rotations import rot_y
from hmrkit.losses.keypoints import full2_loss, keypoint_2d_loss, whmr_full_image_keypoint_loss
from hmrkit.models.camcalib import CameraRotationEstimator, CameraRotationNet, camera_targets
from hmrkit.models.methods.whmr import WHMR
from hmrkit.models.pymaf import (
    PyMAFHead,
    VertexRegressor,
    VertexSets,
    farthest_points,
    grid_points,
    sample_points,
)
from hmrkit.models.whmr_heads import FocalPredictor, OrientCorrect

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "whmr-tiny-cpu.yaml"
ROT_CONFIG = CONFIG.parent / "camrot-r18-96-cpu.yaml"
F64 = torch.float64


def tiny(stage: int = 1, hybrid: bool = True, **kwargs) -> WHMR:
    vr = partial(VertexRegressor, hidden=8, layers=1, heads=2) if hybrid else None
    head = partial(PyMAFHead, channels=16, hidden=32, grid=4, vertex_regressor=vr)
    kwargs.setdefault("orient_correct", partial(OrientCorrect, hidden=32))
    return WHMR(head=head, crop_size=32, stage=stage, **kwargs)


@pytest.fixture(scope="module")
def batch(tiny_split) -> dict[str, torch.Tensor]:
    keys = (*SPARSE_KEYS, "meta/body_model", "full_image", "iuv", "depth", "mask", "has_iuv",
            "has_depth", "has_mask")
    data = SyntheticDataset(tiny_split, split=None, crop_size=32, keys=keys)
    return torch.utils.data.default_collate([data[i] for i in range(min(4, len(data)))])


# --------------------------------------------------------------------------- geometry


def test_camera_to_world_round_trips_and_matches_the_scene_engine():
    from hmrkit.data.synthetic.scene import SceneConfig, sample_camera

    config = SceneConfig(pitch_deg=30.0, roll_deg=20.0)
    for seed in range(8):
        cam = sample_camera(config, np.random.default_rng(seed))
        R = camera_to_world(torch.tensor(cam.pitch, dtype=F64), torch.tensor(cam.roll, dtype=F64))
        np.testing.assert_allclose(R.numpy(), cam.cam_to_world, atol=1e-14)
        pitch, roll = pitch_roll(R)
        assert math.isclose(float(pitch), cam.pitch, abs_tol=1e-12)
        assert math.isclose(float(roll), cam.roll, abs_tol=1e-12)
    level = torch.tensor(LEVEL_CAMERA_TO_WORLD, dtype=F64)
    torch.testing.assert_close(camera_to_world(torch.zeros((), dtype=F64), 0.0), level)


def test_labels_camera_to_world_round_trip_with_augmentation(tiny_split):
    """In every sample (augmented: rolled, flipped) the world orientation is the camera's
    rotation of the camera-frame one, and turning the posed labels to the world and back
    returns them."""
    data = SyntheticDataset(tiny_split, split=None, crop_size=32, keys=SPARSE_KEYS,
                            augment=AugmentConfig(rotation_prob=1.0, flip_prob=0.5, seed=3))
    for i in range(min(6, len(data))):
        s = {k: v.double() for k, v in data[i].items()}
        R = s["camera/to_world"]
        torch.testing.assert_close(R @ s["global_orient"], s["world_global_orient"], atol=1e-5,
                                   rtol=0)
        pitch, roll = pitch_roll(R)
        torch.testing.assert_close(camera_to_world(pitch, roll), R, atol=1e-5, rtol=0)
        joints = s["joints3d"][None]
        world = world_root_relative(joints, joints[:, 0], R[None])
        back = world_root_relative(world, world[:, 0], R.T[None]) + joints[:, :1]
        torch.testing.assert_close(back, joints)


def test_world_root_relative_is_the_body_posed_with_the_world_orientation():
    from hmrkit.body import load_body_model

    body = load_body_model("anny24", dtype=F64)
    g = torch.Generator().manual_seed(0)
    pose = 0.3 * torch.randn(2, 23, 3, generator=g, dtype=F64)
    from hmrkit.geometry.rotations import axis_angle_to_rotmat

    R_c = axis_angle_to_rotmat(torch.randn(2, 3, generator=g, dtype=F64))
    R_w = rot_y(torch.tensor([0.4, -1.2], dtype=F64))
    betas = torch.randn(2, body.num_betas, generator=g, dtype=F64)
    cam = body(R_c, axis_angle_to_rotmat(pose), betas)
    world = body(R_w, axis_angle_to_rotmat(pose), betas)
    turned = world_root_relative(cam.vertices, cam.joints[:, 0], R_w @ R_c.transpose(1, 2))
    torch.testing.assert_close(turned, world.vertices - world.joints[:, :1])


def test_focal_from_depth_and_back_through_the_loss_set(batch):
    """The loss set's full-perspective camera (eq. 3) and translation (eq. 4): the crop camera
    of the true translation and ``T_z`` = its depth give back the true focal and translation,
    and the FULL2 full-image term of the true joints is zero."""
    from hmrkit.losses.sets import WHMRLosses

    b = {k: v.double() for k, v in batch.items()}
    camera, crop = Camera.from_sample(b), CropBox.from_sample(b, 32)
    transl = b["transl"]
    cam = crop.to_crop_camera(transl, camera)
    full, got = WHMRLosses.full_camera(cam, transl[:, 2], crop, camera)
    torch.testing.assert_close(full.focal, camera.focal)
    torch.testing.assert_close(got, transl)
    torch.testing.assert_close(whmr_full_translation(cam, transl[:, 2], b["box_center"],
                                                     b["box_size"], camera.image_size), got)
    torch.testing.assert_close(crop_to_full_camera(cam, b["box_center"], b["box_size"],
                                                   camera.image_size, full.focal), got)
    model = tiny().double()
    gt = model.labels.pose(b).output()
    losses = WHMRLosses(stage=2, keypoint_sets=("smpl24",))  # the labels' own joints
    loss = losses.full_2d(gt, cam, transl[:, 2], b, crop, camera, model.loss_context)
    assert float(loss) < 1e-12  # float32 labels


def test_full2_balance_weights_are_those_of_eq5():
    """One keypoint off by ``d`` pixels in x: the full-image term is
    ``(2 d / W)^2 * W / w_box / (B K 2)``, and FULL2 is the crop term plus it; zero at the
    ground truth."""
    W, H, box, d = 640.0, 480.0, torch.tensor([[80.0, 160.0]]), 3.0
    gt = torch.tensor([[[100.0, 200.0, 1.0], [300.0, 220.0, 1.0]]], dtype=F64)
    pred = gt[..., :2].clone()
    pred[0, 0, 0] += d
    wh = torch.tensor([[W, H]])
    got = whmr_full_image_keypoint_loss(pred, gt, wh, box.double())
    assert math.isclose(float(got), (2 * d / W) ** 2 * (W / 80.0) / 4, rel_tol=1e-12)
    pred_y = gt[..., :2].clone()
    pred_y[0, 1, 1] += d
    got_y = whmr_full_image_keypoint_loss(pred_y, gt, wh, box.double())
    assert math.isclose(float(got_y), (2 * d / H) ** 2 * (H / 160.0) / 4, rel_tol=1e-12)
    crop = torch.tensor([[[0.1, -0.2, 1.0], [0.3, 0.4, 1.0]]], dtype=F64)
    pc = crop[..., :2] + 0.05
    total = full2_loss(pc, crop, pred, gt, wh, box.double())
    torch.testing.assert_close(total, keypoint_2d_loss(pc, crop) + got)
    assert float(full2_loss(crop[..., :2], crop, gt[..., :2], gt, wh, box.double())) == 0.0


# --------------------------------------------------------------------------- parts


def test_sample_points_reads_pixel_centres_in_hmrkit_convention():
    fmap = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    centres = grid_points(4)[None]  # pixel centres of a 4 x 4 map, row-major
    got = sample_points(fmap, centres)
    torch.testing.assert_close(got, fmap.flatten(2))


def test_vertex_sets_are_nested_and_upsampling_keeps_the_coarse_points():
    from hmrkit.body import load_body_model

    body = load_body_model("anny24")
    sets = VertexSets(body)
    V = body.num_vertices
    assert sets.num_sparse == V // 16 and len(sets.intermediate_index) == V // 4
    assert set(sets.sparse_index.tolist()) <= set(sets.intermediate_index.tolist())
    template = torch.as_tensor(body.data.v_template, dtype=torch.float32)[None]
    sparse, mid = sets.subsets(template)
    up_mid, up_full = sets.upsample(sparse)
    # the sparse points are kept exactly where they are, in both finer sets
    position = {int(v): i for i, v in enumerate(sets.intermediate_index)}
    rows = [position[int(v)] for v in sets.sparse_index]
    torch.testing.assert_close(up_mid[:, rows], sparse)
    torch.testing.assert_close(up_full[:, sets.sparse_index], sparse)
    assert float((up_full - template).norm(dim=-1).mean()) < 0.05  # a coarse but close mesh
    pts = np.random.default_rng(0).random((50, 3))
    idx = farthest_points(pts, 10)
    assert len(set(idx.tolist())) == 10 and idx[0] == 0


def test_focal_predictor_range_and_orient_correct_zero_residual():
    fp = FocalPredictor(in_channels=8, map_size=12)
    t_z = fp(torch.randn(5, 8, 12, 12))
    assert t_z.shape == (5,) and bool(((t_z > 0) & (t_z < 10)).all())
    oc = OrientCorrect(feature_dim=7, hidden=16)
    torch.nn.init.zeros_(oc.residual.weight)
    torch.nn.init.zeros_(oc.residual.bias)
    local = rot_y(torch.tensor([0.3, -2.0, 1.0]))
    cam = camera_to_world(torch.tensor([0.2, -0.1, 0.0]), torch.tensor([0.0, 0.05, -0.1]))
    out = oc(torch.randn(3, 7), cam, local)
    torch.testing.assert_close(out, local)
    torch.testing.assert_close(OrientCorrect.rotation(out), local)


# --------------------------------------------------------------------------- the method


def _grads(model: WHMR) -> dict[str, bool]:
    """Which parameter groups received a non-zero gradient."""
    groups = {
        "backbone": model.backbone, "decoder": model.head.decoder,
        "pose": torch.nn.ModuleList(r.dec_pose for r in model.head.regressors),
        "cam": torch.nn.ModuleList(r.dec_cam for r in model.head.regressors),
        "focal": model.focal, "orient_correct": model.orient_correct,
    }
    out = {}
    for name, module in groups.items():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        out[name] = any(bool(g.abs().sum() > 0) for g in grads)
    return out


@pytest.mark.parametrize("term, stage, expected", [
    # stage I: the full-image path trains T_z only, on detached decoder features
    ("keypoints_2d_full", 1, {"backbone": False, "decoder": False, "pose": False, "cam": False,
                              "focal": True}),
    ("pseudo_focal", 1, {"backbone": False, "decoder": False, "pose": False, "cam": False,
                         "focal": True}),
    ("keypoints_2d", 1, {"backbone": True, "pose": True, "cam": True, "focal": False}),
    # stage II: the crop path trains the camera only, the full-image path the body and T_z
    ("keypoints_2d", 2, {"pose": False, "cam": True, "focal": False}),
    ("keypoints_2d_full", 2, {"backbone": True, "decoder": True, "pose": True, "cam": False,
                              "focal": True}),
])
def test_stage_detach_rules_on_parameter_gradients(batch, term, stage, expected):
    torch.manual_seed(0)
    model = tiny(stage=stage, hybrid=False)
    model.train()
    losses = model.compute_losses(model(batch), batch)
    assert term in losses
    losses[term].backward()
    got = _grads(model)
    assert {k: got[k] for k in expected} == expected
    assert not got["orient_correct"]  # OrientCorrect trains in stage III only


def test_stage_three_changes_only_orient_correct(batch):
    torch.manual_seed(0)
    model = tiny(stage=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert not model.backbone.training and model.orient_correct.training
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("orient_correct.") for n in trainable)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        losses = model.compute_losses(model(batch), batch)
        assert set(losses) == {"world_keypoints_3d", "world_pose", "world_vertices"}
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("orient_correct.") for k in changed)


def test_estimate_outputs_camera_and_world(batch):
    torch.manual_seed(0)
    model = tiny().eval()
    with torch.no_grad():
        est = model(batch)
        metrics = model.evaluate_batch(batch)
    B = len(batch["image"])
    # the predicted focal is the estimate's camera, with the known rotation to the world
    f = est.extras["t_z"] * est.cam_crop[:, 0] * batch["box_size"] / 2
    torch.testing.assert_close(est.camera.focal, f)
    torch.testing.assert_close(est.transl[:, 2], est.extras["t_z"])
    torch.testing.assert_close(est.camera.cam_to_world, batch["camera/to_world"])
    world = est.world_output()
    assert world.vertices.shape == est.vertices.shape
    assert torch.allclose(world.joints[:, 0], torch.zeros(B, 3), atol=1e-6)
    for key in ("w_mpjpe", "w_mpjpe_camframe", "w_mpjpe_rottrue", "w_mpjpe_octrue",
                "focal_err_pct", "focal_err_cliff_pct", "reproj_pct", "root_transl_cliff"):
        assert key in metrics and torch.isfinite(metrics[key]).all(), key
    # the true rotation turns the camera-frame output into the world frame exactly
    gt = model.labels.pose(batch)
    turn = batch["world_global_orient"] @ batch["global_orient"].transpose(1, 2)
    true_world = world_root_relative(gt.joints, gt.joints[:, 0], turn)
    cam_world = world_root_relative(gt.joints, gt.joints[:, 0], batch["camera/to_world"])
    torch.testing.assert_close(true_world, cam_world, atol=1e-5, rtol=0)


def test_spec_like_feeds_the_rotation_and_predicts_the_world_root(batch):
    torch.manual_seed(0)
    model = tiny(stage=3, world="spec_like", hybrid=False).eval()
    assert model.head.regressors[0].mlp[0].in_features == (
        tiny(hybrid=False).head.regressors[0].mlp[0].in_features + 6)
    with torch.no_grad():
        est = model(batch)
    # the camera-frame root is the world root seen by the camera
    torch.testing.assert_close(est.camera.cam_to_world @ est.rotmat[:, 0],
                               est.world_global_orient, atol=1e-5, rtol=0)


def test_camera_targets_are_the_scene_pitch_roll_and_fov(batch):
    t = camera_targets(batch)
    pitch, roll = pitch_roll(batch["camera/to_world"])
    torch.testing.assert_close(t[:, 0], pitch)
    torch.testing.assert_close(t[:, 1], roll)
    f, H = batch["camera/intrinsics"][:, 1], batch["camera/image_size"][:, 1]
    torch.testing.assert_close(t[:, 2], 2 * torch.atan(H / (2 * f)))
    net = CameraRotationNet(image_size=32, fov=True)
    out = net(batch["full_image"])
    assert out.shape == (len(t), 3)
    torch.testing.assert_close(net.cam_to_world(batch["full_image"]),
                               camera_to_world(out[:, 0].detach(), out[:, 1].detach()))
    est = CameraRotationEstimator(net=partial(CameraRotationNet, fov=True), crop_size=32)
    assert est.errors_deg(batch).shape == (len(t), 3)


# --------------------------------------------------------------------------- commands


def _train(config_args: list[str], data: Path, runs: Path) -> None:
    args = ["train", "--config", str(CONFIG), "--data.train", str(data), "--data.val", str(data),
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.max_steps", "2",
            "--trainer.val_check_interval", "2", "--data.batch_size", "2",
            "--data.max_train_samples", "4", "--data.max_val_samples", "4",
            "--model.init_args.crop_size", "32", *config_args]
    assert cli_main(args) == 0


def test_every_stage_trains_evaluates_and_predicts(tiny_split, tmp_path):
    """Stage I -> II -> III (each from the previous run), the camera-rotation estimator, and
    W-HMR reading it: train, evaluate (camera and world metrics), predict (both frames)."""
    runs = tmp_path / "runs"
    last = runs / "whmr-tiny-cpu" / "version_{}" / "checkpoints" / "last.ckpt"
    _train([], tiny_split, runs)
    _train(["--model.init_args.stage", "2", "--model.init_args.init_checkpoint",
            str(last).format(0)], tiny_split, runs)
    rot = tmp_path / "rot"
    rot_config = tmp_path / "camrot.yaml"  # the committed config without the pretext backbone
    rot_config.write_text("\n".join(line for line in ROT_CONFIG.read_text().splitlines()
                                    if "checkpoint: runs/keypoints" not in line))
    assert cli_main(["train", "--config", str(rot_config), "--model.init_args.crop_size", "32",
                     "--data.train", str(tiny_split), "--data.val", str(tiny_split),
                     "--data.batch_size", "2", "--data.max_train_samples", "4",
                     "--data.max_val_samples", "4", "--data.num_workers", "0",
                     "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                     "--trainer.accelerator", "cpu",
                     "--trainer.logger.init_args.save_dir", str(rot)]) == 0
    rot_ckpt = rot / "camrot-r18-96-cpu" / "version_0" / "checkpoints" / "last.ckpt"
    _train(["--model.init_args.stage", "3", "--model.init_args.init_checkpoint",
            str(last).format(1), "--model.init_args.camera_rotation",
            "hmrkit.models.camcalib.CameraRotationNet",
            "--model.init_args.camera_rotation.init_args.fov", "true",
            "--model.init_args.camera_rotation.init_args.checkpoint", str(rot_ckpt)],
           tiny_split, runs)
    stage3 = Path(str(last).format(2))
    a = torch.load(str(last).format(1), weights_only=False)["state_dict"]
    b = torch.load(stage3, weights_only=False)["state_dict"]
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(k.startswith("orient_correct.") for k in changed)
    assert any(k.startswith("camera_rotation.") for k in b)

    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--checkpoint", str(stage3), "--data", str(tiny_split),
                     "--out", str(out)]) == 0
    overall = json.loads((out / "metrics.json").read_text())["overall"]
    for key in ("pa_mpjpe", "w_mpjpe", "w_pve", "w_mpjpe_rotest", "w_mpjpe_rottrue",
                "focal_err_pct", "reproj_pct"):
        assert math.isfinite(overall[key]), key

    image = cv2.resize(np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8),
                       (160, 120))
    cv2.imwrite(str(tmp_path / "person.png"), image)
    pred = tmp_path / "pred"
    assert cli_main(["predict", str(tmp_path / "person.png"), "--checkpoint", str(stage3),
                     "--out", str(pred), "--formats", "obj", "--detector", "none"]) == 0
    params = np.load(pred / "person_p0.npz")
    assert {"world_global_orient", "joints3d_world", "cam_to_world", "focal"} <= set(params)
    assert not math.isclose(float(params["focal"]), 200.0)  # predicted, not sqrt(160^2+120^2)
    assert (pred / "person_p0.obj").is_file() and (pred / "person_p0_world.obj").is_file()
