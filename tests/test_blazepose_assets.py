"""BlazePose model files: fetch (idempotent, checksums, atomic), cache lookup, clear errors."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import numpy as np
import pytest

from hmrkit.blazepose import assets
from hmrkit.blazepose.__main__ import main as blazepose_cli
from hmrkit.blazepose.assets import (
    FETCH_COMMAND,
    Archive,
    BlazePoseModelError,
    ModelFile,
    blazepose_dir,
    fetch,
    load_model,
    model_path,
)

from .tflite_builder import build_model

pytest.importorskip("tflite")


def _tiny_tflite(seed: int) -> bytes:
    w = np.random.default_rng(seed).normal(size=(2, 1, 1, 3)).astype(np.float32)
    return build_model(
        [{"name": "x", "shape": [1, 4, 4, 3]}, {"name": "w", "shape": [2, 1, 1, 3], "data": w},
         {"name": "y", "shape": [1, 4, 4, 2]}],
        [{"op": "CONV_2D", "inputs": [0, 1, -1], "outputs": [2],
          "options": ("Conv2DOptions", {"Padding": 1, "StrideW": 1, "StrideH": 1})}],
        [0], [2])


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_sources(tmp_path):
    """A fake wheel (zip) and a fake npm tarball holding tiny .tflite models, with pinned
    sha256s, and a downloader that copies them and counts its calls."""
    models = {stem: _tiny_tflite(i) for i, stem in enumerate(
        ["pose_detection", "pose_landmark_full", "pose_landmark_lite", "pose_landmark_heavy"])}
    src = tmp_path / "registry"
    src.mkdir()
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/det.tflite", models["pose_detection"])
        zf.writestr("pkg/full.tflite", models["pose_landmark_full"])
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tf:
        for stem, name in [("pose_landmark_lite", "lite"), ("pose_landmark_heavy", "heavy")]:
            info = tarfile.TarInfo(f"package/{name}.tflite")
            info.size = len(models[stem])
            tf.addfile(info, io.BytesIO(models[stem]))
    (src / "fake.whl").write_bytes(wheel.getvalue())
    (src / "fake.tgz").write_bytes(tgz.getvalue())
    archives = {
        "pypi": Archive("pypi", "fakepose", "1.0", "fake.whl", _sha(wheel.getvalue())),
        "npm": Archive("npm", "@fake/pose", "1.0", "fake.tgz", _sha(tgz.getvalue())),
    }
    files = {
        "pose_detection": ModelFile("pypi", "pkg/det.tflite", _sha(models["pose_detection"])),
        "pose_landmark_full": ModelFile("pypi", "pkg/full.tflite",
                                        _sha(models["pose_landmark_full"])),
        "pose_landmark_lite": ModelFile("npm", "package/lite.tflite",
                                        _sha(models["pose_landmark_lite"])),
        "pose_landmark_heavy": ModelFile("npm", "package/heavy.tflite",
                                         _sha(models["pose_landmark_heavy"])),
    }
    calls = []

    def downloader(archive, dest):
        calls.append(archive.registry)
        target = dest / archive.filename
        target.write_bytes((src / archive.filename).read_bytes())
        return target

    return {"archives": archives, "files": files, "downloader": downloader, "calls": calls,
            "models": models, "src": src}


def _fetch(folder, fake, **kw):
    logs = []
    out = fetch(folder, archives=fake["archives"], files=fake["files"],
                downloader=fake["downloader"], log=logs.append, **kw)
    return out, logs


def test_fetch_is_idempotent_and_verifies(tmp_path, fake_sources):
    folder = tmp_path / "cache"
    out, logs = _fetch(folder, fake_sources)
    assert sorted(fake_sources["calls"]) == ["npm", "pypi"]
    assert set(out) == set(fake_sources["files"])
    for stem, data in fake_sources["models"].items():
        assert (folder / f"{stem}.tflite").read_bytes() == data
        assert (folder / f"{stem}.pt").is_file()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    # second run: nothing downloaded, nothing rewritten
    _, logs = _fetch(folder, fake_sources)
    assert len(fake_sources["calls"]) == 2 and logs == []
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes
    # a corrupt .tflite is fetched again (only its archive), and re-converted
    (folder / "pose_landmark_lite.tflite").write_bytes(b"garbage")
    _, logs = _fetch(folder, fake_sources)
    assert fake_sources["calls"][2:] == ["npm"]
    assert any("checksum mismatch" in line for line in logs)
    assert (folder / "pose_landmark_lite.tflite").read_bytes() == \
        fake_sources["models"]["pose_landmark_lite"]
    # a corrupt converted file is converted again without downloading
    (folder / "pose_landmark_full.pt").write_bytes(b"garbage")
    _, logs = _fetch(folder, fake_sources)
    assert len(fake_sources["calls"]) == 3
    assert logs == [f"converted pose_landmark_full.tflite -> {folder / 'pose_landmark_full.pt'}"]
    net = load_model("full", folder)
    assert net.output_names() == ["y"]


def test_fetch_from_a_local_folder_downloads_nothing(tmp_path, fake_sources):
    _fetch(tmp_path / "cache", fake_sources, local=fake_sources["src"], variants=("full",))
    assert fake_sources["calls"] == []
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.pt")) == [
        "pose_detection.pt", "pose_landmark_full.pt"]


def test_archive_with_wrong_checksum_is_refused(tmp_path, fake_sources):
    bad = dict(fake_sources["archives"])
    bad["pypi"] = Archive("pypi", "fakepose", "1.0", "fake.whl", "0" * 64)
    with pytest.raises(BlazePoseModelError, match="differs from the pinned 0000"):
        fetch(tmp_path / "cache", archives=bad, files=fake_sources["files"],
              downloader=fake_sources["downloader"], log=lambda s: None)
    written = sorted(p.name for p in (tmp_path / "cache").glob("*.tflite"))
    assert written == ["pose_landmark_heavy.tflite", "pose_landmark_lite.tflite"]  # npm's only


def test_missing_model_is_a_one_line_error_naming_the_fetch_command(tmp_path):
    with pytest.raises(BlazePoseModelError) as err:
        load_model("full", tmp_path)
    message = str(err.value)
    assert "\n" not in message and FETCH_COMMAND in message and "missing" in message
    assert str(tmp_path / "pose_landmark_full.pt") in message


def test_corrupt_model_is_a_one_line_error(tmp_path, fake_sources):
    folder = tmp_path / "cache"
    _fetch(folder, fake_sources, variants=("full",))
    data = bytearray((folder / "pose_landmark_full.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "pose_landmark_full.pt").write_bytes(bytes(data))
    with pytest.raises(BlazePoseModelError) as err:
        load_model("full", folder)
    message = str(err.value)
    assert "\n" not in message and "corrupt" in message and FETCH_COMMAND in message


def test_unknown_model_name(tmp_path):
    with pytest.raises(ValueError, match="unknown BlazePose model 'medium'"):
        model_path("medium", tmp_path)


def test_cache_folder_lookup_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(assets.BLAZEPOSE_ENV_VAR, raising=False)
    assert blazepose_dir() == tmp_path / "xdg" / "hmrkit" / "blazepose"
    monkeypatch.setenv(assets.BLAZEPOSE_ENV_VAR, str(tmp_path / "env"))
    assert blazepose_dir() == tmp_path / "env"
    assert blazepose_dir(tmp_path / "arg") == tmp_path / "arg"


def test_cli_status_reports_missing_models(tmp_path, capsys):
    assert blazepose_cli(["status", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and all(FETCH_COMMAND in line for line in out)


def test_pinned_sources_are_complete():
    """Every model has an archive; the pinned landmark checksums are the measured ones."""
    assert set(assets.MODEL_FILES) == {"pose_detection", "pose_landmark_lite",
                                       "pose_landmark_full", "pose_landmark_heavy"}
    assert all(f.archive in assets.ARCHIVES for f in assets.MODEL_FILES.values())
    assert assets.MODEL_FILES["pose_landmark_full"].sha256.startswith("e9a5c5cb")
    assert assets.MODEL_FILES["pose_landmark_lite"].sha256.startswith("f17bfbec")
    assert assets.MODEL_FILES["pose_landmark_heavy"].sha256.startswith("59e42d71")
