"""Cameras: projections and crop <-> full conversions (golden values, loops, round trips)."""

import math

import pytest
import roma
import torch

from hmrkit.geometry.cameras import (
    cliff_bbox_info,
    crop_to_full_camera,
    default_focal,
    focal_from_depth,
    full_to_crop_camera,
    intrinsics_matrix,
    project_perspective,
    project_weak_perspective,
    whmr_full_translation,
    whmr_global_info,
)
from hmrkit.geometry.crops import full_to_crop_points, pixels_to_normalized

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def random_setup(batch=6, seed=0, dtype=F64):
    """Random image sizes, focal lengths, boxes (inside the image) and crop cameras."""
    g = gen(seed)
    wh = torch.stack([torch.randint(320, 1920, (batch,), generator=g)] * 2, -1).to(dtype)
    wh[:, 1] = (wh[:, 1] * (0.5 + 0.5 * torch.rand(batch, generator=g, dtype=dtype))).round()
    focal = default_focal(wh) * (0.5 + torch.rand(batch, generator=g, dtype=dtype))
    size = wh.min(-1).values * (0.2 + 0.6 * torch.rand(batch, generator=g, dtype=dtype))
    center = size[:, None] / 2 + (wh - size[:, None]) * torch.rand(
        batch, 2, generator=g, dtype=dtype
    )
    cam = torch.cat(
        [
            0.6 + 0.6 * torch.rand(batch, 1, generator=g, dtype=dtype),
            0.2 * torch.randn(batch, 2, generator=g, dtype=dtype),
        ],
        -1,
    )
    return wh, focal, center, size, cam


def naive_crop_to_full(cam, center, size, wh, focal):
    out = []
    for (s, tx, ty), (cx, cy), b, (w, h), f in zip(
        cam.tolist(), center.tolist(), size.tolist(), wh.tolist(), focal.tolist(), strict=True
    ):
        out.append(
            [tx + 2 * (cx - w / 2) / (b * s), ty + 2 * (cy - h / 2) / (b * s), 2 * f / (b * s)]
        )
    return torch.tensor(out, dtype=F64)


# --------------------------------------------------------------------------- projections


def test_project_perspective_golden():
    pts = torch.tensor([[[0.0, 0.0, 5.0], [1.0, 0.0, 5.0], [0.0, -0.5, 2.0]]], dtype=F64)
    uv = project_perspective(pts, torch.tensor([1000.0]), torch.tensor([[320.0, 240.0]]))
    expected = torch.tensor([[[320.0, 240.0], [520.0, 240.0], [320.0, -10.0]]], dtype=F64)
    torch.testing.assert_close(uv, expected)
    # float focal and (2,) principal point broadcast; dtype follows the points
    assert (
        project_perspective(pts.float(), 1000.0, torch.tensor([320.0, 240.0])).dtype
        == torch.float32
    )


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_project_perspective_matches_naive(dtype):
    g = gen(2)
    B, N = 3, 7
    pts = torch.randn(B, N, 3, generator=g, dtype=F64)
    R = roma.random_rotmat(B, dtype=F64)
    t = torch.randn(B, 3, generator=g, dtype=F64) * 0.2 + torch.tensor([0.0, 0.0, 6.0], dtype=F64)
    f = 500 + 1000 * torch.rand(B, 2, generator=g, dtype=F64)
    c = 300 * torch.rand(B, 2, generator=g, dtype=F64)
    got = project_perspective(pts.to(dtype), f.to(dtype), c.to(dtype), t.to(dtype), R.to(dtype))
    ref = torch.zeros(B, N, 2, dtype=F64)
    for b in range(B):
        for n in range(N):
            X = R[b] @ pts[b, n] + t[b]
            ref[b, n, 0] = f[b, 0] * X[0] / X[2] + c[b, 0]
            ref[b, n, 1] = f[b, 1] * X[1] / X[2] + c[b, 1]
    assert got.dtype == dtype
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got.double(), ref, rtol=rtol, atol=rtol * 1e3)
    # (B,) focal equals (B, 2) focal with equal entries
    same = project_perspective(pts, f[:, 0], c, t, R)
    torch.testing.assert_close(same, project_perspective(pts, f[:, [0, 0]], c, t, R))


