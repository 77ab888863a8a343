"""Synthetic scenes: posed Anny-24 people in a full camera frame, with every label.

One scene = one full image (varying size and aspect) seen by a pinhole camera with pitch
and roll relative to a world frame (y up, ground plane), one or several people on the ground
anywhere in the frame (standing on their feet, or resting on a seat prop, the floor or a
knee: :mod:`hmrkit.data.synthetic.mix`, :mod:`hmrkit.data.synthetic.props`), textured, lit,
over a background, optionally occluded.
:func:`generate_record` returns the scene as encoded tar members (see
:mod:`hmrkit.data.shards` for the record layout); it is a pure function of
``(config, index)``, so any shard can be regenerated anywhere, identically.

Frames: camera x right, y down, z forward.  World y up, ground at the lowest foot.  The
camera has no yaw (SPEC / W-HMR convention): ``cam_to_world = R_base R_x(pitch) R_z(roll)``
with ``R_base = diag(1, -1, -1)`` for a level camera looking along world -z.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache

import cv2
import numpy as np
import torch
from scipy.special import erfinv

from hmrkit.body import load_body_model
from hmrkit.body.anny24 import load_shape_table
from hmrkit.data.shards import encode_image, encode_npz
from hmrkit.data.synthetic.appearance import Outfit, paint_texture
from hmrkit.data.synthetic.backgrounds import BackgroundSource
from hmrkit.data.synthetic.mix import POSE_MIXES
from hmrkit.geometry import rotations
from hmrkit.geometry.cameras import Camera, focal_from_35mm
from hmrkit.render.gbuffer import rasterize
from hmrkit.render.maps import _interpolate_corners, sample_texture, vertex_normals

SPLITS = ("train", "val", "test")
KEYPOINT_SETS = ("smpl24", "coco17", "lsp14")
SHAPES = {"pca-gaussian": (), "adults": ("adults",), "adults+children": ("adults", "children")}
"""Choices of :attr:`SceneConfig.shapes` and the shape tables (populations) each draws from."""


@dataclass(frozen=True)
class SceneConfig:
    """Distribution of synthetic scenes.  Every field is recorded with the data."""

    seed: int = 0
    """Base seed; scene ``i`` of split ``s`` uses the stream ``(seed, s, i)``."""
    split: str = "train"
    """``train``, ``val`` or ``test``: disjoint random streams."""
    image_long_side: tuple[int, int] = (560, 720)
    """Range of the image's long side in pixels."""
    aspects: tuple[float, ...] = (4 / 3, 3 / 4, 16 / 9, 1.0, 3 / 2)
    """Width / height ratios to draw from."""
    focal_mm: tuple[float, float] = (18.0, 120.0)
    """35 mm-equivalent focal range (log-uniform): wide angle to long lens."""
    pitch_deg: float = 12.0
    """Std of camera pitch (clipped at 2.5 std); positive tilts the camera down."""
    roll_deg: float = 4.0
    """Std of camera roll (clipped at 2.5 std)."""
    people: tuple[float, ...] = (0.75, 0.18, 0.07)
    """Probabilities of 1, 2, 3 people."""
    person_height_frac: tuple[float, float] = (0.35, 0.9)
    """Height of a lone person's silhouette as a fraction of the image height."""
    shapes: str = "pca-gaussian"
    """Body shapes (betas), one of :data:`SHAPES`: ``"pca-gaussian"``: ``N(0, 1)`` per
    component clipped at 2.5 (the Anny-24 PCA space is whitened over adults, so this
    approximates adults); ``"adults"``: shapes of real Anny adult phenotypes, rows of the
    shipped table (:func:`hmrkit.body.anny24.load_shape_table`); ``"adults+children"``: a
    child's row with probability ``children_prob``, an adult's otherwise (children: Anny
    ages of about 3 to 14 years, projected onto the adult shape space)."""
    children_prob: float = 0.3
    """Probability that a person is a child, with ``shapes="adults+children"`` only."""
    facing_std_deg: float = 45.0
    """Std of a person's yaw about the vertical (0 = facing the camera), like photos of people,
    who mostly face the camera; clipped at 180 degrees."""
    facing_uniform_prob: float = 0.25
    """Probability that a person's yaw is uniform over the full circle instead."""
    occluder_prob: float = 0.25
    """Probability that a person gets a random occluder over part of the body."""
    background_folder: str | None = None
    """Optional folder of background photos (mixed with procedural backgrounds)."""
    texture_resolution: int = 256
    """Side of each person's UV texture."""
    jpeg_quality: int = 92
    pose_mix: str = "photo"
    """People's poses, one of :data:`~hmrkit.data.synthetic.mix.POSE_MIXES`: ``"photo"``
    (:data:`~hmrkit.data.synthetic.mix.PHOTO_MIX`: mostly standing and walking, everyday
    actions, 12 % seated on a seat prop, a few kneeling or sitting on the floor, each person
    resting on the ground or on their seat) or ``"v1"`` (the synth-v1 draw: a key pose of
    :data:`~hmrkit.data.synthetic.poses.V1_KEY_POSES` slerped towards any other, ground at
    the lowest vertex)."""
    self_intersection: bool = True
    """Redraw self-intersecting poses (:class:`~hmrkit.data.synthetic.poses.SelfIntersection`
    on the mean shape)."""
    props: bool = True
    """Give seated people a seat (chair, stool, bench or block, :mod:`~hmrkit.data.synthetic.
    props`); ``False`` leaves the seated group out of the mix.  No effect with ``pose_mix="v1"``,
    which has no supports."""

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got '{self.split}'")
        if abs(sum(self.people) - 1) > 1e-6:
            raise ValueError(f"people probabilities must sum to 1, got {self.people}")
        if self.shapes not in SHAPES:
            raise ValueError(f"shapes must be one of {tuple(SHAPES)}, got '{self.shapes}'")
        if not 0.0 <= self.children_prob <= 1.0:
            raise ValueError(f"children_prob must be in [0, 1], got {self.children_prob}")
        if self.pose_mix not in POSE_MIXES:
            raise ValueError(f"pose_mix must be one of {tuple(POSE_MIXES)}, got '{self.pose_mix}'")

    def __repr__(self) -> str:  # the dataclass repr, less fields at their synth-v1 value
        kept = config_record(self)
        return "SceneConfig(" + ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name in kept) + ")"


