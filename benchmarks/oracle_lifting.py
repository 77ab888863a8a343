"""How far can a head go on this data? Body-parameter heads fed the TRUE 2D keypoints.

    python benchmarks/oracle_lifting.py                     # synth-v1 people (first pose mix)
    python benchmarks/oracle_lifting.py --poses photo       # synth-v2 people (photo-like mix)

A diagnostic, not a method.  People are drawn exactly as the synthetic scenes draw them
(:meth:`hmrkit.data.synthetic.scene.SceneEngine.people_labels`, no rendering): training
people from the ``train`` stream of the same configuration (seed 0), test people from the
benchmark (the first ``--test-people`` people of synth-v1, or of synth-v2 with ``--poses
photo``).  The input is the labelled 2D joints (``smpl24``, normalised crop coordinates of
the box crop, plus the in-image flag: 72 values); with ``--info`` the lifting head also gets
CLIFF's box information (box centre and size over the focal length).  Two heads read it, in
one run, on the same data, each with its own recipe:

- ``hmr-iterative``: SPIN's iterative regressor (:class:`hmrkit.models.heads.
  IterativeRegressor`, 3 iterations, hidden 512) behind a 72 -> 512 -> 512 MLP embedding, no
  input standardisation, Adam with a constant learning rate 1e-3, batch 64 (the previous
  version of this benchmark);
- ``lifting``: :class:`hmrkit.models.lifting.LiftingRegressor` (Martinez et al. 2017: input
  standardisation, width 1024, 2 residual blocks, batch norm, dropout 0.5), Adam 1e-3 with a
  200-step linear warm-up and a cosine decay, batch 256.

Both are trained with HMR's losses (:class:`hmrkit.losses.sets.SPINLosses`: 2D keypoints in
the crop, pelvis-centred 3D joints, rotation matrices, shape, camera-scale prior) and scored like
``hmrkit evaluate`` (lsp14 protocol: PA-MPJPE and MPJPE in mm).  People are cached under
``--cache`` (generated once: about 40 people/s).  One thread (``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hmrkit.geometry.cameras import Camera
from hmrkit.models.backbones import Backbone

LABELS = ("keypoints2d/smpl24", "keypoints2d/coco17", "keypoints2d/lsp14", "joints3d",
          "global_orient", "body_pose", "betas", "transl", "box_center", "box_size")
CROP = 96


class VectorBackbone(Backbone):
    """A "backbone" whose input (the batch's ``image``) is a vector per person."""

    def from_batch(self, batch: dict[str, torch.Tensor], image_key: str = "image"):
        return self(batch[image_key])


class KeypointInput(VectorBackbone):
    """The iterative head's "backbone": a small MLP embedding of the input vector."""

    def __init__(self, image_size: int, dim: int, width: int = 512):
        super().__init__()
        self.out_features = width
        self.net = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width),
                                 nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VectorInput(VectorBackbone):
    """The lifting head's "backbone": the input vector as it is."""

    def __init__(self, image_size: int, dim: int):
        super().__init__()
        self.out_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def people(config, count: int, cache: Path) -> dict[str, torch.Tensor]:
    """The first ``count`` people of ``config``'s scenes as a batch (cached as .npz)."""
    import json
    import zlib

    from hmrkit.data.synthetic.scene import SceneEngine, config_record
    from hmrkit.geometry.crops import crop_matrix

    crc = zlib.crc32(json.dumps(config_record(config), sort_keys=True).encode())
    path = cache / f"{config.split}-s{config.seed}-{crc:08x}-{count}.npz"
    if path.exists():
        with np.load(path) as f:
            arrays = dict(f)
    else:
        engine = SceneEngine(config)
        rows: dict[str, list] = {k: [] for k in (*LABELS, "image_size", "focal")}
        index, start = 0, time.perf_counter()
        while len(rows["betas"]) < count:
            labels = engine.people_labels(index)
            for p in range(len(labels["betas"])):
                for k in LABELS:
                    rows[k].append(labels[k][p])
                rows["image_size"].append(labels["image_size"])
                rows["focal"].append(labels["focal"])
            index += 1
        arrays = {k: np.asarray(v[:count], np.float32) for k, v in rows.items()}
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        print(f"# {count} people of {config.pose_mix} seed {config.seed} {config.split}: "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    data = {k: torch.as_tensor(v) for k, v in arrays.items()}
    data["crop_affine"] = crop_matrix(data["box_center"], data["box_size"], CROP).float()
    n = len(data["betas"])
    size, focal = data.pop("image_size"), data.pop("focal")
    data.update(Camera.default(size, focal).to_sample())
    for k in ("has_keypoints2d", "has_joints3d", "has_smpl"):
        data[k] = torch.ones(n)
    return data


def inputs(data: dict[str, torch.Tensor], info: bool) -> torch.Tensor:
    """(N, 72 [+ 3]) crop-normalised 2D joints with the in-image flag [+ CLIFF box info]."""
    from hmrkit.geometry.crops import CropBox

    kp = CropBox.from_sample(data, CROP).normalize(data["keypoints2d/smpl24"])
    x = kp.reshape(len(kp), -1)
    if info:
        camera = Camera.from_sample(data)
        f = camera.focal[:, None]
        x = torch.cat([x, (data["box_center"] - camera.principal_point) / f,
                       data["box_size"][:, None] / f], 1)
    return x


def build(kind: str, dim: int, args):
    """An HMR method whose "image" is the input vector, with the head ``kind``."""
    from functools import partial

    from hmrkit.losses.sets import SPINLosses
    from hmrkit.losses.weights import LossWeights
    from hmrkit.models.heads import IterativeRegressor
    from hmrkit.models.lifting import LiftingRegressor
    from hmrkit.models.methods import HMR

    weights = LossWeights()
    if kind == "lifting":
        for item in filter(None, args.loss_weights.split(",")):
            name, value = item.split("=")
            setattr(weights, name, float(value))
        backbone = partial(VectorInput, dim=dim)
        head = partial(LiftingRegressor, width=args.width, dropout=args.dropout,
                       iterations=args.iterations)
    else:
        backbone = partial(KeypointInput, dim=dim)
        head = partial(IterativeRegressor, hidden=512)
    return HMR(backbone=backbone, head=head, losses=partial(SPINLosses, weights=weights),
               crop_size=CROP)


RECIPES = {"hmr-iterative": dict(batch=64, schedule="constant", warmup=0),
           "lifting": dict(batch=256, schedule="cosine", warmup=200)}


def train(kind: str, train_set, test_set, args) -> dict:
    torch.manual_seed(args.seed)
    dim = train_set["image"].shape[1]
    model = build(kind, dim, args)
    recipe = RECIPES[kind]
    steps = args.steps if kind == "lifting" else args.old_steps
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    warm = recipe["warmup"]

    def factor(step: int) -> float:  # linear warm-up, then constant or cosine to 0
        if step < warm:
            return (step + 1) / warm
        if recipe["schedule"] == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(steps - warm, 1)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    n = len(train_set["image"])
    start = time.perf_counter()
    for step in range(steps + 1):
        if step % args.eval_every == 0 or step == steps:
            model.eval()
            metrics = model.evaluate_batch(test_set)
            model.train()
            pa, mp = float(metrics["pa_mpjpe"].mean()), float(metrics["mpjpe"].mean())
            print(f"{kind:14s} step {step:5d} ({time.perf_counter() - start:5.0f} s): test "
                  f"PA-MPJPE {pa:.1f} MPJPE {mp:.1f} mm", flush=True)
        if step == steps:
            break
        index = torch.randint(0, n, (recipe["batch"],))
        batch = {k: v[index] for k, v in train_set.items()}
        loss = sum(model.compute_losses(model(batch), batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return {"head": kind, "steps": steps, "batch": recipe["batch"], "pa": pa, "mpjpe": mp,
            "minutes": (time.perf_counter() - start) / 60}


def main() -> None:
    from hmrkit.data.synthetic.scene import BENCHMARKS, V1_PEOPLE, SceneConfig
    from hmrkit.models.methods import MeanPose

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", choices=("v1", "photo"), default="v1",
                        help="people of synth-v1 (v1) or synth-v2 (photo)")
    parser.add_argument("--train-people", type=int, default=6000)
    parser.add_argument("--test-people", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3000, help="steps of the lifting head")
    parser.add_argument("--old-steps", type=int, default=3000,
                        help="steps of the iterative head")
    parser.add_argument("--heads", default="hmr-iterative,lifting")
    parser.add_argument("--iterations", type=int, default=1, help="lifting head iterations")
    parser.add_argument("--width", type=int, default=1024, help="lifting head width")
    parser.add_argument("--dropout", type=float, default=0.5, help="lifting head dropout")
    parser.add_argument("--loss-weights", default="",
                        help="lifting head loss weights, e.g. 'vertices=60,keypoints_2d=30' "
                        "(LossWeights fields; default: HMR's)")
    parser.add_argument("--info", action="store_true", help="add CLIFF box information")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="data/oracle", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    people_fields = V1_PEOPLE if args.poses == "v1" else {}
    train_set = people(SceneConfig(seed=0, split="train", **people_fields), args.train_people,
                       args.cache)
    test_name = "synth-v1" if args.poses == "v1" else "synth-v2"
    test_set = people(BENCHMARKS[test_name], args.test_people, args.cache)
    for data in (train_set, test_set):
        data["image"] = inputs(data, args.info)
    with torch.no_grad():
        floor = MeanPose().evaluate_batch(test_set)
    rows = [train(kind, train_set, test_set, args) for kind in args.heads.split(",")]
    print(f"\n{test_name} people ({args.test_people}), true 2D joints"
          f"{' + box information' if args.info else ''}, {args.train_people} training people, "
          f"1 thread\n")
    print("| head | steps x batch | minutes | PA-MPJPE | MPJPE |")
    print("| --- | --- | ---: | ---: | ---: |")
    print(f"| mean pose | | | {float(floor['pa_mpjpe'].mean()):.1f} | "
          f"{float(floor['mpjpe'].mean()):.1f} |")
    for r in rows:
        print(f"| {r['head']} | {r['steps']} x {r['batch']} | {r['minutes']:.1f} | "
              f"{r['pa']:.1f} | {r['mpjpe']:.1f} |")


if __name__ == "__main__":
    main()