def test_intrinsics_matrix_agrees_with_projection():
    g = gen(3)
    pts = torch.randn(2, 5, 3, generator=g, dtype=F64) + torch.tensor([0, 0, 5.0], dtype=F64)
    f, c = (
        torch.tensor([800.0, 1200.0], dtype=F64),
        torch.tensor([[320, 240], [500, 400.0]], dtype=F64),
    )
    K = intrinsics_matrix(f, c)
    assert K.shape == (2, 3, 3)
    hom = pts @ K.transpose(1, 2)
    torch.testing.assert_close(hom[..., :2] / hom[..., 2:], project_perspective(pts, f, c))
    torch.testing.assert_close(
        K[0], torch.tensor([[800, 0, 320], [0, 800, 240], [0, 0, 1.0]], dtype=F64)
    )


def test_weak_perspective_golden_and_naive():
    pts = torch.tensor([[[0.5, -0.25, 3.0]]], dtype=F64)
    cam = torch.tensor([[0.8, 0.1, 0.05]], dtype=F64)
    torch.testing.assert_close(
        project_weak_perspective(pts, cam), torch.tensor([[[0.48, -0.16]]], dtype=F64)
    )
    g = gen(4)
    pts, cam = (
        torch.randn(4, 6, 3, generator=g, dtype=F64),
        torch.randn(4, 3, generator=g, dtype=F64),
    )
    ref = torch.stack([cam[b, 0] * (pts[b, :, :2] + cam[b, 1:]) for b in range(4)])
    torch.testing.assert_close(project_weak_perspective(pts, cam), ref)


# --------------------------------------------------------------------------- crop <-> full


def test_crop_to_full_golden():
    wh = torch.tensor([[640.0, 480.0], [640.0, 480.0]], dtype=F64)
    center = torch.tensor([[320.0, 240.0], [420.0, 190.0]], dtype=F64)
    cam = torch.tensor([[1.0, 0.1, -0.2], [1.0, 0.0, 0.0]], dtype=F64)
    t = crop_to_full_camera(cam, center, torch.tensor([200.0, 200.0]), wh, 1000.0)
    # centred box: t_z = 2 f / (b s) = 10, t_xy = crop t_xy; off-centre: +2 * offset / (b s)
    torch.testing.assert_close(t, torch.tensor([[0.1, -0.2, 10.0], [1.0, -0.5, 10.0]], dtype=F64))


def test_crop_to_full_matches_naive_and_round_trips():
    wh, focal, center, size, cam = random_setup()
    transl = crop_to_full_camera(cam, center, size, wh, focal)
    torch.testing.assert_close(transl, naive_crop_to_full(cam, center, size, wh, focal))
    torch.testing.assert_close(full_to_crop_camera(transl, center, size, wh, focal), cam)
    g = gen(5)
    t_full = torch.randn(6, 3, generator=g, dtype=F64) * 0.5 + torch.tensor([0, 0, 8.0], dtype=F64)
    back = crop_to_full_camera(
        full_to_crop_camera(t_full, center, size, wh, focal), center, size, wh, focal
    )
    torch.testing.assert_close(back, t_full)


