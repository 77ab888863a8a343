"""Maps derived from a G-buffer: interpolation, accumulation round trips, normals, IUV."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from hmrkit.render import (
    accumulate_to_vertices,
    depth_map,
    interpolate,
    inverse_depth_map,
    normal_map,
    part_and_uv,
    rasterize,
    silhouette,
    textured_rgb,
    unique_vertex_colors,
    vertex_visibility,
    vertex_visibility_depth,
)

CENTRE = np.array([0.1, -0.05, 2.5])
RADIUS = 0.5
K = (400.0, 400.0, 112.0, 112.0)
SIZE = (224, 224)


@pytest.fixture(scope="module")
def sphere():
    s = trimesh.creation.icosphere(subdivisions=4, radius=RADIUS)
    v, f = np.asarray(s.vertices) + CENTRE, np.asarray(s.faces)
    return v, f, rasterize(v, f, K, SIZE)


def test_interpolate_positions_lie_on_pixel_rays(sphere):
    """Interpolated vertex positions (eq. 2) are the surface points seen by the pixels."""
    v, f, g = sphere
    P = interpolate(g, f, v)
    rows, cols = np.nonzero(g.mask)
    X = P[rows, cols]
    np.testing.assert_allclose(X[:, 2], g.depth[rows, cols], rtol=1e-6)
    # on the pixel ray, up to GL's sub-pixel snapping at triangle edges (clamped barycentrics)
    np.testing.assert_allclose(K[0] * X[:, 0] / X[:, 2] + K[2], cols + 0.5, atol=1e-2)
    np.testing.assert_allclose(K[1] * X[:, 1] / X[:, 2] + K[3], rows + 0.5, atol=1e-2)
    # on the polygonal sphere: within the chord error of the true sphere
    assert np.abs(np.linalg.norm(X - CENTRE, axis=1) - RADIUS).max() < 2e-3
    assert np.all(P[~g.mask] == 0)
    scalar = interpolate(g, f, v[:, 2].astype(np.float32), fill=-1.0)
    assert scalar.shape == SIZE and scalar.dtype == np.float32
    assert np.all(scalar[~g.mask] == -1)
    np.testing.assert_allclose(scalar[g.mask], g.depth[g.mask], rtol=1e-5)


def test_accumulate_average_constant_and_linear(sphere):
    """eq. 5 reproduces constants exactly and maps a linear field f to f(c_v), c_v the
    barycentric-weighted centroid of the pixels' surface points (not f(v))."""
    v, f, g = sphere
    seen_by = vertex_visibility(g, f, len(v))
    const, weight = accumulate_to_vertices(g, f, np.where(g.mask, 7.0, 123.0), len(v))
    assert np.array_equal(weight > 0, seen_by)
    np.testing.assert_allclose(const[seen_by], 7.0, rtol=1e-12)
    assert np.all(const[~seen_by] == 0) and np.all(weight[~seen_by] == 0)

    A, b = np.array([[1.0, -2.0], [0.5, 3.0], [2.0, 0.0]]), np.array([0.3, -1.0])
    P = interpolate(g, f, v)
    centroid, _ = accumulate_to_vertices(g, f, P, len(v))
    field, _ = accumulate_to_vertices(g, f, interpolate(g, f, v @ A + b), len(v))
    np.testing.assert_allclose(field[seen_by], centroid[seen_by] @ A + b, atol=1e-6)
    # the smoothing error |c_v - v| stays below the one-ring size (edges are ~4 cm here)
    assert np.linalg.norm(centroid[seen_by] - v[seen_by], axis=1).max() < 0.04


def test_accumulate_lstsq_round_trip(sphere):
    """The least-squares inverse of eq. 2 gives back an arbitrary vertex field exactly on
    well-observed vertices (weight >= 3); rim vertices seen by a pixel or two may be
    undetermined."""
    v, f, g = sphere
    rng = np.random.default_rng(0)
    field = rng.normal(size=(len(v), 2))
    pixels = interpolate(g, f, field)
    back, weight = accumulate_to_vertices(g, f, pixels, len(v), method="lstsq")
    good = weight >= 3.0
    assert good.sum() > 0.3 * len(v)
    np.testing.assert_allclose(back[good], field[good], atol=1e-4)
    with pytest.raises(ValueError):
        accumulate_to_vertices(g, f, pixels, len(v), method="median")


