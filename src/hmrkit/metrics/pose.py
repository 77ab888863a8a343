"""3D joint and vertex errors, per sample, in millimetres (inputs in metres).

Every function takes ``pred`` and ``gt`` of shape ``(B, N, 3)`` in a common frame and returns a
``(B,)`` tensor: the mean Euclidean distance over the N points after the alignment its name
promises. ``valid (B, N)`` (bool, or 0/1 float used as weights) restricts the mean to visible
joints; a sample with no valid point gives NaN (``nanmean`` skips it).

Root alignment (MPJPE, PVE, N-*) needs an explicit choice, since the root index depends on the
keypoint set: ``root=0`` (e.g. SMPL/H36M pelvis), ``root=(2, 3)`` (mean of the listed points, e.g.
the hips of the LSP-14 set), ``root=None`` (no alignment), or root points given as tensors
``pred_root=``, ``gt_root=`` of shape ``(B, 3)`` / ``(B, 1, 3)`` (e.g. each mesh's own pelvis
joint for PVE, as in the SPIN 3DPW protocol).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hmrkit.geometry.procrustes import similarity_procrustes

__all__ = [
    "mpjpe",
    "pa_mpjpe",
    "n_mpjpe",
    "w_mpjpe",
    "pve",
    "pa_pve",
    "n_pve",
    "w_pve",
    "root_align",
]

M_TO_MM = 1000.0


class _Unset:
    def __repr__(self) -> str:
        return "<required>"


_UNSET = _Unset()
RootSpec = int | Sequence[int] | None


def check_pair(fn: str, pred, gt, dim: int = 3, what: str = "(B, N, 3)") -> None:
    """Raise a readable error unless ``pred`` and ``gt`` both have shape ``(B, N, dim)``."""
    for name, x in (("pred", pred), ("gt", gt)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if gt.dim() != 3 or gt.shape[-1] != dim:
        raise ValueError(f"{fn}: gt has shape {tuple(gt.shape)}, expected {what}")
    if pred.shape != gt.shape:
        raise ValueError(
            f"{fn}: pred has shape {tuple(pred.shape)}, expected {what} "
            f"matching gt {tuple(gt.shape)}"
        )


def check_valid(fn: str, valid, like: torch.Tensor, name: str = "valid") -> torch.Tensor | None:
    """``valid`` ``(B, N)`` bool/float -> float weights in ``like``'s dtype (or None)."""
    if valid is None:
        return None
    valid = torch.as_tensor(valid, device=like.device)
    if tuple(valid.shape) != tuple(like.shape[:2]):
        raise ValueError(
            f"{fn}: {name} has shape {tuple(valid.shape)}, expected (B, N) = "
            f"{tuple(like.shape[:2])} matching points {tuple(like.shape)}"
        )
    return valid.to(like.dtype)


