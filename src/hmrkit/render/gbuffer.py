"""CPU G-buffer rasteriser: visible triangle id, barycentrics and depth for every pixel.

Conventions (see ``notes/design.md``): camera frame x right, y down, z forward (OpenCV),
metres and pixels, and hmrkit's one pixel convention (:mod:`hmrkit.geometry.cameras`): the
pixel in row ``v`` and column ``u`` covers ``[u, u + 1) x [v, v + 1)`` and samples the ray
through its centre ``(u + 0.5, v + 0.5)``, where a camera point ``X`` projects to ``K X / Z``.
The image covers ``[0, W] x [0, H]``; the pixel holding a projected point ``x`` is
``floor(x)``; an exactly centred principal point is ``(W / 2, H / 2)``. The camera is a
:class:`hmrkit.geometry.cameras.Camera` (one camera) or its intrinsics.

Two backends give the same answer up to pixel centres that lie exactly on a shared edge:

- ``"moderngl"``: OpenGL on a headless EGL context (Mesa llvmpipe on CPU) draws
  ``gl_PrimitiveID`` into a float target; barycentrics and depth are then recomputed exactly
  (float64 ray-triangle intersection, Moller-Trumbore) for every hit pixel;
- ``"embree"``: Intel Embree ray casting through :mod:`embreex` (primID, u, v, t).

Surfaces nearer than the near plane (``near``, by default half the nearest vertex depth, or
``1e-3`` times the farthest when the mesh reaches behind the camera) are clipped; nothing
behind the camera is ever drawn.  Background pixels have ``triangle_id = -1``, zero
barycentrics and **depth 0**.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from hmrkit.geometry.cameras import Camera, intrinsics_matrix

BACKENDS = ("auto", "moderngl", "embree")
"""Values accepted by ``rasterize(backend=...)``."""


class Hits(NamedTuple):
    """The foreground pixels of a G-buffer, flattened (row-major pixel index)."""

    index: np.ndarray
    """(N,) int64 flat pixel index ``v * W + u``."""
    triangle: np.ndarray
    """(N,) int64 visible triangle."""
    barycentrics: np.ndarray
    """(N, 3) float32 weights of the triangle's three vertices."""


