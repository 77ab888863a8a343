"""Rotation conversions: a thin layer over ``roma`` (and a faster logarithm map).

Inside hmrkit rotations are 3x3 matrices ``(..., 3, 3)`` acting on column vectors
(``x' = R x``), angles in radians. Axis-angle (rotation vectors, ``(..., 3)``) is the storage
format of SMPL-style parameters; the 6D representation (``(..., 6)``) appears only at network
outputs.

6D layout (Zhou et al., CVPR 2019, as in HMR/SPIN): the six numbers are reshaped row-major to a
``(3, 2)`` matrix whose two *columns* are the first two columns of ``R``, i.e.
``x6 = [R00, R01, R10, R11, R20, R21]``. Gram-Schmidt on those columns gives ``R``.
(PyTorch3D stores the first two *rows* instead; the two layouts are not interchangeable.)
"""

from __future__ import annotations

import functools

import numpy as np
import roma
import torch

MIRROR = np.diag([-1.0, 1.0, 1.0])
"""The left-right mirror ``x -> -x`` of the camera, body and world frames (all have x across the
body): a mirrored point is ``MIRROR X``, a mirrored rotation ``MIRROR R MIRROR``."""

__all__ = [
    "axis_angle_to_rotmat",
    "rotmat_to_axis_angle",
    "sixd_to_rotmat",
    "rotmat_to_sixd",
    "to_rotmat",
    "rot_x",
    "rot_y",
    "rot_z",
    "flip_rotmat_lr",
    "geodesic_angle",
]


