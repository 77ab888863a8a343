"""``hmrkit predict`` on a tiny untrained HMR: outputs, index, bad inputs, boxes, video."""

from __future__ import annotations

import json
import sys
from functools import partial

import cv2
import numpy as np
import pytest
import torch

from hmrkit.predict import main

W, H = 160, 120
PARAM_SHAPES = {
    "global_orient": (3, 3), "body_pose": (23, 3, 3), "betas": (10,), "transl": (3,),
    "cam_crop": (3,), "box_center": (2,), "box_size": (), "focal": (), "principal_point": (2,),
    "image_size": (2,), "joints3d": (24, 3), "keypoints2d": (24, 2),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small HMR checkpoint (random weights) and its vertex count."""
    from hmrkit.models.methods import HMR

    torch.manual_seed(0)
    from hmrkit.models.heads import IterativeRegressor

    model = HMR(crop_size=64, head=partial(IterativeRegressor, hidden=64))
    path = tmp_path_factory.mktemp("ckpt") / "hmr.ckpt"
    torch.save({"hmrkit": {"method": "hmrkit.models.methods.hmr.HMR"},
                "hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, path)
    return path, model.body.num_vertices


def _image(seed: int = 0) -> np.ndarray:
    """A smooth random BGR picture."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder with one good image and one corrupt ``.jpg``."""
    folder = tmp_path_factory.mktemp("images")
    cv2.imwrite(str(folder / "good.png"), _image())
    (folder / "broken.jpg").write_bytes(np.random.default_rng(1).bytes(500))
    return folder


def _run(checkpoint, out, *args) -> int:
    return main([*map(str, args), "--checkpoint", str(checkpoint[0]), "--out", str(out)])


def test_folder_outputs(checkpoint, images, tmp_path, capsys):
    import trimesh

    out = tmp_path / "out"
    assert _run(checkpoint, out, images) == 0
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "unreadable" in err

    index = json.loads((out / "index.json").read_text())
    status = {e["stem"]: e["status"] for e in index["images"]}
    assert status == {"broken": "unreadable", "good": "ok"}
    assert index["summary"] == {"images": 2, "ok": 1, "unreadable": 1, "no person": 0,
                                "persons": 1}
    assert index["method"] == "hmrkit.models.methods.hmr.HMR"
    assert index["checkpoint"] == str(checkpoint[0])
    files = index["images"][1]["persons"][0]["files"]
    assert set(files) == {"obj", "ply", "glb", "npz", "json"}
    assert all((out / f).is_file() for f in files.values())

    mesh = trimesh.load(out / "good_p0.obj", process=False)
    assert mesh.vertices.shape == (checkpoint[1], 3) and np.isfinite(mesh.vertices).all()
    assert trimesh.load(out / "good_p0.ply", process=False).vertices.shape[0] == checkpoint[1]

    npz = np.load(out / "good_p0.npz")
    record = json.loads((out / "good_p0.json").read_text())
    for key, shape in PARAM_SHAPES.items():
        assert npz[key].shape == shape, key
        assert np.shape(record[key]) == shape, key
    assert str(npz["body_model"]) == record["body_model"]
    assert record["image_size"] == [W, H] and record["principal_point"] == [W / 2, H / 2]
    assert record["focal"] == pytest.approx(np.hypot(W, H))
    assert record["box_size"] == W and record["box_center"] == [W / 2, H / 2]
    # the mesh is in the full-image camera frame: its root joint sits at ``transl``'s depth
    assert np.allclose(np.asarray(record["joints3d"]).mean(0)[2], mesh.vertices.mean(0)[2],
                       atol=0.5)

    # keypoints2d = perspective projection of joints3d with the recorded camera
    joints = np.asarray(record["joints3d"])
    kp = joints[:, :2] / joints[:, 2:] * record["focal"] + np.asarray(record["principal_point"])
    assert np.allclose(record["keypoints2d"], kp, atol=1e-6)
    assert np.allclose(npz["keypoints2d"], kp, atol=1e-3)

    for name in ("good_overlay.png", "good_side.png"):
        picture = cv2.imread(str(out / name))
        assert picture.shape == (H, W, 3), name
    side = cv2.imread(str(out / "good_side.png"))
    assert (side < 250).any()  # the side view shows a body on white


def test_overlay_draws_the_mesh(checkpoint, images, tmp_path):
    out = tmp_path / "out"
    assert _run(checkpoint, out, images / "good.png", "--formats", "obj", "--no-side-view") == 0
    overlay = cv2.imread(str(out / "good_overlay.png")).astype(int)
    original = cv2.imread(str(images / "good.png")).astype(int)
    assert (np.abs(overlay - original).sum(-1) > 30).mean() > 0.01
    assert not (out / "good_side.png").exists() and not (out / "good_p0.ply").exists()


def test_boxes_file(checkpoint, images, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"good.png": [[10, 10, 60, 110], [80, 20, 150, 100]]}))
    out = tmp_path / "two"
    assert _run(checkpoint, out, images / "good.png", "--boxes", boxes) == 0
    entry = json.loads((out / "index.json").read_text())["images"][0]
    assert [p["index"] for p in entry["persons"]] == [0, 1]
    assert (out / "good_p1.obj").is_file()
    record = json.loads((out / "good_p1.json").read_text())
    assert record["box_center"] == [115, 60] and record["box_size"] == pytest.approx(1.2 * 80)

    boxes.write_text(json.dumps({"good.png": []}))
    out = tmp_path / "none"
    assert _run(checkpoint, out, images / "good.png", "--boxes", boxes) == 1
    entry = json.loads((out / "index.json").read_text())["images"][0]
    assert entry["status"] == "no person" and entry["persons"] == []


