"""``hmrkit predict``: body meshes from images, folders or videos with a trained method; and
``hmrkit fit``: the same run with BlazePose persons and landmarks, the keypoint fit after the
method (or from scratch: the mean pose in each box) by default.

For every input image (or kept video frame) and every person in it, writes into ``--out``:

- ``<stem>_p<k>.obj/.ply/.glb``: the mesh in the full-image camera frame (``--formats``);
- ``<stem>_p<k>.npz`` and ``<stem>_p<k>.json``: the parameters (``global_orient`` (3, 3),
  ``body_pose`` (23, 3, 3), ``betas``, ``transl``, ``cam_crop``), the box and camera
  (``box_center``, ``box_size``, ``focal``, ``principal_point``, ``image_size`` (W, H)),
  ``joints3d`` (24, 3) in the camera frame, ``keypoints2d`` (24, 2) their projection in
  full-image pixels, and the body model's name;
- ``<stem>_overlay.png`` (all persons rendered over the image) and ``<stem>_side.png`` (a side
  view of them, same size as the image; ``--no-side-view`` skips it);

and one ``index.json`` for the run. ``k`` counts the persons of an image from 0, in box order.
Stems are the file stems (``name_2`` etc. when two inputs share one); video frames are
``<video stem>_f<frame index, 6 digits>``.

Persons come from ``--boxes FILE`` (JSON ``{"image": [[x0, y0, x1, y1], ...]}``, keys being
the path as given on the command line or found in a folder, the file name, or for video frames
``"<video name>:<frame index>"`` or the frame's stem; images that are absent or have ``[]`` are
skipped as "no person"), from ``--detector blazepose`` (every person hmrkit's BlazePose front
end finds, with its 33 landmarks, which ``--refine keypoints`` then fits to), from
``--detector mediapipe`` (one person per image, BlazePose from the optional ``[detect]``
extra), or by default from the whole image (one person, square box centred on the image with
side ``max(W, H)``).

Only light modules are imported at load time (the ``hmrkit`` parser imports this one); torch
and the model code load when :func:`run` needs them.

Exit status: 0 when at least one image gave a result; 1 when none did (every image unreadable
or without a person); 2 for usage errors reported on one line: an input that does not exist, a
folder with no images, an unreadable checkpoint or boxes file, a detector that is not installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hmrkit.args import OneLineParser, output_folder, positive_float, positive_int
from hmrkit.io import atomic_save_npz, atomic_write_text, save_mesh
from hmrkit.render.draw import render_overlay, render_side, write_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
MESH_FORMATS = ("obj", "ply", "glb")
KEYPOINT_BOX_SCALE = 1.2
"""Detected keypoints -> square box, as :func:`hmrkit.geometry.crops.box_from_keypoints`."""
MEDIAPIPE_MIN_VISIBILITY = 0.5
DETECT_INSTALL = "pip install 'hmrkit[detect]'"
DETECTORS = ("blazepose", "mediapipe")
PROG = "hmrkit predict"
DESCRIPTION = "Body meshes, parameters and pictures from images, folders or videos."
EPILOG = ("exit status: 0 if at least one image gave a result, 1 if none did, 2 for a usage "
          "error (missing input, folder without images, bad checkpoint or boxes file, "
          "detector not installed)")

Box = tuple
"""A square box: centre (2,) and side, in full-image pixels; a detector that finds landmarks
adds them: ``(centre, side, landmarks (33, 3) x, y, visibility, world (33, 4))`` (BlazePose,
full-image pixels; the world landmarks in metres with their visibility)."""


class PredictError(Exception):
    """A usage problem (bad input, checkpoint, boxes or detector), reported on one line."""


@dataclass
class Source:
    """One input file: an image or a video."""

    path: Path
    kind: str
    stem: str
    keys: tuple[str, ...]


@dataclass
class Frame:
    """One image to process: a decoded RGB image or the reason it could not be read."""

    source: Source
    stem: str
    keys: tuple[str, ...]
    index: int | None = None
    image: np.ndarray | None = None
    error: str = ""


@dataclass
class Job:
    """A frame with persons waiting for the model, and its entry in ``index.json``."""

    frame: Frame
    boxes: list[Box]
    focal: float | None
    """``--focal``; None: the default ``sqrt(W^2 + H^2)``."""
    entry: dict
    results: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------- arguments


def _formats(text: str) -> tuple[str, ...]:
    """Parse ``--formats obj,ply,glb``."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in MESH_FORMATS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown mesh format(s) {', '.join(bad)}; choose from {', '.join(MESH_FORMATS)}"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser, fit: bool = False) -> None:
    """Add the options of ``hmrkit predict`` (``fit``: of ``hmrkit fit``) to ``parser``."""
    parser.add_argument("inputs", nargs="+", help="image files, folders of images or videos")
    if fit:
        parser.add_argument("--checkpoint", help="start from this method's estimates "
                            "(default: from scratch, the mean pose placed in each box)")
    else:
        parser.add_argument("--checkpoint", required=True,
                            help="trained method (.ckpt or export)")
    detector = "blazepose" if fit else None
    parser.set_defaults(fit=fit)
    parser.add_argument("--out", required=True, type=output_folder, help="output folder")
    persons = parser.add_mutually_exclusive_group()
    persons.add_argument("--boxes", help='JSON {"image": [[x0, y0, x1, y1], ...]} of persons')
    persons.add_argument("--detector", choices=DETECTORS, default=detector,
                         help="blazepose: every person hmrkit's BlazePose front end finds, with "
                         "its 33 landmarks (what --refine keypoints fits to); mediapipe: one "
                         f"person per image (needs {DETECT_INSTALL})"
                         + (" (default: blazepose)" if detector else ""))
    parser.add_argument("--box-scale", type=positive_float, default=KEYPOINT_BOX_SCALE,
                        help="square side = scale x longer side of a --boxes box (default 1.2)")
    parser.add_argument("--focal", type=positive_float,
                        help="focal length in pixels (default sqrt(W^2 + H^2))")
    parser.add_argument("--refiner", "--refine", default="keypoints" if fit else None,
                        help="a refinement stage after the method, by name or class path "
                        "(identity, keypoints, dense, ...)"
                        + (" (default: keypoints)" if fit else ""))
    parser.add_argument("--refiner-arg", action="append", metavar="NAME=VALUE",
                        help="an option of the refiner (repeatable), e.g. min_confidence=0.3")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda[:i]")
    parser.add_argument("--batch-size", type=positive_int, default=16,
                        help="persons per model call (default 16)")
    parser.add_argument("--formats", type=_formats, default=MESH_FORMATS,
                        help="mesh formats to write (default obj,ply,glb; '' for none)")
    parser.add_argument("--no-side-view", action="store_true", help="do not write <stem>_side.png")
    parser.add_argument("--every", type=positive_int, default=1,
                        help="videos: keep every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=positive_int,
                        help="videos: keep at most this many frames per video")


