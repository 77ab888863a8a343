"""Multi-RoI HMR: fusion, local/full cameras, losses, training steps, predict and evaluate.

The losses themselves (camera consistency against a loop, contrastive loss against a naive loop
and decreasing when same-person features are pulled together) are tested in test_losses.py;
here they are checked through the method.
"""

from __future__ import annotations

import json
import math
from functools import partial

import cv2
import numpy as np
import pytest
import torch

from hmrkit.cli import main as cli_main
from hmrkit.data.rois import multi_roi_boxes
from hmrkit.geometry.cameras import Camera, full_to_crop_camera
from hmrkit.geometry.crops import CropBox
from hmrkit.losses import ProjectionHead
from hmrkit.losses.sets import MultiRoILosses, gt_rotmat
from hmrkit.models.fusion import (
    FUSIONS,
    RoIAwareFusion,
    positional_encoding,
    positional_encoding_dim,
)
from hmrkit.models.heads import CameraDecoder, IterativeRegressor
from hmrkit.models.methods.base import Optim
from hmrkit.models.methods.multiroi import MultiRoI
from hmrkit.models.registry import method_class

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(crop_size=32, head=partial(IterativeRegressor, hidden=32),
            camera_head=partial(CameraDecoder, hidden=32))


def fusion_part(name: str, width: int = 32):
    """The fusion variant called ``name`` (:data:`FUSIONS`) with a small width."""
    if name == "raf-code":
        return partial(FUSIONS[name], hidden=width)
    if name == "attention":
        return partial(FUSIONS[name], attention_dim=width)
    return FUSIONS[name]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    assert cli_main(["synth", "--n", "3", "--out", str(root / "train"), "--seed", "5"]) == 0
    return root


@pytest.fixture(scope="module")
def batch(data_root):
    from hmrkit.data.dataset import SyntheticDataset

    dataset = SyntheticDataset(data_root, split="train", crop_size=32, rois=5)
    return next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MultiRoI(**TINY)


def _boxes(B: int = 3, M: int = 5, seed: int = 0):
    """Random person boxes, their M RoIs, image sizes and focals (float64)."""
    g = torch.Generator().manual_seed(seed)
    wh = torch.tensor([[640.0, 480.0], [800.0, 600.0], [500.0, 700.0]], dtype=torch.float64)[:B]
    center = wh * (0.3 + 0.4 * torch.rand(B, 2, generator=g, dtype=torch.float64))
    size = 120 + 200 * torch.rand(B, generator=g, dtype=torch.float64)
    centers, sizes = multi_roi_boxes(center, size, m=M)
    return {"rois/box_center": centers, "rois/box_size": sizes, "camera/image_size": wh,
            "camera/intrinsics": torch.cat([wh.norm(dim=1, keepdim=True).expand(B, 2), wh / 2], 1),
            "rois/image": torch.zeros(B, M, 3, 1, 1),
            "rois/crop_affine": torch.zeros(B, M, 2, 3, dtype=torch.float64)}


def _local_cameras(b: dict, transl: torch.Tensor) -> torch.Tensor:
    """The crop camera of every RoI that sees the body at the full translation ``transl``."""
    B, M = b["rois/box_size"].shape
    cams = [full_to_crop_camera(transl, b["rois/box_center"][:, m], b["rois/box_size"][:, m],
                                b["camera/image_size"], b["camera/intrinsics"][:, 0])
            for m in range(M)]
    return torch.stack(cams, dim=1)


# --------------------------------------------------------------------------- cameras


@pytest.mark.parametrize("variant,pairs,scale_term", [
    ("paper", "all", "bs"), ("paper", "first", "bs"), ("paper", "all", "tz"), ("code", "first", "bs"),
])
def test_camera_consistency_zero_for_one_full_camera(model, variant, pairs, scale_term):
    from hmrkit.models.methods.base import BodyEstimate

    b = _boxes()
    transl = torch.tensor([[0.3, -0.2, 6.0], [-1.0, 0.4, 9.0], [0.1, 0.1, 4.0]],
                          dtype=torch.float64)
    cams = _local_cameras(b, transl)
    losses = model.losses
    losses.camera_variant, losses.camera_pairs, losses.camera_scale_term = variant, pairs, scale_term
    try:
        def term(c):
            est = BodyEstimate(cam_crop=c[:, 0], extras={"cams": c})
            return float(model.losses.camera_consistency_term(est, b, model.loss_context))

        assert term(cams) < 1e-8
        for m, j in [(1, 0), (2, 1), (4, 2)]:  # one RoI's scale or offset off
            moved = cams.clone()
            moved[:, m, j] += 0.05
            assert term(moved) > 1e-6, (m, j)
    finally:
        losses.camera_variant, losses.camera_pairs, losses.camera_scale_term = "paper", "all", "bs"


