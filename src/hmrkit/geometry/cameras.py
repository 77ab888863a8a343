"""Cameras: the batched pinhole :class:`Camera`, projections, crop <-> full-image conversions.

Pixel convention, the ONE of the whole library (datasets, losses, crops, the rasteriser):
image pixel coordinates are continuous with pixel ``i`` covering ``[i, i + 1)``, its centre at
``i + 0.5``; the image spans ``[0, W] x [0, H]`` and its centre is ``(W / 2, H / 2)``. A camera
point ``X`` (camera frame x right, y down, z forward, OpenCV) projects to
``(f_x X / Z + c_x, f_y Y / Z + c_y)``. OpenCV puts pixel centres at integers: only the code
that calls OpenCV converts (:func:`hmrkit.geometry.crops.affine_to_cv2`). Units: metres and
pixels; batch-first. A box is ``(center (B, 2), size (B,))`` in full-image pixels (the type is
:class:`hmrkit.geometry.crops.CropBox`).

The crop (weak-perspective) camera ``(s, t_x, t_y)`` maps a body point ``X`` to normalised crop
coordinates ``s (X_xy + t)`` in ``[-1, 1]`` (crop pixel ``= (n + 1) res / 2``,
:func:`hmrkit.geometry.crops.normalized_to_pixels`). It is exact for points at the depth of the
body origin, seen by the full-image perspective camera of :func:`crop_to_full_camera`.

Scalars such as ``focal`` may be a float, a ``(B,)`` tensor or ``(B, 1)``; outputs take the
dtype and device of the leading tensor argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

__all__ = [
    "Camera",
    "FILM_WIDTH_35MM",
    "focal_from_35mm",
    "focal_35mm",
    "project_perspective",
    "project_weak_perspective",
    "crop_to_full_camera",
    "full_to_crop_camera",
    "default_focal",
    "focal_from_depth",
    "whmr_full_translation",
    "cliff_bbox_info",
    "whmr_global_info",
    "camera_to_world",
    "pitch_roll",
    "vertical_fov",
    "world_root_relative",
    "intrinsics_matrix",
    "box_height",
]


# --------------------------------------------------------------------------- shape helpers


def _check(x, shape: tuple, fn: str, name: str, want: str, ref=None) -> torch.Tensor:
    """Check ``x.shape == shape`` (``None`` entries are free) and raise a readable error."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    ok = x.dim() == len(shape) and all(
        s is None or s == d for s, d in zip(shape, x.shape, strict=False)
    )
    if not ok:
        extra = f" matching {ref[0]} {tuple(ref[1].shape)}" if ref is not None else ""
        raise ValueError(f"{fn}: {name} has shape {tuple(x.shape)}, expected {want}{extra}")
    return x


def per_sample(fn: str, x, batch: int, like: torch.Tensor, name: str) -> torch.Tensor:
    """A float, ``()``, ``(B,)`` or ``(B, 1)`` value -> ``(B,)`` in ``like``'s dtype/device."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if x.dim() == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() == 0 or (x.dim() == 1 and x.shape[0] == 1):
        return x.reshape(1).expand(batch)
    if x.dim() != 1 or x.shape[0] != batch:
        raise ValueError(f"{fn}: {name} has shape {tuple(x.shape)}, expected (B,) with B={batch}")
    return x


def per_sample_2(fn: str, x, batch: int, like: torch.Tensor, name: str) -> torch.Tensor:
    """A ``(2,)`` or ``(B, 2)`` value -> ``(B, 2)`` in ``like``'s dtype/device."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if x.dim() == 1 and x.shape[0] == 2:
        return x.expand(batch, 2)
    if x.dim() != 2 or x.shape[1] != 2 or x.shape[0] not in (1, batch):
        raise ValueError(f"{fn}: {name} has shape {tuple(x.shape)}, expected (B, 2) with B={batch}")
    return x.expand(batch, 2)


