"""CPU rendering: a G-buffer rasteriser (triangle id, barycentrics, depth per pixel) and the
dense maps derived from it (silhouette, depth, normals, vertex colours, textured RGB, IUV).

Pixel centres sit at ``i + 0.5``, hmrkit's one pixel convention; see :mod:`.gbuffer`.
"""

from __future__ import annotations

from .gbuffer import (
    BACKENDS,
    GBuffer,
    available_backends,
    camera_matrix,
    rasterize,
    resolve_backend,
)
from .maps import (
    accumulate_to_vertices,
    depth_map,
    face_normals,
    interpolate,
    inverse_depth_map,
    normal_map,
    part_and_uv,
    sample_texture,
    silhouette,
    textured_rgb,
    unique_vertex_colors,
    vertex_normals,
    vertex_visibility,
    vertex_visibility_depth,
)

__all__ = [
    "BACKENDS",
    "GBuffer",
    "accumulate_to_vertices",
    "available_backends",
    "camera_matrix",
    "depth_map",
    "face_normals",
    "interpolate",
    "inverse_depth_map",
    "normal_map",
    "part_and_uv",
    "rasterize",
    "resolve_backend",
    "sample_texture",
    "silhouette",
    "textured_rgb",
    "unique_vertex_colors",
    "vertex_normals",
    "vertex_visibility",
    "vertex_visibility_depth",
]
