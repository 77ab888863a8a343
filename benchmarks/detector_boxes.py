"""How the axis-aligned person box ``hmrkit predict`` makes from BlazePose's landmarks
compares with the labelled boxes of hmrkit's synthetic data (which its models were trained on).

A synthetic person's labelled box is the square around the projection of the whole body
(every vertex, 1.2 x the longer side of the extent, out-of-frame parts included). ``hmrkit
predict`` gives a model that reads axis-aligned boxes the square around all 33 BlazePose
landmarks (out-of-frame ones included: BlazePose places them), ``scale`` x the longer side
(:data:`hmrkit.predict.LANDMARK_BOX_SCALE`). Landmarks stop at the eyes, ears and the feet's
heel and index points, so the scale that gives the labelled size is above 1.2; this script
measures it: for every detected person matched to a label (as ``blazepose_synth.py``), the
ratio ``labelled size / landmark extent`` and the centre offset in labelled box sizes.

    python benchmarks/detector_boxes.py --data data/synth/synth-v1 --limit 300
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from blazepose_synth import match, scenes  # benchmarks/ is on sys.path
from hmrkit.blazepose import BlazePose


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/synth/synth-v1")
    ap.add_argument("--variant", default="full", choices=("lite", "full", "heavy"))
    ap.add_argument("--limit", type=int, default=300, help="first N scenes")
    ap.add_argument("--min-visible", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bp = BlazePose(args.variant)
    ratio, offset, inside = [], [], []
    for image, labels in scenes(args.data, args.limit):
        people = bp.detect(image)
        keep = np.asarray(labels["visible_fraction"]) >= args.min_visible
        for li, pi, _ in match(people, labels, keep, 0.25):
            lm = people[pi].landmarks[:, :2]
            lo, hi = lm.min(0), lm.max(0)
            size = float(labels["box_size"][li])
            ratio.append(size / float((hi - lo).max()))
            offset.append(np.linalg.norm((lo + hi) / 2 - labels["box_center"][li]) / size)
            inside.append(float(labels["visible_fraction"][li]) > 0.9)
    ratio, offset, inside = np.array(ratio), np.array(offset), np.array(inside)
    result = {"people": len(ratio), "fully_visible": int(inside.sum())}
    for name, sel in (("all", np.ones_like(inside)), ("fully visible", inside)):
        result[name] = {
            "size ratio median": round(float(np.median(ratio[sel])), 3),
            "size ratio 10-90 %": [round(float(q), 3) for q in np.quantile(ratio[sel],
                                                                           [0.1, 0.9])],
            "centre offset median (box sizes)": round(float(np.median(offset[sel])), 3),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
