"""``hmrkit predict``: body meshes from images, folders or videos; and ``hmrkit fit``: the
same run, starting from a method or from scratch (the mean pose in each box), always with the
keypoint fit to the detector's 33 landmarks.

``hmrkit predict photo.jpg --out out/`` runs the default model
(:data:`hmrkit.models.weights.DEFAULT_MODEL`) on every person that hmrkit's BlazePose detector
finds (:mod:`hmrkit.blazepose`: all anchors, non-maximum suppression, MediaPipe's rotated-square
crop, 33 landmarks per person), then fits each body to those landmarks (the ``keypoints``
refiner, :mod:`hmrkit.fit`; ``--refiner none`` turns it off). For every input image (or kept
video frame) and every person in it, it writes into ``--out``:

- ``<stem>_p<k>.obj/.ply/.glb``: the mesh (``--formats``) in the y-up view frame of the photo's
  camera, glTF's convention, so that viewers show people upright: x right, y up, z towards
  the viewer; a camera-frame point ``(x, y, z)`` is written as ``(x, -y, -z)``
  (:data:`hmrkit.io.MESH_FRAME`);
- ``<stem>_p<k>.npz`` and ``<stem>_p<k>.json``: the parameters in the camera frame (x right,
  y down, z forward, metres; named under ``frame``): ``global_orient`` (3, 3), ``body_pose``
  (23, 3, 3), ``betas``, ``transl``, ``cam_crop``; the box the model read (``box_center``,
  ``box_size``, ``box_rotation`` for rotated boxes) and the camera (``focal``,
  ``principal_point``, ``image_size`` (W, H)); ``joints3d`` (24, 3) and ``keypoints2d`` (24, 2)
  their projection in full-image pixels; the body model's name; and for detected people the
  detector's findings (``blazepose_*``: 33 landmarks in full-image pixels with visibility and
  presence, metric world landmarks, the detection score, the pose presence and the rotated
  ROI; names under ``blazepose_landmark_names``);
- for methods with a world-frame output (W-HMR) also ``<stem>_p<k>_world.obj/.ply/.glb``:
  the mesh in the world frame (y up, about its root joint; written as is), and
  ``world_global_orient``, ``joints3d_world``, ``cam_to_world`` (the camera rotation used) in
  the parameters;
- ``<stem>_overlay.png`` (all persons rendered over the image) and ``<stem>_side.png`` (a side
  view of them, same size; ``--no-side-view`` skips it), at most ``--overlay-size`` pixels on
  the longer side (large photos are shrunk for drawing only: meshes and parameters keep the
  full-resolution camera);

and one ``index.json`` for the run. ``k`` counts the persons of an image from 0 (detector: best
score first; boxes file: file order). Stems are the file stems (``name_2`` etc. when two
inputs share one); video frames are ``<video stem>_f<frame index, 6 digits>``.

Persons come from the detector (default; ``--detector-model`` picks the landmark network), from
``--boxes FILE`` (JSON ``{"image": [[x0, y0, x1, y1], ...]}``, keys being the path as given on
the command line or found in a folder, the file name, or for video frames ``"<video
name>:<frame index>"`` or the frame's stem; images that are absent or have ``[]`` are skipped as
"no person"), or with ``--detector none`` from the whole image (one person, the square box
centred on the image with side ``max(W, H)``; said on stderr). A method that reads rotated
boxes (``box_rotation`` in its :meth:`~hmrkit.models.methods.base.Method.input_keys`, or a
``crop_style`` of ``"blazepose"``) gets the detector's rotated square; others get the upright
square around the 33 landmarks (:data:`LANDMARK_BOX_SCALE`), like the boxes they were trained
on.

Only light modules are imported at load time (the ``hmrkit`` parser imports this one); torch,
the detector and the model code load when :func:`run` needs them.

Exit status: 0 when at least one image gave a result; 1 when none did (every image unreadable
or without a person); 2 for usage errors reported on one line: an input that does not exist, a
folder with no images, an unreadable checkpoint or boxes file, detector files not fetched.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hmrkit.args import (
    OneLineParser,
    non_negative_int,
    output_folder,
    positive_float,
    positive_int,
)
from hmrkit.models.weights import DEFAULT_MODEL

LOADED_AT = time.perf_counter()
"""When this module was imported (within a fraction of a second of ``hmrkit`` starting):
``index.json``'s ``first_result_s`` counts from here."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
MESH_FORMATS = ("obj", "ply", "glb")
KEYPOINT_BOX_SCALE = 1.2
"""``--boxes`` box -> square box: ``scale`` x its longer side (SPIN's 3DPW protocol)."""
LANDMARK_BOX_SCALE = 1.33
"""Square around the 33 BlazePose landmarks, ``scale`` x their longer extent: the upright box
a method trained on synthetic boxes gets. Synthetic boxes are 1.2 x the extent of the whole
projected body; the landmarks stop at the eyes and the feet's points, so the same box needs a
larger factor (measured on synth-v1 by ``benchmarks/detector_boxes.py``, docs/predict.md)."""
DETECTORS = ("blazepose", "none", "mediapipe")
"""``--detector`` values; ``mediapipe`` is the old name of the built-in BlazePose detector."""
DETECTOR_MODELS = ("lite", "full", "heavy")
OVERLAY_SIZE = 1600
"""Default ``--overlay-size``: overlays and side views of larger photos are drawn shrunk to this
longer side (:func:`hmrkit.render.draw.fit_picture`); meshes and parameters keep the
full-resolution camera."""
MIN_BOX_SIDE = 16.0
"""Detected persons whose box is smaller (pixels) are dropped: no model reads them well."""
DEFAULT_DETECTOR_REFINER = "keypoints"
"""The refiner ``hmrkit predict`` runs after the model when BlazePose found the persons: the
fit to their 33 landmarks (:mod:`hmrkit.fit`; docs/real_photos.md measures what it buys)."""
WHOLE_IMAGE_NOTE = ("no detector (--detector none): each image is taken as one person, the "
                    "square box centred on the image with side max(W, H)")
