"""Atomic file output: meshes, text, arrays, checkpoints.

A crash never leaves a half-written file in place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def _atomic(path: str | os.PathLike, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def atomic_torch_save(path: str | os.PathLike, obj) -> None:
    """``torch.save`` through a temporary file and a rename (checkpoints)."""
    import torch

    _atomic(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def save_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a triangle mesh as OBJ, PLY or GLB (by extension) with trimesh, atomically."""
    import trimesh

    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("obj", "ply", "glb"):
        raise ValueError(f"{path}: unsupported mesh format '.{kind}' (use .obj, .ply or .glb)")
    mesh = trimesh.Trimesh(np.asarray(vertices), np.asarray(faces), process=False)
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