def _focal_xy(focal, batch: int, like: torch.Tensor, fn: str) -> torch.Tensor:
    """Focal as float, ``(B,)``, ``(B, 1)`` or ``(B, 2)`` ``(f_x, f_y)`` -> ``(B, 2)``."""
    f = torch.as_tensor(focal, dtype=like.dtype, device=like.device)
    if f.dim() == 2 and f.shape[1] == 2:
        return per_sample_2(fn, f, batch, like, "focal")
    return per_sample(fn, f, batch, like, "focal").unsqueeze(-1).expand(batch, 2)


def box_height(
    box_size, batch: int | None = None, like: torch.Tensor | None = None
) -> torch.Tensor:
    """Box height from a square side ``(B,)`` / ``(B, 1)`` or a ``(B, 2)`` ``(w, h)`` size."""
    b = torch.as_tensor(box_size)
    if like is not None:
        b = b.to(dtype=like.dtype, device=like.device)
    elif not b.is_floating_point():
        b = b.to(torch.get_default_dtype())
    if b.dim() == 2 and b.shape[1] == 2:
        b = b[:, 1]
    if batch is None:
        return b[:, 0] if b.dim() == 2 and b.shape[1] == 1 else b
    return per_sample("box_height", b, batch, b if like is None else like, "box_size")


# --------------------------------------------------------------------------- projections