PROG = "hmrkit predict"
DESCRIPTION = ("Body meshes, parameters and pictures of every person in images, folders or "
               "videos (default: the shipped model on the people hmrkit's BlazePose detector "
               "finds).")
EPILOG = ("exit status: 0 if at least one image gave a result, 1 if none did, 2 for a usage "
          "error (missing input, folder without images, bad checkpoint or boxes file, "
          "detector files not fetched)")


class PredictError(Exception):
    """A usage problem (bad input, checkpoint, boxes or detector), reported on one line."""


@dataclass
class PersonBox:
    """One person for the model: a square box in full-image pixels, and what found it."""

    center: np.ndarray
    """(2,) box centre."""
    size: float
    """Box side."""
    rotation: float | None = None
    """In-plane angle (radians, :func:`hmrkit.geometry.crops.crop_matrix`); None: upright."""
    detection: dict[str, np.ndarray] = field(default_factory=dict)
    """The detector's findings, written with the person's parameters (``blazepose_*``)."""


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
    boxes: list[PersonBox]
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


def _score(text: str) -> float:
    """A detector score threshold in (0, 1)."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser, fit: bool = False) -> None:
    """Add the options of ``hmrkit predict`` (``fit``: of ``hmrkit fit``) to ``parser``."""
    parser.add_argument("inputs", nargs="+", help="image files, folders of images or videos")
    parser.add_argument("--out", required=True, type=output_folder, help="output folder")
    if fit:
        parser.add_argument("--checkpoint", help="start from this method's estimates "
                            "(default: from scratch, the mean pose placed in each box)")
    else:
        parser.add_argument("--checkpoint", help="trained method (.ckpt or export; default: "
                            f"the shipped model, hmrkit/models/weights/{DEFAULT_MODEL.name})")
    parser.set_defaults(fit=fit)
    persons = parser.add_mutually_exclusive_group()
    persons.add_argument("--boxes", help='JSON {"image": [[x0, y0, x1, y1], ...]} of persons '
                         "(instead of the detector)")
    persons.add_argument("--detector", choices=DETECTORS, default="blazepose",
                         help="blazepose (default): every person hmrkit's BlazePose finds; "
                         "none: the whole image is one person (mediapipe: old name of "
                         "blazepose)")
    parser.add_argument("--detector-model", choices=DETECTOR_MODELS, default="full",
                        help="BlazePose landmark network (default full)")
    parser.add_argument("--min-score", type=_score, default=0.5,
                        help="detector score threshold (default 0.5)")
    parser.add_argument("--box-scale", type=positive_float, default=KEYPOINT_BOX_SCALE,
                        help="square side = scale x longer side of a --boxes box (default 1.2)")
    parser.add_argument("--focal", type=positive_float,
                        help="focal length in pixels (default sqrt(W^2 + H^2))")
    parser.add_argument("--refiner", "--refine", default="keypoints" if fit else None,
                        help="a refinement stage after the method, by name or class path "
                        "(identity, keypoints, dense, ...; none: no refinement). Default: "
                        "keypoints (the fit to the detector's 33 landmarks) for persons the "
                        "BlazePose detector finds, none with --boxes or --detector none")
    parser.add_argument("--refiner-arg", action="append", metavar="NAME=VALUE",
                        help="an option of the refiner (repeatable), e.g. min_confidence=0.3")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda[:i]")
    parser.add_argument("--threads", type=non_negative_int, default=1,
                        help="CPU threads for torch (default 1: the per-image work is small, "
                        "and more threads stall on a busy machine; 0: torch's default)")
    parser.add_argument("--batch-size", type=positive_int, default=16,
                        help="persons per model call (default 16)")
    parser.add_argument("--formats", type=_formats, default=MESH_FORMATS,
                        help="mesh formats to write (default obj,ply,glb; '' for none)")
    parser.add_argument("--overlay-size", type=positive_int, default=OVERLAY_SIZE,
                        help="longer side of overlays and side views at most this many "
                        f"pixels (default {OVERLAY_SIZE}; meshes keep full resolution)")
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
    import cv2

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

BoxSource = Callable[[Frame], tuple[list[PersonBox], str]]
"""Frame -> its persons, and the reason to report when there are none."""


def whole_image_box(frame: Frame) -> tuple[list[PersonBox], str]:
    """One person: the square box centred on the image with side ``max(W, H)``."""
    H, W = frame.image.shape[:2]
    return [PersonBox(np.array([W / 2, H / 2]), float(max(W, H)))], ""


def square_box(xyxy, scale: float = 1.0) -> PersonBox:
    """Square box around ``[x0, y0, x1, y1]``: same centre, side ``scale`` x the longer side."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    return PersonBox(np.array([(x0 + x1) / 2, (y0 + y1) / 2]), scale * max(x1 - x0, y1 - y0))


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

    def lookup(frame: Frame) -> tuple[list[PersonBox], str]:
        for key in frame.keys:
            if key in table:
                return table[key], "empty box list in the boxes file"
        return [], "not in the boxes file"

    return lookup


