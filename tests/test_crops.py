"""Crops: affine maps against a naive 3x3 composition, round trips, camera consistency."""

import math

import numpy as np
import pytest
import torch

from hmrkit.geometry.cameras import (
    crop_to_full_camera,
    default_focal,
    project_perspective,
    project_weak_perspective,
)
from hmrkit.geometry.crops import (
    affine_to_cv2,
    box_from_keypoints,
    crop_matrix,
    crop_to_full_points,
    full_to_crop_points,
    invert_affine,
    normalized_to_pixels,
    pixels_to_normalized,
    size_to_spin_scale,
    spin_scale_to_size,
    transform_points,
)
from hmrkit.geometry.rotations import flip_rotmat_lr, rot_z

F64 = torch.float64


def naive_crop_matrix(center, size, res, theta, flip):
    """Translate to the box centre, scale, rotate, move to the crop centre, then mirror."""
    T1 = np.array([[1, 0, -center[0]], [0, 1, -center[1]], [0, 0, 1.0]])
    S = np.diag([res / size, res / size, 1.0])
    c, s = math.cos(theta), math.sin(theta)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    T2 = np.array([[1, 0, res / 2], [0, 1, res / 2], [0, 0, 1.0]])
    F = np.array([[-1, 0, res], [0, 1, 0], [0, 0, 1.0]]) if flip else np.eye(3)
    return (F @ T2 @ R @ S @ T1)[:2]


def random_boxes(batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    center = torch.rand(batch, 2, generator=g, dtype=F64) * 800 + 100
    size = torch.rand(batch, generator=g, dtype=F64) * 300 + 50
    theta = (torch.rand(batch, generator=g, dtype=F64) - 0.5) * 2 * math.pi
    flip = torch.arange(batch) % 2 == 1
    return center, size, theta, flip


def test_crop_matrix_golden():
    center, size = torch.tensor([[300.0, 200.0]]), torch.tensor([100.0])
    corners = torch.tensor([[[300.0, 200.0], [250.0, 150.0], [350.0, 250.0]]])
    crop = full_to_crop_points(corners, center, size, 224)
    torch.testing.assert_close(crop, torch.tensor([[[112.0, 112.0], [0.0, 0.0], [224.0, 224.0]]]))
    flipped = full_to_crop_points(corners, center, size, 224, flip=torch.tensor([True]))
    torch.testing.assert_close(
        flipped, torch.tensor([[[112.0, 112.0], [224.0, 0.0], [0.0, 224.0]]])
    )
    # a quarter turn: a point right of the centre goes below it (y down)
    right = torch.tensor([[[350.0, 200.0]]])
    turned = full_to_crop_points(right, center, size, 224, rotation=torch.tensor([math.pi / 2]))
    torch.testing.assert_close(turned, torch.tensor([[[112.0, 224.0]]]))


def test_crop_matrix_matches_naive():
    center, size, theta, flip = random_boxes()
    got = crop_matrix(center, size, 256, theta, flip)
    ref = [
        naive_crop_matrix(c, s, 256, t, f)
        for c, s, t, f in zip(
            center.tolist(), size.tolist(), theta.tolist(), flip.tolist(), strict=True
        )
    ]
    torch.testing.assert_close(got, torch.tensor(np.stack(ref)))
    no_rot = crop_matrix(center, size, 256)
    ref0 = [
        naive_crop_matrix(c, s, 256, 0.0, False)
        for c, s in zip(center.tolist(), size.tolist(), strict=True)
    ]
    torch.testing.assert_close(no_rot, torch.tensor(np.stack(ref0)))


def test_full_crop_full_round_trip_with_rotation_and_flip():
    center, size, theta, flip = random_boxes(seed=1)
    pts = torch.rand(8, 40, 2, dtype=F64) * 1000
    crop = full_to_crop_points(pts, center, size, 224, theta, flip)
    torch.testing.assert_close(crop_to_full_points(crop, center, size, 224, theta, flip), pts)
    A = crop_matrix(center, size, 224, theta, flip)
    torch.testing.assert_close(transform_points(transform_points(pts, A), invert_affine(A)), pts)
    torch.testing.assert_close(invert_affine(invert_affine(A)), A)


def test_normalized_coordinates():
    p = torch.tensor([[[0.0, 224.0], [112.0, 56.0]]])
    n = pixels_to_normalized(p, 224)
    torch.testing.assert_close(n, torch.tensor([[[-1.0, 1.0], [0.0, -0.5]]]))
    torch.testing.assert_close(normalized_to_pixels(n, 224), p)


def _scene(seed=0):
    """Random crop cameras, boxes, focal; points at the root depth (zero depth variation)."""
    g = torch.Generator().manual_seed(seed)
    B = 6
    wh = torch.tensor([[1280.0, 720.0]], dtype=F64).expand(B, 2)
    size = 150 + 300 * torch.rand(B, generator=g, dtype=F64)
    center = 200 + torch.rand(B, 2, generator=g, dtype=F64) * torch.tensor(
        [880.0, 320.0], dtype=F64
    )
    cam = torch.cat(
        [
            0.7 + 0.4 * torch.rand(B, 1, generator=g, dtype=F64),
            0.2 * torch.randn(B, 2, generator=g, dtype=F64),
        ],
        -1,
    )
    pts = torch.randn(B, 25, 3, generator=g, dtype=F64) * 0.4
    pts[..., 2] = 0.0
    return wh, default_focal(wh), center, size, cam, pts


def test_rotated_crop_matches_rot_z_of_body():
    """A crop rotated by theta sees (weak perspective) the body turned by rot_z(theta) about its
    root, with the crop translation turned by the same 2D rotation."""
    wh, f, center, size, cam, pts = _scene(1)
    theta = torch.linspace(-2.0, 2.5, 6, dtype=F64)
    full = project_perspective(pts, f, wh / 2, crop_to_full_camera(cam, center, size, wh, f))
    crop = pixels_to_normalized(full_to_crop_points(full, center, size, 256, rotation=theta), 256)
    R = rot_z(theta)
    cam_rot = torch.cat([cam[:, :1], (R[:, :2, :2] @ cam[:, 1:, None])[..., 0]], -1)
    torch.testing.assert_close(crop, project_weak_perspective(pts @ R.transpose(1, 2), cam_rot))


def test_flipped_crop_matches_mirrored_body():
    """A flipped crop sees the body mirrored x -> -x with the crop t_x negated."""
    wh, f, center, size, cam, pts = _scene(2)
    full = project_perspective(pts, f, wh / 2, crop_to_full_camera(cam, center, size, wh, f))
    flip = torch.ones(6, dtype=torch.bool)
    crop = pixels_to_normalized(full_to_crop_points(full, center, size, 224, flip=flip), 224)
    mirrored = pts * pts.new_tensor([-1.0, 1.0, 1.0])
    cam_flip = cam * cam.new_tensor([1.0, -1.0, 1.0])
    torch.testing.assert_close(crop, project_weak_perspective(mirrored, cam_flip))
    # the rotation of a mirrored rigid body part is flip_rotmat_lr of the original one
    R = rot_z(torch.tensor([0.3, -1.2], dtype=F64))
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=F64))
    x = torch.randn(2, 4, 3, dtype=F64)
    torch.testing.assert_close(
        (x @ M) @ flip_rotmat_lr(R).transpose(1, 2), (x @ R.transpose(1, 2)) @ M
    )


