"""BlazePose as a backbone: MediaPipe's crops from labels, un-rolling rotated-crop estimates,
the BlazePose backbone part, the feature cache."""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from hmrkit.body.estimate import BodyEstimate
from hmrkit.geometry.crops import CropBox, crop_matrix, transform_points
from hmrkit.geometry.rotations import rot_z
from hmrkit.models.backbones import Backbone


@pytest.fixture(scope="module")
def lite():
    """The lite BlazePose backbone class (skipped when ``python -m hmrkit.blazepose fetch`` has
    not run)."""
    from hmrkit.blazepose.assets import BlazePoseModelError, model_path

    try:
        model_path("lite")
    except BlazePoseModelError as err:
        pytest.skip(str(err))
    from hmrkit.models.backbones import BlazePoseBackbone

    return partial(BlazePoseBackbone, variant="lite")


# ------------------------------------------------------------------ crops from labels
def _person(angle: float, center=(300.0, 200.0), radius=100.0):
    """COCO-17 and SMPL-24 keypoints of a stick person turned by ``angle`` (radians, image
    plane, clockwise on screen), hips at ``center``, head ``radius`` px above them."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    coco = np.zeros((17, 3))
    local = {11: (-10, 0), 12: (10, 0), 5: (-20, -60), 6: (20, -60), 0: (0, -radius)}
    for i in range(17):
        coco[i, :2] = local.get(i, (0, -30))
    coco[:, :2] = coco[:, :2] @ rot.T + np.asarray(center)
    smpl = np.tile(coco[11:12], (24, 1))
    return torch.tensor(coco)[None], torch.tensor(smpl)[None]


def test_keypoint_roi_is_mediapipes_square():
    from hmrkit.blazepose.roi import KEYPOINT_RADIUS_SCALE, ROI_SCALE, keypoint_roi

    for angle in (0.0, 0.7, -2.5):
        coco, smpl = _person(angle)
        center, size, rotation = keypoint_roi(coco, smpl)
        torch.testing.assert_close(center[0], coco[0, 11:13, :2].mean(0))
        expected = 2 * ROI_SCALE * KEYPOINT_RADIUS_SCALE * 100.0
        assert float(size) == pytest.approx(expected)
        # in the crop, the shoulders are straight above the hips (the body is upright)
        aff = crop_matrix(center, size, 256, rotation)
        pts = transform_points(torch.stack([center[0], coco[0, 5:7, :2].mean(0)])[None], aff)[0]
        assert pts[1, 0] == pytest.approx(float(pts[0, 0]), abs=1e-6)
        assert pts[1, 1] < pts[0, 1]
        assert float(rotation) == pytest.approx(-angle, abs=1e-6)


def test_sampling_center_gives_mediapipes_crop():
    from hmrkit.blazepose.roi import crop_affine, sampling_center

    center = torch.tensor([[310.3, 201.7], [40.0, 90.0]], dtype=torch.float64)
    size = torch.tensor([250.0, 77.0], dtype=torch.float64)
    rotation = torch.tensor([0.3, -2.0], dtype=torch.float64)
    moved = sampling_center(center, size, rotation, 256)
    torch.testing.assert_close(crop_matrix(moved, size, 256, rotation),
                               crop_affine(center, size, rotation, 256))


def test_rotated_crop_roi_jitter_is_drawn_last():
    """Configs without crop-angle noise draw exactly what they drew before."""
    from hmrkit.data.augment import AugmentConfig, augmentation_rng, sample_augmentation

    plain = sample_augmentation(augmentation_rng(3, 1, 7), AugmentConfig())
    noisy = sample_augmentation(augmentation_rng(3, 1, 7), AugmentConfig(roi_rotation_deg=8))
    assert plain.roi_rotation == 0.0 and noisy.roi_rotation != 0.0
    assert (plain.scale, plain.translation, plain.rotation, plain.flip) == (
        noisy.scale, noisy.translation, noisy.rotation, noisy.flip)


def test_dataset_blazepose_crops_put_the_hips_in_the_middle(tiny_split):
    from hmrkit.data.dataset import SyntheticDataset

    ds = SyntheticDataset(tiny_split, split=None, crop_size=256, crop_style="blazepose")
    s = ds[0]
    assert "box_rotation" in s and s["image"].shape == (3, 256, 256)
    crop = CropBox.from_sample({k: v[None].double() for k, v in s.items()}, 256)
    kp = crop.to_crop(s["keypoints2d/coco17"][None].double())[0]
    hips, shoulders = kp[11:13, :2].mean(0), kp[5:7, :2].mean(0)
    # MediaPipe samples the ROI centre at the centre of crop pixel 128: (128.5, 128.5)
    torch.testing.assert_close(hips, torch.full((2,), 128.5, dtype=torch.float64), atol=1e-3,
                               rtol=0)
    assert abs(float(shoulders[0] - hips[0])) < 1e-3 and shoulders[1] < hips[1]
    with pytest.raises(ValueError, match="crop_style must be one of"):
        SyntheticDataset(tiny_split, split=None, crop_style="tilted")


# ------------------------------------------------------------------ un-rolling
def _body():
    from hmrkit.body import load_body_model

    return load_body_model("anny24")


def _random_estimate(body, n=3, seed=0):
    from hmrkit.geometry.rotations import to_rotmat

    g = torch.Generator().manual_seed(seed)
    rotmat = to_rotmat(0.4 * torch.randn(n, 24, 3, generator=g, dtype=torch.float64))
    betas = torch.randn(n, body.num_betas, generator=g, dtype=torch.float64)
    out = body(rotmat[:, 0], rotmat[:, 1:], betas)
    transl = torch.randn(n, 3, generator=g, dtype=torch.float64) + torch.tensor([0, 0, 5.0])
    return BodyEstimate(rotmat=rotmat, betas=betas, vertices=out.vertices, joints=out.joints,
                        transl=transl, cam_crop=torch.ones(n, 3, dtype=torch.float64))


def test_unrolled_is_the_rolled_body_turned_back():
    body = _body().double()
    est = _random_estimate(body)
    roll = rot_z(torch.tensor([0.3, -1.2, 2.9], dtype=torch.float64))
    cam = est.unrolled(roll)
    # every camera-frame point is roll^T of the rolled one
    torch.testing.assert_close(cam.vertices + cam.transl[:, None],
                               (est.vertices + est.transl[:, None]) @ roll)
    # and the unrolled parameters pose that same body (LBS about the root joint)
    posed = body(cam.rotmat[:, 0], cam.rotmat[:, 1:], cam.betas)
    torch.testing.assert_close(posed.vertices, cam.vertices)
    torch.testing.assert_close(posed.joints, cam.joints)
    # round trip
    back = cam.unrolled(roll.transpose(-1, -2))
    for name in ("rotmat", "vertices", "joints", "transl"):
        torch.testing.assert_close(getattr(back, name), getattr(est, name))
    assert cam.cam_crop is est.cam_crop


class _TinyBlazePoseStandIn(Backbone):
    """A deterministic stand-in backbone reading BlazePose's crops (the real network is not the
    point of the round trip)."""

    crop_style = "blazepose"

    def __init__(self, image_size: int = 256):
        super().__init__()
        self.out_features = 16
        self.net = nn.Sequential(nn.AvgPool2d(32), nn.Flatten(), nn.Linear(3 * 64, 16))

    def forward(self, images):
        return self.net(images)


@pytest.mark.parametrize("method", ["HMR", "CLIFF", "MultiRoI"])
def test_method_estimates_are_in_the_camera_frame(tiny_split, method):
    """A rolled view of a person gives the same BlazePose crop (its ROI follows the body), so a
    method's camera-frame estimate must turn with the roll: est(rolled view) = roll est."""
    from hmrkit.data.augment import AugmentConfig
    from hmrkit.data.dataset import SyntheticDataset
    from hmrkit.models import methods

    torch.manual_seed(0)
    kwargs = {"num_rois": 1} if method == "MultiRoI" else {}
    model = getattr(methods, method)(backbone=_TinyBlazePoseStandIn, crop_size=256,
                                     **kwargs).eval()
    assert model.crop_style == "blazepose" and "box_rotation" in model.input_keys()
    alpha = 0.6
    roll_only = AugmentConfig(scale=(1.0, 1.0), translation=0.0, rotation_deg=alpha * 180 / math.pi,
                              rotation_prob=1.0, rotation_dist="uniform", flip_prob=0.0,
                              color_gain=None, occlusion_prob=0.0, seed=1)
    common = {"split": None, "crop_size": 256, "crop_style": "blazepose",
              "keys": (*model.input_keys(), "joints3d")}
    plain = SyntheticDataset(tiny_split, **common)
    rolled = SyntheticDataset(tiny_split, augment=roll_only, **common)
    a, b = plain[1], rolled[1]
    # the labels turned by the view's roll L = rot_z(theta): joints3d_b = L joints3d_a
    L = torch.linalg.lstsq(a["joints3d"].double(), b["joints3d"].double()).solution.T
    theta = float(torch.atan2(L[1, 0], L[0, 0]))
    torch.testing.assert_close(L, rot_z(torch.tensor(theta, dtype=torch.float64)), atol=1e-4,
                               rtol=0)
    assert 0.05 < abs(theta) <= alpha
    # the same crop, up to resampling
    assert (a["image"] - b["image"]).abs().mean() < 0.01
    with torch.no_grad():
        ea = model.infer({k: v[None] for k, v in a.items()})
        eb = model.infer({k: v[None] for k, v in b.items()})
    pa = ea.joints + ea.transl[:, None]
    pb = eb.joints + eb.transl[:, None]
    torch.testing.assert_close(pb[0].double(), pa[0].double() @ L.T, atol=2e-3 * float(
        pa[0, :, 2].mean()), rtol=0)


