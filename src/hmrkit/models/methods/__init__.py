"""Methods: each one a :class:`~hmrkit.models.methods.base.Method` (the contract), found by
name or class path in :mod:`hmrkit.models.registry`."""

from .base import BodyEstimate, Method, Optim
from .cliff import CLIFF
from .hmr import HMR
from .mean_pose import MeanPose
from .multiroi import MultiRoI
from .whmr import WHMR

__all__ = ["CLIFF", "HMR", "WHMR", "BodyEstimate", "MeanPose", "Method", "MultiRoI", "Optim"]
