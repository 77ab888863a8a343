"""The LBS engine against a slow, obviously correct per-vertex loop, plus API checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmrkit.body.model import BodyModel, BodyModelData, skin
from tests.helpers import random_body_data, random_rotations


def naive_lbs(data: BodyModelData, rotations: np.ndarray, betas: np.ndarray, transl: np.ndarray):
    """SMPL forward, one vertex and one joint at a time with 4x4 matrices (reference)."""
    V, J = data.num_vertices, data.num_joints
    k = len(betas)
    v_rest = data.v_template + data.shapedirs[:, :, :k] @ betas
    j_rest = data.joint_template + data.joint_shapedirs[:, :, :k] @ betas
    if data.posedirs is not None:
        feature = np.concatenate([(rotations[i] - np.eye(3)).reshape(-1) for i in range(1, J)])
        for p in range(len(feature)):
            v_rest = v_rest + feature[p] * data.posedirs[p]
    world = []
    for i in range(J):
        local = np.eye(4)
        local[:3, :3] = rotations[i]
        parent = data.parents[i]
        local[:3, 3] = j_rest[i] - (j_rest[parent] if parent >= 0 else 0)
        world.append(local if parent < 0 else world[parent] @ local)
    joints = np.array([w[:3, 3] for w in world]) + transl
    verts = np.zeros((V, 3))
    for v in range(V):
        acc = np.zeros(3)
        for i in range(J):
            rest_offset = np.append(v_rest[v] - j_rest[i], 1.0)
            acc += data.lbs_weights[v, i] * (world[i] @ rest_offset)[:3]
        verts[v] = acc + transl
    return verts, joints


@pytest.mark.parametrize("with_posedirs", [True, False])
def test_lbs_matches_naive_loop_float64(with_posedirs):
    data = random_body_data(posedirs=with_posedirs)
    model = BodyModel(data, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    B = 3
    rots = random_rotations(B, 24, generator=g)
    betas = torch.randn(B, 3, dtype=torch.float64, generator=g)  # fewer than K = 4
    transl = torch.randn(B, 3, dtype=torch.float64, generator=g)
    out = model(global_orient=rots[:, 0], body_pose=rots[:, 1:], betas=betas, transl=transl)
    for b in range(B):
        v_ref, j_ref = naive_lbs(data, rots[b].numpy(), betas[b].numpy(), transl[b].numpy())
        np.testing.assert_allclose(out.vertices[b].numpy(), v_ref, atol=1e-12)
        np.testing.assert_allclose(out.joints[b].numpy(), j_ref, atol=1e-12)


def test_zero_pose_is_rest_shape():
    data = random_body_data()
    model = BodyModel(data, dtype=torch.float64)
    betas = torch.randn(2, 4, dtype=torch.float64)
    out = model(betas=betas)
    rest_v, rest_j = model.rest(betas)
    torch.testing.assert_close(out.vertices, rest_v, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.joints, rest_j, rtol=0, atol=1e-12)


def test_float32_close_to_float64_and_batch_independent():
    data = random_body_data()
    m64, m32 = BodyModel(data, dtype=torch.float64), BodyModel(data).to(torch.float32)
    rots = random_rotations(5, 24)
    out64 = m64(rots[:, 0], rots[:, 1:])
    out32 = m32(rots[:, 0].float(), rots[:, 1:].float())
    torch.testing.assert_close(out32.vertices.double(), out64.vertices, rtol=0, atol=1e-5)
    single = m64(rots[2:3, 0], rots[2:3, 1:])
    torch.testing.assert_close(single.vertices[0], out64.vertices[2], rtol=0, atol=1e-12)


def test_global_rotation_and_translation_are_rigid():
    """Rotating the root rotates the whole posed body about the root joint."""
    model = BodyModel(random_body_data(), dtype=torch.float64)
    rots = random_rotations(2, 24)
    extra = random_rotations(1)[0]
    base = model(rots[:, 0], rots[:, 1:])
    turned = model(extra @ rots[:, 0], rots[:, 1:])
    root = base.joints[:, :1]
    expected = (base.vertices - root) @ extra.T + root
    torch.testing.assert_close(turned.vertices, expected, rtol=0, atol=1e-12)


def test_gradcheck_float64():
    model = BodyModel(random_body_data(num_vertices=12, num_betas=2), dtype=torch.float64)
    rots = random_rotations(1, 24)
    betas = torch.randn(1, 2, dtype=torch.float64, requires_grad=True)
    chosen = [2, 15]  # a spine joint and a shoulder: both inside the chain
    free = rots[:, 1:][:, chosen].clone().requires_grad_(True)
    transl = torch.randn(1, 3, dtype=torch.float64, requires_grad=True)

    def f(free, betas, transl):
        body_pose = rots[:, 1:].clone()
        body_pose[:, chosen] = free
        return model(rots[:, 0], body_pose, betas, transl).vertices

    assert torch.autograd.gradcheck(f, (free, betas, transl))


def test_skin_is_the_forward_core():
    """`skin` on explicit rest vertices reproduces the module (personalised-body path)."""
    data = random_body_data()
    model = BodyModel(data, dtype=torch.float64)
    rots = random_rotations(2, 24)
    betas = torch.randn(2, 4, dtype=torch.float64)
    rest_v, rest_j = model.rest(betas)
    v, j = skin(rest_v, rest_j, rots, model.parents, model.lbs_weights, model.posedirs)
    out = model(rots[:, 0], rots[:, 1:], betas)
    torch.testing.assert_close(v, out.vertices, rtol=0, atol=1e-12)


def test_keypoint_sets_and_errors():
    model = BodyModel(random_body_data(), dtype=torch.float64)
    out = model(betas=torch.zeros(2, 4, dtype=torch.float64))
    lsp = model.keypoints(out, "lsp14")
    assert lsp.shape == (2, 14, 3)
    torch.testing.assert_close(lsp[:, 12], out.joints[:, 12])  # neck
    assert model.keypoints(out, "joints") is out.joints
    with pytest.raises(KeyError, match="unknown keypoint set 'h36m'.*lsp14"):
        model.keypoints(out, "h36m")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"global_orient": torch.zeros(2, 3)}, r"'global_orient' has shape \(2, 3\), expected \(B, 3, 3\)"),
        ({"body_pose": torch.zeros(2, 24, 3, 3)}, r"'body_pose' has shape .*expected \(B, 23, 3, 3\)"),
        ({"betas": torch.zeros(2, 11)}, r"'betas' has shape \(2, 11\), expected \(B, k\) with k <= 4"),
        (
            {"global_orient": torch.zeros(2, 3, 3), "transl": torch.zeros(3, 3)},
            r"'transl' has batch 3, others have 2",
        ),
    ],
)
def test_shape_errors_name_expected_shapes(kwargs, message):
    model = BodyModel(random_body_data())
    with pytest.raises(ValueError, match=message):
        model(**kwargs)


def test_save_load_round_trip(tmp_path):
    data = random_body_data()
    path = tmp_path / "model.npz"
    data.save(path, dtype=np.float64)
    back = BodyModelData.load(path)
    for key in ("v_template", "shapedirs", "lbs_weights", "parents", "posedirs", "faces"):
        np.testing.assert_array_equal(getattr(back, key), getattr(data, key))
    np.testing.assert_array_equal(back.keypoint_regressors["lsp14"], data.keypoint_regressors["lsp14"])
    assert back.joint_names == data.joint_names
    assert not list(tmp_path.glob("*.tmp"))


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        BodyModelData.load(bad)
    data = random_body_data()
    wrong = data.replace(lbs_weights=data.lbs_weights[:, :20])
    with pytest.raises(ValueError, match=r"'lbs_weights' has shape \(60, 20\), expected \(60, 24\)"):
        BodyModel(wrong)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = BodyModel(random_body_data())
    rots = random_rotations(4, 24, dtype=torch.float32)
    betas = torch.randn(4, 4)
    eager = model(rots[:, 0], rots[:, 1:], betas)
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(rots[:, 0], rots[:, 1:], betas)
    torch.testing.assert_close(out.vertices, eager.vertices, rtol=1e-5, atol=1e-6)
