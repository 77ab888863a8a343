"""Keypoint sets: names, flip permutations, regressors, errors."""

from __future__ import annotations

import numpy as np
import pytest

from hmrkit.body.keypoints import (
    KEYPOINT_SETS,
    LSP14_FROM_SMPL24,
    SMPL24_NAMES,
    SMPL24_PARENTS,
    get_keypoint_set,
    lsp14_regressor,
    regressor,
)


@pytest.mark.parametrize("name", sorted(KEYPOINT_SETS))
def test_flip_permutation_is_an_involution_swapping_sides(name):
    kps = get_keypoint_set(name)
    perm = np.array(kps.flip_permutation)
    np.testing.assert_array_equal(perm[perm], np.arange(len(kps)))
    for i, j in enumerate(perm):
        a, b = kps.names[i], kps.names[j]
        if a.startswith("left_"):
            assert b == "right_" + a[5:]
        elif a.startswith("right_"):
            assert b == "left_" + a[6:]
        else:
            assert i == j


def test_sizes_and_literature_order():
    assert len(get_keypoint_set("smpl24")) == 24
    assert len(get_keypoint_set("coco17")) == 17
    lsp = get_keypoint_set("lsp14")
    assert lsp.names[:3] == ("right_ankle", "right_knee", "right_hip")
    assert lsp.names[-2:] == ("neck", "head_top")
    assert get_keypoint_set("joints") is get_keypoint_set("smpl24")
    for name, idx in LSP14_FROM_SMPL24.items():
        assert SMPL24_NAMES[idx] == name


def test_smpl_parents_list_parents_first_and_edges_valid():
    assert SMPL24_PARENTS[0] == -1
    assert all(p < k for k, p in enumerate(SMPL24_PARENTS) if k)
    for kps in KEYPOINT_SETS.values():
        for a, b in kps.edges:
            assert 0 <= a < len(kps) and 0 <= b < len(kps)


def test_regressor_rows_select_sources():
    w = np.zeros(5)
    w[[1, 3]] = 0.5
    reg = regressor([("joint", 2), ("vertex", 4), ("vertices", w)], num_joints=3, num_vertices=5)
    joints, verts = np.arange(9.0).reshape(3, 3), np.arange(15.0).reshape(5, 3) + 100
    out = reg @ np.concatenate([joints, verts])
    np.testing.assert_array_equal(out[0], joints[2])
    np.testing.assert_array_equal(out[1], verts[4])
    np.testing.assert_array_equal(out[2], 0.5 * (verts[1] + verts[3]))
    with pytest.raises(ValueError, match="unknown keypoint source kind 'bone'"):
        regressor([("bone", 0)], 3, 5)


def test_lsp14_head_top_is_highest_vertex():
    v = np.zeros((4, 3))
    v[2, 1] = 1.8
    reg = lsp14_regressor(v)
    assert reg.shape == (14, 28)
    assert reg[13, 24 + 2] == 1.0


def test_unknown_keypoint_set_lists_known():
    with pytest.raises(KeyError, match="unknown keypoint set 'h36m'.*coco17"):
        get_keypoint_set("h36m")
