"""Load the official SMPL body model files into :class:`~hmrkit.body.model.BodyModelData`.

SMPL cannot ship with hmrkit: its licence forbids redistribution.  Users register at
https://smpl.is.tue.mpg.de, download "SMPL for Python" (v1.0.0 or v1.1.0; the v1.0.0 neutral
model comes with SMPLify, https://smplify.is.tue.mpg.de) and point hmrkit at the files:

>>> data = load_smpl("~/models/smpl")                # a folder or a file
>>> data = load_smpl(gender="female")                # $HMRKIT_SMPL_DIR, then the user cache
>>> model = BodyModel(data)

Files are looked for in this order (the first place given wins, see :func:`find_smpl`):

1. the ``path`` argument (a file, or a folder holding an official file name);
2. the folder (or file) named by the environment variable ``HMRKIT_SMPL_DIR``;
3. the user cache folder ``$XDG_CACHE_HOME/hmrkit/smpl`` (default ``~/.cache/hmrkit/smpl``).

In a folder the official names of the requested gender are accepted, case-insensitively, in
the folder itself or in its ``smpl/``, ``smpl/models/`` or ``models/`` subfolder (see
:data:`SMPL_FILE_NAMES`).

Both the ``.pkl`` files (Python-2 pickles holding ``chumpy`` objects and a ``scipy.sparse``
joint regressor) and ``.npz`` files with the same keys are read.  ``chumpy`` is never
imported: a restricted unpickler replaces every ``chumpy.*`` class by a stub that rebuilds
the array from the pickled state, and refuses any global that an SMPL file does not contain
(so loading a file cannot run arbitrary code).

The SMPL frame is hmrkit's body frame (metres, y up, facing +z), so no axis change happens.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import copyreg
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from hmrkit.body.keypoints import (
    COCO17_NAMES,
    SMPL24_NAMES,
    SMPL24_PARENTS,
    lsp14_regressor,
    regressor,
)
from hmrkit.body.model import BodyModelData

__all__ = [
    "COCO17_FROM_SMPL",
    "H36M_TO_J14",
    "SMPL_ENV_VAR",
    "SMPL_FILE_NAMES",
    "SMPL_NUM_FACES",
    "SMPL_NUM_BETAS",
    "SMPL_NUM_VERTICES",
    "SMPL_URL",
    "SMPLFileError",
    "find_smpl",
    "load_smpl",
    "read_smpl_file",
    "smpl_cache_dir",
    "smpl_file_names",
    "smpl_to_body_data",
]

SMPL_URL = "https://smpl.is.tue.mpg.de"
"""Where users register and download SMPL (hmrkit cannot redistribute it)."""
SMPL_ENV_VAR = "HMRKIT_SMPL_DIR"
"""Environment variable naming the folder (or file) that holds the SMPL model files."""
SMPL_NUM_VERTICES = 6890
SMPL_NUM_FACES = 13776
SMPL_NUM_JOINTS = 24
SMPL_NUM_BETAS = 10
"""Shape coefficients SMPL is used with by default (the SPIN lineage and 3DPW's labels)."""

SMPL_FILE_NAMES: dict[str, tuple[str, ...]] = {
    "neutral": (
        "SMPL_NEUTRAL.pkl",
        "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl",
        "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl",
        "SMPL_NEUTRAL.npz",
        "basicmodel_neutral_lbs_10_207_0_v1.1.0.npz",
        "basicModel_neutral_lbs_10_207_0_v1.0.0.npz",
    ),
    "male": (
        "SMPL_MALE.pkl",
        "basicmodel_m_lbs_10_207_0_v1.1.0.pkl",
        "basicmodel_m_lbs_10_207_0_v1.0.0.pkl",
        "SMPL_MALE.npz",
        "basicmodel_m_lbs_10_207_0_v1.1.0.npz",
        "basicmodel_m_lbs_10_207_0_v1.0.0.npz",
    ),
    "female": (
        "SMPL_FEMALE.pkl",
        "basicmodel_f_lbs_10_207_0_v1.1.0.pkl",
        "basicModel_f_lbs_10_207_0_v1.0.0.pkl",
        "SMPL_FEMALE.npz",
        "basicmodel_f_lbs_10_207_0_v1.1.0.npz",
        "basicModel_f_lbs_10_207_0_v1.0.0.npz",
    ),
}
"""Accepted file names per gender, in order of preference (matched case-insensitively).

``SMPL_<GENDER>.pkl`` is the name used by smplx-style folders; the ``basicmodel_*`` names are
those of the official "SMPL for Python" v1.0.0 / v1.1.0 downloads (v1.0.0 neutral: SMPLify).
"""

_SUBFOLDERS = (".", "smpl", "smpl/models", "models")

H36M_TO_J14 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
"""Rows of SPIN's ``J_regressor_h36m.npy`` giving the 14 evaluation joints in the LSP order of
:data:`hmrkit.body.keypoints.LSP14_NAMES` (SPIN's ``constants.H36M_TO_J14``)."""

COCO17_FROM_SMPL: dict[str, tuple[str, int]] = {
    "nose": ("vertex", 332),
    "left_eye": ("vertex", 2800),
    "right_eye": ("vertex", 6260),
    "left_ear": ("vertex", 583),
    "right_ear": ("vertex", 4071),
    "left_shoulder": ("joint", 16),
    "right_shoulder": ("joint", 17),
    "left_elbow": ("joint", 18),
    "right_elbow": ("joint", 19),
    "left_wrist": ("joint", 20),
    "right_wrist": ("joint", 21),
    "left_hip": ("joint", 1),
    "right_hip": ("joint", 2),
    "left_knee": ("joint", 4),
    "right_knee": ("joint", 5),
    "left_ankle": ("joint", 7),
    "right_ankle": ("joint", 8),
}
"""COCO-17 on the SMPL mesh: face points from the commonly used SMPL vertex ids, body points
from SMPL joints.  SMPL's hip joints sit deeper and lower in the pelvis than COCO's
annotated hips (and SMPL's shoulders are joint centres, not the surface points annotators
click), so this is an approximation; a learned COCO vertex regressor would be closer."""

_GENDER_ALIASES = {
    "neutral": "neutral", "n": "neutral",
    "male": "male", "m": "male",
    "female": "female", "f": "female",
}
_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class SMPLFileError(ValueError):
    """An SMPL file that cannot be read or does not hold a valid SMPL model."""


# ------------------------------------------------------------------ locating files
def smpl_cache_dir() -> Path:
    """The user cache folder for SMPL: ``$XDG_CACHE_HOME/hmrkit/smpl`` or ``~/.cache/...``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "hmrkit" / "smpl"


def _normalize_gender(gender: str) -> str:
    key = str(gender).strip().lower()
    if key not in _GENDER_ALIASES:
        raise ValueError(f"unknown SMPL gender {gender!r}; use 'neutral', 'male' or 'female'")
    return _GENDER_ALIASES[key]


def smpl_file_names(gender: str = "neutral") -> tuple[str, ...]:
    """The file names accepted for ``gender``, in order of preference."""
    return SMPL_FILE_NAMES[_normalize_gender(gender)]


def _gender_from_name(name: str) -> str | None:
    """The gender an official (or smplx-style) file name implies, None if it implies none."""
    low = name.lower()
    for gender, names in SMPL_FILE_NAMES.items():
        if low in (n.lower() for n in names):
            return gender
    stem = Path(low).stem
    m = re.search(r"(?:^|[^a-z])(neutral|female|male)(?:[^a-z]|$)", stem) or re.search(
        r"_(f|m|neutral)_lbs", stem
    )
    return _GENDER_ALIASES[m.group(1)] if m else None


def _version_from_name(name: str) -> str:
    m = re.search(r"v(1\.[01]\.0)", name.lower())
    return m.group(1) if m else "unknown"


def _search_places(path: str | os.PathLike | None) -> list[tuple[str, Path | None]]:
    """(description, location) of each place searched, in order; None when unset."""
    if path is not None:
        return [("argument 'path'", Path(path).expanduser())]
    env = os.environ.get(SMPL_ENV_VAR, "")
    return [
        (f"${SMPL_ENV_VAR}", Path(env).expanduser() if env else None),
        ("user cache folder", smpl_cache_dir()),
    ]


def _find_in(place: Path, gender: str, explicit: bool) -> Path | None:
    if place.is_file():
        # A file given explicitly is taken as is (load_smpl checks its gender); a file in
        # $HMRKIT_SMPL_DIR only when its name does not say it is another gender.
        return place if explicit or _gender_from_name(place.name) in (None, gender) else None
    if not place.is_dir():
        return None
    for sub in _SUBFOLDERS:
        folder = place / sub
        if not folder.is_dir():
            continue
        try:
            entries = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
        except OSError:
            continue
        for name in SMPL_FILE_NAMES[gender]:
            if name.lower() in entries:
                return entries[name.lower()]
    return None


def _describe_places(places: list[tuple[str, Path | None]]) -> str:
    lines = []
    for what, where in places:
        if where is None:
            lines.append(f"  - {what}: not set")
        elif where.is_file():
            lines.append(f"  - {what}: {where} (file)")
        elif where.is_dir():
            subs = ", ".join(s + "/" for s in _SUBFOLDERS[1:])
            lines.append(f"  - {what}: {where} (folder, and its subfolders {subs})")
        else:
            lines.append(f"  - {what}: {where} (does not exist)")
    return "\n".join(lines)


def _help_text(gender: str, places: list[tuple[str, Path | None]]) -> str:
    names = ", ".join(SMPL_FILE_NAMES[gender])
    return (
        f"Searched, in order:\n{_describe_places(places)}\n"
        f"Accepted file names for gender '{gender}' (case-insensitive): {names}.\n"
        f"hmrkit cannot ship SMPL: its licence forbids redistribution.  Register and download "
        f"'SMPL for Python' (v1.0.0 or v1.1.0) at {SMPL_URL} (the v1.0.0 neutral model comes "
        f"with SMPLify), then pass the file or its folder to load_smpl(path=...), or set "
        f"{SMPL_ENV_VAR}=/folder/with/the/files, or copy the files into {smpl_cache_dir()}."
    )


def find_smpl(path: str | os.PathLike | None = None, gender: str = "neutral") -> Path:
    """Locate the SMPL file of ``gender``; raise ``FileNotFoundError`` with help when absent.

    ``path`` (a file or a folder) is authoritative when given: nothing else is searched, so a
    wrong path is an error rather than a silent fallback to another model.  Otherwise
    ``$HMRKIT_SMPL_DIR`` is searched, then :func:`smpl_cache_dir`.
    """
    gender = _normalize_gender(gender)
    places = _search_places(path)
    for _, where in places:
        if where is not None:
            found = _find_in(where, gender, explicit=path is not None)
            if found is not None:
                return found
    raise FileNotFoundError(
        f"SMPL model file (gender '{gender}') not found.\n" + _help_text(gender, places)
    )


# ------------------------------------------------------------------ unpickling without chumpy
class _ChumpyStub:
    """Stands in for any ``chumpy`` class while unpickling; keeps the pickled state."""

    _chumpy_name = "chumpy.?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__["_hmrkit_args"] = args
        obj.__dict__["_hmrkit_state"] = {}
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        self.__dict__["_hmrkit_state"] = dict(state) if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"<stub of {self._chumpy_name} with state {sorted(self._hmrkit_state)}>"


class _SparseStub:
    """Stands in for ``scipy.sparse`` csc/csr/coo classes: rebuilt from the pickled fields
    whatever the scipy version that wrote them (``_shape`` or ``shape``, ``row``/``col`` or
    ``coords``)."""

    _sparse_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__["_hmrkit_state"] = {}
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        self.__dict__["_hmrkit_state"] = dict(state) if isinstance(state, dict) else {}


_STUB_CACHE: dict[str, type] = {}
_SPARSE_NAMES = ("csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array")
_BUILTINS_OK = {
    "object", "set", "frozenset", "slice", "complex", "bytearray", "bytes", "list", "dict",
    "tuple", "int", "float", "str", "bool", "range",
}
_NUMPY_FUNCS_OK = {"_reconstruct", "scalar", "_frombuffer"}


def _stub_class(base: type, full_name: str) -> type:
    key = f"{base.__name__}:{full_name}"
    if key not in _STUB_CACHE:
        attr = "_chumpy_name" if base is _ChumpyStub else "_sparse_name"
        _STUB_CACHE[key] = type(full_name.rsplit(".", 1)[-1], (base,), {attr: full_name})
    return _STUB_CACHE[key]


def _numpy_global(module: str, name: str) -> Any:
    import importlib

    if module.startswith("numpy.core") and hasattr(np, "_core"):
        module = "numpy._core" + module[len("numpy.core"):]
    obj = getattr(importlib.import_module(module), name)
    if name in _NUMPY_FUNCS_OK and callable(obj):
        return obj
    if isinstance(obj, type) and (
        obj in (np.ndarray, np.matrix) or issubclass(obj, (np.dtype, np.generic))
    ):
        return obj
    raise pickle.UnpicklingError(f"refusing to load numpy global '{module}.{name}'")


class _SMPLUnpickler(pickle.Unpickler):
    """Unpickler for SMPL files: chumpy stubbed, only data-holding globals allowed."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if module == "chumpy" or module.startswith("chumpy."):
            return _stub_class(_ChumpyStub, f"{module}.{name}")
        if module.startswith("scipy.sparse"):
            if name in _SPARSE_NAMES:
                return _stub_class(_SparseStub, name)
            raise pickle.UnpicklingError(
                f"unsupported sparse class '{module}.{name}' (hmrkit reads {_SPARSE_NAMES})"
            )
        if module == "numpy" or module.startswith("numpy."):
            try:
                return _numpy_global(module, name)
            except (ImportError, AttributeError) as err:
                raise pickle.UnpicklingError(f"unknown numpy global '{module}.{name}'") from err
        if module == "builtins" and name in _BUILTINS_OK:
            return getattr(__import__("builtins"), name)
        if module == "copyreg" and name == "_reconstructor":
            return copyreg._reconstructor
        if module == "_codecs" and name == "encode":
            return codecs.encode
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(
            f"refusing to load global '{module}.{name}': an SMPL file holds only numpy, "
            "scipy.sparse and chumpy data"
        )


# ------------------------------------------------------------------ converting to numpy
_CH_BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "true_divide": np.divide, "power": np.power, "maximum": np.maximum, "minimum": np.minimum,
}
_CH_UNARY = {
    "negative": np.negative, "absolute": np.absolute, "abs": np.absolute, "sqrt": np.sqrt,
    "exp": np.exp, "log": np.log, "square": np.square,
}


