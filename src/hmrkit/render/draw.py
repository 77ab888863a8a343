"""Drawing: shaded mesh renders and overlays, side/top views, keypoints, contact sheets."""

from __future__ import annotations

import cv2
import numpy as np

from hmrkit.geometry.cameras import Camera

from .gbuffer import rasterize
from .maps import normal_map

OVERLAY_OPACITY = 0.7
"""Opacity of meshes drawn over photos (:func:`render_overlay`)."""

LIGHT_DIRECTION = np.array([0.3, -0.5, -1.0]) / np.linalg.norm([0.3, -0.5, -1.0])
"""Direction towards the light in the camera frame (from the viewer, a little above-left)."""


def shade(
    vertices: np.ndarray,
    faces: np.ndarray,
    camera,
    image_size: tuple[int, int],
    color: tuple[float, float, float] = (0.65, 0.74, 0.86),
    ambient: float = 0.35,
) -> np.ndarray:
    """Lambert-shaded render of a camera-frame mesh: (H, W, 4) uint8 RGBA, alpha = mask.

    ``camera``: a :class:`~hmrkit.geometry.cameras.Camera` or intrinsics (see
    :func:`hmrkit.render.gbuffer.rasterize`)."""
    gbuf = rasterize(np.asarray(vertices), np.asarray(faces), camera, image_size)
    normals = normal_map(gbuf, vertices, faces, smooth=True)
    lambert = np.clip(normals @ LIGHT_DIRECTION, 0.0, 1.0)
    intensity = ambient + (1.0 - ambient) * lambert
    rgb = np.clip(intensity[..., None] * np.asarray(color) * 255.0, 0, 255)
    rgba = np.zeros((*gbuf.mask.shape, 4), np.uint8)
    rgba[..., :3] = np.where(gbuf.mask[..., None], rgb, 0).astype(np.uint8)
    rgba[..., 3] = gbuf.mask.astype(np.uint8) * 255
    return rgba


def overlay(image: np.ndarray, rgba: np.ndarray, opacity: float = 0.8) -> np.ndarray:
    """Blend an RGBA render over an RGB uint8 image with the given opacity."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0 * opacity
    out = image.astype(np.float32) * (1 - alpha) + rgba[..., :3].astype(np.float32) * alpha
    return out.round().astype(np.uint8)


def orbit(vertices: np.ndarray, view: str) -> np.ndarray:
    """Turn camera-frame vertices about their centre: ``front``, ``side`` (90 deg) or ``top``."""
    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    if view == "front":
        R = np.eye(3)
    elif view == "side":  # about the camera's vertical axis
        R = np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])
    elif view == "top":  # look down from above (camera y points down)
        R = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    else:
        raise ValueError(f"unknown view '{view}'; use front, side or top")
    return (vertices - centre) @ R.T + centre


def fit_camera(
    vertices: np.ndarray, image_size: tuple[int, int], margin: float = 1.15, focal: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Place camera-frame vertices in front of a pinhole camera so that they fill the image.

    Returns the moved vertices and the intrinsics ``K``.  ``focal`` 0 means ``max(W, H)``.
    """
    W, H = image_size
    f = focal or float(max(W, H))
    lo, hi = vertices.min(0), vertices.max(0)
    centre = 0.5 * (lo + hi)
    extent = np.maximum((hi - lo)[:2] * margin, 1e-6)
    depth = max(f * extent[0] / W, f * extent[1] / H) + 0.5 * (hi - lo)[2]
    moved = vertices - centre + np.array([0.0, 0.0, depth])
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    return moved, K