# --------------------------------------------------------------------------- inputs


def _keys(path: Path) -> tuple[str, ...]:
    """Names under which a ``--boxes`` file may list ``path``."""
    return tuple(dict.fromkeys([path.as_posix(), path.name, path.resolve().as_posix()]))


def collect_sources(inputs: list[str]) -> list[Source]:
    """Files behind the command-line inputs; folders give their images, sorted."""
    files: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise PredictError(f"no images in {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise PredictError(f"input {path} does not exist")
    sources, used = [], set()
    for path in files:
        stem = path.stem
        n = 1
        while stem in used:
            n += 1
            stem = f"{path.stem}_{n}"
        used.add(stem)
        kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
        sources.append(Source(path, kind, stem, _keys(path)))
    return sources


def _image_frame(source: Source) -> Frame:
    """The frame of an image file (with the reason when it is unreadable)."""
    from hmrkit.data.images import ImageReadError, read_image

    frame = Frame(source, source.stem, source.keys)
    try:
        frame.image = read_image(source.path)
    except ImageReadError as err:
        frame.error = err.reason
    return frame


def _video_frames(source: Source, every: int, max_frames: int | None) -> Iterator[Frame]:
    """Every ``every``-th frame of a video (at most ``max_frames``), as RGB."""
    capture = cv2.VideoCapture(str(source.path))
    try:
        if not capture.isOpened():
            yield Frame(source, source.stem, source.keys, error="not a readable video")
            return
        index = kept = 0
        while max_frames is None or kept < max_frames:
            if index % every:
                ok, bgr = capture.grab(), None
            else:
                ok, bgr = capture.read()
            if not ok:
                break
            if bgr is not None:
                keys = tuple(f"{k}:{index}" for k in source.keys)
                stem = f"{source.stem}_f{index:06d}"
                rgb = np.ascontiguousarray(bgr[..., ::-1])
                yield Frame(source, stem, (*keys, stem), index, rgb)
                kept += 1
            index += 1
        if index == 0:
            yield Frame(source, source.stem, source.keys, error="no frame could be decoded")
    finally:
        capture.release()


def iter_frames(sources: list[Source], every: int = 1, max_frames: int | None = None):
    """All frames of the sources, in order."""
    for source in sources:
        if source.kind == "video":
            yield from _video_frames(source, every, max_frames)
        else:
            yield _image_frame(source)


# --------------------------------------------------------------------------- persons

BoxSource = Callable[[Frame], tuple[list[Box], str]]
"""Frame -> its persons' boxes, and the reason to report when there are none."""


def whole_image_box(frame: Frame) -> tuple[list[Box], str]:
    """One person: the square box centred on the image with side ``max(W, H)``."""
    H, W = frame.image.shape[:2]
    return [(np.array([W / 2, H / 2]), float(max(W, H)))], ""


def square_box(xyxy, scale: float = 1.0) -> Box:
    """Square box around ``[x0, y0, x1, y1]``: same centre, side ``scale`` x the longer side."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2]), scale * max(x1 - x0, y1 - y0)


def _box_array(value) -> np.ndarray | None:
    """(N, 4) boxes of a JSON value; None when it is not a list of ``[x0, y0, x1, y1]``."""
    if not isinstance(value, list):
        return None
    if not value:
        return np.zeros((0, 4))
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    ok = (arr.ndim == 2 and arr.shape[1] == 4 and np.isfinite(arr).all()
          and (arr[:, 2:] > arr[:, :2]).all())
    return arr if ok else None


def load_boxes(path: str | Path, scale: float = 1.0) -> BoxSource:
    """Boxes from a JSON file ``{"image": [[x0, y0, x1, y1], ...]}`` (see module doc)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PredictError(f"--boxes {path}: cannot read it as JSON ({err})") from None
    if not isinstance(data, dict):
        raise PredictError(f"--boxes {path}: expected a JSON object {{image: [[x0, y0, x1, y1]]}}")
    table = {}
    for key, value in data.items():
        boxes = _box_array(value)
        if boxes is None:
            raise PredictError(f"--boxes {path}: '{key}' must be a list of [x0, y0, x1, y1] "
                               "with x0 < x1 and y0 < y1")
        table[Path(key).as_posix()] = [square_box(b, scale) for b in boxes]

    def lookup(frame: Frame) -> tuple[list[Box], str]:
        for key in frame.keys:
            if key in table:
                return table[key], "empty box list in the boxes file"
        return [], "not in the boxes file"

    return lookup


def mediapipe_detector() -> BoxSource:
    """One person per image from MediaPipe BlazePose (runs offline; optional dependency)."""
    try:
        import mediapipe as mp
    except ImportError:
        raise PredictError(
            f"--detector mediapipe needs MediaPipe, which is not installed: {DETECT_INSTALL}"
        ) from None
    try:
        pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)
    except AttributeError:
        raise PredictError(
            f"this MediaPipe has no solutions.pose; install mediapipe==0.10.14 ({DETECT_INSTALL})"
        ) from None
    import torch

    from hmrkit.geometry.crops import box_from_keypoints

    def detect(frame: Frame) -> tuple[list[Box], str]:
        found = pose.process(frame.image).pose_landmarks
        if found is None:
            return [], "no person detected"
        H, W = frame.image.shape[:2]
        points = torch.tensor([[p.x * W, p.y * H] for p in found.landmark], dtype=torch.float64)
        visible = torch.tensor([p.visibility >= MEDIAPIPE_MIN_VISIBILITY for p in found.landmark])
        center, size = box_from_keypoints(points, visible, scale=KEYPOINT_BOX_SCALE)
        if not (torch.isfinite(size) and size > 1):
            return [], "no person detected"
        return [(center.numpy(), float(size))], ""

    return detect


