"""What holds a synthetic person up: ground contact checks and seat props.

Every person of a :mod:`pose mix <hmrkit.data.synthetic.mix>` has a *support*; on a body
posed with an identity root (the body frame: y up, z forward, x to the body's left, ground at
the lowest vertex) :func:`support` checks or builds it:

- ``"feet"``: a foot is the lowest part of the body (no hand or knee below the feet);
- ``"floor"``: the buttocks touch the ground (sitting on the floor rests on it);
- ``"knees"``: a knee touches the ground;
- ``"seat"``: a :class:`Prop` (chair with a backrest, stool, bench or solid block, made of
  boxes) is built under the pelvis and thighs, its top at the lowest point of the buttocks
  and thighs over its footprint, standing on the ground, with no body vertex deeper than
  :data:`PENETRATION_TOL` inside it.

"Touch" means within :data:`CONTACT_TOL` of the ground.  A support that fails means the pose
is redrawn.  Props are rendered with the people by the same G-buffer rasteriser, so they
occlude (and are occluded by) them correctly; pixels a prop hides leave the person's mask,
IUV and depth like any other occluder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hmrkit.data.synthetic.poses import SEGMENTS

CONTACT_TOL = 0.03
"""Largest gap (metres) between a supporting part and the ground, or a seat."""
PENETRATION_TOL = 0.01
"""Deepest a body vertex may sink into a prop (metres)."""
SEAT_HEIGHT = (0.25, 0.9)
"""Range of seat heights (metres above the ground)."""
PROP_KINDS: dict[str, float] = {"chair": 0.4, "stool": 0.2, "bench": 0.25, "block": 0.15}
"""Seat kinds and their probabilities: ``chair`` (slab, four legs, backrest), ``stool`` (slab,
four legs), ``bench`` (a long slab on four legs), ``block`` (a solid box: ottoman, crate,
wall)."""

_SEG = {name: i for i, name in enumerate(SEGMENTS)}
_FEET = [_SEG["left_foot"], _SEG["right_foot"]]
_SHINS = [_SEG["left_shin"], _SEG["right_shin"]]
_SEAT = [_SEG["torso"], _SEG["left_thigh"], _SEG["right_thigh"]]
_KNEES = (4, 5)  # SMPL-24 joint indices of the knees

_WOOD = np.array([(120, 80, 45), (150, 105, 60), (95, 60, 35), (175, 135, 90), (200, 170, 120)])
_PAINT = np.array([(35, 35, 38), (222, 220, 214), (125, 125, 130), (45, 75, 140),
                   (150, 45, 42), (60, 110, 72), (205, 172, 62), (110, 70, 110)])

# the four corners of each box face (0: low, 1: high along x, y, z), in order around the face
_FACE_CORNERS = (
    ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)), ((1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)),
    ((0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)), ((0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0)),
    ((0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)), ((0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)),
)


@dataclass
class Prop:
    """A seat made of axis-aligned boxes in a person's body frame, with a procedural texture."""

    kind: str
    """One of :data:`PROP_KINDS`."""
    boxes: np.ndarray
    """(B, 2, 3) low and high corners of each box (metres, body frame)."""
    colour: np.ndarray
    """(3,) base RGB (0-255)."""
    pattern: str
    """``"grain"`` (wood: stripes along ``axis``) or ``"plain"`` (paint, fabric)."""
    frequency: float
    """Stripes per metre of the grain."""
    axis: int
    """Body-frame axis the grain runs across."""
    phase: float

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (24 B, 3) and triangles (12 B, 3), four vertices per box face (flat
        normals)."""
        verts, faces = [], []
        for lo, hi in self.boxes:
            for corners in _FACE_CORNERS:
                base = len(verts)
                verts.extend(np.where(np.array(c, bool), hi, lo) for c in corners)
                faces.extend([(base, base + 1, base + 2), (base, base + 2, base + 3)])
        return np.array(verts, np.float64), np.array(faces, np.int64)

    def colours(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) float RGB of the prop's surface at body-frame ``points`` (N, 3)."""
        p = np.asarray(points, np.float64)
        other = (self.axis + 1) % 3
        wave = 0.015 * np.sin(2 * np.pi * 6.0 * p[:, other] + self.phase)
        fine = 0.04 * np.sin(2 * np.pi * (97.0 * p[:, 0] + 71.0 * p[:, 1] + 83.0 * p[:, 2]))
        if self.pattern == "grain":
            shade = 1 + 0.14 * np.sin(2 * np.pi * self.frequency * (p[:, self.axis] + wave)
                                      + self.phase) + fine
        else:
            shade = 1 + fine
        return np.clip(self.colour[None] * shade[:, None], 0, 255)

    def depth_inside(self, points: np.ndarray) -> np.ndarray:
        """(N,) how deep (metres) each point lies inside the union of the boxes (0 outside)."""
        p = np.asarray(points, np.float64)[:, None]
        lo, hi = self.boxes[None, :, 0], self.boxes[None, :, 1]
        depth = np.minimum(p - lo, hi - p).min(-1)  # (N, B), negative outside
        return np.maximum(depth.max(-1), 0.0)

    def describe(self) -> dict:
        """JSON-ready description (scene metadata)."""
        d = asdict(self)
        d["boxes"] = np.round(self.boxes, 4).tolist()
        d["colour"] = [int(c) for c in self.colour]
        d["seat_height"] = round(float(self._top - self.boxes[:, 0, 1].min()), 4)
        for k in ("frequency", "phase"):
            d[k] = round(float(d[k]), 4)
        return d

    @property
    def _top(self) -> float:
        return float(self.boxes[0, 1, 1])  # box 0 is the seat