def _state_get(state: dict, key: str, cls_name: str, where: str) -> Any:
    if key not in state:
        raise ValueError(
            f"'{where}' holds a {cls_name} whose pickled state has no '{key}' "
            f"(state keys: {sorted(state)})"
        )
    return state[key]


def _chumpy_to_numpy(stub: _ChumpyStub, where: str) -> np.ndarray:
    cls_name = stub._chumpy_name
    short = cls_name.rsplit(".", 1)[-1]
    state = stub._hmrkit_state

    def arr(key: str) -> np.ndarray:
        return np.asarray(_to_numpy(_state_get(state, key, cls_name, where), where))

    if short == "Ch":
        return arr("x")
    if short in _CH_BINARY:
        return np.asarray(_CH_BINARY[short](arr("a"), arr("b")))
    if short in _CH_UNARY:
        return np.asarray(_CH_UNARY[short](arr("x")))
    if short == "Reshape":
        return arr("a").reshape(tuple(np.atleast_1d(arr("newshape"))))
    if short == "transpose":
        axes = state.get("axes")
        return np.transpose(arr("a"), None if axes is None else tuple(axes))
    if short == "ravel":
        return arr("a").ravel()
    if short == "Select":
        out = arr("a").ravel()[np.asarray(arr("idxs"), dtype=np.int64)]
        shape = state.get("preferred_shape")
        return out if shape is None else out.reshape(tuple(shape))
    raise ValueError(
        f"'{where}' holds a chumpy object of class {cls_name} that hmrkit cannot convert "
        f"without chumpy (pickled state keys: {sorted(state)}); convert the file to .npz "
        "with plain numpy arrays"
    )


