"""Continuous UV maps (DecoMR's "boundary-free" UV, DMP / UVI): a texel atlas over a mesh's UVs.

A :class:`UVAtlas` is built once per body model and resolution (and can be cached to ``.npz``).
For every texel of an ``R x R`` UV map it stores the triangle whose UV footprint contains the
texel centre, that triangle's three mesh vertices and the centre's barycentric coordinates:

- :func:`vertex_to_uv`: per-vertex values -> UV map, ``M(t) = sum_k b_k(t) x_{v_k(t)}``;
- :func:`uv_to_vertex`: UV map -> per-vertex values, bilinear sampling at each vertex's
  texture coordinates (restricted to texels of the vertex's mesh neighbourhood by default),
  duplicates across UV seams averaged; or a least-squares fit (coarse meshes);
- :func:`image_to_uv`: image-space features -> UV space through a predicted IUV image (each
  foreground pixel rounded to the texel of its UV, features scatter-averaged);
- :func:`texel_flip_permutation` / :func:`flip_uv`: the left-right mirror in UV space
  (UVI's symmetry loss);
- :func:`texel_joint_assignment` / :func:`joints_from_uv`: texels assigned to the 14 LSP
  joints and joints read back from a UV map of joint positions (DMP's ``J_initial``).

Texel convention (image-like, used everywhere here): ``uv_map[..., i, j]`` is texel row ``i``,
column ``j``; its centre is at ``u = (j + 0.5) / R`` and ``v = 1 - (i + 0.5) / R``, so row 0
is the top of the texture image (``v`` close to 1; texture coordinates have ``v`` up, OBJ
convention) and column 0 is ``u`` close to 0.  In ``torch.nn.functional.grid_sample`` terms,
with ``align_corners=False``, a UV point is the grid point ``x = 2 u - 1``, ``y = 1 - 2 v``.
Internally "texel space" is ``X = u R - 0.5`` (column), ``Y = (1 - v) R - 0.5`` (row), where
texel centres are the integer points.

The atlas arrays are numpy; the functions take and return torch tensors (batch first,
differentiable with respect to the values, any float dtype and device; the index tensors
are cached on the atlas per device and dtype).
"""

from __future__ import annotations

import hashlib
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

NUM_LSP14 = 14

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


# ------------------------------------------------------------------------------ the atlas


@dataclass
class UVAtlas:
    """Texel -> (triangle, vertices, barycentrics) lookup of an ``R x R`` continuous UV map.

    Build with :meth:`build` (mesh arrays) or :meth:`from_body` (a
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
    :func:`texel_joint_assignment`."""
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
                vertex (see :func:`texel_joint_assignment` to compute them).
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

    @classmethod
    def from_body(
        cls,
        data,
        resolution: int,
        dilate: int = 2,
        cache_dir: str | os.PathLike | None = None,
        joint_assignment: bool = True,
    ) -> UVAtlas:
        """Atlas of a :class:`~hmrkit.body.model.BodyModelData` (with its LSP-14 assignment).

        The LSP-14 joints of the rest (zero pose, mean shape) body come from the model's
        ``"lsp14"`` keypoint regressor, or from :func:`hmrkit.body.keypoints.lsp14_regressor`
        for a 24-joint model; ``joint_assignment=False`` skips the assignment.  With
        ``cache_dir``, the atlas is loaded from / saved to a file named after the model,
        resolution, dilation and a hash of the mesh arrays.
        """
        if data.texcoords is None or data.faces_texcoords is None:
            raise NoUVError(_no_uv_message(f"body model '{data.name}'"))
        path = None
        if cache_dir is not None:
            digest = hashlib.sha1()
            for arr in (data.faces, data.texcoords, data.faces_texcoords, data.vertex_flip,
                        data.v_template if joint_assignment else None):
                if arr is not None:
                    digest.update(np.ascontiguousarray(arr).tobytes())
            tag = f"{digest.hexdigest()[:10]}{'j' if joint_assignment else ''}"
            path = Path(cache_dir) / f"uv_atlas_{data.name}_R{int(resolution)}_d{dilate}_{tag}.npz"
            if path.exists():
                return cls.load(path)
        atlas = cls.build(
            data.faces, data.texcoords, data.faces_texcoords, resolution, data.num_vertices,
            vertex_flip=data.vertex_flip, dilate=dilate,
        )
        atlas.meta["body_model"] = data.name
        if joint_assignment:
            joints14 = _rest_lsp14(data)
            if joints14 is not None:
                atlas.lsp14_assignment = texel_joint_assignment(
                    atlas, data.v_template, joints14, data.vertex_flip
                )
        if path is not None:
            atlas.save(path)
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


