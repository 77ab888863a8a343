"""The photo-like pose mix, seat props and ground contact, and the pinned synth-v1 people."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hmrkit.data.synthetic import poses as P
from hmrkit.data.synthetic import props as S
from hmrkit.data.synthetic.mix import PHOTO_MIX, MixSampler, PoseGroup

SEG = {name: i for i, name in enumerate(P.SEGMENTS)}


@pytest.fixture(scope="module")
def body():
    from hmrkit.body import load_body_model

    return load_body_model("anny24", dtype=torch.float64)


@pytest.fixture(scope="module")
def segment(body):
    return P.vertex_segments(body.lbs_weights)[0]


def posed(body, pose):
    """Vertices and joints of a pose (24, 3, 3) or key-pose name, identity root."""
    R = P.key_pose(pose, torch.float64) if isinstance(pose, str) else torch.as_tensor(pose)
    with torch.no_grad():
        out = body(None, R[None, 1:])
    return out.vertices[0].numpy(), out.joints[0].numpy()


# ---------------------------------------------------------------------- the mix
def test_photo_mix_is_valid_and_mostly_upright():
    assert abs(sum(g.weight for g in PHOTO_MIX) - 1) < 1e-9
    names = [n for g in PHOTO_MIX for n in g.key_poses]
    assert len(names) == len(set(names))  # a key pose belongs to one group
    upright = sum(g.weight for g in PHOTO_MIX if g.name in ("stand", "walk", "gesture"))
    assert upright >= 0.6
    assert {g.support for g in PHOTO_MIX} == {"feet", "seat", "floor", "knees"}
    # every pose that sits or kneels is in a group with a support for it
    for g in PHOTO_MIX:
        if any(n.startswith(("sit_", "kneel")) for n in g.key_poses):
            assert g.support != "feet", g.name
    with pytest.raises(ValueError, match="unknown or no key poses.*'moonwalk'"):
        PoseGroup("x", 1.0, ("moonwalk",))
    with pytest.raises(ValueError, match="support must be one of"):
        PoseGroup("x", 1.0, ("rest",), "hands")
    with pytest.raises(ValueError, match="weights must sum to 1"):
        MixSampler((PoseGroup("x", 0.5, ("rest",)),), reject_self_intersection=False)


def test_new_key_poses_stay_out_of_the_v1_library():
    assert len(P.V1_KEY_POSES) == 40 and set(P.V1_KEY_POSES) < set(P.KEY_POSES)
    assert P.PoseSampler(seed=0).names == P.V1_KEY_POSES


def test_mix_sampler_group_frequencies_determinism_and_group_poses():
    a = MixSampler(seed=3, reject_self_intersection=False)
    groups = np.array([a.group() for _ in range(4000)])
    freq = np.bincount(groups, minlength=len(PHOTO_MIX)) / len(groups)
    np.testing.assert_allclose(freq, [g.weight for g in PHOTO_MIX], atol=0.025)
    poses, g1 = MixSampler(seed=3, reject_self_intersection=False).sample(6)
    again, g2 = MixSampler(seed=3, reject_self_intersection=False).sample(6)
    np.testing.assert_array_equal(poses, again)
    np.testing.assert_array_equal(g1, g2)
    assert P.within_limits(poses, tol_deg=1e-3).all()
    # without noise or slerps a group returns only its own key poses (or their mirrors)
    s = MixSampler(seed=0, noise_deg=0.0, interpolate_prob=0.0, reject_self_intersection=False)
    seated = [g.name for g in PHOTO_MIX].index("seated")
    keys = P.key_poses(PHOTO_MIX[seated].key_poses, torch.float64).numpy()
    keys = np.concatenate([keys, P.mirror_pose(keys)])
    for _ in range(5):
        pose = s.draw(seated)
        assert np.abs(keys - pose).reshape(len(keys), -1).max(1).min() < 1e-9


def test_mix_sampler_rejects_self_intersections(body):
    checker = P.SelfIntersection(body)
    s = MixSampler(seed=1, noise_deg=15.0, body=checker)
    poses, _ = s.sample(12)
    assert not checker(poses).any()
    assert s.stats["drawn"] >= 12


# ---------------------------------------------------------------------- props
def test_box_mesh_and_depth_inside_golden():
    prop = S.Prop("block", np.array([[[0, 0, 0], [1.0, 0.5, 2.0]], [[2, 0, 0], [3, 1, 1]]]),
                  np.array([100.0, 80, 60]), "grain", 20.0, 0, 0.0)
    verts, faces = prop.mesh()
    assert verts.shape == (48, 3) and faces.shape == (24, 3)
    n = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    assert np.allclose(np.sort(np.abs(n), axis=1), [0, 0, 1])  # flat, axis-aligned faces
    centroid = verts.reshape(-1, 4, 3).mean(1)[:, None]
    outward = [np.dot(n[2 * f], centroid[f, 0] - verts.reshape(-1, 4, 3)[f].mean(0)) for f in
               range(12)]
    assert np.allclose(outward, 0)  # corners of a face are coplanar
    pts = np.array([[0.5, 0.25, 1.0], [0.5, 0.1, 1.0], [2.5, 0.5, 0.5], [1.5, 0.5, 0.5],
                    [0.5, 0.6, 1.0]])
    np.testing.assert_allclose(prop.depth_inside(pts), [0.25, 0.1, 0.5, 0.0, 0.0])
    c = prop.colours(pts)
    assert c.shape == (5, 3) and (c >= 0).all() and (c <= 255).all()
    assert not np.allclose(c[0], c[2])  # the grain varies


def test_contact_checks_on_arrays():
    segment = np.array([SEG["left_foot"], SEG["left_hand"], SEG["torso"], SEG["left_shin"]])
    joints = np.zeros((24, 3))
    joints[0] = (0, 0.5, 0)
    joints[4] = (0.1, 0.12, 0.3)  # left knee
    verts = np.array([[0, 0.0, 0.3], [0.3, 0.2, 0], [0, 0.4, 0], [0.1, 0.1, 0.3]])
    assert S.feet_on_ground(verts, segment)
    verts_hand_low = verts.copy()
    verts_hand_low[1, 1] = -0.05  # a hand through the floor
    assert not S.feet_on_ground(verts_hand_low, segment)
    assert not S.buttocks_on_ground(verts, joints, segment)
    sitting = verts.copy()
    sitting[2, 1] = 0.02
    assert S.buttocks_on_ground(sitting, joints, segment)
    assert not S.knee_on_ground(verts, joints, segment)  # the shin vertex by the knee: 0.1 up
    verts[3, 1] = 0.02
    assert S.knee_on_ground(verts, joints, segment)
    verts[3] = (0.1, 0.0, 0.6)  # on the ground but 30 cm from the knee
    assert not S.knee_on_ground(verts, joints, segment)


def test_seat_holds_a_seated_body_for_every_kind(body, segment):
    verts, joints = posed(body, "sit_chair")
    ground = verts[:, 1].min()
    kinds = set()
    for seed in range(40):
        prop = S.build_seat(verts, joints, segment, np.random.default_rng(seed))
        if prop is None:
            continue
        kinds.add(prop.kind)
        top = prop.boxes[0, 1, 1]
        assert prop.boxes[:, 0, 1].min() == pytest.approx(ground)  # stands on the ground
        assert S.SEAT_HEIGHT[0] <= top - ground <= S.SEAT_HEIGHT[1]
        assert prop.depth_inside(verts).max() <= S.PENETRATION_TOL  # no deep penetration
        (x0, _, z0), (x1, _, z1) = prop.boxes[0]
        over = (verts[:, 0] >= x0) & (verts[:, 0] <= x1) & (verts[:, 2] >= z0) & (
            verts[:, 2] <= z1) & np.isin(segment, [SEG["torso"], SEG["left_thigh"],
                                                    SEG["right_thigh"]])
        assert verts[over, 1].min() == pytest.approx(top, abs=1e-9)  # rests on it
        if prop.kind == "chair":
            assert len(prop.boxes) == 6 and prop.boxes[1, 1, 1] > top + 0.25  # backrest
    assert kinds == set(S.PROP_KINDS)
    # nothing to sit on for a standing body (seat would be far too high or nothing over it)
    verts, joints = posed(body, "stand_relaxed")
    assert S.build_seat(verts, joints, segment, np.random.default_rng(0)) is None


def test_settle_leans_a_body_onto_the_floor(body, segment):
    verts, joints = posed(body, "kneel_two_knees")
    np.testing.assert_allclose(S.settle("knees", verts, joints, segment), np.eye(3))
    verts, joints = posed(body, "sit_floor_knees_bent")
    assert not S.buttocks_on_ground(verts, joints, segment)  # feet first: needs a lean
    lean = S.settle("floor", verts, joints, segment)
    assert lean is not None and not np.allclose(lean, np.eye(3))
    root = joints[0]
    assert S.buttocks_on_ground((verts - root) @ lean.T + root, (joints - root) @ lean.T + root,
                                segment)
    np.testing.assert_allclose(lean @ lean.T, np.eye(3), atol=1e-12)
    verts, joints = posed(body, "stand_relaxed")
    assert S.settle("floor", verts, joints, segment) is None
    result = S.support("feet", verts, joints, segment, np.random.default_rng(0))
    assert result.ok and result.prop is None and result.lean is None
    with pytest.raises(ValueError, match="unknown support 'wall'"):
        S.support("wall", verts, joints, segment, np.random.default_rng(0))


# ---------------------------------------------------------------------- scenes
def test_v1_people_are_pinned_in_records_and_repr():
    from hmrkit.data.synthetic.scene import (
        BENCHMARKS,
        V1_PEOPLE,
        SceneConfig,
        config_record,
    )

    for name in ("synth-v1", "synth-v1-hard"):
        config = BENCHMARKS[name]
        assert {k: getattr(config, k) for k in V1_PEOPLE} == V1_PEOPLE
        record = config_record(config)
        assert not set(V1_PEOPLE) & set(record)
        assert "pose_mix" not in repr(config) and repr(config).startswith("SceneConfig(seed=")
        assert record == {k: v for k, v in dataclasses.asdict(config).items()
                          if k not in V1_PEOPLE}
    new = SceneConfig()
    assert (new.pose_mix, new.self_intersection, new.props) == ("photo", True, True)
    assert {"pose_mix", "self_intersection", "props"} <= set(config_record(new))
    assert "pose_mix='photo'" in repr(new)
    assert BENCHMARKS["synth-v2"].pose_mix == "photo"
    assert len({c.seed for c in BENCHMARKS.values()}) == len(BENCHMARKS)
    with pytest.raises(ValueError, match="pose_mix must be one of .*got 'bogus'"):
        SceneConfig(pose_mix="bogus")


def test_v1_people_draw_as_before():
    """The v1 path keeps the original draws: poses from ``PoseSampler(seed)`` seeded by the
    scene stream, then betas, with no rejection and no props."""
    from hmrkit.data.synthetic.scene import (
        BENCHMARKS,
        SceneEngine,
        sample_camera,
        scene_rng,
    )

    config = dataclasses.replace(BENCHMARKS["synth-v1"], occluder_prob=0.0)
    engine = SceneEngine(config)
    assert engine.intersection is None and engine.pose_groups is None
    rng = scene_rng(config, 4)
    people = engine._people(sample_camera(config, rng), rng)
    old = scene_rng(config, 4)
    sample_camera(config, old)
    n = 1 + int(old.choice(len(config.people), p=config.people))
    poses = P.PoseSampler(seed=int(old.integers(2**31))).sample(n).double().numpy()
    assert len(people) == n
    for p, pose in zip(people, poses, strict=True):
        np.testing.assert_array_equal(p["body_pose"], pose[1:])
        assert "prop" not in p and "group" not in p


@pytest.fixture(scope="module")
def seated_scenes():
    """Scenes of one seated person (the mix narrowed to its seated group), no occluders."""
    from hmrkit.data.synthetic.scene import SceneConfig, SceneEngine

    engine = SceneEngine(SceneConfig(seed=11, split="val", occluder_prob=0.0,
                                     people=(1.0, 0.0, 0.0)))
    seated = [g for g in engine.pose_groups if g.support == "seat"][0]
    engine.pose_groups = (dataclasses.replace(seated, weight=1.0),)
    return engine, [engine.render(i) for i in range(3)]


def test_seat_props_occlude_and_hide_the_persons_labels(seated_scenes):
    from hmrkit.render.gbuffer import rasterize

    engine, scenes = seated_scenes
    hidden_total = 0
    for s in scenes:
        (p,) = s["people"]
        assert p["prop"] is not None and p["group"] == "seated"
        camera = s["camera"].camera  # as the scene renders
        alone = rasterize(p["verts"], engine.faces, camera)
        seat = rasterize(p["prop_verts"], p["prop_faces"], camera)
        both = alone.mask & seat.mask
        prop_in_front = both & (seat.depth < alone.depth)
        person_in_front = both & (alone.depth < seat.depth)
        inst = s["instances"]
        assert (inst[prop_in_front] == 0).all()
        assert (inst[person_in_front] == 1).all()
        assert (inst[alone.mask & ~seat.mask] == 1).all()
        assert (inst[~alone.mask] == 0).all()
        for label in (s["iuv"][..., 0], s["depth"]):
            assert (label[prop_in_front] == 0).all() and (label[inst == 1] > 0).all()
        assert (s["image"][seat.mask & ~alone.mask].std() > 0)  # the prop is drawn
        hidden_total += int(prop_in_front.sum())
    assert hidden_total > 0  # the seats hide part of someone


def test_seated_people_rest_on_their_seat(seated_scenes):
    _, scenes = seated_scenes
    for s in scenes:
        (p,) = s["people"]
        root = p["joints"][0] - p["transl"]
        to_body = p["world_orient"].T @ s["camera"].cam_to_world  # camera -> body frame
        v = (p["verts"] - p["transl"] - root) @ to_body.T + root
        seat = p["prop"]
        assert seat.depth_inside(v).max() <= S.PENETRATION_TOL
        (x0, _, z0), (x1, top, z1) = seat.boxes[0]
        over = (v[:, 0] >= x0) & (v[:, 0] <= x1) & (v[:, 2] >= z0) & (v[:, 2] <= z1)
        assert abs(v[over, 1].min() - top) < 1e-6
        local = (p["prop_verts"] - p["transl"] - root) @ to_body.T + root
        np.testing.assert_allclose(local, p["prop_local"], atol=1e-9)
        assert local[:, 1].min() == pytest.approx(v[:, 1].min(), abs=1e-9)  # same ground


def test_people_labels_match_the_render_except_occlusion(seated_scenes):
    engine, scenes = seated_scenes
    labels = engine.people_labels(0)
    rendered = scenes[0]["labels"]
    assert labels.keys() == rendered.keys()
    for k, v in labels.items():
        if k.startswith("keypoints2d/"):
            np.testing.assert_array_equal(v[..., :2], rendered[k][..., :2])
            assert (v[..., 2] >= rendered[k][..., 2]).all()
        elif k != "visible_fraction":
            np.testing.assert_array_equal(v, rendered[k])


def test_without_props_nobody_is_seated():
    from hmrkit.data.synthetic.scene import SceneConfig, SceneEngine

    engine = SceneEngine(SceneConfig(props=False, people=(1.0,)))
    assert all(g.support != "seat" for g in engine.pose_groups)
    assert abs(sum(g.weight for g in engine.pose_groups) - 1) < 1e-9