def _sparse_to_numpy(stub: _SparseStub, where: str) -> np.ndarray:
    import scipy.sparse as sp

    state, name = stub._hmrkit_state, stub._sparse_name
    shape = state.get("_shape", state.get("shape"))
    if shape is None:
        raise ValueError(f"'{where}' holds a sparse {name} without a '_shape' in its state")
    shape = tuple(int(s) for s in shape)
    try:
        if name.startswith(("csc", "csr")):
            cls = sp.csc_matrix if name.startswith("csc") else sp.csr_matrix
            fields = (state["data"], state["indices"], state["indptr"])
            return np.asarray(cls(tuple(np.asarray(f) for f in fields), shape=shape).toarray())
        if "coords" in state:
            row, col = state["coords"]
        else:
            row, col = state["row"], state["col"]
        mat = sp.coo_matrix((np.asarray(state["data"]), (np.asarray(row), np.asarray(col))),
                            shape=shape)
        return np.asarray(mat.toarray())
    except KeyError as err:
        raise ValueError(
            f"'{where}' holds a sparse {name} whose state lacks {err} "
            f"(state keys: {sorted(state)})"
        ) from err


def _to_numpy(value: Any, where: str) -> Any:
    """Replace chumpy stubs, sparse matrices and np.matrix by plain arrays, recursively."""
    if isinstance(value, _ChumpyStub):
        return _chumpy_to_numpy(value, where)
    if isinstance(value, _SparseStub):
        return _sparse_to_numpy(value, where)
    if isinstance(value, np.matrix):
        return np.asarray(value)
    if isinstance(value, np.ndarray):
        if value.dtype == object and value.ndim == 0:
            return _to_numpy(value.item(), where)
        return value
    if hasattr(value, "toarray") and hasattr(value, "tocsc"):  # scipy.sparse from npz
        return np.asarray(value.toarray())
    if isinstance(value, dict):
        return {k: _to_numpy(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v, f"{where}[{i}]") for i, v in enumerate(value))
    return value


