"""BlazePose front end: anchors, decoding, NMS, crops, heatmap refinement, the pipeline."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from hmrkit.blazepose.detector import (
    POSE_DETECTION_ANCHORS,
    AnchorOptions,
    box_iou,
    decode_detections,
    non_max_suppression,
    ssd_anchors,
    weighted_non_max_suppression,
)
from hmrkit.blazepose.landmarks import refine_from_heatmaps, rotate_world
from hmrkit.blazepose.names import BLAZEPOSE33_FLIP, BLAZEPOSE33_NAMES, COCO17_FROM_BLAZEPOSE33
from hmrkit.blazepose.roi import (
    crop_affine,
    crop_to_image,
    detection_roi,
    image_to_crop,
    letterbox_affine,
    normalize_radians,
)
from hmrkit.geometry.crops import affine_to_cv2


# ------------------------------------------------------------------ anchors
def _naive_anchors(o: AnchorOptions) -> list[tuple[float, float, float, float]]:
    """MediaPipe's SsdAnchorsCalculator, written as the plain loops of its C++ source."""
    def scale(i, n):
        return (o.min_scale + o.max_scale) / 2 if n == 1 else \
            o.min_scale + (o.max_scale - o.min_scale) * i / (n - 1)

    anchors = []
    layer = 0
    n = len(o.strides)
    while layer < o.num_layers:
        heights, widths, ratios, scales = [], [], [], []
        last = layer
        while last < n and o.strides[last] == o.strides[layer]:
            s = scale(last, n)
            if last == 0 and o.reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, s, s]
            else:
                for ar in o.aspect_ratios:
                    ratios.append(ar)
                    scales.append(s)
                if o.interpolated_scale_aspect_ratio > 0:
                    nxt = 1.0 if last == n - 1 else scale(last + 1, n)
                    scales.append(math.sqrt(s * nxt))
                    ratios.append(o.interpolated_scale_aspect_ratio)
            last += 1
        for r, s in zip(ratios, scales, strict=True):
            heights.append(s / math.sqrt(r))
            widths.append(s * math.sqrt(r))
        fm = math.ceil(o.input_size / o.strides[layer])
        for y in range(fm):
            for x in range(fm):
                for k in range(len(heights)):
                    xc = (x + o.anchor_offset) / fm
                    yc = (y + o.anchor_offset) / fm
                    w, h = (1.0, 1.0) if o.fixed_anchor_size else (widths[k], heights[k])
                    anchors.append((xc, yc, w, h))
        layer = last
    return anchors


