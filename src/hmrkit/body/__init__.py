"""Body models: one LBS engine (:mod:`.model`) for SMPL and the open Anny-24, keypoint sets."""

from __future__ import annotations

from .keypoints import KEYPOINT_SETS, KeypointSet, get_keypoint_set
from .model import BodyModel, BodyModelData, BodyOutput, forward_kinematics, shape, skin

BODY_MODELS = ("anny24", "anny24-full", "smpl")
"""Names accepted by :func:`load_body_model`."""


def load_body_model_data(name: str = "anny24", **kwargs) -> BodyModelData:
    """Data of a named body model.

    - ``"anny24"``: open Anny-24 on the decimated training mesh (shipped with hmrkit);
    - ``"anny24-full"``: the same body and shape space on Anny's full output mesh;
    - ``"smpl"``: the user's SMPL file (``path=``, ``gender=``; see :func:`.smpl.load_smpl`).

    ``num_betas`` truncates the shape space.
    """
    if name in ("anny24", "anny24-full"):
        from .anny24 import load_anny24

        mesh = "full" if name == "anny24-full" else "decimated"
        return load_anny24(mesh=mesh, **kwargs)
    if name == "smpl":
        from .smpl import load_smpl

        return load_smpl(**kwargs)
    raise ValueError(f"unknown body model '{name}'; choose one of {list(BODY_MODELS)}")


def load_body_model(name: str = "anny24", dtype=None, device=None, **kwargs) -> BodyModel:
    """A ready :class:`BodyModel` (float32 on CPU unless told otherwise)."""
    import torch

    model = BodyModel(load_body_model_data(name, **kwargs), dtype=dtype or torch.float32)
    return model.to(device) if device is not None else model


__all__ = [
    "BODY_MODELS", "KEYPOINT_SETS", "BodyModel", "BodyModelData", "BodyOutput", "KeypointSet",
    "forward_kinematics", "get_keypoint_set", "load_body_model", "load_body_model_data",
    "shape", "skin",
]