def _rest_lsp14(data) -> np.ndarray | None:
    """(14, 3) LSP-14 joints of a body model's rest mean shape, or None if unavailable."""
    from hmrkit.body.keypoints import lsp14_regressor

    reg = data.keypoint_regressors.get("lsp14")
    if reg is None:
        if data.num_joints != 24:
            return None
        reg = lsp14_regressor(data.v_template, data.num_joints)
    J = data.num_joints
    return reg[:, :J] @ data.joint_template + reg[:, J:] @ data.v_template


# ------------------------------------------------------------------------------ rasterising


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


# ------------------------------------------------------------------------------ checks


def _check_tensor(name: str, x, expected: str, ndim: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor of shape {expected}, got "
                        f"{type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"'{name}' has shape {tuple(x.shape)}, expected {expected}")
    return x


# ------------------------------------------------------------------------------ vertex <-> UV


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


# ------------------------------------------------------------------------------ image -> UV


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


# ------------------------------------------------------------------------------ symmetry


def _face_lookup(faces: np.ndarray, num_vertices: int):
    """Sorted keys of each face's vertex set and the matching face ids."""
    V = np.int64(num_vertices)
    s = np.sort(faces, 1).astype(np.int64)
    keys = (s[:, 0] * V + s[:, 1]) * V + s[:, 2]
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def _mirror_corner_uv(atlas: UVAtlas, flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 3, 2) UV of the mirror image of each face corner, and (F,) bool: exact (the
    mirrored vertices form a face, so the mirror is an affine map between UV triangles)."""
    faces, V = atlas.faces, atlas.num_vertices
    tuv = atlas.texcoords[atlas.faces_texcoords]  # (F, 3, 2)
    mirrored = flip[faces]  # (F, 3)
    keys, order = _face_lookup(faces, V)
    s = np.sort(mirrored, 1)
    q = (s[:, 0] * np.int64(V) + s[:, 1]) * np.int64(V) + s[:, 2]
    pos = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
    found = keys[pos] == q
    partner = order[pos]
    out = np.zeros_like(tuv)
    # exact: corner i goes to the corner of the partner face holding flip(v_i)
    match = faces[partner][:, None, :] == mirrored[:, :, None]  # (F, 3 mine, 3 theirs)
    corner = np.argmax(match, axis=2)
    exact = found & match.any(2).all(1)
    out[exact] = tuv[partner[exact][:, None], corner[exact]]
    # fallback: the mirrored vertices' own UVs, on seams the one closest to an anchor
    rest = np.nonzero(~exact)[0]
    if len(rest):
        cv, cuv = atlas.corner_vertex, atlas.corner_uv
        first = np.searchsorted(cv, np.arange(V))  # corner_vertex is sorted
        counts = np.bincount(cv, minlength=V)
        m = int(counts.max()) if len(counts) else 1
        options = np.full((V, max(m, 1), 2), np.nan)
        slot = np.arange(len(cv)) - first[cv]
        options[cv, slot] = cuv
        mv = mirrored[rest]  # (n, 3)
        # anchor: a corner whose partner has a single UV position (off the seams), if any
        first_corner = np.argmin(counts[mv], axis=1)
        anchor = options[mv[np.arange(len(rest)), first_corner], 0]  # (n, 2)
        for i in range(3):
            opts = options[mv[:, i]]  # (n, m, 2)
            d = np.linalg.norm(opts - anchor[:, None], axis=2)
            d = np.where(np.isnan(d), np.inf, d)
            out[rest, i] = opts[np.arange(len(rest)), np.argmin(d, 1)]
        bad = np.isnan(out[rest]).any((1, 2))
        out[rest[bad]] = np.nan
    return out, exact


def texel_flip_permutation(
    atlas: UVAtlas, vertex_flip=None, strict: bool = False, return_info: bool = False
):
    """Left-right mirror of the UV map: texel ``t`` -> the texel of the mirrored surface point.

    Interior texels: with triangle ``(v_1, v_2, v_3)`` and barycentrics ``b``, the mirrored
    surface point is ``sum_i b_i flip(v_i)``.  When the partner vertices ``flip(v_i)`` form a
    triangle (the usual case on a symmetric mesh) that point lies in it and its UV is the
    same barycentric mix of the partner triangle's corner UVs (exact).  Otherwise it is the
    mix of the partner vertices' own UVs (for seam vertices, the UV position closest to that
    of the first partner).  Dilated texels (outside every triangle) use the affine map that
    best sends their UV island onto its mirror image (least squares over the island's
    corners), applied to the texel centre: extrapolating a single tiny triangle's map would
    amplify any asymmetry of the layout.  The mirrored UV point goes to the texel containing
    it (the nearest filled texel if that one is empty).

    On an exactly symmetric mesh whose UV layout maps texel centres onto texel centres under
    the mirror (e.g. ``u -> 1 - u``, or islands that are mirrored copies shifted by whole
    texels) this is an exact involution; otherwise it is an involution on most texels (see
    ``return_info``; ``strict`` keeps only those).

    Args:
        atlas: the atlas.
        vertex_flip: (V,) partner of each vertex; defaults to ``atlas.vertex_flip``.
        strict: set -1 wherever ``perm[perm[t]] != t``, leaving an exact involution.
        return_info: also return a dict with ``involution_fraction`` (over filled texels),
            ``interior_involution_fraction`` and ``exact_face_fraction`` (faces whose
            mirror is a face).

    Returns:
        (R * R,) int64 flat target texel of each texel (-1 for empty texels).
    """
    if vertex_flip is None:
        vertex_flip = atlas.vertex_flip
    if vertex_flip is None:
        raise ValueError(
            "texel_flip_permutation needs the mesh's left-right vertex pairs: pass vertex_flip "
            "or build the atlas with vertex_flip="
        )
    flip = np.asarray(vertex_flip, dtype=np.int64)
    V, R = atlas.num_vertices, atlas.resolution
    if flip.shape != (V,):
        raise ValueError(f"vertex_flip has shape {flip.shape}, expected ({V},)")
    mirror_uv, exact = _mirror_corner_uv(atlas, flip)
    filled = np.nonzero(atlas.mask.reshape(-1))[0]
    face = atlas.texel_faces.reshape(-1)[filled]
    stored = atlas.texel_bary.reshape(-1, 3)[filled]
    # interior texels (and any texel of a face without an exact mirror): the texel's own
    # barycentrics on the mirrored corners
    target_uv = np.einsum("nk,nkd->nd", stored, mirror_uv[face])
    # dilated texels: the mirror of the UV island, fitted as one affine map, applied to the
    # texel centre (a single triangle's map extrapolates badly outside it)
    outside = ~atlas.interior.reshape(-1)[filled]
    if outside.any():
        island, maps = _island_mirror_maps(atlas, mirror_uv, exact)
        maps_t = maps[island[face[outside]]]  # (n, 3, 2)
        centre_uv = texel_centers(R).reshape(-1, 2)[filled[outside]]
        mapped = np.einsum("nk,nkd->nd", np.concatenate(
            [centre_uv, np.ones((len(centre_uv), 1))], 1), maps_t)
        usable = ~np.isnan(mapped).any(1)
        rows = np.nonzero(outside)[0][usable]
        target_uv[rows] = mapped[usable]
    ok = ~np.isnan(target_uv).any(1)
    xy = _texel_space(np.nan_to_num(target_uv), R)
    col = np.clip(np.rint(xy[:, 0]), 0, R - 1).astype(np.int64)
    row = np.clip(np.rint(xy[:, 1]), 0, R - 1).astype(np.int64)
    target = row * R + col
    nearest = _nearest_filled(atlas.mask)
    target = nearest[target]
    perm = np.full(R * R, -1, np.int64)
    perm[filled[ok]] = target[ok]
    defined = perm >= 0
    involutive = np.zeros(R * R, bool)
    involutive[defined] = perm[perm[defined]] == np.nonzero(defined)[0]
    if strict:
        perm[~involutive] = -1
    if not return_info:
        return perm
    interior = atlas.interior.reshape(-1)
    info = {
        "involution_fraction": float(involutive[filled].mean()) if len(filled) else 0.0,
        "interior_involution_fraction": float(involutive[interior].mean())
        if interior.any() else 0.0,
        "exact_face_fraction": float(exact.mean()) if len(exact) else 0.0,
        "defined_fraction": float(defined[filled].mean()) if len(filled) else 0.0,
    }
    return perm, info


def uv_islands(faces_texcoords: np.ndarray, num_texcoords: int) -> np.ndarray:
    """(F,) connected component (UV island) of each face: faces sharing a texture
    coordinate index belong to the same island."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    F = len(faces_texcoords)
    rows = np.repeat(np.arange(F), 3)
    cols = F + np.asarray(faces_texcoords, dtype=np.int64).ravel()
    n = F + int(num_texcoords)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, island = np.unique(labels[:F], return_inverse=True)
    return island.astype(np.int64)