def detection_record(person) -> dict[str, np.ndarray]:
    """What BlazePose found of one person (a :class:`hmrkit.blazepose.Person`), as the
    ``blazepose_*`` arrays of the person's NPZ / JSON."""
    f32 = np.float32
    return {
        "blazepose_landmarks": person.landmarks.astype(f32),
        "blazepose_visibility": person.visibility.astype(f32),
        "blazepose_presence": person.landmark_presence.astype(f32),
        "blazepose_world": person.world.astype(f32),
        "blazepose_score": f32(person.detection.score),
        "blazepose_pose_presence": f32(person.presence),
        "blazepose_roi_center": person.center.astype(f32),
        "blazepose_roi_size": f32(person.size),
        "blazepose_roi_rotation": f32(person.rotation),
    }


class DetectedPeople:
    """Every person hmrkit's BlazePose detector finds in a frame, as boxes for a method.

    ``rotated``: give the detector's rotated square (MediaPipe's ROI: centre at the hips, side
    2.5 x the hip-to-head-point distance, turned upright); otherwise the upright square around
    the 33 landmarks, :data:`LANDMARK_BOX_SCALE` x their extent. People whose pose presence is
    below BlazePose's threshold or whose box is under :data:`MIN_BOX_SIDE` pixels (or not
    finite) are dropped, and the reason says how many of each.
    """

    def __init__(self, blazepose, rotated: bool):
        self.blazepose, self.rotated = blazepose, rotated

    def box(self, person) -> PersonBox:
        """The box of one detected person (see the class doc)."""
        if self.rotated:
            return PersonBox(person.center.astype(np.float64), float(person.size),
                             float(person.rotation), detection_record(person))
        import torch

        from hmrkit.geometry.crops import box_from_keypoints

        center, size = box_from_keypoints(torch.from_numpy(person.landmarks[:, :2]).double(),
                                          scale=LANDMARK_BOX_SCALE)
        return PersonBox(center.numpy(), float(size), None, detection_record(person))

    def __call__(self, frame: Frame) -> tuple[list[PersonBox], str]:
        bp = self.blazepose
        detections = bp.detect_people([frame.image])[0]
        if not detections:
            return [], "no person detected"
        people = bp.estimate([frame.image], [detections])[0]
        dropped = Counter({f"pose presence under {bp.min_presence}": len(detections) -
                           len(people)})
        boxes = []
        for person in people:
            box = self.box(person)
            if not (np.isfinite(box.center).all() and np.isfinite(box.size)
                    and box.size >= MIN_BOX_SIDE):
                dropped[f"box under {MIN_BOX_SIDE:g} px"] += 1
                continue
            boxes.append(box)
        if boxes:
            return boxes, ""
        why = ", ".join(f"{k}: {v}" for k, v in dropped.items() if v)
        return [], f"{len(detections)} detection(s), none passed the checks ({why})"


