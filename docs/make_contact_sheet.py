"""Contact sheet of random training samples: crop, ground-truth mesh + keypoints, IUV.

    python docs/make_contact_sheet.py --data DIR --out docs/synth_contact_sheet.jpg

``DIR`` is a folder written by ``hmrkit synth``; samples are read through the training
reader (``SyntheticDataset``), so the sheet checks the labels the methods consume.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from hmrkit.body import load_body_model
from hmrkit.body.keypoints import get_keypoint_set
from hmrkit.data.dataset import SyntheticDataset
from hmrkit.geometry.cameras import Camera
from hmrkit.render.draw import contact_sheet, draw_keypoints, overlay, shade, write_image


def crop_intrinsics(sample) -> np.ndarray:
    """Intrinsics of the crop: the crop affine applied after the full-image camera."""
    batch = {k: v[None] for k, v in sample.items()}
    K = Camera.from_sample(batch).K[0].double().numpy()
    A = np.vstack([sample["crop_affine"].double().numpy(), [0, 0, 1]])
    return A @ K


def iuv_colors(iuv: np.ndarray) -> np.ndarray:
    """Part index as hue-ish colour, modulated by U and V."""
    part, u, v = iuv[0], iuv[1], iuv[2]
    rng = np.random.default_rng(0)
    palette = rng.uniform(60, 255, (25, 3))
    palette[0] = 255
    rgb = palette[part.astype(int)] * (0.6 + 0.4 * np.stack([u, v, 1 - u], -1))
    rgb[part == 0] = 255
    return rgb.clip(0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="docs/synth_contact_sheet.jpg")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = SyntheticDataset(args.data, split=None, crop_size=args.size)
    body = load_body_model("anny24-full", dtype=torch.float64)
    faces = body.faces.numpy()
    coco = get_keypoint_set("coco17")
    pick = np.random.default_rng(args.seed).choice(len(dataset), args.n, replace=False)
    tiles = []
    for i in pick:
        s = dataset[int(i)]
        img = (s["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        with torch.no_grad():
            out = body(s["global_orient"][None].double(), s["body_pose"][None].double(),
                       s["betas"][None].double(), s["transl"][None].double())
        rgba = shade(out.vertices[0].numpy(), faces, crop_intrinsics(s), (args.size,) * 2)
        A = s["crop_affine"].numpy()
        kp = s["keypoints2d/coco17"].numpy()
        kp_crop = kp[:, :2] @ A[:, :2].T + A[:, 2]
        gt = draw_keypoints(overlay(img, rgba, 0.6), kp_crop, coco.edges, kp[:, 2], radius=2)
        tiles += [img, gt, iuv_colors(s["iuv"].numpy())]
    write_image(args.out, contact_sheet(tiles, columns=12, pad=2))
    print(f"wrote {args.out} ({args.n} samples: crop, GT mesh + COCO keypoints, IUV)")


if __name__ == "__main__":
    main()
