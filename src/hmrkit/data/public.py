"""Readers for public formats: SPIN / CLIFF preprocessed ``.npz`` files and 3DPW sequence files.

Both readers are map-style datasets that yield one :mod:`Sample <hmrkit.data.sample>` per
person: the square crop of ``crop_size`` pixels around the person's box and the labels of the
schema, in the frames the schema defines (2D in full-image pixels, 3D in the camera frame,
rotations as 3x3 matrices). Augmentation (:class:`hmrkit.data.augment.AugmentConfig`) works as
in :class:`hmrkit.data.dataset.SyntheticDataset`: labels, ``box_center``, the principal point
and ``crop_affine`` live in the *virtual* full image after the view change, and
``meta/source_affine`` maps the stored image's pixels to it.

Pixel convention. hmrkit puts pixel ``i`` over ``[i, i + 1)`` (its centre at ``i + 0.5``); the
stored annotations of both formats put pixel centres at integers (OpenCV / OpenPose). The
readers add ``pixel_offset`` (0.5) to every stored pixel coordinate (``part``, ``center``,
``poses2d``, the principal point of ``cam_intrinsics``). The default principal point of the
npz files (CLIFF: the image centre) is ``(W / 2, H / 2)`` in hmrkit's convention.

SPIN J24 (the order of ``part`` and ``S`` in every SPIN-lineage npz; NOT SMPL's 24 joints)::

     0 R ankle   1 R knee    2 R hip       3 L hip     4 L knee     5 L ankle
     6 R wrist   7 R elbow   8 R shoulder  9 L shoulder 10 L elbow  11 L wrist
    12 neck (LSP)          13 head top (LSP)       14 pelvis (MPII)   15 thorax (MPII)
    16 spine (H36M)        17 jaw (H36M)           18 head (H36M)
    19 nose  20 L eye  21 R eye  22 L ear  23 R ear

so ``keypoints2d/lsp14 = part[:14]`` and COCO-17 takes the face from ``part[19:24]`` and the
body from the LSP joints (:data:`J24_TO_COCO17`; SPIN itself identifies COCO's hips with LSP's).

Extra keys (``meta/*``, allowed by :func:`hmrkit.data.sample.check_sample`) that carry what the
schema has no key for:

- ``meta/body_model`` () int64: the body model that ``global_orient`` / ``body_pose`` /
  ``betas`` / ``transl`` refer to (:data:`hmrkit.body.labels.LABEL_BODY_MODELS`; SMPL for both
  formats): metrics and losses pose them with SMPL (:class:`hmrkit.body.labels.LabelBodies`);
- ``meta/gender`` () int64: 0 neutral, 1 male, 2 female
  (:data:`hmrkit.body.labels.GENDER_CODES`);
- ``meta/has_transl`` () float: ``transl`` is a label (``has_smpl`` covers pose and shape only);
- ``meta/root_relative3d`` () float: 1 when the 3D keypoints are relative to an unknown root
  point (SPIN's ``S`` is centred on the H36M pelvis): only differences between joints hold;
- ``meta/keypoints3d_conf/smpl24`` (24,, for ``joints3d``) and ``meta/keypoints3d_conf/lsp14``
  (14,) float {0, 1}: which 3D joints are labelled (``has_joints3d`` is 1 when any is);
- ``meta/source_affine`` (2, 3): stored full-image pixels -> the sample's full-image pixels;
- ``meta/index`` (3,) int64: ``(row, 0, 0)`` of the npz, ``(sequence, frame, actor)`` of 3DPW.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hmrkit.body.keypoints import (
    COCO17_NAMES,
    LSP14_FROM_SMPL24,
    LSP14_NAMES,
    get_keypoint_set,
)
from hmrkit.body.labels import GENDER_CODES, body_model_code
from hmrkit.body.smpl import SMPL_NUM_BETAS
from hmrkit.data.augment import (
    AugmentConfig,
    EpochSeededAugmentation,
    augmented_box,
    occluder_layer,
    transform_labels,
)
from hmrkit.data.images import ImageReadError, person_crop, read_image
from hmrkit.geometry.cameras import default_focal
from hmrkit.geometry.crops import (
    SPIN_SCALE_UNIT,
    box_from_keypoints,
)
from hmrkit.geometry.rotations import axis_angle_to_rotmat

__all__ = [
    "SpinNpzDataset",
    "PW3DDataset",
    "read_pw3d_sequence",
    "smpl_world_to_camera",
    "rest_pelvis",
    "parse_gender",
    "SPIN_J24_NAMES",
    "J24_TO_COCO17",
    "J24_TO_LSP14",
    "J24_TO_SMPL24",
    "OPENPOSE18_NAMES",
    "OPENPOSE18_TO_COCO17",
    "SMPL_LABELS",
    "PW3D_SPLITS",
    "SPIN_REQUIRED_KEYS",
    "PW3D_REQUIRED_KEYS",
]

# --------------------------------------------------------------------------- keypoint orders

SPIN_J24_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "neck", "head_top", "pelvis_mpii", "thorax_mpii", "spine_h36m", "jaw_h36m", "head_h36m",
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
)
"""SPIN's 24 ground-truth joints ("J24"), the order of ``part`` and ``S`` (see module doc)."""

