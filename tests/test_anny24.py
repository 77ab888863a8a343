"""Anny-24: shipped files, exactness against Anny's own forward pass, pose conversion, PCA,
symmetry.  The default tests never build an ``anny`` model from its raw assets (minutes,
~800 MB of cache): Anny's forward runs on the reference data shipped in ``anny24_rig.npz``
(:func:`hmrkit.body._anny_build.reference_anny`), with anny's cache pointed at an empty
temporary folder that must stay empty.  ``-m slow`` rebuilds everything with ``anny``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import torch

from hmrkit.body import _anny_build as build
from hmrkit.body import anny24 as a24
from hmrkit.body.keypoints import SMPL24_NAMES, SMPL24_PARENTS, flip_permutation
from hmrkit.body.model import BodyModel, BodyModelData, skin

HAS_ANNY = importlib.util.find_spec("anny") is not None
needs_anny = pytest.mark.skipif(not HAS_ANNY, reason="needs the anny package")

F64 = torch.float64
MM = 1e-3
Q = torch.as_tensor(a24.Q)

# The bone -> joint table of the design notes (anny24.md): members of each merged joint.
TABLE = {
    "pelvis": ["root", "pelvis.L", "pelvis.R", "spine05"],
    "left_hip": ["upperleg01.L", "upperleg02.L"],
    "spine1": ["spine04", "spine03"],
    "spine2": ["spine02"],
    "spine3": ["spine01"],
    "left_knee": ["lowerleg01.L", "lowerleg02.L"],
    "left_ankle": ["foot.L"],
    "left_foot": [f"toe{i}-{k}.L" for i in range(1, 6) for k in range(1, 4) if (i, k) != (1, 3)],
    "neck": ["neck01", "neck02", "neck03"],
    "head": ["head", "eye.L", "eye.R"],
    "left_collar": ["clavicle.L", "shoulder01.L"],
    "left_shoulder": ["upperarm01.L", "upperarm02.L"],
    "left_elbow": ["lowerarm01.L", "lowerarm02.L"],
    "left_wrist": ["wrist.L"] + [f"metacarpal{i}.L" for i in range(1, 5)]
    + [f"finger1-{k}.L" for k in range(1, 4)],
    "left_hand": [f"finger{i}-{k}.L" for i in range(2, 6) for k in range(1, 4)],
}


@pytest.fixture(scope="module", autouse=True)
def empty_anny_cache(tmp_path_factory):
    """Point anny's cache at an empty folder; fail if anything was written there."""
    if not HAS_ANNY:
        yield
        return
    import anny.paths

    old = anny.paths.get_anny_cache_path()
    folder = tmp_path_factory.mktemp("anny_cache")
    anny.paths.set_anny_cache_path(folder)
    yield
    anny.paths.set_anny_cache_path(old)
    assert not any(folder.iterdir()), "a test built an anny model from its raw assets"


@pytest.fixture(scope="module")
def rig():
    return a24.load_anny_rig()


@pytest.fixture(scope="module")
def models():
    return {mesh: a24.load_anny24(mesh, num_betas=16) for mesh in a24.MESHES}


def rotations(num, sigma, seed):
    return build.random_rotations(num, 24, sigma, seed)


def phenotypes(population, num, seed):
    return torch.as_tensor(a24.sample_phenotypes(population, num, seed))


# ---------------------------------------------------------------------- files
def test_shipped_models(models):
    full, dec = models["full"], models["decimated"]
    assert (full.num_vertices, dec.num_vertices) == (13718, 1229)
    assert full.faces.shape == (27420, 3) and dec.faces.shape == (2454, 3)
    for data in (full, dec):
        assert data.joint_names == SMPL24_NAMES
        assert tuple(data.parents) == SMPL24_PARENTS
        assert data.posedirs is None
        assert set(data.keypoint_regressors) == {"coco17", "lsp14", "blazepose33"}
        np.testing.assert_allclose(data.lbs_weights.sum(1), 1.0, atol=1e-5)
        assert data.meta["anny_version"] == a24.ANNY_VERSION
        assert data.meta["population"] == "adults"


