"""Rotations: fast functions against naive loops, round trips, golden values, gradients."""

import math

import numpy as np
import pytest
import roma
import torch

from hmrkit.geometry.rotations import (
    axis_angle_to_rotmat,
    flip_rotmat_lr,
    geodesic_angle,
    rot_x,
    rot_y,
    rot_z,
    rotmat_to_axis_angle,
    rotmat_to_sixd,
    sixd_to_rotmat,
    to_rotmat,
)

DTYPES = [torch.float32, torch.float64]


def tol(dtype):
    return {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 0}


def naive_rodrigues(v):
    """Rodrigues' formula, one vector at a time, in float64 numpy."""
    v = np.asarray(v, dtype=np.float64)
    angle = np.linalg.norm(v)
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def naive_gram_schmidt(x6):
    """SPIN layout: reshape to (3, 2), columns are the two vectors."""
    m = np.asarray(x6, dtype=np.float64).reshape(3, 2)
    a, b = m[:, 0], m[:, 1]
    e1 = a / np.linalg.norm(a)
    b = b - e1 * (e1 @ b)
    e2 = b / np.linalg.norm(b)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=1)


def random_rotvecs(n, dtype, max_angle=math.pi - 1e-3, seed=0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(
        torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1
    )
    angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * max_angle
    return (axis * angle).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_axis_angle_to_rotmat_matches_naive(dtype):
    aa = random_rotvecs(50, dtype)
    aa[0] = 0.0
    got = axis_angle_to_rotmat(aa)
    ref = torch.tensor(np.stack([naive_rodrigues(v) for v in aa.double().numpy()]), dtype=dtype)
    assert got.dtype == dtype
    torch.testing.assert_close(got, ref, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_axis_angle_round_trip(dtype):
    aa = random_rotvecs(100, dtype).reshape(4, 25, 3)
    back = rotmat_to_axis_angle(axis_angle_to_rotmat(aa))
    assert back.shape == aa.shape
    atol = 1e-4 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(back, aa, atol=atol, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logarithm_fast_path_matches_roma_without_calling_it(dtype, monkeypatch):
    """Angles up to 170 deg (and exactly 0, and tiny ones) take the matrix-read logarithm:
    it must equal roma's quaternion route, which is disabled here to prove it is not used."""
    aa = random_rotvecs(300, torch.float64, max_angle=math.radians(170), seed=3)
    aa[0] = 0.0
    aa[1] = torch.tensor([1e-7, -2e-7, 3e-8], dtype=torch.float64)
    aa[2] = torch.tensor([0.0, 0.0, 1e-4], dtype=torch.float64)
    R = axis_angle_to_rotmat(aa).to(dtype)
    expected = roma.rotmat_to_rotvec(R.double())

    def forbidden(_):
        raise AssertionError("the fast path fell back to roma")

    monkeypatch.setattr(roma, "rotmat_to_rotvec", forbidden)
    got = rotmat_to_axis_angle(R)
    atol = 2e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got.double(), expected, atol=atol, rtol=0)
    torch.testing.assert_close(got.double(), aa, atol=atol * 10, rtol=0)


def test_logarithm_falls_back_to_roma_near_pi():
    aa = random_rotvecs(64, torch.float64, max_angle=math.radians(170), seed=4)
    axis = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64), dim=0)
    aa[5] = axis * (math.pi - 1e-6)  # one angle near pi: the whole batch goes through roma
    R = axis_angle_to_rotmat(aa)
    torch.testing.assert_close(rotmat_to_axis_angle(R), roma.rotmat_to_rotvec(R), atol=1e-12,
                               rtol=0)
    assert torch.linalg.norm(rotmat_to_axis_angle(R[5])) == pytest.approx(math.pi - 1e-6, abs=1e-8)


def test_logarithm_gradcheck_float64_including_identity():
    aa = random_rotvecs(6, torch.float64, max_angle=math.radians(160), seed=5)
    R = torch.cat([torch.eye(3, dtype=torch.float64)[None], axis_angle_to_rotmat(aa)])
    # gradcheck perturbs the 9 entries freely (off the rotation group): the map must be smooth there
    assert torch.autograd.gradcheck(rotmat_to_axis_angle, (R.clone().requires_grad_(),))
    small = axis_angle_to_rotmat(torch.tensor([[1e-6, 0.0, -2e-6]], dtype=torch.float64))
    assert torch.autograd.gradcheck(rotmat_to_axis_angle, (small.clone().requires_grad_(),))