def blazepose_detector(variant: str = "full") -> BoxSource:
    """Every person hmrkit's BlazePose front end finds (:mod:`hmrkit.blazepose`), with its 33
    landmarks and world landmarks: the box is the square around the visible landmarks."""
    import torch

    from hmrkit.blazepose import BlazePose, BlazePoseModelError
    from hmrkit.geometry.crops import box_from_keypoints

    try:
        model = BlazePose(variant)
    except BlazePoseModelError as err:
        raise PredictError(f"--detector blazepose: {err}") from None

    def detect(frame: Frame) -> tuple[list[Box], str]:
        boxes = []
        for person in model.detect(frame.image):
            visible = person.visibility >= MEDIAPIPE_MIN_VISIBILITY
            center, size = box_from_keypoints(torch.from_numpy(person.landmarks[:, :2]),
                                              torch.from_numpy(visible),
                                              scale=KEYPOINT_BOX_SCALE)
            if not (torch.isfinite(size) and size > 1):
                continue
            landmarks = np.concatenate([person.landmarks[:, :2], person.visibility[:, None]], 1)
            world = np.concatenate([person.world, person.visibility[:, None]], 1)
            boxes.append((center.numpy(), float(size), landmarks, world))
        return boxes, "no person detected"

    return detect


# --------------------------------------------------------------------------- model


