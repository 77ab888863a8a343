"""Anny-24: the open Anny body model in SMPL's 24-joint form.

Anny (``anny`` package, NAVER, Apache-2.0 code / CC0 assets) has 104 bones and 6 phenotypes.
Anny-24 is the same body seen as an SMPL-style model, driven by :mod:`hmrkit.body.model`:

- Anny's bones merged into SMPL's 24-joint tree (skin weights of member bones summed, see
  :data:`JOINT_START_BONES`); joint centres are Anny's bone heads, exact for every shape;
- y up, facing +z: Anny's z-up/-y-facing frame is converted once with :data:`Q`
  (``p' = Q p``, ``R' = Q R Q^T``);
- Anny's rest A-pose is the zero pose;
- a PCA shape space over phenotypes sampled from a population (:data:`POPULATIONS`),
  ``beta ~ N(0, I)`` over it; the full output mesh (13,718 vertices) and the decimated
  training mesh (``notoes_collapse10pc``, 1,229 vertices) share it exactly;
- texture coordinates, body-part labels, COCO-17 and LSP-14 keypoint regressors;
- a table of sampled Anny phenotypes (adults, children) with their betas
  (:func:`load_shape_table`), to draw real Anny shapes without ``anny``.

The built models ship with hmrkit (``hmrkit/body/data``): :func:`load_anny24` needs no
``anny``.  :func:`pose_to_anny` / :func:`anny_to_pose` convert poses to and from Anny's own
pose parameters (``local-ref`` parameterization of ``anny.Anny``, the default).  Rebuild the
shipped files with ``python -m hmrkit.body.anny24 build --out src/hmrkit/body/data`` (needs
``anny``; a cold ``anny`` model build takes minutes and ~800 MB of cache); ``... shapes``
rewrites the shape table alone.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch
from torch import Tensor

from .keypoints import SMPL24_NAMES, SMPL24_PARENTS
from .model import BodyModelData, forward_kinematics

__all__ = [
    "AnnyRig", "JOINT_START_BONES", "PHENOTYPES", "POPULATIONS", "Q", "anny_to_pose",
    "SHAPE_POPULATIONS", "build_anny24", "load_anny24", "load_anny_rig", "load_shape_table",
    "pose_to_anny", "sample_phenotypes", "shape_table_header",
]

ANNY_VERSION = "0.6.2"
"""The ``anny`` release the shipped files were built from."""

Q = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""Anny frame (z up, facing -y) to body frame (y up, facing +z): ``p_body = Q p_anny``."""

PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
"""Anny's default phenotype parameters, in its order, each in [0, 1]."""

POPULATIONS: dict[str, dict[str, tuple[float, float]]] = {
    "adults": {"age": (2.0 / 3.0, 1.0)},
    "children": {"age": (1.0 / 12.0, 5.0 / 12.0)},
    "all": {},
}
"""Phenotype sampling per population: independent uniform draws, on [0, 1] unless listed.

Anny's age anchors are newborn -1/3, baby 0, child 1/3, young 2/3, old 1 (shapes are linearly
interpolated between anchors).  They are MakeHuman's age targets, which MakeHuman puts at
1 (baby), 10 (child), 25 (young) and 90 (old) years; ``anny`` itself states no years.  Read
piecewise linearly in years between those anchors, ``adults`` keeps ages from young to old
(25 to 90 years; rest heights 1.22 to 2.43 m, mean 1.83 m), ``children`` ages 1/12 to 5/12
(about 3 to 14 years; rest heights 0.60 to 2.01 m, mean 1.22 m, with the other phenotypes
uniform as for adults) and ``all`` goes from baby to old (0.45 to 2.42 m, mean 1.50 m).
The shape space is fit on ``adults``: children project onto it with larger errors (see
:func:`shape_table_header`).
"""

MESHES = ("decimated", "full")
SHIPPED = {"population": "adults", "num_betas": 16, "num_samples": 20000, "seed": 0}
"""Settings of the shipped files (load with fewer betas to truncate)."""

