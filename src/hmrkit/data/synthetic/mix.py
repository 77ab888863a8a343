"""Pose mixes: which key poses people take, how often, and what holds them up.

The first synthetic distribution (``pose_mix="v1"`` of :class:`~hmrkit.data.synthetic.scene.
SceneConfig`, the synth-v1 benchmarks) draws a key pose uniformly from
:data:`~hmrkit.data.synthetic.poses.V1_KEY_POSES` and slerps it half of the time towards any
other one, so a third of its people stand and many sit or half-sit on nothing.  A *mix*
instead groups key poses by what a person is doing (:class:`PoseGroup`): a group is drawn by
its weight, and the pose comes from a :class:`~hmrkit.data.synthetic.poses.PoseSampler` over
that group's key poses only, so interpolation stays between compatible poses (two walking
phases, two seated postures) and never produces a half-sitting person.  Each group names its
*support*, what carries the body, which the scene checks or builds
(:mod:`hmrkit.data.synthetic.props`): feet on the ground, a seat under the pelvis and thighs,
the buttocks or the knees on the floor.

:data:`PHOTO_MIX` is the default mix: mostly standing and walking, as in photos of people
and in benchmarks such as 3DPW, with the everyday actions of the key-pose library, and
sitting only on a seat (or on the floor, resting on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hmrkit.data.synthetic.poses import KEY_POSES, PoseSampler, SelfIntersection

SUPPORTS = ("feet", "seat", "floor", "knees")
"""What can carry a body: feet on the ground plane, a seat prop under the pelvis and thighs,
the buttocks on the floor, a knee on the floor."""


@dataclass(frozen=True)
class PoseGroup:
    """Key poses of one kind of activity, drawn with probability ``weight``."""

    name: str
    weight: float
    """Probability of the group (the weights of a mix sum to 1)."""
    key_poses: tuple[str, ...]
    """Names of :data:`~hmrkit.data.synthetic.poses.KEY_POSES`; slerps stay among them."""
    support: str = "feet"
    """One of :data:`SUPPORTS`."""

    def __post_init__(self):
        unknown = [n for n in self.key_poses if n not in KEY_POSES]
        if unknown or not self.key_poses:
            raise ValueError(f"pose group '{self.name}': unknown or no key poses {unknown}")
        if self.support not in SUPPORTS:
            raise ValueError(f"pose group '{self.name}': support must be one of {SUPPORTS}, "
                             f"got '{self.support}'")
        if not self.weight >= 0:
            raise ValueError(f"pose group '{self.name}': weight must be >= 0, got {self.weight}")


PHOTO_MIX: tuple[PoseGroup, ...] = (
    PoseGroup("stand", 0.28, ("stand_relaxed", "rest", "stand_contrapposto", "hands_on_hips",
                              "arms_crossed", "hand_to_face", "stand_phone", "stand_hold_cup")),
    PoseGroup("walk", 0.22, ("walk_contact", "walk_down", "walk_passing", "walk_up")),
    PoseGroup("gesture", 0.14, ("wave", "point_forward", "arms_raised", "reach_forward",
                                "reach_up", "reach_side", "twist", "side_bend", "t_pose")),
    PoseGroup("run", 0.06, ("run_contact", "run_down", "run_float", "run_push_off")),
    PoseGroup("seated", 0.12, ("sit_chair", "sit_chair_lean_back", "sit_elbows_on_knees",
                               "sit_typing", "sit_phone", "sit_stool_high"), "seat"),
    PoseGroup("bend", 0.05, ("bend_forward", "reach_floor")),
    PoseGroup("sport", 0.05, ("throw", "kick_front", "lunge_front", "lunge_side", "jump_star",
                              "jump_tuck", "jump_crouch")),
    PoseGroup("squat", 0.03, ("squat", "crouch")),
    PoseGroup("kneel", 0.03, ("kneel_on_one_knee", "kneel_two_knees", "kneel_sit_on_heels"),
              "knees"),
    PoseGroup("floor", 0.02, ("sit_floor_legs_forward", "sit_floor_knees_bent"), "floor"),
)
"""The photo-like mix: 64 % standing, walking or gesturing, 6 % running, 12 % seated on a
prop, 5 % bending, 5 % sport (throwing, kicking, lunging, jumping), 8 % squatting, kneeling
or sitting on the floor."""

POSE_MIXES: dict[str, tuple[PoseGroup, ...] | None] = {"v1": None, "photo": PHOTO_MIX}
"""Choices of :attr:`SceneConfig.pose_mix`; ``"v1"`` is the plain :class:`PoseSampler`."""


class MixSampler:
    """Poses (24, 3, 3) drawn from a mix of :class:`PoseGroup`, deterministic for a seed.

    One :class:`PoseSampler` per group (its own seed drawn from ``seed``), so redrawing a
    pose of a group (when its support fails) leaves the other groups' streams unchanged.

    Args:
        groups: the mix (default :data:`PHOTO_MIX`).
        seed: seed of the group choice and of the per-group samplers.
        noise_deg, interpolate_prob: as :class:`PoseSampler` (slerps stay within a group).
        reject_self_intersection: redraw self-intersecting poses (:class:`SelfIntersection`).
        body: a :class:`SelfIntersection` to share, or a body for a new one.
    """

    def __init__(self, groups: Sequence[PoseGroup] = PHOTO_MIX, seed: int = 0,
                 noise_deg: float = 8.0, interpolate_prob: float = 0.5,
                 reject_self_intersection: bool = True, body=None):
        self.groups = tuple(groups)
        weights = np.array([g.weight for g in self.groups], dtype=np.float64)
        if not self.groups or abs(weights.sum() - 1) > 1e-6:
            raise ValueError(f"pose mix weights must sum to 1, got {weights.sum():.6f}")
        self.weights = weights / weights.sum()
        self.rng = np.random.default_rng(seed)
        checker = None
        if reject_self_intersection:
            checker = body if isinstance(body, SelfIntersection) else SelfIntersection(body)
        self.samplers = [
            PoseSampler(seed=int(self.rng.integers(2**31)), key_poses=g.key_poses,
                        interpolate_prob=interpolate_prob, noise_deg=noise_deg,
                        reject_self_intersection=reject_self_intersection, body=checker)
            for g in self.groups
        ]

    def group(self) -> int:
        """Index of a random group."""
        return int(self.rng.choice(len(self.groups), p=self.weights))

    def draw(self, group: int) -> np.ndarray:
        """One pose (24, 3, 3) float64 of group ``group``."""
        return self.samplers[group].sample_numpy(1)[0]

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` poses (n, 24, 3, 3) float64 and the (n,) group index of each."""
        groups = np.array([self.group() for _ in range(n)], dtype=np.int64)
        poses = np.stack([self.draw(g) for g in groups]) if n else np.zeros((0, 24, 3, 3))
        return poses, groups

    @property
    def stats(self) -> dict[str, int]:
        """Sum of the per-group :attr:`PoseSampler.stats`."""
        out: dict[str, int] = {}
        for s in self.samplers:
            for k, v in s.stats.items():
                out[k] = out.get(k, 0) + v
        return out
