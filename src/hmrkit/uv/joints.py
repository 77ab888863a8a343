"""Joints in UV space (DMP's ``J_initial``): texels assigned to the 14 LSP joints and joints read
back from a UV map of joint positions (see :mod:`hmrkit.uv`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .atlas import UVAtlas, _check_tensor
from .symmetry import texel_flip_permutation

NUM_LSP14 = 14


def _lsp14_flip() -> np.ndarray:
    from hmrkit.body.keypoints import get_keypoint_set

    return np.asarray(get_keypoint_set("lsp14").flip_permutation, dtype=np.int64)


def vertex_joint_assignment(rest_vertices, joints, vertex_flip=None, joint_flip=None):
    """(V,) nearest joint of each vertex, left-right symmetric when ``vertex_flip`` is given.

    With a flip, vertex ``v`` takes ``argmin_j (|x_v - J_j| + |x_flip(v) - J_flip(j)|) / 2``,
    so that ``label[flip(v)] == joint_flip[label[v]]`` exactly, ties included, for every vertex
    that is not its own mirror (a vertex on the symmetry plane that is nearest to a left or
    right joint takes one of the two).
    ``joint_flip`` defaults to the LSP-14 mirror permutation.
    """
    x = np.asarray(rest_vertices, dtype=np.float64)
    J = np.asarray(joints, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"rest_vertices has shape {x.shape}, expected (V, 3)")
    if J.ndim != 2 or J.shape[1] != 3:
        raise ValueError(f"joints has shape {J.shape}, expected (K, 3)")
    d = np.linalg.norm(x[:, None] - J[None], axis=2)  # (V, K)
    if vertex_flip is not None:
        flip = np.asarray(vertex_flip, dtype=np.int64)
        if flip.shape != (len(x),):
            raise ValueError(f"vertex_flip has shape {flip.shape}, expected ({len(x)},)")
        jf = _lsp14_flip() if joint_flip is None else np.asarray(joint_flip, dtype=np.int64)
        if jf.shape != (len(J),):
            raise ValueError(f"joint_flip has shape {jf.shape}, expected ({len(J)},)")
        d = 0.5 * (d + d[flip][:, jf])  # row flip(v) is row v permuted by jf, exactly
        # exact ties go to the pair (j, jf(j)) listed first, the same choice on both sides
        key = np.minimum(np.arange(len(J)), jf)
        tied = d <= d.min(1, keepdims=True)
        pair = np.where(tied, key[None], len(J)).min(1, keepdims=True)
        d = np.where(tied & (key[None] == pair), d, np.inf)
    return np.argmin(d, axis=1).astype(np.int64)


def texel_joint_assignment(
    atlas: UVAtlas,
    rest_vertices,
    lsp14_joints,
    vertex_flip=None,
    joint_flip=None,
    symmetrize: bool = True,
) -> np.ndarray:
    """(R, R) LSP-14 joint of each texel, -1 for empty texels (DMP's part assignment A_uv).

    Each vertex takes its nearest of the 14 joints on the rest (T/A) pose, made left-right
    symmetric with ``vertex_flip`` (defaults to ``atlas.vertex_flip``; see
    :func:`vertex_joint_assignment`); a texel takes the label of its largest-barycentric
    vertex.  With ``symmetrize`` and a flip, texel pairs ``(t, s)`` that are each other's
    mirror (:func:`texel_flip_permutation`) are then made to agree,
    ``A[s] = joint_flip[A[t]]`` for ``t < s``.
    """
    V = atlas.num_vertices
    x = np.asarray(rest_vertices, dtype=np.float64)
    if x.shape != (V, 3):
        raise ValueError(f"rest_vertices has shape {x.shape}, expected ({V}, 3)")
    J = np.asarray(lsp14_joints, dtype=np.float64)
    if J.shape != (NUM_LSP14, 3) and joint_flip is None:
        raise ValueError(f"lsp14_joints has shape {J.shape}, expected ({NUM_LSP14}, 3)")
    if vertex_flip is None:
        vertex_flip = atlas.vertex_flip
    jf = _lsp14_flip() if joint_flip is None else np.asarray(joint_flip, dtype=np.int64)
    labels = vertex_joint_assignment(x, J, vertex_flip, jf if vertex_flip is not None else None)
    out = atlas._assignment_to_texels(labels, vertex_flip)
    if symmetrize and vertex_flip is not None:
        perm = texel_flip_permutation(atlas, vertex_flip, strict=True).reshape(-1)
        flat = out.reshape(-1)
        t = np.nonzero((perm >= 0) & (np.arange(len(perm)) < perm))[0]
        flat[perm[t]] = jf[flat[t]]
        out = flat.reshape(out.shape)
    return out


def joints_from_uv(
    uv_map: Tensor, assignment, valid=None, num_joints: int = NUM_LSP14
) -> tuple[Tensor, Tensor]:
    """Joints as the average of the valid texels assigned to each (DMP's ``J_initial``).

    Args:
        uv_map: (B, C, R, R) UV map of joint positions (C = 3 for DMP's joint map).
        assignment: (R, R) joint of each texel (-1: none), numpy or torch.
        valid: optional texel weights, (B, 1, R, R), (B, R, R) or (R, R), bool or float
            (e.g. the occupancy channel of :func:`image_to_uv`); ``None``: all texels.
        num_joints: number of joints K.

    Returns:
        joints (B, K, C), the weighted average (0 for missing joints), and missing (B, K)
        bool: joints without any valid texel.
    """
    m = _check_tensor("uv_map", uv_map, "(B, C, R, R)", 4)
    B, C, R, R2 = m.shape
    if R != R2:
        raise ValueError(f"'uv_map' has shape {tuple(m.shape)}, expected (B, C, R, R)")
    dtype = m.dtype if m.is_floating_point() else torch.float32
    a = torch.as_tensor(np.asarray(assignment) if not isinstance(assignment, Tensor)
                        else assignment, device=m.device).long()
    if tuple(a.shape) != (R, R):
        raise ValueError(f"'assignment' has shape {tuple(a.shape)}, expected ({R}, {R})")
    a = a.reshape(-1)
    if a.numel() and int(a.max()) >= num_joints:
        raise ValueError(f"'assignment' holds joint {int(a.max())}, expected < {num_joints}")
    a = torch.where(a >= 0, a, torch.full_like(a, num_joints))  # -1 -> an extra dropped column
    onehot = torch.nn.functional.one_hot(a, num_joints + 1)[:, :num_joints].to(dtype)  # (T, K)
    if valid is None:
        w = torch.ones(B, R * R, dtype=dtype, device=m.device)
    else:
        w = valid if isinstance(valid, Tensor) else torch.as_tensor(np.asarray(valid))
        w = w.to(device=m.device, dtype=dtype)
        if tuple(w.shape) in ((B, 1, R, R), (B, R, R)):
            w = w.reshape(B, R * R)
        elif tuple(w.shape) == (R, R):
            w = w.reshape(1, R * R).expand(B, R * R)
        else:
            raise ValueError(
                f"'valid' has shape {tuple(w.shape)}, expected ({B}, 1, {R}, {R}), "
                f"({B}, {R}, {R}) or ({R}, {R})"
            )
    weight = w[:, :, None] * onehot[None]  # (B, T, K)
    total = torch.einsum("bct,btk->bkc", m.to(dtype).reshape(B, C, R * R), weight)
    count = weight.sum(1)  # (B, K)
    missing = count <= 0
    joints = total / torch.where(missing, torch.ones_like(count), count)[..., None]
    return joints, missing
