"""SMPL loader: fake ``.pkl`` (pickled with stand-in chumpy classes) and ``.npz`` files, the
LBS engine against a naive SMPL forward pass, the search order, error messages, and the
real model when the user has one (``-m smpl``; skipped when absent)."""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hmrkit.body.keypoints import COCO17_NAMES, LSP14_NAMES, SMPL24_NAMES, SMPL24_PARENTS
from hmrkit.body.model import BodyModel, BodyModelData
from hmrkit.body.smpl import (
    COCO17_FROM_SMPL,
    H36M_TO_J14,
    SMPL_ENV_VAR,
    SMPL_FILE_NAMES,
    SMPL_URL,
    SMPLFileError,
    find_smpl,
    load_smpl,
    read_smpl_file,
    smpl_cache_dir,
    smpl_to_body_data,
)
from tests.helpers import random_rotations

J = 24
CHUMPY_MODULES = ("chumpy", "chumpy.ch", "chumpy.ch_ops")


# ---------------------------------------------------------------------- fake SMPL files
def fake_smpl_arrays(num_vertices: int = 50, num_betas: int = 12, seed: int = 0) -> dict:
    """A small random model with SMPL's keys, dtypes and 24-joint tree."""
    rng = np.random.default_rng(seed)
    V = num_vertices
    weights = rng.random((V, J)) ** 4
    weights /= weights.sum(1, keepdims=True)
    j_regressor = rng.random((J, V)) * (rng.random((J, V)) < 0.2)
    j_regressor[np.arange(J), rng.integers(0, V, J)] += 1.0  # no empty row
    j_regressor /= j_regressor.sum(1, keepdims=True)
    v_template = rng.normal(size=(V, 3)) * 0.3
    kintree = np.array([SMPL24_PARENTS, range(J)], dtype=np.int64)
    kintree[0, 0] = 4294967295  # what the official files hold for the root's parent
    return {
        "v_template": v_template,
        "shapedirs": rng.normal(size=(V, 3, num_betas)) * 0.02,
        "posedirs": rng.normal(size=(V, 3, 9 * (J - 1))) * 0.01,
        "J_regressor": sp.csc_matrix(j_regressor),
        "weights": weights,
        "kintree_table": kintree,
        "f": rng.integers(0, V, size=(2 * V, 3)).astype(np.uint32),
        # extras found in the official files
        "J": j_regressor @ v_template,
        "J_regressor_prior": sp.csc_matrix(j_regressor),
        "weights_prior": weights.copy(),
        "vert_sym_idxs": np.arange(V),
        "bs_type": "lrotmin",
        "bs_style": "lbs",
        "pose_training_info": {"ncomps": 12, "lambda": 0.5},
    }


def dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


