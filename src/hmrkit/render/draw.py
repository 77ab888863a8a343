"""Drawing: shaded mesh renders and overlays, side/top views, keypoints, contact sheets."""

from __future__ import annotations

import cv2
import numpy as np

from .gbuffer import rasterize
from .maps import normal_map

LIGHT_DIRECTION = np.array([0.3, -0.5, -1.0]) / np.linalg.norm([0.3, -0.5, -1.0])
"""Direction towards the light in the camera frame (from the viewer, a little above-left)."""


def shade(
    vertices: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    image_size: tuple[int, int],
    color: tuple[float, float, float] = (0.65, 0.74, 0.86),
    ambient: float = 0.35,
) -> np.ndarray:
    """Lambert-shaded render of a camera-frame mesh: (H, W, 4) uint8 RGBA, alpha = mask."""
    gbuf = rasterize(np.asarray(vertices), np.asarray(faces), K, image_size)
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


def body_to_camera(vertices: np.ndarray) -> np.ndarray:
    """Body frame (y up, facing +z) to an OpenCV camera looking at the body's front."""
    return vertices * np.array([1.0, -1.0, -1.0])  # 180 deg about x


def render_views(
    vertices_body: np.ndarray,
    faces: np.ndarray,
    size: int = 256,
    views: tuple[str, ...] = ("front", "side"),
    color: tuple[float, float, float] = (0.65, 0.74, 0.86),
    background: int = 255,
) -> list[np.ndarray]:
    """Shaded RGB renders of a body-frame mesh seen from the given views."""
    cam = body_to_camera(vertices_body)
    images = []
    for view in views:
        moved, K = fit_camera(orbit(cam, view), (size, size))
        rgba = shade(moved, faces, K, (size, size), color)
        images.append(overlay(np.full((size, size, 3), background, np.uint8), rgba, 1.0))
    return images


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
