"""The left-right mirror in UV space (UVI's symmetry loss): texel permutations and flipped maps
(see :mod:`hmrkit.uv`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .atlas import UVAtlas, _check_tensor, _texel_space, texel_centers


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