# ------------------------------------------------------------------ reading files
def _read_pkl(path: Path) -> Any:
    with open(path, "rb") as f:
        return _SMPLUnpickler(f, encoding="latin1").load()


def _read_npz_object(path: Path, key: str) -> Any:
    """An object array of an npz, unpickled with the restricted unpickler."""
    from numpy.lib import format as npformat

    with zipfile.ZipFile(path) as zf:
        member = key if key in zf.namelist() else key + ".npy"
        with zf.open(member) as fp:
            version = npformat.read_magic(fp)
            if version == (1, 0):
                npformat.read_array_header_1_0(fp)
            elif version == (2, 0):
                npformat.read_array_header_2_0(fp)
            else:
                raise ValueError(f"unsupported .npy format version {version} for '{key}'")
            return _SMPLUnpickler(fp, encoding="latin1").load()


def _read_npz(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with np.load(path, allow_pickle=False) as f:
        for key in f.files:
            try:
                out[key] = f[key]
            except ValueError:  # object array (e.g. a pickled sparse matrix)
                out[key] = _read_npz_object(path, key)
    return out


def read_smpl_file(path: str | os.PathLike) -> dict[str, Any]:
    """Raw contents of an SMPL ``.pkl`` or ``.npz`` file, values converted to numpy.

    chumpy objects become arrays, sparse matrices dense arrays.  Keys whose values cannot be
    converted are dropped unless the loader needs them; for those an :class:`SMPLFileError`
    (a ``ValueError``) names the file and the key, as it does for unreadable files.  Never
    imports chumpy, and refuses pickled globals other than numpy, scipy.sparse and chumpy
    data (so a malicious file cannot run code).
    """
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise SMPLFileError(f"{path}: cannot open this file ({err})") from err
    is_npz = path.suffix.lower() == ".npz" or (
        path.suffix.lower() not in (".pkl", ".pickle") and head.startswith(b"PK")
    )
    try:
        raw = _read_npz(path) if is_npz else _read_pkl(path)
    except Exception as err:  # any failure to parse means an unreadable file
        kind = ".npz" if is_npz else ".pkl (pickle)"
        raise SMPLFileError(
            f"{path}: cannot read this file as an SMPL {kind} file "
            f"({type(err).__name__}: {err})"
        ) from err
    if not isinstance(raw, dict):
        raise SMPLFileError(f"{path}: expected a dict of SMPL arrays, found {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        key = key.decode("latin1") if isinstance(key, bytes) else str(key)
        try:
            out[key] = _to_numpy(value, key)
        except ValueError as err:
            if key in _REQUIRED:
                raise SMPLFileError(f"{path}: {err}") from err
    return out


# ------------------------------------------------------------------ conversion
def _as_str(value: Any) -> str:
    value = np.asarray(value).item() if isinstance(value, np.ndarray) else value
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _mirror_partners(v_template: np.ndarray, tol: float = 1e-3) -> np.ndarray | None:
    """Mirror partner (x -> -x) of each vertex when the template is symmetric within ``tol``."""
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(v_template).query(v_template * np.array([-1.0, 1.0, 1.0]))
    if dist.max() > tol or not np.array_equal(idx[idx], np.arange(len(idx))):
        return None
    return idx.astype(np.int64)


def _load_h36m_regressor(path: str | os.PathLike, num_vertices: int) -> np.ndarray:
    path = Path(path).expanduser()
    try:
        reg = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the H36M joint regressor ({err})") from err
    if isinstance(reg, np.lib.npyio.NpzFile):
        reg.close()
        raise ValueError(f"{path}: expected SPIN's J_regressor_h36m.npy (an .npy array)")
    if reg.shape != (17, num_vertices):
        raise ValueError(
            f"{path}: H36M joint regressor has shape {reg.shape}, expected (17, {num_vertices})"
        )
    return np.asarray(reg, dtype=np.float64)


def smpl_to_body_data(
    arrays: dict[str, Any],
    gender: str = "neutral",
    num_betas: int | None = SMPL_NUM_BETAS,
    j_regressor_h36m: str | os.PathLike | None = None,
    source: str = "SMPL arrays",
    meta: dict | None = None,
) -> BodyModelData:
    """Convert the raw SMPL arrays (see :func:`read_smpl_file`) to :class:`BodyModelData`.

    - ``shapedirs`` truncated to ``num_betas`` (None: all of the file's coefficients);
    - ``posedirs`` (V, 3, 207) -> (207, V, 3): SMPL's pose feature is ``(R_k - I)`` flattened
      row-major for joints 1..23, concatenated, which is what :func:`hmrkit.body.model.skin`
      computes (``(rotations[:, 1:] - eye).reshape(B, -1)``);
    - ``joint_template = J_regressor @ v_template``,
      ``joint_shapedirs = einsum("jv,vdk->jdk", J_regressor, shapedirs)``;
    - keypoint regressors: ``coco17`` (only for SMPL's 6890-vertex topology, see
      :data:`COCO17_FROM_SMPL`; SMPL's hip joints are not COCO's hips) and ``lsp14``.
      Without ``j_regressor_h36m``, ``lsp14`` is 13 SMPL joints plus the head-top vertex
      (:func:`hmrkit.body.keypoints.lsp14_regressor`).  With SPIN's ``J_regressor_h36m.npy``
      (17, V), an ``h36m17`` set (the regressor's rows, in its order) is added and ``lsp14``
      follows the literature: rows :data:`H36M_TO_J14` of that regressor, as in SPIN's
      3DPW / Human3.6M evaluation;
    - ``vertex_flip`` when the template is left-right symmetric within 1 mm, else None.

    Raises :class:`SMPLFileError` (a ``ValueError``) naming ``source`` and the offending key
    for malformed arrays, and ``ValueError`` for a bad ``num_betas`` or H36M regressor.
    """
    gender = _normalize_gender(gender)
    arrays = {k: _to_numpy(v, k) for k, v in arrays.items()}  # sparse / np.matrix to ndarray
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise SMPLFileError(
            f"{source}: missing key(s) {missing}; an SMPL file has {list(_REQUIRED)} "
            f"(found {sorted(arrays)})"
        )

    def real(key: str, ndim: int) -> np.ndarray:
        value = arrays[key]
        try:
            out = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise SMPLFileError(
                f"{source}: '{key}' is not numeric ({type(value).__name__})"
            ) from err
        if out.ndim != ndim:
            raise SMPLFileError(f"{source}: '{key}' has shape {out.shape}, expected {ndim} dims")
        if not np.all(np.isfinite(out)):
            raise SMPLFileError(f"{source}: '{key}' has non-finite values")
        return out

    def expect(key: str, arr: np.ndarray, shape: tuple) -> None:
        if arr.shape != shape:
            raise SMPLFileError(f"{source}: '{key}' has shape {arr.shape}, expected {shape}")

    v_template = real("v_template", 2)
    V = v_template.shape[0]
    expect("v_template", v_template, (V, 3))
    kintree = np.asarray(arrays["kintree_table"])
    J = SMPL_NUM_JOINTS
    expect("kintree_table", kintree, (2, J))
    if not np.issubdtype(kintree.dtype, np.number):
        raise SMPLFileError(f"{source}: 'kintree_table' is not numeric")
    kintree = kintree.astype(np.float64)  # the root's parent is 2**32 - 1 in the pkl files
    if not np.array_equal(kintree[1], np.arange(J)):
        raise SMPLFileError(f"{source}: 'kintree_table' row 1 must list joints 0..{J - 1}")
    parents = np.where((kintree[0] >= 0) & (kintree[0] < J), kintree[0], -1).astype(np.int64)
    if tuple(parents.tolist()) != SMPL24_PARENTS:
        raise SMPLFileError(
            f"{source}: 'kintree_table' parents {parents.tolist()} differ from SMPL's "
            f"{list(SMPL24_PARENTS)}"
        )
    shapedirs = real("shapedirs", 3)
    K = shapedirs.shape[2]
    expect("shapedirs", shapedirs, (V, 3, K))
    posedirs = real("posedirs", 3)
    expect("posedirs", posedirs, (V, 3, 9 * (J - 1)))
    j_regressor = real("J_regressor", 2)
    expect("J_regressor", j_regressor, (J, V))
    weights = real("weights", 2)
    expect("weights", weights, (V, J))
    faces_raw = np.asarray(arrays["f"])
    if faces_raw.ndim != 2 or faces_raw.shape[1] != 3 or not np.issubdtype(
        faces_raw.dtype, np.number
    ):
        raise SMPLFileError(f"{source}: 'f' has shape {faces_raw.shape}, expected (F, 3)")
    faces = faces_raw.astype(np.int64)
    if not np.array_equal(faces, faces_raw) or (
        faces.size and (faces.min() < 0 or faces.max() >= V)
    ):
        raise SMPLFileError(f"{source}: 'f' must hold vertex indices in [0, {V})")
    for key, expected in (("bs_type", "lrotmin"), ("bs_style", "lbs")):
        if key in arrays and _as_str(arrays[key]) != expected:
            raise SMPLFileError(
                f"{source}: '{key}' is {_as_str(arrays[key])!r}; hmrkit supports SMPL's "
                f"{expected!r} only"
            )
    if num_betas is None:
        num_betas = K
    if not 1 <= int(num_betas) <= K:
        raise ValueError(
            f"{source}: asked for num_betas={num_betas} shape coefficients but the file has "
            f"{K}; use 1 <= num_betas <= {K}"
        )
    num_betas = int(num_betas)
    shapedirs = np.ascontiguousarray(shapedirs[:, :, :num_betas])

    keypoint_regressors: dict[str, np.ndarray] = {}
    if V == SMPL_NUM_VERTICES:
        keypoint_regressors["coco17"] = regressor(
            [COCO17_FROM_SMPL[n] for n in COCO17_NAMES], J, V
        )
    extra_meta: dict[str, Any] = {}
    if j_regressor_h36m is not None:
        h36m = _load_h36m_regressor(j_regressor_h36m, V)
        h36m17 = np.concatenate([np.zeros((17, J)), h36m], axis=1)
        keypoint_regressors["h36m17"] = h36m17
        keypoint_regressors["lsp14"] = h36m17[list(H36M_TO_J14)]
        extra_meta["j_regressor_h36m"] = str(Path(j_regressor_h36m).expanduser())
        extra_meta["lsp14"] = "rows H36M_TO_J14 of the H36M regressor (SPIN evaluation)"
    else:
        keypoint_regressors["lsp14"] = lsp14_regressor(v_template, J)
        extra_meta["lsp14"] = "SMPL joints + head-top vertex"

    data = BodyModelData(
        name=f"smpl-{gender}",
        v_template=v_template,
        shapedirs=shapedirs,
        lbs_weights=weights,
        parents=parents,
        joint_template=j_regressor @ v_template,
        joint_shapedirs=np.einsum("jv,vdk->jdk", j_regressor, shapedirs),
        faces=faces,
        joint_names=SMPL24_NAMES,
        posedirs=np.ascontiguousarray(posedirs.transpose(2, 0, 1)),
        keypoint_regressors=keypoint_regressors,
        vertex_flip=_mirror_partners(v_template),
        meta={
            **(meta or {}),
            "gender": gender,
            "num_betas": num_betas,
            "num_betas_in_file": K,
            **extra_meta,
        },
    )
    data.validate(source)
    return data


# ------------------------------------------------------------------ entry point
def load_smpl(
    path: str | os.PathLike | None = None,
    gender: str | None = None,
    num_betas: int | None = SMPL_NUM_BETAS,
    j_regressor_h36m: str | os.PathLike | None = None,
) -> BodyModelData:
    """Load an official SMPL model (``.pkl`` v1.0.0 / v1.1.0, or ``.npz``) as float64 data.

    Args:
        path: a model file, or a folder holding one of :data:`SMPL_FILE_NAMES`; when None,
            ``$HMRKIT_SMPL_DIR`` and then :func:`smpl_cache_dir` are searched (see
            :func:`find_smpl`).
        gender: ``"neutral"`` (default), ``"male"`` or ``"female"``.  When ``path`` is a file
            with an official name, the gender comes from the name (a contradicting ``gender``
            is an error); a file with any other name is taken as ``gender`` (default neutral).
        num_betas: shape coefficients kept (SMPL v1.0.0 files have 10); None keeps all.
            Asking for more than the file has is an error.
        j_regressor_h36m: optional path to SPIN's ``J_regressor_h36m.npy`` (17, 6890).  When
            given, an ``"h36m17"`` keypoint set is added and ``"lsp14"`` follows the
            literature (rows ``H36M_TO_J14`` of that regressor) instead of SMPL joints plus
            the head-top vertex.

    Returns:
        :class:`BodyModelData` named ``"smpl-<gender>"`` with keypoint sets ``coco17`` and
        ``lsp14`` (and ``h36m17``); ``meta`` records the source file, format, version guess
        and gender.

    Raises:
        FileNotFoundError: no file found.  SMPLFileError (a ValueError): unreadable or
        malformed file.  Both messages name the file or places searched, list the accepted
        file names and say where to get SMPL.  ValueError: ``num_betas`` larger than the
        file's, a bad ``j_regressor_h36m`` or a gender contradicting the file name.
    """
    requested = None if gender is None else _normalize_gender(gender)
    search_gender = requested or "neutral"
    places = _search_places(path)
    explicit_file = path is not None and Path(path).expanduser().is_file()
    if explicit_file:
        file = Path(path).expanduser()
        named = _gender_from_name(file.name)
        if requested is not None and named is not None and named != requested:
            raise ValueError(
                f"{file}: the file name says gender '{named}' but gender='{requested}' was "
                "asked for; pass the matching file or folder"
            )
        gender_out = named or search_gender
    else:
        file = find_smpl(path, search_gender)
        gender_out = search_gender
    try:
        arrays = read_smpl_file(file)
        fmt = "npz" if file.suffix.lower() == ".npz" else "pkl"
        meta = {
            "source": str(file.resolve()),
            "format": fmt,
            "smpl_version": _version_from_name(file.name),
            "loader": "hmrkit.body.smpl",
        }
        return smpl_to_body_data(
            arrays, gender_out, num_betas, j_regressor_h36m, source=str(file), meta=meta
        )
    except SMPLFileError as err:
        raise SMPLFileError(
            f"{err}\nThis does not look like a valid SMPL model file.\n"
            + _help_text(gender_out, places)
        ) from err