@contextlib.contextmanager
def fake_chumpy():
    """Install a minimal ``chumpy`` in ``sys.modules`` while pickling, then remove it.

    Its objects pickle their ``__dict__`` as state, like chumpy's (``{'x': array, ...}`` for
    ``Ch``, ``{'a': ..., 'b': ...}`` for binary ops).
    """
    pkg, ch, ops = (types.ModuleType(name) for name in CHUMPY_MODULES)

    class Ch:
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()  # bookkeeping real Ch objects also pickle
            self.label = None

    class add:
        def __init__(self, a, b):
            self.a, self.b = a, b

    class MatVecMult:
        def __init__(self, mtx, vec):
            self.mtx, self.vec = mtx, vec

    for cls, module in ((Ch, ch), (add, ops), (MatVecMult, ops)):
        cls.__module__, cls.__qualname__ = module.__name__, cls.__name__
        setattr(module, cls.__name__, cls)
    pkg.ch, pkg.ch_ops, pkg.Ch = ch, ops, Ch
    saved = {name: sys.modules.get(name) for name in CHUMPY_MODULES}
    sys.modules.update(dict(zip(CHUMPY_MODULES, (pkg, ch, ops), strict=True)))
    try:
        yield types.SimpleNamespace(Ch=Ch, add=add, MatVecMult=MatVecMult)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class Py2StylePickler(pickle._Pickler):
    """Writes every str/bytes as a Python-2 ``str`` (BINSTRING), as the SMPL files hold them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def write_fake_pkl(
    path: Path, arrays: dict, py2_style: bool = True, wrap=None, protocol: int = 2
) -> Path:
    """Pickle ``arrays`` (protocol 2) with ``v_template``/``shapedirs`` as chumpy ``Ch``.

    ``py2_style`` also renames the globals to the module paths of the Python-2 era
    (``numpy.core.multiarray``, ``scipy.sparse.csc``).  ``wrap(ch, content)`` may edit the
    content while the fake chumpy is installed.
    """
    with fake_chumpy() as ch:
        content = dict(arrays)
        content["v_template"] = ch.Ch(arrays["v_template"])
        content["shapedirs"] = ch.Ch(arrays["shapedirs"])
        if wrap is not None:
            wrap(ch, content)
        buf = io.BytesIO()
        (Py2StylePickler if py2_style else pickle.Pickler)(buf, protocol=protocol).dump(content)
    raw = buf.getvalue()
    assert b"chumpy.ch\nCh\n" in raw
    if py2_style:
        assert b"_codecs" not in raw  # array bytes stored as Python-2 str
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        raw = raw.replace(b"scipy.sparse._csc", b"scipy.sparse.csc")
        assert b"\nnumpy.core.multiarray\n" not in raw and b"cnumpy.core.multiarray\n" in raw
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


def write_fake_npz(path: Path, arrays: dict, sparse_object: bool = False) -> Path:
    content = dict(arrays)
    del content["pose_training_info"]
    for key in ("J_regressor", "J_regressor_prior"):
        if sparse_object:  # a 0-d object array holding the sparse matrix (needs pickle)
            holder = np.empty((), dtype=object)
            holder[()] = content[key]
            content[key] = holder
        else:
            content[key] = dense(content[key])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **content)
    return path


@pytest.fixture(autouse=True)
def isolated_search(monkeypatch, tmp_path):
    """No test sees the user's real SMPL folders (unless it sets them itself)."""
    monkeypatch.delenv(SMPL_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))


# ---------------------------------------------------------------------- conversion
def check_converted(data: BodyModelData, arrays: dict, num_betas: int = 10) -> None:
    assert data.name == "smpl-neutral"
    assert data.joint_names == SMPL24_NAMES
    np.testing.assert_array_equal(data.parents, SMPL24_PARENTS)
    np.testing.assert_array_equal(data.v_template, arrays["v_template"])
    np.testing.assert_array_equal(data.shapedirs, arrays["shapedirs"][:, :, :num_betas])
    np.testing.assert_array_equal(data.posedirs, arrays["posedirs"].transpose(2, 0, 1))
    np.testing.assert_array_equal(data.lbs_weights, arrays["weights"])
    np.testing.assert_array_equal(data.faces, arrays["f"].astype(np.int64))
    j_reg = dense(arrays["J_regressor"])
    np.testing.assert_allclose(data.joint_template, j_reg @ arrays["v_template"], 0, 1e-15)
    np.testing.assert_allclose(
        data.joint_shapedirs,
        np.einsum("jv,vdk->jdk", j_reg, arrays["shapedirs"][:, :, :num_betas]),
        rtol=0,
        atol=1e-15,
    )
    for key in ("v_template", "shapedirs", "posedirs", "lbs_weights", "joint_template",
                "joint_shapedirs"):
        assert getattr(data, key).dtype == np.float64, key
    assert data.faces.dtype == np.int64 and data.parents.dtype == np.int64
    assert set(data.keypoint_regressors) == {"lsp14"}  # no coco17 off SMPL's topology
    assert data.keypoint_regressors["lsp14"].dtype == np.float64
    assert data.vertex_flip is None  # a random template is not symmetric
    assert data.meta["gender"] == "neutral" and data.meta["num_betas_in_file"] == 12
    data.validate()