@dataclass(eq=False)
class GBuffer:
    """Per-pixel visible surface of one mesh seen by one pinhole camera."""

    triangle_id: np.ndarray
    """(H, W) int32 index of the visible triangle, -1 for background."""
    barycentrics: np.ndarray
    """(H, W, 3) float32 weights of the visible triangle's vertices (sum 1; 0 on background)."""
    depth: np.ndarray
    """(H, W) float32 camera z of the visible surface in metres; 0 on background."""
    K: np.ndarray = field(repr=False)
    """(3, 3) float64 intrinsics used for the render."""
    backend: str = ""
    """Backend that produced it: ``"moderngl"`` or ``"embree"``."""

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool foreground."""
        return self.triangle_id >= 0

    @property
    def image_size(self) -> tuple[int, int]:
        """``(W, H)``."""
        return int(self.triangle_id.shape[1]), int(self.triangle_id.shape[0])

    @cached_property
    def hits(self) -> Hits:
        """Flat foreground pixels, their triangles and barycentrics (computed once)."""
        index = np.flatnonzero(self.triangle_id >= 0)
        return Hits(
            index,
            self.triangle_id.reshape(-1)[index].astype(np.int64),
            self.barycentrics.reshape(-1, 3)[index],
        )


def camera_matrix(camera) -> np.ndarray:
    """(3, 3) float64 intrinsics of one camera: a :class:`~hmrkit.geometry.cameras.Camera` of
    batch 1, an upper-triangular 3x3 matrix or ``(fx, fy, cx, cy)`` (numpy or torch)."""
    if isinstance(camera, Camera):
        if len(camera) != 1:
            raise ValueError(f"render one camera at a time, got a batch of {len(camera)}")
        camera = camera.K[0]
    K = _numpy(camera, np.float64)
    if K.shape == (4,):
        return intrinsics_matrix(K[:2][None], K[2:][None])[0].numpy()
    if K.shape != (3, 3) or K[1, 0] != 0 or K[2, 0] != 0 or K[2, 1] != 0 or K[2, 2] == 0:
        raise ValueError(f"intrinsics must be (fx, fy, cx, cy) or upper-triangular 3x3, got {K}")
    return K / K[2, 2]


def pixel_rays(K: np.ndarray, image_size: tuple[int, int], index: np.ndarray) -> np.ndarray:
    """(N, 3) float64 ray directions ``K^-1 (u + 0.5, v + 0.5, 1)`` (z = 1) through the centres
    of flat pixel indices."""
    W = int(image_size[0])
    u = (index % W).astype(np.float64) + 0.5
    v = (index // W).astype(np.float64) + 0.5
    y = (v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return np.stack([x, y, np.ones_like(x)], axis=1)


def default_near(vertices: np.ndarray) -> float:
    """Half the nearest vertex depth, or ``1e-3 x`` the farthest if the mesh reaches z <= 0."""
    z = vertices[:, 2]
    zmin, zmax = float(z.min()), float(z.max())
    return 0.5 * zmin if zmin > 0 else 1e-3 * zmax


def rasterize(
    vertices,
    faces,
    camera,
    image_size: tuple[int, int] | None = None,
    backend: str = "auto",
    near: float | None = None,
) -> GBuffer:
    """Rasterise a camera-frame mesh into a :class:`GBuffer`.

    ``vertices`` (V, 3) metres in the camera frame, ``faces`` (F, 3) vertex indices,
    ``camera`` a :class:`~hmrkit.geometry.cameras.Camera` (its image size is used unless
    ``image_size`` is given), a 3x3 intrinsics matrix or ``(fx, fy, cx, cy)``, ``image_size``
    ``(W, H)``.  Both sides
    of every face are drawn (no culling).  ``backend``: ``"auto"`` (moderngl when an EGL
    context can be made, else embree), ``"moderngl"`` or ``"embree"``.  ``near``: clipping
    plane depth in metres (default :func:`default_near`).  Torch tensors are accepted.
    """
    vertices = _numpy(vertices, np.float64).reshape(-1, 3)
    faces = _numpy(faces, np.int64).reshape(-1, 3)
    if image_size is None:
        if not isinstance(camera, Camera):
            raise ValueError("rasterize: give image_size (W, H) with intrinsics, or a Camera")
        image_size = tuple(int(v) for v in camera.image_size[0].tolist())
    K = camera_matrix(camera)
    W, H = int(image_size[0]), int(image_size[1])
    if W < 1 or H < 1:
        raise ValueError(f"image_size must be positive (W, H), got {image_size}")
    name = resolve_backend(backend)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError("faces index outside the vertex array")
    referenced = np.zeros(len(vertices), bool)
    referenced[faces.reshape(-1)] = True
    used = vertices[referenced]
    if len(used) == 0 or used[:, 2].max() <= 0:
        return _assemble(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)),
                         np.zeros(0), K, W, H, name)
    near = default_near(used) if near is None else float(near)
    if not near > 0:
        raise ValueError(f"near must be positive, got {near}")
    if name == "moderngl":
        from . import _egl

        far = 2.0 * float(used[:, 2].max()) + near
        ids = _egl.get_rasterizer().triangle_ids(vertices, faces, K, (W, H), near, far)
        index = np.flatnonzero(ids >= 0)
        triangle = ids.reshape(-1)[index].astype(np.int64)
        bary, depth = intersect(vertices, faces, triangle, pixel_rays(K, (W, H), index))
    else:
        from . import _embree

        index, triangle, bary, depth = _embree.cast(vertices, faces, K, (W, H), near, used)
    return _assemble(index, triangle, bary, depth, K, W, H, name)


def intersect(vertices, faces, triangle, rays) -> tuple[np.ndarray, np.ndarray]:
    """Exact barycentrics (N, 3) and depth (N,) of rays from the origin hitting triangles.

    Moller-Trumbore in float64.  A pixel the rasteriser gave to a triangle though its centre
    falls a hair outside (GL sub-pixel snapping, < 1e-2 px) gets its barycentrics clamped
    to the triangle and renormalised; the depth is always ``sum_k b_k z_k``, so the
    interpolated surface point lies on the triangle (and on the ray when not clamped).
    """
    tri = vertices[faces[triangle]]
    a, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = _cross(rays, e2)
    s = -a
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.einsum("ij,ij->i", e1, p)
        b1 = np.einsum("ij,ij->i", s, p) * inv
        b2 = np.einsum("ij,ij->i", rays, _cross(s, e1)) * inv
    bary = np.stack([1.0 - b1 - b2, b1, b2], axis=1)
    bary[~np.isfinite(bary).all(1)] = 1.0 / 3.0  # edge-on triangle: the ray lies in its plane
    bary = _clamp_barycentrics(bary)
    return bary, np.einsum("ij,ij->i", bary, tri[:, :, 2])


def _clamp_barycentrics(bary: np.ndarray) -> np.ndarray:
    out = np.clip(bary, 0.0, None)
    return out / out.sum(1, keepdims=True)


def _assemble(index, triangle, bary, depth, K, W, H, backend) -> GBuffer:
    tid = np.full(H * W, -1, np.int32)
    tid[index] = triangle
    b = np.zeros((H * W, 3), np.float32)
    b[index] = bary
    d = np.zeros(H * W, np.float32)
    d[index] = depth
    return GBuffer(tid.reshape(H, W), b.reshape(H, W, 3), d.reshape(H, W), K, backend)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
            a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
            a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0],
        ],
        axis=1,
    )


def _numpy(x, dtype) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def available_backends() -> list[str]:
    """The backends that work in this process (``"moderngl"`` first when both do)."""
    from . import _egl

    names = []
    if _egl.egl_error() is None:
        names.append("moderngl")
    if _embree_error() is None:
        names.append("embree")
    return names


def resolve_backend(backend: str = "auto") -> str:
    """The concrete backend ``rasterize`` would use; raises ``RuntimeError`` if it cannot work."""
    from . import _egl

    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend '{backend}'; choose one of {BACKENDS}")
    egl = _egl.egl_error() if backend in ("auto", "moderngl") else None
    if backend == "moderngl" or (backend == "auto" and egl is None):
        if egl is not None:
            raise RuntimeError(f"moderngl backend unavailable: {egl}. {_INSTALL_HINT}")
        return "moderngl"
    embree = _embree_error()
    if embree is None:
        return "embree"
    if backend == "embree":
        raise RuntimeError(f"embree backend unavailable: {embree}. {_INSTALL_HINT}")
    raise RuntimeError(
        f"no render backend works here: moderngl: {egl}; embree: {embree}. {_INSTALL_HINT}"
    )


_INSTALL_HINT = (
    "Install either pip 'moderngl' with the Debian packages libegl1 libegl-mesa0 "
    "libgl1-mesa-dri (headless OpenGL), or pip 'embreex' (CPU ray casting)"
)


def _embree_error() -> str | None:
    try:
        import embreex.mesh_construction  # noqa: F401
        import embreex.rtcore_scene  # noqa: F401
    except Exception as exc:  # ImportError, or a broken shared library
        return f"{type(exc).__name__}: {exc}"
    return None
