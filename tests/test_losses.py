"""Losses: zero at the ground truth, masks, gradients, naive-loop references, method checks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from hmrkit.geometry.cameras import (
    Camera,
    default_focal,
    full_to_crop_camera,
    project_perspective,
)
from hmrkit.geometry.crops import (
    CropBox,
    box_from_keypoints,
    crop_matrix,
    full_to_crop_points,
    pixels_to_normalized,
)
from hmrkit.losses import (
    IUV_WEIGHTS,
    MULTIROI_WEIGHTS,
    SPIN_WEIGHTS,
    WHMR_WEIGHTS,
    ProjectionHead,
    camera_consistency_loss,
    camera_scale_prior,
    contrastive_loss,
    endpoint_error_loss,
    full2_loss,
    full_image_keypoint_loss,
    inverse_depth_loss,
    iuv_losses,
    keypoint_2d_loss,
    keypoint_3d_loss,
    pose_loss,
    pseudo_focal_loss,
    shape_loss,
    sigmoid_relu_gate,
    silhouette_bce,
    vertex_loss,
    weighted_sum,
    whmr_full_image_keypoint_loss,
)

from .helpers import random_rotations

F64 = torch.float64
F32 = torch.float32
B = 5  # persons per batch in the generic cases
HAS = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])  # samples 1 and 4 unlabelled
UNLABELLED = (1, 4)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- synthetic scenes


def keypoints_2d(batch=B, k=14, seed=0, dtype=F64):
    """Normalised crop keypoints with confidences in {0, 0.5, 1}."""
    g = gen(seed)
    xy = torch.rand(batch, k, 2, generator=g, dtype=dtype) * 2 - 1
    conf = torch.randint(0, 3, (batch, k, 1), generator=g).to(dtype) / 2
    return torch.cat([xy, conf], -1)


def full_image_scene(batch=B, k=14, seed=0, dtype=F64):
    """3D joints + full-image translation + focal -> GT 2D keypoints by the pinhole camera."""
    g = gen(seed)
    wh = torch.stack(
        [
            torch.randint(640, 1920, (batch,), generator=g),
            torch.randint(480, 1080, (batch,), generator=g),
        ],
        -1,
    ).to(dtype)
    focal = default_focal(wh) * (0.6 + 0.8 * torch.rand(batch, generator=g, dtype=dtype))
    pp = wh / 2 + torch.randn(batch, 2, generator=g, dtype=dtype) * 5
    joints = torch.randn(batch, k, 3, generator=g, dtype=dtype) * 0.4
    transl = torch.stack(
        [
            torch.randn(batch, generator=g, dtype=dtype) * 0.6,
            torch.randn(batch, generator=g, dtype=dtype) * 0.3,
            6 + 6 * torch.rand(batch, generator=g, dtype=dtype),
        ],
        -1,
    )
    px = project_perspective(joints, focal, pp, transl=transl)
    conf = (torch.rand(batch, k, 1, generator=g, dtype=dtype) > 0.2).to(dtype)
    gt = torch.cat([px, conf], -1)
    center, size = box_from_keypoints(px)
    return dict(
        wh=wh, focal=focal, pp=pp, joints=joints, transl=transl, gt=gt, center=center, size=size
    )


def scene_camera(s) -> Camera:
    """The full-image camera of a :func:`full_image_scene`."""
    return Camera(torch.cat([s["focal"][:, None], s["focal"][:, None], s["pp"]], 1), s["wh"])


def scene_box(s, res=256, affine=None) -> CropBox:
    """The person boxes of a :func:`full_image_scene` (optionally with another crop affine)."""
    return CropBox(s["center"], s["size"], res, affine=affine)


def multiroi_scene(batch=B, m=5, seed=0, dtype=F64):
    """M boxes of one person (Multi-RoI's offsets and resizes) and crop cameras of ONE full camera."""
    g = gen(seed)
    wh = torch.tensor([1280.0, 720.0], dtype=dtype).expand(batch, 2)
    focal = default_focal(wh) * (0.7 + 0.6 * torch.rand(batch, generator=g, dtype=dtype))
    transl = torch.stack(
        [
            torch.randn(batch, generator=g, dtype=dtype) * 0.5,
            torch.randn(batch, generator=g, dtype=dtype) * 0.3,
            5 + 5 * torch.rand(batch, generator=g, dtype=dtype),
        ],
        -1,
    )
    c0 = wh / 2 + (torch.rand(batch, 2, generator=g, dtype=dtype) - 0.5) * wh * 0.6
    b0 = 150 + 200 * torch.rand(batch, generator=g, dtype=dtype)
    offs = torch.tensor([[0, 0], [0.1, 0], [-0.1, 0], [0, 0.1], [0, -0.1]], dtype=dtype)[:m]
    scales = torch.tensor([1.0, 1.5, 1.25, 0.8, 0.65], dtype=dtype)[:m]
    centers = c0[:, None] + offs[None] * b0[:, None, None]
    sizes = b0[:, None] * scales[None]
    cams = torch.stack(
        [full_to_crop_camera(transl, centers[:, i], sizes[:, i], wh, focal) for i in range(m)], 1
    )
    return dict(wh=wh, focal=focal, transl=transl, centers=centers, sizes=sizes, cams=cams)


def iuv_scene(batch=B, parts=6, coarse=3, h=6, w=5, seed=0, dtype=F64):
    g = gen(seed)
    index = torch.randint(0, parts, (batch, h, w), generator=g)
    index[:, 0, 0] = 0  # background and foreground in every sample
    index[:, 1, 1] = 1
    uv = torch.rand(batch, 2, h, w, generator=g, dtype=dtype) * (index > 0)[:, None]
    gt_iuv = torch.cat([index[:, None].to(dtype), uv], 1)
    coarse_of_part = torch.tensor([0] + [1 + i % (coarse - 1) for i in range(parts - 1)])
    return dict(
        gt_iuv=gt_iuv, index=index, coarse_of_part=coarse_of_part, parts=parts, coarse=coarse
    )


def perfect_logits(labels, classes, dtype):
    """Logits with 0 at the label and -inf elsewhere: cross-entropy exactly 0."""
    onehot = F.one_hot(labels, classes).movedim(-1, 1).bool()
    return torch.where(onehot, torch.zeros((), dtype=dtype), torch.tensor(-math.inf, dtype=dtype))


# --------------------------------------------------------------------------- generic cases


@dataclass
class Case:
    """A loss with a prediction equal to its ground truth.

    ``fn(pred, labels, has)`` gives the loss; ``labels`` is a tuple of per-sample label tensors
    (poisoned with NaN for unlabelled samples in the mask tests; ``poison`` lists which);
    ``perturb(pred, g)`` moves the prediction off the ground truth.
    """

    fn: Callable
    pred: torch.Tensor
    labels: tuple
    perturb: Callable
    exact: bool = True
    poison: tuple = (0,)
    masked: bool = True


def _noise(scale=0.05):
    return lambda p, g: p + scale * torch.randn(p.shape, generator=g, dtype=p.dtype)


def case_kp2d(dtype):
    gt = keypoints_2d(dtype=dtype)
    return Case(
        lambda p, lab, has: keypoint_2d_loss(p, lab[0], has), gt[..., :2].clone(), (gt,), _noise()
    )


def case_kp2d_openpose(dtype):
    gt = keypoints_2d(k=10, dtype=dtype)

    def fn(p, lab, has):
        return keypoint_2d_loss(p, lab[0], has, openpose_weight=0.3, gt_weight=2.0, num_openpose=4)

    return Case(fn, gt[..., :2].clone(), (gt,), _noise())


def dyadic(x):
    """Round to multiples of 1/256, so that shifts and centring are exact in float32 too."""
    return torch.round(x * 256) / 256


def case_kp3d(dtype):
    g = gen(1)
    gt = torch.cat(
        [
            torch.randn(B, 14, 3, generator=g, dtype=dtype),
            torch.rand(B, 14, 1, generator=g, dtype=dtype),
        ],
        -1,
    )
    gt = dyadic(gt)
    shift = torch.randint(-3, 4, (B, 1, 3), generator=g).to(dtype)  # root-relative: offsets free
    return Case(
        lambda p, lab, has: keypoint_3d_loss(p, lab[0], has, root=(2, 3)),
        gt[..., :3] + shift,
        (gt,),
        _noise(),
    )


def case_kp3d_pelvis(dtype):
    gt = dyadic(torch.randn(B, 24, 3, generator=gen(2), dtype=dtype))
    return Case(
        lambda p, lab, has: keypoint_3d_loss(p, lab[0], has, root=0), gt + 1.0, (gt,), _noise()
    )


def case_pose(dtype):
    gt = random_rotations(B, 24, dtype=dtype, generator=gen(3))
    return Case(lambda p, lab, has: pose_loss(p, lab[0], has), gt.clone(), (gt,), _noise())


def case_shape(dtype):
    gt = torch.randn(B, 10, generator=gen(4), dtype=dtype)
    return Case(lambda p, lab, has: shape_loss(p, lab[0], has), gt.clone(), (gt,), _noise())


def case_vertex(dtype):
    gt = torch.randn(B, 50, 3, generator=gen(5), dtype=dtype)
    return Case(lambda p, lab, has: vertex_loss(p, lab[0], has), gt.clone(), (gt,), _noise())


def case_vertex_rooted(dtype):
    gt = dyadic(torch.randn(B, 50, 3, generator=gen(6), dtype=dtype))

    def fn(p, lab, has):
        return vertex_loss(
            p, lab[0], has, pred_root=p[:, :4].mean(1), gt_root=lab[0][:, :4].mean(1)
        )

    return Case(fn, gt + 2.0, (gt,), _noise())


def case_full_image(dtype):
    s = full_image_scene(dtype=dtype)

    def fn(p, lab, has):
        return full_image_keypoint_loss(p, lab[0], scene_camera(s), scene_box(s), has)

    return Case(fn, s["joints"] + s["transl"][:, None], (s["gt"],), _noise(0.02))


def case_full_image_affine(dtype):
    s = full_image_scene(seed=3, dtype=dtype)
    g = gen(7)
    affine = crop_matrix(
        s["center"],
        s["size"],
        224,
        rotation=torch.rand(B, generator=g, dtype=dtype) - 0.5,
        flip=torch.tensor([True, False, True, False, False]),
    )

    def fn(p, lab, has):
        return full_image_keypoint_loss(
            p, lab[0], scene_camera(s), scene_box(s, 224, affine), has, transl=s["transl"]
        )

    return Case(fn, s["joints"].clone(), (s["gt"],), _noise(0.02))


def case_whmr_full(dtype):
    s = full_image_scene(seed=4, dtype=dtype)
    box = torch.stack([s["size"] * 0.8, s["size"]], -1)  # rectangular (w, h)

    def fn(p, lab, has):
        return whmr_full_image_keypoint_loss(p, lab[0], s["wh"], box, has)

    return Case(fn, s["gt"][..., :2].clone(), (s["gt"],), _noise(3.0))


def case_full2(dtype):
    s = full_image_scene(seed=5, dtype=dtype)
    crop = keypoints_2d(dtype=dtype, seed=5)

    def fn(p, lab, has):
        return full2_loss(p[..., :2], lab[0], p[..., 2:], lab[1], s["wh"], s["size"], has)

    pred = torch.cat([crop[..., :2], s["gt"][..., :2]], -1)
    return Case(fn, pred, (crop, s["gt"]), _noise(0.5), poison=(0, 1))


def case_pseudo_focal(dtype):
    wh = torch.tensor(
        [[1920.0, 1080.0], [640, 480], [1000, 1000], [720, 1280], [300, 200]], dtype=dtype
    )
    return Case(
        lambda p, lab, has: pseudo_focal_loss(p, lab[0], has=has),
        default_focal(wh),
        (wh,),
        _noise(50.0),
    )


def _consistency_case(dtype, **kw):
    s = multiroi_scene(dtype=dtype)

    def fn(p, lab, has):
        return camera_consistency_loss(p, lab[0], lab[1], s["wh"], s["focal"], valid=has, **kw)

    return Case(fn, s["cams"], (s["centers"], s["sizes"]), _noise(0.02), exact=False, poison=(0, 1))


def case_consistency_all(dtype):
    return _consistency_case(dtype)


def case_consistency_first(dtype):
    return _consistency_case(dtype, pairs="first")


def case_consistency_code(dtype):
    return _consistency_case(dtype, variant="code")


def case_consistency_tz(dtype):
    return _consistency_case(dtype, scale_term="tz")


def case_silhouette_prob(dtype):
    gt = (torch.rand(B, 1, 8, 7, generator=gen(8), dtype=dtype) > 0.5).to(dtype)
    return Case(
        lambda p, lab, has: silhouette_bce(p, lab[0], has, from_logits=False),
        gt.clone(),
        (gt,),
        lambda p, g: 0.1 + 0.8 * p,
    )


def _iuv_case(dtype, per_part: bool, reduction="sum_per_sample"):
    s = iuv_scene(dtype=dtype)
    P, C = s["parts"], s["coarse"]
    gt_iuv = s["gt_iuv"]
    logits = perfect_logits(s["index"], P, dtype)
    coarse = perfect_logits(s["coarse_of_part"][s["index"]], C, dtype)
    h, w = gt_iuv.shape[-2:]
    if per_part:  # PyMAF: one UV pair per part, read at the GT part; the others are free
        uv = torch.rand(B, 2, P, h, w, generator=gen(9), dtype=dtype)
        uv.scatter_(
            2, s["index"][:, None, None].expand(B, 2, 1, h, w), gt_iuv[:, None, 1:].movedim(1, 2)
        )
        uv = uv.reshape(B, 2 * P, h, w)
    else:  # background UV is free
        uv = torch.where(gt_iuv[:, :1] > 0, gt_iuv[:, 1:], 0.7)
    pred = torch.cat([logits, uv, coarse], 1)

    def fn(p, lab, has):
        uv = p[:, P:-C].reshape(B, 2, P, h, w) if per_part else p[:, P:-C]
        terms = iuv_losses(
            p[:, :P],
            uv,
            lab[0],
            has,
            pred_coarse_logits=p[:, -C:],
            coarse_of_part=s["coarse_of_part"],
            uv_reduction=reduction,
        )
        return weighted_sum(terms, IUV_WEIGHTS)

    def perturb(p, g):
        finite = torch.where(torch.isinf(p), -2.0, p)
        return finite + 0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype)

    return Case(fn, pred, (gt_iuv,), perturb)