def merge_meshes(vertex_sets: list[np.ndarray], faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One mesh of several copies of a mesh topology: stacked vertices, offset faces."""
    offsets = np.cumsum([0] + [len(v) for v in vertex_sets[:-1]])
    return np.concatenate(vertex_sets), np.concatenate([faces + o for o in offsets])


def fit_picture(image: np.ndarray, camera: Camera | None, max_side: int | None
                ) -> tuple[np.ndarray, Camera | None]:
    """``image`` shrunk (area averaging) so that its longer side is at most ``max_side``, and
    ``camera`` (if any) made to see the shrunk picture (:meth:`Camera.resized`); both unchanged
    when the image is small enough or ``max_side`` is None. Drawing a 24-megapixel photo at
    full size is slow and gives a picture no viewer shows whole."""
    H, W = image.shape[:2]
    if max_side is None or max(W, H) <= max_side:
        return image, camera
    scale = max_side / max(W, H)
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, None if camera is None else camera.resized(camera.image_size.new_tensor(size))


def render_overlay(image: np.ndarray, vertex_sets, faces, camera: Camera,
                   opacity: float = OVERLAY_OPACITY) -> np.ndarray:
    """The persons' camera-frame meshes shaded over ``image``, seen by ``camera``: one camera
    for all of them, or one per mesh (e.g. a predicted focal per person; each mesh is then
    drawn with its own, the farthest first)."""
    H, W = image.shape[:2]
    cams = [camera[i] for i in range(len(camera))] if len(camera) > 1 else None
    keep = [i for i, v in enumerate(vertex_sets) if np.isfinite(v).all() and (v[:, 2] > 0).any()]
    if not keep:
        return image.copy()
    if cams is None:
        rgba = shade(*merge_meshes([vertex_sets[i] for i in keep], faces), camera, (W, H))
        return overlay(image, rgba, opacity)
    out = image
    for i in sorted(keep, key=lambda i: -float(np.median(vertex_sets[i][:, 2]))):
        out = overlay(out, shade(vertex_sets[i], faces, cams[i], (W, H)), opacity)
    return out


def _white_and_merged(vertex_sets, faces, image_size: tuple[int, int]):
    """A white canvas and the persons with finite vertices merged into one mesh (None if
    there are none)."""
    W, H = image_size
    canvas = np.full((H, W, 3), 255, np.uint8)
    finite = [v for v in vertex_sets if np.isfinite(v).all()]
    return canvas, (merge_meshes(finite, faces) if finite else None)


def render_side(vertex_sets, faces, image_size: tuple[int, int]) -> np.ndarray:
    """The persons seen from their side (turned 90 deg about the vertical), on white."""
    W, H = image_size
    canvas, merged = _white_and_merged(vertex_sets, faces, image_size)
    if merged is None:
        return canvas
    vertices, faces = merged
    moved, K = fit_camera(orbit(vertices, "side"), (W, H))
    return overlay(canvas, shade(moved, faces, K, (W, H)), 1.0)


def render_world(vertex_sets, faces, image_size: tuple[int, int], elevation_deg: float = 15.0,
                 ground: bool = True) -> np.ndarray:
    """People in the world frame (y up), seen by a level camera looking along world ``-z``
    tilted down by ``elevation_deg``, standing on a grey ground plane at the lowest vertex, on
    white. ``vertex_sets``: world-frame meshes (their positions relative to each other kept)."""
    W, H = image_size
    canvas, merged = _white_and_merged(vertex_sets, faces, image_size)
    if merged is None:
        return canvas
    vertices, faces = merged
    e = np.deg2rad(elevation_deg)
    tilt = np.array([[1.0, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    world_to_view = tilt.T @ np.diag([1.0, -1.0, -1.0])  # (level camera R_x(e))^T
    view = vertices @ world_to_view.T
    moved, K = fit_camera(view, (W, H), margin=1.4)
    offset = moved[0] - view[0]
    if ground:
        lo, hi = vertices.min(0), vertices.max(0)
        pad = 0.5 + 0.5 * float(np.max(hi - lo))
        y = lo[1]
        quad = np.array([[lo[0] - pad, y, lo[2] - pad], [hi[0] + pad, y, lo[2] - pad],
                         [hi[0] + pad, y, hi[2] + pad], [lo[0] - pad, y, hi[2] + pad]])
        quad = quad @ world_to_view.T + offset
        quad_faces = np.array([[0, 2, 1], [0, 3, 2]])
        canvas = overlay(canvas, shade(quad, quad_faces, K, (W, H), color=(0.78, 0.78, 0.74),
                                       ambient=0.9), 1.0)
    return overlay(canvas, shade(moved, faces, K, (W, H)), 1.0)


def draw_keypoints(
    image: np.ndarray,
    keypoints: np.ndarray,
    edges: tuple[tuple[int, int], ...] = (),
    visible: np.ndarray | None = None,
    color: tuple[int, int, int] = (230, 60, 40),
    radius: int = 3,
) -> np.ndarray:
    """Draw 2D keypoints (N, 2) in pixels and their skeleton edges on a copy of ``image``."""
    out = np.ascontiguousarray(image.copy())
    vis = np.ones(len(keypoints), bool) if visible is None else np.asarray(visible) > 0
    pts = np.floor(np.asarray(keypoints)).astype(int)  # the pixel holding the point (OpenCV)
    for a, b in edges:
        if vis[a] and vis[b]:
            cv2.line(out, tuple(pts[a]), tuple(pts[b]), color, max(1, radius // 2), cv2.LINE_AA)
    for p, v in zip(pts, vis, strict=True):
        if v:
            cv2.circle(out, tuple(p), radius, color, -1, cv2.LINE_AA)
    return out


def tile(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` scaled to fit a ``size`` x ``size`` white square, centred (contact sheets)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    canvas = np.full((size, size, 3), 255, np.uint8)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small[..., :3]
    return canvas


def contact_sheet(
    images: list[np.ndarray], labels: list[str] | None = None, columns: int = 4, pad: int = 4
) -> np.ndarray:
    """Tile equally sized RGB images into one picture, with an optional label under each."""
    if not images:
        raise ValueError("contact_sheet: no images")
    h, w = images[0].shape[:2]
    label_h = 18 if labels else 0
    rows = -(-len(images) // columns)
    sheet = np.full(
        (rows * (h + label_h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8
    )
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + label_h + pad), pad + c * (w + pad)
        sheet[y : y + h, x : x + w] = img[..., :3]
        if labels:
            cv2.putText(
                sheet, labels[i][: w // 7], (x + 2, y + h + 13), cv2.FONT_HERSHEY_SIMPLEX,
                0.4, (20, 20, 20), 1, cv2.LINE_AA,
            )
    return sheet


def write_image(path, image: np.ndarray) -> None:
    """Write an RGB uint8 image (PNG/JPEG by extension) atomically; errors name the file."""
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")
    os.replace(tmp, path)