def test_local_full_local_round_trip(model):
    """Local -> full (eq. 12, per RoI) -> local is the identity; one full camera gives local
    cameras whose full cameras all agree."""
    b = _boxes()
    g = torch.Generator().manual_seed(1)
    cams = torch.stack([0.5 + torch.rand(3, 5, generator=g, dtype=torch.float64),
                        torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.2,
                        torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.2], dim=-1)
    rois, camera = CropBox.rois_from_sample(b, 32, 5), Camera.from_sample(b)
    full = rois.to_full_translation(cams, camera)
    for m in range(5):
        back = full_to_crop_camera(full[:, m], b["rois/box_center"][:, m],
                                   b["rois/box_size"][:, m], b["camera/image_size"],
                                   b["camera/intrinsics"][:, 0])
        torch.testing.assert_close(back, cams[:, m], rtol=1e-10, atol=1e-10)
    transl = torch.tensor([[0.3, -0.2, 6.0]] * 3, dtype=torch.float64)
    local = _local_cameras(b, transl)
    full = rois.to_full_translation(local, camera)
    torch.testing.assert_close(full, transl[:, None].expand(3, 5, 3), rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- fusion


def test_positional_encoding_golden():
    x = torch.tensor([[0.25, -0.5, 1.0]], dtype=torch.float64)
    pe = positional_encoding(x, frequencies=2)
    assert pe.shape == (1, positional_encoding_dim(3, 2)) == (1, 15)
    p = 0.25
    want = [p, math.sin(math.pi * p), math.cos(math.pi * p),
            math.sin(2 * math.pi * p), math.cos(2 * math.pi * p)]
    got = [pe[0, 0], pe[0, 3], pe[0, 6], pe[0, 9], pe[0, 12]]  # x, sin f0, cos f0, sin f1, cos f1
    torch.testing.assert_close(torch.stack(got), torch.tensor(want, dtype=torch.float64))
    assert positional_encoding_dim() == 195  # L = 32 on 3 box values, as the official code


@pytest.mark.parametrize("name", FUSIONS)
def test_fusion_weights_and_permutation(name):
    torch.manual_seed(0)
    B, M, D = 3, 5, 16
    fusion = fusion_part(name, 8)(D, M).double()
    h = torch.randn(B, M, D, dtype=torch.float64)
    boxes = torch.randn(B, M, 3, dtype=torch.float64) * 0.3
    out = fusion(h, boxes)
    assert out.roi.shape == (B, M, D) and out.shared.shape == (B, D)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(B, M, dtype=out.weights.dtype))
    assert (out.weights >= 0).all()
    torch.testing.assert_close(out.roi, torch.einsum("bmn,bnd->bmd", out.weights.double(), h))
    torch.testing.assert_close(out.shared, out.roi.mean(1))
    if name == "raf-code":
        return  # the official MLP reads the RoI pairs in a fixed order: not equivariant
    perm = torch.tensor([3, 0, 4, 2, 1])
    moved = fusion(h[:, perm], boxes[:, perm])
    torch.testing.assert_close(moved.roi, out.roi[:, perm])
    torch.testing.assert_close(moved.weights, out.weights[:, perm][:, :, perm])
    torch.testing.assert_close(moved.shared, out.shared)


@pytest.mark.parametrize("name", FUSIONS)
def test_fusion_under_float16_autocast(name):
    """The PE's frequencies up to 2^31 pi overflow float16: it must run in float32."""
    assert torch.isfinite(positional_encoding(torch.rand(4, 3).half())).all()
    torch.manual_seed(0)
    fusion = fusion_part(name, 8)(16, 5)
    h, boxes = torch.randn(2, 5, 16), torch.randn(2, 5, 3)
    with torch.autocast("cpu", dtype=torch.float16):
        out = fusion(h.half(), boxes)
    assert torch.isfinite(out.roi).all() and torch.isfinite(out.weights).all()
    torch.testing.assert_close(out.weights.float(), fusion(h, boxes).weights, atol=5e-3, rtol=0)


