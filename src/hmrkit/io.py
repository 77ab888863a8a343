"""Atomic file output: meshes, text, arrays, checkpoints; the frame of mesh files.

A crash never leaves a half-written file in place: every file is written to a temporary
``.<name>.<pid>.<random>.tmp`` next to it and renamed into place. A process killed while
writing leaves that temporary behind; :func:`remove_stale_temporaries` deletes those of
processes that no longer run (``hmrkit train`` does at the start of every run and resume).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}\.tmp$")
"""Names of :func:`_atomic`'s temporaries (without ``pid``: those of hmrkit <= 0.1.0)."""


def _atomic(path: str | os.PathLike, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of interrupted atomic writes in ``folder`` (not recursive):
    files named as :func:`_atomic` names them whose writing process is gone. Returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        match = _TEMPORARY.match(path.name)
        if match is None or not path.is_file():
            continue
        pid = match.group("pid")
        if pid is not None and (int(pid) == os.getpid() or _running(int(pid))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def atomic_torch_save(path: str | os.PathLike, obj) -> None:
    """``torch.save`` through a temporary file and a rename (checkpoints)."""
    import torch

    _atomic(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


CAMERA_FRAME = "camera: x right, y down, z forward (OpenCV), metres"
"""The frame of hmrkit's camera-frame outputs (parameters, joints, vertices in memory)."""

MESH_FRAME = ("y-up view of the camera: x right, y up, z towards the viewer (glTF, OpenGL), "
              "metres; camera-frame (x, y, z) is written (x, -y, -z)")
"""The frame of the mesh files :func:`save_mesh` writes: the camera frame turned 180 degrees
about its x axis (:data:`CAMERA_TO_MESH`), glTF's y-up convention, so that viewers show an
upright person upright, facing the viewer as in the photo."""

CAMERA_TO_MESH = np.diag([1.0, -1.0, -1.0])
"""Camera frame -> :data:`MESH_FRAME` (a rotation: faces keep their orientation)."""


def save_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
              camera_frame: bool = True) -> None:
    """Write a triangle mesh given in the camera frame (:data:`CAMERA_FRAME`) as OBJ, PLY or GLB
    (by extension) in :data:`MESH_FRAME`, with trimesh, atomically. ``camera_frame=False``:
    the vertices are already y up (a world frame) and are written as they are."""
    import trimesh

    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("obj", "ply", "glb"):
        raise ValueError(f"{path}: unsupported mesh format '.{kind}' (use .obj, .ply or .glb)")
    turn = CAMERA_TO_MESH if camera_frame else np.eye(3)
    mesh = trimesh.Trimesh(np.asarray(vertices) @ turn.T, np.asarray(faces),
                           process=False)
    _atomic(path, lambda tmp: mesh.export(tmp, file_type=kind))


def atomic_save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` through a temporary file and a rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    _atomic(path, write)


def save_npz_with_header(path: str | os.PathLike, arrays: dict, header: dict) -> None:
    """Arrays plus a JSON ``header`` (stored as bytes, no pickle) in one atomic ``.npz``."""
    arrays = dict(arrays)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    atomic_save_npz(path, arrays)


def load_npz_with_header(path: str | os.PathLike, kind: str) -> tuple[dict, dict]:
    """Read a file of :func:`save_npz_with_header`: ``(arrays, header)``.

    Errors name the file and ``kind`` (e.g. ``"hmrkit body model"``).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable {kind} file ({err})") from err
    if "header" not in arrays:
        raise ValueError(f"{path}: not an {kind} file (no 'header')")
    return arrays, json.loads(arrays.pop("header").tobytes().decode())