def load_model(checkpoint: str | None, device: str):
    """The method of ``checkpoint`` on ``device`` (None: the mean-pose method, the start of a
    fit from scratch); :class:`PredictError` for bad files."""
    import torch

    if checkpoint is None:
        from hmrkit.models.registry import method_class

        return method_class("mean-pose")().to(device).eval()

    try:
        torch_device = torch.device(device)
    except RuntimeError as err:
        raise PredictError(f"--device {device}: {err}") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise PredictError(f"--device {device}: CUDA is not available")
    from hmrkit.models.checkpoints import CheckpointError, load_method

    try:
        return load_method(checkpoint, torch_device)
    except CheckpointError as err:
        raise PredictError(str(err)) from None
    except (OSError, ValueError) as err:  # e.g. the method's body model file is missing
        raise PredictError(f"cannot load the method of {checkpoint}: {err}") from None


def make_batch(people: list[tuple[np.ndarray, Box, float | None]], res: int | None,
               rois: int = 1) -> dict:
    """Model input for ``(image, box, focal)`` persons: crops, boxes and cameras (float32).

    Every person is cut by :func:`hmrkit.data.images.person_crop` (``res`` None: the geometry
    only, for methods that read no image); ``rois > 1`` (Multi-RoI methods) also adds the
    ``rois/*`` keys: the first ``rois`` RoIs around each box, RoI 0 the box itself, as datasets
    built with ``rois=M`` hold them. ``focal`` None: the default ``sqrt(W^2 + H^2)``.
    """
    import torch

    from hmrkit.data.images import person_crop
    from hmrkit.geometry.cameras import Camera

    keys = [person_crop(None if res is None else image, box[0], box[1], res or 1, rois=rois)
            .sample_keys(rois=rois > 1) for image, box, _ in people]
    batch = {k: torch.from_numpy(np.stack([p[k] for p in keys])) for k in keys[0]}
    wh = torch.tensor([[im.shape[1], im.shape[0]] for im, _, _ in people], dtype=torch.float64)
    focal = [f for _, _, f in people]
    camera = Camera.default(wh, None if focal[0] is None else torch.tensor(focal))
    batch.update(camera.to_sample())
    if all(len(box) > 3 for _, box, _ in people):  # a detector's landmarks (see Box)
        batch["keypoints2d/blazepose33"] = torch.from_numpy(np.stack([b[2] for _, b, _ in people]))
        batch["keypoints3d/blazepose33"] = torch.from_numpy(np.stack([b[3] for _, b, _ in people]))
    return {k: v.float().contiguous() for k, v in batch.items()}