J24_TO_LSP14 = tuple(range(14))
"""J24 index of each LSP-14 keypoint (the first 14 J24 joints are LSP's, in LSP-14 order)."""

J24_TO_COCO17 = tuple(SPIN_J24_NAMES.index(n) for n in COCO17_NAMES)
"""J24 index of each COCO-17 keypoint: ``[19, 20, 21, 22, 23, 9, 8, 10, 7, 11, 6, 3, 2, 4, 1,
5, 0]``."""

J24_TO_SMPL24 = {smpl: SPIN_J24_NAMES.index(name) for name, smpl in LSP14_FROM_SMPL24.items()}
"""SMPL-24 index -> J24 index for the 13 LSP joints hmrkit identifies with SMPL joints
(:data:`hmrkit.body.keypoints.LSP14_FROM_SMPL24`); the other SMPL joints have no J24 match."""

OPENPOSE18_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
    "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
)
"""OpenPose COCO-18 order of 3DPW's ``poses2d``."""

OPENPOSE18_TO_COCO17 = tuple(OPENPOSE18_NAMES.index(n) for n in COCO17_NAMES)
"""OpenPose-18 index of each COCO-17 keypoint: ``[0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8,
12, 9, 13, 10]`` (left stays left)."""

_LSP14_FROM_SMPL = tuple(LSP14_FROM_SMPL24.get(n, -1) for n in LSP14_NAMES)
"""SMPL-24 index of each LSP-14 keypoint, -1 for the head top (no SMPL joint)."""

SMPL_LABELS = body_model_code("smpl")
"""``meta/body_model`` of both formats' labels (SMPL parameters,
:data:`hmrkit.body.labels.LABEL_BODY_MODELS`)."""

PW3D_SPLITS = ("train", "validation", "test")
"""Splits of 3DPW (``sequenceFiles/<split>``)."""

SPIN_REQUIRED_KEYS = ("imgname", "center", "scale", "part")
"""Keys every SPIN-lineage npz must hold; ``S``, ``pose`` + ``shape`` (+ ``has_smpl``),
``gender``, CLIFF's ``global_t`` and ``focal_l`` are optional (SPIN's own rules)."""

PW3D_REQUIRED_KEYS = (
    "sequence", "genders", "poses", "betas", "trans", "poses2d", "jointPositions",
    "cam_poses", "cam_intrinsics", "campose_valid",
)
"""Keys every 3DPW sequence file must hold (``img_frame_ids`` is optional)."""


def parse_gender(value: Any) -> int:
    """``'m'`` / ``'male'`` -> 1, ``'f'`` / ``'female'`` -> 2, anything else -> 0 (neutral)."""
    if isinstance(value, bytes):
        value = value.decode("latin1")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    key = str(value).strip().lower()
    return {"m": 1, "male": 1, "f": 2, "female": 2}.get(key, 0)


# --------------------------------------------------------------------------- SMPL helpers


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def rest_pelvis(body_model, betas) -> np.ndarray:
    """Rest-pose root joint ``J0(beta) = J_T[0] + J_S[0] beta`` (3,) of ``body_model``.

    ``body_model`` is a :class:`hmrkit.body.model.BodyModel` or ``BodyModelData`` (anything with
    ``joint_template (J, 3)`` and ``joint_shapedirs (J, 3, K)``); ``betas`` has ``k <= K``
    entries.
    """
    jt = _to_numpy(body_model.joint_template)[0]
    js = _to_numpy(body_model.joint_shapedirs)[0]
    betas = _to_numpy(betas).reshape(-1)
    if betas.shape[0] > js.shape[1]:
        name = getattr(body_model, "name", type(body_model).__name__)
        raise ValueError(
            f"body model '{name}' has {js.shape[1]} shape coefficients, the labels have "
            f"{betas.shape[0]}: its rest pelvis cannot be computed exactly"
        )
    return jt + js[:, : betas.shape[0]] @ betas


def smpl_world_to_camera(global_orient, transl, cam_rotation, cam_translation, pelvis):
    """World-frame SMPL root rotation and translation -> camera frame (numpy, float64).

    SMPL rotates the body about its rest root joint ``J0`` (which depends on beta), so a body
    ``X = R (M - J0) + J0 + t`` seen by a camera ``X_c = R_c X + t_c`` is the SMPL body with::

        global_orient_c = R_c R
        transl_c        = R_c (J0 + t) + t_c - J0

    (``M`` the body posed with an identity root; ``J0 + t`` is the world root joint). Returns
    ``(global_orient_c (3, 3), transl_c (3,))``.
    """
    rc = _to_numpy(cam_rotation)
    j0 = _to_numpy(pelvis).reshape(3)
    orient = rc @ _to_numpy(global_orient)
    tc = rc @ (j0 + _to_numpy(transl).reshape(3)) + _to_numpy(cam_translation).reshape(3) - j0
    return orient, tc


def _model_for(body_model, gender: int, source: str):
    """The body model of ``gender`` from a model or a ``{gender name: model}`` mapping."""
    if body_model is None or not isinstance(body_model, Mapping):
        return body_model
    name = {v: k for k, v in GENDER_CODES.items()}[gender]
    if name in body_model:
        return body_model[name]
    raise KeyError(
        f"{source}: no '{name}' body model given (have {sorted(body_model)}); pass a model for "
        f"every gender of the data, or one model for all"
    )