def _lowest(verts: np.ndarray, sel: np.ndarray) -> float:
    return float(verts[sel, 1].min()) if np.any(sel) else np.inf


def feet_on_ground(verts: np.ndarray, segment: np.ndarray) -> bool:
    """A foot is within :data:`CONTACT_TOL` of the lowest vertex."""
    return _lowest(verts, np.isin(segment, _FEET)) - verts[:, 1].min() <= CONTACT_TOL


def buttocks_on_ground(verts: np.ndarray, joints: np.ndarray, segment: np.ndarray) -> bool:
    """Torso or thigh vertices below the pelvis touch the ground."""
    sel = np.isin(segment, _SEAT) & (verts[:, 1] < joints[0, 1])
    sel &= np.abs(verts[:, 2] - joints[0, 2]) < 0.25  # the seat region, not the thighs' ends
    return _lowest(verts, sel) - verts[:, 1].min() <= CONTACT_TOL


def knee_on_ground(verts: np.ndarray, joints: np.ndarray, segment: np.ndarray) -> bool:
    """Vertices within 12 cm of a knee joint touch the ground."""
    legs = np.isin(segment, _SHINS + [_SEG["left_thigh"], _SEG["right_thigh"]])
    near = np.zeros(len(verts), bool)
    for k in _KNEES:
        near |= np.linalg.norm(verts - joints[k], axis=1) < 0.12
    return _lowest(verts, legs & near) - verts[:, 1].min() <= CONTACT_TOL