def case_iuv(dtype):
    return _iuv_case(dtype, per_part=False)


def case_iuv_per_part_mean(dtype):
    return _iuv_case(dtype, per_part=True, reduction="mean")


def case_inverse_depth(dtype):
    g = gen(10)
    z = (2 + 3 * torch.rand(B, 8, 8, generator=g, dtype=dtype)) * (
        torch.rand(B, 8, 8, generator=g) > 0.4
    )
    pred = torch.where(z > 0, 1 / torch.where(z > 0, z, 1.0), 0.0)[:, None]
    return Case(lambda p, lab, has: inverse_depth_loss(p, lab[0], has), pred, (z,), _noise(0.1))


def case_epe(dtype):
    g = gen(11)
    gt = torch.randn(B, 2, 6, 7, generator=g, dtype=dtype) * 3
    mask = (torch.rand(B, 6, 7, generator=g) > 0.3).to(dtype)

    def fn(p, lab, has):  # per-sample availability folds into the pixel mask
        m = mask if has is None else mask * has.to(dtype)[:, None, None]
        return endpoint_error_loss(p, lab[0], m)

    return Case(fn, gt.clone(), (gt,), _noise(0.5))


CASES = {
    name[len("case_") :]: obj for name, obj in dict(globals()).items() if name.startswith("case_")
}


