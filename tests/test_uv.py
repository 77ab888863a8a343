"""Continuous UV atlas (hmrkit.uv): rasterisation, vertex <-> UV round trips, the
image -> UV warp, the left-right texel permutation and the LSP-14 texel assignment.

What is exact and what has a tolerance:

- exact (<= 1e-10 in float64): round trips of *any* per-vertex values on a mesh whose
  vertices sit on texel centres; of fields that are affine in UV (positions of a flat,
  planar-UV mesh; height on a cylinder, across its UV seam) wherever a vertex's bilinear
  stencil is covered; the flip permutation and joint assignment on symmetric meshes;
  joints read back from a UV map of joint positions;
- tolerance: on Anny-24 (curved surface, vertices anywhere in texels) positions come back
  with the bilinear interpolation error of the UV map, a few millimetres.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hmrkit.body.keypoints import SMPL24_NAMES, SMPL24_PARENTS, get_keypoint_set
from hmrkit.body.model import BodyModelData
from hmrkit.uv import (
    NoUVError,
    UVAtlas,
    atlas_for_body,
    flip_uv,
    image_to_uv,
    joints_from_uv,
    texel_centers,
    texel_flip_permutation,
    texel_joint_assignment,
    uv_islands,
    uv_to_vertex,
    vertex_joint_assignment,
    vertex_to_uv,
)

LSP_FLIP = np.asarray(get_keypoint_set("lsp14").flip_permutation)
DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "hmrkit" / "body" / "data"


# ----------------------------------------------------------------------------- meshes


def _quads(nx: int, ny: int, columns: np.ndarray, mirror_column: int) -> np.ndarray:
    """Triangles of an (nx x ny)-quad grid of vertices ``columns[j, i]`` with diagonals
    mirrored on either side of quad column ``mirror_column`` (a mirror-symmetric
    triangulation)."""
    faces = []
    for j in range(ny):
        for i in range(nx):
            a, b = columns[j, i], columns[j, i + 1]
            c, d = columns[j + 1, i], columns[j + 1, i + 1]
            if i < mirror_column:
                faces += [(a, c, d), (a, d, b)]
            else:
                faces += [(a, c, b), (b, c, d)]
    return np.asarray(faces, np.int64)


def plane_mesh(n: int = 30, step: int = 4, offset: int = 3, R: int = 128):
    """Flat (n+1)^2-vertex grid in z = 0 whose vertices sit on texel centres at resolution R.

    Vertex (row r, column k): x = (k - n/2) 0.05, y = (n/2 - r) 0.05, UV on the centre of
    texel (offset + step r, offset + step k).  Left-right symmetric (x -> -x) in geometry,
    triangulation and UV layout (a mirror that maps texel centres to texel centres).
    """
    k, r = np.meshgrid(np.arange(n + 1), np.arange(n + 1))
    verts = np.stack([(k - n / 2) * 0.05, (n / 2 - r) * 0.05, np.zeros_like(k, float)], -1)
    uv = np.stack([(offset + step * k + 0.5) / R, 1 - (offset + step * r + 0.5) / R], -1)
    ids = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    faces = _quads(n, n, ids, n // 2)
    flip = (r * (n + 1) + (n - k)).ravel()
    return verts.reshape(-1, 3), faces, uv.reshape(-1, 2), faces.copy(), flip


def cylinder_mesh(n_theta: int = 24, n_rows: int = 16):
    """Open tube around the y axis with a cylindrical UV map whose seam runs down the back.

    ``u = (theta + pi) / 2 pi`` with ``theta = atan2(x, z)`` (0 at the front, +z), so the
    seam (u = 0 | 1) lies on the symmetry plane x = 0 and the mirror x -> -x is
    ``u -> 1 - u``.  Rows sit on texel-centre rows at resolution 64
    (v = 1 - (3 r + 4.5) / 64).
    """
    theta = -np.pi + 2 * np.pi * np.arange(n_theta) / n_theta
    rows = np.arange(n_rows + 1)
    y = 0.8 - 0.1 * rows
    verts = np.stack(
        [
            np.sin(theta)[None].repeat(len(rows), 0) * 0.3,
            y[:, None].repeat(n_theta, 1),
            np.cos(theta)[None].repeat(len(rows), 0) * 0.3,
        ],
        -1,
    ).reshape(-1, 3)
    ids = np.arange(len(rows) * n_theta).reshape(len(rows), n_theta)
    ids_wrapped = np.concatenate([ids, ids[:, :1]], 1)  # column n_theta = column 0 in 3D
    faces = _quads(n_theta, n_rows, ids_wrapped, n_theta // 2)
    tid = np.arange(len(rows) * (n_theta + 1)).reshape(len(rows), n_theta + 1)
    faces_uv = _quads(n_theta, n_rows, tid, n_theta // 2)
    cu, rr = np.meshgrid(np.arange(n_theta + 1) / n_theta, rows)
    uv = np.stack([cu, 1 - (3 * rr + 4.5) / 64], -1).reshape(-1, 2)
    kk, rv = np.meshgrid(np.arange(n_theta), rows)
    flip = (rv * n_theta + (n_theta - kk) % n_theta).ravel()
    return verts, faces, uv, faces_uv, flip


def symmetric_joints() -> np.ndarray:
    """(14, 3) LSP-14 joints, mirror-symmetric in x (left at +x), spread over the plane."""
    names = get_keypoint_set("lsp14").names
    height = {"ankle": -0.6, "knee": -0.3, "hip": -0.05, "wrist": 0.1, "elbow": 0.3,
              "shoulder": 0.5, "neck": 0.6, "top": 0.75}
    out = np.zeros((14, 3))
    for i, name in enumerate(names):
        part = name.split("_")[-1]
        side = 1.0 if name.startswith("left") else -1.0 if name.startswith("right") else 0.0
        spread = {"wrist": 0.7, "elbow": 0.5, "shoulder": 0.25}.get(part, 0.15)
        out[i] = (side * spread, height[part], 0.0)
    return out


def plane_atlas(R: int = 128, dilate: int = 2, **kw) -> tuple[UVAtlas, np.ndarray]:
    verts, faces, uv, fuv, flip = plane_mesh(R=128)
    return UVAtlas.build(faces, uv, fuv, R, len(verts), vertex_flip=flip, dilate=dilate,
                         **kw), verts


def cylinder_atlas(R: int = 64, dilate: int = 2) -> tuple[UVAtlas, np.ndarray]:
    verts, faces, uv, fuv, flip = cylinder_mesh()
    return UVAtlas.build(faces, uv, fuv, R, len(verts), vertex_flip=flip, dilate=dilate), verts


def naive_rasterize(faces_uv_xy: np.ndarray, R: int) -> tuple[np.ndarray, np.ndarray]:
    """Slow reference: every texel centre against every triangle (texel space), the deepest
    containing triangle wins.  Returns (R, R) face ids (-1) and the depth of the winner."""
    out = np.full((R, R), -1)
    best = np.full((R, R), -np.inf)
    for f, tri in enumerate(faces_uv_xy):
        a, b, c = tri
        det = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if abs(det) < 1e-12:
            continue
        for i in range(R):
            for j in range(R):
                p = np.array([j, i], float)
                l1 = ((p[0] - a[0]) * (c[1] - a[1]) - (p[1] - a[1]) * (c[0] - a[0])) / det
                l2 = ((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])) / det
                depth = min(1 - l1 - l2, l1, l2)
                if depth >= -1e-9 and depth > best[i, j]:
                    best[i, j], out[i, j] = depth, f
    return out, best


# ----------------------------------------------------------------------------- atlas


def test_texel_convention_row0_is_v_up():
    R = 8
    c = texel_centers(R)
    assert np.allclose(c[0, 0], [0.5 / R, 1 - 0.5 / R])
    assert np.allclose(c[R - 1, R - 1], [1 - 0.5 / R, 0.5 / R])
    # one small triangle near (u, v) = (0, 1): the top-left texel is filled, not the bottom
    uv = np.array([[0.0, 1.0], [0.3, 1.0], [0.0, 0.7]])
    atlas = UVAtlas.build(np.array([[0, 1, 2]]), uv, np.array([[0, 1, 2]]), R, 3, dilate=0)
    assert atlas.interior[0, 0] and not atlas.interior[R - 1, 0]
    rows, cols = np.nonzero(atlas.interior)
    assert rows.max() < R // 2 and cols.max() < R // 2
    # grid_sample agrees: a hot texel (i, j) is read at its centre's UV
    hot = torch.zeros(1, 1, R, R, dtype=torch.float64)
    hot[0, 0, 0, 1] = 1.0
    atlas.corner_uv = c[0, 1][None]
    atlas.corner_vertex = np.array([0])
    atlas._torch_cache.clear()
    for mode in ("bilinear", "nearest"):
        assert uv_to_vertex(atlas, hot, mode=mode)[0, 0, 0] == 1.0


def test_rasterizer_matches_naive_reference():
    rng = np.random.default_rng(0)
    R, F = 12, 14
    uv = rng.random((3 * F, 2))
    uv[:, 0] = np.clip(uv[:, 0], 0, 1)
    fuv = np.arange(3 * F).reshape(F, 3)
    faces = rng.integers(0, 20, size=(F, 3))
    atlas = UVAtlas.build(faces, uv, fuv, R, 20, dilate=0)
    xy = np.stack([uv[..., 0] * R - 0.5, (1 - uv[..., 1]) * R - 0.5], -1)[fuv]
    ref, depth = naive_rasterize(xy, R)
    assert np.array_equal(atlas.interior, ref >= 0)
    assert np.array_equal(atlas.texel_faces >= 0, ref >= 0)
    clear = depth > 1e-6  # no tie between overlapping triangles
    assert np.array_equal(atlas.texel_faces[clear], ref[clear])
    assert atlas.meta["overlapping_texels"] > 0  # random triangles overlap


@pytest.mark.parametrize("maker", [plane_atlas, cylinder_atlas])
@pytest.mark.parametrize("dilate", [0, 2])
def test_barycentrics_valid_and_reconstruct_texel_centres(maker, dilate):
    atlas, _ = maker(dilate=dilate)
    R = atlas.resolution
    b, m = atlas.texel_bary, atlas.mask
    assert b.min() >= 0 and np.allclose(b[m].sum(-1), 1, atol=1e-12)
    assert np.all(b[~m] == 0) and np.all(atlas.texel_vertices[~m] == 0)
    assert np.array_equal(atlas.texel_vertices[m], atlas.faces[atlas.texel_faces[m]])
    assert np.all(m[atlas.interior])
    assert dilate > 0 or np.array_equal(m, atlas.interior)
    corners = atlas.texcoords[atlas.faces_texcoords[atlas.texel_faces[m]]]  # (n, 3, 2)
    point = np.einsum("nk,nkd->nd", b[m], corners)
    dist = np.linalg.norm(point - atlas.texel_uv()[m], axis=-1) * R
    assert dist[atlas.interior[m]].max() < 1e-9  # interior: the texel centre itself
    assert dist.max() <= dilate + 1e-9  # dilated: the closest point, within `dilate` texels


def test_uv_islands():
    atlas, _ = cylinder_atlas(R=16)
    assert np.all(uv_islands(atlas.faces_texcoords, len(atlas.texcoords)) == 0)
    fuv = np.array([[0, 1, 2], [1, 2, 3], [4, 5, 6]])
    assert uv_islands(fuv, 7).tolist() == [0, 0, 1]


def test_dilation_covers_all_bilinear_stencils():
    for maker in (plane_atlas, cylinder_atlas):
        atlas, _ = maker(dilate=2)
        w, t = atlas.corner_weights, atlas.corner_texels
        assert np.allclose(w.sum(1), 1)
        assert atlas.mask.reshape(-1)[t[w > 0]].all()


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("mode", ["local", "bilinear", "nearest"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_roundtrip_random_values_exact_on_texel_centre_vertices(mode, dtype):
    atlas, verts = plane_atlas(R=128)
    # every vertex in its own texel
    assert len(np.unique(atlas.corner_texels[:, 0])) == len(verts)
    x = torch.randn(2, len(verts), 5, dtype=dtype, generator=torch.Generator().manual_seed(0))
    uv = vertex_to_uv(atlas, x)
    assert uv.shape == (2, 5, 128, 128) and uv.dtype == dtype
    back = uv_to_vertex(atlas, uv, mode=mode)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert (back - x).abs().max() < tol


def test_roundtrip_linear_field_plane():
    # exact at R = 128 (vertices on texel centres) ...
    atlas, verts = plane_atlas(R=128)
    x = torch.tensor(verts[None])
    assert (uv_to_vertex(atlas, vertex_to_uv(atlas, x)) - x).abs().max() < 1e-10
    # ... and at R = 64 (vertices between texel centres) wherever the bilinear stencil lies
    # inside the mesh's UV footprint: positions are affine in UV on a flat planar-UV mesh
    atlas, verts = plane_atlas(R=64)
    x = torch.tensor(verts[None])
    for mode in ("local", "bilinear"):
        err = (uv_to_vertex(atlas, vertex_to_uv(atlas, x), mode=mode) - x).norm(dim=-1)[0]
        inner = atlas.interior.reshape(-1)[atlas.corner_texels].all(1)
        inner_v = np.zeros(len(verts), bool)
        inner_v[atlas.corner_vertex[inner]] = True
        assert inner_v.mean() > 0.8
        assert err[torch.from_numpy(inner_v)].max() < 1e-10
        # border vertices read dilated texels (closest-point values): within a texel's size
        assert err.max() < 0.05 * 0.5


def test_roundtrip_across_uv_seam_cylinder():
    atlas, verts = cylinder_atlas(R=64)
    counts = atlas.vertex_uv_counts()
    assert counts.max() == 2 and (counts == 2).sum() == 17  # the seam column
    # height is affine in v, continuous across the seam: exact
    h = torch.tensor(verts[None, :, 1:2])
    for mode in ("local", "bilinear"):
        assert (uv_to_vertex(atlas, vertex_to_uv(atlas, h), mode=mode) - h).abs().max() < 1e-10
    # positions are not affine in UV on a cylinder: a small interpolation error
    x = torch.tensor(verts[None])
    err = (uv_to_vertex(atlas, vertex_to_uv(atlas, x)) - x).norm(dim=-1)
    assert err.max() < 0.01


def test_vertex_to_uv_is_linear_and_differentiable():
    atlas, verts = cylinder_atlas(R=16)
    x = torch.randn(1, len(verts), 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: vertex_to_uv(atlas, v), (x,), fast_mode=True)
    m = torch.randn(1, 2, 16, 16, dtype=torch.float64, requires_grad=True)
    for mode in ("local", "bilinear"):
        assert torch.autograd.gradcheck(
            lambda t, mode=mode: uv_to_vertex(atlas, t, mode), (m,), fast_mode=True
        )
    # background texels are 0 and never read back
    uv = vertex_to_uv(atlas, x.detach())
    assert torch.all(uv[:, :, ~torch.from_numpy(atlas.mask)] == 0)
    noisy = uv + 100 * torch.from_numpy(~atlas.mask).to(uv.dtype)
    for mode in ("local", "bilinear", "nearest"):
        assert torch.allclose(uv_to_vertex(atlas, noisy, mode), uv_to_vertex(atlas, uv, mode))


def test_lstsq_readback_exact_where_texels_determine_vertices():
    # vertices between texel centres: sampling interpolates, the least-squares fit does not
    atlas, verts = plane_atlas(R=64)
    x = torch.randn(2, len(verts), 3, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(3))
    uv = vertex_to_uv(atlas, x)
    assert (uv_to_vertex(atlas, uv, "local") - x).abs().max() > 0.1
    # exact up to the damping toward the sampled values (1e-6 by default)
    assert (uv_to_vertex(atlas, uv, "lstsq") - x).abs().max() < 1e-5
    assert (uv_to_vertex(atlas, uv, "lstsq", damping=1e-12) - x).abs().max() < 1e-9
    y = uv_to_vertex(atlas, uv.float(), "lstsq")
    assert y.dtype == torch.float32 and (y - x).abs().max() < 1e-3
    m = uv.clone().requires_grad_()
    uv_to_vertex(atlas, m, "lstsq").sum().backward()
    assert torch.all(m.grad[:, :, ~torch.from_numpy(atlas.mask)] == 0)


def test_local_equals_bilinear_where_stencil_is_local():
    atlas, verts = cylinder_atlas(R=64)
    m = torch.randn(3, 4, 64, 64, dtype=torch.float64)
    a = uv_to_vertex(atlas, m, "local")
    b = uv_to_vertex(atlas, m, "bilinear")
    assert torch.allclose(a, b, atol=1e-12)


# ----------------------------------------------------------------------------- image -> UV


def test_image_to_uv_scatter_average_hand_made():
    R = 4
    feats = torch.arange(2 * 3 * 3, dtype=torch.float64).reshape(1, 2, 3, 3).requires_grad_()
    iuv = torch.zeros(1, 3, 3, 3, dtype=torch.float64)

    def put(i, j, part, u, v):
        iuv[0, :, i, j] = torch.tensor([part, u, v], dtype=torch.float64)

    put(0, 0, 1, 0.10, 0.90)  # texel (row 0, col 0)
    put(0, 1, 3, 0.20, 0.80)  # texel (0, 0) too
    put(1, 1, 2, 0.60, 0.30)  # texel (row floor(0.7*4)=2, col 2)
    put(2, 2, 0, 0.60, 0.30)  # background: ignored
    put(2, 0, 1, 1.00, 0.00)  # u = 1, v = 0: clamped into texel (3, 3)
    out = image_to_uv(feats, iuv, R)
    assert out.shape == (1, 5, R, R)
    f = feats.detach()[0]
    expect = torch.zeros(2, R, R, dtype=torch.float64)
    expect[:, 0, 0] = (f[:, 0, 0] + f[:, 0, 1]) / 2
    expect[:, 2, 2] = f[:, 1, 1]
    expect[:, 3, 3] = f[:, 2, 0]
    assert torch.equal(out[0, :2], expect)
    occ = torch.zeros(R, R, dtype=torch.float64)
    occ[0, 0] = occ[2, 2] = occ[3, 3] = 1
    assert torch.equal(out[0, 4], occ)
    assert torch.allclose(out[0, 2:4].permute(1, 2, 0), torch.from_numpy(texel_centers(R)))
    mean = image_to_uv(feats, iuv, R, uv_channels="mean")
    assert torch.allclose(mean[0, 2:4, 0, 0], torch.tensor([0.15, 0.85], dtype=torch.float64))
    assert mean[0, 2:4, 1, 1].abs().sum() == 0
    out[0, :2].sum().backward()
    grad = feats.grad[0, 0]
    assert torch.allclose(grad, torch.tensor([[0.5, 0.5, 0], [0, 1, 0], [1, 0, 0]],
                                             dtype=torch.float64))


def test_image_to_uv_matches_rendered_iuv_on_atlas():
    # an "image" that is the UV map itself (every texel centre seen once): identity warp
    R = 16
    c = torch.from_numpy(texel_centers(R)).permute(2, 0, 1)[None]
    iuv = torch.cat([torch.ones(1, 1, R, R, dtype=c.dtype), c], 1)
    feats = torch.randn(1, 3, R, R, dtype=c.dtype)
    out = image_to_uv(feats, iuv, R)
    assert torch.equal(out[:, :3], feats) and torch.all(out[:, 5] == 1)


# ----------------------------------------------------------------------------- symmetry


@pytest.mark.parametrize("maker", [plane_atlas, cylinder_atlas])
def test_flip_permutation_is_exact_involution_on_symmetric_mesh(maker):
    atlas, verts = maker()
    R = atlas.resolution
    perm, info = texel_flip_permutation(atlas, return_info=True)
    filled = atlas.mask.reshape(-1)
    assert np.all(perm[~filled] == -1) and np.all(perm[filled] >= 0)
    assert np.all(filled[perm[filled]])
    assert np.array_equal(perm[perm[filled]], np.nonzero(filled)[0])
    assert info["involution_fraction"] == 1.0 and info["exact_face_fraction"] == 1.0
    assert np.array_equal(texel_flip_permutation(atlas, strict=True), perm)
    # mirrored values: x is odd under the mirror, y and z even
    uv = vertex_to_uv(atlas, torch.tensor(verts[None]))
    mirrored = flip_uv(uv, perm)
    sign = torch.tensor([-1.0, 1.0, 1.0], dtype=uv.dtype)[None, :, None, None]
    inner = torch.from_numpy(atlas.interior)
    assert torch.allclose((mirrored * sign)[..., inner], uv[..., inner], atol=1e-12)
    if maker is cylinder_atlas:  # u -> 1 - u
        rows, cols = np.divmod(np.nonzero(filled)[0], R)
        assert np.array_equal(perm[filled], rows * R + (R - 1 - cols))


def test_flip_permutation_without_mirrored_triangles():
    # same-direction diagonals: the mirror of a triangle is not a triangle, so the fallback
    # (barycentric mix of the partner vertices' own UVs, seam-aware) is used everywhere
    verts, _, uv, _, flip = cylinder_mesh()
    ids = np.arange(17 * 24).reshape(17, 24)
    faces = _quads(24, 16, np.concatenate([ids, ids[:, :1]], 1), 99)
    fuv = _quads(24, 16, np.arange(17 * 25).reshape(17, 25), 99)
    atlas = UVAtlas.build(faces, uv, fuv, 64, len(verts), vertex_flip=flip)
    perm, info = texel_flip_permutation(atlas, return_info=True)
    assert info["exact_face_fraction"] == 0.0
    assert info["involution_fraction"] == 1.0  # the vertex UVs are mirror-symmetric
    rows, cols = np.divmod(np.nonzero(atlas.mask.reshape(-1))[0], 64)
    assert np.array_equal(perm[atlas.mask.reshape(-1)], rows * 64 + (63 - cols))


def test_flip_permutation_needs_pairs():
    atlas, _ = cylinder_atlas(R=16)
    atlas.vertex_flip = None
    with pytest.raises(ValueError, match="vertex_flip"):
        texel_flip_permutation(atlas)
    with pytest.raises(ValueError, match=r"expected \(408,\)"):
        texel_flip_permutation(atlas, vertex_flip=np.arange(5))


# ----------------------------------------------------------------------------- joints


@pytest.mark.parametrize("maker", [plane_atlas, cylinder_atlas])
def test_joint_assignment_symmetric(maker):
    atlas, verts = maker()
    joints = symmetric_joints()
    if maker is cylinder_atlas:  # inside the tube
        joints = joints * [0.4, 1.0, 1.0]
    labels = vertex_joint_assignment(verts, joints, atlas.vertex_flip)
    # a vertex on the symmetry plane (its own mirror) cannot take a left or right joint
    # symmetrically: only its partnered vertices are checked
    paired = atlas.vertex_flip != np.arange(len(verts))
    assert paired.mean() > 0.9
    assert np.array_equal(labels[atlas.vertex_flip][paired], LSP_FLIP[labels][paired])
    plain = vertex_joint_assignment(verts, joints)
    assert np.mean(plain == labels) > 0.95  # symmetrising moves only near-ties
    A = texel_joint_assignment(atlas, verts, joints)
    assert A.shape == atlas.mask.shape
    assert np.array_equal(A >= 0, atlas.mask) and A.max() < 14
    perm = texel_flip_permutation(atlas)
    filled = np.nonzero(atlas.mask.reshape(-1))[0]
    pairs = filled[perm[filled] != filled]  # texels on the symmetry line map to themselves
    assert len(pairs) > 0.9 * len(filled)
    flat = A.reshape(-1)
    assert np.array_equal(flat[perm[pairs]], LSP_FLIP[flat[pairs]])
    # without the texel-level symmetrisation the vertex-level one already does most of it:
    # only texels whose largest-barycentric vertex lies on the symmetry plane (and is
    # nearest to a lateral joint) disagree
    raw = texel_joint_assignment(atlas, verts, joints, symmetrize=False).reshape(-1)
    agree = raw[perm[pairs]] == LSP_FLIP[raw[pairs]]
    top = atlas.dominant_vertex().reshape(-1)[pairs]
    assert np.all(agree | (atlas.vertex_flip[top] == top))
    assert agree.mean() > 0.9


def test_joints_from_uv_recovers_joints():
    atlas, verts = plane_atlas(R=64)
    A = texel_joint_assignment(atlas, verts, symmetric_joints())
    assert len(np.unique(A[A >= 0])) == 14
    gen = torch.Generator().manual_seed(1)
    J = torch.randn(2, 14, 3, dtype=torch.float64, generator=gen)
    At = torch.from_numpy(A)
    m = torch.zeros(2, 3, 64, 64, dtype=torch.float64)
    m[:, :, At >= 0] = J[:, At[At >= 0]].permute(0, 2, 1)
    noise = torch.randn(m.shape, dtype=torch.float64, generator=gen) * 100
    m = m + noise * torch.from_numpy(A < 0)  # background garbage is not assigned
    est, missing = joints_from_uv(m, A)
    assert torch.allclose(est, J, atol=1e-12) and not missing.any()
    # drop every texel of joint 3 in sample 0, half of joint 5's in sample 1
    valid = torch.ones(2, 1, 64, 64, dtype=torch.bool)
    valid[0, 0, At == 3] = False
    half = torch.nonzero(At == 5)
    valid[1, 0, half[::2, 0], half[::2, 1]] = False
    est, missing = joints_from_uv(m, A, valid)
    assert missing[0, 3] and missing.sum() == 1 and torch.all(est[0, 3] == 0)
    assert torch.allclose(est[1], J[1], atol=1e-12)
    # soft weights: the weighted average
    m2 = m.clone()
    m2[0, :, At == 0] = 0.0
    m2[0, :, torch.nonzero(At == 0)[0, 0], torch.nonzero(At == 0)[0, 1]] = 1.0
    w = torch.ones(64, 64, dtype=torch.float64)
    est, _ = joints_from_uv(m2, torch.from_numpy(A), w)
    assert torch.allclose(est[0, 0], torch.full((3,), 1.0 / (At == 0).sum().item(),
                                                dtype=torch.float64))


def test_joints_from_uv_through_vertex_field():
    # the DMP joint map M_j built on vertices (each vertex carries its joint's position)
    atlas, verts = plane_atlas(R=128)
    joints = symmetric_joints()
    labels = vertex_joint_assignment(verts, joints, atlas.vertex_flip)
    A = UVAtlas.build(atlas.faces, atlas.texcoords, atlas.faces_texcoords, 128,
                      len(verts), lsp14_assignment=labels).lsp14_assignment
    field = torch.tensor(joints[labels][None])
    m = vertex_to_uv(atlas, field)
    # texels whose three vertices share a label hold that joint exactly
    tv = atlas.texel_vertices
    pure = (labels[tv] == labels[tv[..., :1]]).all(-1) & atlas.mask
    est, missing = joints_from_uv(m, A, torch.from_numpy(pure))
    assert not missing.any()
    assert torch.allclose(est[0], torch.tensor(joints), atol=1e-12)


# ----------------------------------------------------------------------------- files, errors


def test_save_load_roundtrip(tmp_path):
    atlas, verts = cylinder_atlas(R=32)
    atlas.lsp14_assignment = texel_joint_assignment(atlas, verts, symmetric_joints() * 0.5)
    path = tmp_path / "sub" / "atlas.npz"
    atlas.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["atlas.npz"]  # no temporary left
    back = UVAtlas.load(path)
    for key in UVAtlas._ARRAYS:
        assert np.array_equal(getattr(back, key), getattr(atlas, key)), key
    assert back.resolution == 32 and back.dilate == atlas.dilate
    assert back.local_rings == atlas.local_rings and back.meta == atlas.meta
    x = torch.randn(1, atlas.num_vertices, 3)
    assert torch.equal(vertex_to_uv(back, x), vertex_to_uv(atlas, x))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        UVAtlas.load(tmp_path / "bad.npz")


def _body_from_mesh(verts, faces, uv, fuv, flip, with_uv=True) -> BodyModelData:
    V = len(verts)
    joints = np.zeros((24, 3))
    joints[:, 1] = np.linspace(-0.6, 0.6, 24)
    joints[1::2, 0] = 0.2
    return BodyModelData(
        name="plane",
        v_template=verts,
        shapedirs=np.zeros((V, 3, 1)),
        lbs_weights=np.full((V, 24), 1 / 24),
        parents=np.array(SMPL24_PARENTS),
        joint_template=joints,
        joint_shapedirs=np.zeros((24, 3, 1)),
        faces=faces,
        joint_names=SMPL24_NAMES,
        texcoords=uv if with_uv else None,
        faces_texcoords=fuv if with_uv else None,
        vertex_flip=flip,
    )


def test_from_body_and_cache(tmp_path):
    data = _body_from_mesh(*plane_mesh())
    atlas = atlas_for_body(data, 64, cache_dir=tmp_path)
    assert atlas.lsp14_assignment is not None and atlas.lsp14_assignment.shape == (64, 64)
    files = list(tmp_path.glob("uv_atlas_plane_R64_*.npz"))
    assert len(files) == 1
    again = atlas_for_body(data, 64, cache_dir=tmp_path)
    assert np.array_equal(again.lsp14_assignment, atlas.lsp14_assignment)
    assert np.array_equal(again.texel_bary, atlas.texel_bary)


def test_clear_error_without_uvs():
    verts, faces, uv, fuv, flip = plane_mesh()
    with pytest.raises(NoUVError, match="no texture coordinates"):
        UVAtlas.build(faces, None, None, 64, len(verts))
    with pytest.raises(NoUVError, match="body model 'plane' has no texture coordinates"):
        atlas_for_body(_body_from_mesh(verts, faces, uv, fuv, flip, with_uv=False), 64)
    with pytest.raises(ValueError, match=r"faces_texcoords has shape \(2, 3\), expected"):
        UVAtlas.build(faces, uv, fuv[:2], 64, len(verts))


def test_clear_errors_for_wrong_shapes():
    atlas, verts = cylinder_atlas(R=16)
    V = len(verts)
    with pytest.raises(ValueError, match=rf"expected \(B, {V}, C\)"):
        vertex_to_uv(atlas, torch.zeros(1, V + 1, 3))
    with pytest.raises(ValueError, match=rf"expected \(B, {V}, C\)"):
        vertex_to_uv(atlas, torch.zeros(V, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        vertex_to_uv(atlas, np.zeros((1, V, 3)))
    with pytest.raises(ValueError, match=r"expected \(B, C, 16, 16\)"):
        uv_to_vertex(atlas, torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="mode"):
        uv_to_vertex(atlas, torch.zeros(1, 3, 16, 16), mode="cubic")
    with pytest.raises(ValueError, match=r"expected \(2, 3, 8, 8\)"):
        image_to_uv(torch.zeros(2, 5, 8, 8), torch.zeros(2, 3, 4, 4), 16)
    with pytest.raises(ValueError, match=r"expected \(B, C, H, W\)"):
        image_to_uv(torch.zeros(5, 8, 8), torch.zeros(3, 8, 8), 16)
    with pytest.raises(ValueError, match=r"expected \(16, 16\)"):
        joints_from_uv(torch.zeros(1, 3, 16, 16), np.zeros((8, 8), int))
    with pytest.raises(ValueError, match=r"expected \(1, 1, 16, 16\)"):
        joints_from_uv(torch.zeros(1, 3, 16, 16), np.zeros((16, 16), int),
                       torch.ones(1, 2, 16, 16))
    with pytest.raises(ValueError, match=r"expected \(14, 3\)"):
        texel_joint_assignment(atlas, verts, np.zeros((13, 3)))
    with pytest.raises(ValueError, match=rf"expected \({V}, 3\)"):
        texel_joint_assignment(atlas, verts[:-1], np.zeros((14, 3)))


def test_build_speed_27k_triangles():
    verts, faces, uv, fuv, flip = plane_mesh(n=118, step=1, offset=4, R=128)
    assert len(faces) > 27_000
    start = time.perf_counter()
    atlas = UVAtlas.build(faces, uv, fuv, 128, len(verts), dilate=2)
    elapsed = time.perf_counter() - start
    assert atlas.interior.sum() == 118 * 118 + 2 * 118 + 1
    assert elapsed < 5.0, elapsed


# ----------------------------------------------------------------------------- Anny-24


def _anny(name: str) -> BodyModelData:
    file = {"anny24": "anny24_decimated.npz", "anny24-full": "anny24_full.npz"}[name]
    if not (DATA_DIR / file).exists():
        pytest.skip(f"{file} not built yet")
    from hmrkit.body import load_body_model_data

    return load_body_model_data(name)


def test_anny24_decimated_uvs_or_clear_error():
    data = _anny("anny24")
    if data.texcoords is None:
        with pytest.raises(NoUVError, match="anny24-full"):
            atlas_for_body(data, 64)
        return
    atlas = atlas_for_body(data, 128)
    assert atlas.mask.mean() > 0.3 and atlas.lsp14_assignment is not None
    x = torch.tensor(data.v_template[None], dtype=torch.float64)
    uv = vertex_to_uv(atlas, x)
    # big UV triangles: sampling interpolates across creases (centimetres), the least-squares
    # readback recovers most vertices exactly (not those hidden by overlapping UV triangles)
    local = (uv_to_vertex(atlas, uv) - x).norm(dim=-1)[0]
    fit = (uv_to_vertex(atlas, uv, "lstsq") - x).norm(dim=-1)[0]
    assert local.mean() < 0.02 and fit.mean() < 0.002 and fit.median() < 1e-5
    if data.vertex_flip is not None:
        _, info = texel_flip_permutation(atlas, return_info=True)
        assert info["interior_involution_fraction"] > 0.9


def test_anny24_full_atlas():
    data = _anny("anny24-full")
    atlas = atlas_for_body(data, 128)
    R = atlas.resolution
    assert atlas.meta["build_seconds"] < 10
    b, m = atlas.texel_bary, atlas.mask
    assert b.min() >= 0 and np.allclose(b[m].sum(-1), 1) and atlas.interior.mean() > 0.3
    assert atlas.vertex_uv_counts().min() >= 1  # every vertex is sampled at least once
    # round trip of positions: the UV map's interpolation error, millimetres
    x = torch.tensor(data.v_template[None], dtype=torch.float64)
    err = (uv_to_vertex(atlas, vertex_to_uv(atlas, x)) - x).norm(dim=-1)[0]
    assert err.mean() < 0.005 and err.max() < 0.03
    # texel-centre values come back exactly: sample the map at texel centres
    uv = vertex_to_uv(atlas, x)
    i, j = np.nonzero(atlas.interior)
    point = np.einsum("nk,nkd->nd", b[i, j], data.v_template[atlas.texel_vertices[i, j]])
    assert np.abs(uv[0].permute(1, 2, 0).numpy()[i, j] - point).max() < 1e-12
    with pytest.raises(ValueError, match="mode='local'"):
        uv_to_vertex(atlas, uv, "lstsq")
    if data.vertex_flip is not None:
        perm, info = texel_flip_permutation(atlas, return_info=True)
        assert info["interior_involution_fraction"] > 0.95
        assert info["involution_fraction"] > 0.9
        A = atlas.lsp14_assignment
        assert A is not None and set(np.unique(A[A >= 0])) == set(range(14))
        filled = np.nonzero(m.reshape(-1))[0]
        pairs = filled[perm[filled] != filled]
        flat = A.reshape(-1)
        assert np.mean(flat[perm[pairs]] == LSP_FLIP[flat[pairs]]) > 0.95
        assert R == 128