def test_load_truncates_betas(models):
    data = a24.load_anny24("decimated")
    assert data.num_betas == 10 and data.name == "anny24-adults-decimated-k10"
    np.testing.assert_array_equal(data.shapedirs, models["decimated"].shapedirs[..., :10])
    np.testing.assert_array_equal(
        data.joint_shapedirs, models["decimated"].joint_shapedirs[..., :10]
    )
    with pytest.raises(ValueError):
        a24.load_anny24("decimated", num_betas=17)
    with pytest.raises(ValueError):
        a24.load_anny24("coarse")


def test_save_load_round_trip(models, tmp_path):
    models["decimated"].save(tmp_path / "m.npz")
    again = BodyModelData.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.v_template, models["decimated"].v_template)
    assert again.meta == models["decimated"].meta


# ---------------------------------------------------------------------- bones and joints
def test_bone_to_joint_table(rig):
    joints = a24.bone_joints(rig.bone_labels, rig.bone_parents)
    np.testing.assert_array_equal(joints, rig.bone_joint)
    assert len(rig.bone_labels) == 104
    for name, bones in TABLE.items():
        sides = [(name, ".L")] + [(name.replace("left_", "right_"), ".R")] * ("left" in name)
        for side_name, side in sides:
            members = {rig.bone_labels[b] for b in np.flatnonzero(joints == SMPL24_NAMES.index(
                side_name))}
            assert members == {b.replace(".L", side) for b in bones}, side_name
    a24.check_joint_tree(rig.bone_labels, rig.bone_parents)


def test_joint_centres_are_bone_heads(rig):
    A = a24.joint_centre_matrix(rig.bone_labels)
    assert np.allclose(A.sum(1), 1)
    heads = {label: i for i, label in enumerate(rig.bone_labels)}
    assert A[SMPL24_NAMES.index("left_knee"), heads["lowerleg01.L"]] == 1
    assert np.allclose(A[SMPL24_NAMES.index("left_foot"), [heads[f"toe{i}-1.L"] for i in
                                                          range(1, 6)]], 0.2)
    assert np.allclose(A[SMPL24_NAMES.index("right_hand"), [heads[f"finger{i}-1.R"] for i in
                                                           range(2, 6)]], 0.25)


def test_frame_is_y_up_facing_z(models):
    data = models["full"]
    j = {n: data.joint_template[i] for i, n in enumerate(SMPL24_NAMES)}
    assert j["head"][1] - j["left_ankle"][1] > 1.2  # y up
    assert j["left_hip"][0] > 0.05 and j["right_hip"][0] < -0.05  # left at +x
    nose = data.keypoint_regressors["coco17"][0, 24:] @ data.v_template
    assert nose[2] - j["head"][2] > 0.05  # facing +z
    assert np.isclose(np.linalg.det(a24.Q), 1.0)


def test_rotation_convention(rig):
    """A body-frame turn about y (up) is an Anny-frame turn about z (up): R' = Q^T R Q."""
    import roma

    turn = roma.rotvec_to_rotmat(torch.tensor([[0.0, np.pi / 2, 0.0]], dtype=F64))
    eye = torch.eye(3, dtype=F64).expand(1, 23, 3, 3)
    params = a24.pose_to_anny(turn, eye, betas=torch.zeros(1, 10, dtype=F64), rig=rig)
    U0 = torch.as_tensor(rig.reference_orientations[0], dtype=F64)
    world = U0.T @ params[0, 0, :3, :3] @ U0  # Anny's root: W_0 = U_0^T D_0 U_0
    z_turn = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, np.pi / 2], dtype=F64))
    torch.testing.assert_close(world, z_turn)
    torch.testing.assert_close(world, Q.T @ turn[0] @ Q)


