"""A person's texture for the dense refinement's RGB render, as the paper gets them.

- synthetic people: their true UV texture (the scene engine's ``texture<p>.png``, in the body
  model's UV atlas, which the decimated Anny-24 mesh shares);
- photos: a rough texture back-projected from the images onto the visible vertices of the
  estimates, the median colour per vertex over the frames given (:func:`back_project`);
- robustness (paper Table 3): pixel noise, brightness and another person's texture
  (:func:`perturb`).

Renders are albedo only (no shading), values in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hmrkit.render.gbuffer import GBuffer, rasterize
from hmrkit.render.maps import interpolate, sample_texture, textured_rgb, vertex_visibility_depth

__all__ = ["PERTURBATIONS", "Texture", "back_project", "perturb"]

PERTURBATIONS = ("none", "noise", "brightness", "wrong")
"""Texture perturbations of :func:`perturb` (paper Table 3)."""


@dataclass
class Texture:
    """A UV image in the body's atlas, or per-vertex colours (exactly one of them)."""

    image: np.ndarray | None = None
    """(R, R, 3) uint8 UV texture (row 0 = v close to 1, the OBJ convention)."""
    vertex_colors: np.ndarray | None = None
    """(V, 3) float colours in [0, 1]."""

    def __post_init__(self):
        if (self.image is None) == (self.vertex_colors is None):
            raise ValueError("Texture: give a UV image or vertex colours (exactly one)")

    def render(self, gbuf: GBuffer, vertices: np.ndarray, body) -> np.ndarray:
        """(H, W, 3) float32 albedo render in [0, 1] of ``body``'s mesh (a
        :class:`~hmrkit.body.model.BodyModel`) posed at ``vertices``; 0 on the background."""
        faces = body.faces.cpu().numpy()
        if self.vertex_colors is not None:
            return interpolate(gbuf, faces, self.vertex_colors.astype(np.float32))
        data = body.data
        if data.texcoords is None:
            raise ValueError(f"{body.name} has no texture coordinates for a UV texture")
        rgb = textured_rgb(gbuf, vertices, faces, data.faces_texcoords, data.texcoords,
                           self.image.astype(np.float32) / 255.0, ambient=1.0, diffuse=0.0)
        return rgb.astype(np.float32)

    def renderer(self, body):
        """``(gbuf, vertices) -> rgb``, for :func:`hmrkit.fit.dense.render_inputs`."""
        return lambda gbuf, vertices: self.render(gbuf, vertices, body)


def perturb(texture: Texture, kind: str, level: float = 0.0, rng=None,
            other: Texture | None = None) -> Texture:
    """A perturbed copy: ``"noise"`` adds Gaussian noise of std ``level`` (in [0, 1] units)
    per texel / vertex, ``"brightness"`` multiplies by ``level``, ``"wrong"`` is ``other``
    (another person's texture), ``"none"`` the texture itself."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown texture perturbation {kind!r}; choose one of {PERTURBATIONS}")
    if kind == "none":
        return texture
    if kind == "wrong":
        if other is None:
            raise ValueError("perturb('wrong') needs another person's texture")
        return other
    rng = np.random.default_rng(rng)
    uv = texture.image is not None
    x = texture.image.astype(np.float64) / 255.0 if uv else texture.vertex_colors.astype(
        np.float64)
    x = x + rng.normal(0.0, level, x.shape) if kind == "noise" else x * level
    x = np.clip(x, 0.0, 1.0)
    if uv:
        return Texture(image=np.round(x * 255).astype(np.uint8))
    return Texture(vertex_colors=x.astype(np.float32))


def back_project(frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], faces,
                 tolerance: float = 0.02) -> Texture:
    """A rough per-vertex texture from images: ``frames`` of ``(image (H, W, 3) uint8 RGB,
    vertices (V, 3) in that image's camera frame, K (3, 3))``. Each vertex visible in a frame
    (z-buffer test, :func:`~hmrkit.render.maps.vertex_visibility_depth`) takes the image colour
    at its projection (bilinear); the texture is the median over the frames where it is
    visible; vertices never seen get the median colour of the seen ones (the paper's rough
    textures, section 4)."""
    faces = np.asarray(faces)
    V = len(frames[0][1])
    samples: list[list[np.ndarray]] = [[] for _ in range(V)]
    for image, vertices, K in frames:
        H, W = image.shape[:2]
        gbuf = rasterize(vertices, faces, K, (W, H))
        visible = vertex_visibility_depth(gbuf, vertices, faces, tolerance)
        p = vertices[visible] @ np.asarray(K, np.float64).T
        px = p[:, :2] / p[:, 2:]
        inside = (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H)
        idx = np.nonzero(visible)[0][inside]
        uv = np.stack([px[inside, 0] / W, 1.0 - px[inside, 1] / H], 1)  # as texture coordinates
        colours = sample_texture(image.astype(np.float64) / 255.0, uv)
        for v, c in zip(idx, colours, strict=True):
            samples[v].append(c)
    seen = np.array([len(s) > 0 for s in samples])
    out = np.zeros((V, 3))
    if seen.any():
        for v in np.nonzero(seen)[0]:
            out[v] = np.median(np.stack(samples[v]), axis=0)
        out[~seen] = np.median(out[seen], axis=0)
    else:
        out[:] = 0.5
    return Texture(vertex_colors=out.astype(np.float32))