def build_seat(verts: np.ndarray, joints: np.ndarray, segment: np.ndarray,
               rng: np.random.Generator) -> Prop | None:
    """A seat under a seated body (body frame), or None when none fits (module doc)."""
    ground = float(verts[:, 1].min())
    pelvis = joints[0]
    seat_part = np.isin(segment, _SEAT)
    lower = seat_part & (verts[:, 1] < pelvis[1])
    if not np.any(lower):
        return None
    kind = str(rng.choice(list(PROP_KINDS), p=list(PROP_KINDS.values())))
    x0, x1 = verts[lower, 0].min(), verts[lower, 0].max()
    if kind == "bench":
        width = rng.uniform(0.9, 1.8)
        centre = (x0 + x1) / 2 + rng.uniform(-0.3, 0.3) * (width - (x1 - x0))
        x0, x1 = min(x0, centre - width / 2), max(x1, centre + width / 2)
    else:
        x0, x1 = x0 - rng.uniform(0.02, 0.1), x1 + rng.uniform(0.02, 0.1)
    knee_z = float(joints[list(_KNEES), 2].mean())
    back = float(verts[lower, 2].min()) - rng.uniform(0.0, 0.06)
    front = float(pelvis[2] + rng.uniform(0.45, 0.8) * (knee_z - pelvis[2]))
    if front <= back + 0.15:
        return None
    over = seat_part & (verts[:, 0] >= x0) & (verts[:, 0] <= x1) & (verts[:, 2] >= back) & (
        verts[:, 2] <= front)
    top = _lowest(verts, over)
    if not SEAT_HEIGHT[0] <= top - ground <= SEAT_HEIGHT[1]:
        return None
    boxes = []
    if kind == "block":
        boxes.append(((x0, ground, back), (x1, top, front)))
    else:
        slab = rng.uniform(0.03, 0.07)
        if kind == "chair":  # backrest behind the torso, the seat reaching back to it
            rest_h = rng.uniform(0.3, 0.55)
            torso = (segment == _SEG["torso"]) & (verts[:, 1] > top) & (
                verts[:, 1] < top + rest_h)
            back = min(back, float(verts[torso, 2].min()) - 0.01) if np.any(torso) else back
            thick = rng.uniform(0.025, 0.05)
            boxes.append(((x0, top - slab, back - thick), (x1, top, front)))
            boxes.append(((x0, top, back - thick), (x1, top + rest_h, back)))
        else:
            boxes.append(((x0, top - slab, back), (x1, top, front)))
        leg = rng.uniform(0.03, 0.05)
        z_back = boxes[0][0][2]
        for x in (x0, x1 - leg):
            for z in (z_back, front - leg):
                boxes.append(((x, ground, z), (x + leg, top - slab, z + leg)))
    wood = rng.random() < 0.6
    palette = _WOOD if wood else _PAINT
    prop = Prop(
        kind=kind, boxes=np.array(boxes, np.float64),
        colour=palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.15, 3),
        pattern="grain" if wood else "plain", frequency=float(rng.uniform(18, 60)),
        axis=int(rng.choice([0, 2])), phase=float(rng.uniform(0, 2 * np.pi)),
    )
    if np.any(prop.depth_inside(verts) > PENETRATION_TOL):
        return None
    return prop


def pitch(angle_deg: float) -> np.ndarray:
    """Rotation (3, 3) about the body's x axis (positive leans the top of the body back)."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, s], [0, -s, c]])


SETTLE_DEG = 36.0
"""Largest lean (about the body's x axis) that :func:`settle` may give a body."""


def settle(kind: str, verts: np.ndarray, joints: np.ndarray,
           segment: np.ndarray) -> np.ndarray | None:
    """Smallest lean (rotation about the pelvis' x axis, 2-degree steps up to
    :data:`SETTLE_DEG`) putting a body with support ``"floor"`` or ``"knees"`` on it, as a
    person shifts their weight until the buttocks or a knee rest on the floor; None when
    none does."""
    check = {"floor": lambda v, j: buttocks_on_ground(v, j, segment),
             "knees": lambda v, j: knee_on_ground(v, j, segment)}[kind]
    root = joints[0]
    for angle in sorted(np.arange(-SETTLE_DEG, SETTLE_DEG + 1, 2.0), key=lambda a: (abs(a), a)):
        R = pitch(angle)
        if check((verts - root) @ R.T + root, (joints - root) @ R.T + root):
            return R
    return None


@dataclass
class Support:
    """Result of :func:`support`."""

    ok: bool
    prop: Prop | None = None
    """The seat built under the body (``"seat"``)."""
    lean: np.ndarray | None = None
    """(3, 3) rotation to apply to the root about the pelvis (``"floor"``, ``"knees"``)."""


def support(kind: str, verts: np.ndarray, joints: np.ndarray, segment: np.ndarray,
            rng: np.random.Generator) -> Support:
    """Check, settle or build the support ``kind`` of a body posed with an identity root:
    vertices (V, 3), joints (24, 3), per-vertex segment (V,) (index into
    :data:`~hmrkit.data.synthetic.poses.SEGMENTS`)."""
    if kind == "seat":
        prop = build_seat(verts, joints, segment, rng)
        return Support(prop is not None, prop=prop)
    if kind == "feet":
        return Support(feet_on_ground(verts, segment))
    if kind in ("floor", "knees"):
        lean = settle(kind, verts, joints, segment)
        return Support(lean is not None, lean=lean)
    raise ValueError(f"unknown support '{kind}'")
