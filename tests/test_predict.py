"""``hmrkit predict``: outputs, index, bad inputs, boxes, video (on a tiny untrained HMR, whole
images); the default model on the people BlazePose finds; rotated boxes; mesh frame; large
photos; start-up imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hmrkit.io import CAMERA_FRAME, CAMERA_TO_MESH, MESH_FRAME
from hmrkit.predict import WHOLE_IMAGE_NOTE, main

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
    """``hmrkit predict`` with the tiny HMR; whole images (``--detector none``) unless ``args``
    name ``--boxes`` or ``--detector`` (the random pictures hold no person to detect)."""
    args = [*map(str, args)]
    if "--boxes" not in args and "--detector" not in args:
        args += ["--detector", "none"]
    return main([*args, "--checkpoint", str(checkpoint[0]), "--out", str(out)])


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
    # mesh files are the camera frame turned about x (glTF's y-up): (x, y, z) -> (x, -y, -z);
    # parameters stay in the camera frame, and both files say so
    assert record["frame"] == CAMERA_FRAME and str(npz["frame"]) == CAMERA_FRAME
    assert record["mesh_frame"] == MESH_FRAME and str(npz["mesh_frame"]) == MESH_FRAME
    in_camera = mesh.vertices @ CAMERA_TO_MESH.T
    assert np.allclose(np.asarray(record["joints3d"]).mean(0)[2], in_camera.mean(0)[2], atol=0.5)
    assert in_camera.mean(0)[2] > 0 > mesh.vertices.mean(0)[2]  # in front of the camera

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


# ------------------------------------------------------------------ whole images, persons


def test_whole_image_mode_says_so_once(checkpoint, images, tmp_path, capsys):
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(two / name), _image())
    assert _run(checkpoint, tmp_path / "out", two, "--formats", "", "--no-side-view") == 0
    assert capsys.readouterr().err.strip().splitlines() == [f"hmrkit predict: {WHOLE_IMAGE_NOTE}"]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [[10, 10, 60, 110]], "b.png": [[10, 10, 60, 110]]}))
    assert _run(checkpoint, tmp_path / "boxed", two, "--boxes", boxes, "--formats", "",
                "--no-side-view") == 0
    assert capsys.readouterr().err == ""


def _bp_person(center, size, rotation, landmarks, presence=0.9, score=0.8):
    """A :class:`hmrkit.blazepose.Person` with the given ROI and landmarks (other outputs
    filled with recognisable values)."""
    from hmrkit.blazepose import Detection, Person

    f = np.float32
    lm = np.concatenate([np.asarray(landmarks, f), np.zeros((33, 1), f)], 1)
    return Person(
        detection=Detection(np.zeros(4, f), np.zeros((4, 2), f), score), presence=presence,
        center=np.asarray(center, f), size=float(size), rotation=float(rotation),
        crop_affine=np.zeros((2, 3), f), landmarks=lm, visibility=np.full(33, 0.75, f),
        landmark_presence=np.full(33, 0.5, f), world=np.ones((33, 3), f),
        mask=np.zeros((256, 256), f), heatmaps=np.zeros((33, 64, 64), f),
        crop_landmarks=np.zeros((33, 3), f))


class _FakeBlazePose:
    """Stands for :class:`hmrkit.blazepose.BlazePose`: ``detections`` detections, of which
    ``people`` come out of the landmark stage."""

    min_presence = 0.5

    def __init__(self, people, detections=None):
        self.people = people
        self.detections = [p.detection for p in people] if detections is None else detections

    def detect_people(self, images):
        return [list(self.detections) for _ in images]

    def estimate(self, images, detections):
        return [list(self.people) for _ in images]


def _standing_landmarks(x0, y0, x1, y1, seed=0):
    """33 landmarks spread over the box ``[x0, y0, x1, y1]`` (touching its four sides)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform([x0, y0], [x1, y1], (33, 2))
    pts[0], pts[1], pts[2], pts[3] = [x0, y0 + 5], [x1, y0 + 8], [(x0 + x1) / 2, y0], \
        [(x0 + x1) / 2, y1]
    return pts