def test_raf_relations():
    """Only the PE of the box difference gives RoI-specific weights: the literal eq. 2
    (gamma(B_m) - gamma(B_n)) cancels in eq. 4's softmax over n."""
    torch.manual_seed(0)
    h = torch.randn(2, 5, 16, dtype=torch.float64)
    boxes = torch.randn(2, 5, 3, dtype=torch.float64) * 0.3
    for relation in RoIAwareFusion.RELATIONS:
        w = RoIAwareFusion(16, relation=relation).double()(h, boxes).weights
        same_rows = torch.allclose(w, w[:, :1].expand_as(w), atol=1e-12)
        assert same_rows == (relation != "relative"), relation


# --------------------------------------------------------------------------- method


def test_registry_and_arguments():
    assert method_class("multiroi") is MultiRoI
    with pytest.raises(ValueError, match="num_rois"):
        MultiRoI(num_rois=6, **TINY)
    with pytest.raises(ValueError, match="camera_pairs"):
        MultiRoILosses(camera_pairs="some")
    with pytest.raises(ValueError, match="relation"):
        RoIAwareFusion(16, relation="max")


@pytest.mark.parametrize("frame", ["roi", "original"])
def test_losses_vanish_at_ground_truth(model, batch, frame):
    """The labelled mesh seen through the local cameras of the labelled full camera: the 2D loss
    of every RoI (in the full image) and the camera consistency are zero."""
    from hmrkit.models.methods.base import BodyEstimate

    rotmat = gt_rotmat(batch)
    out = model.body(rotmat[:, 0], rotmat[:, 1:], batch["betas"])
    b = {**batch, "camera/intrinsics": batch["camera/intrinsics"].double(),
         "camera/image_size": batch["camera/image_size"].double(),
         "rois/box_center": batch["rois/box_center"].double(),
         "rois/box_size": batch["rois/box_size"].double()}
    cams = _local_cameras(b, batch["transl"].double()).float()
    transl = CropBox.rois_from_sample(batch, 32, 5).to_full_translation(
        cams, Camera.from_sample(batch))
    torch.testing.assert_close(transl, batch["transl"][:, None].expand_as(transl),
                               atol=1e-4, rtol=1e-5)
    est = BodyEstimate(rotmat=rotmat, betas=batch["betas"], cam_crop=cams[:, 0],
                       transl=transl[:, 0], vertices=out.vertices, joints=out.joints,
                       extras={"cams": cams, "transl_rois": transl})
    losses, ctx = model.losses, model.loss_context
    losses.keypoint_frame, sets = frame, losses.keypoint_sets
    losses.keypoint_sets = ("smpl24",)
    try:
        assert losses.keypoints_2d(est, batch, ctx).item() < 1e-6
        assert losses.camera_consistency_term(est, batch, ctx).item() < 1e-6
    finally:
        losses.keypoint_frame, losses.keypoint_sets = "roi", sets


def test_training_steps_lower_the_loss(batch):
    torch.manual_seed(0)
    model = MultiRoI(optim=Optim(lr=1e-3), **TINY)
    model.train()
    opt = model.configure_optimizers()
    first = None
    for _ in range(8):
        est = model(batch)
        losses = model.compute_losses(est, batch)
        assert {"keypoints_2d", "keypoints_3d", "pose", "betas", "vertices", "cam_prior",
                "camera_consistency", "contrastive"} <= set(losses)
        assert all(torch.isfinite(v) for v in losses.values()), losses
        total = sum(losses.values())
        first = total.item() if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert total.item() < first
    B = batch["image"].shape[0]
    assert est.rotmat.shape == (B, 24, 3, 3) and est.transl.shape == (B, 3)
    assert est.extras["cams"].shape == (B, 5, 3)
    torch.testing.assert_close(est.cam_crop, est.extras["cams"][:, 0])
    box = CropBox.from_sample(batch, 32)
    torch.testing.assert_close(est.transl, box.to_full_translation(est.cam_crop,
                                                                   Camera.from_sample(batch)))


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("num_rois", [1, 3, 5])
def test_variants_run(batch, fusion, num_rois):
    torch.manual_seed(0)
    model = MultiRoI(num_rois=num_rois, fusion=fusion_part(fusion), **TINY)
    model.train()
    sub = {k: v[:2] for k, v in batch.items()}
    est = model(sub)
    assert est.extras["cams"].shape == (2, num_rois, 3)
    losses = model.compute_losses(est, sub)
    assert ("camera_consistency" in losses) == (num_rois > 1)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    metrics = model.evaluate_batch(sub)
    assert torch.isfinite(metrics["pa_mpjpe"]).all()