V1_PEOPLE = {"pose_mix": "v1", "self_intersection": False, "props": False}
"""The people of the first engine (synth-v1): fields added since, at the values that
reproduce it.  :func:`config_record` leaves them out while they hold these values."""


def config_record(config: SceneConfig) -> dict:
    """``asdict(config)`` as recorded with the data (scene metadata, record keys, manifests,
    repr), without the :data:`V1_PEOPLE` fields that hold their synth-v1 value: splits of the
    first engine stay byte-identical."""
    record = asdict(config)
    for name, value in V1_PEOPLE.items():
        if record[name] == value:
            del record[name]
    return record


BENCHMARKS: dict[str, SceneConfig] = {
    "synth-v1": SceneConfig(seed=1, split="test", **V1_PEOPLE),
    "synth-v1-hard": SceneConfig(
        seed=2, split="test", focal_mm=(12.0, 24.0), pitch_deg=22.0, roll_deg=12.0,
        occluder_prob=0.7, person_height_frac=(0.5, 0.95), **V1_PEOPLE,
    ),
    "synth-v2": SceneConfig(seed=3, split="test", pose_mix="photo", self_intersection=True,
                            props=True),
}
"""Fixed, seeded test sets (scene counts in :data:`BENCHMARK_SIZES`).  The synth-v1 pair pins
the first engine's people (:data:`V1_PEOPLE`: byte-identical shards); synth-v2 has the
photo-like pose mix with seats and self-intersection rejection."""
BENCHMARK_SIZES = {"synth-v1": 2000, "synth-v1-hard": 1000, "synth-v2": 2000}


def scene_rng(config: SceneConfig, index: int) -> np.random.Generator:
    """The random stream of scene ``index``: independent across seeds, splits and scenes."""
    return np.random.default_rng([config.seed, SPLITS.index(config.split), index])


def _rotation(axis: str, angle: float) -> np.ndarray:
    """float64 numpy rotation about a body/camera axis (:mod:`hmrkit.geometry.rotations`)."""
    fn = {"x": rotations.rot_x, "y": rotations.rot_y, "z": rotations.rot_z}[axis]
    return fn(torch.tensor(float(angle), dtype=torch.float64)).numpy()


R_BASE = np.diag([1.0, -1.0, -1.0])
"""Camera -> world rotation of a level camera looking along world -z."""