# --------------------------------------------------------------------------- shared sample code


@dataclass
class _Person:
    """One person's labels in the stored image, before augmentation and cropping."""

    labels: dict[str, np.ndarray]
    center: np.ndarray
    size: float
    focal_xy: np.ndarray
    pelvis: np.ndarray | None = None
    """Camera-frame root joint (needed to move ``transl`` under a view change)."""
    flags: dict[str, float] = field(default_factory=dict)
    conf: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, np.ndarray] = field(default_factory=dict)


def _eye(n: int | None = None) -> np.ndarray:
    return np.eye(3) if n is None else np.tile(np.eye(3), (n, 1, 1))


def _vis(x) -> np.ndarray:
    return (np.asarray(x, dtype=np.float64) > 0).astype(np.float64)


class _PublicDataset(EpochSeededAugmentation, Dataset):
    """Image loading with optional skipping, augmentation and cropping for the readers."""

    def __init__(
        self,
        crop_size: int,
        augment: AugmentConfig | None,
        skip_bad: bool,
        pixel_offset: float,
        dense_zeros: bool,
    ):
        name = type(self).__name__
        if not isinstance(crop_size, (int, np.integer)) or isinstance(crop_size, bool):
            raise ValueError(f"{name}: crop_size must be an int, got {crop_size!r}")
        if crop_size < 8:
            raise ValueError(f"{name}: crop_size must be >= 8, got {crop_size}")
        if augment is not None and not isinstance(augment, AugmentConfig):
            raise TypeError(
                f"{name}: augment must be an AugmentConfig or None, got {type(augment).__name__}"
            )
        self.crop_size = int(crop_size)
        self.augment = augment
        self.skip_bad = bool(skip_bad)
        self.pixel_offset = float(pixel_offset)
        self.dense_zeros = bool(dense_zeros)
        self.epoch = 0
        self.num_skipped = 0
        """Unreadable images met so far with ``skip_bad`` (per process: DataLoader workers
        count their own)."""
        self.bad_images: dict[str, str] = {}
        """Path -> reason of every unreadable image met so far (per process)."""
        self._bad_rows: set[int] = set()

    # subclasses define __len__, image_path(i) and _person(i, width, height)

    def image_path(self, index: int) -> Path:
        raise NotImplementedError

    def _person(self, index: int, width: int, height: int) -> _Person:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        name = type(self).__name__
        n = len(self)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"{name}: index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"{name}: index {index} out of range [0, {n})")
        index = int(index) % n
        for step in range(n):
            row = (index + step) % n
            if row in self._bad_rows:
                continue
            path = self.image_path(row)
            try:
                image = read_image(path)
            except ImageReadError as err:
                if not self.skip_bad:
                    raise ImageReadError(
                        err.path, f"{err.reason} (sample {row} of {name}; pass skip_bad=True "
                        "to skip unreadable images)"
                    ) from None
                self._bad_rows.add(row)
                self.bad_images[str(err.path)] = err.reason
                self.num_skipped += 1
                continue
            return self._sample(row, image)
        raise ImageReadError(
            self.image_path(index), f"{name}: no readable image in the whole dataset"
        )

    def _sample(self, index: int, image: np.ndarray) -> dict[str, torch.Tensor]:
        height, width = image.shape[:2]
        person = self._person(index, width, height)
        labels = dict(person.labels)
        wh = np.array([width, height], dtype=np.float64)
        pp = np.asarray(labels["principal_point"], dtype=np.float64)

        params = self.augmentation_params(index)
        center, size, view = augmented_box(params, person.center, person.size, wh, pp)
        source = view.affine()
        transl = labels.pop("transl")
        has_transl = person.flags.get("meta/has_transl", 0.0)
        labels = transform_labels(labels, view)
        conf = dict(person.conf)
        if not view.is_identity:
            if person.pelvis is None:  # rolling needs the root joint: drop the label
                transl, has_transl = np.zeros(3), 0.0
            else:  # as in augment.transform_labels: L p - p + t
                p = np.asarray(person.pelvis, dtype=np.float64)
                transl = view.linear3d() @ p - p + transl
            if view.flip:
                conf = {
                    k: v[list(get_keypoint_set(k.rsplit("/", 1)[-1]).flip_permutation)]
                    for k, v in conf.items()
                }

        res = self.crop_size
        cut = person_crop(image, center, size, res, source=source, gain=params.color_gain,
                          occluders=occluder_layer(params, res))
        out: dict[str, Any] = cut.sample_keys(rois=False)
        out["camera/intrinsics"] = np.array([*person.focal_xy, *labels.pop("principal_point")])
        out["camera/image_size"] = wh
        out["camera/to_world"] = labels.pop("cam_to_world")
        out.update(labels)
        out["transl"] = transl
        out.update({k: v for k, v in person.flags.items() if k != "meta/has_transl"})
        out["has_keypoints2d"] = float(
            any(out[k][:, 2].any() for k in out if k.startswith("keypoints2d/"))
        )
        out["has_world"] = 0.0
        if self.dense_zeros:
            out["mask"] = np.zeros((res, res), np.float32)
            out["iuv"] = np.zeros((3, res, res), np.float32)
            out["depth"] = np.zeros((res, res), np.float32)
        out["has_mask"] = out["has_iuv"] = out["has_depth"] = 0.0
        out["meta/has_transl"] = has_transl
        out["meta/source_affine"] = source
        out.update({f"meta/{k}" if not k.startswith("meta/") else k: v for k, v in conf.items()})
        sample = {
            k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in out.items()
        }
        for key, value in person.meta.items():
            sample[key] = torch.as_tensor(np.asarray(value), dtype=torch.int64)
        return sample