def test_rotmat_round_trip_through_axis_angle():
    R = roma.random_rotmat(200, dtype=torch.float64)
    torch.testing.assert_close(axis_angle_to_rotmat(rotmat_to_axis_angle(R)), R, atol=1e-9, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sixd_to_rotmat_matches_naive_gram_schmidt(dtype):
    x6 = torch.randn(40, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = sixd_to_rotmat(x6.to(dtype))
    ref = torch.tensor(np.stack([naive_gram_schmidt(v) for v in x6.numpy()]), dtype=dtype)
    torch.testing.assert_close(got, ref, atol=1e-5 if dtype == torch.float32 else 1e-10, rtol=0)
    eye = torch.eye(3, dtype=dtype).expand(40, 3, 3)
    torch.testing.assert_close(got @ got.transpose(-1, -2), eye, **tol(dtype))
    torch.testing.assert_close(torch.linalg.det(got), torch.ones(40, dtype=dtype), **tol(dtype))


def test_sixd_layout_is_first_two_columns():
    R = roma.random_rotmat(8, dtype=torch.float64)
    x6 = rotmat_to_sixd(R)
    expected = torch.stack([R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 0], R[:, 2, 1]])
    torch.testing.assert_close(x6, expected.T)
    ident = rotmat_to_sixd(torch.eye(3))
    torch.testing.assert_close(ident, torch.tensor([1.0, 0, 0, 1, 0, 0]))


def test_sixd_round_trip_and_batch_shapes():
    R = roma.random_rotmat(2 * 3 * 24, dtype=torch.float64).reshape(2, 3, 24, 3, 3)
    x6 = rotmat_to_sixd(R)
    assert x6.shape == (2, 3, 24, 6)
    torch.testing.assert_close(sixd_to_rotmat(x6), R, atol=1e-12, rtol=0)
    # Gram-Schmidt ignores the scale of the first column and the in-plane part of the second
    x6_scaled = x6.clone()
    x6_scaled[..., 0::2] *= 3.0
    torch.testing.assert_close(sixd_to_rotmat(x6_scaled), R, atol=1e-12, rtol=0)


def test_sixd_gradcheck():
    x6 = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sixd_to_rotmat, (x6,))


def test_to_rotmat_dispatch():
    aa = random_rotvecs(5, torch.float64)
    R = axis_angle_to_rotmat(aa)
    torch.testing.assert_close(to_rotmat(aa), R)
    torch.testing.assert_close(to_rotmat(rotmat_to_sixd(R)), R)
    assert to_rotmat(R) is R
    # (B, 3, 3) is read as matrices unless told otherwise
    three_vecs = aa[:3].reshape(1, 3, 3)
    assert to_rotmat(three_vecs).shape == (1, 3, 3)
    assert to_rotmat(three_vecs, kind="axis_angle").shape == (1, 3, 3, 3)


@pytest.mark.parametrize("shape", [(4, 9), (4, 2), (4, 3, 2), ()])
def test_to_rotmat_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="to_rotmat: cannot read a rotation from shape"):
        to_rotmat(torch.zeros(shape))


def test_to_rotmat_rejects_bad_kind():
    with pytest.raises(ValueError, match="unknown kind"):
        to_rotmat(torch.zeros(2, 3), kind="quat")
    with pytest.raises(ValueError, match=r"rotmat has shape \(2, 3\)"):
        to_rotmat(torch.zeros(2, 3), kind="rotmat")
    with pytest.raises(TypeError):
        to_rotmat(np.zeros((2, 3)))


def test_elementary_rotations_golden():
    ex, ey, ez = torch.eye(3, dtype=torch.float64)
    h = math.pi / 2
    torch.testing.assert_close(rot_z(torch.tensor(h, dtype=torch.float64)) @ ex, ey)
    torch.testing.assert_close(rot_x(torch.tensor(h, dtype=torch.float64)) @ ey, ez)
    torch.testing.assert_close(rot_y(torch.tensor(h, dtype=torch.float64)) @ ez, ex)
    assert rot_x(0.3).dtype == torch.get_default_dtype()
    assert rot_y(torch.zeros(2, 5)).shape == (2, 5, 3, 3)


@pytest.mark.parametrize("axis,fn", [(0, rot_x), (1, rot_y), (2, rot_z)])
def test_elementary_rotations_match_axis_angle(axis, fn):
    angles = torch.linspace(-3, 3, 13, dtype=torch.float64)
    aa = torch.zeros(13, 3, dtype=torch.float64)
    aa[:, axis] = angles
    torch.testing.assert_close(fn(angles), axis_angle_to_rotmat(aa))


def test_flip_rotmat_lr():
    aa = random_rotvecs(30, torch.float64)
    R = axis_angle_to_rotmat(aa)
    flipped = flip_rotmat_lr(R)
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    ref = torch.stack([M @ r @ M for r in R])
    torch.testing.assert_close(flipped, ref)
    # SPIN's flip_pose: negate the y and z rotation-vector components
    torch.testing.assert_close(flipped, axis_angle_to_rotmat(aa * aa.new_tensor([1, -1, -1])))
    torch.testing.assert_close(flip_rotmat_lr(flipped), R)
    torch.testing.assert_close(torch.linalg.det(flipped), torch.ones(30, dtype=torch.float64))


def test_geodesic_angle():
    angles = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
    R = roma.random_rotmat(7, dtype=torch.float64)
    torch.testing.assert_close(geodesic_angle(R, R @ rot_y(angles)), angles, atol=1e-7, rtol=0)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"axis_angle_to_rotmat: axis_angle has shape \(4, 6\), "):
        axis_angle_to_rotmat(torch.zeros(4, 6))
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 6\)"):
        sixd_to_rotmat(torch.zeros(4, 9))