@pytest.mark.parametrize(
    ("py2_style", "protocol"),
    [(True, 2), (False, 2), (False, 0)],
    ids=["py2-protocol2", "py3-protocol2", "py3-protocol0"],
)
def test_pkl_converted_exactly_without_chumpy(tmp_path, py2_style, protocol):
    arrays = fake_smpl_arrays()
    path = write_fake_pkl(
        tmp_path / "SMPL_NEUTRAL.pkl", arrays, py2_style=py2_style, protocol=protocol
    )
    assert not any(name in sys.modules for name in CHUMPY_MODULES)
    data = load_smpl(path)
    assert not any(name in sys.modules for name in CHUMPY_MODULES)  # never imported
    check_converted(data, arrays)
    assert data.meta["format"] == "pkl"
    assert data.meta["source"] == str(path.resolve())
    raw = read_smpl_file(path)
    assert raw["bs_type"] == "lrotmin" and raw["pose_training_info"]["ncomps"] == 12
    np.testing.assert_array_equal(raw["J_regressor"], dense(arrays["J_regressor"]))
    np.testing.assert_array_equal(raw["J_regressor_prior"], dense(arrays["J_regressor"]))
    assert raw["f"].dtype == np.uint32 and raw["kintree_table"][0, 0] == 4294967295


@pytest.mark.parametrize("sparse_object", [False, True], ids=["dense-J", "sparse-object-J"])
def test_npz_converted_exactly(tmp_path, sparse_object):
    arrays = fake_smpl_arrays()
    path = write_fake_npz(tmp_path / "SMPL_NEUTRAL.npz", arrays, sparse_object=sparse_object)
    data = load_smpl(path)
    check_converted(data, arrays)
    assert data.meta["format"] == "npz"


def test_num_betas(tmp_path):
    arrays = fake_smpl_arrays()
    path = write_fake_npz(tmp_path / "SMPL_NEUTRAL.npz", arrays)
    assert load_smpl(path, num_betas=None).num_betas == 12
    check_converted(load_smpl(path, num_betas=4), arrays, num_betas=4)
    with pytest.raises(ValueError, match=r"num_betas=13.*has 12"):
        load_smpl(path, num_betas=13)


def test_chumpy_operations(tmp_path):
    arrays = fake_smpl_arrays()
    half = arrays["shapedirs"] * 0.25

    def as_sum(ch, content):
        content["shapedirs"] = ch.add(ch.Ch(half), ch.Ch(arrays["shapedirs"] - half))

    path = write_fake_pkl(tmp_path / "a" / "SMPL_NEUTRAL.pkl", arrays, wrap=as_sum)
    data = load_smpl(path, num_betas=None)
    np.testing.assert_array_equal(data.shapedirs, half + (arrays["shapedirs"] - half))

    def unsupported(ch, content):
        content["posedirs"] = ch.MatVecMult(np.eye(3), ch.Ch(np.ones(3)))

    path = write_fake_pkl(tmp_path / "b" / "SMPL_NEUTRAL.pkl", arrays, wrap=unsupported)
    with pytest.raises(SMPLFileError, match=r"'posedirs'.*chumpy\.ch_ops\.MatVecMult") as err:
        load_smpl(path)
    assert str(path) in str(err.value) and SMPL_URL in str(err.value)


_SIDE_EFFECTS = []


def _side_effect():
    _SIDE_EFFECTS.append("ran")
    return np.zeros(3)


class _Evil:
    def __reduce__(self):
        return (_side_effect, ())