@pytest.mark.parametrize("method,loss", [
    (dict(per_roi_regressor=True, fusion=fusion_part("raf-code"),
          projection=partial(ProjectionHead, gate=True)),
     dict(camera_variant="code", camera_pairs="first", contrastive_denominator="supcon")),
    (dict(camera_box_info=True, mesh_box_info=False, projection=None,
          fusion=partial(RoIAwareFusion, relation="absolute")),
     dict(camera_consistency=0.0, contrastive=0.0, keypoint_frame="original")),
])
def test_options(batch, method, loss):
    torch.manual_seed(0)
    model = MultiRoI(**TINY, **method, losses=partial(MultiRoILosses, **loss))
    model.train()
    est = model(batch)
    losses = model.compute_losses(est, batch)
    assert ("camera_consistency" in losses) == (loss.get("camera_consistency", 1) > 0)
    assert ("contrastive" in losses) == (loss.get("contrastive", 1) > 0)
    if method.get("per_roi_regressor"):
        assert est.extras["roi_joints"].shape[:2] == (batch["image"].shape[0], 5)
        torch.testing.assert_close(est.joints, est.extras["roi_joints"][:, 0])
    sum(losses.values()).backward()


def test_inputs_without_rois(model, batch):
    single = {k: v for k, v in batch.items() if not k.startswith("rois/")}
    with pytest.raises(ValueError, match="rois/image"):
        model(single)
    one = MultiRoI(num_rois=1, **TINY).eval()
    with torch.no_grad():
        a, b = one(single), one(batch)  # num_rois=1 uses `image` itself
    torch.testing.assert_close(a.vertices, b.vertices)


# --------------------------------------------------------------------------- predict, evaluate


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = MultiRoI(num_rois=3, **TINY)
    path = tmp_path_factory.mktemp("ckpt") / "multiroi.ckpt"
    torch.save({"hmrkit": {"method": "hmrkit.models.methods.multiroi.MultiRoI"},
                "hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, path)
    return path


def test_make_batch_builds_rois():
    from hmrkit.predict import PersonBox, make_batch

    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (160, 120))
    box = PersonBox(np.array([70.0, 60.0]), 80.0)
    plain = make_batch([(image, box, 200.0)], 32)
    assert not any(k.startswith("rois/") for k in plain)
    batch = make_batch([(image, box, 200.0), (image, box, 200.0)], 32, rois=5)
    assert batch["rois/image"].shape == (2, 5, 3, 32, 32)
    torch.testing.assert_close(batch["rois/image"][:, 0], batch["image"])
    torch.testing.assert_close(batch["rois/crop_affine"][:, 0], batch["crop_affine"])
    torch.testing.assert_close(batch["rois/box_size"][0],
                               torch.tensor([80.0, 120.0, 100.0, 64.0, 52.0]))


def test_predict(checkpoint, tmp_path):
    from hmrkit.predict import main

    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (160, 120))
    cv2.imwrite(str(tmp_path / "person.png"), image)
    out = tmp_path / "out"
    assert main([str(tmp_path / "person.png"), "--checkpoint", str(checkpoint), "--out",
                 str(out), "--formats", "obj", "--no-side-view", "--detector", "none"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["summary"]["persons"] == 1 and index["method"].endswith("MultiRoI")
    params = np.load(out / "person_p0.npz")
    assert np.isfinite(params["transl"]).all() and params["joints3d"].shape == (24, 3)
    assert (out / "person_p0.obj").is_file() and (out / "person_overlay.png").is_file()


def test_evaluate(checkpoint, data_root, tmp_path):
    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--checkpoint", str(checkpoint), "--data",
                     str(data_root / "train"), "--out", str(out), "--batch-size", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["count"] > 0 and math.isfinite(metrics["overall"]["pa_mpjpe"])


def test_the_data_module_feeds_the_roi_crops(tmp_path):
    from hmrkit.cli import main
    from hmrkit.data.module import HMRDataModule

    assert main(["synth", "--n", "2", "--out", str(tmp_path / "train"), "--seed", "6"]) == 0
    dm = HMRDataModule(train=str(tmp_path / "train"), val=None, crop_size=32, rois=5,
                       batch_size=2, num_workers=0, augment=None)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["rois/image"].shape == (2, 5, 3, 32, 32)
    assert batch["rois/box_size"].shape == (2, 5)
