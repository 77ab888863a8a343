"""Methods: each one a :class:`~hmrkit.models.methods.base.MethodModule` (Lightning module)."""

from .base import BodyEstimate, LossWeights, MethodModule
from .cliff import CLIFF
from .hmr import HMR
from .mean_pose import MeanPose
from .multiroi import MultiRoI

METHODS: dict[str, type[MethodModule]] = {
    "hmr": HMR, "cliff": CLIFF, "mean-pose": MeanPose, "multiroi": MultiRoI,
}
"""Method names (``hmrkit evaluate --method``, configs) -> classes."""

__all__ = ["METHODS", "BodyEstimate", "CLIFF", "HMR", "LossWeights", "MeanPose", "MethodModule",
           "MultiRoI"]