def test_crop_to_full_float32_and_gradients():
    wh, focal, center, size, cam = random_setup(dtype=torch.float32)
    cam = cam.requires_grad_()
    t = crop_to_full_camera(cam, center, size, wh, focal)
    assert t.dtype == torch.float32
    t.sum().backward()
    assert torch.isfinite(cam.grad).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_full_camera_projection_equals_weak_perspective_at_constant_depth(seed):
    """Points at the root depth: full perspective projection, mapped into the crop, equals the
    weak-perspective crop projection exactly (CLIFF / Multi-RoI eq. 12)."""
    wh, focal, center, size, cam = random_setup(seed=seed)
    g = gen(10 + seed)
    pts = torch.randn(6, 30, 3, generator=g, dtype=F64) * 0.5
    pts[..., 2] = 0.0
    transl = crop_to_full_camera(cam, center, size, wh, focal)
    full = project_perspective(pts, focal, wh / 2, transl)
    res = 224
    crop_norm = pixels_to_normalized(full_to_crop_points(full, center, size, res), res)
    torch.testing.assert_close(crop_norm, project_weak_perspective(pts, cam), atol=1e-10, rtol=0)


def test_cliff_camera_on_body_sized_cloud():
    """A body-sized cloud (1.8 m tall, 0.3 m deep) at the full-image translation from a crop camera:
    the root lands exactly where the crop camera puts it, and every point lands within the
    perspective error bound |Z| / (t_z + Z) of its weak-perspective position."""
    wh, focal, center, size, cam = random_setup(seed=3)
    cam[:, 0] = 0.9  # the body fills most of the crop
    g = gen(11)
    body = (torch.rand(6, 200, 3, generator=g, dtype=F64) - 0.5) * torch.tensor(
        [0.5, 1.8, 0.3], dtype=F64
    )
    body[:, 0] = 0.0  # root at the origin
    transl = crop_to_full_camera(cam, center, size, wh, focal)
    full = project_perspective(body, focal, wh / 2, transl)
    crop = pixels_to_normalized(full_to_crop_points(full, center, size, 256), 256)
    weak = project_weak_perspective(body, cam)
    torch.testing.assert_close(crop[:, 0], weak[:, 0], atol=1e-10, rtol=0)
    # exact perspective in crop coordinates: s t_z / (t_z + Z) (X + t_full) - s (t_full - t_crop)
    s, tz = cam[:, None, :1], transl[:, None, 2:]
    exact = s * tz / (tz + body[..., 2:]) * (body[..., :2] + transl[:, None, :2])
    exact = exact - s * (transl[:, None, :2] - cam[:, None, 1:])
    torch.testing.assert_close(crop, exact, atol=1e-10, rtol=0)
    bound = (
        s
        * (body[..., 2:].abs() / (tz + body[..., 2:]))
        * (body[..., :2] + transl[:, None, :2]).abs()
    )
    assert ((crop - weak).abs() <= bound + 1e-12).all()
    # in full-image pixels the body sits where the crop camera puts it, to 2 % of the box side
    expected_full = center[:, None] + size[:, None, None] / 2 * weak
    assert ((full - expected_full).abs() < 0.02 * size[:, None, None]).all()


def test_default_focal():
    torch.testing.assert_close(
        default_focal(torch.tensor([[640, 480], [3, 4]])), torch.tensor([800.0, 5.0])
    )
    assert default_focal(torch.tensor([640.0, 480.0], dtype=F64)).dtype == F64


# --------------------------------------------------------------------------- W-HMR


def test_focal_from_depth_golden_and_consistency():
    s = torch.tensor([1.0, 0.5], dtype=F64)
    size = torch.tensor([200.0, 300.0], dtype=F64)
    tz = torch.tensor([10.0, 4.0], dtype=F64)
    f = focal_from_depth(s, size, tz)
    torch.testing.assert_close(f, torch.tensor([1000.0, 300.0], dtype=F64))
    # (w, h) box sizes use the height
    f_wh = focal_from_depth(s, torch.tensor([[50.0, 200.0], [1.0, 300.0]], dtype=F64), tz)
    torch.testing.assert_close(f_wh, f)
    # eq. 4 equals crop_to_full with that focal, and t_z is the predicted depth
    wh, _, center, _, cam = random_setup(batch=2)
    cam[:, 0] = s
    t_whmr = whmr_full_translation(cam, tz, center, size, wh)
    torch.testing.assert_close(t_whmr, crop_to_full_camera(cam, center, size, wh, f))
    torch.testing.assert_close(t_whmr[:, 2], tz)