def test_detected_people_boxes_rotated_or_around_the_landmarks():
    from hmrkit.predict import LANDMARK_BOX_SCALE, DetectedPeople, Frame, Source

    person = _bp_person((80, 60), 90, 0.3, _standing_landmarks(50, 20, 100, 110))
    frame = Frame(Source(Path("x.png"), "image", "x", ("x.png",)), "x", ("x.png",),
                  image=np.zeros((H, W, 3), np.uint8))
    (box,), reason = DetectedPeople(_FakeBlazePose([person]), rotated=True)(frame)
    assert reason == "" and box.rotation == pytest.approx(0.3) and box.size == pytest.approx(90)
    np.testing.assert_allclose(box.center, [80, 60])
    (box,), _ = DetectedPeople(_FakeBlazePose([person]), rotated=False)(frame)
    assert box.rotation is None
    np.testing.assert_allclose(box.center, [75, 65])  # the middle of the landmarks' extent
    assert box.size == pytest.approx(LANDMARK_BOX_SCALE * 90)
    record = box.detection
    assert record["blazepose_landmarks"].shape == (33, 3)
    assert record["blazepose_world"].shape == (33, 3)
    assert record["blazepose_visibility"].shape == record["blazepose_presence"].shape == (33,)
    assert float(record["blazepose_roi_rotation"]) == pytest.approx(0.3)
    assert float(record["blazepose_score"]) == pytest.approx(0.8)


def test_people_detected_but_none_passing_the_checks(checkpoint, images, tmp_path, capsys,
                                                     monkeypatch):
    """Two detections: one dropped by BlazePose (pose presence), one too small: the image is
    skipped with a reason that counts both."""
    import hmrkit.predict as predict

    tiny = _bp_person((80, 60), 10, 0.0, _standing_landmarks(78, 56, 84, 66))
    fake = _FakeBlazePose([tiny], detections=[tiny.detection, tiny.detection])
    monkeypatch.setattr(predict, "load_detector", lambda *a: fake)
    assert _run(checkpoint, tmp_path / "out", images / "good.png", "--detector",
                "blazepose") == 1
    err = capsys.readouterr().err
    assert ("good.png: no person (2 detection(s), none passed the checks (pose presence "
            "under 0.5: 1, box under 16 px: 1))") in err
    fake.people, fake.detections = [], []
    assert _run(checkpoint, tmp_path / "out", images / "good.png", "--detector",
                "blazepose") == 1
    assert "good.png: no person (no person detected)" in capsys.readouterr().err


