"""Refiners: a stage after any method that turns an estimate into a better one.

A refiner takes the batch (the person crops with their ``crop_affine``, so the full image is
reachable, and whatever else the Sample holds: boxes, keypoints from a front end), the
method's estimate, the camera (the estimate's predicted one, else the sample's) and the
method's body model, and returns an estimate of the same people. ``hmrkit evaluate`` and
``hmrkit predict`` run one after the method with ``--refiner NAME`` (names and class paths as
in :mod:`hmrkit.models.registry`). Fitters to keypoints or dense targets are refiners
(:mod:`hmrkit.models.fit_refiners`: ``keypoints``, ``keypoints-labels``, ``dense``,
``dense-labels``).
"""

from __future__ import annotations

from torch import Tensor

from hmrkit.body.estimate import BodyEstimate
from hmrkit.body.model import BodyModel
from hmrkit.geometry.cameras import Camera

__all__ = ["IdentityRefiner", "Refiner", "RefinerError"]


class RefinerError(ValueError):
    """A refiner that cannot run (a missing model file, a setting that does not apply), said
    in one line."""


class Refiner:
    """Base of the refiners: ``refiner(batch, estimate, camera, body) -> estimate``."""

    def input_keys(self) -> tuple[str, ...]:
        """Sample keys the refiner reads besides the method's (``hmrkit evaluate`` loads
        them; labels, for the refiners that fit to them)."""
        return ()

    def __call__(self, batch: dict[str, Tensor], estimate: BodyEstimate, camera: Camera,
                 body: BodyModel) -> BodyEstimate:
        raise NotImplementedError


class IdentityRefiner(Refiner):
    """Returns the estimate unchanged (the stage's placeholder and its test)."""

    def __call__(self, batch: dict[str, Tensor], estimate: BodyEstimate, camera: Camera,
                 body: BodyModel) -> BodyEstimate:
        return estimate
