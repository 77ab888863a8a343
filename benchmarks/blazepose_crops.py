"""BlazePose's landmarks on the crops hmrkit's models read, against the labels (no detector).

``docs/blazepose.md`` measures BlazePose end to end (its own detector and ROI) on synth-v1.
A model with a BlazePose backbone reads instead the crop its data builds: MediaPipe's rotated
square from the labelled keypoints (``crop_style="blazepose"``, what training, the feature cache
and ``hmrkit evaluate`` cut), or, for comparison, the upright square around the labelled box
(``--crop-style box``: 1.2 x the person's extent, not turned). For every person of the split
(``visible_fraction >= 0.3``, as ``hmrkit evaluate``), over the 12 COCO limb joints:

- 2D error of the landmarks (heatmap-refined, back in the full image) against the labels
  (labelled-visible joints), in % of the labelled box size: median, mean, PCK@5 %, PCK@10 %;
- world landmarks against the labelled 3D joint centres after a similarity Procrustes
  alignment (PA-MPJPE, mm), next to the mean skeleton aligned the same way.

    python benchmarks/blazepose_crops.py --data data/synth/synth-v1 --variant full --limit 600
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from hmrkit.blazepose.names import LIMB_INDICES
from hmrkit.data.dataset import SyntheticDataset
from hmrkit.data.formats import evenly_spaced
from hmrkit.geometry.crops import CropBox
from hmrkit.geometry.procrustes import similarity_procrustes
from hmrkit.models.backbones import BlazePoseBackbone

BP, COCO, SMPL = (list(LIMB_INDICES[k]) for k in ("blazepose33", "coco17", "smpl24"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/synth/synth-v1")
    ap.add_argument("--variant", default="full", choices=("lite", "full", "heavy"))
    ap.add_argument("--crop-style", default="blazepose", choices=("blazepose", "box"))
    ap.add_argument("--limit", type=int, default=None, help="persons, evenly spread")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    keys = ("image", "crop_affine", "box_center", "box_size", "keypoints2d/coco17", "joints3d",
            *(("box_rotation",) if args.crop_style == "blazepose" else ()))
    ds = evenly_spaced(SyntheticDataset(args.data, split=None, crop_size=256, keys=keys,
                                        crop_style=args.crop_style), args.limit)
    bb = BlazePoseBackbone(variant=args.variant, inputs=("landmarks", "world")).eval()
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch)
    errors, pred_w, true_w = [], [], []
    t0 = time.time()
    for batch in loader:
        with torch.no_grad():
            raw = bb.raw(batch["image"])
        b = {k: v.double() for k, v in batch.items()}
        crop = CropBox.from_sample(b, 256)
        full = crop.to_full(raw["landmarks"][:, :33, :2].double())[:, BP]
        truth = b["keypoints2d/coco17"][:, COCO]
        d = (full - truth[..., :2]).norm(dim=-1) / b["box_size"][:, None] * 100
        errors.extend(d[truth[..., 2] > 0].tolist())
        pred_w.append(raw["world"][:, BP].double())
        true_w.append(b["joints3d"][:, SMPL])
    seconds = time.time() - t0
    e = np.asarray(errors)
    pred, true = torch.cat(pred_w), torch.cat(true_w)
    aligned, _ = similarity_procrustes(pred, true)
    pa = (aligned - true).norm(dim=-1).mean(-1) * 1000
    mean_skel = true.mean(0, keepdim=True).expand_as(true).contiguous()
    aligned_mean, _ = similarity_procrustes(mean_skel, true)
    pa_mean = (aligned_mean - true).norm(dim=-1).mean(-1) * 1000
    figures = {
        "data": args.data, "variant": args.variant, "crop_style": args.crop_style,
        "persons": len(ds), "joints": int(len(e)),
        "median_error_pct_box": float(np.median(e)), "mean_error_pct_box": float(e.mean()),
        "pck5": float((e < 5).mean()), "pck10": float((e < 10).mean()),
        "world_pa_mpjpe_mm_mean": float(pa.mean()), "world_pa_mpjpe_mm_median": float(pa.median()),
        "mean_skeleton_pa_mpjpe_mm_mean": float(pa_mean.mean()),
        "seconds": seconds, "threads": args.threads,
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        from hmrkit.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
