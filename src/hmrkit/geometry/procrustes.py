"""Similarity Procrustes alignment (Umeyama 1991), batched and differentiable.

Finds ``s, R, t`` minimising ``sum_i w_i || s R x_i + t - y_i ||^2`` with ``R`` a proper rotation
(det +1, the "reflection fix"). Gradients flow through ``torch.linalg.svd``; they are undefined
when two singular values of the cross-covariance coincide (e.g. planar or degenerate sets).
"""

from __future__ import annotations

import torch

from .cameras import _check

__all__ = ["similarity_procrustes"]


def similarity_procrustes(
    source: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    with_scale: bool = True,
    eps: float = 1e-12,
):
    """Align ``source (B, N, 3)`` to ``target (B, N, 3)``; ``weights (B, N)`` optional, >= 0.

    Returns ``(aligned, (scale (B,), R (B, 3, 3), t (B, 3)))`` with
    ``aligned = scale * source @ R^T + t``. Umeyama's closed form: with centred sets
    ``X0, Y0`` and ``Sigma = Y0^T W X0 / sum w = U S V^T``, ``D = diag(1, 1, sign det(U V^T))``,
    ``R = U D V^T``, ``scale = tr(S D) / var(X0)``, ``t = mean(y) - scale R mean(x)``.
    ``with_scale=False`` gives the rigid (Kabsch) alignment with ``scale = 1``.
    """
    fn = "similarity_procrustes"
    _check(source, (None, None, 3), fn, "source", "(B, N, 3)")
    _check(target, tuple(source.shape), fn, "target", "(B, N, 3)", ("source", source))
    if weights is None:
        w = source.new_ones(source.shape[:2])
    else:
        w = _check(weights, tuple(source.shape[:2]), fn, "weights", "(B, N)", ("source", source))
        w = w.to(source.dtype)
    w = w / w.sum(dim=1, keepdim=True).clamp_min(eps)  # normalised weights, sum 1
    mu_x = (w[..., None] * source).sum(dim=1)
    mu_y = (w[..., None] * target).sum(dim=1)
    x0 = source - mu_x[:, None]
    y0 = target - mu_y[:, None]
    sigma = (y0 * w[..., None]).transpose(1, 2) @ x0  # (B, 3, 3) cross-covariance
    u, svals, vh = torch.linalg.svd(sigma)
    sign = torch.sign(torch.linalg.det(u @ vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], dim=-1)
    rot = (u * d[:, None, :]) @ vh
    if with_scale:
        var_x = (w * (x0 * x0).sum(-1)).sum(dim=1)
        scale = (svals * d).sum(-1) / var_x.clamp_min(eps)
    else:
        scale = torch.ones_like(sign)
    transl = mu_y - scale[:, None] * (rot @ mu_x[..., None])[..., 0]
    aligned = scale[:, None, None] * (source @ rot.transpose(1, 2)) + transl[:, None]
    return aligned, (scale, rot, transl)
