"""What a method returns for a batch of people: :class:`BodyEstimate`.

Every field is optional, because methods differ in what they produce: a parametric regressor
gives rotations and shape (and the body model poses them), a dense UV-map method gives vertices
directly, W-HMR adds a predicted camera (its focal) and a world-frame root orientation. Metrics
(:func:`hmrkit.metrics.scoring.score`), refiners and ``hmrkit predict`` use whatever is there.
Frames: the camera frame of the sample (x right, y down, z forward), metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from hmrkit.geometry.cameras import Camera

from .model import BodyModel, BodyOutput


@dataclass(kw_only=True)
class BodyEstimate:
    """A method's estimate of the bodies of a batch (``B`` people); absent fields are None."""

    rotmat: Tensor | None = None
    """(B, J, 3, 3) local joint rotations; joint 0 is the root orientation in the camera frame."""
    betas: Tensor | None = None
    """(B, K) shape coefficients of the method's body model (``K = body.num_betas``)."""
    vertices: Tensor | None = None
    """(B, V, 3) posed vertices without the translation (the method's body model mesh)."""
    joints: Tensor | None = None
    """(B, J, 3) posed joints without the translation."""
    transl: Tensor | None = None
    """(B, 3) translation into the full-image camera frame: ``vertices + transl``."""
    cam_crop: Tensor | None = None
    """(B, 3) weak-perspective crop camera ``(s, t_x, t_y)``."""
    camera: Camera | None = None
    """The full-image camera the method predicts (e.g. W-HMR's focal); None: the sample's."""
    world_global_orient: Tensor | None = None
    """(B, 3, 3) root rotation body -> world frame, for methods that estimate it (W-HMR)."""
    extras: dict[str, Tensor] = field(default_factory=dict)
    """Method-specific named outputs (iterations, per-RoI cameras, dense maps, ...)."""

    def posed(self, body: BodyModel) -> BodyEstimate:
        """The estimate with ``vertices`` and ``joints`` filled in by posing ``rotmat`` and
        ``betas`` with ``body`` when they are missing (itself when nothing is missing)."""
        if self.vertices is not None and self.joints is not None:
            return self
        if self.rotmat is None:
            return self
        out = body(self.rotmat[:, 0], self.rotmat[:, 1:], self.betas)
        return replace(self, vertices=self.vertices if self.vertices is not None else out.vertices,
                       joints=self.joints if self.joints is not None else out.joints)

    def output(self) -> BodyOutput:
        """The posed body (``vertices``, ``joints``) as the body model returns it."""
        return BodyOutput(self.vertices, self.joints)

    def world_output(self) -> BodyOutput | None:
        """The bodies in the world frame (y up), about their root joint: the camera-frame mesh
        turned by ``R_w R_c^T`` (``R_w = world_global_orient``, ``R_c = rotmat[:, 0]``), which is
        exactly the body posed with the world root orientation. None without one."""
        if self.world_global_orient is None or self.rotmat is None or self.joints is None:
            return None
        from hmrkit.geometry.cameras import world_root_relative

        turn = self.world_global_orient @ self.rotmat[:, 0].transpose(1, 2)
        root = self.joints[:, 0]
        return BodyOutput(world_root_relative(self.vertices, root, turn),
                          world_root_relative(self.joints, root, turn))

    def camera_or(self, camera: Camera) -> Camera:
        """The predicted camera, else ``camera`` (the sample's)."""
        return self.camera if self.camera is not None else camera

    def unrolled(self, roll: Tensor) -> BodyEstimate:
        """The estimate made in a rolled camera frame, in the camera frame.

        A method reading rotated crops (:class:`~hmrkit.geometry.crops.CropBox` with a
        rotation) estimates in the frame of the camera rolled by the crop's angle,
        ``X_rolled = roll X_cam`` with ``roll = CropBox.roll_matrix()`` ``(B, 3, 3)``. Here:
        root orientation ``roll^T G``; joints and vertices turned about the root joint ``J0``
        (which posing leaves in place): ``roll^T (X - J0) + J0``; translation
        ``roll^T (J0 + t) - J0``, so that ``vertices + transl`` is ``roll^T (vertices_rolled +
        t_rolled)``. The crop camera is the crop's and stays. Needs ``joints`` (pose first).
        """
        if self.joints is None:
            raise ValueError("BodyEstimate.unrolled needs the posed joints (call posed() first)")
        rt = roll.transpose(-1, -2).to(self.joints)
        root = self.joints[:, :1]
        changes: dict = {"joints": roll_about(self.joints, root, rt)}
        if self.vertices is not None:
            changes["vertices"] = roll_about(self.vertices, root, rt)
        if self.rotmat is not None:
            changes["rotmat"] = torch.cat([(rt @ self.rotmat[:, 0])[:, None], self.rotmat[:, 1:]],
                                          1)
        if self.transl is not None:
            changes["transl"] = unroll_translation(self.transl, root[:, 0], rt)
        return replace(self, **changes)

    def detach(self) -> BodyEstimate:
        """A copy without autograd history (tensors and the predicted camera)."""
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                changes[f.name] = value.detach()
        if self.camera is not None:
            cam = self.camera
            changes["camera"] = Camera(cam.intrinsics.detach(), cam.image_size.detach(),
                                       None if cam.cam_to_world is None
                                       else cam.cam_to_world.detach())
        return replace(self, **changes)


def roll_about(points: Tensor, root: Tensor, rotation: Tensor) -> Tensor:
    """``rotation (X - root) + root`` for points ``(B, N, 3)``, roots ``(B, 1, 3)`` and rotations
    ``(B, 3, 3)``."""
    return (points - root) @ rotation.transpose(-1, -2) + root


def unroll_translation(transl: Tensor, root: Tensor, rotation: Tensor) -> Tensor:
    """``rotation (root + t) - root``: translations ``(B, 3)`` or ``(B, M, 3)`` of bodies whose
    root joints are ``root`` (``(B, 3)``, or one per translation), turned by ``rotation
    (B, 3, 3)`` about the camera centre (:meth:`BodyEstimate.unrolled`)."""
    lead = transl.dim() - 2
    r = root if root.shape == transl.shape else root.reshape(root.shape[0], *([1] * lead), 3)
    rot = rotation.reshape(rotation.shape[0], *([1] * lead), 3, 3)
    return ((r + transl)[..., None, :] @ rot.transpose(-1, -2))[..., 0, :] - r