# ---------------------------------------------------------------------- exactness vs Anny
def anny_vs_skin(ref, rig, lbs_weights, phen, rot, transl=None):
    """Anny's posed vertices and Anny-24 skinning of Anny's exact rest mesh (body frame)."""
    rest = ref(phenotype_kwargs=phen)
    params = a24.pose_to_anny(rot[:, 0], rot[:, 1:], phenotypes=phen, transl=transl, rig=rig)
    posed = ref(pose_parameters=params, phenotype_kwargs=phen)["vertices"] @ Q.T
    joints = a24.rest_joints(rest["rest_bone_poses"], rig)
    ours, _ = skin(rest["rest_vertices"] @ Q.T, joints, rot, SMPL24_PARENTS,
                   torch.as_tensor(lbs_weights, dtype=F64), transl=transl)
    return posed, ours


@needs_anny
@pytest.mark.parametrize("population", ["adults", "all"])
def test_exact_vs_anny_decimated(rig, models, population):
    ref = build.reference_anny("decimated", rig)
    phen, rot = phenotypes(population, 24, 1), rotations(24, 0.6, 2)
    transl = torch.randn(24, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    posed, ours = anny_vs_skin(ref, rig, models["decimated"].lbs_weights, phen, rot, transl)
    assert (posed - ours).norm(dim=-1).max() < 0.01 * MM


@needs_anny
def test_exact_vs_anny_full_mesh_subset(rig, models):
    ref = build.reference_anny("full", rig)
    subset = rig.arrays["ref_full_index"]
    phen, rot = phenotypes("all", 24, 4), rotations(24, 0.6, 5)
    posed, ours = anny_vs_skin(ref, rig, models["full"].lbs_weights[subset], phen, rot)
    assert (posed - ours).norm(dim=-1).max() < 0.01 * MM


@needs_anny
def test_naive_pose_transfer_is_wrong(rig, models):
    """Identity on the non-start bones is not Anny's rest pose: the conversion matters."""
    ref = build.reference_anny("decimated", rig)
    phen, rot = phenotypes("adults", 4, 6), rotations(4, 0.3, 7)
    posed, ours = anny_vs_skin(ref, rig, models["decimated"].lbs_weights, phen, rot)
    params = a24.pose_to_anny(rot[:, 0], rot[:, 1:], phenotypes=phen, rig=rig)
    starts = [rig.bone_labels.index(b) for n in SMPL24_NAMES for b in a24.JOINT_START_BONES[n]]
    naive = torch.eye(4, dtype=F64).repeat(4, rig.num_bones, 1, 1)
    naive[:, starts] = params[:, starts]
    wrong = ref(pose_parameters=naive, phenotype_kwargs=phen)["vertices"] @ Q.T
    assert (wrong - ours).norm(dim=-1).mean() > 5 * MM


@needs_anny
def test_rig_rest_poses_match_anny(rig):
    ref = build.reference_anny("decimated", rig)
    phen = phenotypes("all", 8, 8)
    expected = ref(phenotype_kwargs=phen)["rest_bone_poses"]
    torch.testing.assert_close(rig.rest_bone_poses(phenotypes=phen), expected)


@needs_anny
def test_anny_chain_matches_anny(rig):
    ref = build.reference_anny("decimated", rig)
    phen, rot = phenotypes("all", 4, 9), rotations(4, 0.6, 10)
    params = a24.pose_to_anny(rot[:, 0], rot[:, 1:], phenotypes=phen, rig=rig)
    out = ref(pose_parameters=params, phenotype_kwargs=phen)
    ours = a24.anny_posed_bones(params, out["rest_bone_poses"], rig)
    torch.testing.assert_close(ours, out["bone_poses"])


@needs_anny
def test_round_trip_pose_anny_pose(rig):
    phen, rot = phenotypes("all", 16, 11), rotations(16, 0.8, 12)
    transl = torch.randn(16, 3, dtype=F64)
    params = a24.pose_to_anny(rot[:, 0], rot[:, 1:], phenotypes=phen, transl=transl, rig=rig)
    go, bp, tr = a24.anny_to_pose(params, phenotypes=phen, rig=rig)
    torch.testing.assert_close(go, rot[:, 0])
    torch.testing.assert_close(bp, rot[:, 1:])
    torch.testing.assert_close(tr, transl)


def test_pose_to_anny_with_betas_matches_body_model(rig, models):
    """``betas``: Anny's skeleton of the PCA shape; its joints are the model's joints."""
    data = models["full"]
    betas = torch.randn(8, 10, dtype=F64, generator=torch.Generator().manual_seed(13))
    P = rig.rest_bone_poses(betas=betas)
    model = BodyModel(data, dtype=F64)
    _, joints = model.rest(betas)
    torch.testing.assert_close(a24.rest_joints(P, rig), joints, atol=2e-6, rtol=0)
    rot = rotations(8, 0.5, 14)
    params = a24.pose_to_anny(rot[:, 0], rot[:, 1:], betas=betas, rig=rig)
    go, bp, _ = a24.anny_to_pose(params, rest_bone_poses=P, rig=rig)
    torch.testing.assert_close(bp, rot[:, 1:])


# ---------------------------------------------------------------------- shape space
def test_meshes_share_one_shape_space(rig, models):
    full, dec = models["full"], models["decimated"]
    idx, bary = rig.arrays["decimated_index"], rig.arrays["decimated_bary"].astype(np.float64)

    def carry(x):
        return np.einsum("nk,nk...->n...", bary, x[idx].astype(np.float64))

    np.testing.assert_allclose(carry(full.v_template), dec.v_template, atol=2e-6)
    np.testing.assert_allclose(carry(full.shapedirs), dec.shapedirs, atol=2e-6)
    np.testing.assert_allclose(carry(full.lbs_weights), dec.lbs_weights, atol=2e-6)
    np.testing.assert_array_equal(full.joint_template, dec.joint_template)
    np.testing.assert_array_equal(full.joint_shapedirs, dec.joint_shapedirs)


@needs_anny
def test_pca_betas_are_standard_normal(rig, models):
    betas = rig.betas_from_phenotypes(phenotypes("adults", 4000, 15)).numpy()
    assert np.abs(betas.mean(0)).max() < 0.1
    np.testing.assert_allclose(betas.std(0), 1.0, atol=0.1)
    eig = np.array(models["full"].meta["eigenvalues_m2"])
    assert np.all(np.diff(eig) <= 0)


@needs_anny
def test_pca_reconstruction_of_anny_shapes(rig, models):
    """Least-squares betas of held-out phenotypes reproduce Anny's rest mesh (mm level)."""
    ref = build.reference_anny("decimated", rig)
    phen = phenotypes("adults", 200, 16)
    exact = ref(phenotype_kwargs=phen)["rest_vertices"] @ Q.T
    model = BodyModel(models["decimated"], dtype=F64)
    err = {}
    for k in (10, 16):
        approx, _ = model.rest(rig.betas_from_phenotypes(phen, k))
        err[k] = (approx - exact).norm(dim=-1)
    assert err[10].mean() < 1.5 * MM and err[10].max() < 30 * MM
    assert err[16].mean() < err[10].mean()


# ---------------------------------------------------------------------- surface data
def test_keypoints_coco_decimated_vs_full(models):
    full, dec = (BodyModel(models[m], dtype=F64) for m in ("full", "decimated"))
    g = torch.Generator().manual_seed(17)
    betas, rot = torch.randn(32, 10, dtype=F64, generator=g), rotations(32, 0.35, 18)
    kp = [m.keypoints(m(rot[:, 0], rot[:, 1:], betas), "coco17") for m in (full, dec)]
    err = (kp[0] - kp[1]).norm(dim=-1)
    assert err.mean() < 1 * MM and err.max() < 8 * MM
    for m in (full, dec):
        np.testing.assert_allclose(m.data.keypoint_regressors["coco17"].sum(1), 1, atol=1e-5)
        lsp = m.keypoints(m(), "lsp14")[0]
        assert lsp[13, 1] > lsp[12, 1]  # head top above the neck


def test_texcoords_and_parts(models):
    for data in models.values():
        assert data.texcoords.min() >= -0.05 and data.texcoords.max() <= 1.05
        assert data.faces_texcoords.shape == data.faces.shape
        names = data.part_names
        assert {"body", "head", "hand.L", "hand.R", "foot.L", "foot.R"} <= set(names)
        parts = np.asarray(names)[data.vertex_parts]
        x = data.v_template[:, 0]
        assert x[parts == "hand.L"].min() > 0.3 and x[parts == "hand.R"].max() < -0.3
        flipped = parts[data.vertex_flip]
        assert np.all((flipped == "hand.L") == (parts == "hand.R"))
    assert models["full"].texcoords.min() >= 0 and models["full"].texcoords.max() <= 1


def test_vertex_flip(models):
    for data in models.values():
        flip = data.vertex_flip
        np.testing.assert_array_equal(flip[flip], np.arange(data.num_vertices))
        mirrored = data.v_template[flip] * np.array([-1, 1, 1])
        assert np.abs(mirrored - data.v_template).max() < 0.1 * MM


@pytest.mark.parametrize("mesh", a24.MESHES)
def test_mirrored_pose_gives_mirrored_mesh(models, mesh):
    """Template asymmetry of the PCA mean (< 0.1 mm) bounds the error: 0.2 mm."""
    data = models[mesh]
    model = BodyModel(data, dtype=F64)
    perm = list(flip_permutation(SMPL24_NAMES))
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=F64))
    rot = rotations(16, 0.5, 19)
    mirrored_rot = M @ rot[:, perm] @ M
    a = model(rot[:, 0], rot[:, 1:]).vertices
    b = model(mirrored_rot[:, 0], mirrored_rot[:, 1:]).vertices
    b = b[:, data.vertex_flip] * torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    assert (a - b).norm(dim=-1).max() < 0.2 * MM