def unpack(est, batch: dict) -> list[dict[str, np.ndarray]]:
    """Per-person outputs (float64 numpy) of a posed :class:`BodyEstimate` and its batch: the
    fields the estimate has, in the full-image camera frame, and the camera used (the predicted
    one, else the batch's)."""
    import torch

    from hmrkit.geometry.cameras import Camera

    est = est.detach()
    b = {k: v.detach().cpu().double() for k, v in batch.items() if not k.endswith("image")}
    camera = est.camera_or(Camera.from_sample(b)).to("cpu", torch.float64)
    vertices = est.vertices.cpu().double()
    # methods that give camera-frame vertices directly have no translation to add
    transl = vertices.new_zeros(len(vertices), 3) if est.transl is None else est.transl.cpu(
        ).double()
    fields = {"transl": transl}
    if est.rotmat is not None:
        rotmat = est.rotmat.cpu().double()
        fields.update(global_orient=rotmat[:, 0], body_pose=rotmat[:, 1:])
    if est.betas is not None:
        fields["betas"] = est.betas.cpu().double()
    if est.cam_crop is not None:
        fields["cam_crop"] = est.cam_crop.cpu().double()
    if est.world_global_orient is not None:
        fields["world_global_orient"] = est.world_global_orient.cpu().double()
    for key, value in est.extras.items():  # a fitting refiner's record: fit_status, fit_<term>
        if key.startswith("fit/") and isinstance(value, torch.Tensor) and len(value) == len(
                transl):
            fields[key.replace("/", "_")] = value.detach().cpu().double()
    fields.update({
        "box_center": b["box_center"], "box_size": b["box_size"], "focal": camera.focal,
        "principal_point": camera.principal_point, "image_size": camera.image_size,
        "vertices": vertices + transl[:, None],
    })
    if est.joints is not None:
        joints = est.joints.cpu().double() + transl[:, None]
        fields.update(joints3d=joints, keypoints2d=camera.project(joints))
    return [{k: v[i].numpy() for k, v in fields.items()} for i in range(len(transl))]


def estimate(model, people: list, device, batch_size: int,
             refiner=None) -> list[dict[str, np.ndarray]]:
    """Run ``model`` (then ``refiner``) over persons ``(image, box, focal)`` in chunks of
    ``batch_size``. The batch holds what the method contract asks for (its crop size, RoIs
    and input keys); a key ``hmrkit predict`` cannot build is a :class:`PredictError`."""
    import torch

    results = []
    for start in range(0, len(people), batch_size):
        batch = make_batch(people[start : start + batch_size], model.crop_size, model.num_rois)
        missing = [k for k in model.input_keys() if k not in batch]
        if missing:
            raise PredictError(f"{type(model).__name__} reads Sample keys {missing} that "
                               "hmrkit predict cannot build from an image and a box")
        from hmrkit.models.refiners import RefinerError

        try:
            with torch.no_grad():
                est = model.infer({k: v.to(device) for k, v in batch.items()}, refiner)
        except RefinerError as err:
            raise PredictError(f"--refiner: {err}") from None
        results += unpack(est, batch)
    return results


# --------------------------------------------------------------------------- outputs


def _json_value(value: np.ndarray):
    """Arrays as nested lists, 0-d arrays as numbers."""
    return value.tolist() if value.ndim else value.item()


def write_person(out: Path, name: str, person: dict, faces, formats, body_model: str) -> dict:
    """Meshes, NPZ and JSON of one person; returns their file names by kind."""
    files = {}
    for fmt in formats:
        files[fmt] = f"{name}.{fmt}"
        save_mesh(out / files[fmt], person["vertices"], faces)
    params = {k: v for k, v in person.items() if k != "vertices"}
    files["npz"], files["json"] = f"{name}.npz", f"{name}.json"
    arrays = {k: v.astype(np.float32) for k, v in params.items()}
    atomic_save_npz(out / files["npz"], {**arrays, "body_model": np.array(body_model)})
    record = {k: _json_value(v) for k, v in params.items()}
    atomic_write_text(out / files["json"], json.dumps({**record, "body_model": body_model}))
    return files