# ------------------------------------------------------------------ the backbone part
def test_backbone_taps_and_features(lite):
    from hmrkit.blazepose.roi import LANDMARK_RES

    bb = lite(inputs=("trunk", "encoder", "landmarks", "world", "heatmaps", "presence"))
    assert bb.crop_style == "blazepose"
    assert bb.state_dict() == {} and not list(bb.parameters())  # frozen: weights stay in the cache
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = bb.raw(x)
        outputs = bb.network(x, keep=[bb._trunk])
    assert {k: tuple(v.shape[1:]) for k, v in raw.items()} == bb.raw_shapes()
    # the trunk is the map the landmark layer reads: the graph's landmark output is a linear
    # function of it (one 2x2 convolution)
    trunk = outputs[bb.network.tensors[bb._trunk]["name"]]
    layer = next(op for op in bb.network.ops if op["inputs"][0] == bb._trunk
                 and bb.network.tensors[op["outputs"][0]]["shape"][-1] == 195)
    w, b = (bb.network.params[str(i)] for i in layer["inputs"][1:3])
    got = torch.nn.functional.conv2d(trunk, w, b).flatten(1)
    torch.testing.assert_close(got, outputs["Identity"], atol=1e-4, rtol=0)
    feats = bb.features(raw)
    assert feats.shape == (2, bb.out_features)
    start = bb.raw_shapes()["trunk"][0] + bb.raw_shapes()["encoder"][0]
    lm = feats[:, start : start + 195].reshape(2, 39, 5)
    torch.testing.assert_close(lm[..., :2], raw["landmarks"][..., :2] / (LANDMARK_RES / 2) - 1)
    assert ((lm[..., 3:] >= 0) & (lm[..., 3:] <= 1)).all()
    # cached outputs give the same features as the images
    batch = {"image": x, **{f"backbone/{k}": v for k, v in raw.items()}}
    torch.testing.assert_close(bb.from_batch(batch), bb(x))
    with pytest.raises(ValueError, match="reads 256 px crops"):
        lite(image_size=224)
    with pytest.raises(ValueError, match="inputs must be distinct names"):
        lite(inputs=("trunk", "pixels"))