def test_refuses_foreign_globals(tmp_path):
    arrays = fake_smpl_arrays()
    path = write_fake_pkl(
        tmp_path / "SMPL_NEUTRAL.pkl", arrays, wrap=lambda ch, c: c.update(J=_Evil())
    )
    with pytest.raises(SMPLFileError, match="refusing to load global") as err:
        load_smpl(path)
    assert str(path) in str(err.value)
    assert not _SIDE_EFFECTS


# ---------------------------------------------------------------------- LBS equivalence
def naive_smpl_forward(arrays: dict, rotations: np.ndarray, betas: np.ndarray, transl):
    """SMPL's forward pass from the raw file arrays, one element at a time (reference).

    Shape blend, pose blend with the (R - I) feature (``posedirs[:, :, p]`` times feature p,
    p = 9 (k - 1) + 3 row + col), joints from the regressor, kinematic chain with 4x4
    matrices, blended per-vertex 4x4 transforms applied to the homogeneous rest vertex.
    """
    v_template, shapedirs, posedirs = arrays["v_template"], arrays["shapedirs"], arrays["posedirs"]
    j_reg, weights, kintree = dense(arrays["J_regressor"]), arrays["weights"], arrays["kintree_table"]
    V = v_template.shape[0]
    parents = [int(p) if p < J else -1 for p in kintree[0]]
    v_shaped = v_template.copy()
    for k in range(len(betas)):
        v_shaped += betas[k] * shapedirs[:, :, k]
    joints = np.zeros((J, 3))
    for j in range(J):
        for v in range(V):
            joints[j] += j_reg[j, v] * v_shaped[v]
    feature = []
    for k in range(1, J):
        for r in range(3):
            for c in range(3):
                feature.append(rotations[k][r][c] - (1.0 if r == c else 0.0))
    v_posed = v_shaped.copy()
    for p, value in enumerate(feature):
        v_posed += value * posedirs[:, :, p]
    world = []
    for k in range(J):
        local = np.eye(4)
        local[:3, :3] = rotations[k]
        local[:3, 3] = joints[k] - (joints[parents[k]] if parents[k] >= 0 else 0.0)
        world.append(local if parents[k] < 0 else world[parents[k]] @ local)
    relative = []
    for k in range(J):
        to_joint = np.eye(4)
        to_joint[:3, 3] = -joints[k]
        relative.append(world[k] @ to_joint)
    vertices = np.zeros((V, 3))
    for v in range(V):
        blended = np.zeros((4, 4))
        for k in range(J):
            blended += weights[v, k] * relative[k]
        vertices[v] = (blended @ np.append(v_posed[v], 1.0))[:3] + transl
    posed_joints = np.array([world[k][:3, 3] for k in range(J)]) + transl
    return vertices, posed_joints


