"""The dense refiner (``--refiner dense``): the displacement network's per-pixel field, turned
into per-vertex 2D targets of the visible vertices (eqs. 5-6), fitted by the SMPLify-style
fitter (eq. 7) in the full image.

Per person: render the estimate in its crop at the network's resolution
(:func:`hmrkit.fit.dense.render_inputs`: textured RGB, depth, normals, vertex colours), run
the network on crop and renders, average the predicted displacements onto the visible
vertices, add them to the vertices' projections, map those targets to full-image pixels and fit.
``dense-labels`` uses the true displacement field instead (from the batch's labels): the
paper's "Ours GT" upper bound.

Textures: a network that reads the RGB render needs the person's texture. Benchmarks give
one per person in :attr:`DenseRefiner.textures` (a list of
:class:`hmrkit.fit.texture.Texture`, set before each call: the synthetic truth, perturbed or
not); otherwise (photos, ``predict``, ``fit``) each person gets the paper's rough texture,
the colours of its own crop back-projected onto the estimate's visible vertices
(:func:`crop_texture`, one frame). The default network (:data:`DEFAULT_NETWORK`) is meant to
read no texture, as the paper's "w/o texture" model. When the batch holds labels
(``has_smpl``) the refiner reports the end-point error of the network's field per person
(metric ``epe``, crop pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hmrkit.body.estimate import BodyEstimate
from hmrkit.body.model import BodyModel
from hmrkit.fit import FitConfig, Targets
from hmrkit.fit.dense import (
    CropView,
    crop_view,
    pixel_displacements,
    project,
    render_inputs,
    vertex_targets,
)
from hmrkit.fit.texture import Texture, back_project
from hmrkit.geometry.cameras import Camera
from hmrkit.geometry.crops import invert_affine, transform_points
from hmrkit.render.maps import unique_vertex_colors

from .displacement import endpoint_error, load_displacement_net
from .displacement_data import network_crops, render_channels
from .fit_refiners import FitRefiner
from .refiners import RefinerError

__all__ = ["DEFAULT_NETWORK", "DenseRefiner", "LabelDenseRefiner", "crop_texture", "field_targets"]

DEFAULT_NETWORK = Path(__file__).resolve().parent / "weights" / "displacement-notex-64.pt"
"""Where the default displacement network (texture-free, 64 px crops) is looked for. None
is shipped yet (docs/fit.md says why): give ``network=FILE`` (``--refiner-arg``)."""

DENSE_CONFIG = FitConfig(iterations=100, camera_iterations=0)
"""The dense refiner's fit: the paper's 100 iterations."""


def crop_texture(crop: Tensor, view: CropView, vertices: np.ndarray, faces: np.ndarray
                 ) -> Texture:
    """The rough texture of a person without one (paper section 4): the colours of its crop
    ``(3, R, R)`` in [0, 1] back-projected onto the visible vertices of the estimate
    (``vertices (V, 3)``, camera frame) seen through the crop's ``view``
    (:func:`hmrkit.fit.texture.back_project` with one frame)."""
    rgb = np.round(crop.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255)
    return back_project([(rgb.astype(np.uint8), view.to_view(vertices), view.K)], faces)


def field_targets(views: list[CropView | None], gbufs: list, fields: list, vertices: np.ndarray,
                  faces: np.ndarray, affines: Tensor, method: str = "average") -> Targets:
    """Eqs. 5-7's targets of ``B`` persons in full-image pixels: each person's per-pixel field
    ``fields[b] (R, R, 2)`` (crop pixels) averaged onto the visible vertices of its G-buffer
    (:func:`hmrkit.fit.dense.vertex_targets`), added to the projections of ``vertices[b]``
    ``(V, 3)`` (camera frame, translation included) in ``views[b]``, then mapped back through
    the inverse of the crop affine ``affines (B, 2, 3)`` (full image -> crop). A person whose
    view, G-buffer or field is None gets weight 0 (float64 targets)."""
    B, V = len(vertices), vertices.shape[1]
    targets = np.zeros((B, V, 2))
    weights = np.zeros((B, V))
    for b in range(B):
        if views[b] is None or gbufs[b] is None or fields[b] is None:
            continue
        proj = project(views[b], vertices[b])
        targets[b], weights[b] = vertex_targets(gbufs[b], faces, fields[b], proj, method)
    # persons without a view keep weight 0 and an identity affine
    affines = torch.as_tensor(affines).detach().cpu().double()
    ok = torch.tensor([v is not None for v in views])[:, None, None]
    safe = torch.where(ok, affines, torch.eye(2, 3, dtype=affines.dtype))
    full = transform_points(torch.from_numpy(targets), invert_affine(safe))
    return Targets(vertices2d=full, vertex_weights=torch.from_numpy(weights))


class DenseRefiner(FitRefiner):
    """Fit to the displacement network's dense targets (module doc).

    Args:
        network: a displacement network file (default :data:`DEFAULT_NETWORK`).
        source: ``"network"`` or ``"labels"`` (true displacements, the upper bound).
        method: per-pixel -> per-vertex: ``"average"`` (eq. 5) or ``"lstsq"``.
        config: the fit (default :data:`DENSE_CONFIG`).
        device: torch device of the network.
    """

    name = "dense"

    def __init__(self, network: str | Path | None = None, source: str = "network",
                 method: str = "average", config: FitConfig | None = None,
                 device: str = "cpu"):
        super().__init__(config or DENSE_CONFIG)
        if source not in ("network", "labels"):
            raise RefinerError(f"dense refiner: source must be 'network' or 'labels', got "
                               f"{source!r}")
        self.source, self.method, self.device = source, method, torch.device(device)
        self.net = None
        self.resolution = 64
        if source == "network":
            path = Path(network or DEFAULT_NETWORK)
            if not path.is_file():
                raise RefinerError(f"dense refiner: no displacement network at {path}")
            try:
                self.net = load_displacement_net(path, self.device)
            except ValueError as err:
                raise RefinerError(f"dense refiner: {err}") from None
            self.resolution = self.net.config.resolution
        self.textures = None
        """Per-person textures for the next call (else, for a network that reads RGB, each
        person's :func:`crop_texture`)."""
        self.last_epe: Tensor | None = None

    def input_keys(self) -> tuple[str, ...]:
        keys = ("image", "crop_affine", "box_size")
        if self.source == "labels":
            keys += ("global_orient", "body_pose", "betas", "transl", "has_smpl",
                     "meta/body_model")
        return keys

    # ------------------------------------------------------------------ pieces
    def _crops(self, batch: dict[str, Tensor]) -> tuple[Tensor | None, Tensor]:
        """The network's crops (None when the batch has no image and none is needed) and
        their full-image -> crop affines at the network's resolution."""
        image, affine = batch.get("image"), batch.get("crop_affine")
        if affine is None or (image is None and self.net is not None):
            raise RefinerError("dense refiner: the batch has no person crop ('image', "
                               "'crop_affine')")
        if image is not None:
            return network_crops(image, affine, self.resolution)
        if "box_size" not in batch:
            raise RefinerError("dense refiner: the batch has no 'box_size' to size its crops")
        # crop side = the affine's scale x the box side
        scale = torch.linalg.det(affine.detach().double()[:, :, :2]).clamp_min(0).sqrt()
        side = scale * batch["box_size"].detach().double().reshape(-1)
        return None, affine.detach().double() * (self.resolution / side)[:, None, None]

    def _true_displacements(self, batch, body, view, init_vertices, gbuf, faces, b):
        from hmrkit.body.labels import LabelBodies

        labels = LabelBodies(body, body.name)
        sub = {k: batch[k][b:b + 1] for k in ("global_orient", "body_pose", "betas", "transl")}
        if "meta/body_model" in batch:
            sub["meta/body_model"] = batch["meta/body_model"][b:b + 1]
        true = labels.pose(sub).vertices[0].detach().double().cpu().numpy()
        true = true + sub["transl"][0].detach().double().cpu().numpy()
        delta = project(view, true) - project(view, init_vertices)
        return pixel_displacements(gbuf, faces, delta)

    def targets(self, batch, estimate: BodyEstimate, camera: Camera, body: BodyModel
                ) -> Targets:
        like = estimate.rotmat
        B, R = len(like), self.resolution
        images, affines = self._crops(batch)
        views = crop_view(camera.to("cpu", torch.float64), affines, R, skip_bad=True)
        faces = body.faces.cpu().numpy()
        colors = unique_vertex_colors(body.v_template.detach().cpu().numpy())
        verts = (estimate.vertices + estimate.transl[:, None]).detach().cpu().double().numpy()
        labelled = "has_smpl" in batch and all(
            k in batch for k in ("global_orient", "body_pose", "betas", "transl"))
        renders, gbufs, true_fields = [], [], []
        reads_rgb = self.net is not None and "rgb" in self.net.config.renders
        for b in range(B):
            texture = self.textures[b] if self.textures is not None else None
            if views[b] is None or not np.isfinite(verts[b]).all():
                maps, gbuf = None, None  # the fitter says why (degenerate box, NaN estimate)
            else:
                if texture is None and reads_rgb:
                    texture = crop_texture(images[b], views[b], verts[b], faces)
                rgb = None if texture is None else texture.renderer(body)
                maps, gbuf = render_inputs(views[b], verts[b], faces, colors, rgb)
            gbufs.append(gbuf)
            if self.net is not None:
                if maps is None:
                    renders.append(np.zeros((self.net.config.render_channels, R, R), np.float32))
                else:
                    renders.append(render_channels(maps, self.net.config.renders))
            has = labelled and float(batch["has_smpl"][b]) > 0 and gbuf is not None \
                and bool(gbuf.mask.any())
            true_fields.append(self._true_displacements(batch, body, views[b], verts[b], gbuf,
                                                        faces, b) if has else None)
        if self.source == "labels":
            if not labelled:
                raise RefinerError("dense-labels refiner: the batch has no pose labels "
                                   "(global_orient, body_pose, betas, transl, has_smpl)")
            fields = true_fields  # persons without labels get no target: left unchanged
        else:
            with torch.no_grad():
                pred = self.net(images.to(self.device), torch.from_numpy(
                    np.stack(renders)).to(self.device))[-1].cpu()
            fields = [pred[b].permute(1, 2, 0).double().numpy() for b in range(B)]
            epe = torch.full((B,), float("nan"))
            for b, (f, g) in enumerate(zip(true_fields, gbufs, strict=True)):
                if f is not None:
                    mask = torch.from_numpy(g.mask[None, None].astype(np.float32))
                    epe[b] = endpoint_error(pred[b:b + 1].float(), torch.from_numpy(
                        f.transpose(2, 0, 1)[None]).float(), mask)[0]
            self.last_epe = epe
        return field_targets(views, gbufs, fields, verts, faces, affines, self.method).to(like)

    def __call__(self, batch, estimate, camera, body):
        self.last_epe = None
        if estimate.vertices is None:
            estimate = estimate.posed(body)
        out = super().__call__(batch, estimate, camera, body)
        if self.last_epe is not None and out is not estimate:
            out.extras["metric/epe"] = self.last_epe.to(out.rotmat.device)
        return out


class LabelDenseRefiner(DenseRefiner):
    """``dense-labels``: fit to the true dense displacements (from the batch's labels), the
    upper bound of the dense refinement."""

    name = "dense-labels"

    def __init__(self, method: str = "average", config: FitConfig | None = None):
        super().__init__(source="labels", method=method, config=config)