def test_whmr_detach_options():
    s = torch.tensor([0.9, 1.1], requires_grad=True)
    tz = torch.tensor([5.0, 7.0], requires_grad=True)
    focal_from_depth(s, torch.tensor([200.0, 220.0]), tz).sum().backward()
    assert s.grad is None and tz.grad is not None
    focal_from_depth(s, torch.tensor([200.0, 220.0]), tz, detach=False).sum().backward()
    torch.testing.assert_close(s.grad, torch.tensor([200.0 * 5 / 2, 220.0 * 7 / 2]))

    cam = torch.tensor([[0.9, 0.1, 0.0], [1.0, 0.0, 0.2]], requires_grad=True)
    args = (
        torch.tensor([[300.0, 200.0], [100, 100]]),
        torch.tensor([200.0, 100]),
        torch.tensor([640, 480]),
    )
    whmr_full_translation(cam, tz, *args).sum().backward()
    assert cam.grad is None
    whmr_full_translation(cam, tz, *args, detach=False).sum().backward()
    assert cam.grad is not None


def test_cliff_bbox_info_golden():
    center = torch.tensor([[420.0, 190.0]], dtype=F64)
    wh, b, f = torch.tensor([[640, 480]]), torch.tensor([240.0]), torch.tensor([800.0])
    raw = cliff_bbox_info(center, b, wh, f, normalise=None)
    torch.testing.assert_close(raw, torch.tensor([[100.0, -50.0, 240.0]], dtype=F64))
    torch.testing.assert_close(cliff_bbox_info(center, b, wh, f, normalise="focal"), raw / 800)
    cliff = cliff_bbox_info(center, b, wh, f)
    expected = torch.tensor([[100 / 800 * 2.8, -50 / 800 * 2.8, (240 - 192) / 48]], dtype=F64)
    torch.testing.assert_close(cliff, expected)
    with pytest.raises(ValueError, match="normalise must be"):
        cliff_bbox_info(center, b, wh, f, normalise="bad")


def test_whmr_global_info_golden():
    center = torch.tensor([[420.0, 190.0], [320, 240]], dtype=F64)
    wh = torch.tensor([[640, 480], [640, 480]])
    info = whmr_global_info(center, torch.tensor([[100.0, 240.0], [50, 100]]), wh)
    expected = torch.tensor([[100, -50, 240, 640, 480], [0, 0, 100, 640, 480]], dtype=F64) / 800
    torch.testing.assert_close(info, expected)
    torch.testing.assert_close(whmr_global_info(center, torch.tensor([240.0, 100]), wh), expected)


# --------------------------------------------------------------------------- errors


def test_shape_errors_are_clear():
    with pytest.raises(
        ValueError, match=r"project_perspective: points has shape \(2, 5, 2\), expected \(B, N, 3\)"
    ):
        project_perspective(torch.zeros(2, 5, 2), 1000.0, torch.zeros(2, 2))
    with pytest.raises(
        ValueError, match=r"transl has shape \(3, 3\), expected \(B, 3\) matching points"
    ):
        project_perspective(
            torch.zeros(2, 5, 3), 1000.0, torch.zeros(2, 2), transl=torch.zeros(3, 3)
        )
    with pytest.raises(ValueError, match=r"focal has shape \(3,\), expected \(B,\) with B=2"):
        project_perspective(torch.zeros(2, 5, 3), torch.ones(3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"cam_crop has shape \(2, 4\)"):
        crop_to_full_camera(
            torch.ones(2, 4), torch.zeros(2, 2), torch.ones(2), torch.ones(2, 2), 1.0
        )
    with pytest.raises(
        ValueError, match=r"box_size has shape \(2, 2\), expected \(B,\) square side"
    ):
        crop_to_full_camera(
            torch.ones(2, 3), torch.zeros(2, 2), torch.ones(2, 2), torch.ones(2, 2), 1.0
        )
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 2\) = \(W, H\)"):
        default_focal(torch.ones(3))
    assert math.isclose(float(default_focal(torch.tensor([6.0, 8.0]))), 10.0)