def _tol(dtype, exact):
    if exact:
        return 0.0
    return 1e-20 if dtype == F64 else 1e-7


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_zero_at_ground_truth_positive_off_it(name, dtype):
    c = CASES[name](dtype)
    at_gt = c.fn(c.pred, c.labels, None)
    assert at_gt.dtype == dtype and at_gt.dim() == 0
    assert torch.isfinite(at_gt)
    assert abs(float(at_gt)) <= _tol(dtype, c.exact), float(at_gt)
    off = c.fn(c.perturb(c.pred, gen(99)), c.labels, None)
    assert float(off) > 100 * _tol(dtype, c.exact) and float(off) > 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_unlabelled_samples_contribute_nothing(name):
    c = CASES[name](F64)
    pred = c.perturb(c.pred, gen(1))
    base = c.fn(pred, c.labels, HAS)
    # change the unlabelled samples' predictions and poison their labels with NaN
    pred2 = pred.clone()
    labels2 = tuple(x.clone() for x in c.labels)
    for b in UNLABELLED:
        pred2[b] = c.perturb(pred2[b : b + 1], gen(2 + b))[0] * 1.7
        for i in c.poison:
            labels2[i][b] = float("nan")
    pred2.requires_grad_(True)
    other = c.fn(pred2, labels2, HAS)
    torch.testing.assert_close(other, base, rtol=1e-12, atol=1e-15)
    other.backward()
    assert torch.isfinite(pred2.grad).all()
    assert (pred2.grad[list(UNLABELLED)] == 0).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_labelled_sample_gives_zero_not_nan(name):
    c = CASES[name](F64)
    pred = c.perturb(c.pred, gen(3)).requires_grad_(True)
    labels = tuple(
        torch.full_like(x, float("nan")) if i in c.poison else x for i, x in enumerate(c.labels)
    )
    loss = c.fn(pred, labels, torch.zeros(B))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad == 0).all()


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_flow(name, dtype):
    c = CASES[name](dtype)
    pred = c.perturb(c.pred, gen(4)).requires_grad_(True)
    loss = c.fn(pred, c.labels, HAS.to(dtype))
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0
    # and at the ground truth itself (sqrt, logsumexp, -inf logits): finite, zero for exact minima
    at = c.pred.clone().requires_grad_(True)
    c.fn(at, c.labels, HAS.to(dtype)).backward()
    assert torch.isfinite(at.grad).all()
    if c.exact:
        assert (at.grad == 0).all()


