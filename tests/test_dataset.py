"""SyntheticDataset: crops land keypoints on image markers (plain, flipped, fully augmented,
every RoI), dense maps, label consistency, collation, filtering, determinism, errors."""

from __future__ import annotations

import math
import pickle
import shutil

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hmrkit.body.keypoints import COCO17_NAMES
from hmrkit.data.augment import AugmentConfig
from hmrkit.data.dataset import META_KEYS, SyntheticDataset
from hmrkit.data.rois import multi_roi_boxes
from hmrkit.data.sample import ROI_KEYS, ROTATED_BOX_KEYS, SAMPLE_KEYS, check_sample
from hmrkit.data.shards import decode_npz, shard_name, write_split
from hmrkit.geometry.crops import crop_matrix
from tests.test_shards import encode_scene, make_fake_scene, project

H, W = 240, 320
LW, RW = COCO17_NAMES.index("left_wrist"), COCO17_NAMES.index("right_wrist")
RED, GREEN = (255, 0, 0), (0, 255, 0)
NO_AUG = dict(scale=(1.0, 1.0), translation=0.0, rotation_prob=0.0, flip_prob=0.0,
              color_gain=None, occlusion_prob=0.0)


def marker_scene(i: int) -> dict:
    """A fake scene on a dark image with a red disc at person 0's COCO left wrist and a green
    one at its right wrist (lossless PNG)."""
    rng = np.random.default_rng([11, i])
    while True:
        scene = make_fake_scene(rng, H, W, 2)
        kp = scene["labels"]["keypoints2d/coco17"][0]
        lw, rw = kp[LW, :2], kp[RW, :2]
        inside = all(6 < p[0] < W - 6 and 6 < p[1] < H - 6 for p in (lw, rw))
        if inside and np.linalg.norm(lw - rw) > 16:
            break
    image = rng.integers(0, 30, size=(H, W, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    for pos, color in ((lw, RED), (rw, GREEN)):
        image[(xx - pos[0]) ** 2 + (yy - pos[1]) ** 2 <= 3.0**2] = color
    scene["image"] = image
    scene["labels"]["visible_fraction"][:] = [0.9, 0.1 + 0.3 * (i % 3)]  # person 1: 0.1/0.4/0.7
    return scene


def marker_record(i: int) -> dict[str, bytes]:
    return encode_scene(marker_scene(i), "png")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_split(marker_record, 6, root / "train", shard_size=4, progress=False)
    write_split(marker_record, 2, root / "val", shard_size=4, progress=False)
    return root


def marker_center(image: torch.Tensor, color) -> np.ndarray | None:
    """Weighted centroid (continuous crop pixels) of the pixels dominated by ``color``."""
    img = image.numpy()
    c = int(np.argmax(color))
    others = np.delete(img, c, axis=0).max(0)
    w = np.clip(img[c] - others - 0.25, 0, None)
    if w.sum() < 0.5:
        return None
    yy, xx = np.mgrid[0 : img.shape[1], 0 : img.shape[2]] + 0.5
    return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


def to_crop(affine: torch.Tensor, xy) -> np.ndarray:
    a = affine.double().numpy()
    return a[:, :2] @ np.asarray(xy, dtype=np.float64) + a[:, 2]


def person0_items(ds: SyntheticDataset) -> list[int]:
    return [k for k, (_, _, p) in enumerate(ds.items) if p == 0]


def check_markers(sample, affine, image, size, left="left_wrist", right="right_wrist"):
    """Keypoints ``left`` / ``right`` mapped by ``affine`` land on the red / green markers."""
    kp = sample["keypoints2d/coco17"]
    checked = 0
    for name, color in ((left, RED), (right, GREEN)):
        pos = to_crop(affine, kp[COCO17_NAMES.index(name), :2])
        if not (6 < pos[0] < size - 6 and 6 < pos[1] < size - 6):
            continue  # out of this crop
        found = marker_center(image, color)
        assert found is not None, (name, pos)
        np.testing.assert_allclose(found, pos, atol=1.0, err_msg=name)
        checked += 1
    return checked


# --------------------------------------------------------------------------- crops


def test_keypoint_lands_on_marker(root):
    ds = SyntheticDataset(root, "train", crop_size=128)
    checked = 0
    for k in person0_items(ds):
        s = ds[k]
        checked += check_markers(s, s["crop_affine"], s["image"], 128)
        np.testing.assert_allclose(
            s["crop_affine"].numpy(),
            crop_matrix(s["box_center"][None], s["box_size"], 128)[0].numpy(), atol=1e-4,
        )
        np.testing.assert_allclose(s["meta/source_affine"].numpy(), [[1, 0, 0], [0, 1, 0]])
    assert checked == 2 * 6


def test_flip_keeps_left_and_right(root):
    cfg = AugmentConfig(**{**NO_AUG, "flip_prob": 1.0}, seed=0)
    ds = SyntheticDataset(root, "train", crop_size=128, augment=cfg)
    plain = SyntheticDataset(root, "train", crop_size=128)
    checked = 0
    for k in person0_items(ds):
        s, p = ds[k], plain[k]
        # the mirrored person's left wrist is the original right wrist (green marker)
        checked += check_markers(s, s["crop_affine"], s["image"], 128, "right_wrist", "left_wrist")
        torch.testing.assert_close(s["image"], p["image"].flip(-1), atol=1.01 / 255, rtol=0)
        assert (s["mask"] != p["mask"].flip(-1)).sum() <= 2 * 128  # nearest-neighbour ties
        assert s["has_iuv"] == 0 and p["has_iuv"] == 1 and not s["iuv"].any()
        assert s["box_center"][0] == pytest.approx(W - p["box_center"][0].item(), abs=1e-3)
        assert s["camera/intrinsics"][2] == pytest.approx(W - p["camera/intrinsics"][2].item())
        torch.testing.assert_close(s["keypoints2d/coco17"][LW, 1], p["keypoints2d/coco17"][RW, 1])
        torch.testing.assert_close(s["joints3d"][:, 2].sort()[0], p["joints3d"][:, 2].sort()[0])
    assert checked == 2 * 6
    keep = SyntheticDataset(root, "train", crop_size=64,
                            augment=AugmentConfig(**{**NO_AUG, "flip_prob": 1.0}, iuv_on_flip="keep"))
    assert keep[0]["has_iuv"] == 1


def test_full_augmentation_stays_consistent(root):
    cfg = AugmentConfig(rotation_prob=1.0, rotation_deg=25, flip_prob=0.5, occlusion_prob=0.0,
                        seed=5)
    ds = SyntheticDataset(root, "train", crop_size=128, augment=cfg)
    checked, flips = 0, 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for k in person0_items(ds):
            s = ds[k]
            params = ds.augmentation_params(k)
            flips += params.flip
            left, right = ("right_wrist", "left_wrist") if params.flip else ("left_wrist", "right_wrist")
            checked += check_markers(s, s["crop_affine"], s["image"], 128, left, right)
            # 2D labels are the projection of the 3D labels in the augmented view
            focal, pp = s["camera/intrinsics"][0].item(), s["camera/intrinsics"][2:]
            np.testing.assert_allclose(
                project(s["joints3d"].double().numpy(), focal, pp.double().numpy()),
                s["keypoints2d/smpl24"][:, :2].double().numpy(), atol=1e-2,
            )
            # source image -> crop equals the geometry module's rotated / flipped crop matrix
            raw = ds.shards[ds.items[k][0]].read(int(ds.items[k][1]), ["labels.npz"])
            labels = decode_npz(raw["labels.npz"])
            b = labels["box_size"][0] * params.scale
            c = labels["box_center"][0] + np.asarray(params.translation) * labels["box_size"][0]
            expected = crop_matrix(torch.tensor(c)[None], b, 128, params.rotation, params.flip)[0]
            a = s["crop_affine"].double().numpy()
            composed = a[:, :2] @ s["meta/source_affine"].double().numpy()
            composed[:, 2] += a[:, 2]
            np.testing.assert_allclose(composed, expected.numpy(), atol=1e-3)
            assert s["box_size"].item() == pytest.approx(b, rel=1e-5)
    assert checked >= 20 and 0 < flips < 18


def test_multi_roi_crops(root):
    ds = SyntheticDataset(root, "train", crop_size=96, rois=5,
                          augment=AugmentConfig(**{**NO_AUG, "rotation_prob": 1.0}, seed=1))
    s = ds[person0_items(ds)[1]]
    assert s["rois/image"].shape == (5, 3, 96, 96) and s["rois/crop_affine"].shape == (5, 2, 3)
    centers, sizes = multi_roi_boxes(s["box_center"].double(), s["box_size"].double())
    torch.testing.assert_close(s["rois/box_center"], centers.float())
    torch.testing.assert_close(s["rois/box_size"], sizes.float())
    torch.testing.assert_close(s["rois/image"][0], s["image"])
    torch.testing.assert_close(s["rois/crop_affine"][0], s["crop_affine"])
    checked = sum(
        check_markers(s, s["rois/crop_affine"][m], s["rois/image"][m], 96) for m in range(5)
    )
    assert checked >= 6
    assert not (set(ROI_KEYS) & set(SyntheticDataset(root, "train", crop_size=32)[0]))


def test_occluders_are_shared_by_all_rois(root):
    cfg = AugmentConfig(**{**NO_AUG, "occlusion_prob": 1.0}, occlusion_count=(1, 1),
                        occlusion_size=(0.3, 0.3), occlusion_textured=0.0, seed=2)
    ds = SyntheticDataset(root, "train", crop_size=64, rois=3, augment=cfg)
    s = ds[0]
    occ = ds.augmentation_params(0).occluders[0]
    color = torch.tensor(occ.color, dtype=torch.float32)
    # the occluder's centre, crop 0 pixels -> full image -> every RoI crop, shows its colour
    centre0 = np.array([(occ.x0 + occ.x1) / 2, (occ.y0 + occ.y1) / 2]) * 64
    a0 = s["rois/crop_affine"][0].double().numpy()
    full = np.linalg.solve(a0[:, :2], centre0 - a0[:, 2])
    for m in range(3):
        x, y = to_crop(s["rois/crop_affine"][m], full).astype(int)
        torch.testing.assert_close(s["rois/image"][m][:, y, x], color)


def test_dense_maps_and_flags(root):
    ds = SyntheticDataset(root, "train", crop_size=64, persons="all")
    s = ds[0]
    assert s["has_mask"] == s["has_iuv"] == s["has_depth"] == 1
    assert s["has_keypoints2d"] == s["has_joints3d"] == s["has_smpl"] == s["has_world"] == 1
    # the fake instance disc has radius box/4 around the box centre: crop centre in, corner out
    assert s["mask"][32, 32] == 1 and s["mask"][0, 0] == 0
    assert s["depth"][32, 32].item() == pytest.approx(
        round(s["joints3d"][0, 2].item() * 1000) / 1000, abs=1e-6
    )
    assert s["depth"][0, 0] == 0
    part = s["iuv"][0][s["mask"] > 0]
    assert part.min() >= 1 and part.max() <= 24 and part.unique().numel() > 5
    assert 0 <= s["iuv"][1:].min() and s["iuv"][1:].max() <= 1
    shard, rec, p = ds.items[0]
    assert s["meta/index"].tolist() == [shard, rec, p]


def test_sample_schema_and_collate(root):
    ds = SyntheticDataset(root, "train", crop_size=32)
    s = ds[1]
    assert set(s) == (set(SAMPLE_KEYS) - set(ROI_KEYS) - set(ROTATED_BOX_KEYS)) | set(META_KEYS)
    check_sample(s)
    assert s["image"].shape == (3, 32, 32) and s["image"].dtype == torch.float32
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["body_pose"].shape == (23, 3, 3) and s["betas"].shape == (10,)
    assert s["camera/intrinsics"].shape == (4,) and s["box_size"].shape == ()
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 32, 32) and batch["keypoints2d/coco17"].shape == (3, 17, 3)
    roi = SyntheticDataset(root, "train", crop_size=32, rois=2)
    batch = next(iter(DataLoader(roi, batch_size=2, num_workers=2)))
    assert batch["rois/image"].shape == (2, 2, 3, 32, 32) and batch["rois/box_size"].shape == (2, 2)
    clone = pickle.loads(pickle.dumps(roi))
    torch.testing.assert_close(clone[3]["rois/image"], roi[3]["rois/image"])


def test_person_filter_and_keys(root):
    # person 1 of record i has visible fraction 0.1 / 0.4 / 0.7 for i % 3 = 0 / 1 / 2
    assert len(SyntheticDataset(root, "train", persons="all")) == 12
    assert len(SyntheticDataset(root, "train")) == 6 + 4  # min_visible 0.3
    assert len(SyntheticDataset(root, "train", min_visible=0.5)) == 6 + 2
    assert len(SyntheticDataset(root, "val", min_visible=0.95, persons="all")) == 4
    with pytest.raises(ValueError, match="no person passes"):
        SyntheticDataset(root, "val", min_visible=0.95)
    ds = SyntheticDataset(root, "train", crop_size=32, keys=["image", "keypoints2d/coco17", "has_mask"])
    s = ds[0]
    assert set(s) == {"image", "keypoints2d/coco17", "has_mask"} and s["has_mask"] == 1
    with pytest.raises(ValueError, match="unknown keys.*rois > 1"):
        SyntheticDataset(root, "train", keys=["rois/image"])
    with pytest.raises(ValueError, match="unknown keys"):
        SyntheticDataset(root, "train", keys=["imgae"])


def test_augmentation_determinism(root):
    cfg = AugmentConfig(seed=3, occlusion_prob=0.5, rotation_prob=1.0)
    a = SyntheticDataset(root, "train", crop_size=32, augment=cfg)
    b = SyntheticDataset(root, "train", crop_size=32, augment=cfg)
    for k in (0, 4):
        sa, sb = a[k], b[k]
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key])
    b.set_epoch(1)
    assert not torch.equal(a[0]["image"], b[0]["image"])
    assert not torch.equal(a[0]["image"], a[1]["image"])