# --------------------------------------------------------------------------- the Camera type


def test_camera_from_and_to_sample_and_defaults():
    from hmrkit.geometry.cameras import Camera

    wh = torch.tensor([[640.0, 480.0], [720.0, 1280.0]], dtype=F64)
    cam = Camera.default(wh)
    torch.testing.assert_close(cam.focal, torch.tensor([800.0, math.hypot(720, 1280)], dtype=F64))
    torch.testing.assert_close(cam.principal_point, wh / 2)
    assert len(cam) == 2 and cam.cam_to_world is None
    again = Camera.from_sample(cam.to_sample())
    torch.testing.assert_close(again.intrinsics, cam.intrinsics)
    torch.testing.assert_close(again.image_size, cam.image_size)
    torch.testing.assert_close(cam.K, intrinsics_matrix(cam.focal, wh / 2))
    given = Camera.default(wh, 500.0)
    torch.testing.assert_close(given.focal_xy, torch.full((2, 2), 500.0, dtype=F64))
    moved = cam.with_focal(torch.tensor([100.0, 200.0], dtype=F64))
    torch.testing.assert_close(moved.focal, torch.tensor([100.0, 200.0], dtype=F64))
    torch.testing.assert_close(moved.principal_point, cam.principal_point)
    rep = cam.repeat_interleave(3)
    assert len(rep) == 6 and torch.equal(rep.intrinsics[3], cam.intrinsics[1])
    assert len(cam[1]) == 1 and torch.equal(cam[1].intrinsics[0], cam.intrinsics[1])


def test_camera_projection_uses_fx_fy_and_principal_point():
    from hmrkit.geometry.cameras import Camera

    cam = Camera(torch.tensor([[100.0, 120.0, 30.5, 20.25]], dtype=F64),
                 torch.tensor([[64.0, 48.0]], dtype=F64))
    points = torch.tensor([[[0.1, -0.2, 2.0], [0.0, 0.0, 4.0]]], dtype=F64)
    want = torch.tensor([[[100 * 0.05 + 30.5, 120 * -0.1 + 20.25], [30.5, 20.25]]], dtype=F64)
    torch.testing.assert_close(cam.project(points), want)
    shift = torch.tensor([[0.0, 0.0, 2.0]], dtype=F64)
    torch.testing.assert_close(cam.project(points, transl=shift),
                               project_perspective(points, cam.focal_xy, cam.principal_point,
                                                   transl=shift))


def test_camera_shape_errors_are_clear():
    from hmrkit.geometry.cameras import Camera

    with pytest.raises(ValueError, match="intrinsics has shape"):
        Camera(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="image_size has shape"):
        Camera(torch.zeros(2, 4), torch.zeros(3, 2))


def test_35mm_rule_golden_and_round_trip():
    from hmrkit.geometry.cameras import Camera, focal_35mm, focal_from_35mm

    assert focal_from_35mm(36.0, (640, 480)) == pytest.approx(640.0)
    assert focal_from_35mm(18.0, (480, 720)) == pytest.approx(360.0)
    wh = torch.tensor([[640.0, 480.0], [480.0, 720.0]], dtype=F64)
    f = focal_from_35mm(torch.tensor([50.0, 24.0], dtype=F64), wh)
    torch.testing.assert_close(focal_35mm(f, wh), torch.tensor([50.0, 24.0], dtype=F64))
    torch.testing.assert_close(Camera.default(wh, f).focal_35mm(),
                               torch.tensor([50.0, 24.0], dtype=F64))