def _island_mirror_maps(
    atlas: UVAtlas, mirror_uv: np.ndarray, exact: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(F,) island of each face and (I, 3, 2) least-squares affine map ``[u, v, 1] @ M`` of
    each island onto its mirror image, fitted on the corners of its faces with an exact
    mirror, or on all its corners when it has too few (NaN if still too few)."""
    island = uv_islands(atlas.faces_texcoords, len(atlas.texcoords))
    n = int(island.max()) + 1 if len(island) else 0
    maps = np.full((n, 3, 2), np.nan)
    src = atlas.texcoords[atlas.faces_texcoords].reshape(-1, 2)  # (3F, 2)
    dst = mirror_uv.reshape(-1, 2)
    corner_island = np.repeat(island, 3)
    use = np.repeat(exact, 3)
    finite = ~np.isnan(dst).any(1)
    order = np.argsort(corner_island, kind="stable")
    bounds = np.searchsorted(corner_island[order], np.arange(n + 1))
    for i in range(n):
        everything = order[bounds[i]:bounds[i + 1]]
        for idx in (everything[use[everything]], everything[finite[everything]]):
            A = np.concatenate([src[idx], np.ones((len(idx), 1))], 1)
            if len(idx) >= 3 and np.linalg.matrix_rank(A) == 3:
                maps[i] = np.linalg.lstsq(A, dst[idx], rcond=None)[0]
                break
    return island, maps


def _nearest_filled(mask: np.ndarray) -> np.ndarray:
    """(R*R,) flat index of the nearest filled texel of each texel (itself when filled)."""
    from scipy.ndimage import distance_transform_edt

    R = mask.shape[0]
    if mask.all() or not mask.any():
        return np.arange(R * R)
    _, (ri, ci) = distance_transform_edt(~mask, return_indices=True)
    return (ri * R + ci).reshape(-1).astype(np.int64)


def flip_uv(uv_map: Tensor, permutation) -> Tensor:
    """Mirror a UV map (B, C, R, R) with a texel permutation (R*R,): ``out[t] = map[perm[t]]``,
    0 where ``perm[t] == -1``."""
    m = _check_tensor("uv_map", uv_map, "(B, C, R, R)", 4)
    B, C, R, R2 = m.shape
    perm = torch.as_tensor(np.asarray(permutation), device=m.device).long()
    if R != R2 or perm.shape != (R * R,):
        raise ValueError(
            f"'uv_map' of shape {tuple(m.shape)} and permutation of shape {tuple(perm.shape)}: "
            f"expected (B, C, R, R) and (R*R,)"
        )
    flat = m.reshape(B, C, R * R)
    out = flat[:, :, perm.clamp(min=0)] * (perm >= 0).to(m.dtype)
    return out.reshape(B, C, R, R)


# ------------------------------------------------------------------------------ joints


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


__all__ = [
    "ATLAS_FORMAT",
    "LSTSQ_MAX_VERTICES",
    "NoUVError",
    "UVAtlas",
    "flip_uv",
    "image_to_uv",
    "joints_from_uv",
    "texel_centers",
    "texel_flip_permutation",
    "texel_joint_assignment",
    "uv_islands",
    "uv_to_vertex",
    "vertex_joint_assignment",
    "vertex_to_uv",
]
