"""Checkpoints of hmrkit 0.1 (flat method arguments) -> the composed methods of today.

hmrkit 0.1 built HMR, CLIFF and Multi-RoI from flat arguments (``backbone="resnet18"``,
``image_size``, ``regressor_hidden``, ``lr``, ..., 32 of them for Multi-RoI) and kept the
timm model and the input normalisation at the top of the state dict. :func:`upgrade` maps such
a checkpoint's arguments onto the composed constructors (:mod:`hmrkit.models.parts`) and its
weights onto the new module names, so that old checkpoints and exports (the shipped demo
model among them) load and predict exactly as before.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from hmrkit.models.parts import class_path

__all__ = ["is_flat", "upgrade"]

_OLD_METHODS = ("hmrkit.models.methods.hmr.HMR", "hmrkit.models.methods.cliff.CLIFF",
                "hmrkit.models.methods.multiroi.MultiRoI")


def is_flat(method: str, arguments: dict[str, Any]) -> bool:
    """Whether ``arguments`` of the method ``method`` are hmrkit 0.1's flat ones."""
    return method in _OLD_METHODS and isinstance(arguments.get("backbone", "resnet18"), str) \
        and "crop_size" not in arguments


def _part(cls: type, **init_args) -> dict[str, Any]:
    return {"class_path": class_path(cls), "init_args": init_args}


def upgrade(method: str, arguments: dict[str, Any], state: dict[str, Tensor]
            ) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The composed constructor arguments and the renamed weights of an hmrkit 0.1 checkpoint
    of ``method`` (:func:`is_flat`)."""
    from hmrkit.losses.contrastive import ProjectionHead
    from hmrkit.losses.sets import CLIFFLosses, MultiRoILosses, SPINLosses
    from hmrkit.models.backbones import TimmBackbone
    from hmrkit.models.box_info import CliffBoxInfo
    from hmrkit.models.fusion import FUSIONS
    from hmrkit.models.heads import CameraDecoder, IterativeRegressor

    a = {"backbone": "resnet18", "image_size": 224, "iterations": 3, "regressor_hidden": 1024,
         "keypoint_sets": ["smpl24", "coco17"], "body_model": "anny24", "num_betas": None,
         "lr": 1e-4, "weight_decay": 0.0, "loss_weights": None, "lr_schedule": "constant",
         "warmup_steps": 0, **arguments}
    head = _part(IterativeRegressor, hidden=a["regressor_hidden"], iterations=a["iterations"])
    new: dict[str, Any] = {
        "backbone": _part(TimmBackbone, name=a["backbone"], checkpoint=None),
        "head": head,
        "crop_size": a["image_size"],
        "body_model": a["body_model"],
        "num_betas": a["num_betas"],
        "optim": {"lr": a["lr"], "weight_decay": a["weight_decay"],
                  "schedule": a["lr_schedule"], "warmup_steps": a["warmup_steps"]},
    }
    weights = a["loss_weights"]
    losses = {"keypoint_sets": list(a["keypoint_sets"])}
    if weights is not None:
        losses["weights"] = dict(weights)
    if method.endswith(".HMR"):
        new["losses"] = _part(SPINLosses, **losses)
    elif method.endswith(".CLIFF"):
        new["losses"] = _part(CLIFFLosses, **losses)
    else:
        m = {"num_rois": 5, "fusion": "raf", "fusion_relation": "relative",
             "pe_frequencies": 32, "fusion_hidden": 256, "per_roi_regressor": False,
             "mesh_box_info": True, "camera_box_info": False, "camera_consistency": 1.0,
             "camera_pairs": "all", "camera_variant": "paper", "camera_scale_term": "bs",
             "contrastive": 0.1, "contrastive_denominator": "paper",
             "contrastive_temperature": 0.5, "contrastive_gate": False, "projection_dim": None,
             "keypoint_frame": "roi", **arguments}
        fusion = {"frequencies": m["pe_frequencies"]}
        if m["fusion"] == "raf":
            fusion["relation"] = m["fusion_relation"]
        elif m["fusion"] == "raf-code":
            fusion["hidden"] = m["fusion_hidden"]
        elif m["fusion"] == "attention":
            fusion["attention_dim"] = m["fusion_hidden"]
        else:
            fusion = {}
        new.update(
            fusion=_part(FUSIONS[m["fusion"]], **fusion),
            camera_head=_part(CameraDecoder, hidden=a["regressor_hidden"],
                              iterations=a["iterations"]),
            projection=None if m["contrastive"] <= 0 else _part(
                ProjectionHead, hidden_dim=m["projection_dim"], out_dim=m["projection_dim"],
                gate=m["contrastive_gate"]),
            box_info=_part(CliffBoxInfo),
            num_rois=m["num_rois"], per_roi_regressor=m["per_roi_regressor"],
            mesh_box_info=m["mesh_box_info"], camera_box_info=m["camera_box_info"],
            losses=_part(MultiRoILosses, **{**losses, **{k: m[k] for k in (
                "camera_consistency", "camera_pairs", "camera_variant", "camera_scale_term",
                "contrastive", "contrastive_denominator", "contrastive_temperature",
                "keypoint_frame")}}),
        )
        if weights is None:
            new["losses"]["init_args"].pop("weights", None)
    if method.endswith(".CLIFF") or method.endswith(".MultiRoI"):
        new.setdefault("box_info", _part(CliffBoxInfo))
    renamed = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            key = "backbone.net." + key.removeprefix("backbone.")
        elif key in ("pixel_mean", "pixel_std"):
            key = f"backbone.{key}"
        renamed[key] = value
    return new, renamed