def load_detector(variant: str, device: str, min_score: float):
    """hmrkit's BlazePose (:class:`hmrkit.blazepose.BlazePose`); :class:`PredictError` when its
    converted files are missing or corrupt (the message names the fetch command)."""
    from hmrkit.blazepose import BlazePose, BlazePoseModelError

    try:
        return BlazePose(variant, device=device, min_score=min_score)
    except BlazePoseModelError as err:
        raise PredictError(f"the BlazePose detector cannot load: {err} (or give --boxes FILE "
                           "or --detector none)") from None


# --------------------------------------------------------------------------- model


def _torch_device(device: str):
    """``torch.device(device)``; :class:`PredictError` when it is not usable."""
    import torch

    try:
        torch_device = torch.device(device)
    except RuntimeError as err:
        raise PredictError(f"--device {device}: {err}") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise PredictError(f"--device {device}: CUDA is not available")
    return torch_device


def load_model(checkpoint: str | Path | None, device: str):
    """The method of ``checkpoint`` on ``device`` (None: the mean-pose method, the start of a
    fit from scratch); :class:`PredictError` for bad files."""
    torch_device = _torch_device(device)
    if checkpoint is None:
        from hmrkit.models.registry import method_class

        return method_class("mean-pose")().to(torch_device).eval()
    from hmrkit.models.checkpoints import CheckpointError, load_method

    try:
        return load_method(checkpoint, torch_device)
    except CheckpointError as err:
        raise PredictError(str(err)) from None
    except (OSError, ValueError) as err:  # e.g. the method's body model file is missing
        raise PredictError(f"cannot load the method of {checkpoint}: {err}") from None


def reads_rotated_boxes(model) -> bool:
    """Whether ``model`` reads rotated boxes: MediaPipe-style crops (``crop_style ==
    "blazepose"``) or ``box_rotation`` among its input keys."""
    return (getattr(model, "crop_style", "box") == "blazepose"
            or "box_rotation" in model.input_keys())