def test_feature_map_is_the_pooled_encoder_input(lite):
    """The spatial map (W-HMR's decoder input) is the encoder tap; its average pool is the
    ``encoder`` input; frozen, no gradient reaches the network."""
    bb = lite(inputs=("encoder",), encoder_pool=2)
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    fmap = bb.feature_map(x)
    assert fmap.shape == (2, bb.encoder_channels, 8, 8) and not fmap.requires_grad
    torch.testing.assert_close(nn.functional.adaptive_avg_pool2d(fmap, 2).flatten(1),
                               bb.raw(x)["encoder"])


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_whmr_trains_on_the_blazepose_backbone(lite, tiny_split, tmp_path):
    """W-HMR's PyMAF-like head decodes the frozen BlazePose encoder map: one stage-I step
    trains the head and the focal predictor, not the network; the committed config trains."""
    from pathlib import Path

    from hmrkit.cli import main as cli_main
    from hmrkit.data.dataset import SyntheticDataset
    from hmrkit.data.formats import SPARSE_KEYS
    from hmrkit.models.methods.whmr import WHMR
    from hmrkit.models.pymaf import PyMAFHead

    model = WHMR(backbone=lite, head=partial(PyMAFHead, channels=16, hidden=32, grid=4,
                                             vertex_regressor=None), crop_size=256)
    assert model.crop_style == "box"  # W-HMR's equations are written for upright boxes
    keys = (*SPARSE_KEYS, "meta/body_model", "full_image")
    data = SyntheticDataset(tiny_split, split=None, crop_size=256, keys=keys)
    batch = torch.utils.data.default_collate([data[i] for i in range(2)])
    loss = model.training_step(batch, 0)
    loss = loss["loss"] if isinstance(loss, dict) else loss
    loss.backward()
    assert torch.isfinite(loss)
    assert not list(model.backbone.parameters())  # frozen: nothing of the network trains
    grads = [p.grad for p in model.head.parameters() if p.requires_grad]
    assert sum(g is not None and g.abs().sum() > 0 for g in grads) > 0.5 * len(grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.focal.parameters())
    config = Path(__file__).resolve().parents[1] / "configs" / "whmr-bp-full-stage1.yaml"
    assert cli_main(["train", "--config", str(config),
                     "--model.init_args.backbone.init_args.variant", "lite",
                     "--data.train", str(tiny_split), "--data.val", str(tiny_split),
                     "--data.batch_size", "2", "--data.max_train_samples", "2",
                     "--data.max_val_samples", "2", "--data.num_workers", "0",
                     "--trainer.max_steps", "1", "--trainer.val_check_interval", "1",
                     "--trainer.accelerator", "cpu",
                     "--trainer.logger.init_args.save_dir", str(tmp_path)]) == 0
    assert (tmp_path / "whmr-bp-full-stage1" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_partial_training_reaches_the_regression_branch_only(lite):
    bb = lite(inputs=("landmarks", "world"), trainable="partial")
    trainable = [p for p in bb.parameters() if p.requires_grad]
    assert 0 < len(trainable) < len(list(bb.parameters()))
    assert bb.cache_signature() is None  # only a frozen backbone can be cached
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    out = bb.network(x)
    heat = next(v for v in out.values() if v.dim() == 4 and v.shape[1] == 39)
    assert not heat.requires_grad  # the heatmaps do not depend on the trained part
    feats = bb(x)
    grads = torch.autograd.grad(feats.sum(), trainable, allow_unused=True)
    assert sum(g is not None for g in grads) > 0.9 * len(trainable)
    assert any(k.startswith("network.") for k in bb.state_dict())  # trained weights are saved


def test_frozen_method_stores_its_head_only(lite, tmp_path):
    from hmrkit.models.checkpoints import load_method
    from hmrkit.models.heads import IterativeRegressor
    from hmrkit.models.methods import CLIFF
    from hmrkit.models.parts import plain

    model = CLIFF(backbone=partial(lite, inputs=("landmarks", "world")), crop_size=256,
                  head=partial(IterativeRegressor, hidden=64))
    assert not any(k.startswith("backbone.") for k in model.state_dict())
    path = tmp_path / "m.pt"
    torch.save({"format": "hmrkit-method", "hmrkit": {"method": "hmrkit.models.methods.CLIFF"},
                "hyper_parameters": plain(dict(model.hparams)),
                "state_dict": model.state_dict()}, path)
    assert path.stat().st_size < 1e6  # the lite network alone is 5.4 MB in float32
    again = load_method(path)
    assert again.backbone.variant == "lite" and again.crop_style == "blazepose"
    x = {"image": torch.rand(1, 3, 256, 256)}
    torch.testing.assert_close(again.backbone.from_batch(x), model.backbone.from_batch(x))


# ------------------------------------------------------------------ the feature cache
def _cache_args(data, out, **kw):
    import argparse

    from hmrkit import cache

    parser = argparse.ArgumentParser()
    cache.add_arguments(parser)
    argv = ["--data", str(data), "--out", str(out), "--variant", "lite", "--copies", "2",
            "--chunk-size", "3", "--batch-size", "2", "--limit", "4", "--workers", "0",
            "--outputs", "trunk", "landmarks", "world", "presence"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", *([] if v is True else [str(v)])]
    return parser.parse_args(argv)


def test_feature_cache_build_resume_read_and_refuse_stale(lite, tiny_split, tmp_path):
    from hmrkit.cache import build_cache
    from hmrkit.data.dataset import SyntheticDataset
    from hmrkit.data.feature_cache import FeatureCacheDataset, FeatureCacheError

    out = tmp_path / "cache"
    manifest = build_cache(_cache_args(tiny_split, out), progress=False)
    assert manifest["complete"] and manifest["items"] == 8 and len(manifest["chunks"]) == 3
    bb = lite(inputs=("trunk", "landmarks", "world"))
    ds = FeatureCacheDataset(out, bb.cache_signature(), keys=("image", *bb_keys()))
    assert len(ds) == 8
    # copy 0 is the unaugmented crop: its cached outputs are the backbone's on that crop
    plain = SyntheticDataset(tiny_split, split=None, crop_size=256, crop_style="blazepose")
    item, sample = ds[2], plain[2]
    with torch.no_grad():
        raw = bb.raw(sample["image"][None])
    torch.testing.assert_close(item["backbone/landmarks"], raw["landmarks"][0], atol=1e-3,
                               rtol=0)
    torch.testing.assert_close(item["backbone/trunk"], raw["trunk"][0], atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(item["joints3d"], sample["joints3d"])
    assert item["box_rotation"] == sample["box_rotation"]
    # copy 1 is augmented (epoch 1)
    assert not torch.equal(ds[4 + 2]["crop_affine"], item["crop_affine"])

    # resume: a missing and a corrupt chunk are rewritten, the others kept
    first = (out / "chunk-00000.npz").stat().st_mtime_ns
    (out / "chunk-00001.npz").unlink()
    (out / "chunk-00002.npz").write_bytes(b"broken")
    with pytest.raises(FeatureCacheError, match="missing chunk"):
        FeatureCacheDataset(out, bb.cache_signature())
    again = build_cache(_cache_args(tiny_split, out), progress=False)
    assert again["complete"] and (out / "chunk-00000.npz").stat().st_mtime_ns == first
    assert [c["sha256"] for c in again["chunks"]] == [c["sha256"] for c in manifest["chunks"]]

    # built otherwise: refused unless --overwrite
    with pytest.raises(FeatureCacheError, match="built otherwise.*copies"):
        build_cache(_cache_args(tiny_split, out, copies=1), progress=False)
    # stale: another backbone, another crop calibration, another format version
    sig = bb.cache_signature()
    with pytest.raises(FeatureCacheError, match="stale feature cache.*variant"):
        FeatureCacheDataset(out, {**sig, "variant": "full"})
    with pytest.raises(FeatureCacheError, match="stale feature cache.*radius_scale"):
        FeatureCacheDataset(out, {**sig, "radius_scale": 1.1})
    with pytest.raises(FeatureCacheError, match="cannot read cached outputs"):
        FeatureCacheDataset(out, None)
    with pytest.raises(FeatureCacheError, match="holds no"):
        FeatureCacheDataset(out, sig, keys=("mask",))
    text = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**text, "format_version": 0}))
    with pytest.raises(FeatureCacheError, match="format version 0"):
        FeatureCacheDataset(out, sig)


