"""Box information: where a person crop sits in the full image, as an input of the heads.

A box-information part is built with no argument and called with the crops (a
:class:`~hmrkit.geometry.crops.CropBox`, any leading shape: ``(B,)`` boxes or ``(B, M)`` RoIs)
and the full-image cameras ``(B,)``; it returns ``(..., dim)`` features. CLIFF's (Li et al.
2022, eq. 1) is :class:`CliffBoxInfo`, W-HMR's 5-D global information (eq. 7)
:class:`WHMRGlobalInfo`.
"""

from __future__ import annotations

from torch import Tensor

from hmrkit.geometry.cameras import Camera, cliff_bbox_info, whmr_global_info
from hmrkit.geometry.crops import CropBox

__all__ = ["BoxInfo", "CliffBoxInfo", "WHMRGlobalInfo"]


class BoxInfo:
    """Base of the box-information parts."""

    dim: int = 0
    """Width of the features."""

    def __call__(self, crop: CropBox, camera: Camera) -> Tensor:
        raise NotImplementedError


class CliffBoxInfo(BoxInfo):
    """CLIFF's ``[c_x - c_x0, c_y - c_y0, b]`` of every box, normalised by the focal
    (:func:`hmrkit.geometry.cameras.cliff_bbox_info`, measured from the principal point). A
    rotated box gives its centre in the rolled camera's image
    (:meth:`~hmrkit.geometry.crops.CropBox.rolled_center`), the frame its estimate is made
    in."""

    dim = 3

    def __init__(self, normalise: str | None = "cliff"):
        """
        Args:
            normalise: ``"cliff"`` (official code, constants fitted on Human3.6M), ``"focal"``
                (all ``/ f``) or None (raw pixels).
        """
        self.normalise = normalise

    def __call__(self, crop: CropBox, camera: Camera) -> Tensor:
        flat = crop.flatten()
        cam = camera.repeat_interleave(len(flat.size) // len(camera)) if len(flat.size) != len(
            camera) else camera
        center = crop.rolled_center(camera).reshape(-1, 2)
        info = cliff_bbox_info(center, flat.size, cam.image_size.to(center),
                               cam.focal.to(center), normalise=self.normalise,
                               principal_point=cam.principal_point.to(center))
        return info.reshape(*crop.shape, self.dim)


class WHMRGlobalInfo(BoxInfo):
    """W-HMR's global information (eq. 7): ``[c_x - W/2, c_y - H/2, h_box, W, H] /
    sqrt(W^2 + H^2)`` of every box (:func:`hmrkit.geometry.cameras.whmr_global_info`; the
    normaliser is never a predicted focal)."""

    dim = 5

    def __call__(self, crop: CropBox, camera: Camera) -> Tensor:
        flat = crop.flatten()
        cam = camera.repeat_interleave(len(flat.size) // len(camera)) if len(flat.size) != len(
            camera) else camera
        info = whmr_global_info(flat.center, flat.size, cam.image_size.to(flat.center))
        return info.reshape(*crop.shape, self.dim)