def test_invalid_shards_are_skipped_with_a_warning(root, tmp_path):
    shutil.copytree(root / "train", tmp_path / "train")
    data = (tmp_path / "train" / shard_name(1)).read_bytes()
    (tmp_path / "train" / shard_name(1)).write_bytes(data[: len(data) // 3])
    (tmp_path / "train" / (shard_name(2) + ".tmp-123")).write_bytes(data[:1000])
    with pytest.warns(UserWarning, match=r"skipped 1 invalid shard"):
        ds = SyntheticDataset(tmp_path, "train", persons="all")
    assert len(ds) == 8 and len(ds.rejected) == 1
    with pytest.raises(ValueError, match="not a valid hmrkit shard"):
        SyntheticDataset(tmp_path, "train", strict=True)


# --------------------------------------------------------------------------- errors


def test_clear_errors(root, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing")):
        SyntheticDataset(tmp_path / "missing", "train")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=str(tmp_path / "empty" / "train")):
        SyntheticDataset(tmp_path / "empty", "train")
    (tmp_path / "tmponly" / "train").mkdir(parents=True)
    (tmp_path / "tmponly" / "train" / (shard_name(0) + ".tmp-1")).write_bytes(b"x")
    with pytest.raises(ValueError, match="1 unfinished"):
        SyntheticDataset(tmp_path / "tmponly", "train")
    with pytest.raises(ValueError, match=r"no split 'test'.*\['train', 'val'\]"):
        SyntheticDataset(root, "test")
    for bad in ("../train", "a/b", "", ".."):
        with pytest.raises(ValueError, match="bad split name"):
            SyntheticDataset(root, bad)
    assert len(SyntheticDataset(root / "val", None, persons="all")) == 4
    for kwargs, match in [
        ({"crop_size": 0}, "crop_size"), ({"crop_size": 64.0}, "crop_size"),
        ({"rois": 0}, "rois"), ({"rois": 6}, "rois"), ({"persons": "some"}, "persons"),
        ({"min_visible": 1.5}, "min_visible"),
    ]:
        with pytest.raises(ValueError, match=match):
            SyntheticDataset(root, "train", **kwargs)
    with pytest.raises(TypeError, match="AugmentConfig"):
        SyntheticDataset(root, "train", augment={"flip_prob": 0.5})
    ds = SyntheticDataset(root, "train")
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert math.isfinite(ds[-1]["box_size"].item())


def test_jpeg_records_and_missing_members(tmp_path):
    """JPEG images decode; a record without dense maps gives zeros and has_* = 0."""
    def gen(i):
        scene = make_fake_scene(np.random.default_rng(i), 96, 128, 1)
        rec = encode_scene(scene, "jpg")
        del rec["iuv.png"], rec["depth.png"], rec["instances.png"]
        return rec

    write_split(gen, 2, tmp_path / "train", progress=False)
    s = SyntheticDataset(tmp_path, "train", crop_size=48)[0]
    assert s["has_mask"] == s["has_iuv"] == s["has_depth"] == 0
    assert not s["mask"].any() and s["iuv"].shape == (3, 48, 48) and s["image"].mean() > 0.05
    assert cv2 is not None


def test_synthetic_occluders_remove_pixels_from_the_dense_labels(root):
    """An occluder over the crop centre hides the person there: mask, IUV and depth are 0."""
    cfg = AugmentConfig(**{**NO_AUG, "occlusion_prob": 1.0}, occlusion_count=(1, 1),
                        occlusion_size=(0.3, 0.3), occlusion_textured=0.0, seed=2)
    clean = SyntheticDataset(root, "train", crop_size=64, persons="all")[0]
    ds = SyntheticDataset(root, "train", crop_size=64, persons="all", augment=cfg)
    occ = ds.augmentation_params(0).occluders[0]
    s = ds[0]
    x0, x1 = int(np.ceil(occ.x0 * 64)), int(occ.x1 * 64)
    y0, y1 = int(np.ceil(occ.y0 * 64)), int(occ.y1 * 64)
    inside = (slice(y0 + 1, y1 - 1), slice(x0 + 1, x1 - 1))
    assert clean["mask"][inside].sum() > 0  # the person was there before
    assert s["mask"][inside].sum() == 0 and s["depth"][inside].sum() == 0
    assert s["iuv"][(slice(None), *inside)].abs().sum() == 0
    outside = np.ones((64, 64), bool)
    outside[max(y0 - 1, 0) : y1 + 2, max(x0 - 1, 0) : x1 + 2] = False
    torch.testing.assert_close(s["mask"][outside], clean["mask"][outside])
