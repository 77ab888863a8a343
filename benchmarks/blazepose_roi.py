"""How MediaPipe's ROI relates to the labels: calibrates the training crops of BlazePose models.

BlazePose's landmark network was trained on MediaPipe's rotated squares: centre at the
detector's hip-centre keypoint ``kp0``, side ``2 x 1.25 x |kp1 - kp0|`` (``kp1``: the point
whose distance from the hips is the radius of a circle around the whole body), turned so that
``kp0 -> kp1`` points up (:func:`hmrkit.blazepose.roi.detection_roi`). At training time there is
no detector, only labels; :func:`hmrkit.blazepose.roi.keypoint_roi` builds the same square from
the labelled 2D keypoints. This script runs the detector on every image of a split, matches
each detection to a labelled person (Hungarian assignment on the distance of the hip centres, in
box sizes) and reports, for the matched people:

- the hip centre: detector ``kp0`` against the labelled COCO hips' midpoint (in detector radii);
- the angle: ``kp0 -> kp1`` against the labelled hips -> shoulders direction (degrees);
- the radius ``|kp1 - kp0|`` against candidate label radii (ratio, its spread); the
  candidate with the smallest spread of ``log(ratio)`` and its median ratio are the constants
  of :func:`~hmrkit.blazepose.roi.keypoint_roi`;
- the same three for :func:`~hmrkit.blazepose.roi.keypoint_roi` itself (after calibration).

    python benchmarks/blazepose_roi.py --data data/synth/val --json runs/roi_calibration.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from hmrkit.blazepose import BlazePose
from hmrkit.blazepose.roi import keypoint_roi, label_radius_candidates
from hmrkit.body.keypoints import COCO17_NAMES
from hmrkit.data.shards import read_scenes

HIPS = [COCO17_NAMES.index("left_hip"), COCO17_NAMES.index("right_hip")]



def angle_of(d: np.ndarray) -> np.ndarray:
    """Image angle of direction vectors ``(..., 2)`` (x right, y down), radians."""
    return np.arctan2(d[..., 1], d[..., 0])


def wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/synth/val")
    ap.add_argument("--min-visible", type=float, default=0.3)
    ap.add_argument("--min-score", type=float, default=0.5)
    ap.add_argument("--match", type=float, default=0.25,
                    help="largest hip-centre distance (box sizes) of a match")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bp = BlazePose("lite", min_score=args.min_score)  # the detector only is used
    rows = []
    t0 = time.time()
    for image, lab in read_scenes(args.data, args.limit):
        dets = bp.detect_people([image])[0]
        keep = np.nonzero(lab["visible_fraction"] >= args.min_visible)[0]
        if not len(dets) or not len(keep):
            continue
        coco = lab["keypoints2d/coco17"]
        hip = coco[:, HIPS, :2].mean(1)
        cost = np.array([[np.linalg.norm(d.keypoints[0] - hip[i]) / lab["box_size"][i]
                          for d in dets] for i in keep])
        r_idx, c_idx = linear_sum_assignment(cost)
        for r, c in zip(r_idx, c_idx, strict=True):
            if cost[r, c] >= args.match:
                continue
            i = keep[r]
            rows.append({
                "kp0": dets[c].keypoints[0], "kp1": dets[c].keypoints[1],
                "coco17": coco[i], "smpl24": lab["keypoints2d/smpl24"][i],
                "box_size": float(lab["box_size"][i]),
            })
    seconds = time.time() - t0
    kp0 = np.stack([r["kp0"] for r in rows]).astype(np.float64)
    kp1 = np.stack([r["kp1"] for r in rows]).astype(np.float64)
    coco = torch.tensor(np.stack([r["coco17"] for r in rows]), dtype=torch.float64)
    smpl = torch.tensor(np.stack([r["smpl24"] for r in rows]), dtype=torch.float64)
    radius = np.linalg.norm(kp1 - kp0, axis=1)
    figures: dict = {"data": args.data, "matched_people": len(rows), "seconds": seconds}

    hip = coco[:, HIPS, :2].mean(1).numpy()
    figures["hip_offset_in_radii"] = {
        "median": float(np.median(np.linalg.norm(kp0 - hip, axis=1) / radius)),
        "p90": float(np.percentile(np.linalg.norm(kp0 - hip, axis=1) / radius, 90)),
    }
    shoulders = coco[:, [5, 6], :2].mean(1).numpy()
    d_angle = np.degrees(wrap(angle_of(kp1 - kp0) - angle_of(shoulders - hip)))
    figures["angle_vs_hips_to_shoulders_deg"] = {
        "mean": float(d_angle.mean()), "median": float(np.median(d_angle)),
        "std": float(d_angle.std()), "p90_abs": float(np.percentile(np.abs(d_angle), 90))}
    cands = label_radius_candidates(coco, smpl)
    table = {}
    for name, value in cands.items():
        ratio = radius / value.numpy()
        log = np.log(ratio)
        table[name] = {"median_ratio": float(np.median(ratio)), "std_log": float(log.std()),
                       "iqr_log": float(np.subtract(*np.percentile(log, [75, 25])))}
    figures["radius_candidates"] = table

    center, size, rotation = keypoint_roi(coco, smpl)
    c, s, rot = center.numpy(), size.numpy(), rotation.numpy()
    det_size = 2 * 1.25 * radius
    # detection_roi's rotation is -r, r = pi/2 - atan2(-dy, dx): compare the two as angles
    det_rot = -wrap(math.pi / 2 - np.arctan2(-(kp1 - kp0)[:, 1], (kp1 - kp0)[:, 0]))
    figures["keypoint_roi_vs_detector"] = {
        "center_offset_in_sides": {
            "median": float(np.median(np.linalg.norm(c - kp0, axis=1) / det_size)),
            "p90": float(np.percentile(np.linalg.norm(c - kp0, axis=1) / det_size, 90))},
        "size_ratio": {"median": float(np.median(s / det_size)),
                       "std_log": float(np.log(s / det_size).std())},
        "rotation_deg": {"mean": float(np.degrees(wrap(rot - det_rot)).mean()),
                         "std": float(np.degrees(wrap(rot - det_rot)).std())},
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        from hmrkit.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