@pytest.mark.parametrize("fmt", ["pkl", "npz"])
def test_body_model_matches_naive_smpl_forward(tmp_path, fmt):
    arrays = fake_smpl_arrays()
    write = write_fake_pkl if fmt == "pkl" else write_fake_npz
    data = load_smpl(write(tmp_path / f"SMPL_NEUTRAL.{fmt}", arrays), num_betas=None)
    model = BodyModel(data, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    B = 3
    rots = random_rotations(B, J, generator=g)
    betas = torch.randn(B, 12, dtype=torch.float64, generator=g)
    transl = torch.randn(B, 3, dtype=torch.float64, generator=g)
    out = model(global_orient=rots[:, 0], body_pose=rots[:, 1:], betas=betas, transl=transl)
    for b in range(B):
        v_ref, j_ref = naive_smpl_forward(
            arrays, rots[b].numpy(), betas[b].numpy(), transl[b].numpy()
        )
        np.testing.assert_allclose(out.vertices[b].numpy(), v_ref, rtol=0, atol=1e-10)
        np.testing.assert_allclose(out.joints[b].numpy(), j_ref, rtol=0, atol=1e-10)
    lsp = model.keypoints(out, "lsp14")
    assert lsp.shape == (B, len(LSP14_NAMES), 3)


# ---------------------------------------------------------------------- finding files
def test_search_order_argument_env_cache(tmp_path, monkeypatch):
    arg, env, cache = tmp_path / "arg", tmp_path / "env", tmp_path / "xdg" / "hmrkit" / "smpl"
    arrays = fake_smpl_arrays()
    for folder in (arg, env, cache):
        write_fake_npz(folder / "SMPL_NEUTRAL.npz", arrays)
    monkeypatch.setenv(SMPL_ENV_VAR, str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert smpl_cache_dir() == cache

    def source():
        return Path(load_smpl(arg if use_arg else None).meta["source"]).parent

    use_arg = True
    assert source() == arg.resolve()
    use_arg = False
    assert source() == env.resolve()
    monkeypatch.delenv(SMPL_ENV_VAR)
    assert source() == cache.resolve()
    monkeypatch.setenv(SMPL_ENV_VAR, "")  # empty counts as unset
    assert source() == cache.resolve()
    # without XDG_CACHE_HOME: ~/.cache/hmrkit/smpl
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert smpl_cache_dir() == tmp_path / "home" / ".cache" / "hmrkit" / "smpl"
    write_fake_npz(smpl_cache_dir() / "SMPL_NEUTRAL.npz", arrays)
    assert source() == smpl_cache_dir().resolve()
    # the env var may also name a file
    monkeypatch.setenv(SMPL_ENV_VAR, str(env / "SMPL_NEUTRAL.npz"))
    assert source() == env.resolve()


def test_explicit_path_is_authoritative(tmp_path, monkeypatch):
    env = tmp_path / "env"
    write_fake_npz(env / "SMPL_NEUTRAL.npz", fake_smpl_arrays())
    monkeypatch.setenv(SMPL_ENV_VAR, str(env))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        load_smpl(tmp_path / "empty")


def test_official_names_subfolders_and_genders(tmp_path):
    arrays = fake_smpl_arrays()
    root = tmp_path / "models"
    models = root / "smpl" / "models"  # the layout of the official download
    write_fake_pkl(models / "basicmodel_m_lbs_10_207_0_v1.0.0.pkl", arrays)
    write_fake_pkl(models / "basicModel_f_lbs_10_207_0_v1.0.0.pkl", arrays)
    write_fake_npz(root / "smpl" / "smpl_neutral.npz", arrays)  # case-insensitive
    male = load_smpl(root, gender="male")
    assert male.name == "smpl-male" and male.meta["smpl_version"] == "1.0.0"
    assert Path(male.meta["source"]).name == "basicmodel_m_lbs_10_207_0_v1.0.0.pkl"
    assert load_smpl(root, gender="f").name == "smpl-female"
    neutral = load_smpl(root)
    assert neutral.name == "smpl-neutral" and neutral.meta["smpl_version"] == "unknown"
    # preference: SMPL_NEUTRAL.pkl before the basicmodel names, in the same folder
    write_fake_pkl(root / "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl", arrays)
    assert load_smpl(root).meta["smpl_version"] == "1.1.0"
    write_fake_npz(root / "SMPL_NEUTRAL.npz", arrays)
    write_fake_pkl(root / "SMPL_NEUTRAL.pkl", arrays)
    assert Path(find_smpl(root)).name == "SMPL_NEUTRAL.pkl"
    # a file: its official name gives the gender; a contradicting gender is an error
    female_file = models / "basicModel_f_lbs_10_207_0_v1.0.0.pkl"
    assert load_smpl(female_file).name == "smpl-female"
    with pytest.raises(ValueError, match="gender"):
        load_smpl(female_file, gender="male")
    other = write_fake_npz(tmp_path / "my_body.npz", arrays)
    assert load_smpl(other).name == "smpl-neutral"
    assert load_smpl(other, gender="male").name == "smpl-male"
    with pytest.raises(ValueError, match="unknown SMPL gender"):
        load_smpl(root, gender="child")


# ---------------------------------------------------------------------- errors
def test_missing_file_message(tmp_path, monkeypatch):
    env = tmp_path / "env-folder"
    env.mkdir()
    monkeypatch.setenv(SMPL_ENV_VAR, str(env))
    with pytest.raises(FileNotFoundError) as err:
        load_smpl(gender="male")
    msg = str(err.value)
    for name in SMPL_FILE_NAMES["male"]:
        assert name in msg
    assert str(env) in msg and str(smpl_cache_dir()) in msg
    assert SMPL_URL in msg and SMPL_ENV_VAR in msg and "licence" in msg
    missing = tmp_path / "nowhere" / "SMPL_NEUTRAL.pkl"
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        load_smpl(missing)
    assert str(missing) in str(err.value) and SMPL_URL in str(err.value)


@pytest.mark.parametrize("name", ["SMPL_NEUTRAL.pkl", "SMPL_NEUTRAL.npz"])
def test_corrupt_file_message(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x80\x02this is not an SMPL model" * 3)
    with pytest.raises(SMPLFileError) as err:
        load_smpl(tmp_path)
    msg = str(err.value)
    assert str(path) in msg and SMPL_URL in msg and "SMPL_NEUTRAL.pkl" in msg


def test_missing_key_and_bad_shape_messages(tmp_path):
    arrays = fake_smpl_arrays()
    no_posedirs = {k: v for k, v in arrays.items() if k != "posedirs"}
    path = write_fake_npz(tmp_path / "a" / "SMPL_NEUTRAL.npz", no_posedirs)
    with pytest.raises(SMPLFileError, match="posedirs") as err:
        load_smpl(path)
    assert str(path) in str(err.value)
    bad = dict(arrays, weights=arrays["weights"].T)
    path = write_fake_npz(tmp_path / "b" / "SMPL_NEUTRAL.npz", bad)
    with pytest.raises(SMPLFileError, match=r"'weights' has shape \(24, 50\)"):
        load_smpl(path)
    kintree = arrays["kintree_table"].copy()
    kintree[0, 5] = 1
    path = write_fake_npz(tmp_path / "c" / "SMPL_NEUTRAL.npz", dict(arrays, kintree_table=kintree))
    with pytest.raises(SMPLFileError, match="kintree_table"):
        load_smpl(path)
    path = write_fake_npz(tmp_path / "d" / "SMPL_NEUTRAL.npz", dict(arrays, bs_type="lrotmax"))
    with pytest.raises(SMPLFileError, match="bs_type"):
        load_smpl(path)


# ---------------------------------------------------------------------- keypoints, symmetry
def test_coco17_on_smpl_topology():
    arrays = fake_smpl_arrays(num_vertices=6890, num_betas=2, seed=1)
    data = smpl_to_body_data(arrays, num_betas=None)
    coco = data.keypoint_regressors["coco17"]
    assert coco.shape == (17, J + 6890)
    assert np.all(coco.sum(1) == 1)
    for row, name in enumerate(COCO17_NAMES):
        kind, index = COCO17_FROM_SMPL[name]
        assert coco[row, index + (J if kind == "vertex" else 0)] == 1, name
    assert COCO17_FROM_SMPL["nose"] == ("vertex", 332)
    assert COCO17_FROM_SMPL["left_hip"] == ("joint", 1)


def test_h36m_regressor(tmp_path):
    arrays = fake_smpl_arrays()
    reg = np.random.default_rng(2).random((17, 50))
    np.save(tmp_path / "J_regressor_h36m.npy", reg)
    npz = write_fake_npz(tmp_path / "SMPL_NEUTRAL.npz", arrays)
    data = load_smpl(npz, j_regressor_h36m=tmp_path / "J_regressor_h36m.npy")
    h36m = data.keypoint_regressors["h36m17"]
    np.testing.assert_array_equal(h36m[:, J:], reg)
    assert not h36m[:, :J].any()
    np.testing.assert_array_equal(data.keypoint_regressors["lsp14"][:, J:], reg[list(H36M_TO_J14)])
    model = BodyModel(data, dtype=torch.float64)
    out = model()
    torch.testing.assert_close(
        model.keypoints(out, "h36m17")[0], torch.as_tensor(reg) @ out.vertices[0]
    )
    np.save(tmp_path / "bad.npy", reg[:, :40])
    with pytest.raises(ValueError, match=r"\(17, 50\)"):
        load_smpl(npz, j_regressor_h36m=tmp_path / "bad.npy")


def test_vertex_flip_for_symmetric_template():
    arrays = fake_smpl_arrays(num_vertices=40)
    half = np.abs(arrays["v_template"][:20]) + [0.01, 0, 0]  # x > 0
    arrays["v_template"] = np.concatenate([half, half * [-1, 1, 1]])
    flip = smpl_to_body_data(arrays).vertex_flip
    np.testing.assert_array_equal(flip, np.r_[np.arange(20, 40), np.arange(20)])
    arrays["v_template"][3, 0] += 0.002  # 2 mm off: no longer symmetric within 1 mm
    assert smpl_to_body_data(arrays).vertex_flip is None


def test_save_and_load_round_trip(tmp_path):
    data = load_smpl(write_fake_npz(tmp_path / "SMPL_NEUTRAL.npz", fake_smpl_arrays()))
    data.save(tmp_path / "converted.npz", dtype=np.float64)
    back = BodyModelData.load(tmp_path / "converted.npz")
    assert back.meta == data.meta and back.name == data.name
    np.testing.assert_array_equal(back.posedirs, data.posedirs)
    np.testing.assert_array_equal(back.keypoint_regressors["lsp14"], data.keypoint_regressors["lsp14"])


# ---------------------------------------------------------------------- the real model
@pytest.mark.smpl
def test_real_smpl_neutral(monkeypatch):
    monkeypatch.undo()  # use the user's real search places, not the isolated ones
    try:
        path = find_smpl(gender="neutral")
    except FileNotFoundError:
        pytest.skip(
            f"SMPL neutral model not found (licence forbids shipping it): download it from "
            f"{SMPL_URL} and set {SMPL_ENV_VAR} or copy it to {smpl_cache_dir()}"
        )
    data = load_smpl(path)
    assert data.num_vertices == 6890 and data.num_joints == 24 and data.num_betas == 10
    assert data.faces.shape == (13776, 3) and data.posedirs.shape == (207, 6890, 3)
    np.testing.assert_allclose(data.lbs_weights.sum(1), 1.0, atol=1e-6)
    j = data.joint_template
    y = j[:, 1]
    # T-pose, y up: ankles < knees < hips < pelvis < spine < neck < head
    assert y[7] < y[4] < y[1] < y[0] < y[3] < y[6] < y[9] < y[12] < y[15]
    assert y[8] < y[5] < y[2] < y[0]
    for left, right in ((1, 2), (4, 5), (7, 8), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23)):
        assert j[left, 0] > 0.02 and j[right, 0] < -0.02, (left, right)  # left is +x
    assert abs(j[20, 0]) > 0.5 and abs(j[20, 1] - j[16, 1]) < 0.15  # arms out sideways
    height = np.ptp(data.v_template[:, 1])
    assert 1.4 < height < 2.1
    model = BodyModel(data, dtype=torch.float64)
    out = model()
    coco = model.keypoints(out, "coco17")[0].numpy()
    assert coco[0, 2] > j[15, 2]  # the nose is in front of the head joint (facing +z)
    lsp = model.keypoints(out, "lsp14")[0].numpy()
    assert lsp[13, 1] > j[15, 1]  # head top above the head joint