def test_affine_to_cv2_against_warp_affine():
    cv2 = pytest.importorskip("cv2")
    img = np.zeros((60, 80), dtype=np.float32)
    img[21, 37] = 1.0  # pixel centre at (37.5, 21.5) in hmrkit coordinates
    center, size = torch.tensor([[40.0, 30.0]], dtype=F64), torch.tensor([32.0], dtype=F64)
    for flip in (False, True):
        A = crop_matrix(center, size, 32, flip=torch.tensor([flip]))
        crop = cv2.warpAffine(img, affine_to_cv2(A)[0].numpy(), (32, 32), flags=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(affine_to_cv2(A.numpy()), affine_to_cv2(A).numpy())
        y, x = np.argwhere(crop > 0.5)[0]
        expected = transform_points(torch.tensor([[[37.5, 21.5]]], dtype=F64), A)[0, 0]
        assert (x + 0.5, y + 0.5) == tuple(expected.tolist())


def test_box_from_keypoints():
    kp = torch.tensor([[10.0, 20.0], [50.0, 40.0], [30.0, 100.0], [500.0, 500.0]])
    vis = torch.tensor([1.0, 1.0, 1.0, 0.0])
    center, size = box_from_keypoints(kp, vis)
    torch.testing.assert_close(center, torch.tensor([30.0, 60.0]))
    torch.testing.assert_close(size, torch.tensor(1.2 * 80.0))
    # batched, default all visible, no visible -> NaN
    kpb = torch.stack([kp, kp])
    c2, s2 = box_from_keypoints(kpb, torch.stack([vis, torch.zeros(4)]), scale=1.0)
    torch.testing.assert_close(c2[0], center)
    torch.testing.assert_close(s2[0], torch.tensor(80.0))
    assert torch.isnan(c2[1]).all() and torch.isnan(s2[1])
    c_all, s_all = box_from_keypoints(kp)
    torch.testing.assert_close(c_all, torch.tensor([255.0, 260.0]))
    torch.testing.assert_close(s_all, torch.tensor(1.2 * 490.0))
    with pytest.raises(ValueError, match=r"visible has shape \(3,\), expected \(4,\)"):
        box_from_keypoints(kp, vis[:3])


def test_spin_scale():
    assert spin_scale_to_size(1.2) == pytest.approx(240.0)
    torch.testing.assert_close(
        size_to_spin_scale(spin_scale_to_size(torch.tensor([0.5, 2.0]))), torch.tensor([0.5, 2.0])
    )


def test_shape_errors_are_clear():
    with pytest.raises(
        ValueError, match=r"crop_matrix: center has shape \(3,\), expected \(B, 2\)"
    ):
        crop_matrix(torch.zeros(3), torch.ones(1), 224)
    with pytest.raises(ValueError, match=r"size has shape \(3,\), expected \(B,\) with B=2"):
        crop_matrix(torch.zeros(2, 2), torch.ones(3), 224)
    with pytest.raises(
        ValueError,
        match=r"affine has shape \(3, 2, 3\), expected \(B, 2, 3\) matching points \(2, 5, 2\)",
    ):
        transform_points(torch.zeros(2, 5, 2), torch.zeros(3, 2, 3))


# --------------------------------------------------------------------------- the CropBox type


def _camera(pp=(331.5, 242.25)):
    from hmrkit.geometry.cameras import Camera

    return Camera(torch.tensor([[900.0, 900.0, *pp]], dtype=F64).expand(3, 4),
                  torch.tensor([[640.0, 480.0]], dtype=F64).expand(3, 2))


def _boxes(rotation=None):
    from hmrkit.geometry.crops import CropBox

    center = torch.tensor([[300.0, 200.0], [150.0, 330.0], [500.0, 260.0]], dtype=F64)
    size = torch.tensor([220.0, 140.0, 310.0], dtype=F64)
    rot = None if rotation is None else torch.tensor(rotation, dtype=F64)
    return CropBox(center, size, 64, rot)


def test_cropbox_matrix_points_and_normalized():
    box = _boxes([0.3, -1.0, 2.5])
    torch.testing.assert_close(box.matrix, crop_matrix(box.center, box.size, 64, box.rotation))
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3, 7, 3, generator=g, dtype=F64) * 400
    crop = box.to_crop(pts)
    torch.testing.assert_close(crop[..., 2], pts[..., 2])  # a third column is kept
    torch.testing.assert_close(box.to_full(crop), pts)
    torch.testing.assert_close(box.normalize(pts)[..., :2],
                               pixels_to_normalized(crop[..., :2], 64))
    rois = box[None].flatten()
    assert rois.shape == (3,) and box[1].shape == ()