def test_bad_boxes_file(checkpoint, images, tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"good.png": [[10, 10, 5, 110]]}))
    assert _run(checkpoint, tmp_path / "out", images, "--boxes", boxes) == 2
    assert "good.png" in capsys.readouterr().err


def test_only_corrupt_input_fails(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(checkpoint, out, images / "broken.jpg") == 1
    assert "broken.jpg" in capsys.readouterr().err
    index = json.loads((out / "index.json").read_text())
    assert index["summary"]["ok"] == 0 and index["summary"]["unreadable"] == 1


def test_empty_folder_and_missing_input(checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(checkpoint, tmp_path / "out", empty) == 2
    assert f"no images in {empty}" in capsys.readouterr().err
    assert _run(checkpoint, tmp_path / "out", tmp_path / "nope.jpg") == 2
    assert "nope.jpg does not exist" in capsys.readouterr().err


def test_bad_checkpoint(images, tmp_path, capsys):
    missing = tmp_path / "missing.ckpt"
    assert main([str(images), "--checkpoint", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    assert main([str(images), "--checkpoint", str(garbage), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(garbage) in err and len(err.strip().splitlines()) == 1


def test_video(checkpoint, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for i in range(3):
        writer.write(_image(i))
    writer.release()
    out = tmp_path / "out"
    assert _run(checkpoint, out, video, "--formats", "obj", "--no-side-view") == 0
    index = json.loads((out / "index.json").read_text())
    assert [e["frame"] for e in index["images"]] == [0, 1, 2]
    assert index["summary"]["ok"] == 3
    assert (out / "clip_f000002_p0.obj").is_file()

    out = tmp_path / "every"
    assert _run(checkpoint, out, video, "--every", 2, "--formats", "", "--no-side-view") == 0
    index = json.loads((out / "index.json").read_text())
    assert [e["frame"] for e in index["images"]] == [0, 2]
    assert not list(out.glob("*.obj"))


def test_mediapipe_not_installed(checkpoint, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` fail
    assert _run(checkpoint, tmp_path / "out", images, "--detector", "mediapipe") == 2
    assert "pip install 'hmrkit[detect]'" in capsys.readouterr().err


def test_refiner_runs_after_the_method(checkpoint, images, tmp_path, capsys):
    """``--refiner identity`` writes the same parameters; an unknown refiner is a usage error."""
    plain, refined = tmp_path / "plain", tmp_path / "refined"
    assert _run(checkpoint, plain, images / "good.png", "--formats", "", "--no-side-view") == 0
    assert _run(checkpoint, refined, images / "good.png", "--formats", "", "--no-side-view",
                "--refiner", "identity") == 0
    a, b = np.load(plain / "good_p0.npz"), np.load(refined / "good_p0.npz")
    for key in ("transl", "betas", "joints3d", "keypoints2d"):
        np.testing.assert_array_equal(a[key], b[key])
    assert json.loads((refined / "index.json").read_text())["refiner"] == "identity"
    assert _run(checkpoint, tmp_path / "x", images / "good.png", "--refiner", "nope") == 2
    assert "--refiner: unknown refiner 'nope'" in capsys.readouterr().err