def test_labelled_mean_matches_labelled_subset():
    """SPIN's convention for 3D / parameter / dense losses: the mean over the labelled samples."""
    keep = [b for b in range(B) if b not in UNLABELLED]
    for name in ("kp3d", "pose", "shape", "vertex", "silhouette_prob", "inverse_depth"):
        c = CASES[name](F64)
        pred = c.perturb(c.pred, gen(5))
        masked = c.fn(pred, c.labels, HAS)
        sub = c.fn(pred[keep], tuple(x[keep] for x in c.labels), None)
        torch.testing.assert_close(masked, sub, msg=name)


def test_kp2d_mean_over_whole_batch():
    """SPIN's 2D convention: unlabelled samples count in the denominator (B * K * 2)."""
    c = CASES["kp2d"](F64)
    pred = c.perturb(c.pred, gen(5))
    keep = [b for b in range(B) if b not in UNLABELLED]
    masked = c.fn(pred, c.labels, HAS)
    sub = c.fn(pred[keep], tuple(x[keep] for x in c.labels), None)
    torch.testing.assert_close(masked, sub * len(keep) / B)


# --------------------------------------------------------------------------- naive references


def test_keypoint_2d_loss_against_loop():
    gt = keypoints_2d(k=9, seed=12)
    pred = gt[..., :2] + 0.1 * torch.randn(B, 9, 2, generator=gen(12), dtype=F64)
    got = keypoint_2d_loss(pred, gt, HAS, openpose_weight=0.25, gt_weight=3.0, num_openpose=4)
    total = 0.0
    for b in range(B):
        for k in range(9):
            w = (0.25 if k < 4 else 3.0) * float(gt[b, k, 2]) * float(HAS[b])
            for a in range(2):
                total += w * float(pred[b, k, a] - gt[b, k, a]) ** 2
    assert math.isclose(float(got), total / (B * 9 * 2), rel_tol=1e-12)


def test_keypoint_3d_loss_against_loop():
    g = gen(13)
    gt = torch.cat(
        [
            torch.randn(B, 14, 3, generator=g, dtype=F64),
            torch.rand(B, 14, 1, generator=g, dtype=F64),
        ],
        -1,
    )
    pred = torch.randn(B, 14, 3, generator=g, dtype=F64)
    got = keypoint_3d_loss(pred, gt, HAS, root=(2, 3))
    total, n = 0.0, 0
    for b in range(B):
        if HAS[b] == 0:
            continue
        n += 1
        gp = [(float(gt[b, 2, a]) + float(gt[b, 3, a])) / 2 for a in range(3)]
        pp = [(float(pred[b, 2, a]) + float(pred[b, 3, a])) / 2 for a in range(3)]
        for k in range(14):
            for a in range(3):
                d = (float(pred[b, k, a]) - pp[a]) - (float(gt[b, k, a]) - gp[a])
                total += float(gt[b, k, 3]) * d * d
    assert math.isclose(float(got), total / (n * 14 * 3), rel_tol=1e-12)


def test_parameter_and_vertex_losses_against_loop():
    g = gen(14)
    rot_p, rot_g = random_rotations(B, 24, generator=g), random_rotations(B, 24, generator=g)
    bp, bg = torch.randn(B, 10, generator=g, dtype=F64), torch.randn(B, 10, generator=g, dtype=F64)
    vp, vg = (
        torch.randn(B, 30, 3, generator=g, dtype=F64),
        torch.randn(B, 30, 3, generator=g, dtype=F64),
    )
    labelled = [b for b in range(B) if HAS[b]]
    pose_ref = sum(float(((rot_p[b] - rot_g[b]) ** 2).sum()) for b in labelled) / (
        len(labelled) * 24 * 9
    )
    shape_ref = sum(float(((bp[b] - bg[b]) ** 2).sum()) for b in labelled) / (len(labelled) * 10)
    vert_ref = sum(float((vp[b] - vg[b]).abs().sum()) for b in labelled) / (len(labelled) * 90)
    assert math.isclose(float(pose_loss(rot_p, rot_g, HAS)), pose_ref, rel_tol=1e-12)
    assert math.isclose(float(shape_loss(bp, bg, HAS)), shape_ref, rel_tol=1e-12)
    assert math.isclose(float(vertex_loss(vp, vg, HAS)), vert_ref, rel_tol=1e-12)
    # SPIN / PyTorch reference: MSELoss / L1Loss over the labelled samples
    idx = torch.tensor(labelled)
    torch.testing.assert_close(pose_loss(rot_p, rot_g, HAS), F.mse_loss(rot_p[idx], rot_g[idx]))
    torch.testing.assert_close(vertex_loss(vp, vg, HAS), F.l1_loss(vp[idx], vg[idx]))


