"""The shipped Anny-24 regressor of the 33 BlazePose landmarks (made by
scripts/make_blazepose_regressor.py): layout, weights, symmetry, anatomy."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from hmrkit.blazepose.names import BLAZEPOSE33_FLIP, BLAZEPOSE33_NAMES, COCO17_FROM_BLAZEPOSE33
from hmrkit.body import load_body_model_data
from hmrkit.io import load_npz_with_header

MESHES = {"decimated": "anny24", "full": "anny24-full"}


@pytest.fixture(scope="module")
def regressor():
    path = resources.files("hmrkit.body") / "data" / "anny24_blazepose33.npz"
    return load_npz_with_header(path, "hmrkit keypoint regressor")


@pytest.fixture(scope="module")
def bodies():
    return {mesh: load_body_model_data(name) for mesh, name in MESHES.items()}


def test_layout_and_header(regressor, bodies):
    arrays, header = regressor
    assert header["keypoint_set"] == "blazepose33"
    assert header["names"] == list(BLAZEPOSE33_NAMES)
    assert "make_blazepose_regressor.py" in header["command"]
    for mesh, data in bodies.items():
        w = arrays[mesh]
        assert w.shape == (33, data.num_joints + data.num_vertices)
        assert np.all(w >= 0) and np.all(w[:, :data.num_joints] == 0)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
        assert (w > 0).sum(1).max() <= 40  # sparse
        held = header["meshes"][mesh]["landmarks"]
        assert set(held) == set(BLAZEPOSE33_NAMES)


def test_left_right_symmetric(regressor, bodies):
    arrays, _ = regressor
    for mesh, data in bodies.items():
        v = arrays[mesh][:, data.num_joints:]
        flip = data.vertex_flip
        mirrored = v[list(BLAZEPOSE33_FLIP)][:, flip]
        np.testing.assert_allclose(mirrored, v, atol=1e-6)


def test_rest_pose_anatomy(regressor, bodies):
    """Left landmarks on the person's left (+x), head above shoulders above hips above knees
    above ankles, BlazePose's limb points near the COCO regressor's, both meshes agree."""
    arrays, _ = regressor
    points = {}
    for mesh, data in bodies.items():
        p = arrays[mesh][:, data.num_joints:] @ data.v_template
        points[mesh] = p
        names = BLAZEPOSE33_NAMES
        for k, n in enumerate(names):
            if n.startswith("left_"):
                assert p[k, 0] > 0.005, n  # inner eye corners: about 1.2 cm
        y = {n: p[names.index(n), 1] for n in names}
        assert y["nose"] > y["left_shoulder"] > y["left_hip"] > y["left_knee"] > y["left_ankle"]
        assert y["left_ankle"] > y["left_heel"] - 0.05
        coco = data.keypoint_regressors["coco17"][:, data.num_joints:] @ data.v_template
        dist = np.linalg.norm(p[list(COCO17_FROM_BLAZEPOSE33)] - coco, axis=1)
        assert dist.max() < 0.06, dist  # metres (measured: 4-16 mm, ears 40 mm)
    gap = np.linalg.norm(points["decimated"] - points["full"], axis=1)
    assert gap.max() < 0.005, gap  # measured 0.7 mm