@pytest.mark.parametrize("options", [
    POSE_DETECTION_ANCHORS,
    AnchorOptions(input_size=128, num_layers=4, strides=(8, 16, 16, 16)),
    AnchorOptions(fixed_anchor_size=False, aspect_ratios=(1.0, 2.0, 0.5),
                  reduce_boxes_in_lowest_layer=True),
    AnchorOptions(fixed_anchor_size=False, interpolated_scale_aspect_ratio=0.0,
                  strides=(8, 16, 32, 64, 64), input_size=256),
])
def test_anchors_match_naive_loop(options):
    got = ssd_anchors(options, dtype=torch.float64)
    want = torch.tensor(_naive_anchors(options), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_pose_detection_anchor_golden_values():
    a = ssd_anchors()
    assert a.shape == (2254, 4)  # 28*28*2 + 14*14*2 + 7*7*6
    torch.testing.assert_close(a[0], torch.tensor([0.5 / 28, 0.5 / 28, 1.0, 1.0]))
    torch.testing.assert_close(a[1], a[0])  # two anchors per stride-8 cell
    torch.testing.assert_close(a[2], torch.tensor([1.5 / 28, 0.5 / 28, 1.0, 1.0]))
    torch.testing.assert_close(a[1568], torch.tensor([0.5 / 14, 0.5 / 14, 1.0, 1.0]))
    torch.testing.assert_close(a[1960], torch.tensor([0.5 / 7, 0.5 / 7, 1.0, 1.0]))
    torch.testing.assert_close(a[1965], a[1960])  # six anchors per stride-32 cell
    torch.testing.assert_close(a[-1], torch.tensor([6.5 / 7, 6.5 / 7, 1.0, 1.0]))


# ------------------------------------------------------------------ decoding and NMS
def test_decode_matches_per_anchor_loop():
    g = torch.Generator().manual_seed(0)
    anchors = ssd_anchors(AnchorOptions(fixed_anchor_size=False), dtype=torch.float64)
    raw = torch.randn(2, len(anchors), 12, generator=g, dtype=torch.float64) * 30
    logits = torch.randn(2, len(anchors), 1, generator=g, dtype=torch.float64) * 80
    boxes, kps, scores = decode_detections(raw, logits, anchors, scale=224.0)
    for b, i in [(0, 0), (1, 7), (0, 1500), (1, 2253)]:
        ax, ay, aw, ah = anchors[i].tolist()
        r = raw[b, i].tolist()
        xc, yc = r[0] / 224 * aw + ax, r[1] / 224 * ah + ay
        w, h = r[2] / 224 * aw, r[3] / 224 * ah
        torch.testing.assert_close(boxes[b, i], torch.tensor(
            [xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], dtype=torch.float64))
        for k in range(4):
            torch.testing.assert_close(kps[b, i, k], torch.tensor(
                [r[4 + 2 * k] / 224 * aw + ax, r[5 + 2 * k] / 224 * ah + ay],
                dtype=torch.float64))
        s = min(max(logits[b, i, 0].item(), -100.0), 100.0)
        assert scores[b, i].item() == pytest.approx(1 / (1 + math.exp(-s)))


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _random_detections(n=40, seed=0):
    g = np.random.default_rng(seed)
    centers = g.uniform(0, 1, (n // 4, 2))[g.integers(0, n // 4, n)] + g.normal(0, 0.03, (n, 2))
    size = g.uniform(0.05, 0.2, (n, 1))
    boxes = np.concatenate([centers - size / 2, centers + size / 2], 1)
    kps = centers[:, None, :] + g.normal(0, 0.05, (n, 4, 2))
    return torch.tensor(boxes), torch.tensor(kps), torch.tensor(g.uniform(0.2, 1, n))


def test_box_iou_matches_naive():
    boxes, _, _ = _random_detections()
    got = box_iou(boxes, boxes)
    for i in range(0, 40, 7):
        for j in range(40):
            assert got[i, j].item() == pytest.approx(_iou(boxes[i].tolist(), boxes[j].tolist()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_nms_matches_naive(seed):
    boxes, _, scores = _random_detections(seed=seed)
    b, s = boxes.tolist(), scores.tolist()
    order = sorted(range(len(s)), key=lambda i: -s[i])
    keep = []
    for i in order:
        if all(_iou(b[i], b[k]) <= 0.3 for k in keep):
            keep.append(i)
    assert non_max_suppression(boxes, scores, 0.3).tolist() == keep


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_nms_matches_mediapipe_loop(seed):
    boxes, kps, scores = _random_detections(seed=seed)
    b, k, s = boxes.tolist(), kps.tolist(), scores.tolist()
    # MediaPipe's NonMaxSuppressionCalculator::WeightedNonMaxSuppression, as plain loops
    remained = sorted(range(len(s)), key=lambda i: -s[i])
    want = []
    while remained:
        best = remained[0]
        candidates = [i for i in remained if _iou(b[i], b[best]) > 0.3]
        rest = [i for i in remained if _iou(b[i], b[best]) <= 0.3]
        total = sum(s[i] for i in candidates)
        box = [sum(b[i][c] * s[i] for i in candidates) / total for c in range(4)]
        kp = [[sum(k[i][j][c] * s[i] for i in candidates) / total for c in range(2)]
              for j in range(4)]
        want.append((box, kp, s[best]))
        remained = rest
    got_b, got_k, got_s = weighted_non_max_suppression(boxes, kps, scores, 0.3)
    assert len(got_s) == len(want) > 1
    for i, (box, kp, score) in enumerate(want):
        torch.testing.assert_close(got_b[i], torch.tensor(box, dtype=torch.float64))
        torch.testing.assert_close(got_k[i], torch.tensor(kp, dtype=torch.float64))
        assert got_s[i].item() == score


def test_nms_of_nothing():
    empty = torch.zeros(0, 4)
    assert len(non_max_suppression(empty, torch.zeros(0))) == 0
    b, k, s = weighted_non_max_suppression(empty, torch.zeros(0, 4, 2), torch.zeros(0))
    assert b.shape == (0, 4) and k.shape == (0, 4, 2) and s.shape == (0,)


# ------------------------------------------------------------------ crops
def test_detection_roi_golden_values():
    # hip centre (100, 300), body point straight up at distance 200: no rotation
    kps = torch.tensor([[[100.0, 300.0], [100.0, 100.0], [0, 0], [0, 0]]], dtype=torch.float64)
    center, size, rotation = detection_roi(kps)
    torch.testing.assert_close(center, torch.tensor([[100.0, 300.0]], dtype=torch.float64))
    assert size.item() == pytest.approx(2 * 1.25 * 200)
    assert rotation.item() == pytest.approx(0.0)
    # body leaning right by 30 degrees: the crop turns it upright
    up = torch.tensor([math.sin(math.pi / 6), -math.cos(math.pi / 6)], dtype=torch.float64)
    kps[0, 1] = kps[0, 0] + 200 * up
    center, size, rotation = detection_roi(kps)
    affine = crop_affine(center, size, rotation)
    ends = image_to_crop(kps[:, :2], affine)[0]
    d = ends[1] - ends[0]
    assert d[0].item() == pytest.approx(0.0, abs=1e-9) and d[1].item() < 0  # straight up
    assert rotation.item() == pytest.approx(-math.pi / 6)


def test_normalize_radians():
    a = torch.tensor([0.0, math.pi, -math.pi, 3 * math.pi / 2, -7.0, 100.0])
    n = normalize_radians(a)
    assert bool(((n >= -math.pi) & (n < math.pi)).all())
    torch.testing.assert_close(torch.cos(n), torch.cos(a))
    torch.testing.assert_close(torch.sin(n), torch.sin(a), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-6), (torch.float32, 2e-3)])
def test_crop_round_trip_with_rotation(dtype, atol):
    """full -> crop -> full, rotations included: 1e-6 px in float64 (what the pipeline uses);
    float32 holds ~3000-px coordinates to its resolution (2.4e-4 px) times a few."""
    g = torch.Generator().manual_seed(0)
    center = torch.rand(6, 2, generator=g, dtype=torch.float64) * 2000
    size = torch.rand(6, generator=g, dtype=torch.float64) * 1500 + 30
    rotation = (torch.rand(6, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    affine = crop_affine(center, size, rotation)
    points = (torch.rand(6, 20, 2, generator=g, dtype=torch.float64) * 3000 - 500).to(dtype)
    back = crop_to_image(image_to_crop(points, affine), affine)
    torch.testing.assert_close(back, points, rtol=0, atol=atol)
    # the ROI centre lands on the centre of crop pixel 128 (MediaPipe's sampling)
    c = image_to_crop(center[:, None].to(dtype), affine)[:, 0]
    torch.testing.assert_close(c, torch.full_like(c, 128.5), rtol=0, atol=1e-4)


def test_crop_affine_is_mediapipes_opencv_warp():
    """affine_to_cv2 of hmrkit's crop affine = the matrix MediaPipe's OpenCV converter builds
    from the rotated rect's corners (``cv2.boxPoints`` -> the crop's corners), with the rect
    in OpenCV pixels (hmrkit's minus one half)."""
    for cx, cy, size, r in [(300.0, 200.0, 512.0, 0.0), (57.3, 400.1, 999.0, 0.7),
                            (800.0, -20.0, 90.0, -2.9)]:
        rect = ((cx - 0.5, cy - 0.5), (size, size), math.degrees(r))
        src = cv2.boxPoints(rect).astype(np.float32)
        dst = np.array([[0, 256], [0, 0], [256, 0], [256, 256]], np.float32)
        want = cv2.getPerspectiveTransform(src, dst)
        ours = affine_to_cv2(crop_affine(torch.tensor([[cx, cy]]), torch.tensor([size]),
                                         torch.tensor([-r])))[0].numpy()
        np.testing.assert_allclose(ours, want[:2], atol=2e-3)
        np.testing.assert_allclose(want[2], [0, 0, 1], atol=1e-6)


def test_letterbox_affine_fits_and_centres():
    for w, h in [(640, 480), (480, 640), (224, 224), (1000, 10)]:
        a = letterbox_affine(w, h)
        corners = torch.tensor([[[0.0, 0.0], [w, h]]], dtype=torch.float64)
        c = image_to_crop(corners, a)[0]
        extent = c[1] - c[0]
        assert extent.max().item() == pytest.approx(224.0)
        # MediaPipe centres on (W/2, H/2) in OpenCV pixels, i.e. half a pixel in hmrkit's
        mid = image_to_crop(torch.tensor([[[(w + 1) / 2, (h + 1) / 2]]], dtype=torch.float64),
                            a)[0, 0]
        torch.testing.assert_close(mid, torch.tensor([112.5, 112.5], dtype=torch.float64))


# ------------------------------------------------------------------ landmark decoding
def _naive_refine(xy, heat, kernel=7, min_conf=0.5, res=256):
    """MediaPipe's RefineLandmarksFromHeatMap loop for one crop (xy in network pixels)."""
    k_n, h, w = heat.shape
    out = xy.copy()
    for k in range(k_n):
        col, row = int(xy[k, 0] / res * w), int(xy[k, 1] / res * h)
        if col < 0 or col >= w or row < 0 or row >= h:
            continue
        off = (kernel - 1) // 2
        total = wc = wr = mx = 0.0
        for r in range(max(0, row - off), min(h, row + off + 1)):
            for c in range(max(0, col - off), min(w, col + off + 1)):
                conf = 1 / (1 + math.exp(-heat[k, r, c]))
                total += conf
                mx = max(mx, conf)
                wc += c * conf
                wr += r * conf
        if mx >= min_conf and total > 0:
            out[k] = [wc / w / total * res, wr / h / total * res]
    return out


def test_refine_from_heatmaps_matches_mediapipe_loop():
    g = np.random.default_rng(0)
    heat = g.normal(-3, 2.5, (2, 9, 64, 64))
    xy = g.uniform(-20, 276, (2, 9, 2))
    xy[0, 0] = [1.0, 1.0]        # window cut by the top-left border
    xy[0, 1] = [255.9, 130.0]    # right border
    xy[0, 2] = [-1.0, 100.0]     # truncates to cell 0: refined, as in MediaPipe
    xy[0, 3] = [-5.0, 100.0]     # outside: kept
    heat[1, 4] = -20             # never confident: kept
    got = refine_from_heatmaps(torch.tensor(xy), torch.tensor(heat)).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b], _naive_refine(xy[b], heat[b]), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got[0, 3], xy[0, 3])
    np.testing.assert_array_equal(got[1, 4], xy[1, 4])


def test_rotate_world_is_a_rotation_about_z():
    g = torch.Generator().manual_seed(0)
    world = torch.randn(3, 33, 3, generator=g, dtype=torch.float64)
    rot = torch.tensor([0.0, 0.5, -2.0], dtype=torch.float64)
    out = rotate_world(world, rot)
    torch.testing.assert_close(out[0], world[0])
    r = 0.5  # MediaPipe's angle is -rotation
    m = torch.tensor([[math.cos(-r), -math.sin(-r), 0], [math.sin(-r), math.cos(-r), 0],
                      [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(out[1], world[1] @ m.T)
    torch.testing.assert_close(out.norm(dim=-1), world.norm(dim=-1))


def test_names_flip_and_coco_subset():
    assert len(BLAZEPOSE33_NAMES) == 33
    flipped = [BLAZEPOSE33_NAMES[i] for i in BLAZEPOSE33_FLIP]
    assert flipped[11] == "right_shoulder" and flipped[0] == "nose" and flipped[9] == "right_mouth"
    assert sorted(BLAZEPOSE33_FLIP) == list(range(33))
    assert COCO17_FROM_BLAZEPOSE33[:5] == (0, 2, 5, 7, 8)
    assert COCO17_FROM_BLAZEPOSE33[5:] == (11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


# ------------------------------------------------------------------ with the real models
def _fetched():
    from hmrkit.blazepose.assets import BlazePoseModelError, model_path

    try:
        for name in ("detector", "full"):
            model_path(name)
    except BlazePoseModelError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def blazepose():
    _fetched()
    from hmrkit.blazepose import BlazePose

    torch.set_num_threads(1)
    return BlazePose("full", min_score=0.2)


# MediaPipe 0.10.14 (``mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)``)
# on scikit-image's astronaut (NASA, public domain), measured in a separate environment:
# its ROI (x, y, size in OpenCV pixels, rotation) and the landmarks with visibility > 0.9.
MP_ASTRONAUT_ROI = (157.58717, 523.57397, 1254.6824, 0.16347945)
MP_ASTRONAUT_LANDMARKS = np.array([
    [222.62, 126.89], [241.29, 111.07], [249.38, 112.59], [256.86, 114.03], [214.77, 104.41],
    [205.19, 101.65], [196.85, 99.53], [268.57, 123.22], [190.65, 105.39], [233.44, 153.53],
    [204.86, 146.11], [306.72, 257.87], [111.47, 239.17]])  # landmarks 0..12, OpenCV pixels


def test_landmarks_on_mediapipes_roi_match_mediapipe(blazepose):
    """Same ROI as MediaPipe -> the same landmarks (within the network's sensitivity to
    sub-pixel differences of the warp); the half-pixel conventions of roi.py are what make
    this hold (plain crop_matrix sampling gives 2.6 px mean here)."""
    from skimage import data

    image = data.astronaut()
    x, y, size, r = MP_ASTRONAUT_ROI
    affine = crop_affine(torch.tensor([[x + 0.5, y + 0.5]]), torch.tensor([size]),
                         torch.tensor([-r]))
    from hmrkit.blazepose.roi import warp_crops

    crop = torch.from_numpy(warp_crops(image, affine, 256)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        out = blazepose.landmark_net(crop)
    xy = refine_from_heatmaps(out["landmarks"][..., :2].double(),
                              out["heatmap_logits"].double()) + 0.5
    full = crop_to_image(xy, affine)[0, :13].numpy() - 0.5  # OpenCV pixels, like MediaPipe's
    err = np.linalg.norm(full - MP_ASTRONAUT_LANDMARKS, axis=1)
    assert err.mean() < 0.5 and err.max() < 2.0, err  # measured 0.15 and 0.58


def test_pipeline_on_a_photo(blazepose):
    from skimage import data

    image = data.astronaut()
    people = blazepose.detect(image)
    assert len(people) == 1
    p = people[0]
    assert p.landmarks.shape == (33, 3) and p.world.shape == (33, 3)
    assert p.mask.shape == (256, 256) and p.heatmaps.shape == (33, 64, 64)
    # end to end, the detector's ROI differs from MediaPipe's by about a pixel
    err = np.linalg.norm(p.landmarks[:13, :2] - 0.5 - MP_ASTRONAUT_LANDMARKS, axis=1)
    assert np.median(err) < 8.0, err
    assert p.visibility[:13].min() > 0.9 and p.visibility[27:].max() < 0.2  # no feet in view
    # the mask covers the person: the face and the suit are in, the top-right corner is not
    mask = p.mask_image(image.shape[1], image.shape[0])
    assert mask[130, 225] > 0.9 and mask[350, 180] > 0.9 and mask[20, 480] < 0.1
    # world landmarks: metres, hip-centred, shoulders about 0.3-0.45 m apart
    hips = (p.world[23] + p.world[24]) / 2
    assert np.linalg.norm(hips) < 0.05
    assert 0.25 < np.linalg.norm(p.world[11] - p.world[12]) < 0.5
    # crop landmarks and full-image landmarks are the same points
    back = crop_to_image(torch.from_numpy(p.crop_landmarks[None, :, :2]).double(),
                         torch.from_numpy(p.crop_affine[None]).double())[0].numpy()
    np.testing.assert_allclose(back, p.landmarks[:, :2], atol=1e-2)


def test_batch_of_images_equals_one_by_one(blazepose):
    from skimage import data

    images = [data.astronaut(), np.ascontiguousarray(data.astronaut()[:, ::-1])]
    batch = blazepose.detect_batch(images)
    for image, people in zip(images, batch, strict=True):
        alone = blazepose.detect(image)
        assert len(alone) == len(people) == 1
        np.testing.assert_allclose(alone[0].landmarks, people[0].landmarks, atol=1e-3)
    # the mirrored photo gives the mirrored person: left and right swap (visible landmarks:
    # face and shoulders; the others are guesses outside the photo)
    w = images[0].shape[1]
    mirrored = batch[1][0].landmarks[list(BLAZEPOSE33_FLIP), :2]
    mirrored[:, 0] = w - mirrored[:, 0]
    err = np.linalg.norm(mirrored - batch[0][0].landmarks[:, :2], axis=1)[:13]
    assert np.median(err) < 6.0, err


def _two_person_scene():
    from hmrkit.data.synthetic.scene import SceneConfig, SceneEngine

    engine = SceneEngine(SceneConfig(seed=3, split="test", people=(0.0, 1.0, 0.0),
                                     occluder_prob=0.0, facing_uniform_prob=0.0,
                                     person_height_frac=(0.6, 0.8)))
    return engine.render(12)  # two people, both facing the camera enough to be detected


def test_two_people_in_one_synthetic_image_are_both_found(blazepose):
    scene = _two_person_scene()
    image, labels = scene["image"], scene["labels"]
    people = blazepose.detect(image)
    coco = labels["keypoints2d/coco17"]  # (2, 17, 3)
    assert len(coco) == 2 and len(people) >= 2
    matched = set()
    for truth in coco:
        vis = truth[:, 2] > 0
        size = labels["box_size"].max()
        errs = [np.median(np.linalg.norm(
            p.landmarks[list(COCO17_FROM_BLAZEPOSE33), :2][vis] - truth[vis, :2], axis=1))
            for p in people]
        best = int(np.argmin(errs))
        assert errs[best] < 0.1 * size, errs
        matched.add(best)
    assert len(matched) == 2
