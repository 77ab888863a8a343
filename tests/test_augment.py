"""Augmentation: determinism, config checks, exact label geometry (projection, flip of a
symmetric posed body), agreement with hmrkit.geometry.crops, photometric ops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hmrkit.body.keypoints import SMPL24_NAMES, SMPL24_PARENTS, flip_permutation
from hmrkit.body.model import BodyModel, BodyModelData
from hmrkit.data.augment import (
    MIRROR,
    AugmentConfig,
    AugmentParams,
    augment_box,
    augmentation_rng,
    occluder_layer,
    sample_augmentation,
    transform_labels,
    view_change,
)
from hmrkit.geometry.crops import crop_matrix
from hmrkit.geometry.rotations import rot_z
from tests.test_shards import make_fake_scene, project

PERM24 = np.asarray(flip_permutation(SMPL24_NAMES))


def test_determinism_per_seed_epoch_index():
    cfg = AugmentConfig(seed=7, occlusion_prob=1.0, rotation_prob=1.0)
    a = sample_augmentation(augmentation_rng(7, 2, 5), cfg)
    b = sample_augmentation(augmentation_rng(7, 2, 5), cfg)
    assert a == b and a.occluders and cfg.sample(augmentation_rng(7, 2, 5)) == a
    others = [
        sample_augmentation(augmentation_rng(*k), cfg) for k in [(7, 3, 5), (7, 2, 6), (8, 2, 5)]
    ]
    assert all(o != a for o in others)
    fresh = [sample_augmentation(augmentation_rng(None), cfg) for _ in range(2)]
    assert fresh[0] != fresh[1]
    assert occluder_layer(a, 32).tobytes() == occluder_layer(b, 32).tobytes()


def test_sampling_ranges():
    cfg = AugmentConfig(scale=(0.9, 1.1), translation=0.05, rotation_deg=10, rotation_prob=1.0,
                        rotation_dist="uniform", flip_prob=1.0, color_gain=(0.5, 0.7))
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = sample_augmentation(rng, cfg)
        assert 0.9 <= p.scale <= 1.1 and p.flip
        assert max(abs(t) for t in p.translation) <= 0.05
        assert 0 < abs(p.rotation) <= math.radians(10)
        assert all(0.5 <= g <= 0.7 for g in p.color_gain)
    spin = AugmentConfig(scale=0.25, rotation_prob=0.0, flip_prob=0.0, color_gain=None,
                         occlusion_prob=0.0)
    draws = [sample_augmentation(rng, spin) for _ in range(200)]
    assert all(0.75 <= d.scale <= 1.25 and d.rotation == 0 and not d.flip for d in draws)
    assert all(d.color_gain == (1.0, 1.0, 1.0) and d.occluders == () for d in draws)
    assert len({d.scale for d in draws}) > 100
    normal = AugmentConfig(rotation_deg=30, rotation_prob=1.0)
    rots = [abs(sample_augmentation(rng, normal).rotation) for _ in range(300)]
    assert max(rots) <= math.radians(60) + 1e-12 and max(rots) > math.radians(30)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": (1.2, 0.8)}, "scale"),
        ({"scale": 1.5}, "scale"),
        ({"scale": "big"}, "scale"),
        ({"rotation_deg": -1}, "rotation_deg"),
        ({"rotation_prob": 1.5}, "rotation_prob"),
        ({"rotation_dist": "cauchy"}, "rotation_dist"),
        ({"flip_prob": -0.1}, "flip_prob"),
        ({"color_gain": (1.4, 0.6)}, "color_gain"),
        ({"translation": 2}, "translation"),
        ({"occlusion_size": (0.5, 1.5)}, "occlusion_size"),
        ({"occlusion_count": (3, 1)}, "occlusion_count"),
        ({"iuv_on_flip": "swap"}, "iuv_on_flip"),
        ({"seed": -3}, "seed"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**kwargs)


@pytest.mark.parametrize("rotation, flip", [(0.0, True), (0.4, False), (-1.1, True)])
def test_view_change_matches_geometry_crop_matrix(rotation, flip):
    """Cropping the virtual image with a plain box == crops.crop_matrix(rotation, flip)."""
    params = AugmentParams(scale=1.1, translation=(0.05, -0.02), rotation=rotation, flip=flip)
    c, b = augment_box([300.0, 200.0], 150.0, params)
    view = view_change(params, (640, 480), (322.0, 236.0))
    source = np.vstack([view.affine(), [0, 0, 1]])
    virtual_center = torch.tensor(view.apply_points(c))[None]
    plain = crop_matrix(virtual_center, b, 224)[0].numpy()
    expected = crop_matrix(torch.tensor(c)[None], b, 224, rotation, flip)[0].numpy()
    np.testing.assert_allclose(plain @ source, expected, atol=1e-9)
    # the matching 3D change is rotations.rot_z(rotation), mirrored when flipped
    lin = rot_z(torch.tensor(rotation, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(view.linear3d(), MIRROR @ lin if flip else lin, atol=1e-12)


def _person(scene: dict, p: int = 0) -> dict[str, np.ndarray]:
    labels = scene["labels"]
    per_image = ("image_size", "focal", "principal_point", "cam_to_world")
    out = {k: v[p] for k, v in labels.items() if k not in per_image}
    out["principal_point"] = labels["principal_point"]
    out["cam_to_world"] = labels["cam_to_world"]
    return out


@pytest.mark.parametrize("rotation, flip", [(0.0, True), (0.7, False), (-0.5, True)])
def test_transformed_labels_are_an_exact_perspective_view(rotation, flip):
    scene = make_fake_scene(np.random.default_rng(1), 480, 640, 2)
    focal = float(scene["labels"]["focal"])
    person = _person(scene)
    view = view_change(AugmentParams(rotation=rotation, flip=flip), (640, 480),
                       person["principal_point"])
    out = transform_labels(person, view)
    for name, key3d in [("smpl24", "joints3d"), ("lsp14", "keypoints3d/lsp14")]:
        np.testing.assert_allclose(
            project(out[key3d], focal, out["principal_point"]),
            out[f"keypoints2d/{name}"][:, :2], atol=1e-6,
        )
    np.testing.assert_array_equal(
        out["keypoints2d/smpl24"][:, 2], person["keypoints2d/smpl24"][PERM24 if flip else slice(None), 2]
    )
    for key in ("global_orient", "world_global_orient", "cam_to_world"):
        np.testing.assert_allclose(out[key] @ out[key].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(out[key]) == pytest.approx(1.0)
    assert np.allclose(np.linalg.det(out["body_pose"]), 1.0)
    np.testing.assert_allclose(out["cam_to_world"] @ out["global_orient"],
                               out["world_global_orient"], atol=1e-12)
    # depth is unchanged by a camera roll or a mirror
    np.testing.assert_allclose(np.sort(out["joints3d"][:, 2]), np.sort(person["joints3d"][:, 2]))
    if rotation == 0.0:  # a pure flip keeps the world's up axis and a pitch-only camera
        np.testing.assert_allclose(out["cam_to_world"], person["cam_to_world"], atol=1e-12)
        twice = transform_labels(out, view_change(AugmentParams(flip=True), (640, 480),
                                                  out["principal_point"]))
        for k, v in person.items():
            np.testing.assert_allclose(twice[k], v, atol=1e-9, err_msg=k)


def _symmetric_body(seed: int = 0, half: int = 20, betas: int = 3) -> tuple[BodyModel, np.ndarray]:
    """A random body model symmetric under x -> -x (with the left/right joint permutation)."""
    rng = np.random.default_rng(seed)
    m = np.array([-1.0, 1.0, 1.0])
    joints = rng.normal(size=(24, 3)) * 0.3
    jdirs = rng.normal(size=(24, 3, betas)) * 0.02
    for k, partner in enumerate(PERM24):
        if partner == k:
            joints[k, 0], jdirs[k, 0] = 0.0, 0.0
        elif SMPL24_NAMES[k].startswith("right_"):
            joints[k], jdirs[k] = joints[partner] * m, jdirs[partner] * m[:, None]
    verts = rng.normal(size=(half, 3)) * 0.3
    dirs = rng.normal(size=(half, 3, betas)) * 0.01
    weights = rng.random((half, 24)) ** 4
    weights /= weights.sum(1, keepdims=True)
    data = BodyModelData(
        name="symmetric",
        v_template=np.concatenate([verts, verts * m]),
        shapedirs=np.concatenate([dirs, dirs * m[:, None]]),
        lbs_weights=np.concatenate([weights, weights[:, PERM24]]),
        parents=np.array(SMPL24_PARENTS),
        joint_template=joints,
        joint_shapedirs=jdirs,
        faces=np.zeros((1, 3), np.int64),
        joint_names=SMPL24_NAMES,
    )
    vperm = np.concatenate([np.arange(half, 2 * half), np.arange(half)])
    return BodyModel(data, dtype=torch.float64), vperm


@pytest.mark.parametrize("rotation, flip", [(0.0, True), (0.6, False), (-0.9, True)])
def test_flipped_pose_and_transl_reproduce_the_mirrored_body(rotation, flip):
    """The transformed (global_orient, body_pose, transl) posed through a left-right symmetric
    body model give exactly the transformed (mirrored / rolled) joints and vertices."""
    model, vperm = _symmetric_body()
    scene = make_fake_scene(np.random.default_rng(2), 480, 640, 2)
    person = _person(scene)
    t64 = lambda a: torch.as_tensor(np.asarray(a))[None]  # noqa: E731
    beta = t64(np.random.default_rng(3).normal(size=3))
    out = model(t64(person["global_orient"]), t64(person["body_pose"]), beta, t64(person["transl"]))
    joints, verts = out.joints[0].numpy(), out.vertices[0].numpy()
    labels = dict(person, joints3d=joints)
    view = view_change(AugmentParams(rotation=rotation, flip=flip), (640, 480),
                       person["principal_point"])
    new = transform_labels(labels, view)
    lin = view.linear3d()
    out2 = model(t64(new["global_orient"]), t64(new["body_pose"]), beta, t64(new["transl"]))
    np.testing.assert_allclose(out2.joints[0].numpy(), new["joints3d"], atol=1e-10)
    expected_v = (verts @ lin.T)[vperm] if flip else verts @ lin.T
    np.testing.assert_allclose(out2.vertices[0].numpy(), expected_v, atol=1e-10)
    assert np.linalg.det(lin) == pytest.approx(-1.0 if flip else 1.0)
    np.testing.assert_allclose(lin[2], [0, 0, 1])  # depth unchanged
    if flip and rotation == 0.0:
        np.testing.assert_allclose(lin, MIRROR)