def test_full_image_keypoint_loss_against_loop():
    s = full_image_scene(seed=15)
    pred = (
        s["joints"]
        + s["transl"][:, None]
        + 0.03 * torch.randn(B, 14, 3, generator=gen(15), dtype=F64)
    )
    got = full_image_keypoint_loss(pred, s["gt"], scene_camera(s), scene_box(s), HAS)
    total = 0.0
    for b in range(B):
        f, half = float(s["focal"][b]), float(s["size"][b]) / 2
        for k in range(14):
            X, Y, Z = (float(v) for v in pred[b, k])
            u = (f * X / Z + float(s["pp"][b, 0]) - float(s["center"][b, 0])) / half
            v = (f * Y / Z + float(s["pp"][b, 1]) - float(s["center"][b, 1])) / half
            gu = (float(s["gt"][b, k, 0]) - float(s["center"][b, 0])) / half
            gv = (float(s["gt"][b, k, 1]) - float(s["center"][b, 1])) / half
            total += float(HAS[b]) * float(s["gt"][b, k, 2]) * ((u - gu) ** 2 + (v - gv) ** 2)
    assert math.isclose(float(got), total / (B * 14 * 2), rel_tol=1e-10)


def test_cliff_projection_of_ground_truth_reproduces_keypoints():
    """Synthetic CLIFF case: 3D joints + translation + focal -> 2D; the loss is then exactly 0,
    with the box normalisation and with the crop transform (rotation + flip)."""
    s = full_image_scene(seed=16)
    cam_joints = s["joints"] + s["transl"][:, None]
    camera = scene_camera(s)
    assert float(full_image_keypoint_loss(cam_joints, s["gt"], camera, scene_box(s))) == 0.0
    affine = crop_matrix(s["center"], s["size"], 256, rotation=torch.full((B,), 0.3, dtype=F64))
    loss = full_image_keypoint_loss(s["joints"], s["gt"], camera, scene_box(s, 256, affine),
                                    transl=s["transl"])
    assert float(loss) == 0.0
    # without rotation/flip the given crop transform and the box's own agree
    pred = cam_joints * 1.01
    plain = crop_matrix(s["center"], s["size"], 256)
    a = full_image_keypoint_loss(pred, s["gt"], camera, scene_box(s, 256, plain))
    b = full_image_keypoint_loss(pred, s["gt"], camera, scene_box(s))
    torch.testing.assert_close(a, b)
    assert float(b) > 0


def test_whmr_full_and_full2_against_loop():
    s = full_image_scene(seed=17)
    box = torch.stack([s["size"] * 0.75, s["size"]], -1)
    pred = s["gt"][..., :2] + 4 * torch.randn(B, 14, 2, generator=gen(17), dtype=F64)
    got = whmr_full_image_keypoint_loss(pred, s["gt"], s["wh"], box, HAS)
    total = 0.0
    for b in range(B):
        W, H = float(s["wh"][b, 0]), float(s["wh"][b, 1])
        bal = (W / float(box[b, 0]), H / float(box[b, 1]))
        for k in range(14):
            for a, S in enumerate((W, H)):
                d = (2 * float(pred[b, k, a]) / S - 1) - (2 * float(s["gt"][b, k, a]) / S - 1)
                total += float(HAS[b]) * float(s["gt"][b, k, 2]) * d * d * bal[a]
    assert math.isclose(float(got), total / (B * 14 * 2), rel_tol=1e-10)
    crop = keypoints_2d(k=14, seed=17)
    pc = crop[..., :2] + 0.1
    torch.testing.assert_close(
        full2_loss(pc, crop, pred, s["gt"], s["wh"], box, HAS),
        keypoint_2d_loss(pc, crop, HAS) + got,
    )


def _full_x_y_bs(cams, c, b, wh):
    """Multi-RoI eq. 12 for one RoI, scalar Python."""
    s, tx, ty = (float(v) for v in cams)
    bs = float(b) * s
    return (
        tx + 2 * (float(c[0]) - float(wh[0]) / 2) / bs,
        ty + 2 * (float(c[1]) - float(wh[1]) / 2) / bs,
        bs,
    )


@pytest.mark.parametrize("pairs", ["all", "first"])
def test_camera_consistency_against_loop(pairs):
    s = multiroi_scene(seed=18)
    cams = s["cams"] * (1 + 0.05 * torch.randn(s["cams"].shape, generator=gen(18), dtype=F64))
    weights = (0.1, 0.2, 1e-3)
    got = camera_consistency_loss(
        cams, s["centers"], s["sizes"], s["wh"], pairs=pairs, weights=weights
    )
    M = cams.shape[1]
    total = 0.0
    for b in range(B):
        full = [
            _full_x_y_bs(cams[b, m], s["centers"][b, m], s["sizes"][b, m], s["wh"][b])
            for m in range(M)
        ]
        for m in range(M):
            for n in range(m + 1, M):
                if pairs == "first" and m != 0:
                    continue
                total += sum(w * (full[m][i] - full[n][i]) ** 2 for i, w in enumerate(weights))
    assert math.isclose(float(got), total / B, rel_tol=1e-10)


