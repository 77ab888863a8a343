"""CLIFF baseline (Li et al. 2022): box information in, 2D loss in the full image.

The regressor also sees the normalised box ``[c_x - W/2, c_y - H/2, b]`` (CLIFF eq. 1 /
methods.md "Shared conventions"; :class:`~hmrkit.models.box_info.CliffBoxInfo`), and the
predicted crop camera is converted to the full-image camera (``t_z = 2 f / (b s)``...), whose
projection of the joints is compared with the labelled 2D keypoints in the full image (focal
``sqrt(W^2 + H^2)`` or the known one; :class:`~hmrkit.losses.sets.CLIFFLosses`). Everything
else is :class:`~hmrkit.models.methods.hmr.HMR`.
"""

from __future__ import annotations

from collections.abc import Callable

from hmrkit.losses.sets import CLIFFLosses, LossSet
from hmrkit.models.box_info import BoxInfo, CliffBoxInfo

from .hmr import HMR

__all__ = ["CLIFF"]


class CLIFF(HMR):
    """HMR with CLIFF's box information and full-image 2D loss (its other arguments are
    :class:`~hmrkit.models.methods.hmr.HMR`'s)."""

    def __init__(self, box_info: Callable[[], BoxInfo] | None = CliffBoxInfo,
                 losses: Callable[[], LossSet] = CLIFFLosses, **kwargs):
        """
        Args:
            box_info: CLIFF's box information (:class:`~hmrkit.models.box_info.CliffBoxInfo`).
            losses: CLIFF's objective (:class:`~hmrkit.losses.sets.CLIFFLosses`).
            kwargs: :class:`~hmrkit.models.methods.hmr.HMR`'s arguments.
        """
        super().__init__(box_info=box_info, losses=losses, **kwargs)