def test_body_model_gradients(models):
    model = BodyModel(models["decimated"], dtype=F64)
    betas = torch.zeros(2, 10, dtype=F64, requires_grad=True)
    rot = rotations(2, 0.3, 20)
    model(rot[:, 0], rot[:, 1:], betas).vertices.square().sum().backward()
    assert torch.isfinite(betas.grad).all() and betas.grad.abs().sum() > 0


# ---------------------------------------------------------------------- reproducibility
# The build's float arithmetic differs between machines in the last bits (BLAS kernels, SIMD
# orders, anny's SVD): no discrete choice may follow those bits (see _anny_build's doc).
ULP = 4e-16


def test_peak_signs_break_mirror_ties_by_lowest_index():
    rng = np.random.default_rng(0)
    v = rng.uniform(-0.4, 0.4, (50, 30))
    v[:, 7], v[:, 21] = 0.9, -0.9  # a mirror pair x, -x is the peak of every row
    for eps in (ULP, -ULP, 0.0):  # whichever side round-off favours
        w = v.copy()
        w[:, 21] *= 1 + eps
        np.testing.assert_array_equal(build.peak_signs(w), np.ones(50))
        np.testing.assert_array_equal(build.peak_signs(-w), -np.ones(50))
    u = rng.standard_normal((50, 30))  # no ties: the largest entry decides, as argmax
    naive = np.sign(u[np.arange(50), np.abs(u).argmax(1)])
    np.testing.assert_array_equal(build.peak_signs(u), naive)
    with pytest.raises(ValueError):
        build.peak_signs(np.zeros((1, 3)))