def test_accumulate_pixel_mask(sphere):
    v, f, g = sphere
    left = np.zeros(SIZE, bool)
    left[:, :100] = True
    _, w_all = accumulate_to_vertices(g, f, g.depth, len(v))
    _, w_left = accumulate_to_vertices(g, f, g.depth, len(v), pixel_mask=left)
    assert 0 < (w_left > 0).sum() < (w_all > 0).sum()
    assert np.all(w_left <= w_all + 1e-12)


def test_depth_silhouette_inverse_depth(sphere):
    _, _, g = sphere
    m = silhouette(g)
    assert m.dtype == bool and m.sum() == (g.triangle_id >= 0).sum()
    assert np.all(depth_map(g, background=np.inf)[~m] == np.inf)
    inv = inverse_depth_map(g)
    assert np.all(inv[~m] == 0)
    np.testing.assert_allclose(inv[m], 1.0 / g.depth[m], rtol=1e-6)
    assert RADIUS - 2e-3 < CENTRE[2] - g.depth[m].min() <= RADIUS + 1e-6


def test_normal_maps(sphere):
    v, f, g = sphere
    X = interpolate(g, f, v)[g.mask]
    true = (X - CENTRE) / np.linalg.norm(X - CENTRE, axis=1, keepdims=True)
    errors = {}
    for smooth in (False, True):
        n = normal_map(g, v, f, smooth=smooth)
        assert n.dtype == np.float32 and np.all(n[~g.mask] == 0)
        np.testing.assert_allclose(np.linalg.norm(n[g.mask], axis=1), 1.0, atol=1e-5)
        cos = np.clip((n[g.mask] * true).sum(1), -1, 1)
        errors[smooth] = np.degrees(np.arccos(cos))
    assert errors[False].max() < 5.0 and errors[True].max() < 1.0
    assert errors[True].mean() < errors[False].mean()


def test_vertex_visibility(sphere):
    v, f, g = sphere
    n = (v - CENTRE) / RADIUS
    facing = (n * v / np.linalg.norm(v, axis=1, keepdims=True)).sum(1)  # < 0: faces the camera
    by_triangle = vertex_visibility(g, f, len(v))
    by_depth = vertex_visibility_depth(g, v, f, tolerance=0.001)
    for visible in (by_triangle, by_depth):
        assert np.all(visible[facing < -0.15]) and not np.any(visible[facing > 0.15])
    assert np.all(by_triangle[by_depth])  # the depth test is the stricter one


def test_vertex_visibility_occluded(sphere):
    """A square in front of the sphere hides the vertices projecting well inside it."""
    v, f, _ = sphere
    corners = np.array([[90.0, 90.0], [140.0, 90.0], [140.0, 140.0], [90.0, 140.0]])
    z = 1.5
    square = np.stack([(corners[:, 0] - K[2]) / K[0] * z, (corners[:, 1] - K[3]) / K[1] * z,
                       np.full(4, z)], 1)
    v_all = np.concatenate([v, square])
    f_all = np.concatenate([f, len(v) + np.array([[0, 1, 2], [0, 2, 3]])])
    g = rasterize(v_all, f_all, K, SIZE)
    uv = v[:, :2] / v[:, 2:] * K[0] + K[2]
    by_triangle = vertex_visibility(g, f_all, len(v_all))
    by_depth = vertex_visibility_depth(g, v_all, f_all)
    assert by_triangle[len(v):].all() and by_depth[len(v):].all()
    # the z test hides vertices a pixel inside the square; the triangle test needs their
    # whole one-ring (about 8 px here) hidden
    for visible, margin in ((by_depth, 1.5), (by_triangle, 12.0)):
        hidden = np.all((uv > 90 + margin) & (uv < 140 - margin), axis=1)
        assert hidden.sum() > 10 and not visible[: len(v)][hidden].any()