# --------------------------------------------------------------------------- SPIN / CLIFF npz


def _load_npz(path: Path, allow_pickle: bool) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=allow_pickle) as f:
            return {k: f[k] for k in f.files}
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise ValueError(
                f"{path}: holds object arrays (pickled); pass allow_pickle=True if you trust "
                "the file"
            ) from err
        raise ValueError(f"{path}: not a readable npz file ({err})") from err
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable npz file ({err})") from err


class SpinNpzDataset(_PublicDataset):
    """Persons of a SPIN-lineage preprocessed ``.npz`` file (SPIN, CLIFF, ...) as Samples.

    Per row: the image ``image_root / imgname``; the box of side ``scale * 200`` around
    ``center`` (SPIN's crop); ``part`` (J24 pixels + visibility) -> ``keypoints2d/lsp14``
    (``part[:14]``), ``keypoints2d/coco17`` (:data:`J24_TO_COCO17`) and, with
    ``body_model_joints="smpl24"``, the 13 SMPL joints of :data:`J24_TO_SMPL24` in
    ``keypoints2d/smpl24`` (others invisible); ``S`` (J24 metres + confidence, camera
    orientation, centred on the H36M pelvis) -> ``keypoints3d/lsp14`` = ``S[:14]`` (and the same
    13 SMPL joints of ``joints3d``), with ``meta/root_relative3d = 1``; ``pose`` (72 axis-angle,
    root in the camera frame) -> ``global_orient`` / ``body_pose``; ``shape`` -> ``betas`` (SMPL
    betas: ``meta/body_model = 1``); ``has_smpl`` (1 when absent but ``pose`` is present, as in
    SPIN); ``gender`` -> ``meta/gender``; CLIFF's ``global_t`` -> ``transl`` (camera frame,
    ``meta/has_transl``) and ``focal_l`` -> the focal of ``camera/intrinsics`` (else
    ``sqrt(W^2 + H^2)``). The principal point is the image centre; the image size comes from
    the image.

    Args:
        npz_path: the ``.npz`` file.
        image_root: folder the ``imgname`` entries are relative to.
        crop_size: side of the square crop in pixels.
        augment: training augmentation, or None.
        body_model_joints: ``"smpl24"`` fills the SMPL joints that match J24 joints (see above);
            None leaves ``keypoints2d/smpl24`` / ``joints3d`` empty.
        skip_bad: skip a missing or corrupt image (the next readable row is returned, counted in
            :attr:`num_skipped` / :attr:`bad_images`) instead of raising.
        body_model: optional SMPL model (or ``{"neutral"|"male"|"female": model}``) whose rest
            pelvis makes ``transl`` exact under rotation / flip augmentation; without it,
            augmented samples that are rolled or mirrored get ``meta/has_transl = 0``.
        pixel_offset: added to stored pixel coordinates (see module doc).
        dense_zeros: add all-zero ``mask`` / ``iuv`` / ``depth`` (``has_* = 0``) so samples
            collate with datasets that have them.
        allow_pickle: allow object arrays in the npz (only for trusted files).
    """

    def __init__(
        self,
        npz_path,
        image_root,
        crop_size: int = 224,
        augment: AugmentConfig | None = None,
        body_model_joints: str | None = "smpl24",
        skip_bad: bool = False,
        body_model=None,
        pixel_offset: float = 0.5,
        dense_zeros: bool = False,
        allow_pickle: bool = False,
    ):
        super().__init__(crop_size, augment, skip_bad, pixel_offset, dense_zeros)
        if body_model_joints not in ("smpl24", None):
            raise ValueError(
                f"SpinNpzDataset: body_model_joints must be 'smpl24' or None, got "
                f"{body_model_joints!r}"
            )
        self.body_model_joints = body_model_joints
        self.body_model = body_model
        self.path = Path(npz_path)
        self.image_root = Path(image_root)
        if not self.path.is_file():
            raise FileNotFoundError(f"SpinNpzDataset: npz file {self.path} does not exist")
        if not self.image_root.is_dir():
            raise FileNotFoundError(
                f"SpinNpzDataset: image folder {self.image_root} does not exist"
            )
        data = _load_npz(self.path, allow_pickle)
        for key in SPIN_REQUIRED_KEYS:
            if key not in data:
                raise ValueError(
                    f"{self.path}: missing key '{key}' (a SPIN npz needs "
                    f"{list(SPIN_REQUIRED_KEYS)}; found {sorted(data)})"
                )
        self.imgname = [_as_str(v) for v in np.asarray(data["imgname"]).reshape(-1)]
        n = len(self.imgname)
        if n == 0:
            raise ValueError(f"{self.path}: 'imgname' is empty")

        def arr(key: str, shape: tuple[int, ...], alt: tuple[int, ...] | None = None):
            a = np.asarray(data[key])
            if a.dtype.kind not in "fiub":
                raise ValueError(f"{self.path}: '{key}' has dtype {a.dtype}, expected numbers")
            a = a.astype(np.float64)
            if a.shape != (n, *shape):
                if alt is not None and a.shape == (n, *alt):
                    return a.reshape(n, *shape)
                raise ValueError(
                    f"{self.path}: '{key}' has shape {a.shape}, expected {(n, *shape)} "
                    f"({n} rows, as 'imgname')"
                )
            return a

        self.center = arr("center", (2,))
        self.scale = arr("scale", (), (1,))
        self.part = arr("part", (24, 3))
        self.S = None
        if "S" in data:
            s = np.asarray(data["S"])
            self.S = arr("S", (24, 3)) if s.ndim == 3 and s.shape[-1] == 3 else arr("S", (24, 4))
            if self.S.shape[-1] == 3:
                self.S = np.concatenate([self.S, np.ones((n, 24, 1))], axis=-1)
        self.pose = self.shape = None
        self.has_smpl = np.zeros(n)
        if "pose" in data or "shape" in data:
            for key in ("pose", "shape"):
                if key not in data:
                    other = "shape" if key == "pose" else "pose"
                    raise ValueError(
                        f"{self.path}: missing key '{key}' (it has '{other}'; SMPL labels need "
                        "both 'pose' and 'shape')"
                    )
            self.pose = arr("pose", (72,))
            betas = np.asarray(data["shape"])
            if betas.ndim != 2 or betas.shape[0] != n:
                raise ValueError(
                    f"{self.path}: 'shape' has shape {betas.shape}, expected ({n}, K)"
                )
            self.shape = betas.astype(np.float64)
            self.has_smpl = arr("has_smpl", ()) if "has_smpl" in data else np.ones(n)
        self.gender = (
            np.array([parse_gender(g) for g in np.asarray(data["gender"]).reshape(-1)])
            if "gender" in data else np.zeros(n, dtype=np.int64)
        )
        if len(self.gender) != n:
            raise ValueError(f"{self.path}: 'gender' has {len(self.gender)} rows, expected {n}")
        self.global_t = arr("global_t", (3,)) if "global_t" in data else None
        self.focal_l = arr("focal_l", (), (1,)) if "focal_l" in data else None

    def __len__(self) -> int:
        return len(self.imgname)

    def image_path(self, index: int) -> Path:
        """Full path of row ``index``'s image."""
        return self.image_root / self.imgname[index]

    def __repr__(self) -> str:
        return (
            f"SpinNpzDataset('{self.path}', samples={len(self)}, crop_size={self.crop_size}, "
            f"augment={self.augment is not None})"
        )

    def _person(self, i: int, width: int, height: int) -> _Person:
        off = self.pixel_offset
        part = self.part[i]
        vis = _vis(part[:, 2])
        kp = np.concatenate([part[:, :2] + off, vis[:, None]], axis=1)
        labels: dict[str, np.ndarray] = {
            "keypoints2d/lsp14": kp[list(J24_TO_LSP14)],
            "keypoints2d/coco17": kp[list(J24_TO_COCO17)],
            "keypoints2d/smpl24": np.zeros((24, 3)),
            "joints3d": np.zeros((24, 3)),
            "keypoints3d/lsp14": np.zeros((14, 3)),
        }
        conf24, conf14 = np.zeros(24), np.zeros(14)
        smpl_idx, j24_idx = list(J24_TO_SMPL24), list(J24_TO_SMPL24.values())
        if self.body_model_joints == "smpl24":
            labels["keypoints2d/smpl24"][smpl_idx] = kp[j24_idx]
        if self.S is not None:
            s = self.S[i]
            c = _vis(s[:, 3])
            labels["keypoints3d/lsp14"] = s[:14, :3] * c[:14, None]
            conf14 = c[:14]
            if self.body_model_joints == "smpl24":
                labels["joints3d"][smpl_idx] = s[j24_idx, :3] * c[j24_idx, None]
                conf24[smpl_idx] = c[j24_idx]
        has_smpl = float(self.has_smpl[i] > 0) if self.pose is not None else 0.0
        if self.pose is not None:
            aa = torch.from_numpy(self.pose[i].reshape(24, 3))
            rot = axis_angle_to_rotmat(aa).numpy()
            labels["global_orient"], labels["body_pose"] = rot[0], rot[1:]
            labels["betas"] = self.shape[i]
        else:
            labels["global_orient"], labels["body_pose"] = _eye(), _eye(23)
            labels["betas"] = np.zeros(SMPL_NUM_BETAS)
        labels["transl"] = np.zeros(3)
        has_transl, pelvis = 0.0, None
        if self.global_t is not None and has_smpl:
            labels["transl"] = self.global_t[i]
            has_transl = 1.0
            model = _model_for(self.body_model, int(self.gender[i]), str(self.path))
            if model is not None:
                pelvis = rest_pelvis(model, labels["betas"]) + self.global_t[i]
        labels["world_global_orient"] = _eye()
        labels["cam_to_world"] = _eye()
        labels["principal_point"] = np.array([width / 2, height / 2])
        f = float(self.focal_l[i]) if self.focal_l is not None else float(
            default_focal(torch.tensor([width, height], dtype=torch.float64)))
        return _Person(
            labels=labels,
            center=self.center[i] + off,
            size=float(self.scale[i]) * SPIN_SCALE_UNIT,
            focal_xy=np.array([f, f]),
            pelvis=pelvis,
            flags={
                "has_joints3d": float(conf14.any() or conf24.any()),
                "has_smpl": has_smpl,
                "meta/has_transl": has_transl,
                "meta/root_relative3d": 1.0,
            },
            conf={"keypoints3d_conf/smpl24": conf24, "keypoints3d_conf/lsp14": conf14},
            meta={
                "meta/index": np.array([i, 0, 0]),
                "meta/gender": np.array(int(self.gender[i])),
                "meta/body_model": np.array(SMPL_LABELS),
            },
        )


