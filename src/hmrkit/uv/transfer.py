"""Values between a mesh, its UV map and the image: per-vertex values -> UV map, UV map -> per
vertex values, image features -> UV space through an IUV image (see :mod:`hmrkit.uv`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .atlas import UVAtlas, _check_tensor, texel_centers


def vertex_to_uv(atlas: UVAtlas, vertex_values: Tensor) -> Tensor:
    """Per-vertex values (B, V, C) -> UV map (B, C, R, R); empty texels are 0.

    ``M(t) = sum_k b_k(t) x_{v_k(t)}`` over the texel's triangle (gather-based, differentiable).
    Dilated texels hold the value at the closest point of their nearest triangle.
    """
    V, R = atlas.num_vertices, atlas.resolution
    x = _check_tensor("vertex_values", vertex_values, f"(B, {V}, C)", 3)
    if x.shape[1] != V:
        raise ValueError(f"'vertex_values' has shape {tuple(x.shape)}, expected (B, {V}, C)")
    if not x.is_floating_point():
        x = x.float()
    t = atlas.tensors(x.device, x.dtype)
    B, _, C = x.shape
    picked = x[:, t["vertices"]].reshape(B, R * R, 3, C)
    out = torch.einsum("btkc,tk->bct", picked, t["bary"])
    return out.reshape(B, C, R, R)


LSTSQ_MAX_VERTICES = 6000
"""Largest mesh for ``uv_to_vertex(mode="lstsq")`` (a dense (V, V) operator)."""


def _lstsq_operator(atlas: UVAtlas, damping: float) -> tuple[np.ndarray, float]:
    """Dense ``K = (A^T A + lam I)^-1`` (V, V) float64 and ``lam``, with ``A`` the
    (filled texels, V) barycentric matrix of :func:`vertex_to_uv`."""
    from scipy import sparse

    key = ("lstsq", float(damping))
    if key not in atlas._torch_cache:
        V = atlas.num_vertices
        filled = atlas.mask.reshape(-1)
        n = int(filled.sum())
        A = sparse.coo_matrix(
            (atlas.texel_bary.reshape(-1, 3)[filled].ravel(),
             (np.repeat(np.arange(n), 3), atlas.texel_vertices.reshape(-1, 3)[filled].ravel())),
            shape=(n, V),
        ).tocsr()
        normal = (A.T @ A).toarray()
        lam = float(damping) * max(float(np.mean(np.diag(normal))), 1e-12)
        atlas._torch_cache[key] = (np.linalg.inv(normal + lam * np.eye(V)), lam)
    return atlas._torch_cache[key]


def uv_to_vertex(
    atlas: UVAtlas, uv_map: Tensor, mode: str = "local", damping: float = 1e-6
) -> Tensor:
    """UV map (B, C, R, R) -> per-vertex values (B, V, C).

    Samples the map at each vertex's texture coordinates and averages a vertex's samples over
    its UV positions (seams).  Vertices in no triangle get 0.  Only filled texels of the atlas
    are read, so whatever a network predicts on background texels never leaks in.

    Modes:

    - ``"bilinear"``: ``grid_sample`` (``align_corners=False``, matching the texel
      convention) of the masked map divided by the sampled mask (normalised interpolation);
      with a dilated atlas every stencil texel is filled and this is plain bilinear sampling.
    - ``"local"`` (default): the same bilinear weights (a gather with precomputed weights),
      restricted to stencil texels whose triangle lies within ``atlas.local_rings`` mesh
      edges of the vertex, renormalised.  Where UV islands or parts (fingers, toes) nearly
      touch in UV, plain bilinear mixes in values of surface far away on the body; this
      does not.  Equal to ``"bilinear"`` wherever all stencil texels are local.
    - ``"nearest"``: the texel containing the vertex's UV (``grid_sample`` nearest).
    - ``"lstsq"``: the per-vertex field whose UV map (:func:`vertex_to_uv`) best fits the
      given map, ``argmin_x |A x - M|^2 + lam |x - x_local|^2`` over the filled texels,
      ``lam = damping * mean(diag(A^T A))`` (``x_local``: the ``"local"`` result, which
      settles vertices no texel sees).  Exact for maps made by :func:`vertex_to_uv`
      wherever the texels determine the vertices (coarse meshes whose UV triangles span
      several texels, e.g. the decimated Anny-24 at 128), and a least-squares fit for
      predicted maps.  Uses a dense (V, V) operator: meshes up to
      :data:`LSTSQ_MAX_VERTICES` vertices.

    Exactness: a vertex whose UV sits on a texel centre reads that texel, whose value is the
    vertex's own, so any field round-trips through :func:`vertex_to_uv`; a field that is
    affine in UV over the texels around a vertex also round-trips; otherwise the result is an
    interpolation of the texel values, with an error of the order of the texel size times the
    field's gradient.
    """
    R, V = atlas.resolution, atlas.num_vertices
    m = _check_tensor("uv_map", uv_map, f"(B, C, {R}, {R})", 4)
    if tuple(m.shape[2:]) != (R, R):
        raise ValueError(f"'uv_map' has shape {tuple(m.shape)}, expected (B, C, {R}, {R})")
    if mode not in ("local", "bilinear", "nearest", "lstsq"):
        raise ValueError(
            f"mode must be 'local', 'bilinear', 'nearest' or 'lstsq', got {mode!r}"
        )
    if mode == "lstsq" and V > LSTSQ_MAX_VERTICES:
        raise ValueError(
            f"mode='lstsq' needs a dense ({V}, {V}) operator; meshes up to "
            f"{LSTSQ_MAX_VERTICES} vertices only (use mode='local')"
        )
    if not m.is_floating_point():
        m = m.float()
    t = atlas.tensors(m.device, m.dtype)
    B, C = m.shape[:2]
    if mode == "lstsq":
        K, lam = _lstsq_operator(atlas, damping)
        key = ("lstsq_t", float(damping), str(m.device), m.dtype)
        if key not in atlas._torch_cache:
            atlas._torch_cache[key] = torch.as_tensor(K, dtype=m.dtype, device=m.device)
        local = uv_to_vertex(atlas, m, "local")
        # A^T M: each texel's value spread back onto its vertices with its barycentrics
        texel_vals = m.reshape(B, C, R * R).transpose(1, 2)  # (B, T, C)
        spread = texel_vals[:, :, None, :] * t["bary"][None, :, :, None]  # (B, T, 3, C)
        rhs = m.new_zeros(B, V, C).index_add(1, t["vertices"], spread.reshape(B, -1, C))
        return atlas._torch_cache[key] @ (rhs + lam * local)
    if mode == "local":
        picked = m.reshape(B, C, R * R)[:, :, t["corner_texels"]].reshape(B, C, -1, 4)
        samples = torch.einsum("bcnk,nk->bcn", picked, t["corner_weights"])
    else:
        F = torch.nn.functional
        grid = t["grid"].expand(B, -1, -1, -1)
        kw = dict(mode=mode, padding_mode="zeros", align_corners=False)
        num = F.grid_sample(m * t["mask"], grid, **kw)[:, :, 0]  # (B, C, N)
        den = F.grid_sample(t["mask"], t["grid"], **kw)[:, :, 0]  # (1, 1, N)
        ok = den > 1e-6
        samples = torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), 0.0)
    out = m.new_zeros(B, V, C)
    out = out.index_add(1, t["corner_vertex"], samples.transpose(1, 2))
    return out * t["inv_count"][None, :, None]


def image_to_uv(
    features: Tensor, iuv: Tensor, resolution: int, uv_channels: str = "texel"
) -> Tensor:
    """Warp image-space features into UV space through an IUV image (DecoMR / DMP).

    Args:
        features: (B, C, H, W) image features.
        iuv: (B, 3, H, W): channel 0 the part index (foreground where > 0.5: an integer
            part index > 0, or a soft mask above one half), channels 1-2 the continuous U, V
            in [0, 1] (v up, as texture coordinates; :func:`hmrkit.render.part_and_uv`).
        resolution: R.
        uv_channels: what the two appended UV channels hold: ``"texel"`` the texel centre
            (u, v) everywhere (a coordinate encoding), ``"mean"`` the mean predicted (u, v) of
            the pixels that landed in the texel (0 where none).

    Returns:
        (B, C + 3, R, R): the features averaged over the foreground pixels whose UV falls in
        each texel (0 where none; differentiable with respect to ``features``), then u, v and
        an occupancy channel (1 where at least one pixel landed).  Each pixel goes to the
        texel containing its UV, ``j = floor(u R)``, ``i = floor((1 - v) R)`` (clamped).
    """
    f = _check_tensor("features", features, "(B, C, H, W)", 4)
    B, C, H, W = f.shape
    g = _check_tensor("iuv", iuv, f"({B}, 3, {H}, {W})", 4)
    if tuple(g.shape) != (B, 3, H, W):
        raise ValueError(f"'iuv' has shape {tuple(g.shape)}, expected ({B}, 3, {H}, {W}) "
                         "(part index, U, V at the features' resolution)")
    if uv_channels not in ("texel", "mean"):
        raise ValueError(f"uv_channels must be 'texel' or 'mean', got {uv_channels!r}")
    R = int(resolution)
    dtype = f.dtype if f.is_floating_point() else torch.float32
    f = f.to(dtype)
    fg = (g[:, 0] > 0.5).reshape(B, H * W)
    u = g[:, 1].reshape(B, H * W).to(dtype)
    v = g[:, 2].reshape(B, H * W).to(dtype)
    col = torch.floor(u * R).long().clamp(0, R - 1)
    row = torch.floor((1 - v) * R).long().clamp(0, R - 1)
    batch = torch.arange(B, device=f.device)[:, None].expand(B, H * W)
    idx = (batch * R * R + row * R + col)[fg]  # (N,)
    src = f.reshape(B, C, H * W).permute(0, 2, 1)[fg]  # (N, C)
    total = f.new_zeros(B * R * R, C).index_add(0, idx, src)
    count = f.new_zeros(B * R * R).index_add(0, idx, torch.ones_like(idx, dtype=dtype))
    occupied = count > 0
    denom = torch.where(occupied, count, torch.ones_like(count))[:, None]
    mean = (total / denom).reshape(B, R, R, C).permute(0, 3, 1, 2)
    if uv_channels == "texel":
        uvc = torch.as_tensor(texel_centers(R), dtype=dtype, device=f.device)
        uvc = uvc.permute(2, 0, 1)[None].expand(B, 2, R, R)
    else:
        uvs = torch.stack([u[fg], v[fg]], 1)
        uvc = f.new_zeros(B * R * R, 2).index_add(0, idx, uvs) / denom
        uvc = uvc.reshape(B, R, R, 2).permute(0, 3, 1, 2)
    occ = occupied.to(dtype).reshape(B, 1, R, R)
    return torch.cat([mean, uvc, occ], dim=1)