def test_rotated_boxes_reach_a_method_that_reads_them(checkpoint, images, tmp_path,
                                                      monkeypatch):
    """A method listing ``box_rotation`` among its input keys gets the detector's rotated
    square (crop, box and angle); one that does not gets the upright box. The detector's
    landmarks are written with the person (``--detector mediapipe`` is the same detector)."""
    import hmrkit.predict as predict
    from hmrkit.data.images import person_crop
    from hmrkit.models.methods import HMR

    person = _bp_person((80, 60), 90, 0.3, _standing_landmarks(50, 20, 100, 110))
    monkeypatch.setattr(predict, "load_detector", lambda *a: _FakeBlazePose([person]))
    seen = []
    original = HMR.estimate

    def spy(self, batch):
        seen.append({k: v.clone() for k, v in batch.items()})
        return original(self, batch)

    monkeypatch.setattr(HMR, "estimate", spy)
    out = tmp_path / "upright"
    assert _run(checkpoint, out, images / "good.png", "--detector", "mediapipe",
                "--formats", "", "--no-side-view") == 0
    assert "box_rotation" not in seen[-1]
    assert json.loads((out / "index.json").read_text())["options"]["detector"] == "blazepose"

    keys = HMR.input_keys
    monkeypatch.setattr(HMR, "input_keys", lambda self: (*keys(self), "box_rotation"))
    out = tmp_path / "rotated"
    assert _run(checkpoint, out, images / "good.png", "--detector", "blazepose",
                "--formats", "", "--no-side-view") == 0
    batch = seen[-1]
    assert float(batch["box_rotation"][0]) == pytest.approx(0.3)
    assert float(batch["box_size"][0]) == pytest.approx(90)
    image = cv2.imread(str(images / "good.png"))[..., ::-1]
    crop = person_crop(image, np.array([80.0, 60.0]), 90.0, 64, rotation=0.3)
    np.testing.assert_allclose(batch["image"][0].numpy(), crop.images[0], atol=1e-6)
    npz, record = np.load(out / "good_p0.npz"), json.loads((out / "good_p0.json").read_text())
    assert float(npz["box_rotation"]) == pytest.approx(0.3)
    np.testing.assert_allclose(npz["blazepose_landmarks"], person.landmarks)
    np.testing.assert_allclose(record["blazepose_visibility"], person.visibility)
    assert npz["blazepose_world"].shape == (33, 3) and len(record["blazepose_landmark_names"]) == 33
    assert str(npz["blazepose_landmark_names"][11]) == "left_shoulder"


def test_missing_detector_files_are_a_one_line_error(checkpoint, images, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.setenv("HMRKIT_BLAZEPOSE_DIR", str(tmp_path / "no-models"))
    assert _run(checkpoint, tmp_path / "out", images / "good.png", "--detector",
                "blazepose") == 2
    err = capsys.readouterr().err
    assert "python -m hmrkit.blazepose fetch" in err and "--detector none" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------ the default model


def test_default_model_and_detector_on_two_people(tmp_path):
    """``hmrkit predict image --out DIR`` with no other argument: the shipped default model on
    both people of a synthetic image; each gets a mesh on its own person and the detector's
    landmarks; the GLB shows them upright (head +y)."""
    import trimesh

    from hmrkit.body.keypoints import SMPL24_NAMES
    from hmrkit.models.weights import DEFAULT_MODEL
    from tests.helpers import skip_without_blazepose, two_person_scene

    skip_without_blazepose()
    scene = two_person_scene()
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), scene["image"][..., ::-1])
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["checkpoint"] == str(DEFAULT_MODEL)
    assert index["options"]["detector"] == "blazepose"
    assert index["summary"]["persons"] == 2
    labels = scene["labels"]
    found = []
    for k in range(2):
        npz = np.load(out / f"two_p{k}.npz")
        assert npz["blazepose_landmarks"].shape == (33, 3)
        # the mesh's projected joints sit on one labelled person
        centre = np.median(npz["keypoints2d"], 0)
        dist = np.linalg.norm(labels["box_center"] - centre, axis=1) / labels["box_size"]
        assert dist.min() < 0.25, dist
        found.append(int(dist.argmin()))
        # GLB: y up; the head joint above the ankles, the mesh around its joints
        glb = trimesh.load(out / f"two_p{k}.glb", force="mesh", process=False).vertices
        joints = npz["joints3d"] @ CAMERA_TO_MESH.T
        head, ankles = SMPL24_NAMES.index("head"), [SMPL24_NAMES.index("left_ankle"),
                                                     SMPL24_NAMES.index("right_ankle")]
        assert joints[head, 1] > joints[ankles, 1].max() + 0.5
        assert (glb.min(0) <= joints.min(0) + 1e-3).all() and (glb.max(0) >= joints.max(0)
                                                               - 1e-3).all()
        assert glb[:, 1].argmax() != glb[:, 1].argmin()
        top = glb[glb[:, 1] > np.quantile(glb[:, 1], 0.95)].mean(0)
        assert np.linalg.norm(top - joints[head]) < 0.25  # the top of the mesh is its head
    assert sorted(found) == [0, 1]