def test_unique_vertex_colors(sphere):
    v, _, _ = sphere
    c = unique_vertex_colors(v)
    assert c.shape == v.shape and c.dtype == np.float32
    np.testing.assert_allclose(c.min(0), 0.0)
    np.testing.assert_allclose(c.max(0), 1.0)
    assert len(np.unique(np.round(c, 5), axis=0)) == len(v)


def _quad(Kq, z=2.0):
    """A fronto-parallel quad covering image points (0.5, 0.5)-(64.5, 64.5), normal towards
    -z."""
    fx, fy, cx, cy = Kq
    uv = np.array([[0.0, 0.0], [64.0, 0.0], [64.0, 64.0], [0.0, 64.0]]) + 0.5
    v = np.stack([(uv[:, 0] - cx) / fx * z, (uv[:, 1] - cy) / fy * z, np.full(4, z)], 1)
    faces = np.array([[0, 2, 1], [0, 3, 2]])  # counter-clockwise seen from the camera side
    texcoords = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # OBJ: v up
    return v, faces, texcoords


def test_textured_rgb_quad():
    Kq = (80.0, 80.0, 32.0, 32.0)
    v, faces, texcoords = _quad(Kq)
    texture = (np.arange(4 * 4 * 3).reshape(4, 4, 3) * 5).astype(np.uint8)
    g = rasterize(v, faces, Kq, (64, 64))
    n = normal_map(g, v, faces)
    np.testing.assert_allclose(n[g.mask], [[0.0, 0.0, -1.0]] * g.mask.sum(), atol=1e-6)
    rgb = textured_rgb(g, v, faces, faces, texcoords, texture)  # lit from the camera
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    # texel (row j, column i) centre is at image point (16 i + 8.5, 16 j + 8.5): pixel (8, 8)
    assert np.array_equal(rgb[8, 8], texture[0, 0])
    assert np.array_equal(rgb[24, 40], texture[1, 2])
    assert np.array_equal(rgb[56, 56], texture[3, 3])
    side = textured_rgb(g, v, faces, faces, texcoords, texture, light=(1.0, 0.0, 0.0))
    same = textured_rgb(g, v, faces, faces, texcoords, texture, light=(1.0, 0.0, 0.0), normals=n)
    assert np.array_equal(same, side)
    assert np.array_equal(side[24, 40], np.round(texture[1, 2] * 0.4).astype(np.uint8))
    flt = textured_rgb(g, v, faces, faces, texcoords, texture / 255.0)
    np.testing.assert_allclose(flt[24, 40], texture[1, 2] / 255.0, atol=1e-12)


def test_part_and_uv(sphere):
    v, f, g = sphere
    parts = (v[:, 0] > CENTRE[0]).astype(np.int64)
    uv = np.stack([0.5 + v[:, 0], 0.5 - v[:, 1]], 1)  # linear in position
    index, uv_map = part_and_uv(g, f, parts, uv)
    assert index.dtype == np.int32 and uv_map.dtype == np.float32
    assert set(np.unique(index)) == {0, 1, 2} and np.all(index[~g.mask] == 0)
    X = interpolate(g, f, v)
    left, right = g.mask & (X[..., 0] < CENTRE[0] - 0.05), g.mask & (X[..., 0] > CENTRE[0] + 0.05)
    assert np.all(index[left] == 1) and np.all(index[right] == 2)
    np.testing.assert_allclose(uv_map[g.mask, 0], 0.5 + X[g.mask, 0], atol=1e-6)
    np.testing.assert_allclose(uv_map[g.mask, 1], 0.5 - X[g.mask, 1], atol=1e-6)
    # per-corner UV indices (an atlas with seams) give the same map here
    corner_uv = uv[f.reshape(-1)]
    _, uv2 = part_and_uv(g, f, parts, corner_uv, faces_uv=np.arange(f.size).reshape(-1, 3))
    np.testing.assert_allclose(uv2, uv_map, atol=1e-6)
