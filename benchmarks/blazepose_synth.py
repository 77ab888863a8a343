"""BlazePose's own accuracy on hmrkit's synthetic renders (e.g. synth-v1), with no training.

For every full image: detect every person (:class:`hmrkit.blazepose.BlazePose`), match the
detections to the labelled people (Hungarian assignment on the median 2D distance of the 12
COCO limb joints, in box sizes; a pair farther than ``--match`` is no match), then report:

- detection recall (labelled people with a matched detection) and false detections;
- 2D error of the 12 COCO limb joints (shoulders, elbows, wrists, hips, knees, ankles) against
  the labels, over the labelled-visible joints of matched people, in % of the labelled box
  size (1.2 x the person's projected extent): median, mean, PCK@5 % and PCK@10 %, and the same
  PCK counting the joints of missed people as wrong (end to end);
- world-landmark error: BlazePose's metric landmarks of those 12 joints against the labelled
  3D joint centres (SMPL-24 joints of the body model) after a similarity Procrustes alignment
  (PA-MPJPE, mm), next to the mean skeleton of the evaluated people aligned the same way.

    python benchmarks/blazepose_synth.py --data data/synth/synth-v1 --variant full

The people evaluated are those with ``visible_fraction >= --min-visible`` (0.3, as
``hmrkit evaluate``); ``--limit`` evaluates the first N scenes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from hmrkit.blazepose import BlazePose
from hmrkit.blazepose.names import LIMB_INDICES
from hmrkit.data.shards import read_scenes
from hmrkit.geometry.procrustes import similarity_procrustes

BP, COCO, SMPL = (list(LIMB_INDICES[k]) for k in ("blazepose33", "coco17", "smpl24"))



def match(people, labels, keep, threshold):
    """``[(label index, person index, cost)]`` of the Hungarian assignment under ``threshold``."""
    coco = labels["keypoints2d/coco17"][:, COCO]
    size = labels["box_size"]
    idx = np.nonzero(keep)[0]
    if not len(idx) or not people:
        return []
    cost = np.full((len(idx), len(people)), 1e3)
    for a, li in enumerate(idx):
        vis = coco[li, :, 2] > 0
        if not vis.any():
            continue
        for b, p in enumerate(people):
            d = np.linalg.norm(p.landmarks[BP, :2][vis] - coco[li, vis, :2], axis=1)
            cost[a, b] = np.median(d) / size[li]
    rows, cols = linear_sum_assignment(cost)
    return [(int(idx[r]), int(c), float(cost[r, c])) for r, c in zip(rows, cols, strict=True)
            if cost[r, c] < threshold]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/synth/synth-v1")
    ap.add_argument("--variant", default="full", choices=("lite", "full", "heavy"))
    ap.add_argument("--min-visible", type=float, default=0.3)
    ap.add_argument("--min-score", type=float, default=0.5)
    ap.add_argument("--match", type=float, default=0.25,
                    help="largest median joint distance (box sizes) of a match")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch", type=int, default=8, help="images per landmark batch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-refine", action="store_true",
                    help="skip MediaPipe's heatmap refinement of the landmarks")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bp = BlazePose(args.variant, min_score=args.min_score, refine=not args.no_refine)
    errors, missed_joints = [], 0
    world_pred, world_true = [], []
    n_people = n_matched = n_false = n_images = 0
    t0 = time.time()
    batch = []

    def flush():
        nonlocal n_people, n_matched, n_false, n_images, missed_joints
        results = bp.detect_batch([im for im, _ in batch])
        for (_, lab), people in zip(batch, results, strict=True):
            n_images += 1
            keep = lab["visible_fraction"] >= args.min_visible
            n_people += int(keep.sum())
            pairs = match(people, lab, keep, args.match)
            n_matched += len(pairs)
            n_false += len(people) - len(pairs)
            matched = {li for li, _, _ in pairs}
            for li in np.nonzero(keep)[0]:
                if li not in matched:
                    missed_joints += int((lab["keypoints2d/coco17"][li, COCO, 2] > 0).sum())
            for li, pi, _ in pairs:
                truth = lab["keypoints2d/coco17"][li, COCO]
                vis = truth[:, 2] > 0
                d = np.linalg.norm(people[pi].landmarks[BP, :2] - truth[:, :2], axis=1)
                errors.extend((100 * d[vis] / lab["box_size"][li]).tolist())
                world_pred.append(people[pi].world[BP])
                world_true.append(lab["joints3d"][li, SMPL])
        batch.clear()

    for image, labels in read_scenes(args.data, args.limit):
        batch.append((image, labels))
        if len(batch) == args.batch:
            flush()
    if batch:
        flush()
    seconds = time.time() - t0
    e = np.asarray(errors)
    pred = torch.tensor(np.asarray(world_pred), dtype=torch.float64)
    true = torch.tensor(np.asarray(world_true), dtype=torch.float64)
    aligned, _ = similarity_procrustes(pred, true)
    pa = (aligned - true).norm(dim=-1).mean(-1) * 1000
    mean_skel = true.mean(0, keepdim=True).expand_as(true)
    aligned_mean, _ = similarity_procrustes(mean_skel.contiguous(), true)
    pa_mean = (aligned_mean - true).norm(dim=-1).mean(-1) * 1000
    total_joints = len(e) + missed_joints
    figures = {
        "data": args.data, "variant": args.variant, "images": n_images,
        "people": n_people, "min_visible": args.min_visible, "min_score": args.min_score,
        "recall": n_matched / max(n_people, 1), "false_detections": n_false,
        "joints": int(len(e)),
        "median_error_pct_box": float(np.median(e)), "mean_error_pct_box": float(e.mean()),
        "pck5": float((e < 5).mean()), "pck10": float((e < 10).mean()),
        "pck5_end_to_end": float((e < 5).sum() / max(total_joints, 1)),
        "pck10_end_to_end": float((e < 10).sum() / max(total_joints, 1)),
        "world_pa_mpjpe_mm_mean": float(pa.mean()), "world_pa_mpjpe_mm_median": float(pa.median()),
        "mean_skeleton_pa_mpjpe_mm_mean": float(pa_mean.mean()),
        "mean_skeleton_pa_mpjpe_mm_median": float(pa_mean.median()),
        "refine": not args.no_refine, "seconds": seconds, "threads": args.threads,
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        from hmrkit.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
