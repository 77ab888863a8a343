"""BlazePose GHUM model files: where they come from, the user cache, fetching, loading.

The ``.tflite`` files (Apache-2.0, Google MediaPipe) are taken **by package name** from two
pinned archives, each checked by sha256:

- the PyPI wheel ``mediapipe==0.10.14`` (cp311 manylinux2014 x86_64 build, fetched with
  ``pip download --no-deps``; mediapipe itself is never installed): ``pose_detection.tflite``
  and ``pose_landmark_full.tflite``;
- the npm tarball ``@mediapipe/pose@0.5.1675469404`` (``npm pack``):
  ``pose_landmark_lite.tflite`` and ``pose_landmark_heavy.tflite``.

``python -m hmrkit.blazepose fetch`` (run by ``make venv``) downloads them into the cache
folder, checks every file, and converts each once into a torch file (``<name>.pt``, see
:func:`hmrkit.blazepose.graph.save_graph`) recorded with its sha256 in ``manifest.json``. It is
idempotent: present, valid files are neither downloaded nor converted again; corrupt ones are.
Nothing is downloaded at run time: :func:`load_model` reads the converted file and, when it is
absent or corrupt, raises a one-line :class:`BlazePoseModelError` naming the fetch command.

The cache folder is, in order: the ``directory`` argument, ``$HMRKIT_BLAZEPOSE_DIR``,
``$XDG_CACHE_HOME/hmrkit/blazepose`` (default ``~/.cache/hmrkit/blazepose``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ARCHIVES",
    "BLAZEPOSE_ENV_VAR",
    "FETCH_COMMAND",
    "LANDMARK_VARIANTS",
    "MODEL_FILES",
    "Archive",
    "BlazePoseModelError",
    "ModelFile",
    "blazepose_dir",
    "fetch",
    "load_model",
    "model_path",
    "sha256_file",
]

BLAZEPOSE_ENV_VAR = "HMRKIT_BLAZEPOSE_DIR"
"""Environment variable naming the folder of the BlazePose model files."""
FETCH_COMMAND = "python -m hmrkit.blazepose fetch"
LANDMARK_VARIANTS = ("lite", "full", "heavy")
LICENSE = "Apache-2.0"


@dataclass(frozen=True)
class Archive:
    """A pinned package archive that holds model files."""

    registry: str  # "pypi" or "npm"
    package: str
    version: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class ModelFile:
    """A ``.tflite`` file: the archive holding it, its path inside, its sha256."""

    archive: str
    member: str
    sha256: str


ARCHIVES: dict[str, Archive] = {
    "pypi": Archive(
        "pypi", "mediapipe", "0.10.14",
        "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
    ),
    "npm": Archive(
        "npm", "@mediapipe/pose", "0.5.1675469404", "mediapipe-pose-0.5.1675469404.tgz",
        "8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84",
    ),
}

MODEL_FILES: dict[str, ModelFile] = {
    "pose_detection": ModelFile(
        "pypi", "mediapipe/modules/pose_detection/pose_detection.tflite",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    ),
    "pose_landmark_full": ModelFile(
        "pypi", "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    ),
    "pose_landmark_lite": ModelFile(
        "npm", "package/pose_landmark_lite.tflite",
        "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61",
    ),
    "pose_landmark_heavy": ModelFile(
        "npm", "package/pose_landmark_heavy.tflite",
        "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe",
    ),
}

MANIFEST = "manifest.json"


class BlazePoseModelError(RuntimeError):
    """A BlazePose model file that is absent, corrupt or cannot be fetched (one-line message)."""


# ------------------------------------------------------------------ locations
def blazepose_dir(directory: str | os.PathLike | None = None) -> Path:
    """The model folder: ``directory``, else ``$HMRKIT_BLAZEPOSE_DIR``, else the user cache."""
    if directory is not None:
        return Path(directory).expanduser()
    env = os.environ.get(BLAZEPOSE_ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "hmrkit" / "blazepose"


def _model_name(name: str) -> str:
    if name in LANDMARK_VARIANTS:
        return f"pose_landmark_{name}"
    if name in ("detector", "detection"):
        return "pose_detection"
    return name


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def model_path(name: str, directory: str | os.PathLike | None = None,
               files: dict[str, ModelFile] | None = None) -> Path:
    """Path of the converted model ``name`` (``"lite"``, ``"full"``, ``"heavy"``,
    ``"detector"`` or a file stem), checked against the manifest written by :func:`fetch`.

    Raises :class:`BlazePoseModelError` (one line, naming :data:`FETCH_COMMAND`) when the file
    is absent or its sha256 differs from the manifest's.
    """
    files = MODEL_FILES if files is None else files
    stem = _model_name(name)
    if stem not in files:
        raise ValueError(
            f"unknown BlazePose model {name!r}; use one of {', '.join(LANDMARK_VARIANTS)}, "
            "detector"
        )
    folder = blazepose_dir(directory)
    path = folder / f"{stem}.pt"
    hint = f"fetch it with: {FETCH_COMMAND}" + (
        f" --dir {folder}" if directory is not None else "")
    if not path.is_file():
        raise BlazePoseModelError(f"BlazePose model {path} is missing; {hint}")
    entry = _read_manifest(folder).get(f"{stem}.pt", {})
    if entry.get("sha256") != sha256_file(path):
        raise BlazePoseModelError(
            f"BlazePose model {path} is corrupt (sha256 differs from {folder / MANIFEST}); "
            f"re-{hint}"
        )
    return path


def load_model(name: str, directory: str | os.PathLike | None = None):
    """The converted network ``name`` as a :class:`~hmrkit.blazepose.graph.TFLiteGraph`."""
    from .graph import GraphFileError, load_graph

    path = model_path(name, directory)
    try:
        return load_graph(path)
    except GraphFileError as exc:
        raise BlazePoseModelError(f"{exc}; re-fetch it with: {FETCH_COMMAND}") from None


# ------------------------------------------------------------------ downloading
def download_archive(archive: Archive, dest: Path) -> Path:
    """Download ``archive`` by package name into the folder ``dest`` (pip or npm)."""
    if archive.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", f"{archive.package}=={archive.version}",
               "--no-deps", "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
               "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
               "--disable-pip-version-check", "-q", "-d", str(dest)]
    elif archive.registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise BlazePoseModelError(
                f"npm is not installed, so {archive.package}@{archive.version} (lite and heavy "
                f"models) cannot be fetched; install Node.js/npm, or put {archive.filename} in a "
                f"folder and run: {FETCH_COMMAND} --from FOLDER (or fetch only --variants full)"
            )
        cmd = [npm, "pack", f"{archive.package}@{archive.version}", "--silent"]
    else:
        raise ValueError(f"unknown registry {archive.registry!r}")
    result = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    path = dest / archive.filename
    if result.returncode != 0 or not path.is_file():
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BlazePoseModelError(
            f"could not download {archive.package}=={archive.version} from {archive.registry}: "
            f"{detail[-1] if detail else 'no file ' + archive.filename}"
        )
    return path


def _extract(archive_path: Path, member: str) -> bytes:
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as zf:
            return zf.read(member)
    with tarfile.open(archive_path) as tf:
        f = tf.extractfile(member)
        if f is None:
            raise KeyError(member)
        return f.read()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    from hmrkit.io import _atomic

    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def _converted_ok(pt: Path, source_sha: str, manifest: dict) -> bool:
    from .graph import GRAPH_FORMAT_VERSION

    entry = manifest.get(pt.name)
    return (pt.is_file() and entry is not None and entry.get("source_sha256") == source_sha
            and entry.get("format_version") == GRAPH_FORMAT_VERSION
            and entry.get("sha256") == sha256_file(pt))


def fetch(directory: str | os.PathLike | None = None, variants=LANDMARK_VARIANTS,
          local: str | os.PathLike | None = None, *, archives: dict[str, Archive] | None = None,
          files: dict[str, ModelFile] | None = None,
          downloader: Callable[[Archive, Path], Path] = download_archive,
          log: Callable[[str], None] = print) -> dict[str, Path]:
    """Fetch, check and convert the detector and the landmark ``variants`` (idempotent).

    ``local``: a folder searched for the archive files before downloading (offline set-up).
    ``archives``/``files``/``downloader`` replace the pinned sources (tests). Returns
    ``{model name: converted file}``. Writes are atomic; a file whose sha256 is wrong is
    fetched again; an archive whose sha256 is wrong is an error.
    """
    from .graph import GRAPH_FORMAT_VERSION, convert_tflite, save_graph

    archives = ARCHIVES if archives is None else archives
    files = MODEL_FILES if files is None else files
    folder = blazepose_dir(directory)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = ["pose_detection"] + [_model_name(v) for v in variants]
    for stem in wanted:
        if stem not in files:
            raise ValueError(f"unknown BlazePose model {stem!r}")
    missing = [s for s in wanted if not (folder / f"{s}.tflite").is_file()
               or sha256_file(folder / f"{s}.tflite") != files[s].sha256]
    for stem in missing:
        if (folder / f"{stem}.tflite").is_file():
            log(f"{folder / (stem + '.tflite')}: checksum mismatch, fetching it again")
    needed = sorted({files[s].archive for s in missing})
    if needed:
        with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
            for key in needed:
                archive = archives[key]
                path = Path(local) / archive.filename if local is not None else None
                if path is None or not path.is_file():
                    log(f"downloading {archive.package}=={archive.version} ({archive.registry})")
                    path = downloader(archive, Path(tmp))
                got = sha256_file(path)
                if got != archive.sha256:
                    raise BlazePoseModelError(
                        f"{path}: sha256 {got} differs from the pinned {archive.sha256} of "
                        f"{archive.package}=={archive.version}; not using it"
                    )
                for stem in (s for s in missing if files[s].archive == key):
                    data = _extract(path, files[stem].member)
                    got = hashlib.sha256(data).hexdigest()
                    if got != files[stem].sha256:
                        raise BlazePoseModelError(
                            f"{archive.filename}:{files[stem].member}: sha256 {got} differs "
                            f"from the pinned {files[stem].sha256}"
                        )
                    _atomic_write_bytes(folder / f"{stem}.tflite", data)
                    log(f"wrote {folder / (stem + '.tflite')}")
    manifest = _read_manifest(folder)
    out = {}
    for stem in wanted:
        pt = folder / f"{stem}.pt"
        if not _converted_ok(pt, files[stem].sha256, manifest):
            graph = convert_tflite(folder / f"{stem}.tflite")
            save_graph(pt, graph, extra={"license": LICENSE, "source": files[stem].member})
            manifest[pt.name] = {
                "sha256": sha256_file(pt), "source": f"{stem}.tflite",
                "source_sha256": files[stem].sha256, "format_version": GRAPH_FORMAT_VERSION,
                "archive": f"{archives[files[stem].archive].package}=="
                           f"{archives[files[stem].archive].version}",
                "license": LICENSE,
            }
            from hmrkit.io import atomic_write_text

            atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
            log(f"converted {stem}.tflite -> {pt}")
        out[stem] = pt
    return out