def bb_keys():
    from hmrkit.cache import LABEL_KEYS

    return LABEL_KEYS


def test_train_from_a_feature_cache(lite, tiny_split, tmp_path):
    """`hmrkit train` with data.format feature-cache trains a head; a stale cache is one line."""
    from hmrkit.cache import build_cache
    from hmrkit.train import main as train

    out = tmp_path / "cache"
    build_cache(_cache_args(tiny_split, out), progress=False)
    cfg = {
        "seed_everything": 0,
        "trainer": {"max_steps": 3, "accelerator": "cpu", "logger": False,
                    "default_root_dir": str(tmp_path),
                    "enable_checkpointing": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "limit_val_batches": 0},
        "model": {"class_path": "hmrkit.models.methods.CLIFF", "init_args": {
            "crop_size": 256,
            "backbone": {"class_path": "hmrkit.models.backbones.BlazePoseBackbone",
                         "init_args": {"variant": "lite", "inputs": ["landmarks", "world"]}},
            "head": {"class_path": "hmrkit.models.heads.IterativeRegressor",
                     "init_args": {"hidden": 32}}}},
        "data": {"train": str(out), "val": None, "format": "feature-cache", "batch_size": 4,
                 "num_workers": 0},
    }
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    assert train(["--config", str(path)]) == 0
    cfg["model"]["init_args"]["backbone"]["init_args"]["variant"] = "full"
    path.write_text(json.dumps(cfg))
    assert train(["--config", str(path)]) == 2


def test_predict_cuts_mediapipes_crop_for_blazepose_methods():
    """``hmrkit predict`` cuts a BlazePose ROI exactly as MediaPipe's pipeline does
    (hmrkit.blazepose.roi.warp_crops of crop_affine, edge pixels replicated)."""
    from hmrkit.blazepose.roi import crop_affine, warp_crops
    from hmrkit.predict import PersonBox, make_batch

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    center, size, rotation = np.array([180.3, 160.8]), 280.0, 0.4  # overhangs the image
    batch = make_batch([(image, PersonBox(center, size, rotation), None)], 256, rotated=True,
                       crop_style="blazepose")
    expected = warp_crops(image, crop_affine(torch.tensor(center)[None], torch.tensor([size]),
                                             torch.tensor([rotation]), 256), 256)[0]
    got = (batch["image"][0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(got - expected).max() <= 1.0
    assert float(batch["box_rotation"][0]) == pytest.approx(rotation)
    # a plain box for a BlazePose method: an upright crop (angle 0)
    upright = make_batch([(image, PersonBox(center, size), None)], 256, rotated=True,
                         crop_style="blazepose")
    assert float(upright["box_rotation"][0]) == 0.0