def test_camera_consistency_code_variant_against_loop():
    """Official ``trainer_sim.camera_losses``: MSE(reg_x + reg_y) + MSE(1e-4 reg_s), RoI 0 pairs."""
    s = multiroi_scene(seed=19)
    cams = s["cams"] * (1 + 0.05 * torch.randn(s["cams"].shape, generator=gen(19), dtype=F64))
    got = camera_consistency_loss(cams, s["centers"], s["sizes"], s["wh"], variant="code")
    M = cams.shape[1]
    sq_xy, sq_s = 0.0, 0.0
    for b in range(B):
        x0, y0, bs0 = _full_x_y_bs(cams[b, 0], s["centers"][b, 0], s["sizes"][b, 0], s["wh"][b])
        for n in range(M):
            xn, yn, bsn = _full_x_y_bs(cams[b, n], s["centers"][b, n], s["sizes"][b, n], s["wh"][b])
            sq_xy += ((x0 - xn) + (y0 - yn)) ** 2
            sq_s += (1e-4 * (bsn - bs0)) ** 2
    assert math.isclose(float(got), (sq_xy + sq_s) / (B * M), rel_tol=1e-10)
    with pytest.raises(ValueError, match="pairs='first'"):
        camera_consistency_loss(
            cams, s["centers"], s["sizes"], s["wh"], variant="code", pairs="all"
        )


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
def test_camera_consistency_zero_for_one_full_camera(dtype):
    """Local cameras built from ONE full translation (full_to_crop_camera) agree: loss ~ 0; moving
    any one of them (scale or translation) makes it positive, for every variant."""
    s = multiroi_scene(seed=20, dtype=dtype)
    tol = 1e-20 if dtype == F64 else 1e-8
    for kw in ({}, {"pairs": "first"}, {"variant": "code"}, {"scale_term": "tz"}):
        args = (s["centers"], s["sizes"], s["wh"], s["focal"])
        assert float(camera_consistency_loss(s["cams"], *args, **kw)) < tol, kw
        for m, j in ((1, 0), (2, 1), (4, 2), (0, 2)):
            moved = s["cams"].clone()
            moved[:, m, j] = moved[:, m, j] * 1.05 + 0.01
            assert float(camera_consistency_loss(moved, *args, **kw)) > 1e3 * tol, (kw, m, j)


def _contrastive_loop(z, tau, variant, reduction="mean", scale=None):
    z = F.normalize(z, dim=-1)
    Bn, M, _ = z.shape
    terms = []
    for i in range(Bn):
        for m in range(M):
            negs = [(i2, m2) for i2 in range(Bn) for m2 in range(M) if i2 != i]
            den = list(negs)
            if variant == "supcon":
                den += [(i, m2) for m2 in range(M) if m2 != m]
            if M < 2 or not den:
                continue
            log_den = math.log(sum(math.exp(float(z[i, m] @ z[a, c]) / tau) for a, c in den))
            acc = 0.0
            for n in range(M):
                if n != m:
                    acc += -(float(z[i, m] @ z[i, n]) / tau - log_den)
            terms.append(acc / (M - 1))
    if not terms:
        return 0.0
    out = sum(terms) / (len(terms) if reduction == "mean" else 1)
    if scale if scale is not None else variant == "supcon":
        out *= tau
    return out


@pytest.mark.parametrize("variant", ["paper", "supcon"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_contrastive_loss_against_double_loop(variant, reduction):
    z = torch.randn(4, 3, 6, generator=gen(21), dtype=F64)
    got = contrastive_loss(z, tau=0.5, variant=variant, reduction=reduction)
    ref = _contrastive_loop(z, 0.5, variant, reduction)
    assert math.isclose(float(got), ref, rel_tol=1e-10)
    got = contrastive_loss(
        z, tau=0.3, variant=variant, reduction=reduction, scale_by_temperature=True
    )
    assert math.isclose(
        float(got), _contrastive_loop(z, 0.3, variant, reduction, True), rel_tol=1e-10
    )


def test_contrastive_supcon_matches_official_formula():
    """The SupCon variant against a transcription of the official ``SupConLoss`` computation."""
    z = torch.randn(3, 5, 8, generator=gen(22), dtype=F64)
    feats = F.normalize(z.reshape(15, 8), dim=1)
    label = torch.eye(3, dtype=F64)[:, None, :, None].expand(3, 5, 3, 5).reshape(15, 15)
    logits = feats @ feats.T / 0.5
    logits = logits - logits.max(dim=1, keepdim=True).values
    exp = torch.exp(logits)
    pos = label * (1 - torch.eye(15, dtype=F64))
    den = (exp * (1 - label)).sum(1, keepdim=True) + (exp * pos).sum(1, keepdim=True)
    ref = (-((logits - torch.log(den)) * pos).sum(1) / pos.sum(1) * 0.5).mean()
    torch.testing.assert_close(contrastive_loss(z, 0.5, "supcon"), ref)


@pytest.mark.parametrize("variant", ["paper", "supcon"])
def test_contrastive_loss_decreases_when_same_person_pulled_together(variant):
    g = gen(23)
    centres = torch.randn(6, 1, 16, generator=g, dtype=F64)
    noise = torch.randn(6, 5, 16, generator=g, dtype=F64)
    losses = [
        float(contrastive_loss(centres + a * noise, variant=variant)) for a in (2.0, 1.0, 0.3, 0.05)
    ]
    assert all(x > y for x, y in zip(losses, losses[1:], strict=False)), losses
    # and gradient descent on the features lowers it
    z = (centres + noise).clone().requires_grad_(True)
    opt = torch.optim.SGD([z], lr=0.5)
    start = float(contrastive_loss(z, variant=variant).detach())
    for _ in range(20):
        opt.zero_grad()
        contrastive_loss(z, variant=variant).backward()
        opt.step()
    assert float(contrastive_loss(z, variant=variant).detach()) < start


def test_contrastive_degenerate_batches_give_zero():
    one_person = torch.randn(1, 5, 8, dtype=F64, requires_grad=True)
    loss = contrastive_loss(one_person, variant="paper")  # no negatives
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.isfinite(one_person.grad).all()
    one_roi = torch.randn(4, 1, 8, dtype=F64)  # no positives
    assert float(contrastive_loss(one_roi, variant="supcon")) == 0.0
    assert float(contrastive_loss(one_roi, variant="paper")) == 0.0
    assert math.isfinite(float(contrastive_loss(torch.randn(1, 5, 8), variant="supcon")))


def test_projection_head_and_gate():
    head = ProjectionHead(12, gate=True)
    layers = list(head.net)
    assert [type(m).__name__ for m in layers] == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
        "BatchNorm1d",
    ]
    assert layers[0].bias is not None and layers[3].bias is None
    h = torch.randn(4, 5, 12)
    out = head(h)
    assert out.shape == (4, 5, 12)
    contrastive_loss(out).backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())
    head.eval()
    assert head(h.reshape(20, 12)).shape == (20, 12)
    x = torch.tensor([-2.0, 0.0, 3.0])
    torch.testing.assert_close(
        sigmoid_relu_gate(x), torch.tensor([-1.0, 0.0, 3 * torch.sigmoid(torch.tensor(3.0))])
    )
    assert ProjectionHead(8, out_dim=4)(torch.randn(3, 8)).shape == (3, 4)


