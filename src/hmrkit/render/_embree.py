"""Embree backend: one ray per pixel centre through :mod:`embreex`.

Rays ``d = K^-1 (u + 0.5, v + 0.5, 1)`` through the pixel centres (z component 1, not unit
length) start on the near plane at ``near * d``, which clips exactly like the OpenGL backend.
Embree reports ``t`` in units of ``|d|``, so the camera depth of a hit is
``near + t * d_z = near + t``; barycentrics are ``(1 - u - v, u, v)``.  Only pixels inside
the projected bounding box of the mesh are cast.  The last scene is kept and reused while the
same vertices and faces come back.
"""

from __future__ import annotations

import threading

import numpy as np

from .gbuffer import _clamp_barycentrics, pixel_rays

_lock = threading.Lock()
_cache: dict = {"vertices": None, "faces": None, "scene": None}


def _scene(vertices: np.ndarray, faces: np.ndarray):
    from embreex import rtcore_scene
    from embreex.mesh_construction import TriangleMesh

    with _lock:
        if (
            _cache["scene"] is not None
            and np.array_equal(_cache["vertices"], vertices)
            and np.array_equal(_cache["faces"], faces)
        ):
            return _cache["scene"]
        scene = rtcore_scene.EmbreeScene()
        TriangleMesh(scene=scene, vertices=vertices, indices=faces)
        _cache.update(vertices=vertices.copy(), faces=faces.copy(), scene=scene)
        return scene


def _pixel_box(points: np.ndarray, K: np.ndarray, image_size, near: float) -> np.ndarray:
    """Flat indices of the pixels that the projection of ``points`` can cover."""
    W, H = image_size
    if points[:, 2].min() > near:
        uv = points @ K.T
        uv = uv[:, :2] / uv[:, 2:] - 0.5  # pixel (u, v) samples u + 0.5, v + 0.5
        u0, v0 = np.clip(np.floor(uv.min(0)).astype(np.int64), 0, [W - 1, H - 1])
        u1, v1 = np.clip(np.ceil(uv.max(0)).astype(np.int64), 0, [W - 1, H - 1])
    else:  # the mesh reaches behind the near plane: its projection is unbounded
        u0, v0, u1, v1 = 0, 0, W - 1, H - 1
    rows = np.arange(v0, v1 + 1, dtype=np.int64)[:, None] * W
    return (rows + np.arange(u0, u1 + 1, dtype=np.int64)[None, :]).reshape(-1)


def cast(vertices, faces, K, image_size, near: float, points: np.ndarray):
    """Cast the pixel rays; returns flat index, triangle, barycentrics and depth of the hits.

    ``points`` are the vertices used by ``faces`` (to bound the projection).
    """
    scene = _scene(
        np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.int32)
    )
    index = _pixel_box(points, K, image_size, near)
    if index.size == 0:
        return index, index, np.zeros((0, 3)), np.zeros(0)
    dirs = pixel_rays(K, image_size, index).astype(np.float32)
    hit = scene.run(near * dirs, dirs, output=1)
    keep = hit["primID"] >= 0
    u, v = hit["u"][keep].astype(np.float64), hit["v"][keep].astype(np.float64)
    bary = _clamp_barycentrics(np.stack([1.0 - u - v, u, v], axis=1))
    depth = near + hit["tfar"][keep].astype(np.float64) * dirs[keep, 2]
    return index[keep], hit["primID"][keep].astype(np.int64), bary, depth