def write_job(job: Job, out: Path, faces: np.ndarray, formats, body_model: str,
              side_view: bool) -> None:
    """All outputs of one frame; fills in its ``index.json`` entry."""
    frame, entry = job.frame, job.entry
    for k, (person, box) in enumerate(zip(job.results, job.boxes, strict=True)):
        files = write_person(out, f"{frame.stem}_p{k}", person, faces, formats, body_model)
        entry["persons"].append({"index": k, "box_center": box[0].tolist(),
                                 "box_size": box[1], "files": files})
    vertex_sets = [p["vertices"] for p in job.results]
    entry["overlay"] = f"{frame.stem}_overlay.png"
    write_image(out / entry["overlay"], render_overlay(frame.image, vertex_sets, faces,
                                                       _cameras(job.results)))
    if side_view:
        entry["side"] = f"{frame.stem}_side.png"
        size = (frame.image.shape[1], frame.image.shape[0])
        write_image(out / entry["side"], render_side(vertex_sets, faces, size))
    entry["status"] = "ok"


def _cameras(results: list[dict]):
    """The camera of each person's outputs (one camera when they share it)."""
    import torch

    from hmrkit.geometry.cameras import Camera

    rows = [np.concatenate([[p["focal"]] * 2, p["principal_point"]]) for p in results]
    if all(np.array_equal(r, rows[0]) for r in rows):
        rows = rows[:1]
    wh = np.stack([results[0]["image_size"]] * len(rows))
    return Camera(torch.from_numpy(np.stack(rows)), torch.from_numpy(wh))


# --------------------------------------------------------------------------- run


def _report(message: str, prog: str = PROG) -> None:
    """One line on stderr (through tqdm so that a progress bar stays intact)."""
    tqdm.write(f"{prog}: {message}", file=sys.stderr)


def _setup(args: argparse.Namespace):
    """Sources, box source and model for ``args`` (raises :class:`PredictError`)."""
    sources = collect_sources(args.inputs)
    if args.boxes:
        boxes = load_boxes(args.boxes, args.box_scale)
    elif args.detector == "mediapipe":
        boxes = mediapipe_detector()
    elif args.detector == "blazepose":
        boxes = blazepose_detector()
    else:
        boxes = whole_image_box
    t0 = time.perf_counter()
    model = load_model(args.checkpoint, args.device)
    refiner = None
    if args.refiner:
        from hmrkit.models.registry import RegistryError, make_refiner

        try:
            refiner = make_refiner(args.refiner, args.refiner_arg)
        except (RegistryError, ValueError) as err:  # ValueError: RefinerError
            raise PredictError(f"--refiner: {err}") from None
    return sources, boxes, model, refiner, time.perf_counter() - t0


def _new_entry(frame: Frame) -> dict:
    """The ``index.json`` entry of a frame, before processing."""
    entry = {"input": frame.source.path.as_posix(), "stem": frame.stem, "status": "",
             "persons": []}
    if frame.source.kind == "video":
        entry["frame"] = frame.index
    if frame.image is not None:
        entry["image_size"] = [int(frame.image.shape[1]), int(frame.image.shape[0])]
    return entry


