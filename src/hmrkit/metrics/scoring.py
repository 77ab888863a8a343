"""Per-person errors of an estimate against a batch's labels: the metrics it supports.

:func:`score` computes every metric whose inputs the estimate has (an open set): keypoint
errors need joints, vertex errors need vertices on the same mesh as the labels, the root
translation error needs a translation, world-frame errors need a world orientation (the
estimate's own ``world_global_orient``, or its predicted camera's rotation to the world) and a
labelled world frame (``has_world``); per-person metrics the estimate carries in its extras
(:data:`EXTRA_METRIC_PREFIX`). A method adds its own metrics
(:meth:`hmrkit.models.methods.base.Method.extra_metrics`). Everything in millimetres,
per person ``(B,)``; NaN where a person has no label for it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hmrkit.body.estimate import BodyEstimate
from hmrkit.body.labels import LabelBodies
from hmrkit.body.model import BodyOutput

from .pose import M_TO_MM, mpjpe, n_mpjpe, pa_mpjpe, pa_pve, pve, w_mpjpe, w_pve

__all__ = ["METRIC_ORDER", "PROTOCOLS", "root_translation_error", "score"]

PROTOCOLS: dict[str, tuple[str, int | tuple[int, ...]]] = {
    "lsp14": ("lsp14", (2, 3)),
    "smpl24": ("joints", 0),
}
"""Evaluation joint sets: name -> (keypoint set of the body model, root joint(s) for MPJPE).
``lsp14`` is the literature's 14-joint protocol (3DPW / H36M, SPIN's evaluation code) aligned
at the mid-hip; ``smpl24`` is the body model's 24 joints aligned at the pelvis."""

EXTRA_METRIC_PREFIX = "metric/"
"""``BodyEstimate.extras`` keys with this prefix are per-person ``(B,)`` metrics that
:func:`score` passes on under the rest of the name (the dense refiner's ``metric/epe``)."""

METRIC_ORDER: tuple[str, ...] = (
    "mpjpe", "pa_mpjpe", "n_mpjpe", "pve", "pa_pve", "root_transl", "w_mpjpe", "w_pve",
)
"""The metrics :func:`score` knows, in the order tables print them (others follow, sorted)."""


def root_translation_error(est: BodyEstimate, gt: BodyOutput, batch) -> Tensor:
    """(B,) mm between predicted and labelled root joints in the full-image camera frame
    (``joints[:, 0] + transl``): the accuracy of the full-image camera translation. NaN without
    a ``transl`` label, or where ``meta/has_transl`` is 0."""
    if "transl" not in batch:
        return torch.full_like(est.transl[:, 0], float("nan"))
    pred = est.joints[:, 0] + est.transl
    true = gt.joints[:, 0] + batch["transl"].to(pred)
    error = (pred - true).norm(dim=-1) * M_TO_MM
    if "meta/has_transl" in batch:  # public formats: transl is not always a label
        error = error.masked_fill(batch["meta/has_transl"].to(error.device) <= 0, float("nan"))
    return error


def _world(est: BodyEstimate, body) -> Tensor | None:
    """(B, V, 3) predicted vertices in the world frame, root-centred, or None."""
    world = est.world_output()  # the estimate's own mesh turned to its world orientation
    if world is not None:
        return world.vertices, world.joints
    if est.camera is not None and est.camera.cam_to_world is not None:
        R = est.camera.cam_to_world.to(est.vertices)
        root = est.joints[:, :1]
        return (est.vertices - root) @ R.transpose(1, 2), (est.joints - root) @ R.transpose(1, 2)
    return None


@torch.no_grad()
def score(est: BodyEstimate, batch, labels: LabelBodies, protocol: str = "lsp14"
          ) -> dict[str, Tensor]:
    """Per-person errors (mm) of ``est`` (already :meth:`~BodyEstimate.posed`) against the
    labels of ``batch``, posed by ``labels``. ``protocol`` (:data:`PROTOCOLS`) picks the joints
    of MPJPE / PA-MPJPE / N-MPJPE and their alignment root; PVE and PA-PVE use every vertex
    (each mesh's pelvis subtracted)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{protocol}'; choose one of {sorted(PROTOCOLS)}")
    joint_set, root = PROTOCOLS[protocol]
    gt = labels.pose(batch, () if joint_set == "joints" else (joint_set,))
    out: dict[str, Tensor] = {}
    if est.joints is not None:
        pred_out = BodyOutput(est.vertices, est.joints)
        p = labels.body.keypoints(pred_out, joint_set)
        g = gt.joints if joint_set == "joints" else gt.keypoints[joint_set]
        out.update(mpjpe=mpjpe(p, g, root=root), pa_mpjpe=pa_mpjpe(p, g),
                   n_mpjpe=n_mpjpe(p, g, root=root))
    if est.vertices is not None:
        pred_root = est.joints[:, 0] if est.joints is not None else est.vertices.mean(1)
        gt_root = gt.joints[:, 0] if est.joints is not None else gt.vertices.mean(1)
        out["pve"] = pve(est.vertices, gt.vertices, pred_root=pred_root, gt_root=gt_root)
        out["pa_pve"] = pa_pve(est.vertices, torch.nan_to_num(gt.vertices))
        out["pa_pve"] = out["pa_pve"].masked_fill(~gt.same_model, float("nan"))
    if est.transl is not None and est.joints is not None:
        out["root_transl"] = root_translation_error(est, gt.output(), batch)
    world = _world(est, labels.body) if est.vertices is not None else None
    if world is not None and "world_global_orient" in batch:
        has = batch.get("has_world", torch.ones(len(gt.joints)))
        true = labels.pose({**batch, "global_orient": batch["world_global_orient"]})
        verts, joints = world
        g_verts = true.vertices - true.joints[:, :1]
        g_joints = true.joints - true.joints[:, :1]
        missing = (has.to(verts.device) <= 0)
        out["w_mpjpe"] = w_mpjpe(joints, g_joints).masked_fill(missing, float("nan"))
        out["w_pve"] = w_pve(verts, g_verts).masked_fill(missing, float("nan"))
    for key, value in est.extras.items():  # per-person metrics a method or refiner computed
        if key.startswith(EXTRA_METRIC_PREFIX):
            out[key[len(EXTRA_METRIC_PREFIX):]] = value
    return out
