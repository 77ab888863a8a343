"""The UV atlas: for every texel of an ``R x R`` UV map, the mesh triangle whose UV footprint holds
its centre, that triangle's vertices and the centre's barycentrics (see :mod:`hmrkit.uv`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hmrkit.io import load_npz_with_header, save_npz_with_header

ATLAS_FORMAT = "hmrkit-uv-atlas-1"
"""Format tag written into saved atlases."""


_INSIDE_EPS = 1e-9
"""Barycentric tolerance of the inside test (a texel centre on an edge counts as inside)."""


class NoUVError(ValueError):
    """The mesh has no texture coordinates, so no UV atlas can be built."""


def _no_uv_message(what: str) -> str:
    return (
        f"{what} has no texture coordinates ('texcoords' and 'faces_texcoords' are None): a UV "
        "atlas needs a UV-mapped mesh (for Anny-24 use the full mesh 'anny24-full' if the "
        "decimated one carries no UVs)"
    )


@dataclass
class UVAtlas:
    """Texel -> (triangle, vertices, barycentrics) lookup of an ``R x R`` continuous UV map.

    Build with :meth:`build` (mesh arrays) or :func:`hmrkit.uv.body.atlas_for_body` (a
    :class:`~hmrkit.body.model.BodyModelData`, optionally cached on disk).  Empty texels have
    face -1, vertices 0 and barycentrics 0, so they produce 0 in :func:`vertex_to_uv`.
    """

    resolution: int
    """R, the number of texels along each side."""
    num_vertices: int
    """V, the number of mesh vertices."""
    texel_faces: np.ndarray
    """(R, R) int64 triangle covering each texel centre (nearest triangle for dilated
    texels), -1 for empty texels."""
    texel_vertices: np.ndarray
    """(R, R, 3) int64 mesh vertex ids of that triangle (0 for empty texels)."""
    texel_bary: np.ndarray
    """(R, R, 3) float64 barycentrics of the texel centre (of its closest point on the triangle
    for dilated texels): non-negative, summing to 1 (0 for empty texels)."""
    interior: np.ndarray
    """(R, R) bool: the texel centre lies inside a UV triangle (before any dilation)."""
    faces: np.ndarray
    """(F, 3) int64 mesh triangles."""
    texcoords: np.ndarray
    """(T, 2) float64 texture coordinates in [0, 1], v up."""
    faces_texcoords: np.ndarray
    """(F, 3) int64 indices into ``texcoords`` per triangle corner."""
    corner_vertex: np.ndarray
    """(N,) int64 vertex of each distinct (vertex, UV position) pair; a vertex on a UV seam
    appears once per UV position."""
    corner_uv: np.ndarray
    """(N, 2) float64 UV position of each such pair."""
    corner_texels: np.ndarray
    """(N, 4) int64 flat ids of the 4 texels of each pair's bilinear stencil (clamped)."""
    corner_weights: np.ndarray
    """(N, 4) float64 "local bilinear" weights of those texels (see :func:`uv_to_vertex`):
    bilinear weights restricted to texels whose triangle lies within ``local_rings`` edges of
    the vertex on the mesh, renormalised; rows sum to 1 (0 for a pair with no filled
    stencil texel)."""
    dilate: int = 0
    """Dilation (texels) used at build: empty texels whose centre is within this distance of
    a UV triangle took that nearest triangle's closest point."""
    local_rings: int = 0
    """Mesh neighbourhood (edges) of the local bilinear weights."""
    vertex_flip: np.ndarray | None = None
    """(V,) int64 left-right mirror partner of each vertex, when known."""
    lsp14_assignment: np.ndarray | None = None
    """(R, R) int64 LSP-14 joint of each texel (-1 for empty), see
    :func:`hmrkit.uv.joints.texel_joint_assignment`."""
    meta: dict = field(default_factory=dict)
    """JSON-serialisable notes (build time, overlap counts, source model name, ...)."""
    _torch_cache: dict = field(default_factory=dict, repr=False, compare=False)

    # -------------------------------------------------------------- properties
    @property
    def mask(self) -> np.ndarray:
        """(R, R) bool occupancy: texels that carry a triangle (interior or dilated)."""
        return self.texel_faces >= 0

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def texel_uv(self) -> np.ndarray:
        """(R, R, 2) UV coordinates (u, v) of every texel centre (row 0: v close to 1)."""
        return texel_centers(self.resolution)

    def vertex_uv_counts(self) -> np.ndarray:
        """(V,) number of distinct UV positions of each vertex (0: vertex not in any face)."""
        return np.bincount(self.corner_vertex, minlength=self.num_vertices)

    # -------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        faces,
        texcoords,
        faces_texcoords,
        resolution: int,
        num_vertices: int,
        vertex_flip=None,
        lsp14_assignment=None,
        dilate: int = 2,
        local_rings: int | None = None,
        chunk_size: int = 4_000_000,
    ) -> UVAtlas:
        """Rasterise the mesh's UV triangles into an ``R x R`` atlas (vectorised numpy).

        Args:
            faces: (F, 3) mesh triangles.
            texcoords: (T, 2) texture coordinates in [0, 1], v up; ``None`` raises
                :class:`NoUVError`.
            faces_texcoords: (F, 3) indices into ``texcoords`` per corner (``None`` raises).
            resolution: R.
            num_vertices: V.
            vertex_flip: optional (V,) left-right partner of each vertex (kept on the atlas
                for :func:`texel_flip_permutation`).
            lsp14_assignment: optional LSP-14 labels, per vertex (V,) or per texel (R, R);
                per-vertex labels go to texels through each texel's largest-barycentric
                vertex (see :func:`hmrkit.uv.joints.texel_joint_assignment` to compute them).
            dilate: fill empty texels whose centre is within ``dilate`` texels of a UV
                triangle with the closest point of the nearest such triangle, so that
                bilinear sampling at vertex UVs never reads empty texels (0: no dilation).
            local_rings: neighbourhood of the local bilinear weights of :func:`uv_to_vertex`,
                in mesh edges; ``None``: ``1 + ceil(2 / (R * median UV edge length))`` (the
                stencil reaches about 2 texels), capped at 12.
            chunk_size: maximum (triangle, texel) candidate pairs held at once.

        A texel centre covered by several UV triangles (shared edges, overlapping islands)
        takes the one where it lies deepest (largest smallest barycentric).
        """
        if texcoords is None or faces_texcoords is None:
            raise NoUVError(_no_uv_message("the mesh"))
        start = time.perf_counter()
        R = int(resolution)
        if R < 1:
            raise ValueError(f"resolution must be a positive number of texels, got {resolution}")
        faces = np.asarray(faces, dtype=np.int64)
        texcoords = np.asarray(texcoords, dtype=np.float64)
        faces_texcoords = np.asarray(faces_texcoords, dtype=np.int64)
        V = int(num_vertices)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces has shape {faces.shape}, expected (F, 3)")
        if texcoords.ndim != 2 or texcoords.shape[1] != 2:
            raise ValueError(f"texcoords has shape {texcoords.shape}, expected (T, 2)")
        if faces_texcoords.shape != faces.shape:
            raise ValueError(
                f"faces_texcoords has shape {faces_texcoords.shape}, expected {faces.shape} "
                "(one texture coordinate index per triangle corner)"
            )
        if faces.size and (faces.min() < 0 or faces.max() >= V):
            raise ValueError(f"faces index vertices outside [0, {V})")
        if faces_texcoords.size and (
            faces_texcoords.min() < 0 or faces_texcoords.max() >= len(texcoords)
        ):
            raise ValueError(f"faces_texcoords index outside [0, {len(texcoords)})")
        if vertex_flip is not None:
            vertex_flip = np.asarray(vertex_flip, dtype=np.int64)
            if vertex_flip.shape != (V,):
                raise ValueError(f"vertex_flip has shape {vertex_flip.shape}, expected ({V},)")

        tri = _texel_space(texcoords[faces_texcoords], R)  # (F, 3, 2) as (X, Y)
        texel, face, bary, overlaps = _rasterize_uv(tri, R, max(int(dilate), 0), chunk_size)
        interior_flat = np.zeros(R * R, bool)
        texel_faces = np.full(R * R, -1, np.int64)
        texel_vertices = np.zeros((R * R, 3), np.int64)
        texel_bary = np.zeros((R * R, 3), np.float64)
        texel_faces[texel] = face
        texel_vertices[texel] = faces[face]
        texel_bary[texel] = bary[:, :3]
        interior_flat[texel] = bary[:, 3] == 0.0  # distance to the triangle

        # distinct (vertex, UV position) pairs, for sampling at vertex UVs
        pairs = np.unique(np.stack([faces.ravel(), faces_texcoords.ravel()], 1), axis=0)
        keyed = np.concatenate([pairs[:, :1].astype(np.float64), texcoords[pairs[:, 1]]], 1)
        keyed = np.unique(keyed, axis=0)
        corner_vertex = keyed[:, 0].astype(np.int64)
        corner_uv = keyed[:, 1:]
        if local_rings is None:
            edges = texcoords[faces_texcoords] - texcoords[np.roll(faces_texcoords, 1, 1)]
            length = np.linalg.norm(edges, axis=-1)
            length = float(np.median(length[length > 0])) if np.any(length > 0) else 1.0
            local_rings = int(min(12, 1 + np.ceil(2.0 / (R * length))))
        corner_texels, corner_weights = _local_stencil(
            corner_vertex, corner_uv, faces, V, R, texel_faces, texel_vertices,
            int(local_rings),
        )

        atlas = cls(
            resolution=R,
            num_vertices=V,
            texel_faces=texel_faces.reshape(R, R),
            texel_vertices=texel_vertices.reshape(R, R, 3),
            texel_bary=texel_bary.reshape(R, R, 3),
            interior=interior_flat.reshape(R, R),
            faces=faces,
            texcoords=texcoords,
            faces_texcoords=faces_texcoords,
            corner_vertex=corner_vertex,
            corner_uv=corner_uv,
            corner_texels=corner_texels,
            corner_weights=corner_weights,
            dilate=max(int(dilate), 0),
            local_rings=int(local_rings),
            vertex_flip=vertex_flip,
        )
        if lsp14_assignment is not None:
            atlas.lsp14_assignment = atlas._assignment_to_texels(lsp14_assignment)
        atlas.meta.update(
            build_seconds=time.perf_counter() - start,
            overlapping_texels=int(overlaps),
            interior_texels=int(atlas.interior.sum()),
            filled_texels=int(atlas.mask.sum()),
        )
        return atlas

    def dominant_vertex(self, vertex_flip=None) -> np.ndarray:
        """(R, R) the largest-barycentric vertex of each texel (0 for empty texels).

        Near-ties (within 1e-9) go to the vertex with the smallest ``min(v, flip(v))``, a
        choice that mirrored texels make alike (``vertex_flip`` defaults to the atlas's).
        """
        flip = self.vertex_flip if vertex_flip is None else np.asarray(vertex_flip)
        ids = np.arange(self.num_vertices)
        key = ids if flip is None else np.minimum(ids, flip)
        b = self.texel_bary
        near = b >= b.max(-1, keepdims=True) - 1e-9
        score = np.where(near, key[self.texel_vertices], np.iinfo(np.int64).max)
        corner = np.argmin(score, axis=-1)
        return np.take_along_axis(self.texel_vertices, corner[..., None], -1)[..., 0]

    def _assignment_to_texels(self, labels, vertex_flip=None) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        R, V = self.resolution, self.num_vertices
        if labels.shape == (R, R):
            out = labels.copy()
        elif labels.shape == (V,):
            out = labels[self.dominant_vertex(vertex_flip)]
        else:
            raise ValueError(
                f"lsp14_assignment has shape {labels.shape}, expected ({V},) per vertex or "
                f"({R}, {R}) per texel"
            )
        out[~self.mask] = -1
        return out

    # -------------------------------------------------------------- files
    _ARRAYS = (
        "texel_faces", "texel_vertices", "texel_bary", "interior", "faces", "texcoords",
        "faces_texcoords", "corner_vertex", "corner_uv", "corner_texels", "corner_weights",
        "vertex_flip", "lsp14_assignment",
    )

    def save(self, path: str | os.PathLike) -> None:
        """Write a compressed ``.npz`` atomically (temporary file, then ``os.replace``)."""
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        header = {
            "format": ATLAS_FORMAT,
            "resolution": self.resolution,
            "num_vertices": self.num_vertices,
            "dilate": self.dilate,
            "local_rings": self.local_rings,
            "meta": self.meta,
        }
        save_npz_with_header(path, arrays, header)

    @classmethod
    def load(cls, path: str | os.PathLike) -> UVAtlas:
        """Read a file written by :meth:`save`; errors name the file."""
        path = Path(path)
        arrays, header = load_npz_with_header(path, "hmrkit UV atlas")
        if header.get("format") != ATLAS_FORMAT:
            raise ValueError(
                f"{path}: UV atlas format {header.get('format')!r}, expected {ATLAS_FORMAT!r}"
            )
        missing = [k for k in cls._ARRAYS[:11] if k not in arrays]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}")
        R = int(header["resolution"])
        if arrays["texel_faces"].shape != (R, R):
            raise ValueError(
                f"{path}: 'texel_faces' has shape {arrays['texel_faces'].shape}, "
                f"expected ({R}, {R})"
            )
        return cls(
            resolution=R,
            num_vertices=int(header["num_vertices"]),
            dilate=int(header.get("dilate", 0)),
            local_rings=int(header.get("local_rings", 0)),
            meta=header.get("meta", {}),
            **{k: arrays.get(k) for k in cls._ARRAYS},
        )

    # -------------------------------------------------------------- torch
    def tensors(self, device=None, dtype=torch.float32) -> dict[str, Tensor]:
        """Torch versions of the lookup arrays on ``device`` in ``dtype`` (cached).

        Keys: ``vertices`` (R*R*3,) long, ``bary`` (R*R, 3), ``mask`` (1, 1, R, R) float,
        ``grid`` (1, 1, N, 2) grid_sample coordinates of the (vertex, UV) pairs,
        ``corner_vertex`` (N,) long, ``corner_texels`` (N*4,) long, ``corner_weights``
        (N, 4), ``inv_count`` (V,) 1 / number of UV positions per vertex (0 where none).
        """
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = (str(device), dtype)
        if key not in self._torch_cache:
            R = self.resolution
            counts = self.vertex_uv_counts().astype(np.float64)
            inv = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
            grid = np.stack([2 * self.corner_uv[:, 0] - 1, 1 - 2 * self.corner_uv[:, 1]], -1)
            self._torch_cache[key] = {
                "vertices": torch.as_tensor(self.texel_vertices.reshape(-1), device=device),
                "bary": torch.as_tensor(self.texel_bary.reshape(R * R, 3), dtype=dtype,
                                        device=device),
                "mask": torch.as_tensor(self.mask, dtype=dtype, device=device)[None, None],
                "grid": torch.as_tensor(grid, dtype=dtype, device=device)[None, None],
                "corner_vertex": torch.as_tensor(self.corner_vertex, device=device),
                "corner_texels": torch.as_tensor(self.corner_texels.reshape(-1), device=device),
                "corner_weights": torch.as_tensor(self.corner_weights, dtype=dtype,
                                                  device=device),
                "inv_count": torch.as_tensor(inv, dtype=dtype, device=device),
            }
        return self._torch_cache[key]