def project_perspective(
    points: torch.Tensor,
    focal,
    principal_point,
    transl: torch.Tensor | None = None,
    rotation: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pinhole projection ``u = f_x X_c / Z_c + c_x``, ``v = f_y Y_c / Z_c + c_y`` -> ``(B, N, 2)``.

    ``X_c = R X + t`` (rotation first, then translation; both optional). ``focal`` is a float,
    ``(B,)`` or ``(B, 2)``; ``principal_point`` ``(B, 2)`` or ``(2,)``. No depth clamping:
    points at or behind ``Z_c = 0`` give inf/meaningless values.
    """
    fn = "project_perspective"
    _check(points, (None, None, 3), fn, "points", "(B, N, 3)")
    batch = points.shape[0]
    if rotation is not None:
        _check(rotation, (batch, 3, 3), fn, "rotation", "(B, 3, 3)", ("points", points))
        points = points @ rotation.transpose(-1, -2)
    if transl is not None:
        _check(transl, (batch, 3), fn, "transl", "(B, 3)", ("points", points))
        points = points + transl[:, None, :]
    f = _focal_xy(focal, batch, points, fn)
    c = per_sample_2(fn, principal_point, batch, points, "principal_point")
    return points[..., :2] / points[..., 2:3] * f[:, None, :] + c[:, None, :]


def project_weak_perspective(points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Weak-perspective crop camera ``(s, t_x, t_y)``: ``s (X_xy + t)`` -> ``(B, N, 2)``.

    The result is in normalised crop coordinates (the crop spans ``[-1, 1]``).
    """
    fn = "project_weak_perspective"
    _check(points, (None, None, 3), fn, "points", "(B, N, 3)")
    _check(cam, (points.shape[0], 3), fn, "cam", "(B, 3) = (s, t_x, t_y)", ("points", points))
    return cam[:, None, :1] * (points[..., :2] + cam[:, None, 1:])


def intrinsics_matrix(focal, principal_point) -> torch.Tensor:
    """``K = [[f_x, 0, c_x], [0, f_y, c_y], [0, 0, 1]]`` -> ``(B, 3, 3)``.

    ``principal_point`` ``(B, 2)`` fixes B; ``focal`` is a float, ``(B,)`` or ``(B, 2)``.
    """
    fn = "intrinsics_matrix"
    c = torch.as_tensor(principal_point)
    if not c.is_floating_point():
        c = c.to(torch.get_default_dtype())
    _check(c, (None, 2), fn, "principal_point", "(B, 2)")
    f = _focal_xy(focal, c.shape[0], c, fn)
    K = c.new_zeros(c.shape[0], 3, 3)
    K[:, 0, 0], K[:, 1, 1] = f[:, 0], f[:, 1]
    K[:, :2, 2] = c
    K[:, 2, 2] = 1.0
    return K


# --------------------------------------------------------------------------- crop <-> full


def default_focal(image_size) -> torch.Tensor:
    """Default focal ``sqrt(W^2 + H^2)`` (Kissos et al., CLIFF) from ``image_size (..., 2)``.

    ``image_size`` is ``(W, H)``; returns ``(...)``.
    """
    size = torch.as_tensor(image_size)
    if not size.is_floating_point():
        size = size.to(torch.get_default_dtype())
    if size.dim() == 0 or size.shape[-1] != 2:
        raise ValueError(
            f"default_focal: image_size has shape {tuple(size.shape)}, expected (..., 2) = (W, H)"
        )
    return torch.linalg.vector_norm(size, dim=-1)


FILM_WIDTH_35MM = 36.0
"""Width of 35 mm film in millimetres: the "35 mm-equivalent" focal maps it to the image's longer
side (the convention of :mod:`hmrkit.data.synthetic.scene` and the evaluation lens subsets)."""


def focal_from_35mm(focal_mm, image_size):
    """Focal in pixels of a 35 mm-equivalent focal: ``f = f_mm / 36 * max(W, H)``.

    ``focal_mm`` and ``image_size (..., 2)`` are numbers, numpy arrays or tensors (the result
    follows ``image_size``'s kind).
    """
    if isinstance(image_size, torch.Tensor):
        return focal_mm / FILM_WIDTH_35MM * image_size.max(dim=-1).values
    import numpy as np

    return focal_mm / FILM_WIDTH_35MM * np.max(np.asarray(image_size), axis=-1)


def focal_35mm(focal, image_size):
    """35 mm-equivalent focal ``36 f / max(W, H)`` in millimetres (inverse of
    :func:`focal_from_35mm`)."""
    if isinstance(image_size, torch.Tensor):
        return FILM_WIDTH_35MM * focal / image_size.max(dim=-1).values
    import numpy as np

    return FILM_WIDTH_35MM * focal / np.max(np.asarray(image_size), axis=-1)


@dataclass(frozen=True)
class Camera:
    """A batch of pinhole cameras in full-image pixels (the module doc's pixel convention).

    Built from a batch of Samples (:meth:`from_sample`, keys ``camera/intrinsics``,
    ``camera/image_size`` and optional ``camera/to_world``), from an image size with the
    default focal (:meth:`default`), or by a method that predicts a camera (W-HMR's focal,
    :meth:`with_focal`). Every conversion between the crop and the full image takes one
    (:class:`hmrkit.geometry.crops.CropBox`).
    """

    intrinsics: Tensor
    """(B, 4) ``(f_x, f_y, c_x, c_y)`` in pixels."""
    image_size: Tensor
    """(B, 2) ``(W, H)`` in pixels."""
    cam_to_world: Tensor | None = None
    """(B, 3, 3) rotation camera frame -> world frame (y up), when known."""

    def __post_init__(self):
        fn = "Camera"
        _check(self.intrinsics, (None, 4), fn, "intrinsics", "(B, 4) = (fx, fy, cx, cy)")
        batch = self.intrinsics.shape[0]
        _check(self.image_size, (batch, 2), fn, "image_size", "(B, 2) = (W, H)",
               ("intrinsics", self.intrinsics))
        if self.cam_to_world is not None:
            _check(self.cam_to_world, (batch, 3, 3), fn, "cam_to_world", "(B, 3, 3)",
                   ("intrinsics", self.intrinsics))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_sample(cls, batch) -> Camera:
        """The camera of a (collated) batch of Samples."""
        return cls(batch["camera/intrinsics"], batch["camera/image_size"],
                   batch.get("camera/to_world"))

    @classmethod
    def default(cls, image_size, focal=None) -> Camera:
        """Cameras with the principal point at the image centre and ``focal`` (default
        :func:`default_focal`, CLIFF's ``sqrt(W^2 + H^2)``); ``image_size`` ``(B, 2)``."""
        wh = torch.as_tensor(image_size)
        if not wh.is_floating_point():
            wh = wh.to(torch.get_default_dtype())
        _check(wh, (None, 2), "Camera.default", "image_size", "(B, 2) = (W, H)")
        f = default_focal(wh) if focal is None else per_sample(
            "Camera.default", focal, wh.shape[0], wh, "focal")
        return cls(torch.cat([f[:, None], f[:, None], wh / 2], dim=1), wh)

    def to_sample(self) -> dict[str, Tensor]:
        """The Sample keys of these cameras (inverse of :meth:`from_sample`)."""
        keys = {"camera/intrinsics": self.intrinsics, "camera/image_size": self.image_size}
        if self.cam_to_world is not None:
            keys["camera/to_world"] = self.cam_to_world
        return keys

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return self.intrinsics.shape[0]

    @property
    def focal_xy(self) -> Tensor:
        """(B, 2) ``(f_x, f_y)``."""
        return self.intrinsics[:, :2]

    @property
    def focal(self) -> Tensor:
        """(B,) the single focal of the crop <-> full conversions: ``(f_x + f_y) / 2`` (the two
        are equal for every camera hmrkit makes)."""
        return (self.intrinsics[:, 0] + self.intrinsics[:, 1]) / 2

    @property
    def principal_point(self) -> Tensor:
        """(B, 2) ``(c_x, c_y)``."""
        return self.intrinsics[:, 2:]

    @property
    def K(self) -> Tensor:
        """(B, 3, 3) intrinsics matrix."""
        return intrinsics_matrix(self.focal_xy, self.principal_point)

    def focal_35mm(self) -> Tensor:
        """(B,) 35 mm-equivalent focal in millimetres (:func:`focal_35mm`)."""
        return focal_35mm(self.focal, self.image_size)

    # ------------------------------------------------------------------ use
    def project(self, points: Tensor, transl: Tensor | None = None,
                rotation: Tensor | None = None) -> Tensor:
        """Camera-frame points ``R X + t`` ``(B, N, 3)`` -> full-image pixels ``(B, N, 2)``."""
        return project_perspective(points, self.focal_xy.to(points), self.principal_point.to(
            points), transl, rotation)

    def with_focal(self, focal: Tensor) -> Camera:
        """The same cameras with another focal (``(B,)``, e.g. a predicted one)."""
        f = per_sample("Camera.with_focal", focal, len(self), self.intrinsics, "focal")
        return replace(self, intrinsics=torch.cat(
            [f[:, None], f[:, None], self.intrinsics[:, 2:]], dim=1))

    def resized(self, image_size) -> Camera:
        """The same cameras seeing the images resized to ``image_size`` ``(W', H')`` (``(2,)``
        or ``(B, 2)``): intrinsics scaled by ``W' / W`` and ``H' / H`` (pixel edges map to pixel
        edges, so a point projects to the same place of the picture)."""
        new = torch.as_tensor(image_size).to(self.image_size).expand_as(self.image_size)
        scale = new / self.image_size
        return replace(self, intrinsics=self.intrinsics * scale.repeat(1, 2), image_size=new)

    def repeat_interleave(self, repeats: int) -> Camera:
        """Each camera ``repeats`` times in a row (one per RoI of a person)."""
        c2w = self.cam_to_world
        return Camera(self.intrinsics.repeat_interleave(repeats, 0),
                      self.image_size.repeat_interleave(repeats, 0),
                      None if c2w is None else c2w.repeat_interleave(repeats, 0))

    def to(self, *args, **kwargs) -> Camera:
        """``Tensor.to`` on every field."""
        c2w = self.cam_to_world
        return Camera(self.intrinsics.to(*args, **kwargs), self.image_size.to(*args, **kwargs),
                      None if c2w is None else c2w.to(*args, **kwargs))

    def __getitem__(self, index) -> Camera:
        c2w = self.cam_to_world
        index = [index] if isinstance(index, int) else index
        return Camera(self.intrinsics[index], self.image_size[index],
                      None if c2w is None else c2w[index])


def _box_offsets(cam_like, box_center, box_size, image_size, fn, square=True,
                 principal_point=None):
    """Box centre minus the principal point (the image centre ``(W/2, H/2)`` by default), and
    the box side (height of a ``(w, h)`` box)."""
    batch = cam_like.shape[0]
    c = per_sample_2(fn, box_center, batch, cam_like, "box_center")
    if principal_point is None:
        pp = per_sample_2(fn, image_size, batch, cam_like, "image_size") / 2
    else:
        pp = per_sample_2(fn, principal_point, batch, cam_like, "principal_point")
    b = torch.as_tensor(box_size, dtype=cam_like.dtype, device=cam_like.device)
    if square and b.dim() == 2 and b.shape[1] == 2:
        raise ValueError(f"{fn}: box_size has shape {tuple(b.shape)}, expected (B,) square side")
    b = box_height(b, batch, cam_like)
    return c - pp, b


def crop_to_full_camera(cam_crop, box_center, box_size, image_size, focal, *,
                        principal_point=None) -> torch.Tensor:
    """Crop camera ``(s, t_x, t_y)`` -> full-image translation ``(B, 3)`` (CLIFF; Multi-RoI eq. 12).

    ``t_z = 2 f / (b s)``, ``t_x = t_x' + 2 (c_x - W/2) / (b s)``,
    ``t_y = t_y' + 2 (c_y - H/2) / (b s)`` for a square box of side ``b`` centred at ``c``
    and a principal point at the image centre (CLIFF's assumption); give ``principal_point``
    ``(B, 2)`` to measure the box from it instead of ``(W/2, H/2)``.
    """
    fn = "crop_to_full_camera"
    _check(cam_crop, (None, 3), fn, "cam_crop", "(B, 3) = (s, t_x, t_y)")
    off, b = _box_offsets(cam_crop, box_center, box_size, image_size, fn,
                          principal_point=principal_point)
    f = per_sample(fn, focal, cam_crop.shape[0], cam_crop, "focal")
    bs = b * cam_crop[:, 0]
    txy = cam_crop[:, 1:] + 2 * off / bs[:, None]
    return torch.cat([txy, (2 * f / bs)[:, None]], dim=-1)


def full_to_crop_camera(transl, box_center, box_size, image_size, focal, *,
                        principal_point=None) -> torch.Tensor:
    """Inverse of :func:`crop_to_full_camera`: full translation ``(B, 3)`` -> ``(s, t_x, t_y)``.

    ``s = 2 f / (b t_z)``, ``t_x' = t_x - (c_x - W/2) t_z / f`` (likewise y).
    """
    fn = "full_to_crop_camera"
    _check(transl, (None, 3), fn, "transl", "(B, 3)")
    off, b = _box_offsets(transl, box_center, box_size, image_size, fn,
                          principal_point=principal_point)
    f = per_sample(fn, focal, transl.shape[0], transl, "focal")
    tz = transl[:, 2]
    s = 2 * f / (b * tz)
    txy = transl[:, :2] - off * (tz / f)[:, None]
    return torch.cat([s[:, None], txy], dim=-1)


def focal_from_depth(s, box_size, t_z, detach: bool = True) -> torch.Tensor:
    """W-HMR eq. 3: ``t_z = 2 f / (s h_box)`` solved for ``f = s h_box T_z / 2`` -> ``(B,)``.

    ``s`` is the crop-camera scale ``(B,)``, ``box_size`` the square side ``(B,)`` or ``(w, h)``
    ``(B, 2)`` (the height is used), ``t_z`` the predicted depth ``(B,)``. ``detach`` stops the
    gradient through ``s`` as in the official code, so only the depth head learns from ``f``.
    """
    fn = "focal_from_depth"
    t_z = torch.as_tensor(t_z)
    if t_z.dim() == 2 and t_z.shape[1] == 1:
        t_z = t_z[:, 0]
    _check(t_z, (None,), fn, "t_z", "(B,)")
    batch = t_z.shape[0]
    s = per_sample(fn, s, batch, t_z, "s")
    if detach:
        s = s.detach()
    return s * box_height(box_size, batch, t_z) * t_z / 2


def whmr_full_translation(
    cam_crop, t_z, box_center, box_size, image_size, detach: bool = True
) -> torch.Tensor:
    """W-HMR eq. 4: full-image translation with the predicted depth ``T_z`` -> ``(B, 3)``.

    ``t_x = t_x' + 2 (c_x - W/2) / (h_box s)``, ``t_y`` likewise, ``t_z = T_z``: the same as
    :func:`crop_to_full_camera` with the focal of :func:`focal_from_depth`. The box height
    stands for ``b``. ``detach`` detaches the crop camera (s and t), as the paper and code do in
    both training stages; the gradient then reaches only ``T_z``.
    """
    fn = "whmr_full_translation"
    _check(cam_crop, (None, 3), fn, "cam_crop", "(B, 3) = (s, t_x, t_y)")
    if detach:
        cam_crop = cam_crop.detach()
    off, b = _box_offsets(cam_crop, box_center, box_size, image_size, fn, square=False)
    t_z = per_sample(fn, t_z, cam_crop.shape[0], cam_crop, "t_z")
    txy = cam_crop[:, 1:] + 2 * off / (b * cam_crop[:, 0])[:, None]
    return torch.cat([txy, t_z[:, None]], dim=-1)


def cliff_bbox_info(box_center, box_size, image_size, focal, normalise: str | None = "cliff",
                    *, principal_point=None):
    """CLIFF box information ``[c_x - W/2, c_y - H/2, b]`` -> ``(B, 3)``.

    ``normalise``: ``"cliff"`` (official code: first two ``/ f * 2.8``, third
    ``(b - 0.24 f) / (0.06 f)``, constants fitted on Human3.6M), ``"focal"`` (all ``/ f``) or
    ``None`` (raw pixels). ``principal_point`` replaces the image centre ``(W/2, H/2)``.
    """
    fn = "cliff_bbox_info"
    c = torch.as_tensor(box_center)
    if not c.is_floating_point():
        c = c.to(torch.get_default_dtype())
    _check(c, (None, 2), fn, "box_center", "(B, 2)")
    off, b = _box_offsets(c, c, box_size, image_size, fn, principal_point=principal_point)
    raw = torch.cat([off, b[:, None]], dim=-1)
    if normalise is None:
        return raw
    f = per_sample(fn, focal, c.shape[0], c, "focal")[:, None]
    if normalise == "focal":
        return raw / f
    if normalise == "cliff":
        return torch.cat([off / f * 2.8, (b[:, None] - 0.24 * f) / (0.06 * f)], dim=-1)
    raise ValueError(f"{fn}: normalise must be 'cliff', 'focal' or None, got {normalise!r}")


def whmr_global_info(box_center, box_size, image_size) -> torch.Tensor:
    """W-HMR global information ``[c_x - W/2, c_y - H/2, h_box, W, H] / sqrt(W^2 + H^2)``.

    Returns ``(B, 5)``. ``box_size`` is the square side ``(B,)`` or ``(w, h)`` ``(B, 2)``; the
    height is used. The normaliser is the default focal, never a predicted one (as in the paper).
    """
    fn = "whmr_global_info"
    c = torch.as_tensor(box_center)
    if not c.is_floating_point():
        c = c.to(torch.get_default_dtype())
    _check(c, (None, 2), fn, "box_center", "(B, 2)")
    wh = per_sample_2(fn, image_size, c.shape[0], c, "image_size")
    off, h = _box_offsets(c, c, box_size, wh, fn, square=False)
    info = torch.cat([off, h[:, None], wh], dim=-1)
    return info / default_focal(wh)[:, None]


# --------------------------------------------------------------------------- camera -> world

LEVEL_CAMERA_TO_WORLD = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))
"""Camera -> world rotation of a level camera (no pitch, no roll) looking along world ``-z``:
camera y down -> world y up (the scene engine's ``R_BASE``)."""