JOINT_START_BONES: dict[str, tuple[str, ...]] = {
    "pelvis": ("root",),
    "left_hip": ("upperleg01.L",),
    "right_hip": ("upperleg01.R",),
    "spine1": ("spine04",),
    "left_knee": ("lowerleg01.L",),
    "right_knee": ("lowerleg01.R",),
    "spine2": ("spine02",),
    "left_ankle": ("foot.L",),
    "right_ankle": ("foot.R",),
    "spine3": ("spine01",),
    "left_foot": tuple(f"toe{i}-1.L" for i in range(1, 6)),
    "right_foot": tuple(f"toe{i}-1.R" for i in range(1, 6)),
    "neck": ("neck01",),
    "left_collar": ("clavicle.L",),
    "right_collar": ("clavicle.R",),
    "head": ("head",),
    "left_shoulder": ("upperarm01.L",),
    "right_shoulder": ("upperarm01.R",),
    "left_elbow": ("lowerarm01.L",),
    "right_elbow": ("lowerarm01.R",),
    "left_wrist": ("wrist.L",),
    "right_wrist": ("wrist.R",),
    "left_hand": tuple(f"finger{i}-1.L" for i in range(2, 6)),
    "right_hand": tuple(f"finger{i}-1.R" for i in range(2, 6)),
}
"""The Anny bones that start each SMPL-24 joint.  A joint merges its start bones and their
descendants up to the next start bones (e.g. pelvis: root, pelvis.L/R, spine05; left wrist:
wrist, metacarpals and thumb; left hand: fingers 2-5).  Its centre is the mean head of its
start bones (toes: mean of the 5 first toe segments; hand: mean of the 4 finger roots)."""


# ---------------------------------------------------------------------- bones and joints
def bone_joints(bone_labels: list[str] | tuple[str, ...], bone_parents) -> np.ndarray:
    """SMPL-24 joint index of each Anny bone (bones listed parents first)."""
    start = {b: SMPL24_NAMES.index(j) for j, bones in JOINT_START_BONES.items() for b in bones}
    missing = sorted(set(start) - set(bone_labels))
    if missing:
        raise ValueError(f"Anny rig lacks the bones {missing}")
    joints = np.full(len(bone_labels), -1)
    for b, label in enumerate(bone_labels):
        parent = int(bone_parents[b])
        if label in start:
            joints[b] = start[label]
        elif parent < 0:
            raise ValueError(f"Anny root bone '{label}' is not the pelvis")
        else:
            joints[b] = joints[parent]
    return joints


def joint_centre_matrix(bone_labels: list[str] | tuple[str, ...]) -> np.ndarray:
    """(24, n_bones) map from Anny bone heads to SMPL-24 joint centres."""
    A = np.zeros((len(SMPL24_NAMES), len(bone_labels)))
    for j, name in enumerate(SMPL24_NAMES):
        bones = JOINT_START_BONES[name]
        for b in bones:
            A[j, list(bone_labels).index(b)] = 1.0 / len(bones)
    return A


def check_joint_tree(bone_labels, bone_parents) -> None:
    """Raise if the merged bone tree does not have SMPL-24's parents."""
    joints = bone_joints(bone_labels, bone_parents)
    for j, name in enumerate(SMPL24_NAMES[1:], start=1):
        for bone in JOINT_START_BONES[name]:
            parent_joint = joints[bone_parents[list(bone_labels).index(bone)]]
            if parent_joint != SMPL24_PARENTS[j]:
                raise ValueError(f"bone '{bone}' of joint '{name}' hangs from joint {parent_joint}")


def sample_phenotypes(population: str, num: int, seed: int = 0) -> np.ndarray:
    """(num, 6) phenotypes in :data:`PHENOTYPES` order, drawn as :data:`POPULATIONS` says."""
    if population not in POPULATIONS:
        raise ValueError(f"unknown population '{population}'; known: {sorted(POPULATIONS)}")
    rng = np.random.default_rng(seed)
    ranges = [POPULATIONS[population].get(name, (0.0, 1.0)) for name in PHENOTYPES]
    low, high = np.array(ranges).T
    return low + (high - low) * rng.random((num, len(PHENOTYPES)))


# ---------------------------------------------------------------------- shipped files
def data_file(name: str) -> Path:
    """Path of a shipped file under ``hmrkit/body/data``."""
    return Path(__file__).resolve().parent / "data" / name