def test_meshes_files_are_upright_for_viewers(tmp_path):
    """A person standing in front of the camera, facing it (the body frame, y up and facing
    +z, turned into the camera frame, x right, y down, z forward) is written back in its body
    frame: head +y, facing +z (towards a glTF viewer), in every format."""
    import trimesh

    from hmrkit.body import load_body_model
    from hmrkit.io import save_mesh

    body = load_body_model("anny24")
    rest = body.v_template.double().numpy()
    in_camera = rest @ np.diag([1.0, -1.0, -1.0]).T + [0.0, 0.0, 3.0]
    for fmt in ("glb", "obj", "ply"):
        save_mesh(tmp_path / f"m.{fmt}", in_camera, body.faces.numpy())
        loaded = trimesh.load(tmp_path / f"m.{fmt}", force="mesh", process=False)
        np.testing.assert_allclose(loaded.vertices, rest - [0.0, 0.0, 3.0], atol=1e-5)
        assert loaded.vertices[:, 1].argmax() in np.argsort(rest[:, 1])[-5:]  # head on top
        np.testing.assert_array_equal(loaded.faces, body.faces.numpy())


def test_overlay_of_a_24_megapixel_photo_is_small(checkpoint, tmp_path):
    """A 6000x4000 photo: overlay and side view at most 1600 px on the longer side, the mesh
    drawn where its joints project (those in the picture); parameters keep the full-resolution
    camera."""
    big = cv2.resize(_image(3), (6000, 4000), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), big)
    out = tmp_path / "out"
    assert _run(checkpoint, out, path, "--formats", "") == 0
    overlay, side = cv2.imread(str(out / "big_overlay.png")), cv2.imread(str(out / "big_side.png"))
    assert overlay.shape == side.shape == (1067, 1600, 3)
    record = json.loads((out / "big_p0.json").read_text())
    assert record["image_size"] == [6000, 4000] and record["box_size"] == 6000
    small = cv2.resize(big, (1600, 1067), interpolation=cv2.INTER_AREA).astype(int)
    drawn = np.abs(overlay.astype(int) - small).sum(-1) > 30
    ys, xs = np.nonzero(drawn)
    assert len(xs) > 500
    kp = np.asarray(record["keypoints2d"])
    kp = kp[(kp >= 0).all(1) & (kp < [6000, 4000]).all(1)] * [1600 / 6000, 1067 / 4000]
    assert len(kp) > 10
    inside = ((kp[:, 0] >= xs.min() - 3) & (kp[:, 0] <= xs.max() + 3)
              & (kp[:, 1] >= ys.min() - 3) & (kp[:, 1] <= ys.max() + 3))
    assert inside.mean() > 0.9


# ------------------------------------------------------------------ start-up


def test_parsing_and_usage_errors_import_no_torch(tmp_path):
    """``hmrkit predict``'s parser, ``--help`` and a missing input (exit 2) load no torch, no
    OpenCV and no model code: the heavy imports wait until a model is needed."""
    import hmrkit

    env = {**os.environ, "PYTHONPATH": str(Path(hmrkit.__file__).parents[1])}
    code = ("import sys\nfrom hmrkit.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "heavy = [m for m in ('torch', 'cv2', 'lightning', 'timm') if m in sys.modules]\n"
            "print(rc, heavy)\n")
    for args, rc in ((["predict", "--help"], 0),
                     (["predict", str(tmp_path / "missing.jpg"), "--out", str(tmp_path)], 2)):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, env=env, timeout=120)
        assert done.stdout.strip().splitlines()[-1] == f"{rc} []", done.stdout + done.stderr
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import hmrkit.cli"],
                          capture_output=True, text=True, env=env, timeout=120)
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert "hmrkit.cli" in imported and "torch" not in imported
