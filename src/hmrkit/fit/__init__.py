"""SMPLify-style fitting: a batched optimiser over pose, shape and the full-image camera
translation (:class:`Fitter`), its data terms (:mod:`.terms`: sparse 2D keypoints of any named
set, dense per-vertex 2D targets, root-aligned 3D keypoints), the Geman-McClure cost
(:mod:`.robust`) and its priors (:mod:`.priors`: shape, a learned pose mixture, joint limits).

Layering: this package uses the body model, geometry and rendering only (never the synthetic
engine); the refiners that run it after a method live in :mod:`hmrkit.models.fit_refiners`.
"""

from .fitter import STATUS_OK, FitConfig, FitResult, Fitter
from .priors import PosePrior, shape_prior
from .robust import geman_mcclure
from .terms import KEYPOINT_ROOTS, Targets

__all__ = ["KEYPOINT_ROOTS", "STATUS_OK", "FitConfig", "FitResult", "Fitter", "PosePrior",
           "Targets", "geman_mcclure", "shape_prior"]