def axis_angle_to_rotmat(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: ``(..., 3)`` rotation vectors -> ``(..., 3, 3)`` matrices."""
    _check_last(axis_angle, (3,), "axis_angle_to_rotmat", "axis_angle")
    return roma.rotvec_to_rotmat(axis_angle)


def rotmat_to_axis_angle(rotmat: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` rotation matrices -> ``(..., 3)`` rotation vectors, angle in ``[0, pi]``.

    The logarithm map read off the matrix: ``w = vee(R - R^T) / 2 = sin(theta) a`` and
    ``cos(theta) = (tr R - 1) / 2`` (one product of the flattened matrices with a constant
    9 x 4 matrix), so ``r = theta / sin(theta) w`` (with ``1 + sin^2 / 6`` below
    ``sin^2 = 1e-8``). A few times fewer operations, forward and backward, than
    ``roma.rotmat_to_rotvec`` (which goes through a quaternion), so it is what the fitter's pose
    prior calls every iteration. Near ``theta = pi`` the axis is lost in ``w``: when any angle is
    above 171.9 deg (``cos < -0.99``), and inside ``torch.compile``, the whole batch goes through
    roma instead.
    """
    _check_last(rotmat, (3, 3), "rotmat_to_axis_angle", "rotmat")
    m = rotmat.flatten(-2) @ _log_map_coefficients(rotmat.dtype, rotmat.device)
    w, cos = m[..., :3], m[..., 3] - 0.5
    if torch.compiler.is_compiling() or rotmat.numel() == 0 or bool((cos < -0.99).any()):
        return roma.rotmat_to_rotvec(rotmat)
    sin2 = (w * w).sum(-1)
    small = sin2 < 1e-8
    sin = torch.sqrt(torch.where(small, 1.0, sin2))
    factor = torch.where(small, 1 + sin2 / 6, torch.atan2(sin, cos) / sin)
    return factor[..., None] * w


@functools.lru_cache(maxsize=8)
def _log_map_coefficients(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(9, 4): flattened ``R`` (row-major) -> ``vee(R - R^T) / 2`` and ``tr(R) / 2``."""
    c = torch.zeros(9, 4, dtype=torch.float64)
    for col, (plus, minus) in enumerate(((7, 5), (2, 6), (3, 1))):  # R21-R12, R02-R20, R10-R01
        c[plus, col], c[minus, col] = 0.5, -0.5
    c[[0, 4, 8], 3] = 0.5
    return c.to(dtype=dtype, device=device)


def sixd_to_rotmat(sixd: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Zhou et al. 6D -> rotation matrix by Gram-Schmidt (SPIN column layout, see module doc).

    ``eps`` clamps the norms inside Gram-Schmidt (0 = exact; NaN for degenerate input).
    """
    _check_last(sixd, (6,), "sixd_to_rotmat", "sixd")
    return roma.special_gramschmidt(sixd.unflatten(-1, (3, 2)), epsilon=eps)


def rotmat_to_sixd(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrix -> 6D: its first two columns, flattened row-major (inverse of
    :func:`sixd_to_rotmat` on rotation matrices)."""
    _check_last(rotmat, (3, 3), "rotmat_to_sixd", "rotmat")
    return rotmat[..., :, :2].flatten(-2)


def to_rotmat(x: torch.Tensor, kind: str | None = None) -> torch.Tensor:
    """Any supported rotation format -> ``(..., 3, 3)`` matrices.

    ``kind`` is ``"axis_angle"``, ``"sixd"``, ``"rotmat"`` or ``None`` to infer it from the
    trailing shape: ``(..., 3, 3)`` matrices (checked first, so a ``(B, 3, 3)`` tensor is read
    as B matrices, not as 3 rotation vectors per sample -- pass ``kind`` to override),
    ``(..., 6)`` 6D, ``(..., 3)`` axis-angle.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"to_rotmat: expected a torch.Tensor, got {type(x).__name__}")
    if kind is None:
        if x.dim() >= 2 and tuple(x.shape[-2:]) == (3, 3):
            kind = "rotmat"
        elif x.dim() >= 1 and x.shape[-1] == 6:
            kind = "sixd"
        elif x.dim() >= 1 and x.shape[-1] == 3:
            kind = "axis_angle"
        else:
            raise ValueError(
                f"to_rotmat: cannot read a rotation from shape {tuple(x.shape)}; expected "
                "(..., 3) axis-angle, (..., 6) 6D or (..., 3, 3) matrices "
                "(reshape flattened (..., 9) matrices to (..., 3, 3) first)"
            )
    if kind == "rotmat":
        _check_last(x, (3, 3), "to_rotmat", "rotmat")
        return x
    if kind == "sixd":
        return sixd_to_rotmat(x)
    if kind == "axis_angle":
        return axis_angle_to_rotmat(x)
    raise ValueError(f"to_rotmat: unknown kind {kind!r}; use 'axis_angle', 'sixd' or 'rotmat'")


def _axis_rotation(axis: str, angle) -> torch.Tensor:
    angle = torch.as_tensor(angle)
    if not angle.is_floating_point():
        angle = angle.to(torch.get_default_dtype())
    return roma.euler_to_rotmat(axis, angle.unsqueeze(-1))


def rot_x(angle) -> torch.Tensor:
    """Right-handed rotation about x by ``angle`` (radians, shape ``(...)``) -> ``(..., 3, 3)``."""
    return _axis_rotation("x", angle)


def rot_y(angle) -> torch.Tensor:
    """Right-handed rotation about y by ``angle`` (radians, shape ``(...)``) -> ``(..., 3, 3)``."""
    return _axis_rotation("y", angle)


def rot_z(angle) -> torch.Tensor:
    """Right-handed rotation about z by ``angle`` (radians, shape ``(...)``) -> ``(..., 3, 3)``.

    In the camera frame (x right, y down, z forward) ``rot_z(a)`` turns image content by ``a``
    clockwise on screen, the same as a crop rotation ``a`` in :mod:`hmrkit.geometry.crops`.
    """
    return _axis_rotation("z", angle)


def flip_rotmat_lr(rotmat: torch.Tensor) -> torch.Tensor:
    """Mirror rotations across the sagittal plane ``x -> -x``: ``M R M``, ``M = diag(-1, 1, 1)``.

    Equivalent to negating the y and z components of the rotation vector (SPIN ``flip_pose``).
    Flipping a whole body pose also needs the left/right joint permutation (not done here).
    """
    _check_last(rotmat, (3, 3), "flip_rotmat_lr", "rotmat")
    m = rotmat.new_tensor(np.diag(MIRROR))
    return rotmat * m[:, None] * m[None, :]


def geodesic_angle(rot_a: torch.Tensor, rot_b: torch.Tensor) -> torch.Tensor:
    """Angle (radians, ``(...)``) of the relative rotation ``R_a^T R_b``."""
    _check_last(rot_a, (3, 3), "geodesic_angle", "rot_a")
    _check_last(rot_b, (3, 3), "geodesic_angle", "rot_b")
    return roma.rotmat_geodesic_distance(rot_a, rot_b)


def _check_last(x: torch.Tensor, tail: tuple[int, ...], fn: str, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < len(tail) or tuple(x.shape[-len(tail) :]) != tail:
        want = "(..., " + ", ".join(str(t) for t in tail) + ")"
        raise ValueError(f"{fn}: {name} has shape {tuple(x.shape)}, expected {want}")
