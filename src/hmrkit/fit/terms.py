"""Data terms of the fitter and the targets they compare against.

Every data term is a confidence-weighted mean over its points of the Geman-McClure cost
(:func:`hmrkit.fit.robust.geman_mcclure`) of the residual, per person ``(B,)``. 2D residuals
are measured in *reference pixels*: full-image pixels times ``reference_size / person_size``
(the paper scales its reprojection loss by the size of the person; SPIN fits in 224 px crops,
so with the default reference of 224 px the robust scale ``sigma = 100`` means what it means in
SPIN). 3D residuals are in centimetres after aligning both sets at their roots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .robust import geman_mcclure

__all__ = ["KEYPOINT_ROOTS", "Targets", "keypoint_3d_term", "reprojection_term"]

KEYPOINT_ROOTS: dict[str, tuple[int, ...]] = {
    "blazepose33": (23, 24), "coco17": (11, 12), "lsp14": (2, 3), "smpl24": (0,),
    "joints": (0,), "vertices": (),
}
"""Points averaged into the root of a keypoint set for root-aligned 3D terms (the hips)."""


@dataclass
class Targets:
    """What the fitter pulls the body towards (any subset; batch ``B``).

    Confidences are weights in [0, 1]; a point whose coordinates or confidence are not finite
    counts with weight 0 (see :meth:`sanitized`).
    """

    keypoints2d: dict[str, Tensor] = field(default_factory=dict)
    """Keypoint set name (``body.keypoints``: ``blazepose33``, ``coco17``, ...; ``joints``: the
    body's own; ``vertices``: every mesh vertex) -> ``(B, K, 3)`` ``x, y`` in full-image pixels
    and a confidence."""
    vertices2d: Tensor | None = None
    """(B, V, 2) dense per-vertex targets in full-image pixels (dense refinement eq. 6)."""
    vertex_weights: Tensor | None = None
    """(B, V) weights of ``vertices2d`` (eq. 7's visibility ``v_i``); None: all 1."""
    keypoints3d: dict[str, Tensor] = field(default_factory=dict)
    """Keypoint set name -> ``(B, K, 4)`` ``x, y, z`` in metres with the camera frame's axes
    (e.g. BlazePose world landmarks) and a confidence; compared after root alignment
    (:data:`KEYPOINT_ROOTS`)."""
    person_size: Tensor | None = None
    """(B,) pixels: the person's size in the image (box side) that 2D residuals are divided
    by; None: 1.2 x the longer side of the initial estimate's projected bounding box."""

    def sanitized(self) -> tuple[Targets, int]:
        """A copy where non-finite points have weight 0 and finite coordinates, and how many
        points were so dropped."""
        dropped = 0

        def clean(points: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
            nonlocal dropped
            ok = torch.isfinite(points).all(-1) & torch.isfinite(weight)
            dropped += int((~ok & (weight != 0)).sum())
            return torch.where(ok[..., None], points, 0), torch.where(ok, weight, 0).clamp_min(0)

        kp2 = {}
        for name, kp in self.keypoints2d.items():
            xy, w = clean(kp[..., :2], kp[..., 2])
            kp2[name] = torch.cat([xy, w[..., None]], -1)
        kp3 = {}
        for name, kp in self.keypoints3d.items():
            xyz, w = clean(kp[..., :3], kp[..., 3])
            kp3[name] = torch.cat([xyz, w[..., None]], -1)
        v2, vw = self.vertices2d, self.vertex_weights
        if v2 is not None:
            vw = torch.ones_like(v2[..., 0]) if vw is None else vw.to(v2)
            v2, vw = clean(v2, vw)
        return Targets(kp2, v2, vw, kp3, self.person_size), dropped

    def weight_sum(self, batch: int, like: Tensor) -> Tensor:
        """(B,) total confidence of all points (0: nothing to fit)."""
        total = like.new_zeros(batch)
        for kp in (*self.keypoints2d.values(), *self.keypoints3d.values()):
            total = total + kp[..., -1].to(like).sum(-1)
        if self.vertex_weights is not None:
            total = total + self.vertex_weights.to(like).sum(-1)
        return total

    def to(self, like: Tensor) -> Targets:
        """The targets in ``like``'s dtype and device."""
        def cast(x):
            return None if x is None else x.to(like)

        return Targets({k: cast(v) for k, v in self.keypoints2d.items()}, cast(self.vertices2d),
                       cast(self.vertex_weights),
                       {k: cast(v) for k, v in self.keypoints3d.items()}, cast(self.person_size))


def _weighted_mean(cost: Tensor, weight: Tensor) -> Tensor:
    """(B,) ``sum_k w_k cost_k / sum_k w_k`` (0 where the weights sum to 0)."""
    total = weight.sum(-1)
    return (weight * cost).sum(-1) / total.clamp_min(1e-12)


def reprojection_term(projected: Tensor, target: Tensor, weight: Tensor, scale: Tensor,
                      sigma: float) -> Tensor:
    """(B,) weighted mean Geman-McClure cost of 2D residuals in reference pixels.

    ``projected`` and ``target`` ``(B, N, 2)`` full-image pixels, ``weight`` ``(B, N)``,
    ``scale`` ``(B,)`` reference pixels per image pixel. (SMPLify's / the paper's eq. 7
    reprojection term, as a mean over the points.)"""
    sq = ((projected - target) ** 2).sum(-1) * scale[:, None] ** 2
    s2 = float(sigma) ** 2
    return _weighted_mean(s2 * sq / (s2 + sq), weight)


def keypoint_3d_term(points: Tensor, target: Tensor, root: tuple[int, ...],
                     sigma_cm: float) -> Tensor:
    """(B,) weighted mean Geman-McClure cost (centimetres) of root-aligned 3D keypoints.

    ``points`` ``(B, K, 3)`` of the body (camera-frame axes, metres), ``target`` ``(B, K, 4)``
    with confidences; both sets are centred on the mean of their ``root`` points (all points
    when ``root`` is empty)."""
    idx = list(root) or list(range(points.shape[1]))  # no root: the centroid
    p = points - points[:, idx].mean(1, keepdim=True)
    t = target[..., :3] - target[:, idx, :3].mean(1, keepdim=True)
    dist = ((p - t) ** 2).sum(-1).clamp_min(1e-16).sqrt() * 100.0
    return _weighted_mean(geman_mcclure(dist, sigma_cm), target[..., 3])
