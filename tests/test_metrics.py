"""Metrics: golden values, naive loop references, invariances, masks, shape errors."""

import math

import numpy as np
import pytest
import roma
import torch

from hmrkit.metrics import (
    epe,
    esv,
    mpjpe,
    n_mpjpe,
    n_pve,
    pa_mpjpe,
    pa_pve,
    pve,
    w_mpjpe,
    w_pve,
)

F64 = torch.float64


def pose_pair(batch=4, n=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.randn(batch, n, 3, generator=g, dtype=F64) * 0.4
    pred = gt + torch.randn(batch, n, 3, generator=g, dtype=F64) * 0.05
    return pred, gt


def naive_mean_dist(a, b):
    return float(np.mean([np.linalg.norm(p - q) for p, q in zip(a, b, strict=True)]))


def naive_umeyama_aligned(x, y):
    mx, my = x.mean(0), y.mean(0)
    U, S, Vt = np.linalg.svd((y - my).T @ (x - mx))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / ((x - mx) ** 2).sum()
    return s * (x - mx) @ R.T + my


def test_identical_inputs_give_zero():
    pred, gt = pose_pair()
    for value in (
        mpjpe(gt, gt, root=0),
        mpjpe(gt, gt, root=None),
        pa_mpjpe(gt, gt),
        n_mpjpe(gt, gt, root=(2, 3)),
        w_mpjpe(gt, gt),
        pve(gt, gt, root=0),
        pa_pve(gt, gt),
        n_pve(gt, gt, root=0),
        w_pve(gt, gt),
    ):
        assert value.shape == (4,)
        torch.testing.assert_close(value, torch.zeros(4, dtype=F64), atol=1e-9, rtol=0)


def test_known_offset_in_millimetres():
    _, gt = pose_pair()
    offset = gt.new_tensor([0.03, 0.0, 0.04])  # 5 cm
    pred = gt + offset
    torch.testing.assert_close(mpjpe(pred, gt, root=None), torch.full((4,), 50.0, dtype=F64))
    torch.testing.assert_close(w_mpjpe(pred, gt), torch.full((4,), 50.0, dtype=F64))
    torch.testing.assert_close(w_pve(pred, gt), torch.full((4,), 50.0, dtype=F64))
    # a global offset disappears under any root alignment
    torch.testing.assert_close(mpjpe(pred, gt, root=0), torch.zeros(4, dtype=F64))
    torch.testing.assert_close(mpjpe(pred, gt, root=[2, 3]), torch.zeros(4, dtype=F64))
    # one joint moved by 14 mm out of 14 joints, root elsewhere: 1 mm
    pred = gt.clone()
    pred[:, 5, 1] += 0.014
    torch.testing.assert_close(mpjpe(pred, gt, root=0), torch.ones(4, dtype=F64))


def test_mpjpe_matches_naive_with_root_lists():
    pred, gt = pose_pair(seed=1)
    for root in (0, (2, 3), [4]):
        idx = [root] if isinstance(root, int) else list(root)
        ref = [
            naive_mean_dist((p - p[idx].mean(0)).numpy(), (q - q[idx].mean(0)).numpy()) * 1000
            for p, q in zip(pred, gt, strict=True)
        ]
        torch.testing.assert_close(mpjpe(pred, gt, root=root), torch.tensor(ref, dtype=F64))


def test_pve_with_root_tensors():
    pred, gt = pose_pair(n=50, seed=2)
    pred_pelvis, gt_pelvis = pred[:, :7].mean(1), gt[:, :7].mean(1)
    got = pve(pred, gt, pred_root=pred_pelvis, gt_root=gt_pelvis[:, None])
    ref = [
        naive_mean_dist((p - pr).numpy(), (q - gr).numpy()) * 1000
        for p, q, pr, gr in zip(pred, gt, pred_pelvis, gt_pelvis, strict=True)
    ]
    torch.testing.assert_close(got, torch.tensor(ref, dtype=F64))
    torch.testing.assert_close(got, pve(pred, gt, root=list(range(7))))


def test_root_must_be_chosen():
    pred, gt = pose_pair()
    with pytest.raises(TypeError, match="mpjpe: choose the root alignment"):
        mpjpe(pred, gt)
    with pytest.raises(TypeError, match="pve: choose the root alignment"):
        pve(pred, gt)
    with pytest.raises(ValueError, match="give both pred_root and gt_root"):
        pve(pred, gt, pred_root=pred[:, 0])
    with pytest.raises(ValueError, match="not a valid index"):
        mpjpe(pred, gt, root=14)
    with pytest.raises(ValueError, match=r"pred_root has shape \(4, 2\)"):
        pve(pred, gt, pred_root=pred[:, 0, :2], gt_root=gt[:, 0])


def test_pa_mpjpe_matches_naive_and_is_similarity_invariant():
    pred, gt = pose_pair(seed=3)
    got = pa_mpjpe(pred, gt)
    ref = [
        naive_mean_dist(naive_umeyama_aligned(p.numpy(), q.numpy()), q.numpy()) * 1000
        for p, q in zip(pred, gt, strict=True)
    ]
    torch.testing.assert_close(got, torch.tensor(ref, dtype=F64))
    R = roma.random_rotmat(4, dtype=F64)
    moved = 1.7 * pred @ R.transpose(1, 2) + torch.randn(4, 1, 3, dtype=F64)
    torch.testing.assert_close(pa_mpjpe(moved, gt), got)
    torch.testing.assert_close(pa_pve(moved, gt), got)
    assert (got <= mpjpe(pred, gt, root=0) + 1e-9).all()
    assert (pa_mpjpe(0.5 * gt @ R.transpose(1, 2) + 3.0, gt) < 1e-9).all()


def test_n_mpjpe_optimal_scale():
    pred, gt = pose_pair(seed=4)
    torch.testing.assert_close(n_mpjpe(2.5 * gt + 1.0, gt, root=0), torch.zeros(4, dtype=F64))
    got = n_mpjpe(pred, gt, root=0)
    ref = []
    for p, q in zip(pred.numpy(), gt.numpy(), strict=True):
        p, q = p - p[0], q - q[0]
        s = (p * q).sum() / (p * p).sum()
        ref.append(naive_mean_dist(s * p, q) * 1000)
    torch.testing.assert_close(got, torch.tensor(ref, dtype=F64))
    # scale only: rotating pred changes N-MPJPE (unlike PA-MPJPE)
    R = roma.random_rotmat(4, dtype=F64)
    assert (n_mpjpe(pred @ R.transpose(1, 2), gt, root=0) > got + 1.0).all()


def test_valid_mask():
    pred, gt = pose_pair(seed=5)
    valid = torch.ones(4, 14, dtype=torch.bool)
    valid[:, 10:] = False
    spoiled = pred.clone()
    spoiled[:, 10:] += 10.0
    for fn, kw in ((mpjpe, {"root": 0}), (n_mpjpe, {"root": 0}), (w_mpjpe, {}), (pa_mpjpe, {})):
        torch.testing.assert_close(
            fn(spoiled, gt, valid=valid, **kw), fn(pred[:, :10], gt[:, :10], **kw)
        )
    valid[1] = False
    values = mpjpe(pred, gt, root=0, valid=valid.float())
    assert math.isnan(values[1]) and not torch.isnan(values[[0, 2, 3]]).any()
    assert float(values.nanmean()) == pytest.approx(float(values[[0, 2, 3]].mean()))
    with pytest.raises(
        ValueError, match=r"valid has shape \(4, 13\), expected \(B, N\) = \(4, 14\)"
    ):
        mpjpe(pred, gt, root=0, valid=valid[:, :13])


def test_esv():
    betas = torch.zeros(2, 12, 10, dtype=F64)
    betas[1, ::2] = 2.0  # alternating 0 / 2 across views: std 1 per coefficient
    torch.testing.assert_close(esv(betas), torch.tensor([0.0, 1.0], dtype=F64))
    g = torch.Generator().manual_seed(6)
    b = torch.randn(3, 8, 10, generator=g, dtype=F64)
    ref = [np.std(x.numpy(), axis=0).mean() for x in b]
    torch.testing.assert_close(esv(b), torch.tensor(ref, dtype=F64))
    ref1 = [np.std(x.numpy(), axis=0, ddof=1).mean() for x in b]
    torch.testing.assert_close(esv(b, correction=1), torch.tensor(ref1, dtype=F64))
    with pytest.raises(
        ValueError, match=r"esv: betas_over_views has shape \(8, 10\), expected \(B, V_views, K\)"
    ):
        esv(b[0])


def test_epe():
    gt = torch.zeros(2, 3, 2)
    pred = gt + torch.tensor([3.0, 4.0])
    torch.testing.assert_close(epe(pred, gt), torch.tensor([5.0, 5.0]))
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    pred[:, 2] = 100.0
    out = epe(pred, gt, mask)
    assert out[0] == pytest.approx(5.0) and math.isnan(out[1])
    with pytest.raises(
        ValueError,
        match=r"epe: pred has shape \(2, 3, 3\), expected \(B, N, 2\) matching gt \(2, 3, 2\)",
    ):
        epe(torch.zeros(2, 3, 3), gt)


def test_shape_error_message():
    msg = r"mpjpe: pred has shape \(2, 14, 2\), expected \(B, N, 3\) matching gt \(2, 14, 3\)"
    with pytest.raises(ValueError, match=msg):
        mpjpe(torch.zeros(2, 14, 2), torch.zeros(2, 14, 3), root=0)
    with pytest.raises(ValueError, match=r"pa_mpjpe: gt has shape \(14, 3\), expected \(B, N, 3\)"):
        pa_mpjpe(torch.zeros(14, 3), torch.zeros(14, 3))