def _local_stencil(corner_vertex, corner_uv, faces, V, R, texel_faces, texel_vertices, rings):
    """Bilinear stencil (N, 4) texel ids and local weights (N, 4) of each (vertex, UV) pair.

    Weights are the bilinear ones of ``grid_sample`` (``align_corners=False``) kept only on
    filled texels whose triangle has a vertex within ``rings`` edges of the pair's vertex,
    renormalised; pairs with no such texel keep the bilinear weights of all filled stencil
    texels.
    """
    from scipy import sparse

    N = len(corner_vertex)
    X = corner_uv[:, 0] * R - 0.5
    Y = (1.0 - corner_uv[:, 1]) * R - 0.5
    x0, y0 = np.floor(X).astype(np.int64), np.floor(Y).astype(np.int64)
    fx, fy = X - x0, Y - y0
    texels = np.zeros((N, 4), np.int64)
    weights = np.zeros((N, 4))
    filled = texel_faces >= 0
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        yy, xx = y0 + dy, x0 + dx
        w = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
        inside = (yy >= 0) & (yy < R) & (xx >= 0) & (xx < R)
        t = np.clip(yy, 0, R - 1) * R + np.clip(xx, 0, R - 1)
        texels[:, k] = t
        weights[:, k] = np.where(inside & filled[t], w, 0.0)
    # mesh neighbourhood: (A + I)^rings, A the vertex adjacency
    i = faces.ravel()
    j = np.roll(faces, 1, 1).ravel()
    adj = sparse.coo_matrix(
        (np.ones(2 * len(i), np.float32), (np.r_[i, j], np.r_[j, i])), shape=(V, V)
    ).tocsr() + sparse.identity(V, np.float32, format="csr")
    adj.data[:] = 1.0
    near = adj.copy()
    for _ in range(max(rings, 1) - 1):
        near = near @ adj
        near.data[:] = 1.0
    near = near.tocsr()
    tv = texel_vertices[texels]  # (N, 4, 3)
    local = np.zeros((N, 4), bool)
    for c in range(3):
        hit = near[np.repeat(corner_vertex, 4), tv[:, :, c].ravel()]
        local |= np.asarray(hit).reshape(N, 4) > 0
    kept = np.where(local, weights, 0.0)
    use_local = kept.sum(1) > 0
    weights = np.where(use_local[:, None], kept, weights)
    total = weights.sum(1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    return texels, weights


def texel_centers(resolution: int) -> np.ndarray:
    """(R, R, 2) UV (u, v) of each texel centre: ``u = (j + .5) / R``, ``v = 1 - (i + .5) / R``."""
    R = int(resolution)
    c = (np.arange(R) + 0.5) / R
    u = np.broadcast_to(c[None, :], (R, R))
    v = np.broadcast_to(1.0 - c[:, None], (R, R))
    return np.stack([u, v], -1)


def _texel_space(uv: np.ndarray, R: int) -> np.ndarray:
    """UV (..., 2) -> texel space (X column, Y row) where texel centres are integers."""
    return np.stack([uv[..., 0] * R - 0.5, (1.0 - uv[..., 1]) * R - 0.5], -1)


def _barycentric(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(N, 3) unclamped barycentrics of points p (N, 2) in triangles (a, b, c) (N, 2 each)."""
    e1, e2, d = b - a, c - a, p - a
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    safe = np.where(area == 0, 1.0, area)
    b1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / safe
    b2 = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / safe
    return np.stack([1.0 - b1 - b2, b1, b2], 1)


def _closest_on_triangle(p: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (N,) from p (N, 2) to the edges of tri (N, 3, 2) and the closest point's
    barycentrics (N, 3) (for points outside the triangle)."""
    best_d = np.full(len(p), np.inf)
    best_b = np.zeros((len(p), 3))
    rows = np.arange(len(p))
    for k in range(3):
        a, b = tri[:, k], tri[:, (k + 1) % 3]
        e = b - a
        ee = np.einsum("ni,ni->n", e, e)
        t = np.einsum("ni,ni->n", p - a, e) / np.where(ee == 0, 1.0, ee)
        t = np.clip(t, 0.0, 1.0)
        d = np.linalg.norm(a + t[:, None] * e - p, axis=1)
        better = d < best_d
        best_d = np.where(better, d, best_d)
        bk = np.zeros((len(p), 3))
        bk[rows, k] = 1.0 - t
        bk[rows, (k + 1) % 3] += t
        best_b = np.where(better[:, None], bk, best_b)
    return best_d, best_b


def _candidates(tri: np.ndarray, R: int, pad: int, chunk_size: int):
    """Yield chunks ``(faces, rows, cols, barycentrics)`` of every (triangle, texel centre)
    pair in each non-degenerate triangle's bounding box grown by ``pad`` texels (texel
    space, unclamped barycentrics)."""
    F = len(tri)
    lo = np.clip(np.ceil(tri.min(1) - pad), 0, R - 1).astype(np.int64)  # (F, 2) col, row
    hi = np.clip(np.floor(tri.max(1) + pad), 0, R - 1).astype(np.int64)
    span = tri.max(1) - tri.min(1)
    area2 = (tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1]) - (
        tri[:, 1, 1] - tri[:, 0, 1]
    ) * (tri[:, 2, 0] - tri[:, 0, 0])
    valid = np.all(tri.max(1) + pad >= 0, 1) & np.all(tri.min(1) - pad <= R - 1, 1)
    valid &= np.abs(area2) > 1e-12 * np.maximum(span.max(1), 1.0) ** 2
    w = np.where(valid, hi[:, 0] - lo[:, 0] + 1, 0).clip(min=0)
    h = np.where(valid, hi[:, 1] - lo[:, 1] + 1, 0).clip(min=0)
    count = w * h
    cuts = np.searchsorted(np.cumsum(count), np.arange(1, count.sum() // chunk_size + 1)
                           * chunk_size)
    edges = np.unique(np.concatenate([[0], cuts, [F]]))
    for f0, f1 in zip(edges[:-1], edges[1:], strict=False):
        n = count[f0:f1]
        total = int(n.sum())
        if total == 0:
            continue
        f = np.repeat(np.arange(f0, f1), n)
        k = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
        col = lo[f, 0] + k % w[f]
        row = lo[f, 1] + k // w[f]
        t = tri[f]
        p = np.stack([col, row], 1).astype(np.float64)
        yield f, row, col, _barycentric(p, t[:, 0], t[:, 1], t[:, 2])


def _winners(texel, face, key_dist, key_depth):
    """Index of the winning candidate of each texel: nearest, then deepest, then lowest face
    id (keys rounded so that float noise does not decide exact geometric ties)."""
    order = np.lexsort((face, -np.round(key_depth, 9), np.round(key_dist, 9), texel))
    first = np.ones(len(order), bool)
    first[1:] = texel[order][1:] != texel[order][:-1]
    return order[first], order


def _rasterize_uv(tri: np.ndarray, R: int, dilate: int, chunk_size: int):
    """Rasterise UV triangles (texel space).  Returns the filled flat texel ids (N,), their
    faces (N,), [bary (3), distance to the triangle] (N, 4) and the number of texels strictly
    inside more than one triangle (overlapping UV islands).

    Pass 1: texel centres inside a triangle (the deepest triangle wins).  Pass 2 (dilation):
    the remaining texels within ``dilate`` texels of a triangle take the nearest one's
    closest point; among equally near triangles (a shared corner) the one extrapolating
    least (largest smallest unclamped barycentric) wins.  Both tie-breaks are geometric,
    hence mirror-symmetric on mirror-symmetric layouts.
    """
    texels, faces_out, bary, depths = [], [], [], []
    for f, row, col, b in _candidates(tri, R, 0, chunk_size):
        inside = b.min(1) >= -_INSIDE_EPS
        b = np.clip(b[inside], 0.0, None)
        b /= b.sum(1, keepdims=True)
        texels.append(row[inside] * R + col[inside])
        faces_out.append(f[inside])
        bary.append(b)
        depths.append(b.min(1))
    texel = np.concatenate(texels) if texels else np.zeros(0, np.int64)
    face = np.concatenate(faces_out) if texels else np.zeros(0, np.int64)
    bary = np.concatenate(bary) if texels else np.zeros((0, 3))
    depth = np.concatenate(depths) if texels else np.zeros(0)
    win, order = _winners(texel, face, np.zeros(len(texel)), depth)
    # a texel strictly inside two triangles: overlapping UV islands
    ranked = texel[order]
    second = np.ones(len(order), bool)
    second[:1] = False
    second[1:] = ranked[1:] == ranked[:-1]
    overlaps = len(np.unique(ranked[second & (depth[order] > 1e-6)]))
    out_texel, out_face = texel[win], face[win]
    out_data = np.concatenate([bary[win], np.zeros((len(win), 1))], 1)
    if dilate <= 0:
        return out_texel, out_face, out_data, overlaps

    covered = np.zeros(R * R, bool)
    covered[out_texel] = True
    texels, faces_out, data = [], [], []
    for f, row, col, b in _candidates(tri, R, dilate, chunk_size):
        t = row * R + col
        todo = ~covered[t]
        if not todo.any():
            continue
        f, t, b = f[todo], t[todo], b[todo]
        p = np.stack([t % R, t // R], 1).astype(np.float64)
        dist, cb = _closest_on_triangle(p, tri[f])
        keep = dist <= dilate
        texels.append(t[keep])
        faces_out.append(f[keep])
        data.append(np.concatenate([cb[keep], dist[keep, None], b[keep].min(1)[:, None]], 1))
    if texels:
        texel = np.concatenate(texels)
        face = np.concatenate(faces_out)
        data = np.concatenate(data)
        win, _ = _winners(texel, face, data[:, 3], data[:, 4])
        out_texel = np.concatenate([out_texel, texel[win]])
        out_face = np.concatenate([out_face, face[win]])
        out_data = np.concatenate([out_data, data[win, :4]])
    return out_texel, out_face, out_data, overlaps


def _check_tensor(name: str, x, expected: str, ndim: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor of shape {expected}, got "
                        f"{type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"'{name}' has shape {tuple(x.shape)}, expected {expected}")
    return x