def test_lowest_top_indices_ignore_round_off():
    rng = np.random.default_rng(1)
    w = rng.integers(0, 4, (40, 6)).astype(float) / 3  # many exact ties
    naive = np.argsort(-w, axis=0, kind="stable")[:3]  # ties: lowest index
    np.testing.assert_array_equal(build.lowest_top_indices(w, 3), naive)
    noisy = w * (1 + ULP * rng.standard_normal(w.shape))
    np.testing.assert_array_equal(build.lowest_top_indices(noisy, 3), naive)


def naive_distances(points, vertices, triangles):
    """(M, T) distance from every point to every triangle, one triangle at a time."""
    out = []
    for t in triangles:
        corners = [np.repeat(vertices[k][None], len(points), 0) for k in t]
        bary = build.closest_barycentrics(points, *corners)
        out.append(np.linalg.norm(np.einsum("mk,kd->md", bary, vertices[t]) - points, axis=1))
    return np.stack(out, 1)


def test_closest_on_mesh_ties_go_to_the_lowest_triangle():
    """Points nearest to an edge shared by triangles 1 and 2: the answer is triangle 1 every
    time (before: whichever round-off made nearer, triangle 2 in ~2 % of these cases)."""
    rng = np.random.default_rng(2)
    triangles = np.array([[1, 3, 4], [0, 1, 2], [1, 3, 2], [0, 2, 4]])  # 1 and 2 share edge 1-2
    ties = 0
    for _ in range(400):
        v = rng.uniform(-1, 1, (5, 3))
        n1 = np.cross(v[1] - v[0], v[2] - v[0])
        n2 = np.cross(v[3] - v[1], v[2] - v[1])
        n1, n2 = n1 / np.linalg.norm(n1), n2 / np.linalg.norm(n2)
        n2 = n2 if n1 @ n2 > 0 else -n2
        t = rng.uniform(0.2, 0.8)
        p = ((1 - t) * v[1] + t * v[2] + 0.3 * (n1 + n2))[None]
        every = naive_distances(p, v, triangles)[0]
        if every[1:3].max() > every.min() + 1e-12:
            continue  # the shared edge is not the nearest place
        ties += 1
        tri, _, dist = build.closest_on_mesh(p, v, triangles)
        assert tri[0] == 1 and dist[0] == pytest.approx(every.min(), abs=1e-12)
    assert ties > 50
    pts = rng.uniform(-1, 1, (300, 3))  # generic points: the nearest triangle
    tri, _, dist = build.closest_on_mesh(pts, v, triangles)
    every = naive_distances(pts, v, triangles)
    np.testing.assert_allclose(dist, every.min(1), atol=1e-12)
    np.testing.assert_array_equal(tri, every.argmin(1))


