"""Dense maps derived from a :class:`~hmrkit.render.gbuffer.GBuffer` (vectorised numpy).

Everything works on the foreground pixels only (``gbuf.hits``): per-pixel barycentric
interpolation of per-vertex fields (dense-refinement paper, eq. 2), the per-pixel ->
per-vertex weighted average (eq. 5), silhouettes, depth and inverse depth (W-HMR),
normals, visibility, unique vertex colours and textured renders (refinement network
inputs), and IUV / continuous UV maps (DecoMR-style, DMP).  Camera frame x right, y down,
z forward; normals are unit vectors in that frame, outward for counter-clockwise faces.
"""

from __future__ import annotations

import numpy as np

from .gbuffer import GBuffer, _cross

# ---------------------------------------------------------------------------- interpolation


def _interpolate_corners(gbuf: GBuffer, corners: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(N, C) sum_k b_k(p) values[corners[t(p), k]] over the foreground pixels."""
    hits = gbuf.hits
    picked = values[corners[hits.triangle]]  # (N, 3, C)
    return np.einsum("nk,nkc->nc", hits.barycentrics.astype(picked.dtype), picked)


def _scatter(gbuf: GBuffer, values: np.ndarray, fill) -> np.ndarray:
    """(H, W, C) image holding ``values`` (N, C) at the foreground pixels, ``fill`` elsewhere."""
    W, H = gbuf.image_size
    out = np.full((H * W, values.shape[1]), fill, values.dtype)
    out[gbuf.hits.index] = values
    return out.reshape(H, W, -1)


def _as_float(values) -> np.ndarray:
    values = np.asarray(values)
    return values.astype(np.result_type(values.dtype, np.float32), copy=False)


def interpolate(gbuf: GBuffer, faces, vertex_values, fill: float = 0.0) -> np.ndarray:
    """Per-pixel barycentric interpolation of a per-vertex field (refinement paper eq. 2).

    ``x(p) = sum_k b_k(p) x_{v_k(p)}`` over the vertices of the triangle visible at ``p``.
    ``vertex_values`` (V, C) or (V,) gives (H, W, C) or (H, W); background is ``fill``.
    Float32 stays float32, float64 stays float64.
    """
    values = _as_float(vertex_values)
    flat = values.reshape(len(values), -1)
    out = _scatter(gbuf, _interpolate_corners(gbuf, np.asarray(faces), flat), fill)
    return out[..., 0] if values.ndim == 1 else out


def accumulate_to_vertices(
    gbuf: GBuffer,
    faces,
    pixel_values,
    num_vertices: int,
    pixel_mask=None,
    method: str = "average",
    damping: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel values back to the vertices (refinement paper eqs. 5-6).

    ``method="average"`` (eq. 5): ``d_v = sum_p b_v(p) x(p) / sum_p b_v(p)`` over the
    foreground pixels whose visible triangle contains ``v``.  This is a smoothing: it gives
    back constant fields exactly and a linear field ``f`` as ``f(c_v)`` at the
    ``b_v``-weighted centroid ``c_v`` of those pixels' surface points, not ``f(v)``.

    ``method="lstsq"``: the least-squares inverse of eq. 2, ``min_x sum_p |sum_k b_k(p)
    x_{v_k} - x(p)|^2 + damping sum_v w_v |x_v - d_v|^2`` with ``d_v`` the average; it gives
    back any field that was interpolated from vertex values, on vertices seen by enough
    pixels (the tiny damping only settles vertices the pixels do not determine).

    ``pixel_values`` (H, W, C) or (H, W); ``pixel_mask`` (H, W) bool restricts the pixels.
    Returns ``values`` (V, C) (or (V,)) float64, zero where unseen, and ``weight`` (V,)
    ``sum_p b_v(p)``; weight 0 means the vertex is not visible.
    """
    hits = gbuf.hits
    x = np.asarray(pixel_values, np.float64)
    x_flat = x.reshape(x.shape[0] * x.shape[1], -1)[hits.index]
    bary = hits.barycentrics.astype(np.float64)
    if pixel_mask is not None:
        bary = bary * np.asarray(pixel_mask).reshape(-1)[hits.index, None]
    ids = np.asarray(faces)[hits.triangle].reshape(-1)
    w = bary.reshape(-1)
    weight = np.bincount(ids, w, minlength=num_vertices)
    sums = np.stack(
        [np.bincount(ids, w * np.repeat(c, 3), minlength=num_vertices) for c in x_flat.T], 1
    )
    seen = weight > 0
    values = np.zeros_like(sums)
    values[seen] = sums[seen] / weight[seen, None]
    if method == "lstsq":
        values = _least_squares(ids, bary, x_flat, values, weight, seen, damping)
    elif method != "average":
        raise ValueError(f"unknown method '{method}'; use 'average' or 'lstsq'")
    return (values[:, 0] if x.ndim == 2 else values), weight


def _least_squares(ids, bary, x_flat, average, weight, seen, damping) -> np.ndarray:
    """Solve ``(B^T B + damping W) x = B^T X + damping W d`` over the seen vertices."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import factorized

    n_pix, n = len(bary), int(seen.sum())
    if n == 0:
        return average
    col = np.cumsum(seen) - 1  # vertex -> unknown index
    rows = np.repeat(np.arange(n_pix), 3)
    B = sp.csr_matrix((bary.reshape(-1), (rows, col[ids])), shape=(n_pix, n))
    reg = damping * weight[seen]
    solve = factorized((B.T @ B + sp.diags(reg)).tocsc())
    rhs = B.T @ x_flat + reg[:, None] * average[seen]
    out = np.zeros_like(average)
    out[seen] = np.stack([solve(np.ascontiguousarray(r)) for r in rhs.T], 1)
    return out


# ------------------------------------------------------------------------ geometry maps


def silhouette(gbuf: GBuffer) -> np.ndarray:
    """(H, W) bool foreground mask."""
    return gbuf.mask


def depth_map(gbuf: GBuffer, background: float = 0.0) -> np.ndarray:
    """(H, W) float32 camera z in metres, ``background`` where nothing is seen."""
    return np.where(gbuf.mask, gbuf.depth, np.float32(background))


def inverse_depth_map(gbuf: GBuffer) -> np.ndarray:
    """(H, W) float32 ``1 / z``, 0 on background (W-HMR auxiliary target, eq. 12)."""
    out = np.zeros_like(gbuf.depth)
    out.reshape(-1)[gbuf.hits.index] = 1.0 / gbuf.depth.reshape(-1)[gbuf.hits.index]
    return out


def face_normals(vertices, faces) -> np.ndarray:
    """(F, 3) unit normals ``(b - a) x (c - a)``: outward for counter-clockwise faces."""
    v = np.asarray(vertices, np.float64)
    tri = v[np.asarray(faces)]
    n = _cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)


def vertex_normals(vertices, faces) -> np.ndarray:
    """(V, 3) unit area-weighted averages of the adjacent face normals."""
    v = np.asarray(vertices, np.float64)
    faces = np.asarray(faces)
    tri = v[faces]
    n = _cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 x area
    ids = faces.reshape(-1)
    acc = np.stack([np.bincount(ids, np.repeat(c, 3), minlength=len(v)) for c in n.T], 1)
    return acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-30)


def normal_map(gbuf: GBuffer, vertices, faces, smooth: bool = False) -> np.ndarray:
    """(H, W, 3) float32 camera-frame unit normals, zero on background.

    ``smooth=False``: the visible triangle's face normal (flat shading); ``smooth=True``:
    vertex normals interpolated with the barycentrics and renormalised (Phong).
    """
    faces = np.asarray(faces)
    if smooth:
        n = _interpolate_corners(gbuf, faces, vertex_normals(vertices, faces))
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    else:
        n = face_normals(vertices, faces)[gbuf.hits.triangle]
    return _scatter(gbuf, n.astype(np.float32), 0.0)


# --------------------------------------------------------------------------- visibility


def vertex_visibility(gbuf: GBuffer, faces, num_vertices: int) -> np.ndarray:
    """(V,) bool: the vertex belongs to a triangle that is visible at some pixel."""
    visible = np.zeros(num_vertices, bool)
    tris = np.unique(gbuf.hits.triangle)
    visible[np.asarray(faces)[tris].reshape(-1)] = True
    return visible


def vertex_visibility_depth(
    gbuf: GBuffer, vertices, faces, tolerance: float = 0.01
) -> np.ndarray:
    """(V,) bool, stricter: a z-buffer test at the vertex's projection.

    The vertex must project inside the image onto a foreground pixel ``p = floor(K v / z)``
    and lie no more than ``tolerance`` metres behind the surface seen there.  That surface's
    depth is taken along the vertex's own ray, on the plane of the triangle visible at ``p``
    and clamped to that triangle's depth range (exact where the triangle holds the vertex),
    so steep surfaces need no larger tolerance; the raw pixel depth is used when that plane
    is edge-on.
    """
    v = np.asarray(vertices, np.float64)
    W, H = gbuf.image_size
    z = v[:, 2]
    visible = z > 0
    uvw = v[visible] @ gbuf.K.T
    pix = np.floor(uvw[:, :2] / uvw[:, 2:]).astype(np.int64)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < W) & (pix[:, 1] >= 0) & (pix[:, 1] < H)
    pix = np.where(inside[:, None], pix, 0)
    tri = gbuf.triangle_id[pix[:, 1], pix[:, 0]]
    hit = inside & (tri >= 0)
    corners = v[np.asarray(faces)[np.where(hit, tri, 0)]]
    normal = _cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    ray = v[visible] / z[visible, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        plane = np.einsum("ij,ij->i", normal, corners[:, 0]) / np.einsum("ij,ij->i", normal, ray)
    raw = gbuf.depth[pix[:, 1], pix[:, 0]]
    plane = np.clip(plane, corners[:, :, 2].min(1), corners[:, :, 2].max(1))
    surface = np.where(np.isfinite(plane), plane, raw)
    visible[visible] = hit & (z[visible] <= surface + tolerance)
    return visible


# ----------------------------------------------------------------------- appearance maps


def unique_vertex_colors(template_vertices) -> np.ndarray:
    """(V, 3) float32 colour of each vertex = its position on the mean template, min-max
    normalised per axis to [0, 1] (the refinement paper's "unique vertex colour" render)."""
    v = np.asarray(template_vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    return ((v - lo) / np.maximum(hi - lo, 1e-12)).astype(np.float32)


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup (N, C) float64 of ``uv`` (N, 2) in [0, 1], v up (OBJ), edges clamped."""
    Ht, Wt = texture.shape[:2]
    x = np.clip(uv[:, 0] * Wt - 0.5, 0, Wt - 1)
    y = np.clip((1.0 - uv[:, 1]) * Ht - 0.5, 0, Ht - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, Wt - 1), np.minimum(y0 + 1, Ht - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    t = texture.reshape(Ht, Wt, -1).astype(np.float64)
    top = t[y0, x0] * (1 - fx) + t[y0, x1] * fx
    bottom = t[y1, x0] * (1 - fx) + t[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def textured_rgb(
    gbuf: GBuffer,
    vertices,
    faces,
    faces_texcoords,
    texcoords,
    texture: np.ndarray,
    light=(0.0, 0.0, -1.0),
    ambient: float = 0.4,
    diffuse: float = 0.6,
    background=0,
    normals: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W, 3) textured render with Lambert + ambient shading.

    Per pixel: UV interpolated from the per-corner ``texcoords[faces_texcoords]``, bilinear
    texture lookup, times ``ambient + diffuse * max(0, n . l)`` with ``n`` the smooth normal
    and ``l`` the unit direction towards the light in the camera frame (default: from the
    camera).  ``normals``: an (H, W, 3) :func:`normal_map` to reuse instead.  Returns the
    texture's dtype (uint8 is rounded and clipped to 0-255).
    """
    faces = np.asarray(faces)
    uv = _interpolate_corners(
        gbuf, np.asarray(faces_texcoords), np.asarray(texcoords, np.float64)
    )
    color = sample_texture(np.asarray(texture), uv)
    if normals is None:
        n = _interpolate_corners(gbuf, faces, vertex_normals(vertices, faces))
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    else:
        n = np.asarray(normals, np.float64).reshape(-1, 3)[gbuf.hits.index]
    light = np.asarray(light, np.float64)
    shade = ambient + diffuse * np.clip(n @ (light / np.linalg.norm(light)), 0.0, None)
    rgb = color * shade[:, None]
    if np.asarray(texture).dtype == np.uint8:
        rgb = np.clip(np.round(rgb), 0, 255)
    return _scatter(gbuf, rgb.astype(np.asarray(texture).dtype), background)


def part_and_uv(
    gbuf: GBuffer, faces, vertex_parts, vertex_uv, faces_uv=None
) -> tuple[np.ndarray, np.ndarray]:
    """IUV map: (H, W) int32 part index and (H, W, 2) float32 continuous UV.

    The part index follows DensePose: ``1 + vertex_parts[v]`` of the visible triangle's
    vertex with the largest barycentric weight, 0 on background.  UV is interpolated per
    pixel from ``vertex_uv`` (V, 2) (one UV per vertex, DecoMR's continuous UV), or from
    per-corner indices ``faces_uv`` (F, 3) into ``vertex_uv`` where a UV atlas has seams.
    """
    faces = np.asarray(faces)
    hits = gbuf.hits
    corner = np.argmax(hits.barycentrics, axis=1)
    nearest = faces[hits.triangle, corner]
    part = (np.asarray(vertex_parts)[nearest] + 1).astype(np.int32)
    corners = faces if faces_uv is None else np.asarray(faces_uv)
    uv = _interpolate_corners(gbuf, corners, np.asarray(vertex_uv, np.float64))
    return _scatter(gbuf, part[:, None], 0)[..., 0], _scatter(gbuf, uv.astype(np.float32), 0.0)