@dataclass
class SceneCamera:
    """The camera drawn for one scene: image size, focal, pitch and roll over the ground."""

    width: int
    height: int
    focal: float
    pitch: float
    roll: float
    cam_to_world: np.ndarray = field(repr=False)

    @property
    def camera(self) -> Camera:
        """hmrkit's :class:`~hmrkit.geometry.cameras.Camera` of this scene (batch of 1, float64;
        principal point at the image centre)."""
        size = torch.tensor([[self.width, self.height]], dtype=torch.float64)
        return Camera(Camera.default(size, self.focal).intrinsics, size,
                      torch.as_tensor(self.cam_to_world, dtype=torch.float64)[None])

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsics."""
        return self.camera.K[0].numpy()


def sample_camera(config: SceneConfig, rng: np.random.Generator) -> SceneCamera:
    long_side = rng.uniform(*config.image_long_side)
    aspect = config.aspects[int(rng.integers(len(config.aspects)))]
    W, H = (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
    W, H = int(round(W / 8) * 8), int(round(H / 8) * 8)
    f_mm = np.exp(rng.uniform(*np.log(config.focal_mm)))
    focal = focal_from_35mm(f_mm, (W, H))
    pitch = np.deg2rad(np.clip(rng.normal(0, config.pitch_deg), -2.5 * config.pitch_deg,
                               2.5 * config.pitch_deg))
    roll = np.deg2rad(np.clip(rng.normal(0, config.roll_deg), -2.5 * config.roll_deg,
                              2.5 * config.roll_deg))
    # Positive pitch tilts the camera down: its forward axis gets a negative world y.
    cam_to_world = R_BASE @ _rotation("x", pitch) @ _rotation("z", roll)
    return SceneCamera(W, H, float(focal), float(pitch), float(roll), cam_to_world)


class SceneEngine:
    """Holds the per-process state (body models, UV atlas) and renders scenes."""

    def __init__(self, config: SceneConfig):
        from hmrkit.data.synthetic.mix import MixSampler, PoseGroup
        from hmrkit.data.synthetic.poses import PoseSampler, SelfIntersection, vertex_segments
        from hmrkit.uv import UVAtlas, vertex_to_uv

        self.config = config
        self.body = load_body_model("anny24-full", dtype=torch.float64)
        data = self.body.data
        self.faces = data.faces.astype(np.int64)
        self.face_uv = data.faces_texcoords.astype(np.int64)
        self.texcoords = data.texcoords.astype(np.float64)
        self.vertex_parts = data.lbs_weights.argmax(1)  # IUV part = dominant joint (24 parts)
        self.num_betas = data.num_betas
        self.shape_tables = {  # betas of sampled Anny phenotypes, truncated to num_betas
            p: load_shape_table(p, self.num_betas)[1].astype(np.float64)
            for p in SHAPES[config.shapes]
        }
        self.backgrounds = BackgroundSource(config.background_folder)
        self.pose_sampler_cls = PoseSampler
        self.intersection = SelfIntersection() if config.self_intersection else None
        groups: tuple[PoseGroup, ...] | None = POSE_MIXES[config.pose_mix]
        if groups is not None and not config.props:  # no seats: no seated people
            kept = [g for g in groups if g.support != "seat"]
            total = sum(g.weight for g in kept)
            groups = tuple(PoseGroup(g.name, g.weight / total, g.key_poses, g.support)
                           for g in kept)
        self.pose_groups = groups
        self.mix_sampler_cls = MixSampler
        self.segment = vertex_segments(data.lbs_weights)[0]  # for support checks
        self.stats = {"people": 0, "support_redraws": 0, "support_fallbacks": 0}
        R = config.texture_resolution
        atlas = UVAtlas.build(self.faces, self.texcoords, self.face_uv, R, data.num_vertices)
        template = torch.as_tensor(data.v_template)[None]
        self.texel_rest = vertex_to_uv(atlas, template)[0].permute(1, 2, 0).numpy()
        corner = np.argmax(atlas.texel_bary, axis=-1)
        nearest = np.take_along_axis(atlas.texel_vertices, corner[..., None], -1)[..., 0]
        self.texel_joint = self.vertex_parts[np.maximum(nearest, 0)]
        self.texel_valid = atlas.texel_faces >= 0
        self.head_top_y = float(data.v_template[:, 1].max())

    # ------------------------------------------------------------------ people
    def _place(self, cam, rng, verts, joints, person_frac, ground_y):
        """Translation putting a posed body (camera frame, at origin) in the frame."""
        height = float(np.ptp(verts @ cam.cam_to_world.T, axis=0)[1])
        target_px = person_frac * cam.height
        depth = cam.focal * max(height, 0.5) / target_px
        u = rng.uniform(0.12, 0.88) * cam.width
        v = rng.uniform(0.35, 0.65) * cam.height
        ray = np.linalg.solve(cam.K, np.array([u, v, 1.0]))
        transl = ray * depth - joints[0]
        world_y = (verts + transl) @ cam.cam_to_world.T
        lowest = world_y[:, 1].min()
        if ground_y is not None:  # put the feet on the shared ground
            transl = transl + cam.cam_to_world.T @ np.array([0, ground_y - lowest, 0])
            lowest = ground_y
        return transl, lowest

    def _yaw(self, rng: np.random.Generator) -> float:
        """Yaw of a person about the world vertical; 0 faces the camera (see SceneConfig)."""
        if rng.random() < self.config.facing_uniform_prob:
            return float(rng.uniform(-np.pi, np.pi))
        return float(np.clip(rng.normal(0, np.deg2rad(self.config.facing_std_deg)), -np.pi, np.pi))

    def _betas(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Shapes (n, num_betas) of ``n`` people, as :attr:`SceneConfig.shapes` says."""
        if self.config.shapes == "pca-gaussian":  # the original draw: keep its rng calls
            return rng.normal(0, 1, (n, self.num_betas)).clip(-2.5, 2.5)
        adults = self.shape_tables["adults"]
        betas = adults[rng.integers(len(adults), size=n)]
        if self.config.shapes == "adults+children":
            children = self.shape_tables["children"]
            child = rng.random(n) < self.config.children_prob
            betas = np.where(child[:, None], children[rng.integers(len(children), size=n)], betas)
        return betas

    def _people(self, cam: SceneCamera, rng: np.random.Generator) -> list[dict]:
        n = 1 + int(rng.choice(len(self.config.people), p=self.config.people))
        seed = int(rng.integers(2**31))
        sampling = dict(reject_self_intersection=self.intersection is not None,
                        body=self.intersection)
        if self.pose_groups is None:  # pose_mix "v1"
            poses, mix = self.pose_sampler_cls(seed=seed, **sampling).sample(n), None
        else:
            mix = self.mix_sampler_cls(self.pose_groups, seed=seed, **sampling)
        betas = self._betas(rng, n)
        people, ground = [], None
        for p in range(n):
            yaw = self._yaw(rng)
            world_orient = _rotation("y", yaw)
            extra = {}
            if mix is None:
                orient = cam.cam_to_world.T @ world_orient
                with torch.no_grad():
                    out = self.body(
                        torch.as_tensor(orient)[None], poses[p : p + 1, 1:].double(),
                        torch.as_tensor(betas[p : p + 1]),
                    )
                verts, joints = out.vertices[0].numpy(), out.joints[0].numpy()
                body_pose = poses[p, 1:].double().numpy()
            else:  # a supported pose posed in the body frame, then turned into the camera's
                body_pose, verts, joints, extra = self._supported_pose(mix, betas[p], rng)
                if extra["lean"] is not None:
                    world_orient = world_orient @ extra["lean"]
                orient = cam.cam_to_world.T @ world_orient
                root = joints[0].copy()
                verts, joints = (verts - root) @ orient.T + root, (joints - root) @ orient.T + root
                if extra["prop"] is not None:
                    local, faces = extra["prop"].mesh()
                    extra.update(prop_local=local, prop_faces=faces,
                                 prop_verts=(local - root) @ orient.T + root)
            frac = rng.uniform(*self.config.person_height_frac) / (1 + 0.35 * (n - 1))
            transl, ground = self._place(cam, rng, verts, joints, frac, ground)
            if "prop_verts" in extra:
                extra["prop_verts"] = extra["prop_verts"] + transl
            people.append(dict(
                verts=verts + transl, joints=joints + transl, transl=transl,
                orient=orient, world_orient=world_orient, body_pose=body_pose,
                betas=betas[p], outfit=Outfit.sample(rng), **extra,
            ))
        return people

    def _supported_pose(self, mix, betas: np.ndarray, rng: np.random.Generator, tries: int = 10):
        """A pose of a random group of ``mix`` whose support holds (or is built), posed with
        an identity root: (body pose (23, 3, 3), vertices, joints, extras: group, support,
        seat prop, lean)."""
        from hmrkit.data.synthetic.poses import key_pose
        from hmrkit.data.synthetic.props import Support, support

        group = mix.group()
        kind = mix.groups[group].support
        beta = torch.as_tensor(betas[None])
        self.stats["people"] += 1
        for attempt in range(tries + 1):
            if attempt < tries:
                pose = torch.as_tensor(mix.draw(group))
            else:  # give up on the group: a relaxed stance, standing on the ground
                self.stats["support_fallbacks"] += 1
                pose, kind = key_pose("stand_relaxed", torch.float64), "feet"
            with torch.no_grad():
                out = self.body(None, pose[None, 1:], beta)
            verts, joints = out.vertices[0].numpy(), out.joints[0].numpy()
            result = support(kind, verts, joints, self.segment, rng)
            if result.ok or attempt == tries:
                break
            self.stats["support_redraws"] += 1
        result = result if result.ok else Support(True)
        return pose[1:].numpy(), verts, joints, {
            "group": mix.groups[group].name if kind == mix.groups[group].support else "stand",
            "support": kind, "prop": result.prop, "lean": result.lean}

    # ------------------------------------------------------------------ scene
    def compose(self, index: int) -> tuple[np.random.Generator, SceneCamera, list[dict]]:
        """Camera and people of scene ``index`` (no rendering) and the scene's random stream,
        positioned where :meth:`render` continues it."""
        rng = scene_rng(self.config, index)
        for _ in range(20):
            cam = sample_camera(self.config, rng)
            people = self._people(cam, rng)
            camera_height = -min((p["verts"] @ cam.cam_to_world.T)[:, 1].min() for p in people)
            if 0.2 < camera_height < 6.0 and all(p["verts"][:, 2].min() > 0.3 for p in people) \
                    and all(p["prop_verts"][:, 2].min() > 0.3 for p in people if "prop_verts" in p):
                break
        return rng, cam, people

    def people_labels(self, index: int) -> dict[str, np.ndarray]:
        """The labels of scene ``index`` without rendering it (fast): every keypoint in the
        image counts as visible (no occlusion is known without the render)."""
        _, cam, people = self.compose(index)
        return self._labels(people, cam, None)

    def render(self, index: int) -> dict:
        """Render scene ``index``: images, maps and per-person labels (numpy)."""
        rng, cam, people = self.compose(index)
        W, H, F = cam.width, cam.height, len(self.faces)
        verts = np.concatenate([p["verts"] for p in people])
        faces = np.concatenate([self.faces + i * len(p["verts"]) for i, p in enumerate(people)])
        face_uv = np.concatenate([self.face_uv] * len(people))
        seats = [p for p in people if "prop_verts" in p]
        if seats:  # seat props join the mesh after the people (module props)
            n_person_faces, seat_local = len(faces), [np.zeros_like(verts)]
            for p in seats:
                faces = np.concatenate([faces, p["prop_faces"] + len(verts)])
                verts = np.concatenate([verts, p["prop_verts"]])
                seat_local.append(p["prop_local"])
            face_uv = np.concatenate([face_uv, np.zeros((len(faces) - n_person_faces, 3),
                                                        face_uv.dtype)])
        gbuf = rasterize(verts, faces, cam.camera)
        hits = gbuf.hits
        person = hits.triangle // F
        local_tri = hits.triangle % F
        if seats:
            person = np.where(hits.triangle < n_person_faces, person, -1)

        # textured, lit colour of every foreground pixel
        uv = _interpolate_corners(gbuf, face_uv, self.texcoords)
        rgb = np.zeros((len(hits.index), 3))
        textures = []
        for i, p in enumerate(people):
            tex = paint_texture(p["outfit"], self.texel_rest, self.texel_joint, self.texel_valid,
                                self.head_top_y)
            textures.append(tex)
            sel = person == i
            rgb[sel] = sample_texture(tex, uv[sel])
        if seats:
            local = _interpolate_corners(gbuf, faces, np.concatenate(seat_local))
            start = n_person_faces
            for p in seats:
                sel = (hits.triangle >= start) & (hits.triangle < start + len(p["prop_faces"]))
                rgb[sel] = p["prop"].colours(local[sel])
                start += len(p["prop_faces"])
        normals = _interpolate_corners(gbuf, faces, vertex_normals(verts, faces))
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        light = rng.normal(size=3) * np.array([1.0, 0.5, 0.3]) + np.array([0, -0.6, -1.0])
        light /= np.linalg.norm(light)
        ambient = rng.uniform(0.35, 0.6)
        shade = ambient + (1 - ambient) * np.clip(np.abs(normals @ light), 0, 1)
        tint = rng.uniform(0.85, 1.15, 3)
        rgb = np.clip(rgb * shade[:, None] * tint, 0, 255)

        image, bg_kind = self.backgrounds.sample(rng, W, H)
        image = image.reshape(-1, 3).copy()
        image[hits.index] = rgb.astype(np.uint8)
        image = image.reshape(H, W, 3)
        instances = np.zeros(H * W, np.uint8)
        instances[hits.index] = person + 1
        instances = instances.reshape(H, W)
        occluders = self._occlude(rng, image, instances, people, cam)
        image = _camera_effects(rng, image)

        part = np.zeros(H * W, np.uint16)
        corner = np.argmax(hits.barycentrics, axis=1)
        part[hits.index] = self.vertex_parts[self.faces[local_tri, corner]] + 1
        iuv = np.zeros((H * W, 3), np.uint16)
        iuv[:, 0] = part
        iuv[hits.index, 1:] = np.round(np.clip(uv, 0, 1) * 65535)
        iuv = iuv.reshape(H, W, 3)
        depth = np.zeros(H * W, np.uint16)
        depth[hits.index] = np.clip(np.round(gbuf.depth.reshape(-1)[hits.index] * 1000), 1, 65535)
        depth = depth.reshape(H, W)
        visible = instances > 0
        iuv[~visible] = 0
        depth[~visible] = 0
        labels = self._labels(people, cam, instances)
        return dict(image=image, instances=instances, iuv=iuv, depth=depth, labels=labels,
                    textures=textures, camera=cam, people=people, background=bg_kind,
                    occluders=occluders)

    def _occlude(self, rng, image, instances, people, cam) -> list[dict]:
        """Draw random occluders over people; occluded pixels leave the person's mask."""
        out = []
        for i in range(len(people)):
            if rng.random() >= self.config.occluder_prob:
                continue
            ys, xs = np.nonzero(instances == i + 1)
            if len(xs) < 50:
                continue
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            w = int(rng.uniform(0.3, 0.8) * (x1 - x0 + 1))
            h = int(rng.uniform(0.2, 0.5) * (y1 - y0 + 1))
            cx = int(rng.uniform(x0, x1))
            cy = int(rng.uniform(y0 + 0.2 * (y1 - y0), y1))
            mask = np.zeros(instances.shape, np.uint8)
            if rng.random() < 0.5:
                cv2.rectangle(mask, (cx - w // 2, cy - h // 2), (cx + w // 2, cy + h // 2), 1, -1)
                kind = "box"
            else:
                cv2.ellipse(mask, (cx, cy), (max(w // 2, 1), max(h // 2, 1)),
                            float(rng.uniform(0, 180)), 0, 360, 1, -1)
                kind = "ellipse"
            m = mask.astype(bool)
            patch, _ = self.backgrounds.sample(rng, image.shape[1], image.shape[0])
            image[m] = patch[m]
            instances[m] = 0
            out.append({"person": i, "kind": kind, "center": [cx, cy], "size": [w, h]})
        return out

    def _labels(self, people, cam, instances: np.ndarray | None) -> dict[str, np.ndarray]:
        """Per-person labels; keypoints are visible when inside the image and on the person's
        pixels of ``instances`` (every in-image keypoint without ``instances``)."""
        W, H = cam.width, cam.height
        P = len(people)
        lab: dict[str, list] = {k: [] for k in (
            "joints3d", "keypoints3d/lsp14", "global_orient", "world_global_orient", "body_pose",
            "betas", "transl", "box_center", "box_size", "visible_fraction",
            *[f"keypoints2d/{s}" for s in KEYPOINT_SETS])}
        for i, p in enumerate(people):
            out = _Out(torch.as_tensor(p["verts"])[None], torch.as_tensor(p["joints"])[None])
            visible_all = []
            for s in KEYPOINT_SETS:
                kp3 = self.body.keypoints(out, s)[0].numpy()
                uvz = kp3 @ cam.K.T
                uv = uvz[:, :2] / uvz[:, 2:]
                inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
                px = np.clip(uv.astype(int), 0, [W - 1, H - 1])
                vis = inside if instances is None else inside & (
                    instances[px[:, 1], px[:, 0]] == i + 1)
                lab[f"keypoints2d/{s}"].append(np.concatenate([uv, vis[:, None]], 1))
                visible_all.append(vis)
                if s == "lsp14":
                    lab["keypoints3d/lsp14"].append(kp3)
            proj = p["verts"] @ cam.K.T
            proj = proj[:, :2] / proj[:, 2:]
            lo, hi = proj.min(0), proj.max(0)
            lab["box_center"].append((lo + hi) / 2)
            lab["box_size"].append(np.max(hi - lo) * 1.2)
            lab["visible_fraction"].append(np.concatenate(visible_all).mean())
            lab["joints3d"].append(p["joints"])
            lab["global_orient"].append(p["orient"])
            lab["world_global_orient"].append(p["world_orient"])
            lab["body_pose"].append(p["body_pose"])
            lab["betas"].append(p["betas"])
            lab["transl"].append(p["transl"])
        arrays = {k: np.asarray(v, np.float32) for k, v in lab.items()}
        arrays.update(
            image_size=np.array([W, H], np.float32), focal=np.float32(cam.focal),
            principal_point=np.array([W / 2, H / 2], np.float32),
            cam_to_world=cam.cam_to_world.astype(np.float32),
        )
        assert arrays["joints3d"].shape[0] == P
        return arrays


@dataclass
class _Out:
    vertices: torch.Tensor
    joints: torch.Tensor


def _camera_effects(rng, image: np.ndarray) -> np.ndarray:
    """Mild blur and sensor noise so that renders are not perfectly clean."""
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.3, 1.0))
    # Gaussian noise through a 256-entry table of normal quantiles indexed by random bytes
    # (a 16-level-per-sigma approximation; drawing normals per pixel cost 8 ms per image).
    sigma = rng.uniform(0, 4)
    table = np.round(_NORMAL_QUANTILES * sigma).astype(np.int16)
    noise = table[np.frombuffer(rng.bytes(image.size), np.uint8)].reshape(image.shape)
    return cv2.add(image.astype(np.int16), noise, dtype=cv2.CV_8U)


_NORMAL_QUANTILES = np.sqrt(2) * erfinv(2 * (np.arange(256) + 0.5) / 256 - 1)


@lru_cache(maxsize=2)
def _engine(config: SceneConfig) -> SceneEngine:
    return SceneEngine(config)


def encode_scene(scene: dict, config: SceneConfig, index: int) -> dict[str, bytes]:
    """Tar members of one scene record (see :mod:`hmrkit.data.shards`)."""
    cam = scene["camera"]
    meta = {
        "index": index, "config": config_record(config), "background": scene["background"],
        "camera": {"width": cam.width, "height": cam.height, "focal": cam.focal,
                   "pitch_deg": float(np.rad2deg(cam.pitch)),
                   "roll_deg": float(np.rad2deg(cam.roll))},
        "outfits": [asdict(p["outfit"]) for p in scene["people"]],
        "occluders": scene["occluders"],
    }
    if config.pose_mix != V1_PEOPLE["pose_mix"]:  # what holds each person up
        meta["supports"] = [
            {"group": p["group"], "support": p["support"],
             "lean_deg": 0.0 if p["lean"] is None else round(float(np.rad2deg(
                 np.arctan2(p["lean"][1, 2], p["lean"][1, 1]))), 2),
             "prop": None if p["prop"] is None else p["prop"].describe()}
            for p in scene["people"]]
    record = {
        "image.jpg": encode_image(scene["image"], "jpg", config.jpeg_quality),
        "labels.npz": encode_npz(scene["labels"]),
        "instances.png": encode_image(scene["instances"]), "iuv.png": encode_image(scene["iuv"]),
        "depth.png": encode_image(scene["depth"]),
        "meta.json": json.dumps(meta, sort_keys=True).encode(),
    }
    for i, tex in enumerate(scene["textures"]):
        record[f"texture{i}.png"] = encode_image(tex)
    return record


def generate_record(config: SceneConfig, index: int) -> dict[str, bytes]:
    """Scene ``index`` of ``config`` as tar members (deterministic; per-process cached engine)."""
    return encode_scene(_engine(config).render(index), config, index)
