"""Which BlazePose outputs and which head: heads trained on feature caches, side by side.

    python benchmarks/bp_heads.py --train data/cache/bp-full-train --val data/cache/bp-full-val \
        --inputs trunk landmarks,world trunk,landmarks,world --steps 3000

For each ``--inputs`` set (comma-separated :data:`hmrkit.models.backbones.BLAZEPOSE_INPUTS`)
a method (``--method`` HMR or CLIFF, :mod:`hmrkit.models.methods`) with a frozen
:class:`~hmrkit.models.backbones.BlazePoseBackbone` reading those outputs from the cache and the
head ``--head`` (a class path, ``--head-args`` JSON) is trained on the training cache
(``hmrkit cache``) with Adam, a linear warm-up and a cosine decay, batch ``--batch``, then
scored every ``--eval-every`` steps on the validation cache like ``hmrkit evaluate`` (lsp14:
MPJPE, PA-MPJPE, mm). It is ``hmrkit train`` without Lightning (no data loader: batches are
drawn from the cache in memory), to compare inputs and heads quickly; the models that ship are
trained by ``hmrkit train`` with the configs under ``configs/``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import time
from functools import partial

import torch


def _class(path: str):
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _evaluate(model, val: dict, chunk: int = 256) -> dict[str, float]:
    model.eval()
    sums: dict[str, list] = {}
    n = len(next(iter(val.values())))
    with torch.no_grad():
        for s in range(0, n, chunk):
            batch = {k: v[s : s + chunk] for k, v in val.items()}
            for k, v in model.evaluate_batch(batch).items():
                sums.setdefault(k, []).append(v)
    model.train()
    return {k: float(torch.cat(v).nanmean()) for k, v in sums.items()}


def train(inputs: tuple[str, ...], train_set: dict, val_set: dict, args) -> dict:
    from hmrkit.losses.sets import CLIFFLosses, SPINLosses
    from hmrkit.losses.weights import LossWeights
    from hmrkit.models.backbones import BlazePoseBackbone
    from hmrkit.models.methods import CLIFF, HMR

    torch.manual_seed(args.seed)
    weights = LossWeights(**json.loads(args.loss_weights))
    losses = partial(CLIFFLosses if args.method == "CLIFF" else SPINLosses, weights=weights)
    cls = CLIFF if args.method == "CLIFF" else HMR
    model = cls(backbone=partial(BlazePoseBackbone, variant=args.variant, inputs=inputs),
                head=partial(_class(args.head), **json.loads(args.head_args)), losses=losses,
                crop_size=256)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                 weight_decay=args.weight_decay)

    def factor(step: int) -> float:
        if step < args.warmup:
            return (step + 1) / args.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - args.warmup) / max(args.steps
                                                                         - args.warmup, 1)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    n = len(next(iter(train_set.values())))
    g = torch.Generator().manual_seed(args.seed)
    curve = []
    start = time.perf_counter()
    model.train()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            m = _evaluate(model, val_set)
            curve.append({"step": step, "seconds": round(time.perf_counter() - start, 1),
                          "pa_mpjpe": m["pa_mpjpe"], "mpjpe": m["mpjpe"], "pve": m.get("pve")})
            print(f"{'+'.join(inputs):40s} step {step:5d} ({curve[-1]['seconds']:6.0f} s) val "
                  f"PA-MPJPE {m['pa_mpjpe']:.1f} MPJPE {m['mpjpe']:.1f} PVE {m.get('pve', 0):.1f}",
                  flush=True)
        if step == args.steps:
            break
        index = torch.randint(0, n, (args.batch,), generator=g)
        batch = {k: v[index] for k, v in train_set.items()}
        loss = sum(model.compute_losses(model.estimate(batch), batch).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    return {"inputs": list(inputs), "features": model.backbone.out_features, "curve": curve,
            "minutes": (time.perf_counter() - start) / 60}


def _load(folder, variant: str) -> dict[str, torch.Tensor]:
    from hmrkit.data.feature_cache import FeatureCacheDataset
    from hmrkit.models.backbones import BlazePoseBackbone

    sig = BlazePoseBackbone(variant=variant, inputs=("landmarks",)).cache_signature()
    ds = FeatureCacheDataset(folder, sig)
    return {k: v.float() if v.is_floating_point() else v for k, v in ds.arrays.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--variant", default="full")
    ap.add_argument("--inputs", nargs="+", default=["trunk,landmarks,world"])
    ap.add_argument("--method", default="CLIFF", choices=("HMR", "CLIFF"))
    ap.add_argument("--head", default="hmrkit.models.heads.IterativeRegressor")
    ap.add_argument("--head-args", default="{}")
    ap.add_argument("--loss-weights", default="{}", help="LossWeights fields as JSON")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--train-items", type=int, default=None, help="use the first N items")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_set, val_set = _load(args.train, args.variant), _load(args.val, args.variant)
    if args.train_items:
        train_set = {k: v[: args.train_items] for k, v in train_set.items()}
    rows = [train(tuple(s.split(",")), train_set, val_set, args) for s in args.inputs]
    print(f"\n{args.method}, head {args.head} {args.head_args}, {args.steps} x {args.batch}, "
          f"{len(next(iter(train_set.values())))} training items\n")
    print("| inputs | features | minutes | val PA-MPJPE | val MPJPE |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        last = r["curve"][-1]
        print(f"| {'+'.join(r['inputs'])} | {r['features']} | {r['minutes']:.1f} | "
              f"{last['pa_mpjpe']:.1f} | {last['mpjpe']:.1f} |")
    if args.json:
        from hmrkit.io import atomic_write_text

        atomic_write_text(args.json, json.dumps({"args": vars(args), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
