"""Similarity Procrustes: exact recovery, naive per-sample reference, roma, gradients."""

import numpy as np
import pytest
import roma
import torch

from hmrkit.geometry.procrustes import similarity_procrustes

F64 = torch.float64


def naive_umeyama(x, y, w=None):
    """Umeyama (1991) for one point set in float64 numpy."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    w = np.ones(len(x)) if w is None else np.asarray(w, np.float64)
    w = w / w.sum()
    mx, my = w @ x, w @ y
    x0, y0 = x - mx, y - my
    cov = (y0 * w[:, None]).T @ x0
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / (w @ (x0**2).sum(1))
    t = my - s * R @ mx
    return s, R, t


def random_similarity(batch, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    scale = (0.5 + 2 * torch.rand(batch, generator=g, dtype=F64)).to(dtype)
    R = roma.random_rotmat(batch, dtype=F64).to(dtype)
    t = torch.randn(batch, 3, generator=g, dtype=F64).to(dtype)
    return scale, R, t


def apply(x, scale, R, t):
    return scale[:, None, None] * x @ R.transpose(1, 2) + t[:, None]


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_recovers_known_similarity(dtype):
    torch.manual_seed(0)
    x = torch.randn(5, 30, 3, dtype=dtype)
    scale, R, t = random_similarity(5, dtype=dtype)
    y = apply(x, scale, R, t)
    aligned, (s_hat, R_hat, t_hat) = similarity_procrustes(x, y)
    tol = {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 0}
    assert aligned.dtype == dtype
    torch.testing.assert_close(aligned, y, **tol)
    torch.testing.assert_close(s_hat, scale, **tol)
    torch.testing.assert_close(R_hat, R, **tol)
    torch.testing.assert_close(t_hat, t, **tol)


def test_matches_naive_on_noisy_sets_with_weights():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 20, 3, generator=g, dtype=F64)
    y = torch.randn(6, 20, 3, generator=g, dtype=F64)  # unrelated: many need the reflection fix
    w = torch.rand(6, 20, generator=g, dtype=F64)
    for weights in (None, w):
        aligned, (s, R, t) = similarity_procrustes(x, y, weights)
        for b in range(6):
            s_ref, R_ref, t_ref = naive_umeyama(x[b], y[b], None if weights is None else w[b])
            torch.testing.assert_close(s[b], torch.tensor(s_ref, dtype=F64))
            torch.testing.assert_close(R[b], torch.tensor(R_ref))
            torch.testing.assert_close(t[b], torch.tensor(t_ref))
        torch.testing.assert_close(aligned, apply(x, s, R, t))
        torch.testing.assert_close(torch.linalg.det(R), torch.ones(6, dtype=F64))


def test_matches_roma():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 15, 3, generator=g, dtype=F64)
    y = torch.randn(4, 15, 3, generator=g, dtype=F64)
    _, (s, R, t) = similarity_procrustes(x, y)
    R_ref, t_ref, s_ref = roma.rigid_points_registration(x, y, compute_scaling=True)
    torch.testing.assert_close((s, R, t), (s_ref, R_ref, t_ref))
    _, (s1, R1, t1) = similarity_procrustes(x, y, with_scale=False)
    R_ref, t_ref = roma.rigid_points_registration(x, y)
    torch.testing.assert_close((s1, R1, t1), (torch.ones(4, dtype=F64), R_ref, t_ref))


def test_reflection_gives_a_rotation():
    x = torch.randn(2, 12, 3, dtype=F64)
    mirrored = x * x.new_tensor([-1.0, 1.0, 1.0])
    _, (_, R, _) = similarity_procrustes(x, mirrored)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2, dtype=F64))


def test_zero_weight_points_are_ignored():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 10, 3, generator=g, dtype=F64)
    scale, R, t = random_similarity(3, seed=3)
    y = apply(x, scale, R, t)
    y[:, 7:] += 5.0  # outliers
    w = torch.ones(3, 10, dtype=F64)
    w[:, 7:] = 0
    aligned, (s_hat, _, _) = similarity_procrustes(x, y, weights=w)
    torch.testing.assert_close(s_hat, scale)
    torch.testing.assert_close(aligned[:, :7], y[:, :7])


def test_gradcheck():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 6, 3, generator=g, dtype=F64, requires_grad=True)
    y = torch.randn(2, 6, 3, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: similarity_procrustes(a, b)[0], (x, y))
    w = torch.rand(2, 6, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, ww: similarity_procrustes(a, y.detach(), ww)[1][0], (x, w)
    )


def test_shape_errors_are_clear():
    with pytest.raises(
        ValueError,
        match=r"target has shape \(2, 5, 3\), expected \(B, N, 3\) matching source \(2, 4, 3\)",
    ):
        similarity_procrustes(torch.zeros(2, 4, 3), torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match=r"weights has shape \(2, 5\)"):
        similarity_procrustes(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), torch.ones(2, 5))