def test_iuv_losses_against_loop():
    s = iuv_scene(seed=24)
    P, C = s["parts"], s["coarse"]
    g = gen(24)
    H, W = s["gt_iuv"].shape[-2:]
    logits = torch.randn(B, P, H, W, generator=g, dtype=F64)
    coarse = torch.randn(B, C, H, W, generator=g, dtype=F64)
    uv = torch.rand(B, 2, H, W, generator=g, dtype=F64) * 2
    out = iuv_losses(
        logits, uv, s["gt_iuv"], HAS, pred_coarse_logits=coarse, coarse_of_part=s["coarse_of_part"]
    )
    out_mean = iuv_losses(logits, uv, s["gt_iuv"], HAS, uv_reduction="mean")
    ce_i = ce_c = sl = 0.0
    n_pix = n_fg = 0
    labelled = [b for b in range(B) if HAS[b]]

    def smooth_l1(d):
        return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5

    for b in labelled:
        for y in range(H):
            for x in range(W):
                i = int(s["index"][b, y, x])
                ce_i += -(
                    float(logits[b, i, y, x])
                    - math.log(sum(math.exp(float(logits[b, j, y, x])) for j in range(P)))
                )
                c = int(s["coarse_of_part"][i])
                ce_c += -(
                    float(coarse[b, c, y, x])
                    - math.log(sum(math.exp(float(coarse[b, j, y, x])) for j in range(C)))
                )
                n_pix += 1
                if i > 0:
                    n_fg += 1
                    for a in range(2):
                        sl += smooth_l1(float(uv[b, a, y, x]) - float(s["gt_iuv"][b, 1 + a, y, x]))
    assert math.isclose(float(out["index"]), ce_i / n_pix, rel_tol=1e-10)
    assert math.isclose(float(out["part"]), ce_c / n_pix, rel_tol=1e-10)
    assert math.isclose(float(out["uv"]), sl / len(labelled), rel_tol=1e-10)
    assert math.isclose(float(out_mean["uv"]), sl / (2 * n_fg), rel_tol=1e-10)
    assert float(out_mean["part"]) == 0.0  # no coarse head
    perfect = perfect_logits(s["index"], P, F64)  # -inf logits: still no NaN anywhere
    out = iuv_losses(perfect, uv, s["gt_iuv"], HAS)
    assert float(out["index"]) == 0.0 and float(out["part"]) == 0.0


def test_inverse_depth_and_epe_against_loop():
    g = gen(25)
    z = (1 + 4 * torch.rand(B, 5, 6, generator=g, dtype=F64)) * (
        torch.rand(B, 5, 6, generator=g) > 0.5
    )
    pred = torch.randn(B, 1, 5, 6, generator=g, dtype=F64)
    labelled = [b for b in range(B) if HAS[b]]
    total = 0.0
    for b in labelled:
        for y in range(5):
            for x in range(6):
                t = 1 / float(z[b, y, x]) if z[b, y, x] > 0 else 0.0
                d = abs(float(pred[b, 0, y, x]) - t)
                total += 0.5 * d * d if d < 1 else d - 0.5
    assert math.isclose(
        float(inverse_depth_loss(pred, z, HAS)), total / len(labelled), rel_tol=1e-10
    )
    assert math.isclose(
        float(inverse_depth_loss(pred, z, HAS, reduction="mean")),
        total / (len(labelled) * 30),
        rel_tol=1e-10,
    )

    gt = torch.randn(B, 2, 5, 6, generator=g, dtype=F64)
    pd = torch.randn(B, 2, 5, 6, generator=g, dtype=F64)
    mask = (torch.rand(B, 5, 6, generator=g) > 0.5).to(F64)
    num = den = 0.0
    for b in range(B):
        for y in range(5):
            for x in range(6):
                if mask[b, y, x]:
                    num += math.hypot(
                        float(pd[b, 0, y, x] - gt[b, 0, y, x]),
                        float(pd[b, 1, y, x] - gt[b, 1, y, x]),
                    )
                    den += 1
    assert math.isclose(float(endpoint_error_loss(pd, gt, mask)), num / den, rel_tol=1e-10)
    assert float(endpoint_error_loss(pd, gt, torch.zeros(B, 5, 6))) == 0.0