@pytest.mark.parametrize("rotation", [None, [0.4, -0.7, 3.0]])
def test_cropbox_camera_is_exact_at_root_depth(rotation):
    """Through the crop camera of a (rotated) box, body points at the depth of the body origin
    land where the full-image camera (principal point off the centre) projects them; rotated
    boxes see the body in the camera frame rolled by rot_z(theta)."""
    from hmrkit.geometry.rotations import rot_z

    box, camera = _boxes(rotation), _camera()
    transl = torch.tensor([[0.2, -0.1, 5.0], [-0.6, 0.5, 7.0], [0.9, 0.2, 4.0]], dtype=F64)
    roll = box.roll_matrix()
    if rotation is not None:
        torch.testing.assert_close(roll, rot_z(box.rotation))
    g = torch.Generator().manual_seed(1)
    body = torch.rand(3, 9, 3, generator=g, dtype=F64) - 0.5
    body[..., 2] = 0.0  # at the origin's depth in the rolled frame
    rolled_transl = (roll @ transl[:, :, None])[..., 0]
    cam = box.to_crop_camera(rolled_transl, camera)
    torch.testing.assert_close(box.to_full_translation(cam, camera), rolled_transl)
    seen = (body + rolled_transl[:, None]) @ roll  # back to the camera frame: R^T X'
    weak = cam[:, None, :1] * (body[..., :2] + cam[:, None, 1:])
    torch.testing.assert_close(box.normalize(camera.project(seen)), weak)


def test_cropbox_from_sample_and_rois():
    from hmrkit.data.rois import multi_roi_boxes
    from hmrkit.geometry.crops import CropBox

    center, size = torch.tensor([[100.0, 80.0]]), torch.tensor([90.0])
    centers, sizes = multi_roi_boxes(center, size, m=3)
    batch = {"box_center": center, "box_size": size,
             "crop_affine": crop_matrix(center, size, 32), "rois/box_center": centers,
             "rois/box_size": sizes,
             "rois/crop_affine": crop_matrix(centers[0], sizes[0], 32)[None]}
    box = CropBox.from_sample(batch, 32)
    assert box.shape == (1,) and box.rotation is None
    rois = CropBox.rois_from_sample(batch, 32, 2)
    assert rois.shape == (1, 2)
    torch.testing.assert_close(rois.matrix, batch["rois/crop_affine"][:, :2])
    single = CropBox.rois_from_sample({k: v for k, v in batch.items()
                                       if not k.startswith("rois/")}, 32, 1)
    assert single.shape == (1, 1)
    with pytest.raises(ValueError, match="3 RoIs"):
        CropBox.rois_from_sample(batch, 32, 4)