class Predictor:
    """Runs a method over frames in batches of persons, writes their outputs, keeps the index."""

    def __init__(self, model, args: argparse.Namespace, find_boxes: BoxSource, refiner=None):
        self.model, self.args, self.find_boxes = model, args, find_boxes
        self.refiner = refiner
        self.out = Path(args.out)
        self.faces = model.body.faces.cpu().numpy()
        self.body_model = model.body.name
        self.entries: list[dict] = []
        self.pending: list[Job] = []
        self.timing = {"model_s": 0.0, "write_s": 0.0}

    def add(self, frame: Frame) -> None:
        """Queue a frame (or record why it is skipped); runs the model when a batch is full."""
        entry = _new_entry(frame)
        self.entries.append(entry)
        name = frame.source.path.as_posix() + ("" if frame.index is None else f":{frame.index}")
        if frame.image is None:
            return self._skip(entry, "unreadable", name, frame.error)
        boxes, reason = self.find_boxes(frame)
        if not boxes:
            return self._skip(entry, "no person", name, reason)
        self.pending.append(Job(frame, boxes, self.args.focal, entry))
        if sum(len(j.boxes) for j in self.pending) >= self.args.batch_size:
            self.flush()

    def _skip(self, entry: dict, status: str, name: str, reason: str) -> None:
        """Mark an entry as skipped and say so on stderr."""
        entry.update(status=status, reason=reason)
        _report(f"skipped {name}: {status} ({reason})",
                "hmrkit fit" if getattr(self.args, "fit", False) else PROG)

    def flush(self) -> None:
        """Run the model on the queued persons and write the queued frames' outputs."""
        people = [(j.frame.image, box, j.focal) for j in self.pending for box in j.boxes]
        t0 = time.perf_counter()
        results = iter(estimate(self.model, people, self.args.device, self.args.batch_size,
                                self.refiner))
        t1 = time.perf_counter()
        for job in self.pending:
            job.results = [next(results) for _ in job.boxes]
            write_job(job, self.out, self.faces, self.args.formats, self.body_model,
                      not self.args.no_side_view)
        self.timing["model_s"] += t1 - t0
        self.timing["write_s"] += time.perf_counter() - t1
        self.pending.clear()

    def index(self, timing: dict) -> dict:
        """The content of ``index.json``."""
        args, model = self.args, self.model
        return {
            "inputs": list(args.inputs),
            "checkpoint": str(args.checkpoint) if args.checkpoint else "none (from scratch)",
            "method": f"{type(model).__module__}.{type(model).__qualname__}",
            "body_model": self.body_model, "device": str(args.device),
            "crop_size": model.crop_size, "refiner": args.refiner,
            "refiner_args": args.refiner_arg or [],
            "options": {"focal": args.focal, "boxes": args.boxes, "detector": args.detector,
                        "box_scale": args.box_scale, "formats": list(args.formats),
                        "side_view": not args.no_side_view, "batch_size": args.batch_size,
                        "every": args.every, "max_frames": args.max_frames},
            "images": self.entries, "summary": _summary(self.entries),
            "timing": {k: round(v, 4) for k, v in {**timing, **self.timing}.items()},
        }


def run(args: argparse.Namespace) -> int:
    """Run ``hmrkit predict`` (or ``hmrkit fit``); returns the exit status (see module doc)."""
    start = time.perf_counter()
    prog = "hmrkit fit" if getattr(args, "fit", False) else PROG
    try:
        sources, find_boxes, model, refiner, load_s = _setup(args)
    except PredictError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    predictor = Predictor(model, args, find_boxes, refiner)
    predictor.out.mkdir(parents=True, exist_ok=True)
    total = None if any(s.kind == "video" for s in sources) else len(sources)
    frames = iter_frames(sources, args.every, args.max_frames)
    try:
        for frame in tqdm(frames, total=total, unit="img", disable=not sys.stderr.isatty()):
            predictor.add(frame)
        if predictor.pending:
            predictor.flush()
    except PredictError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    index = predictor.index({"load_model_s": load_s, "total_s": time.perf_counter() - start})
    atomic_write_text(predictor.out / "index.json", json.dumps(index, indent=2))
    summary = index["summary"]
    print(f"{prog}: {summary['ok']} of {summary['images']} images, {summary['persons']} "
          f"persons; wrote {predictor.out / 'index.json'}")
    return 0 if summary["ok"] else 1


def _summary(entries: list[dict]) -> dict:
    """Counts of images by status, and of persons."""
    counts = {s: sum(e["status"] == s for e in entries) for s in ("ok", "unreadable", "no person")}
    persons = sum(len(e["persons"]) for e in entries)
    return {"images": len(entries), **counts, "persons": persons}


def main(argv: list[str] | None = None) -> int:
    """``hmrkit predict`` as a standalone command (used by the tests)."""
    parser = OneLineParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    return run(parser.parse_args(argv))


FIT_DESCRIPTION = ("Fit the body model to the people in images: BlazePose finds them and their "
                   "33 landmarks, a method (or the mean pose, from scratch) gives the start, "
                   "the keypoint refiner fits (outputs as hmrkit predict's, with fit_status "
                   "and the fit's final per-term losses).")


def fit_main(argv: list[str] | None = None) -> int:
    """``hmrkit fit`` as a standalone command (used by the tests)."""
    parser = OneLineParser(prog="hmrkit fit", description=FIT_DESCRIPTION, epilog=EPILOG)
    add_arguments(parser, fit=True)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