def _as_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, np.ndarray):
        return _as_str(value.item())
    return str(value)


# --------------------------------------------------------------------------- 3DPW


def _unpickle(path: Path) -> Any:
    """Load a (Python 2) pickle of plain numpy / builtin data, refusing any other global."""
    from hmrkit.body.smpl import _SMPLUnpickler  # restricted: numpy and builtin data only

    try:
        with open(path, "rb") as f:
            return _SMPLUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path}: not a 3DPW sequence file ({err})") from err
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise ValueError(f"{path}: unreadable pickle ({type(err).__name__}: {err})") from err


def read_pw3d_sequence(path) -> dict[str, Any]:
    """Read and check one 3DPW sequence file (``sequenceFiles/<split>/<name>.pkl``).

    Returns a dict with ``sequence`` (str), ``genders`` (A,) int (:data:`GENDER_CODES`),
    per-actor lists ``poses`` (N, 72), ``betas`` (10,), ``trans`` (N, 3), ``poses2d``
    (N, 3, 18), ``jointPositions`` (N, 24, 3), ``campose_valid`` (N,) bool, and
    ``cam_poses`` (N, 4, 4) world -> camera, ``cam_intrinsics`` (3, 3), ``img_frame_ids`` (N,)
    int (``arange(N)`` when absent). ``texture_maps`` and ``v_template_clothed`` are dropped.
    Raises ``ValueError`` naming the file and the key for a missing key or a bad shape.
    """
    path = Path(path)
    data = _unpickle(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a {type(data).__name__}, expected a dict of arrays")
    data = {_as_str(k): v for k, v in data.items()}
    for key in PW3D_REQUIRED_KEYS:
        if key not in data:
            raise ValueError(
                f"{path}: missing key '{key}' (a 3DPW sequence file needs "
                f"{list(PW3D_REQUIRED_KEYS)}; found {sorted(data)})"
            )

    def array(value, key: str, shape: tuple) -> np.ndarray:
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: '{key}' is not a numeric array ({err})") from err
        ok = a.ndim == len(shape) and all(
            s is None or s == d for s, d in zip(shape, a.shape, strict=True)
        )
        if not ok:
            want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{path}: '{key}' has shape {a.shape}, expected {want}")
        return a

    cam_poses = array(data["cam_poses"], "cam_poses", (None, 4, 4))
    n = cam_poses.shape[0]
    actors = len(data["poses"])
    if actors == 0:
        raise ValueError(f"{path}: 'poses' holds no actor")
    out: dict[str, Any] = {
        "sequence": _as_str(data["sequence"]),
        "cam_poses": cam_poses,
        "cam_intrinsics": array(data["cam_intrinsics"], "cam_intrinsics", (3, 3)),
    }
    per_actor = {
        "poses": (n, 72), "betas": None, "trans": (n, 3), "poses2d": (n, 3, 18),
        "jointPositions": (n, 72), "campose_valid": (n,), "genders": None,
    }
    for key, shape in per_actor.items():
        values = list(data[key])
        if len(values) != actors:
            raise ValueError(
                f"{path}: '{key}' has {len(values)} entries, expected one per actor ({actors}, "
                "as 'poses')"
            )
        if key == "genders":
            out[key] = np.array([parse_gender(g) for g in values], dtype=np.int64)
        elif key == "betas":
            betas = [np.asarray(b, dtype=np.float64).reshape(-1) for b in values]
            if any(len(b) < SMPL_NUM_BETAS for b in betas):
                raise ValueError(f"{path}: 'betas' has fewer than {SMPL_NUM_BETAS} coefficients "
                                 "for an actor")
            out[key] = [b[:SMPL_NUM_BETAS] for b in betas]
        else:
            arrays = [array(v, f"{key}[{a}]", shape) for a, v in enumerate(values)]
            if key == "jointPositions":
                arrays = [v.reshape(n, 24, 3) for v in arrays]
            if key == "campose_valid":
                arrays = [v > 0 for v in arrays]
            out[key] = arrays
    if "img_frame_ids" in data:
        ids = np.asarray(data["img_frame_ids"]).reshape(-1).astype(np.int64)
        if len(ids) != n:
            raise ValueError(f"{path}: 'img_frame_ids' has {len(ids)} entries, expected {n}")
        out["img_frame_ids"] = ids
    else:
        out["img_frame_ids"] = np.arange(n, dtype=np.int64)
    return out


class PW3DDataset(_PublicDataset):
    """One Sample per (sequence, frame, actor) of 3DPW (SPIN's evaluation protocol).

    Reads ``root/sequenceFiles/<split>/*.pkl`` (:func:`read_pw3d_sequence`); images are
    ``root/imageFiles/<sequence>/image_<frame:05d>.jpg``. Per person and frame:

    - box: the tight box of the visible ``poses2d`` keypoints (confidence > 0), side 1.2 times
      its longer side (:func:`hmrkit.geometry.crops.box_from_keypoints`); frames without a
      visible keypoint are left out (:attr:`num_without_keypoints`);
    - ``keypoints2d/coco17``: ``poses2d`` (OpenPose-18) through :data:`OPENPOSE18_TO_COCO17`,
      visible where the confidence is > 0;
    - ``joints3d``: ``jointPositions`` (world) in the camera frame, ``R_c X + t_c`` with
      ``cam_poses = [R_c | t_c]`` (world -> camera); ``keypoints3d/lsp14``: its 13 joints of
      :data:`hmrkit.body.keypoints.LSP14_FROM_SMPL24` (head top unlabelled, see
      ``meta/keypoints3d_conf/lsp14``); ``keypoints2d/smpl24`` and ``keypoints2d/lsp14``: those
      joints projected with the intrinsics, "visible" = in front of the camera and inside the
      image (no occlusion reasoning);
    - ``global_orient = R_c R_world``, ``body_pose`` from ``poses``, ``betas`` = ``betas[:10]``
      of the gender-specific SMPL (``meta/gender``, ``meta/body_model = 1``);
    - ``transl``: with a ``body_model``, ``R_c (J0 + t) + t_c - J0``
      (:func:`smpl_world_to_camera`, ``J0`` the rest pelvis of ``betas``,
      :func:`rest_pelvis`) and ``meta/has_transl = 1``; without one, zeros and
      ``meta/has_transl = 0`` (``joints3d[0]`` still gives the camera-frame root joint, so
      ``transl = joints3d[0] - J0`` whenever ``jointPositions`` come from the same model);
    - ``camera/intrinsics``: ``f_x``, ``f_y`` of ``cam_intrinsics`` and its ``(c_x, c_y)`` +
      ``pixel_offset``; ``world_global_orient`` = ``R_world``, ``camera/to_world = R_c^T``, but
      ``has_world = 0``: 3DPW's world frame is not the gravity-aligned, ground-at-zero frame
      of the schema;
    - frames whose ``campose_valid`` is 0 are left out with ``valid_only`` (SPIN's protocol);
      otherwise kept with ``has_smpl = has_joints3d = meta/has_transl = 0`` and the projected
      keypoints invisible (the OpenPose keypoints stay).

    Args:
        root: the 3DPW folder (holding ``sequenceFiles`` and ``imageFiles``).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        crop_size: side of the square crop in pixels.
        valid_only: keep only frames with a valid camera pose.
        augment: training augmentation, or None.
        body_model: SMPL model for ``J0``: one model, or ``{"male": m, "female": f, ...}``
            (3DPW's ground truth is gender-specific); None: no ``transl`` label.
        skip_bad: skip a missing or corrupt image instead of raising (see
            :class:`SpinNpzDataset`).
        pixel_offset: added to stored pixel coordinates (see module doc).
        dense_zeros: add all-zero dense maps (see :class:`SpinNpzDataset`).
    """

    def __init__(
        self,
        root,
        split: str = "test",
        crop_size: int = 224,
        valid_only: bool = True,
        augment: AugmentConfig | None = None,
        body_model=None,
        skip_bad: bool = False,
        pixel_offset: float = 0.5,
        dense_zeros: bool = False,
    ):
        super().__init__(crop_size, augment, skip_bad, pixel_offset, dense_zeros)
        if split not in PW3D_SPLITS:
            raise ValueError(
                f"PW3DDataset: unknown split {split!r}; 3DPW has {list(PW3D_SPLITS)}"
            )
        self.root = Path(root)
        self.split = split
        self.valid_only = bool(valid_only)
        self.body_model = body_model
        if not self.root.is_dir():
            raise FileNotFoundError(f"PW3DDataset: 3DPW folder {self.root} does not exist")
        folder = self.root / "sequenceFiles" / split
        if not folder.is_dir():
            raise FileNotFoundError(
                f"PW3DDataset: no folder {folder} (expected root/sequenceFiles/{split}/*.pkl)"
            )
        files = sorted(folder.glob("*.pkl"))
        if not files:
            raise FileNotFoundError(f"PW3DDataset: no .pkl sequence files in {folder}")
        self.files = files
        self.sequences: list[dict[str, Any]] = [read_pw3d_sequence(p) for p in files]
        self.num_without_keypoints = 0
        """Person-frames left out because no 2D keypoint is visible."""
        self._pelvis: dict[tuple[int, int], np.ndarray] = {}
        rows = []
        for s, seq in enumerate(self.sequences):
            for a in range(len(seq["poses"])):
                conf = seq["poses2d"][a][:, 2, :]
                has_kp = (conf > 0).any(axis=1)
                keep = seq["campose_valid"][a] if self.valid_only else np.ones_like(has_kp)
                self.num_without_keypoints += int((keep & ~has_kp).sum())
                rows.extend((s, int(f), a) for f in np.nonzero(keep & has_kp)[0])
                model = _model_for(body_model, int(seq["genders"][a]), str(files[s]))
                if model is not None:
                    self._pelvis[s, a] = rest_pelvis(model, seq["betas"][a])
        self._items = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        if len(self._items) == 0:
            raise ValueError(
                f"PW3DDataset: {folder} has {len(files)} sequence file(s) but no person-frame "
                f"with a valid camera pose and a visible 2D keypoint (valid_only={valid_only})"
            )

    @property
    def items(self) -> np.ndarray:
        """``(N, 3)`` int64 ``(sequence, frame, actor)`` of every sample."""
        return self._items

    @property
    def sequence_names(self) -> list[str]:
        """Name of each sequence (``meta/index[0]`` indexes this list)."""
        return [seq["sequence"] for seq in self.sequences]

    def __len__(self) -> int:
        return len(self._items)

    def image_path(self, index: int) -> Path:
        """Full path of sample ``index``'s image."""
        s, f, _ = (int(v) for v in self._items[index])
        seq = self.sequences[s]
        frame = int(seq["img_frame_ids"][f])
        return self.root / "imageFiles" / seq["sequence"] / f"image_{frame:05d}.jpg"

    def __repr__(self) -> str:
        return (
            f"PW3DDataset('{self.root}', split='{self.split}', samples={len(self)}, "
            f"sequences={len(self.sequences)}, crop_size={self.crop_size}, "
            f"augment={self.augment is not None})"
        )

    def _person(self, i: int, width: int, height: int) -> _Person:
        s, f, a = (int(v) for v in self._items[i])
        seq = self.sequences[s]
        off = self.pixel_offset
        K = seq["cam_intrinsics"]
        focal_xy = np.array([K[0, 0], K[1, 1]])
        pp = K[:2, 2] + off
        valid = bool(seq["campose_valid"][a][f])

        rot = axis_angle_to_rotmat(torch.from_numpy(seq["poses"][a][f].reshape(24, 3))).numpy()
        cam = seq["cam_poses"][f]
        rc, tc = cam[:3, :3], cam[:3, 3]
        joints = seq["jointPositions"][a][f] @ rc.T + tc
        pelvis = self._pelvis.get((s, a))
        if pelvis is not None:
            orient, transl = smpl_world_to_camera(rot[0], seq["trans"][a][f], rc, tc, pelvis)
            pelvis = pelvis + transl
        else:
            orient, transl = rc @ rot[0], np.zeros(3)

        op = seq["poses2d"][a][f].T  # (18, 3) x, y, confidence
        vis = _vis(op[:, 2])
        xy = op[:, :2] + off
        center, size = box_from_keypoints(torch.from_numpy(xy), torch.from_numpy(vis > 0), 1.2)

        z = joints[:, 2]
        front = z > 1e-6
        zs = np.where(front, z, 1.0)
        uv = joints[:, :2] / zs[:, None] * focal_xy + pp
        inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0)
        inside &= uv[:, 1] < height
        inside &= valid
        uv = np.where(front[:, None], uv, 0.0)
        smpl2d = np.concatenate([uv, inside[:, None].astype(np.float64)], axis=1)
        lsp = [j for j in _LSP14_FROM_SMPL if j >= 0]
        lsp2d, lsp3d, conf14 = np.zeros((14, 3)), np.zeros((14, 3)), np.zeros(14)
        lsp2d[:13], lsp3d[:13], conf14[:13] = smpl2d[lsp], joints[lsp], float(valid)

        labels = {
            "keypoints2d/smpl24": smpl2d,
            "keypoints2d/coco17": np.concatenate([xy, vis[:, None]], 1)[
                list(OPENPOSE18_TO_COCO17)
            ],
            "keypoints2d/lsp14": lsp2d,
            "joints3d": joints,
            "keypoints3d/lsp14": lsp3d,
            "global_orient": orient,
            "body_pose": rot[1:],
            "betas": seq["betas"][a],
            "transl": transl,
            "world_global_orient": rot[0],
            "cam_to_world": rc.T,
            "principal_point": pp,
        }
        has_transl = float(valid and pelvis is not None)
        return _Person(
            labels=labels,
            center=center.numpy(),
            size=float(size),
            focal_xy=focal_xy,
            pelvis=pelvis,
            flags={
                "has_joints3d": float(valid),
                "has_smpl": float(valid),
                "meta/has_transl": has_transl,
                "meta/root_relative3d": 0.0,
            },
            conf={
                "keypoints3d_conf/smpl24": np.full(24, float(valid)),
                "keypoints3d_conf/lsp14": conf14,
            },
            meta={
                "meta/index": np.array([s, f, a]),
                "meta/gender": np.array(int(seq["genders"][a])),
                "meta/body_model": np.array(SMPL_LABELS),
            },
        )
