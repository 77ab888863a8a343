"""Where a model's full-image camera goes wrong: the root joint in the camera frame, per axis.

    python benchmarks/camera_depth.py CHECKPOINT [CHECKPOINT ...] [--data data/synth/synth-v1]
        [--limit 400]

For each checkpoint (any method), on ``--limit`` people of a synthetic split (evenly
spread): the median absolute error of the root joint's x, y and z in the full-image camera
frame (mm), the median ratio of predicted to true depth z (1 = unbiased; above 1 = the
person is placed too far, i.e. the camera scale ``b s`` is too small), and the correlation
of predicted and true depth. ``hmrkit evaluate``'s ``root_transl`` is the norm of the same
error; this splits it so a bias (e.g. from the Multi-RoI consistency loss) shows.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import DataLoader


def root_positions(checkpoint: str, data: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) predicted and true root joints in the full-image camera frame, metres."""
    from hmrkit.evaluate import dataset_for
    from hmrkit.models.checkpoints import load_method

    model = load_method(checkpoint, "cpu").eval()
    dataset = dataset_for(model, data, limit=limit)
    pred, true = [], []
    for batch in DataLoader(dataset, batch_size=64):
        with torch.no_grad():
            est = model(batch)
            gt = model.body(batch["global_orient"], batch["body_pose"], batch["betas"])
        pred.append(est.joints[:, 0] + est.transl)
        true.append(gt.joints[:, 0] + batch["transl"])
    return torch.cat(pred).numpy(), torch.cat(true).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", default="data/synth/synth-v1")
    parser.add_argument("--limit", type=int, default=400)
    args = parser.parse_args()
    print("| checkpoint | median abs x / y / z error (mm) | median z pred / true | corr(z) |")
    print("| --- | ---: | ---: | ---: |")
    for ckpt in args.checkpoints:
        pred, true = root_positions(ckpt, args.data, args.limit)
        err = np.median(np.abs(pred - true), axis=0) * 1000.0
        ratio = np.median(pred[:, 2] / true[:, 2])
        corr = np.corrcoef(pred[:, 2], true[:, 2])[0, 1]
        print(f"| {ckpt} | {err[0]:.0f} / {err[1]:.0f} / {err[2]:.0f} | {ratio:.2f} | "
              f"{corr:.2f} |")


if __name__ == "__main__":
    main()
