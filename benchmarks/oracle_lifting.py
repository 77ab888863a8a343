"""How far can a baseline go on this data? The SPIN regressor fed the TRUE 2D keypoints.

    python benchmarks/oracle_lifting.py [--train data/synth/train --test data/synth/synth-v1]

A diagnostic, not a method: the HMR regressor (3 iterations, mean-parameter start, the
SPIN-lineage losses of :class:`hmrkit.models.methods.HMR`) gets a small MLP embedding of the
labelled 2D joints (``smpl24``, normalised crop coordinates, visibility) instead of image
features. Its PA-MPJPE on the test split bounds what an image model with perfect 2D
localisation and the same 3D head can reach; the gap between the two is 2D localisation
(docs/baselines.md).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

LABEL_KEYS = ("crop_affine", "box_center", "box_size", "camera/intrinsics",
              "camera/image_size", "keypoints2d/smpl24", "keypoints2d/coco17",
              "keypoints2d/lsp14", "joints3d", "global_orient", "body_pose", "betas", "transl",
              "has_keypoints2d", "has_joints3d", "has_smpl")


class KeypointInput(nn.Module):
    """A backbone whose "image" is the labelled 2D joints: a small MLP embedding of them."""

    def __init__(self, image_size: int, width: int = 512):
        super().__init__()
        self.out_features = width
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(72, width), nn.ReLU(),
                                 nn.Linear(width, width), nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def load(path: str, limit: int | None, workers: int) -> dict[str, torch.Tensor]:
    from hmrkit.data.formats import build_dataset, evenly_spaced
    from hmrkit.geometry.crops import CropBox

    dataset = evenly_spaced(build_dataset("synth", path, 96, None, 1, keys=LABEL_KEYS), limit)
    batches = list(DataLoader(dataset, batch_size=256, num_workers=workers))
    data = {k: torch.cat([b[k] for b in batches]) for k in LABEL_KEYS}
    keypoints = CropBox.from_sample(data, 96).normalize(data["keypoints2d/smpl24"])
    data["image"] = keypoints.reshape(len(keypoints), -1, 1, 1)  # the "image" is the 2D labels
    return data


def main() -> None:
    from functools import partial

    from hmrkit.models.heads import IterativeRegressor
    from hmrkit.models.methods import HMR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="data/synth/train")
    parser.add_argument("--test", default="data/synth/synth-v1")
    parser.add_argument("--train-limit", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    train, test = load(args.train, args.train_limit, args.workers), load(args.test, None,
                                                                          args.workers)
    model = HMR(backbone=KeypointInput, crop_size=96, head=partial(IterativeRegressor,
                                                                  hidden=512))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = time.perf_counter()
    for step in range(args.steps + 1):
        if step % 500 == 0:
            model.eval()
            metrics = model.evaluate_batch(test)
            model.train()
            print(f"step {step:5d} ({time.perf_counter() - start:5.0f} s): test "
                  f"MPJPE {float(metrics['mpjpe'].nanmean()):.1f} "
                  f"PA-MPJPE {float(metrics['pa_mpjpe'].nanmean()):.1f} mm "
                  f"({len(test['image'])} people)", flush=True)
        if step == args.steps:
            break
        index = torch.randint(0, len(train["image"]), (args.batch_size,))
        batch = {k: v[index] for k, v in train.items()}
        loss = sum(model.compute_losses(model(batch), batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
