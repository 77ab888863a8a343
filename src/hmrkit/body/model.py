"""One linear-blend-skinning engine for every body model (SMPL, Anny-24, ...).

A body model is data (:class:`BodyModelData`) plus the two functions below:

- :func:`shape`: rest vertices ``v = T + S beta`` and rest joints ``j = J_T + J_S beta``
  (SMPL eq. 2 with the joint regressor folded into ``J_T``/``J_S``);
- :func:`skin`: optional pose correctives ``v += P (R - I)`` (SMPL eq. 9), the kinematic chain
  ``G_k = G_parent(k) [R_k | j_k - j_parent(k)]`` and the skinning
  ``v'_i = sum_k w_ik G_k (v_i - j_k)`` (SMPL eq. 1 / 10).

Rotations are 3x3 matrices inside the library; see :mod:`hmrkit.geometry.rotations` for
axis-angle and 6D.  Everything is batched, differentiable, dtype/device generic and free of
data-dependent Python control flow (``torch.compile`` friendly).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from hmrkit.io import load_npz_with_header, save_npz_with_header


@dataclass
class BodyModelData:
    """Arrays that define a body model (numpy, float64 where real valued)."""

    name: str
    """Short model name, e.g. ``"smpl-neutral"`` or ``"anny24-adults-k10"``."""
    v_template: np.ndarray
    """(V, 3) rest-pose vertices of the mean shape, metres, y up, facing +z."""
    shapedirs: np.ndarray
    """(V, 3, K) shape directions: vertex offsets per unit shape coefficient."""
    lbs_weights: np.ndarray
    """(V, J) skinning weights, rows sum to one."""
    parents: np.ndarray
    """(J,) parent index of each joint, ``parents[0] == -1``, ``parents[k] < k``."""
    joint_template: np.ndarray
    """(J, 3) rest joints of the mean shape."""
    joint_shapedirs: np.ndarray
    """(J, 3, K) joint offsets per unit shape coefficient (``J_regressor @ shapedirs`` for SMPL)."""
    faces: np.ndarray
    """(F, 3) triangle vertex indices, counter-clockwise seen from outside."""
    joint_names: tuple[str, ...]
    """Name of each of the J joints."""
    posedirs: np.ndarray | None = None
    """(9 (J - 1), V, 3) pose-corrective directions, or None when the model has none."""
    keypoint_regressors: dict[str, np.ndarray] = field(default_factory=dict)
    """Named (K, J + V) linear maps from ``[joints; vertices]`` to a keypoint set."""
    texcoords: np.ndarray | None = None
    """(T, 2) texture coordinates in [0, 1], v up (OBJ convention)."""
    faces_texcoords: np.ndarray | None = None
    """(F, 3) indices into ``texcoords`` per triangle corner."""
    vertex_parts: np.ndarray | None = None
    """(V,) body-part label of each vertex, an index into ``part_names``."""
    part_names: tuple[str, ...] = ()
    """Names of the body parts of ``vertex_parts``."""
    vertex_flip: np.ndarray | None = None
    """(V,) left-right mirror partner of each vertex (x -> -x on the template), if symmetric."""
    meta: dict = field(default_factory=dict)
    """JSON-serialisable provenance (source package versions, build settings, ...)."""

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.parents.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])

    def validate(self, source: str = "body model data") -> None:
        """Raise ``ValueError`` naming ``source`` and the first inconsistent array."""
        V, J, K = self.num_vertices, self.num_joints, self.num_betas
        expect = {
            "v_template": (V, 3),
            "shapedirs": (V, 3, K),
            "lbs_weights": (V, J),
            "joint_template": (J, 3),
            "joint_shapedirs": (J, 3, K),
        }
        for key, shape in expect.items():
            got = tuple(getattr(self, key).shape)
            if got != shape:
                raise ValueError(f"{source}: '{key}' has shape {got}, expected {shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"{source}: 'faces' has shape {self.faces.shape}, expected (F, 3)")
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= V):
            raise ValueError(f"{source}: 'faces' index vertices outside [0, {V})")
        if self.parents[0] != -1 or np.any(self.parents[1:] >= np.arange(1, J)):
            raise ValueError(f"{source}: 'parents' must start with -1 and list parents first")
        if len(self.joint_names) != J:
            raise ValueError(f"{source}: {len(self.joint_names)} joint names for {J} joints")
        if self.posedirs is not None and tuple(self.posedirs.shape) != (9 * (J - 1), V, 3):
            raise ValueError(
                f"{source}: 'posedirs' has shape {tuple(self.posedirs.shape)}, "
                f"expected {(9 * (J - 1), V, 3)}"
            )
        for name, reg in self.keypoint_regressors.items():
            if reg.ndim != 2 or reg.shape[1] != J + V:
                raise ValueError(
                    f"{source}: keypoint regressor '{name}' has shape {reg.shape}, "
                    f"expected (K, {J + V}) over [joints; vertices]"
                )

    # ------------------------------------------------------------------ files
    _ARRAYS = (
        "v_template", "shapedirs", "lbs_weights", "parents", "joint_template",
        "joint_shapedirs", "faces", "posedirs", "texcoords", "faces_texcoords", "vertex_parts",
        "vertex_flip",
    )

    def save(self, path: str | os.PathLike, dtype=np.float32) -> None:
        """Write a compressed ``.npz`` atomically (temporary file, then rename)."""
        arrays = {}
        for key in self._ARRAYS:
            value = getattr(self, key)
            if value is None:
                continue
            if np.issubdtype(value.dtype, np.floating):
                value = value.astype(dtype)
            arrays[key] = value
        for name, reg in self.keypoint_regressors.items():
            arrays[f"keypoints/{name}"] = reg.astype(dtype)
        header = {
            "name": self.name,
            "joint_names": list(self.joint_names),
            "part_names": list(self.part_names),
            "meta": self.meta,
        }
        save_npz_with_header(path, arrays, header)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BodyModelData:
        """Read a file written by :meth:`save`; errors name the file."""
        path = Path(path)
        arrays, header = load_npz_with_header(path, "hmrkit body model")
        kps = {
            k.split("/", 1)[1]: arrays.pop(k) for k in list(arrays) if k.startswith("keypoints/")
        }
        missing = [k for k in cls._ARRAYS[:7] if k not in arrays]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}")
        data = cls(
            name=header["name"],
            joint_names=tuple(header["joint_names"]),
            part_names=tuple(header.get("part_names", ())),
            meta=header.get("meta", {}),
            keypoint_regressors=kps,
            **{k: arrays.get(k) for k in cls._ARRAYS},
        )
        data.validate(str(path))
        return data

    def replace(self, **changes) -> BodyModelData:
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------- functions
def shape(
    betas: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    joint_template: Tensor,
    joint_shapedirs: Tensor,
) -> tuple[Tensor, Tensor]:
    """Rest vertices ``T + S beta`` (B, V, 3) and rest joints ``J_T + J_S beta`` (B, J, 3).

    ``betas`` (B, k) may have fewer coefficients than the model; the rest count as zero.
    """
    k = betas.shape[-1]
    v = v_template + torch.einsum("bk,vdk->bvd", betas, shapedirs[..., :k])
    j = joint_template + torch.einsum("bk,jdk->bjd", betas, joint_shapedirs[..., :k])
    return v, j


@functools.lru_cache(maxsize=16)
def _levels(parents: tuple[int, ...]) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """The joints of a tree by depth (root excluded): ``((joints, their parents), ...)``."""
    depth = [0] * len(parents)
    for k in range(1, len(parents)):
        depth[k] = depth[parents[k]] + 1
    return tuple(
        (tuple(k for k in range(1, len(parents)) if depth[k] == d),
         tuple(parents[k] for k in range(1, len(parents)) if depth[k] == d))
        for d in range(1, max(depth) + 1)
    )


@functools.lru_cache(maxsize=16)
def _level_index(parents: tuple[int, ...], device: torch.device
                 ) -> tuple[tuple[tuple[Tensor, Tensor], ...], Tensor]:
    """Per tree depth: its joints and, for each, where its parent sits in the previous depth;
    and the permutation from depth order (root, depth 1, depth 2, ...) back to joint order."""
    steps, previous, order = [], [0], [0]
    for joints, pars in _levels(parents):
        steps.append((torch.tensor(joints, device=device),
                      torch.tensor([previous.index(p) for p in pars], device=device)))
        previous = list(joints)
        order += joints
    back = torch.tensor([order.index(k) for k in range(len(parents))], device=device)
    return tuple(steps), back


def forward_kinematics(
    rotations: Tensor, rest_joints: Tensor, parents: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    """Kinematic chain.  Returns posed joints (B, J, 3) and skinning transforms (B, J, 3, 4).

    ``rotations`` (B, J, 3, 3) are local joint rotations (joint 0: root orientation).  The
    skinning transform of joint k maps a rest point ``x`` to ``G_k (x - j_k)``, i.e.
    ``R_k^world x + (p_k - R_k^world j_k)`` where ``p_k`` is the posed joint.  The chain
    ``T_k = T_parent(k) [R_k | j_k - j_parent(k)]`` is walked one tree depth at a time (all
    joints of a depth in one batched product of 4x4 transforms, their parents gathered from the
    depth above: SMPL's 23 joints in 8 steps), which keeps fitting loops short.
    """
    par = [0, *parents[1:]]
    offsets = torch.cat([rest_joints[:, :1], rest_joints[:, 1:] - rest_joints[:, par[1:]]], 1)
    bottom = rotations.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(*rotations.shape[:2], 1, 4)
    local = torch.cat([torch.cat([rotations, offsets[..., None]], -1), bottom], -2)
    steps, back = _level_index(tuple(parents), rotations.device)
    depths = [local[:, :1]]
    for joints, parent_slot in steps:
        depths.append(depths[-1][:, parent_slot] @ local[:, joints])
    world = torch.cat(depths, 1)[:, back]
    R, posed = world[..., :3, :3], world[..., :3, 3]
    t = posed - (R @ rest_joints[..., None])[..., 0]
    return posed, torch.cat([R, t[..., None]], dim=-1)


def skin(
    rest_vertices: Tensor,
    rest_joints: Tensor,
    rotations: Tensor,
    parents: tuple[int, ...],
    lbs_weights: Tensor,
    posedirs: Tensor | None = None,
    transl: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Pose rest vertices/joints with linear blend skinning (SMPL eqs. 1, 9, 10).

    Args:
        rest_vertices: (B, V, 3).  rest_joints: (B, J, 3).
        rotations: (B, J, 3, 3) local rotations, joint 0 the root orientation.
        parents: joint parents, ``parents[0] == -1``.
        lbs_weights: (V, J).  posedirs: (9 (J - 1), V, 3) or None (skipped).
        transl: (B, 3) global translation, or None.
    Returns:
        posed vertices (B, V, 3) and posed joints (B, J, 3).
    """
    B = rotations.shape[0]
    if posedirs is not None:
        eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
        pose_feature = (rotations[:, 1:] - eye).reshape(B, -1)
        rest_vertices = rest_vertices + torch.einsum("bp,pvd->bvd", pose_feature, posedirs)
    joints, transforms = forward_kinematics(rotations, rest_joints, parents)
    # blended transforms laid out vertex-last, (B, 3, 4, V): one matrix product, then
    # elementwise work along the long vertex axis (faster, forward and backward, than a
    # batch of V small 3x4 products: docs/fit.md, "Fitter speed")
    J, V = lbs_weights.shape[1], lbs_weights.shape[0]
    blended = transforms.reshape(B, J, 12).transpose(1, 2).reshape(B * 12, J) @ lbs_weights.T
    blended = blended.view(B, 3, 4, V)
    rest = rest_vertices.transpose(-1, -2)[:, None]  # (B, 1, 3, V)
    vertices = ((blended[:, :, :3] * rest).sum(2) + blended[:, :, 3]).transpose(1, 2)
    if transl is not None:
        vertices = vertices + transl[:, None]
        joints = joints + transl[:, None]
    return vertices, joints


# ---------------------------------------------------------------------- module
@dataclass
class BodyOutput:
    """Result of :class:`BodyModel`: posed vertices (B, V, 3) and joints (B, J, 3)."""

    vertices: Tensor
    joints: Tensor


class BodyModel(nn.Module):
    """Differentiable body model on top of :class:`BodyModelData`.

    >>> out = model(global_orient=R0, body_pose=R, betas=beta, transl=t)
    >>> coco = model.keypoints(out, "coco17")

    ``global_orient`` (B, 3, 3), ``body_pose`` (B, J - 1, 3, 3) rotation matrices (use
    :func:`hmrkit.geometry.rotations.to_rotmat` for axis-angle or 6D), ``betas`` (B, k <= K),
    ``transl`` (B, 3).  Any argument may be omitted (identity / zeros).  Cast with
    ``model.to(torch.float64)`` or ``model.to("cuda")`` like any module.
    """

    def __init__(self, data: BodyModelData, dtype: torch.dtype = torch.float32):
        super().__init__()
        data.validate(data.name)
        self.data = data
        self.name = data.name
        self.parents = tuple(int(p) for p in data.parents)
        self.joint_names = data.joint_names

        def buf(key, value):
            self.register_buffer(key, torch.as_tensor(np.asarray(value), dtype=dtype), False)

        buf("v_template", data.v_template)
        buf("shapedirs", data.shapedirs)
        buf("lbs_weights", data.lbs_weights)
        buf("joint_template", data.joint_template)
        buf("joint_shapedirs", data.joint_shapedirs)
        self.register_buffer("faces", torch.as_tensor(data.faces.astype(np.int64)), False)
        self.posedirs: Tensor | None
        if data.posedirs is not None and np.any(data.posedirs):
            buf("posedirs", data.posedirs)
        else:
            self.posedirs = None
        self.keypoint_sets = tuple(["joints", *data.keypoint_regressors])
        for name, reg in data.keypoint_regressors.items():
            buf(f"_kp_{name}", reg)

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[2]

    # -------------------------------------------------------------- checks
    def _check(self, name: str, x: Tensor | None, tail: tuple[int, ...], B: int | None) -> int:
        if x is None:
            return B if B is not None else -1
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.name}: '{name}' must be a torch.Tensor, got {type(x).__name__}")
        want = "(B, " + ", ".join(str(d) for d in tail) + ")"
        if x.ndim != len(tail) + 1 or tuple(x.shape[1:]) != tail:
            raise ValueError(f"{self.name}: '{name}' has shape {tuple(x.shape)}, expected {want}")
        if B not in (None, -1) and x.shape[0] != B:
            raise ValueError(f"{self.name}: '{name}' has batch {x.shape[0]}, others have {B}")
        return x.shape[0]

    def _batch(self, global_orient, body_pose, betas, transl) -> int:
        B = None
        B = self._check("global_orient", global_orient, (3, 3), B)
        B = self._check("body_pose", body_pose, (self.num_joints - 1, 3, 3), B)
        if betas is not None:
            if betas.ndim != 2 or betas.shape[1] > self.num_betas:
                raise ValueError(
                    f"{self.name}: 'betas' has shape {tuple(betas.shape)}, expected (B, k) "
                    f"with k <= {self.num_betas}"
                )
            B = self._check("betas", betas, (betas.shape[1],), B)
        B = self._check("transl", transl, (3,), B)
        return 1 if B in (None, -1) else B

    # -------------------------------------------------------------- forward
    def rest(self, betas: Tensor | None = None, batch_size: int = 1) -> tuple[Tensor, Tensor]:
        """Rest vertices (B, V, 3) and joints (B, J, 3) for ``betas`` (zero pose)."""
        if betas is None:
            betas = self.v_template.new_zeros(batch_size, self.num_betas)
        return shape(
            betas, self.v_template, self.shapedirs, self.joint_template, self.joint_shapedirs
        )

    def forward(
        self,
        global_orient: Tensor | None = None,
        body_pose: Tensor | None = None,
        betas: Tensor | None = None,
        transl: Tensor | None = None,
    ) -> BodyOutput:
        B = self._batch(global_orient, body_pose, betas, transl)
        eye = torch.eye(3, dtype=self.v_template.dtype, device=self.v_template.device)
        if global_orient is None:
            global_orient = eye.expand(B, 3, 3)
        if body_pose is None:
            body_pose = eye.expand(B, self.num_joints - 1, 3, 3)
        rotations = torch.cat([global_orient[:, None], body_pose], dim=1)
        rest_v, rest_j = self.rest(betas, B)
        if rest_v.shape[0] != B:
            rest_v, rest_j = rest_v.expand(B, -1, -1), rest_j.expand(B, -1, -1)
        vertices, joints = skin(
            rest_v, rest_j, rotations, self.parents, self.lbs_weights, self.posedirs, transl
        )
        return BodyOutput(vertices=vertices, joints=joints)

    def keypoints(self, output: BodyOutput, name: str) -> Tensor:
        """Keypoint set ``name`` (B, K, 3); ``"joints"`` is the model's own joints."""
        if name in ("joints", "smpl24"):
            return output.joints
        if name not in self.keypoint_sets:
            raise KeyError(
                f"{self.name}: unknown keypoint set '{name}'; "
                f"this model has {list(self.keypoint_sets)}"
            )
        reg = getattr(self, f"_kp_{name}")
        J = self.num_joints
        # einsum contracts as one matrix product; ``reg @ x`` would broadcast the regressor
        # into a batched product (slower forward and backward)
        return (torch.einsum("kj,bjd->bkd", reg[:, :J], output.joints)
                + torch.einsum("kv,bvd->bkd", reg[:, J:], output.vertices))
