"""Dense 2D correspondences of the dense-refinement paper (section 3): renders of the current
estimate in the person crop, displacement fields per pixel and per vertex.

- :func:`crop_view`: the pinhole camera that sees a person crop (the full-image camera composed
  with the crop's affine; rotated crops roll the camera frame);
- :func:`render_inputs`: the network's renders of an estimate: textured RGB, depth, normals and
  the unique vertex colours (each vertex's position on the mean template), plus the G-buffer;
- :func:`pixel_displacements` (eq. 2): a per-vertex 2D field interpolated to the rendered
  pixels with the barycentrics (the training target, from eq. 1's ``proj_gt - proj_init``);
- :func:`vertex_targets` (eqs. 5-6): a per-pixel field back to the visible vertices (the
  ``b_v(p)``-weighted average, or its least-squares inverse) and the 2D targets
  ``proj_init(v) + d_v`` the fitter pulls them to (eq. 7, visible vertices only).

Everything here is per person and numpy (the renders are targets and inputs, never
differentiated); pixel coordinates follow hmrkit's convention (centres at ``i + 0.5``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hmrkit.geometry.cameras import Camera
from hmrkit.render.gbuffer import GBuffer, rasterize
from hmrkit.render.maps import (
    accumulate_to_vertices,
    interpolate,
    normal_map,
)

__all__ = ["RENDER_CHANNELS", "CropView", "crop_view", "pixel_displacements", "project",
           "render_inputs", "vertex_targets"]

RENDER_CHANNELS = {"rgb": 3, "depth": 1, "normals": 3, "vertex_colors": 3}
"""The renders the network may read, and their channels (the paper: all four, 10 channels)."""


@dataclass
class CropView:
    """How one person crop sees the camera frame: ``crop pixel = K (roll X) / Z``."""

    K: np.ndarray
    """(3, 3) float64 intrinsics in crop pixels."""
    roll: np.ndarray
    """(3, 3) rotation about the optical axis (identity for axis-aligned crops)."""
    res: int
    """Crop side in pixels."""

    def to_view(self, points: np.ndarray) -> np.ndarray:
        """Camera-frame points (N, 3) -> the view's frame (rolled)."""
        return np.asarray(points, np.float64) @ self.roll.T


def crop_view(camera: Camera, affine, res: int, skip_bad: bool = False
              ) -> list[CropView | None]:
    """The views of ``B`` person crops: ``camera`` (batch ``B``) composed with ``affine``
    ``(B, 2, 3)`` (full-image -> crop pixels, a similarity: scale, in-plane rotation and
    translation; the crops of hmrkit's crop builder). A mirrored, degenerate or non-finite
    crop is a ``ValueError``, or None in the list with ``skip_bad``."""
    K = camera.K.detach().cpu().double().numpy()
    A = np.asarray(torch.as_tensor(affine).detach().cpu().double())
    out: list[CropView | None] = []
    for b in range(len(A)):
        lin = A[b, :, :2]
        det = np.linalg.det(lin) if np.isfinite(A[b]).all() else float("nan")
        if not (det > 0 and np.isfinite(K[b]).all()):
            if skip_bad:
                out.append(None)
                continue
            raise ValueError(f"crop {b}: the crop affine is mirrored or degenerate "
                             f"(det {det:.3g}); renders need an unflipped crop")
        k = np.sqrt(det)
        cos, sin = lin[0, 0] / k, lin[1, 0] / k
        roll = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        c = lin @ K[b, :2, 2] + A[b, :, 2]
        Kc = np.array([[k * K[b, 0, 0], 0.0, c[0]], [0.0, k * K[b, 1, 1], c[1]], [0, 0, 1.0]])
        out.append(CropView(Kc, roll, int(res)))
    return out


def project(view: CropView, points: np.ndarray) -> np.ndarray:
    """(N, 2) crop pixels of camera-frame points (N, 3)."""
    p = view.to_view(points) @ view.K.T
    return p[:, :2] / p[:, 2:]


def render_inputs(view: CropView, vertices: np.ndarray, faces: np.ndarray,
                  vertex_colors: np.ndarray, rgb=None, backend: str = "auto"
                  ) -> tuple[dict[str, np.ndarray], GBuffer]:
    """The renders of one estimate in its crop (paper section 3.1) and the G-buffer.

    ``vertices`` (V, 3) camera frame (translation included), ``vertex_colors`` (V, 3) in
    [0, 1] (:func:`hmrkit.render.maps.unique_vertex_colors` of the mean template), ``rgb`` a
    callable ``(gbuf, view_vertices) -> (H, W, 3)`` in [0, 1] (a texture's renderer,
    :meth:`hmrkit.fit.texture.Texture.render`) or None (no RGB render). Returns float32 maps
    ``(C, res, res)``: ``depth`` (metres in front of (-) / behind (+) the mean visible depth),
    ``normals`` (camera frame), ``vertex_colors``, ``rgb`` (when given), ``mask``; background 0.
    """
    v = view.to_view(vertices)
    gbuf = rasterize(v, faces, view.K, (view.res, view.res), backend=backend)
    mask = gbuf.mask
    depth = np.zeros(mask.shape, np.float32)
    if mask.any():
        z = gbuf.depth[mask]
        depth[mask] = z - z.mean()
    maps = {
        "depth": depth[None],
        "normals": normal_map(gbuf, v, faces, smooth=True).transpose(2, 0, 1),
        "vertex_colors": interpolate(gbuf, faces, vertex_colors).transpose(2, 0, 1),
        "mask": mask[None].astype(np.float32),
    }
    if rgb is not None:
        maps["rgb"] = np.asarray(rgb(gbuf, v), np.float32).transpose(2, 0, 1)
    return {k: np.ascontiguousarray(m, np.float32) for k, m in maps.items()}, gbuf


def pixel_displacements(gbuf: GBuffer, faces: np.ndarray, vertex_displacements: np.ndarray
                        ) -> np.ndarray:
    """(H, W, 2) eq. 2: ``Delta(p) = sum_k b_k(p) Delta_{v_k(p)}`` over the triangle visible
    at ``p`` (0 on the background); ``vertex_displacements`` (V, 2), e.g. eq. 1's
    ``proj_gt(v) - proj_init(v)`` in crop pixels."""
    return interpolate(gbuf, faces, np.asarray(vertex_displacements, np.float64))


def vertex_targets(gbuf: GBuffer, faces: np.ndarray, displacement: np.ndarray,
                   projected: np.ndarray, method: str = "average"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Eqs. 5-6: per-pixel displacements ``(H, W, 2)`` -> per-vertex 2D targets.

    ``d_v = sum_p b_v(p) Delta(p) / sum_p b_v(p)`` over the pixels whose visible triangle holds
    ``v`` (``method="average"``, eq. 5; ``"lstsq"``: the least-squares inverse of eq. 2, exact
    for fields interpolated from vertex values), then ``x_v = projected_v + d_v`` (eq. 6).
    Returns targets ``(V, 2)`` (in ``projected``'s pixels) and weights ``(V,)``: 1 for the
    visible vertices (eq. 7's ``v_i``), 0 for the others (whose target is their projection).
    """
    projected = np.asarray(projected, np.float64)
    d, weight = accumulate_to_vertices(gbuf, faces, displacement, len(projected), method=method)
    visible = weight > 0
    return projected + np.where(visible[:, None], d, 0.0), visible.astype(np.float64)