def make_batch(people: list[tuple[np.ndarray, PersonBox, float | None]], res: int | None,
               rois: int = 1, rotated: bool = False, crop_style: str = "box",
               keys: tuple[str, ...] = ()) -> dict:
    """Model input for ``(image, box, focal)`` persons: crops, boxes and cameras (float32).

    Every person is cut by :func:`hmrkit.data.images.person_crop` (``res`` None: the geometry
    only, for methods that read no image); ``rois > 1`` (Multi-RoI methods) also adds the
    ``rois/*`` keys: the first ``rois`` RoIs around each box, RoI 0 the box itself, as datasets
    built with ``rois=M`` hold them. ``rotated``: every box has ``box_rotation`` (0 for upright
    boxes); otherwise rotations are not used. ``focal`` None: the default ``sqrt(W^2 + H^2)``.
    ``crop_style="blazepose"`` (the method's) samples rotated boxes as MediaPipe does
    (:func:`hmrkit.blazepose.roi.sampling_center`, edge pixels replicated).
    ``"full_image"`` in ``keys`` adds the whole image letterboxed to ``res`` (camera-rotation
    estimators), as the synthetic reader cuts it.
    """
    import torch

    from hmrkit.data.images import person_crop
    from hmrkit.geometry.cameras import Camera

    wanted = keys
    keys = []
    for image, box, _ in people:
        center, size = box.center, box.size
        rotation = (box.rotation or 0.0) if rotated else None
        border = "zero"
        if crop_style == "blazepose" and res is not None:
            from hmrkit.blazepose.roi import sampling_center

            rotation = float(rotation or 0.0)
            center = sampling_center(torch.as_tensor(center, dtype=torch.float64), size,
                                     rotation, res).numpy()
            border = "replicate"
        keys.append(person_crop(None if res is None else image, center, size, res or 1,
                                rois=rois, rotation=rotation, border=border)
                    .sample_keys(rois=rois > 1))
    if "full_image" in wanted and res is not None:
        for p, (image, _, _) in zip(keys, people, strict=True):
            H, W = image.shape[:2]
            p["full_image"] = person_crop(image, (W / 2, H / 2), max(W, H), res).images[0]
    batch = {k: torch.from_numpy(np.stack([p[k] for p in keys])) for k in keys[0]}
    wh = torch.tensor([[im.shape[1], im.shape[0]] for im, _, _ in people], dtype=torch.float64)
    focal = [f for _, _, f in people]
    camera = Camera.default(wh, None if focal[0] is None else torch.tensor(focal))
    batch.update(camera.to_sample())
    if all(box.detection for _, box, _ in people):  # the detector's landmarks, for refiners
        det = [box.detection for _, box, _ in people]
        batch["keypoints2d/blazepose33"] = torch.from_numpy(np.stack([np.concatenate(
            [d["blazepose_landmarks"][:, :2], d["blazepose_visibility"][:, None]], 1)
            for d in det]))
        batch["keypoints3d/blazepose33"] = torch.from_numpy(np.stack([np.concatenate(
            [d["blazepose_world"][:, :3], d["blazepose_visibility"][:, None]], 1)
            for d in det]))
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
    for key, value in est.extras.items():  # a fitting refiner's record: fit_status, fit_<term>
        if key.startswith("fit/") and isinstance(value, torch.Tensor) and len(value) == len(
                transl):
            fields[key.replace("/", "_")] = value.detach().cpu().double()
    world = est.world_output()
    if world is not None:  # world frame (y up), each body about its root joint
        fields["world_global_orient"] = est.world_global_orient.cpu().double()
        fields["vertices_world"] = world.vertices.cpu().double()
        fields["joints3d_world"] = world.joints.cpu().double()
        if camera.cam_to_world is not None:
            fields["cam_to_world"] = camera.cam_to_world
    fields.update({"box_center": b["box_center"], "box_size": b["box_size"]})
    if "box_rotation" in b:
        fields["box_rotation"] = b["box_rotation"]
    fields.update({
        "focal": camera.focal, "principal_point": camera.principal_point,
        "image_size": camera.image_size, "vertices": vertices + transl[:, None],
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

    rotated = reads_rotated_boxes(model)
    results = []
    for start in range(0, len(people), batch_size):
        batch = make_batch(people[start : start + batch_size], model.crop_size, model.num_rois,
                           rotated, getattr(model, "crop_style", "box"),
                           tuple(model.input_keys()))
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
    """Arrays as nested lists, 0-d arrays as numbers or strings."""
    return value.tolist() if value.ndim else value.item()


def write_person(out: Path, name: str, person: dict, faces, formats, body_model: str,
                 detection: dict[str, np.ndarray] | None = None) -> dict:
    """Meshes, NPZ and JSON of one person (plus the detector's findings); returns their file
    names by kind."""
    from hmrkit.io import CAMERA_FRAME, MESH_FRAME, atomic_save_npz, atomic_write_text, save_mesh

    files = {}
    for fmt in formats:
        files[fmt] = f"{name}.{fmt}"
        save_mesh(out / files[fmt], person["vertices"], faces)
        if "vertices_world" in person:  # already y up: written as is
            files[f"world_{fmt}"] = f"{name}_world.{fmt}"
            save_mesh(out / files[f"world_{fmt}"], person["vertices_world"], faces,
                      camera_frame=False)
    arrays = {k: v.astype(np.float32) for k, v in person.items() if not k.startswith("vertices")}
    arrays.update(detection or {})
    text = {"body_model": body_model, "frame": CAMERA_FRAME, "mesh_frame": MESH_FRAME}
    if detection:
        from hmrkit.blazepose.names import BLAZEPOSE33_NAMES

        arrays["blazepose_landmark_names"] = np.array(BLAZEPOSE33_NAMES)
    files["npz"], files["json"] = f"{name}.npz", f"{name}.json"
    atomic_save_npz(out / files["npz"], {**arrays, **{k: np.array(v) for k, v in text.items()}})
    record = {k: _json_value(v) for k, v in arrays.items()}
    atomic_write_text(out / files["json"], json.dumps({**record, **text}))
    return files


def write_job(job: Job, out: Path, faces: np.ndarray, formats, body_model: str,
              side_view: bool, overlay_size: int | None = None) -> None:
    """All outputs of one frame; fills in its ``index.json`` entry. Overlays and side views are
    at most ``overlay_size`` pixels on the longer side (:func:`hmrkit.render.draw.fit_picture`)."""
    from hmrkit.render.draw import fit_picture, render_overlay, render_side, write_image

    frame, entry = job.frame, job.entry
    for k, (person, box) in enumerate(zip(job.results, job.boxes, strict=True)):
        files = write_person(out, f"{frame.stem}_p{k}", person, faces, formats, body_model,
                             box.detection)
        item = {"index": k, "box_center": box.center.tolist(), "box_size": box.size}
        if box.rotation is not None:
            item["box_rotation"] = box.rotation
        if box.detection:
            item["detector_score"] = float(box.detection["blazepose_score"])
        entry["persons"].append({**item, "files": files})
    vertex_sets = [p["vertices"] for p in job.results]
    picture, camera = fit_picture(frame.image, _cameras(job.results), overlay_size)
    entry["overlay"] = f"{frame.stem}_overlay.png"
    write_image(out / entry["overlay"], render_overlay(picture, vertex_sets, faces, camera))
    if side_view:
        entry["side"] = f"{frame.stem}_side.png"
        size = (picture.shape[1], picture.shape[0])
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


def _prog(args: argparse.Namespace) -> str:
    """The command's name in messages: ``hmrkit fit`` or ``hmrkit predict``."""
    return "hmrkit fit" if getattr(args, "fit", False) else PROG


def _report(message: str, prog: str = PROG) -> None:
    """One line on stderr (through tqdm so that a progress bar stays intact)."""
    tqdm.write(f"{prog}: {message}", file=sys.stderr)


def _setup(args: argparse.Namespace):
    """Sources, box source, model and refiner for ``args`` (raises :class:`PredictError`)."""
    sources = collect_sources(args.inputs)
    t0 = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    detector = None
    if args.boxes:
        boxes = load_boxes(args.boxes, args.box_scale)
    elif args.detector == "none":
        boxes = whole_image_box
    else:  # fail on missing detector files before the model loads
        detector = load_detector(args.detector_model, args.device, args.min_score)
    model = load_model(None if args.fit and not args.checkpoint else
                       args.checkpoint or DEFAULT_MODEL, args.device)
    if detector is not None:
        boxes = DetectedPeople(detector, reads_rotated_boxes(model))
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
    """Runs a method over frames in batches of persons, writes their outputs, keeps the index.

    The first frame with persons is written at once (so that a first result comes as soon as
    possible); later frames are queued until ``--batch-size`` persons wait."""

    def __init__(self, model, args: argparse.Namespace, find_boxes: BoxSource, refiner=None):
        self.model, self.args, self.find_boxes = model, args, find_boxes
        self.refiner = refiner
        self.out = Path(args.out)
        self.faces = model.body.faces.cpu().numpy()
        self.body_model = model.body.name
        self.entries: list[dict] = []
        self.pending: list[Job] = []
        self.timing = {"read_s": 0.0, "detect_s": 0.0, "model_s": 0.0, "write_s": 0.0}
        self.first_result_s: float | None = None

    def add(self, frame: Frame) -> None:
        """Queue a frame (or record why it is skipped); runs the model when a batch is full."""
        entry = _new_entry(frame)
        self.entries.append(entry)
        name = frame.source.path.as_posix() + ("" if frame.index is None else f":{frame.index}")
        if frame.image is None:
            return self._skip(entry, "unreadable", name, frame.error)
        t0 = time.perf_counter()
        boxes, reason = self.find_boxes(frame)
        self.timing["detect_s"] += time.perf_counter() - t0
        if not boxes:
            return self._skip(entry, "no person", name, reason)
        self.pending.append(Job(frame, boxes, self.args.focal, entry))
        waiting = sum(len(j.boxes) for j in self.pending)
        if waiting >= self.args.batch_size or self.first_result_s is None:
            self.flush()

    def _skip(self, entry: dict, status: str, name: str, reason: str) -> None:
        """Mark an entry as skipped and say so on stderr."""
        entry.update(status=status, reason=reason)
        _report(f"skipped {name}: {status} ({reason})", _prog(self.args))

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
                      not self.args.no_side_view, self.args.overlay_size)
        self.timing["model_s"] += t1 - t0
        self.timing["write_s"] += time.perf_counter() - t1
        if self.first_result_s is None:
            self.first_result_s = time.perf_counter() - LOADED_AT
        self.pending.clear()

    def index(self, timing: dict) -> dict:
        """The content of ``index.json``."""
        args, model = self.args, self.model
        detector = None if args.boxes else args.detector
        return {
            "inputs": list(args.inputs), "checkpoint": str(
                args.checkpoint or ("none (from scratch)" if args.fit else DEFAULT_MODEL)),
            "method": f"{type(model).__module__}.{type(model).__qualname__}",
            "body_model": self.body_model, "device": str(args.device),
            "crop_size": model.crop_size, "rotated_boxes": reads_rotated_boxes(model),
            "refiner": args.refiner, "refiner_args": args.refiner_arg or [],
            "options": {"focal": args.focal, "boxes": args.boxes, "detector": detector,
                        "detector_model": args.detector_model if detector else None,
                        "min_score": args.min_score if detector else None,
                        "box_scale": args.box_scale, "formats": list(args.formats),
                        "threads": args.threads, "overlay_size": args.overlay_size,
                        "side_view": not args.no_side_view, "batch_size": args.batch_size,
                        "every": args.every, "max_frames": args.max_frames},
            "images": self.entries, "summary": _summary(self.entries),
            "timing": {k: None if v is None else round(v, 4) for k, v in
                       {**timing, **self.timing, "first_result_s": self.first_result_s}.items()},
        }


def run(args: argparse.Namespace) -> int:
    """Run ``hmrkit predict`` (or ``hmrkit fit``); returns the exit status (see module doc)."""
    start = time.perf_counter()
    prog = _prog(args)
    if args.detector == "mediapipe":
        args.detector = "blazepose"
    if args.refiner is None and not args.boxes and args.detector == "blazepose":
        args.refiner = DEFAULT_DETECTOR_REFINER
    if args.refiner == "none":
        args.refiner = None
    if args.detector == "none" and not args.boxes:
        _report(WHOLE_IMAGE_NOTE, prog)
    try:
        sources, find_boxes, model, refiner, load_s = _setup(args)
    except PredictError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    predictor = Predictor(model, args, find_boxes, refiner)
    predictor.out.mkdir(parents=True, exist_ok=True)
    total = None if any(s.kind == "video" for s in sources) else len(sources)
    frames = _timed(iter_frames(sources, args.every, args.max_frames), predictor.timing)
    try:
        for frame in tqdm(frames, total=total, unit="img", disable=not sys.stderr.isatty()):
            predictor.add(frame)
        if predictor.pending:
            predictor.flush()
    except PredictError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    index = predictor.index({"load_s": load_s, "total_s": time.perf_counter() - start})
    from hmrkit.io import atomic_write_text

    atomic_write_text(predictor.out / "index.json", json.dumps(index, indent=2))
    summary = index["summary"]
    print(f"{prog}: {summary['ok']} of {summary['images']} images, {summary['persons']} "
          f"persons; wrote {predictor.out / 'index.json'}")
    return 0 if summary["ok"] else 1


def _timed(frames: Iterator[Frame], timing: dict) -> Iterator[Frame]:
    """``frames``, adding the time spent reading them to ``timing["read_s"]``."""
    while True:
        t0 = time.perf_counter()
        frame = next(frames, None)
        timing["read_s"] += time.perf_counter() - t0
        if frame is None:
            return
        yield frame


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