NUM_BETAS = 10
"""Shape coefficients Anny-24 is used with by default (of the shipped 16)."""


def load_anny24(mesh: str = "decimated", num_betas: int = NUM_BETAS) -> BodyModelData:
    """The shipped Anny-24 model on the ``"decimated"`` (1,229) or ``"full"`` (13,718) mesh.

    ``num_betas`` keeps the first components of the shipped PCA shape space (nested: the
    truncated model is the model built with that many components).
    """
    if mesh not in MESHES:
        raise ValueError(f"unknown Anny-24 mesh '{mesh}'; choose from {MESHES}")
    data = BodyModelData.load(data_file(f"anny24_{mesh}.npz"))
    data.keypoint_regressors.update(extra_keypoint_regressors(mesh))
    return truncate_betas(data, num_betas)


EXTRA_KEYPOINT_FILES = {"blazepose33": "anny24_blazepose33.npz"}
"""Keypoint regressors shipped in their own files (made after the body model, by their own
scripts), added to both meshes by :func:`load_anny24`: the 33 BlazePose landmarks
(``scripts/make_blazepose_regressor.py``, ``docs/blazepose.md``)."""


@functools.lru_cache(maxsize=2)
def _extra_regressors(mesh: str) -> tuple[tuple[str, np.ndarray], ...]:
    from hmrkit.io import load_npz_with_header

    out = []
    for name, file in EXTRA_KEYPOINT_FILES.items():
        arrays, header = load_npz_with_header(data_file(file), "hmrkit keypoint regressor")
        if header.get("keypoint_set") != name or mesh not in arrays:
            raise ValueError(f"{data_file(file)}: not the '{name}' regressor of the {mesh} mesh")
        out.append((name, np.asarray(arrays[mesh], np.float64)))
    return tuple(out)


def extra_keypoint_regressors(mesh: str) -> dict[str, np.ndarray]:
    """The regressors of :data:`EXTRA_KEYPOINT_FILES` for ``mesh`` (``(K, 24 + V)`` each)."""
    return {name: reg.copy() for name, reg in _extra_regressors(mesh)}


def truncate_betas(data: BodyModelData, num_betas: int) -> BodyModelData:
    """Keep the first ``num_betas`` shape components of ``data``."""
    if not 0 < num_betas <= data.num_betas:
        raise ValueError(f"{data.name}: num_betas must be in [1, {data.num_betas}]")
    base = data.name.rsplit("-k", 1)[0]
    return data.replace(
        name=f"{base}-k{num_betas}",
        shapedirs=data.shapedirs[..., :num_betas],
        joint_shapedirs=data.joint_shapedirs[..., :num_betas],
        meta={**data.meta, "num_betas": num_betas},
    )


SHAPE_TABLE_FILE = "anny24_shapes.npz"
SHAPE_POPULATIONS = ("adults", "children")
"""Populations of the shipped shape table (:func:`load_shape_table`)."""


@functools.lru_cache(maxsize=1)
def _shape_table() -> tuple[dict[str, np.ndarray], dict]:
    from hmrkit.io import load_npz_with_header

    return load_npz_with_header(data_file(SHAPE_TABLE_FILE), "Anny-24 shape table")