def test_canonical_signs_undo_the_svd_signs_of_another_machine(rig):
    """anny's compact directions with any signs (another machine's SVD) -> the same arrays,
    and the same rest states (a flipped direction comes with a flipped coefficient)."""
    a = rig.arrays
    C = len(a["heads_basis"])
    lin = build.AnnyLinear(
        vertices=a["ref_full_vertices"].astype(np.float64),
        vertices_basis=a["ref_full_basis"].astype(np.float64),
        heads=a["heads_anny"].astype(np.float64), heads_basis=a["heads_basis"].astype(np.float64),
        orient=a["orient_anny"].astype(np.float64),
        orient_basis=a["orient_basis"].astype(np.float64),
        weights=a["ref_full_weights"], faces=np.zeros((0, 3), int), texcoords=np.zeros((0, 2)),
        faces_texcoords=np.zeros((0, 3), int), bone_labels=rig.bone_labels,
        bone_parents=rig.bone_parents, reference_orientations=rig.reference_orientations,
        coeff_mask=a["coeff_mask"], coeff_projection=a["coeff_projection"].astype(np.float64),
    )
    flips = np.where(np.random.default_rng(3).random(C) < 0.5, -1.0, 1.0)
    other = build.AnnyLinear(**{**lin.__dict__,
                                "vertices_basis": lin.vertices_basis * flips[:, None, None],
                                "heads_basis": lin.heads_basis * flips[:, None, None],
                                "orient_basis": lin.orient_basis * flips[:, None, None, None],
                                "coeff_projection": lin.coeff_projection * flips})
    mine, theirs = build.canonical_coefficient_signs(lin), build.canonical_coefficient_signs(other)
    for key in ("vertices_basis", "heads_basis", "orient_basis", "coeff_projection"):
        np.testing.assert_array_equal(getattr(mine, key), getattr(theirs, key), err_msg=key)
    phen = a24.sample_phenotypes("all", 5, 4)
    before = lin.rest_heads(build.phenotype_coefficients(lin, phen))
    after = mine.rest_heads(build.phenotype_coefficients(mine, phen))
    np.testing.assert_allclose(after, before, atol=1e-12)