def test_silhouette_bce_logits():
    gt = (torch.rand(B, 6, 6, generator=gen(26)) > 0.5).to(F64)
    near = silhouette_bce((gt * 2 - 1) * 40, gt)  # logits far on the right side: ~ 0
    assert 0 <= float(near) < 1e-15
    logits = torch.randn(B, 1, 6, 6, generator=gen(27), dtype=F64)
    torch.testing.assert_close(
        silhouette_bce(logits, gt[:, None], HAS),
        F.binary_cross_entropy_with_logits(logits[HAS > 0], gt[:, None][HAS > 0]),
    )


# --------------------------------------------------------------------------- small pieces


def test_camera_scale_prior():
    s = torch.tensor([0.0, 0.5, 1.0], dtype=F64, requires_grad=True)
    loss = camera_scale_prior(s)
    ref = (1 + math.exp(-10) + math.exp(-20)) / 3
    assert math.isclose(float(loss.detach()), ref, rel_tol=1e-12)
    loss.backward()
    assert (s.grad < 0).all()  # pushes s up (positive)
    assert float(camera_scale_prior(torch.zeros(0))) == 0.0


def test_pseudo_focal_loss_value():
    f = torch.tensor([1000.0, 2000.0], dtype=F64)
    wh = torch.tensor([600.0, 800.0], dtype=F64)  # sqrt = 1000
    assert math.isclose(float(pseudo_focal_loss(f, wh)), 1e-6 * (0 + 1000.0**2) / 2, rel_tol=1e-12)


def test_cropbox_normalized_keypoints_match_geometry():
    s = full_image_scene(seed=28)
    affine = crop_matrix(s["center"], s["size"], 224, rotation=torch.full((B,), -0.2, dtype=F64))
    got = CropBox(s["center"], s["size"], 224, affine=affine).normalize(s["gt"])
    ref = pixels_to_normalized(
        full_to_crop_points(
            s["gt"][..., :2],
            s["center"],
            s["size"],
            224,
            rotation=torch.full((B,), -0.2, dtype=F64),
        ),
        224,
    )
    torch.testing.assert_close(got[..., :2], ref)
    torch.testing.assert_close(got[..., 2], s["gt"][..., 2])


def test_keypoint_3d_loss_requires_a_root_choice():
    x = dyadic(torch.randn(2, 14, 3))
    with pytest.raises(TypeError, match="root"):
        keypoint_3d_loss(x, x)
    assert float(keypoint_3d_loss(x, x, root=None)) == 0.0
    assert float(keypoint_3d_loss(x + 1, x, pred_root=x[:, 0] + 1, gt_root=x[:, 0])) == 0.0


def test_shape_errors_are_readable():
    with pytest.raises(ValueError, match="keypoint_2d_loss: pred"):
        keypoint_2d_loss(torch.zeros(2, 5, 2), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="has"):
        pose_loss(torch.zeros(2, 24, 3, 3), torch.zeros(2, 24, 3, 3), torch.ones(3))
    with pytest.raises(ValueError, match="box_size"):
        camera_consistency_loss(
            torch.ones(2, 5, 3), torch.zeros(2, 5, 2), torch.ones(2, 4), (640, 480)
        )


def test_weights_and_weighted_sum():
    assert SPIN_WEIGHTS["keypoints_2d"] == 300 and SPIN_WEIGHTS["betas"] == 0.06
    assert SPIN_WEIGHTS["cam_prior"] == 60 and SPIN_WEIGHTS["pose"] == 60
    assert MULTIROI_WEIGHTS["camera_consistency"] == 60 and MULTIROI_WEIGHTS["contrastive"] == 6
    assert WHMR_WEIGHTS["vertices"] == 15 and IUV_WEIGHTS == {"index": 2.0, "part": 0.3, "uv": 0.5}
    total = weighted_sum({"pose": torch.tensor(2.0), "betas": torch.tensor(10.0)}, SPIN_WEIGHTS)
    assert math.isclose(float(total), 120.6, rel_tol=1e-6)
    with pytest.raises(KeyError, match="posee"):
        weighted_sum({"posee": torch.tensor(1.0)}, SPIN_WEIGHTS)


def test_empty_batch_is_zero():
    assert float(keypoint_2d_loss(torch.zeros(0, 4, 2), torch.zeros(0, 4, 3))) == 0.0
    assert float(pose_loss(torch.zeros(0, 24, 3, 3), torch.zeros(0, 24, 3, 3))) == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_generic():
    cuda = torch.device("cuda")
    # the cases whose closures hold no tensors of their own
    for name in (
        "kp2d",
        "kp3d",
        "pose",
        "shape",
        "vertex",
        "silhouette_prob",
        "iuv",
        "inverse_depth",
    ):
        c = CASES[name](F32)
        pred = c.perturb(c.pred, gen(0))
        ref = c.fn(pred, c.labels, HAS)
        p = pred.to(cuda).requires_grad_(True)
        loss = c.fn(p, tuple(x.to(cuda) for x in c.labels), HAS.to(cuda))
        loss.backward()
        assert loss.device.type == "cuda" and torch.isfinite(p.grad).all()
        torch.testing.assert_close(loss.cpu(), ref, rtol=1e-4, atol=1e-6)
    z = torch.randn(3, 5, 8, device=cuda, requires_grad=True)
    contrastive_loss(z).backward()
    assert z.grad.device.type == "cuda"