def mean_distance(diff: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean (weighted) Euclidean norm over dim 1 of ``(B, N, D)`` differences -> ``(B,)``."""
    dist = torch.linalg.vector_norm(diff, dim=-1)
    if weights is None:
        return dist.mean(dim=1)
    return (dist * weights).sum(dim=1) / weights.sum(dim=1)  # 0/0 -> NaN on purpose


def _root_points(fn: str, x: torch.Tensor, root, name: str) -> torch.Tensor:
    if isinstance(root, bool):
        raise TypeError(f"{fn}: root must be an int, a sequence of ints or None, got a bool")
    idx = [root] if isinstance(root, int) else list(root)
    n = x.shape[1]
    if not idx or any(not isinstance(i, int) or not -n <= i < n for i in idx):
        raise ValueError(f"{fn}: root {root!r} is not a valid index list for {name} with N={n}")
    return x[:, idx].mean(dim=1, keepdim=True)


def _as_root(fn: str, r, like: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(r, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(r).__name__}")
    batch = like.shape[0]
    if r.shape == (batch, 3):
        return r[:, None]
    if r.shape == (batch, 1, 3):
        return r
    raise ValueError(
        f"{fn}: {name} has shape {tuple(r.shape)}, expected (B, 3) or (B, 1, 3), B={batch}"
    )


def root_align(fn, pred, gt, root=_UNSET, pred_root=None, gt_root=None):
    """Subtract the chosen root from ``pred`` and ``gt`` (see module doc); returns both."""
    if pred_root is not None or gt_root is not None:
        if pred_root is None or gt_root is None:
            raise ValueError(f"{fn}: give both pred_root and gt_root, or neither")
        if root is not _UNSET and root is not None:
            raise ValueError(f"{fn}: give either root= or pred_root=/gt_root=, not both")
        return pred - _as_root(fn, pred_root, pred, "pred_root"), gt - _as_root(
            fn, gt_root, gt, "gt_root"
        )
    if root is _UNSET:
        raise TypeError(
            f"{fn}: choose the root alignment: root=<index or indices> (e.g. 0 for the pelvis), "
            "root=None for none, or pred_root=/gt_root= tensors"
        )
    if root is None:
        return pred, gt
    return pred - _root_points(fn, pred, root, "pred"), gt - _root_points(fn, gt, root, "gt")


def _root_aligned(fn, pred, gt, root, pred_root, gt_root, valid, normalise_scale: bool):
    check_pair(fn, pred, gt)
    w = check_valid(fn, valid, gt)
    pred, gt = root_align(fn, pred, gt, root, pred_root, gt_root)
    if normalise_scale:
        ww = torch.ones_like(pred[..., 0]) if w is None else w
        num = (ww * (pred * gt).sum(-1)).sum(dim=1)
        den = (ww * (pred * pred).sum(-1)).sum(dim=1)
        pred = pred * (num / den.clamp_min(torch.finfo(den.dtype).tiny))[:, None, None]
    return mean_distance(pred - gt, w) * M_TO_MM


def mpjpe(pred, gt, root: RootSpec = _UNSET, *, pred_root=None, gt_root=None, valid=None):
    """MPJPE (mm, ``(B,)``): mean joint error after root alignment only (no rotation, no scale).

    ``root`` is required (index, indices averaged, or None); or pass ``pred_root``/``gt_root``.
    """
    return _root_aligned("mpjpe", pred, gt, root, pred_root, gt_root, valid, False)


def pve(pred, gt, root: RootSpec = _UNSET, *, pred_root=None, gt_root=None, valid=None):
    """PVE / MPVPE (mm, ``(B,)``): mean vertex error after subtracting each mesh's own root.

    Usually ``pred_root``/``gt_root`` = each mesh's pelvis joint (SPIN 3DPW protocol); ``root``
    indexes the vertices instead. No rotation or scale alignment.
    """
    return _root_aligned("pve", pred, gt, root, pred_root, gt_root, valid, False)


def n_mpjpe(pred, gt, root: RootSpec = _UNSET, *, pred_root=None, gt_root=None, valid=None):
    """N-MPJPE (mm, ``(B,)``, Rhodin et al. 2018): root alignment, then the optimal scale only,
    ``s = <pred, gt> / <pred, pred>`` per sample (no rotation)."""
    return _root_aligned("n_mpjpe", pred, gt, root, pred_root, gt_root, valid, True)


def n_pve(pred, gt, root: RootSpec = _UNSET, *, pred_root=None, gt_root=None, valid=None):
    """N-PVE (mm, ``(B,)``): :func:`pve` with the optimal per-sample scale after root alignment."""
    return _root_aligned("n_pve", pred, gt, root, pred_root, gt_root, valid, True)


def _procrustes_error(fn, pred, gt, valid):
    check_pair(fn, pred, gt)
    w = check_valid(fn, valid, gt)
    aligned, _ = similarity_procrustes(pred, gt, weights=w)
    return mean_distance(aligned - gt, w) * M_TO_MM


def pa_mpjpe(pred, gt, *, valid=None):
    """PA-MPJPE (mm, ``(B,)``): per-sample similarity Procrustes of pred onto gt (scale,
    rotation with reflection fix, translation; fitted on the valid joints), then MPJPE."""
    return _procrustes_error("pa_mpjpe", pred, gt, valid)


def pa_pve(pred, gt, *, valid=None):
    """PA-PVE (mm, ``(B,)``): per-sample similarity Procrustes on all vertices, then PVE."""
    return _procrustes_error("pa_pve", pred, gt, valid)


def _world_error(fn, pred, gt, valid):
    check_pair(fn, pred, gt)
    return mean_distance(pred - gt, check_valid(fn, valid, gt)) * M_TO_MM


def w_mpjpe(pred, gt, *, valid=None):
    """W-MPJPE (mm, ``(B,)``, SPEC / W-HMR): joints in a common world frame, NO alignment at all.

    Variants that align the first frame of a sequence are left to the caller (apply the
    alignment to ``pred`` first).
    """
    return _world_error("w_mpjpe", pred, gt, valid)


def w_pve(pred, gt, *, valid=None):
    """W-PVE (mm, ``(B,)``, SPEC / W-HMR): vertices in a common world frame, NO alignment."""
    return _world_error("w_pve", pred, gt, valid)