def camera_to_world(pitch, roll) -> torch.Tensor:
    """Camera -> world rotation of a camera with ``pitch`` and ``roll`` and no yaw (SPEC /
    W-HMR convention; :mod:`hmrkit.data.synthetic.scene`): ``R_base R_x(pitch) R_z(roll)``,
    radians ``(...)`` -> ``(..., 3, 3)``. Positive pitch tilts the camera down; world y up."""
    from .rotations import rot_x, rot_z

    pitch = torch.as_tensor(pitch)
    if not pitch.is_floating_point():
        pitch = pitch.to(torch.get_default_dtype())
    roll = torch.as_tensor(roll, dtype=pitch.dtype, device=pitch.device)
    base = torch.tensor(LEVEL_CAMERA_TO_WORLD, dtype=pitch.dtype, device=pitch.device)
    return base @ rot_x(pitch) @ rot_z(roll)


def pitch_roll(cam_to_world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`camera_to_world`: ``(..., 3, 3)`` -> ``(pitch, roll)`` radians ``(...)``.

    With ``M = R_base^T R = R_x(p) R_z(r)``: ``p = atan2(-M_12, M_22)``, ``r = atan2(-M_01,
    M_00)`` (a rotation with yaw gives the pitch and roll of its no-yaw part)."""
    _check(cam_to_world, (*cam_to_world.shape[:-2], 3, 3), "pitch_roll", "cam_to_world",
           "(..., 3, 3)")
    base = torch.tensor(LEVEL_CAMERA_TO_WORLD, dtype=cam_to_world.dtype,
                        device=cam_to_world.device)
    m = base.T @ cam_to_world
    return torch.atan2(-m[..., 1, 2], m[..., 2, 2]), torch.atan2(-m[..., 0, 1], m[..., 0, 0])


def vertical_fov(focal, image_size) -> torch.Tensor:
    """Vertical field of view ``2 atan(H / (2 f))`` in radians, ``image_size (..., 2)`` = (W, H)."""
    size = torch.as_tensor(image_size)
    if not size.is_floating_point():
        size = size.to(torch.get_default_dtype())
    return 2 * torch.atan(size[..., 1] / (2 * torch.as_tensor(focal, dtype=size.dtype)))


def world_root_relative(points: torch.Tensor, root: torch.Tensor,
                        rotation: torch.Tensor) -> torch.Tensor:
    """Camera-frame points ``(B, N, 3)`` about their ``root (B, 3)`` turned into the world frame
    by ``rotation (B, 3, 3)`` (camera -> world, or any relative rotation): ``(X - root) R^T``.

    A body posed with root orientation ``R_c`` has ``X - J_0 = R_c (X_0 - J_0)``, so turning it by
    ``R_w R_c^T`` poses it with the root orientation ``R_w`` exactly (W-HMR's world output)."""
    fn = "world_root_relative"
    _check(points, (None, None, 3), fn, "points", "(B, N, 3)")
    _check(root, (points.shape[0], 3), fn, "root", "(B, 3)", ("points", points))
    _check(rotation, (points.shape[0], 3, 3), fn, "rotation", "(B, 3, 3)", ("points", points))
    return (points - root[:, None]) @ rotation.transpose(1, 2)
