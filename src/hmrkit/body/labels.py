"""Which body model a sample's labels belong to, and posing them with it.

A Sample's ``global_orient`` / ``body_pose`` / ``betas`` / ``transl`` are parameters of the body
model named by its ``meta/body_model`` (:data:`LABEL_BODY_MODELS`: Anny-24 for hmrkit's
synthetic data, SMPL for SPIN npz files and 3DPW) and, for SMPL, its ``meta/gender``.
:class:`LabelBodies` poses them with that model, never with the method's body model when they
differ: pose, shape and vertex labels then do not describe the method's parameters (different
rest pose, shape space and mesh), only the joints and keypoint sets compare. SMPL labels need
the user's SMPL file (:func:`hmrkit.body.smpl.find_smpl`); without it the error says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .model import BodyModel, BodyOutput

__all__ = ["GENDER_CODES", "LABEL_BODY_MODELS", "LabelBodies", "LabelPose", "body_model_code",
           "body_model_family"]

LABEL_BODY_MODELS: tuple[str, ...] = ("anny24", "smpl")
"""Body models that labels can belong to; ``meta/body_model`` holds the index."""

GENDER_CODES: dict[str, int] = {"neutral": 0, "male": 1, "female": 2}
"""``meta/gender`` values (gendered SMPL labels)."""


def body_model_family(name: str) -> str:
    """The label body model of a body model name: ``anny24`` and ``anny24-full`` share Anny-24's
    joints and shape space (only the mesh differs), ``smpl`` is SMPL."""
    for family in LABEL_BODY_MODELS:
        if name == family or name.startswith(f"{family}-"):
            return family
    raise ValueError(f"unknown body model '{name}'; labels can belong to {LABEL_BODY_MODELS}")


def body_model_code(name: str) -> int:
    """``meta/body_model`` of labels of the body model ``name``."""
    return LABEL_BODY_MODELS.index(body_model_family(name))


@dataclass
class LabelPose:
    """The labelled bodies of a batch, posed by their own body model (no translation)."""

    joints: Tensor
    """(B, J, 3) joints."""
    vertices: Tensor
    """(B, V, 3) vertices on the METHOD's mesh; NaN rows where the labels are of another body
    model (another mesh: no vertex error can be computed)."""
    keypoints: dict[str, Tensor]
    """Keypoint sets asked for, (B, K, 3) each, from each label model's own regressor."""
    same_model: Tensor
    """(B,) bool: the labels parametrise the method's body model."""

    def output(self) -> BodyOutput:
        return BodyOutput(self.vertices, self.joints)


class LabelBodies:
    """Poses a batch's labels with the body models named in their ``meta/body_model``.

    ``body`` is the method's body model and ``name`` its name (``anny24``, ``anny24-full``,
    ``smpl``); labels of the same model are posed with it (or with the same mesh and more shape
    coefficients when the labels have more), labels of another model with that model, loaded
    once (:func:`hmrkit.body.load_body_model`).
    """

    def __init__(self, body: BodyModel, name: str):
        self.body = body
        self.name = name
        self.code = body_model_code(name)
        self._models: dict[tuple, BodyModel] = {}

    def codes(self, batch) -> Tensor:
        """(B,) int64 ``meta/body_model`` of every sample (the method's own when absent)."""
        n = batch["betas"].shape[0]
        code = batch.get("meta/body_model")
        if code is None:
            return torch.full((n,), self.code, dtype=torch.int64)
        return code.reshape(n).to("cpu", torch.int64)

    def same_model(self, batch) -> Tensor:
        """(B,) bool on the batch's device: the labels are parameters of the method's model."""
        return (self.codes(batch) == self.code).to(batch["betas"].device)

    def _model(self, code: int, gender: int, num_betas: int) -> BodyModel:
        if code == self.code and num_betas <= self.body.num_betas:
            return self.body
        key = (code, gender, num_betas)
        if key not in self._models:
            from . import load_body_model

            family = LABEL_BODY_MODELS[code]
            if code == self.code:  # same mesh, more shape coefficients
                name, kwargs = self.name, {"num_betas": num_betas}
            else:
                names = {v: k for k, v in GENDER_CODES.items()}
                name = family
                kwargs = {"gender": names.get(gender, "neutral")} if family == "smpl" else {}
            try:
                model = load_body_model(name, **kwargs)
            except FileNotFoundError as err:
                raise FileNotFoundError(
                    f"these labels are {family.upper()} parameters (meta/body_model = "
                    f"'{family}'): posing them needs the {family.upper()} model file. {err}"
                ) from None
            self._models[key] = model.to(self.body.v_template.device)
        return self._models[key]

    def pose(self, batch, keypoint_sets: tuple[str, ...] = ()) -> LabelPose:
        """The labelled bodies (``global_orient``, ``body_pose``, ``betas``) posed by their
        body models, with the keypoint sets ``keypoint_sets``."""
        codes = self.codes(batch)
        genders = batch.get("meta/gender")
        genders = (torch.zeros_like(codes) if genders is None
                   else genders.reshape(-1).to("cpu", torch.int64))
        genders = torch.where(codes == self.code, torch.zeros_like(genders), genders)
        go, bp, betas = batch["global_orient"], batch["body_pose"], batch["betas"]
        groups = sorted({(int(c), int(g)) for c, g in zip(codes, genders, strict=True)})
        if groups == [(self.code, 0)]:  # the usual case: one call, the method's model
            model = self._model(self.code, 0, betas.shape[1])
            out = model(go, bp, betas)
            points = {k: model.keypoints(out, k) for k in keypoint_sets}
            same = torch.ones(len(codes), dtype=torch.bool, device=betas.device)
            return LabelPose(out.joints, out.vertices, points, same)
        B, V = betas.shape[0], self.body.num_vertices
        joints = go.new_zeros(B, self.body.num_joints, 3)
        vertices = go.new_full((B, V, 3), float("nan"))
        points: dict[str, Tensor] = {}
        for code, gender in groups:
            sel = ((codes == code) & (genders == gender)).to(betas.device)
            model = self._model(code, gender, betas.shape[1])
            out = model(go[sel], bp[sel], betas[sel])
            joints[sel] = out.joints.to(joints)
            if code == self.code:
                vertices[sel] = out.vertices.to(vertices)
            for k in keypoint_sets:
                kp = model.keypoints(out, k)
                if k not in points:
                    points[k] = go.new_zeros(B, *kp.shape[1:])
                points[k][sel] = kp.to(points[k])
        return LabelPose(joints, vertices, points, (codes == self.code).to(betas.device))
