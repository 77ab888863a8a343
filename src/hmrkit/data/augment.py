"""Training augmentation: box jitter, in-plane rotation, flip, colour gain, synthetic occluders.

Every geometric augmentation is expressed so that the augmented sample is an EXACT
perspective view; nothing is approximated:

- box scale and translation jitter choose a different box in the same image (``box_center``
  and ``box_size`` of the sample report the box actually cropped);
- an in-plane rotation by ``theta`` is a roll of the camera about its optical axis: the full
  image turns by ``theta`` about the principal point (content turns clockwise on screen for
  ``theta > 0``, as in :mod:`hmrkit.geometry.crops`), camera-frame points turn by
  ``rot_z(theta)``;
- a flip mirrors the full image, ``x -> W - x``: a perspective view of the mirrored scene
  ``X -> diag(-1, 1, 1) X`` with principal point ``(W - c_x, c_y)``; left and right labels swap.

The *view change* (rotation then flip) maps source full-image pixels to the pixels of a
virtual full image, :meth:`ViewChange.affine`. A sample's 2D labels, box, principal point and
``crop_affine`` live in that virtual image, and its 3D labels in the virtual camera frame
(:func:`transform_labels`), so ``project(joints3d) == keypoints2d``,
``crop_affine @ keypoints2d`` gives crop pixels, and the CLIFF / Multi-RoI / W-HMR
crop <-> full camera conversions hold for augmented samples exactly as for raw ones.
Photometric augmentation (per-channel gain, occluders) changes the crop image only (applied
while cropping, :func:`hmrkit.data.images.person_crop`); the labels (masks, visibility) are
left as they are.

Determinism: :func:`augmentation_rng` gives the generator for ``(seed, epoch, index)``;
the same triple gives the same :class:`AugmentParams`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from hmrkit.body.keypoints import get_keypoint_set
from hmrkit.geometry.rotations import MIRROR

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "Occluder",
    "ViewChange",
    "augmentation_rng",
    "sample_augmentation",
    "augment_box",
    "augmented_box",
    "jitter_roi",
    "view_change",
    "transform_labels",
    "occluder_layer",
]

def _pair(value, name: str, low: float = -math.inf) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        msg = f"AugmentConfig: {name} must be a pair (low, high), got {value!r}"
        raise ValueError(msg) from None
    if not low <= a <= b:
        raise ValueError(f"AugmentConfig: {name} must satisfy {low} <= low <= high, got {value!r}")
    return a, b


def _prob(value, name: str) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"AugmentConfig: {name} must be a probability in [0, 1], got {value!r}")
    return p


@dataclass
class AugmentConfig:
    """Training augmentation settings (defaults follow SPIN / CLIFF practice)."""

    scale: tuple[float, float] | float = (0.8, 1.2)
    """Box side multiplier: a pair samples uniformly in ``[low, high]``; a float ``s`` samples
    ``1 + N(0, s)`` clipped to ``[1 - s, 1 + s]`` (SPIN's ``scale_factor``, 0.25). > 1 zooms out."""
    translation: float = 0.1
    """Box centre jitter, uniform in ``[-t, t]`` times the box side, per axis."""
    rotation_deg: float = 30.0
    """In-plane rotation spread in degrees (see ``rotation_dist``)."""
    rotation_prob: float = 0.4
    """Probability of rotating at all (SPIN rotates 40 % of samples)."""
    rotation_dist: str = "normal"
    """``"normal"``: ``N(0, rotation_deg)`` clipped to ``+-2 rotation_deg`` (SPIN);
    ``"uniform"``: uniform in ``[-rotation_deg, rotation_deg]``."""
    flip_prob: float = 0.5
    """Probability of a left-right flip."""
    color_gain: tuple[float, float] | None = (0.6, 1.4)
    """Per-channel multiplicative gain range (SPIN's ``pn`` noise, ``1 +- 0.4``); None: off."""
    occlusion_prob: float = 0.25
    """Probability that a sample gets synthetic occluders."""
    occlusion_count: tuple[int, int] = (1, 2)
    """Number of occluders, uniform in ``[low, high]``."""
    occlusion_size: tuple[float, float] = (0.1, 0.4)
    """Occluder side range as a fraction of the crop side (width and height drawn apart)."""
    occlusion_textured: float = 0.5
    """Probability that an occluder is a random textured patch rather than a flat colour."""
    iuv_on_flip: str = "drop"
    """IUV labels of flipped samples: ``"drop"`` sets ``has_iuv = 0`` (part indices and UV
    charts have no generic mirror map), ``"keep"`` keeps the mirrored map as is (for maps whose
    labels are left-right symmetric)."""
    roi_rotation_deg: float = 0.0
    """Rotated crops (``crop_style="blazepose"``) only: spread in degrees of the noise added to
    the crop's angle, ``N(0, roi_rotation_deg)`` clipped to ``+-2 roi_rotation_deg`` (a
    detector's angle error; 0: none). The crop's position and side take ``translation`` and
    ``scale``; ``rotation`` still rolls the whole view."""
    seed: int | None = None
    """Seed: augmentation of item ``index`` in epoch ``epoch`` is a function of
    ``(seed, epoch, index)``. None: fresh OS entropy per sample (safe across workers)."""

    def __post_init__(self):
        if isinstance(self.scale, (int, float)):
            if not 0.0 <= float(self.scale) < 1.0:
                raise ValueError(f"AugmentConfig: scale std must be in [0, 1), got {self.scale!r}")
        else:
            self.scale = _pair(self.scale, "scale", 1e-6)
        self.translation = float(self.translation)
        if not 0.0 <= self.translation <= 1.0:
            raise ValueError(
                f"AugmentConfig: translation must be in [0, 1], got {self.translation}"
            )
        self.rotation_deg = float(self.rotation_deg)
        if not 0.0 <= self.rotation_deg <= 180.0:
            raise ValueError(
                f"AugmentConfig: rotation_deg must be in [0, 180], got {self.rotation_deg}"
            )
        self.rotation_prob = _prob(self.rotation_prob, "rotation_prob")
        if self.rotation_dist not in ("normal", "uniform"):
            raise ValueError(
                f"AugmentConfig: rotation_dist must be 'normal' or 'uniform', got "
                f"{self.rotation_dist!r}"
            )
        self.flip_prob = _prob(self.flip_prob, "flip_prob")
        if self.color_gain is not None:
            self.color_gain = _pair(self.color_gain, "color_gain", 0.0)
        self.occlusion_prob = _prob(self.occlusion_prob, "occlusion_prob")
        lo, hi = _pair(self.occlusion_count, "occlusion_count", 0)
        self.occlusion_count = (int(lo), int(hi))
        self.occlusion_size = _pair(self.occlusion_size, "occlusion_size", 0.0)
        if self.occlusion_size[1] > 1.0:
            raise ValueError("AugmentConfig: occlusion_size must be fractions <= 1 of the crop")
        self.occlusion_textured = _prob(self.occlusion_textured, "occlusion_textured")
        self.roi_rotation_deg = float(self.roi_rotation_deg)
        if not 0.0 <= self.roi_rotation_deg <= 90.0:
            raise ValueError(f"AugmentConfig: roi_rotation_deg must be in [0, 90], got "
                             f"{self.roi_rotation_deg}")
        if self.iuv_on_flip not in ("drop", "keep"):
            raise ValueError(
                f"AugmentConfig: iuv_on_flip must be 'drop' or 'keep', got {self.iuv_on_flip!r}"
            )
        bad_seed = not isinstance(self.seed, (int, np.integer)) or self.seed < 0
        if self.seed is not None and bad_seed:
            raise ValueError(f"AugmentConfig: seed must be a non-negative int, got {self.seed!r}")

    def sample(self, rng: np.random.Generator) -> AugmentParams:
        """Draw parameters with ``rng`` (:func:`sample_augmentation`)."""
        return sample_augmentation(rng, self)


@dataclass(frozen=True)
class Occluder:
    """A rectangle over the crop, in crop fractions ``[0, 1]`` (x right, y down)."""

    x0: float
    y0: float
    x1: float
    y1: float
    color: tuple[float, float, float]
    """Flat RGB colour in [0, 1] (mean colour of a textured patch)."""
    texture_seed: int | None = None
    """Seed of the procedural texture; None: flat colour."""


@dataclass(frozen=True)
class AugmentParams:
    """One draw of augmentation parameters (identity by default)."""

    scale: float = 1.0
    """Box side multiplier."""
    translation: tuple[float, float] = (0.0, 0.0)
    """Box centre shift in units of the box side."""
    rotation: float = 0.0
    """In-plane rotation in radians (content turns clockwise on screen for > 0)."""
    flip: bool = False
    """Left-right mirror."""
    color_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Per-channel RGB gain."""
    occluders: tuple[Occluder, ...] = field(default_factory=tuple)
    """Synthetic occluders over the crop."""
    roi_rotation: float = 0.0
    """Noise added to the angle of a rotated crop, radians."""


def augmentation_rng(seed: int | None, epoch: int = 0, index: int = 0) -> np.random.Generator:
    """Generator for item ``index`` in ``epoch``: deterministic when ``seed`` is given."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


def sample_augmentation(rng: np.random.Generator, config: AugmentConfig) -> AugmentParams:
    """Draw :class:`AugmentParams` from ``config`` with ``rng``."""
    if isinstance(config.scale, tuple):
        scale = float(rng.uniform(*config.scale))
    else:
        s = float(config.scale)
        scale = float(np.clip(1.0 + rng.normal(0.0, s), 1.0 - s, 1.0 + s)) if s > 0 else 1.0
    t = config.translation
    translation = tuple(float(v) for v in rng.uniform(-t, t, size=2)) if t > 0 else (0.0, 0.0)
    rotation = 0.0
    if config.rotation_deg > 0 and rng.uniform() < config.rotation_prob:
        r = config.rotation_deg
        if config.rotation_dist == "normal":
            deg = float(np.clip(rng.normal(0.0, r), -2 * r, 2 * r))
        else:
            deg = float(rng.uniform(-r, r))
        rotation = math.radians(deg)
    flip = bool(rng.uniform() < config.flip_prob)
    gain = (1.0, 1.0, 1.0)
    if config.color_gain is not None:
        gain = tuple(float(v) for v in rng.uniform(*config.color_gain, size=3))
    occluders: list[Occluder] = []
    if config.occlusion_prob > 0 and rng.uniform() < config.occlusion_prob:
        count = int(rng.integers(config.occlusion_count[0], config.occlusion_count[1] + 1))
        for _ in range(count):
            w, h = rng.uniform(*config.occlusion_size, size=2)
            x0 = float(rng.uniform(0.0, 1.0 - w))
            y0 = float(rng.uniform(0.0, 1.0 - h))
            color = tuple(float(v) for v in rng.uniform(0.0, 1.0, size=3))
            textured = rng.uniform() < config.occlusion_textured
            tex = int(rng.integers(0, 2**31 - 1)) if textured else None
            occluders.append(Occluder(x0, y0, x0 + float(w), y0 + float(h), color, tex))
    roi_rotation = 0.0
    if config.roi_rotation_deg > 0:  # drawn last: the other draws are those of older configs
        r = config.roi_rotation_deg
        roi_rotation = math.radians(float(np.clip(rng.normal(0.0, r), -2 * r, 2 * r)))
    return AugmentParams(scale, translation, rotation, flip, gain, tuple(occluders),
                         roi_rotation)


# --------------------------------------------------------------------------- geometry


def augment_box(center, size, params: AugmentParams) -> tuple[np.ndarray, float]:
    """Jittered box in the source image: ``center + translation * size``, ``size * scale``."""
    c = np.asarray(center, dtype=np.float64).reshape(2)
    b = float(size)
    return c + np.asarray(params.translation) * b, b * params.scale


@dataclass(frozen=True)
class ViewChange:
    """Rotation about the principal point, then an optional mirror ``x -> W - x``."""

    rotation: float
    """Camera roll in radians (image content turns clockwise on screen for > 0)."""
    flip: bool
    """Left-right mirror of the full image."""
    image_width: float
    """Source image width ``W`` in pixels (the mirror is ``x -> W - x``)."""
    principal_point: tuple[float, float]
    """Source principal point (the rotation centre)."""

    @property
    def is_identity(self) -> bool:
        return self.rotation == 0.0 and not self.flip

    def linear3d(self) -> np.ndarray:
        """``L = M^flip rot_z(rotation)``: source camera frame -> virtual camera frame."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return MIRROR @ rz if self.flip else rz

    def affine(self) -> np.ndarray:
        """``(2, 3)`` map source full-image pixels -> virtual full-image pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        rot = np.array([[c, -s], [s, c]])
        pp = np.asarray(self.principal_point, dtype=np.float64)
        a = np.concatenate([rot, (pp - rot @ pp)[:, None]], axis=1)
        if self.flip:
            a = np.array([[-1.0, 0.0, self.image_width], [0.0, 1.0, 0.0]]) @ np.vstack(
                [a, [0.0, 0.0, 1.0]]
            )
        return a

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` source pixels to the virtual image."""
        a = self.affine()
        return points @ a[:, :2].T + a[:, 2]


def jitter_roi(center, size: float, rotation: float, params: AugmentParams
               ) -> tuple[np.ndarray, float, float]:
    """A rotated crop box under ``params``: centre moved by ``translation`` x ``size`` (image
    axes), side x ``scale``, angle + ``roi_rotation`` (the box is already in the virtual
    image)."""
    c = np.asarray(center, dtype=np.float64).reshape(2)
    b = float(size)
    return (c + np.asarray(params.translation) * b, b * params.scale,
            float(rotation) + params.roi_rotation)


def view_change(params: AugmentParams, image_size, principal_point) -> ViewChange:
    """The :class:`ViewChange` of ``params`` for an image ``(W, H)`` and its principal point."""
    pp = np.asarray(principal_point, dtype=np.float64).reshape(2)
    return ViewChange(
        float(params.rotation), bool(params.flip), float(np.asarray(image_size).reshape(2)[0]),
        (float(pp[0]), float(pp[1])),
    )


def augmented_box(params: AugmentParams, center, size, image_size, principal_point
                  ) -> tuple[np.ndarray, float, ViewChange]:
    """A person box under ``params``: jittered in the source image (:func:`augment_box`), then
    carried into the virtual image of the view change (:func:`view_change`, whose ``affine()``
    is the sample's ``meta/source_affine``) -> ``(center, size, view)``."""
    center, size = augment_box(center, size, params)
    view = view_change(params, image_size, principal_point)
    return view.apply_points(center), size, view


def _perm(name: str, n: int, flip: bool) -> np.ndarray:
    if not flip:
        return np.arange(n)
    ks = get_keypoint_set(name)
    if len(ks) != n:
        raise ValueError(f"keypoint set '{name}' has {len(ks)} keypoints, labels have {n}")
    return np.asarray(ks.flip_permutation)


def transform_labels(labels: dict[str, np.ndarray], view: ViewChange) -> dict[str, np.ndarray]:
    """One person's labels in the virtual view of ``view`` (keys as in the Sample schema).

    With ``L = view.linear3d()`` (camera frame), ``B = M`` if flipped else ``I`` (body frame),
    ``N = M`` if flipped else ``I`` (world frame, keeps y up), ``P`` the left-right
    permutation of each keypoint set when flipped, ``A = view.affine()``:

    - ``keypoints2d/*``: ``A [x, y, 1]``, rows permuted by ``P`` (visibility follows);
    - ``principal_point``: ``A pp``;
    - ``joints3d``, ``keypoints3d/*``: ``L X``, rows permuted;
    - ``global_orient``: ``L G B``; ``body_pose``: ``B R B`` per joint, joints permuted;
    - ``transl``: ``L p - p + t`` with ``p = joints3d[0]`` (the pelvis, the LBS root), so the
      posed model with the new pose and ``transl`` is the transformed body (exact for a
      left-right symmetric rest body);
    - ``world_global_orient``: ``N W B``; ``cam_to_world``: ``N C L^T`` (so
      ``cam_to_world @ global_orient == world_global_orient`` still holds and the world's y
      axis is kept);
    - ``betas``, ``focal``, ``image_size`` and everything else: unchanged.

    Missing keys are skipped. Arrays are float64 copies.
    """
    if view.is_identity:
        return {k: np.array(v) for k, v in labels.items()}
    lin = view.linear3d()
    body = MIRROR if view.flip else np.eye(3)
    world = MIRROR if view.flip else np.eye(3)
    out: dict[str, np.ndarray] = {}
    for key, value in labels.items():
        v = np.asarray(value, dtype=np.float64)
        if key.startswith("keypoints2d/"):
            xy = view.apply_points(v[:, :2])
            out[key] = np.concatenate([xy, v[:, 2:]], axis=1)[_perm(key[12:], len(v), view.flip)]
        elif key == "principal_point":
            out[key] = view.apply_points(v)
        elif key == "joints3d":
            out[key] = (v @ lin.T)[_perm("smpl24", len(v), view.flip)]
        elif key.startswith("keypoints3d/"):
            out[key] = (v @ lin.T)[_perm(key[12:], len(v), view.flip)]
        elif key == "global_orient":
            out[key] = lin @ v @ body
        elif key == "body_pose":
            perm24 = _perm("smpl24", len(v) + 1, view.flip)
            out[key] = (body @ v @ body)[perm24[1:] - 1]
        elif key == "world_global_orient":
            out[key] = world @ v @ body
        elif key == "cam_to_world":
            out[key] = world @ v @ lin.T
        elif key == "transl":
            if "joints3d" in labels:
                p = np.asarray(labels["joints3d"], dtype=np.float64)[0]
            else:
                p = v
            out[key] = lin @ p - p + v
        else:
            out[key] = np.array(v)
    return out


# --------------------------------------------------------------------------- photometric


def _texture(seed: int, h: int, w: int, mean: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cells = int(rng.integers(2, 9))
    low = rng.uniform(0.0, 1.0, size=(cells, cells, 3)).astype(np.float32)
    interp = cv2.INTER_LINEAR if rng.uniform() < 0.5 else cv2.INTER_NEAREST
    tex = cv2.resize(low, (w, h), interpolation=interp)
    tex = 0.5 * tex + 0.5 * mean.astype(np.float32)
    tex += rng.normal(0.0, 0.05, size=tex.shape).astype(np.float32)
    return np.clip(tex, 0.0, 1.0)


def occluder_layer(params: AugmentParams, size: int) -> np.ndarray | None:
    """RGBA float32 (size, size, 4) layer of the occluders over a ``size`` crop (None if none)."""
    if not params.occluders:
        return None
    layer = np.zeros((size, size, 4), dtype=np.float32)
    for occ in params.occluders:
        x0, x1 = round(occ.x0 * size), round(occ.x1 * size)
        y0, y1 = round(occ.y0 * size), round(occ.y1 * size)
        if x1 <= x0 or y1 <= y0:
            continue
        color = np.asarray(occ.color, dtype=np.float32)
        if occ.texture_seed is None:
            layer[y0:y1, x0:x1, :3] = color
        else:
            layer[y0:y1, x0:x1, :3] = _texture(occ.texture_seed, y1 - y0, x1 - x0, color)
        layer[y0:y1, x0:x1, 3] = 1.0
    return layer


class EpochSeededAugmentation:
    """Mixin of the datasets: per-epoch, per-item augmentation parameters.

    Needs ``self.augment`` (an :class:`AugmentConfig` or None) and ``self.epoch``.
    """

    augment: AugmentConfig | None
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Epoch for seeded augmentation (call before each epoch; with DataLoader workers the
        change does not reach the workers' copies: :class:`hmrkit.data.module.EpochItems`
        sets it with each read, as training does)."""
        self.epoch = int(epoch)

    def augmentation_params(self, index: int) -> AugmentParams:
        """The augmentation item ``index`` gets in the current epoch (identity if none)."""
        if self.augment is None:
            return AugmentParams()
        rng = augmentation_rng(self.augment.seed, self.epoch, index)
        return sample_augmentation(rng, self.augment)