# ---------------------------------------------------------------------- slow: real anny
@pytest.fixture
def anny_user_cache():
    """anny's own cache, ``$ANNY_CACHE_DIR`` or ``~/.cache/anny`` (cold build: minutes)."""
    import anny.paths

    old = anny.paths.get_anny_cache_path()
    anny.paths.set_anny_cache_path(
        os.environ.get("ANNY_CACHE_DIR", anny.paths.DEFAULT_CACHE_PATH)
    )
    yield
    anny.paths.set_anny_cache_path(old)


@pytest.mark.slow
@needs_anny
def test_exact_vs_anny_full_model(anny_user_cache, rig, models):
    model = build.load_anny()
    phen, rot = phenotypes("all", 8, 21), rotations(8, 0.6, 22)
    posed, ours = anny_vs_skin(model, rig, models["full"].lbs_weights, phen, rot)
    assert (posed - ours).norm(dim=-1).max() < 0.01 * MM


# Rebuilding on another machine reproduces the shipped files: integer arrays (faces, texture
# indices, parts, flips, the decimated mesh's source triangles) exactly; float arrays within
# float32 storage round-off of values computed in float64 (REBUILD_RTOL relative, plus
# REBUILD_ATOL: 10 um for coordinates); the NNLS keypoint regressors within 1e-4.  Measured on
# an emulated other machine (numpy without AVX2, MKL on SSE4.2, another OpenBLAS kernel, one
# thread, anny cold-built there): largest float difference 3.8e-6 (coeff_to_betas, values
# up to ~1e3), integer arrays identical.
REBUILD_RTOL, REBUILD_ATOL = 1e-6, 1e-5


@pytest.mark.slow
@needs_anny
def test_rebuild_reproduces_shipped_files(anny_user_cache, models, rig, tmp_path):
    result = build.build(**{k: a24.SHIPPED[k] for k in ("population", "num_betas",
                                                        "num_samples", "seed")})
    paths = build.write(result, tmp_path)
    for mesh in a24.MESHES:
        new, old = BodyModelData.load(tmp_path / f"anny24_{mesh}.npz"), models[mesh]
        for key in BodyModelData._ARRAYS:
            a, b = getattr(new, key), getattr(old, key)
            if a is None:
                assert b is None, key
            elif a.dtype.kind == "f":
                np.testing.assert_allclose(a, b, REBUILD_RTOL, REBUILD_ATOL, err_msg=key)
            else:
                np.testing.assert_array_equal(a, b, err_msg=key)
        for name, reg in old.keypoint_regressors.items():
            if name in a24.EXTRA_KEYPOINT_FILES:  # not part of the build
                continue
            np.testing.assert_allclose(new.keypoint_regressors[name], reg, atol=1e-4)
    new_rig = a24.load_anny_rig(paths[-1])
    for key, value in rig.arrays.items():
        if np.asarray(value).dtype.kind == "f":
            np.testing.assert_allclose(new_rig.arrays[key], value, REBUILD_RTOL, REBUILD_ATOL,
                                       err_msg=key)
        else:
            np.testing.assert_array_equal(new_rig.arrays[key], value, err_msg=key)
    assert result["report"]["exact_vs_anny_mm"] < 0.01  # Anny-24 skinning == anny's forward


# ---------------------------------------------------------------------- shape table
@pytest.fixture
def fresh_shape_table():
    a24._shape_table.cache_clear()
    yield
    a24._shape_table.cache_clear()