def load_shape_table(
    population: str = "adults", num_betas: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sampled Anny shapes of ``population``: ``(phenotypes (N, 6), betas (N, k))``.

    The shipped table (``anny24_shapes.npz``, needs no ``anny``; read once, copies returned)
    holds phenotypes drawn uniformly as :data:`POPULATIONS` says (float16, :data:`PHENOTYPES`
    order) and their least-squares Anny-24 betas (float32, the shipped 16 components, as
    :meth:`AnnyRig.betas_from_phenotypes`); ``num_betas`` keeps the first ``k``.  Projection
    errors and provenance: :func:`shape_table_header`.  Adult betas are about ``N(0, I)`` (the
    PCA was fit on adults); children lie off that distribution (smaller, and with larger
    projection errors: the adult shape space does not span them exactly).
    """
    if population not in SHAPE_POPULATIONS:
        raise ValueError(
            f"no shape table for population '{population}'; choose from {SHAPE_POPULATIONS}"
        )
    arrays, _ = _shape_table()
    betas = arrays[f"{population}/betas"]
    if num_betas is not None:
        if not 0 < num_betas <= betas.shape[1]:
            raise ValueError(f"num_betas must be in [1, {betas.shape[1]}], got {num_betas}")
        betas = betas[:, :num_betas]
    return arrays[f"{population}/phenotypes"].copy(), betas.copy()


def shape_table_header() -> dict:
    """Provenance of the shipped shape table: per population its sampling (seed, count,
    phenotype ranges) and the measured projection errors (mm)."""
    return json.loads(json.dumps(_shape_table()[1]))  # a copy


def _load_npz(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(arrays.pop("header").tobytes().decode())
    return header, arrays


# ---------------------------------------------------------------------- Anny's rig
@dataclass
class AnnyRig:
    """Anny's skeleton as a function of shape (Anny frame), from ``anny24_rig.npz``.

    Rest bone poses ``P_b = [R_b | h_b]`` (bone orientation and head) follow Anny: heads and
    the orientation covariance are linear in the shape, the orientation is its special
    Procrustes projection.  Shape is either Anny-24 ``betas`` (PCA model) or Anny
    ``phenotypes`` (exact; needs the ``anny`` package for the phenotype coefficients).
    """

    bone_labels: tuple[str, ...]
    bone_parents: np.ndarray
    """(n,) parent bone, -1 for the root."""
    bone_joint: np.ndarray
    """(n,) SMPL-24 joint of each bone."""
    joint_centres: np.ndarray
    """(24, n) joint centres from bone heads (:func:`joint_centre_matrix`)."""
    reference_orientations: np.ndarray
    """(n, 3, 3) Anny's reference bone orientations (its ``local-ref`` pose axes)."""
    arrays: dict[str, np.ndarray]
    """Heads and orientation covariances: ``*_anny`` + ``*_basis`` (exact, phenotype
    coefficients), ``*_mean`` + ``*_betas`` (PCA); ``coeff_*``; reference vertex data."""
    meta: dict

    @property
    def num_bones(self) -> int:
        return len(self.bone_labels)

    @classmethod
    def from_arrays(cls, arrays: dict) -> AnnyRig:
        """From the arrays of ``anny24_rig.npz`` (plus ``bone_labels`` and ``meta``)."""
        arrays = dict(arrays)
        return cls(
            bone_labels=tuple(arrays.pop("bone_labels")),
            bone_parents=np.asarray(arrays.pop("bone_parents")),
            bone_joint=np.asarray(arrays.pop("bone_joint")),
            joint_centres=np.asarray(arrays.pop("joint_centres")),
            reference_orientations=np.asarray(arrays.pop("reference_orientations")),
            meta=arrays.pop("meta", {}),
            arrays=arrays,
        )

    def _tensor(self, key: str, like: Tensor) -> Tensor:
        return torch.as_tensor(self.arrays[key], dtype=like.dtype, device=like.device)

    def rest_bone_poses(self, betas: Tensor | None = None, phenotypes: Tensor | None = None):
        """(B, n, 4, 4) Anny rest bone poses for ``betas`` (B, k) or ``phenotypes`` (B, 6)."""
        if (betas is None) == (phenotypes is None):
            raise ValueError("give exactly one of 'betas' and 'phenotypes'")
        if betas is not None:
            k = betas.shape[-1]
            heads = self._tensor("heads_mean", betas) + torch.einsum(
                "bk,ndk->bnd", betas, self._tensor("heads_betas", betas)[..., :k])
            cov = self._tensor("orient_mean", betas) + torch.einsum(
                "bk,nijk->bnij", betas, self._tensor("orient_betas", betas)[..., :k])
        else:
            c = self.phenotype_coefficients(phenotypes)
            heads = self._tensor("heads_anny", c) + torch.einsum(
                "bc,cnd->bnd", c, self._tensor("heads_basis", c))
            cov = self._tensor("orient_anny", c) + torch.einsum(
                "bc,cnij->bnij", c, self._tensor("orient_basis", c))
        return _rigid(roma.special_procrustes(cov), heads)

    def phenotype_coefficients(self, phenotypes: Tensor) -> Tensor:
        """(B, C) Anny's compact phenotype blendshape coefficients; needs ``anny``."""
        return anny_coefficients(
            phenotypes, self._tensor("coeff_mask", phenotypes),
            self._tensor("coeff_projection", phenotypes),
        )

    def betas_from_phenotypes(self, phenotypes: Tensor, num_betas: int | None = None):
        """(B, k) least-squares Anny-24 betas (full-mesh vertex metric) of Anny phenotypes."""
        c = self.phenotype_coefficients(phenotypes)
        to_betas = self._tensor("coeff_to_betas", c)[:, :num_betas]
        return (c - self._tensor("coeff_mean", c)) @ to_betas


def anny_coefficients(phenotypes: Tensor, mask: Tensor, projection: Tensor) -> Tensor:
    """Anny's compact phenotype coefficients (B, C) of phenotypes (B, 6); needs ``anny``."""
    from anny.models.phenotype import make_phenotype_anchors, phenotype_blendshape_weights

    anchors = make_phenotype_anchors(phenotypes.dtype, phenotypes.device)
    w = phenotype_blendshape_weights(phenotypes, list(PHENOTYPES), anchors, mask, False)
    return w @ projection


def load_anny_rig(path: str | Path | None = None) -> AnnyRig:
    """The :class:`AnnyRig` of ``path`` (default: the shipped ``anny24_rig.npz``)."""
    header, arrays = _load_npz(Path(path) if path else data_file("anny24_rig.npz"))
    return AnnyRig.from_arrays({**arrays, **header})


@functools.lru_cache(maxsize=1)
def _default_rig() -> AnnyRig:
    return load_anny_rig()


# ---------------------------------------------------------------------- pose conversion
def _rigid(R: Tensor, t: Tensor) -> Tensor:
    """(..., 4, 4) homogeneous transforms from rotations (..., 3, 3) and translations (..., 3)."""
    top = torch.cat([R, t[..., None]], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def _inverse(T: Tensor) -> Tensor:
    Rt = T[..., :3, :3].transpose(-1, -2)
    return _rigid(Rt, -(Rt @ T[..., :3, 3:])[..., 0])


def _to_anny(T: Tensor) -> Tensor:
    """Body-frame transforms (..., 3, 4) to Anny-frame (..., 4, 4): ``Q^T [A | t] Q``."""
    q = torch.as_tensor(Q, dtype=T.dtype, device=T.device)
    return _rigid(q.T @ T[..., :3, :3] @ q, T[..., :3, 3] @ q)


def _to_body(T: Tensor) -> Tensor:
    """Anny-frame transforms (..., 4, 4) to body-frame (..., 3, 4): ``Q [A | t] Q^T``."""
    q = torch.as_tensor(Q, dtype=T.dtype, device=T.device)
    return torch.cat([q @ T[..., :3, :3] @ q.T, (T[..., :3, 3] @ q.T)[..., None]], dim=-1)


def rest_joints(rest_bone_poses: Tensor, rig: AnnyRig | None = None) -> Tensor:
    """(B, 24, 3) body-frame rest joints from Anny rest bone poses (B, n, 4, 4)."""
    rig = rig or _default_rig()
    A = torch.as_tensor(rig.joint_centres, dtype=rest_bone_poses.dtype)
    heads = rest_bone_poses[..., :3, 3]
    q = torch.as_tensor(Q, dtype=heads.dtype, device=heads.device)
    return (A.to(heads.device) @ heads) @ q.T


def _rest_poses(rig, rest_bone_poses, betas, phenotypes) -> Tensor:
    if rest_bone_poses is not None:
        if betas is not None or phenotypes is not None:
            raise ValueError("give one of 'rest_bone_poses', 'betas', 'phenotypes'")
        return rest_bone_poses
    return rig.rest_bone_poses(betas=betas, phenotypes=phenotypes)


def _reference_offsets(rig: AnnyRig, P: Tensor) -> tuple[Tensor, Tensor]:
    """Reference orientations U (n, 3, 3) and Anny's reference head offsets (B, n, 3)."""
    U = torch.as_tensor(rig.reference_orientations, dtype=P.dtype, device=P.device)
    parents = torch.as_tensor(np.maximum(rig.bone_parents, 0), device=P.device)
    R, h = P[..., :3, :3], P[..., :3, 3]
    A = U @ R.transpose(-1, -2)  # rest -> reference rotation of each bone, I at the root
    A = torch.cat([torch.eye(3, dtype=P.dtype, device=P.device).expand_as(A[:, :1]), A[:, 1:]], 1)
    offsets = (A[:, parents] @ (h - h[:, parents])[..., None])[..., 0]
    return U, offsets


def pose_to_anny(
    global_orient: Tensor,
    body_pose: Tensor,
    *,
    betas: Tensor | None = None,
    phenotypes: Tensor | None = None,
    rest_bone_poses: Tensor | None = None,
    transl: Tensor | None = None,
    rig: AnnyRig | None = None,
) -> Tensor:
    """Anny pose parameters (B, n, 4, 4) (``local-ref``, Anny frame) of an Anny-24 pose.

    ``global_orient`` (B, 3, 3) and ``body_pose`` (B, 23, 3, 3) are body-frame rotation
    matrices, ``transl`` (B, 3).  The shape is given as Anny ``phenotypes`` (B, 6) (exact,
    needs ``anny``), Anny-24 ``betas`` (B, k), or Anny's own ``rest_bone_poses`` (B, n, 4, 4),
    e.g. ``anny_model(phenotype_kwargs=...)["rest_bone_poses"]`` (exact).  Every Anny bone gets
    its joint's skinning transform, so that
    ``anny_model(pose_parameters=params, phenotype_kwargs=phenotypes)["vertices"]`` is the
    Anny-24 skinning of Anny's rest mesh, in Anny's frame (``v @ Q.T``: body frame).
    """
    rig = rig or _default_rig()
    P = _rest_poses(rig, rest_bone_poses, betas, phenotypes).to(global_orient.dtype)
    B = global_orient.shape[0]
    P = P.expand(B, -1, -1, -1) if P.shape[0] == 1 else P
    rotations = torch.cat([global_orient[:, None], body_pose], dim=1)
    _, G = forward_kinematics(rotations, rest_joints(P, rig), SMPL24_PARENTS)
    if transl is not None:
        G = torch.cat([G[..., :3], G[..., 3:] + transl[:, None, :, None]], dim=-1)
    joint = torch.as_tensor(rig.bone_joint, device=P.device)
    W = _to_anny(G)[:, joint] @ P  # posed bone poses
    return local_ref_parameters(W, P, rig)


def local_ref_parameters(W: Tensor, P: Tensor, rig: AnnyRig) -> Tensor:
    """Anny's ``local-ref`` deltas (B, n, 4, 4) giving posed bone poses ``W`` from rest ``P``.

    Inverts Anny's chain ``W_c = W_p [U_p^T D_c U_c | U_p^T (d_c + o_c)]``,
    ``W_0 = [U_0^T D_0 U_0 | U_0^T d_0]`` (``U``: reference orientations, ``o``: reference
    head offsets, see ``anny.utils.kinematics.forward_kinematic``).
    """
    U, offsets = _reference_offsets(rig, P)
    parents = np.maximum(rig.bone_parents, 0)
    L = _inverse(W[:, parents]) @ W  # pose of each bone in its parent's frame
    Up = U[parents]
    D = Up @ L[..., :3, :3] @ U.transpose(-1, -2)
    d = (Up @ L[..., :3, 3:])[..., 0] - offsets
    D0 = U[0] @ W[:, 0, :3, :3] @ U[0].T
    d0 = W[:, 0, :3, 3] @ U[0].T
    D = torch.cat([D0[:, None], D[:, 1:]], dim=1)
    d = torch.cat([d0[:, None], d[:, 1:]], dim=1)
    return _rigid(D, d)


def anny_posed_bones(params: Tensor, P: Tensor, rig: AnnyRig) -> Tensor:
    """Posed bone poses (B, n, 4, 4) of ``local-ref`` parameters (Anny's forward chain)."""
    U, offsets = _reference_offsets(rig, P)
    parents = np.maximum(rig.bone_parents, 0)
    D, d = params[..., :3, :3], params[..., :3, 3]
    Ut = U.transpose(-1, -2)
    K = _rigid(Ut[parents] @ D @ U, (Ut[parents] @ (d + offsets)[..., None])[..., 0])
    W = [_rigid(Ut[0] @ D[:, 0] @ U[0], d[:, 0] @ U[0])]
    for c in range(1, rig.num_bones):
        W.append(W[parents[c]] @ K[:, c])
    return torch.stack(W, dim=1)


def anny_to_pose(
    params: Tensor,
    *,
    betas: Tensor | None = None,
    phenotypes: Tensor | None = None,
    rest_bone_poses: Tensor | None = None,
    rig: AnnyRig | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Anny-24 ``(global_orient, body_pose, transl)`` of Anny ``local-ref`` parameters.

    Each joint takes the transform of its first start bone; exact for parameters made by
    :func:`pose_to_anny` (a projection otherwise: motion of other bones within a joint and
    bone translations are dropped).
    """
    rig = rig or _default_rig()
    P = _rest_poses(rig, rest_bone_poses, betas, phenotypes).to(params.dtype)
    P = P.expand(params.shape[0], -1, -1, -1) if P.shape[0] == 1 else P
    W = anny_posed_bones(params, P, rig)
    first = [rig.bone_labels.index(JOINT_START_BONES[n][0]) for n in SMPL24_NAMES]
    G = _to_body(W[:, first] @ _inverse(P[:, first]))  # joint skinning transforms
    R = G[..., :3]
    local = [R[:, 0]] + [R[:, p].transpose(-1, -2) @ R[:, j] for j, p in
                         enumerate(SMPL24_PARENTS) if p >= 0]
    j0 = rest_joints(P, rig)[:, 0]
    transl = (R[:, 0] @ j0[..., None])[..., 0] + G[:, 0, :, 3] - j0
    return local[0], torch.stack(local[1:], dim=1), transl


# ---------------------------------------------------------------------- build
def build_anny24(
    population: str = "adults",
    num_betas: int = 10,
    num_samples: int = 20000,
    seed: int = 0,
    topology: str = "notoes_collapse10pc",
) -> dict[str, BodyModelData]:
    """Build Anny-24 from ``anny`` (installed): ``{"full": ..., "decimated": ...}``.

    See :mod:`hmrkit.body._anny_build`; the shapes sampled for the PCA are ``num_samples``
    phenotypes of ``population`` drawn with ``seed``.
    """
    from ._anny_build import build

    return build(population, num_betas, num_samples, seed, topology)["models"]


def main(argv: list[str] | None = None) -> None:
    """``python -m hmrkit.body.anny24 build --out DIR``: regenerate the shipped files;
    ``... shapes --out DIR``: only the shape table ``anny24_shapes.npz`` (see
    :func:`hmrkit.body._anny_build.write_shape_table`)."""
    parser = argparse.ArgumentParser(prog="python -m hmrkit.body.anny24")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="build Anny-24 and write its files")
    p.add_argument("--out", type=Path, default=data_file(""))
    p.add_argument("--population", default=SHIPPED["population"], choices=sorted(POPULATIONS))
    p.add_argument("--num-betas", type=int, default=SHIPPED["num_betas"])
    p.add_argument("--num-samples", type=int, default=SHIPPED["num_samples"])
    p.add_argument("--seed", type=int, default=SHIPPED["seed"])
    s = sub.add_parser("shapes", help=f"write only {SHAPE_TABLE_FILE} (shipped shape space)")
    s.add_argument("--out", type=Path, default=data_file(""))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.command == "shapes":
        from ._anny_build import shape_table_errors, write_shape_table

        path, header = write_shape_table(args.out)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        print(json.dumps(shape_table_errors(header), indent=1))
        print(f"written in {time.perf_counter() - start:.1f} s")
        return
    from ._anny_build import build, write

    result = build(args.population, args.num_betas, args.num_samples, args.seed)
    for path in write(result, args.out):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(json.dumps(result["report"], indent=1))
    print(f"built in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