def test_shape_table_loads_without_anny(monkeypatch, fresh_shape_table):
    monkeypatch.setitem(sys.modules, "anny", None)  # any `import anny` fails
    with pytest.raises(ImportError):
        import anny  # noqa: F401
    counts = {"adults": 8192, "children": 4096}
    for population in a24.SHAPE_POPULATIONS:
        phen, betas = a24.load_shape_table(population)
        assert phen.shape == (counts[population], 6) and phen.dtype == np.float16
        assert betas.shape == (counts[population], 16) and betas.dtype == np.float32
        assert np.isfinite(betas).all()
        _, b10 = a24.load_shape_table(population, num_betas=10)
        np.testing.assert_array_equal(b10, betas[:, :10])
    header = a24.shape_table_header()
    assert header["num_betas"] == 16 and header["phenotype_names"] == list(a24.PHENOTYPES)
    assert header["shape_space"] == {k: a24.SHIPPED[k] for k in build.SPACE_KEYS}
    for population, info in header["populations"].items():
        assert (info["count"], info["seed"]) == (counts[population], build.SHAPE_TABLE[population][1])
        for k in ("k10", "k16"):
            assert set(info["projection_error_mm"][k]) == {"mean", "max"}
    with pytest.raises(ValueError, match="choose from"):
        a24.load_shape_table("all")
    with pytest.raises(ValueError, match="num_betas"):
        a24.load_shape_table("adults", num_betas=17)


def test_shape_table_populations():
    """Adults: whitened PCA betas (about N(0, I)); children: smaller, off that distribution,
    and projected with larger errors (the shape space was fit on adults)."""
    ap, ab = a24.load_shape_table("adults")
    cp, cb = a24.load_shape_table("children")
    age = a24.PHENOTYPES.index("age")
    assert ap[:, age].min() >= 2 / 3 - 1e-3 and ap[:, age].max() <= 1
    lo, hi = a24.POPULATIONS["children"]["age"]
    assert cp[:, age].min() >= lo - 1e-3 and cp[:, age].max() <= hi + 1e-3
    assert np.abs(ab[:, :10].mean(0)).max() < 0.1
    np.testing.assert_allclose(ab[:, :10].std(0), 1.0, atol=0.1)
    assert np.abs(cb[:, :10].mean(0)).max() > 1.0  # not the adult distribution
    model = BodyModel(a24.load_anny24("decimated", 16), dtype=F64)

    def heights(betas):
        rest, _ = model.rest(torch.as_tensor(betas[:500], dtype=F64))
        return (rest[..., 1].amax(1) - rest[..., 1].amin(1)).numpy()

    assert 1.75 < heights(ab).mean() < 1.9 and 1.1 < heights(cb).mean() < 1.35
    err = build.shape_table_errors(a24.shape_table_header())
    assert err["adults"]["k10"]["mean"] < 1.5 and err["adults"]["k16"]["mean"] < 1.0
    assert err["children"]["k10"]["mean"] > 3 * err["adults"]["k10"]["mean"]
    for population in err:
        assert err[population]["k16"]["mean"] <= err[population]["k10"]["mean"]


@needs_anny
def test_shape_table_betas_are_projected_phenotypes(rig):
    for population in a24.SHAPE_POPULATIONS:
        phen, betas = a24.load_shape_table(population)
        ours = rig.betas_from_phenotypes(torch.as_tensor(phen[::64], dtype=F64)).numpy()
        np.testing.assert_allclose(ours, betas[::64], rtol=0, atol=1e-4)


@pytest.mark.slow
@needs_anny
def test_rewrite_shape_table_reproduces_shipped_file(anny_user_cache, tmp_path):
    from hmrkit.io import load_npz_with_header

    path, header = build.write_shape_table(tmp_path)
    header = json.loads(json.dumps(header))
    shipped = a24.shape_table_header()
    assert {k: v for k, v in header.items() if k != "populations"} == {
        k: v for k, v in shipped.items() if k != "populations"}
    for population, info in shipped["populations"].items():
        new = header["populations"][population]
        assert (new["count"], new["seed"]) == (info["count"], info["seed"])
        for k, err in info["projection_error_mm"].items():
            assert new["projection_error_mm"][k] == pytest.approx(err, rel=1e-6)
    again, _ = load_npz_with_header(path, "Anny-24 shape table")
    arrays, _ = load_npz_with_header(a24.data_file(a24.SHAPE_TABLE_FILE), "Anny-24 shape table")
    assert set(again) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_allclose(again[key], value, rtol=0, atol=1e-5, err_msg=key)
