"""Throughput of the baselines: inference images/s (batch 1 and 32) and training samples/s.

    python benchmarks/bench_models.py [--res 96] [--backbone resnet18] [--data data/synth/train]

HMR and CLIFF at the same backbone and resolution, measured in one run, interleaved
(CPU machines are noisy; compare the ratios). Inference: model forward (backbone, regressor,
body model) on random crops, no data loading. Training: forward, losses, backward and Adam
step on real samples already in memory; with ``--data``, also the full loop with the
DataLoader (``--workers`` processes) decoding and cropping the shards.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _batch(res: int, n: int) -> dict[str, torch.Tensor]:
    from hmrkit.geometry.cameras import Camera
    from hmrkit.geometry.crops import crop_matrix

    center, size = torch.full((n, 2), 320.0), torch.full((n,), 300.0)
    camera = Camera(torch.tensor([[800.0, 800.0, 320.0, 240.0]] * n),
                    torch.tensor([[640.0, 480.0]] * n))
    return {"image": torch.rand(n, 3, res, res), "box_center": center, "box_size": size,
            "crop_affine": crop_matrix(center, size, res), **camera.to_sample()}


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from functools import partial

    from hmrkit.models.backbones import TimmBackbone
    from hmrkit.models.heads import IterativeRegressor
    from hmrkit.models.methods import CLIFF, HMR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=96)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--data", help="synth shard folder for the training measurements")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    parts = dict(backbone=partial(TimmBackbone, name=args.backbone), crop_size=args.res,
                 head=partial(IterativeRegressor, hidden=args.hidden))
    models = {cls.__name__: cls(**parts) for cls in (HMR, CLIFF)}
    print(f"{args.backbone} at {args.res} px, {torch.get_num_threads()} threads")
    print("| model | infer b1 img/s | infer b32 img/s | train b32 samples/s (in memory) |"
          + (" train samples/s (with loading) |" if args.data else ""))
    print("| --- | ---: | ---: | ---: |" + (" ---: |" if args.data else ""))
    if args.data:
        from hmrkit.data.augment import AugmentConfig
        from hmrkit.data.formats import build_dataset

        dataset = build_dataset("synth", args.data, args.res, AugmentConfig())
        loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True,
                                             num_workers=args.workers, drop_last=True)
        real = next(iter(loader))
    else:
        real = None
    for name, model in models.items():
        model.eval()
        with torch.no_grad():
            b1, b32 = _batch(args.res, 1), _batch(args.res, 32)
            infer1 = 1 / _median_seconds(lambda m=model, b=b1: m(b), args.repeats * 4)
            infer32 = 32 / _median_seconds(lambda m=model, b=b32: m(b), args.repeats)
        row = f"| {name} | {infer1:.1f} | {infer32:.1f} |"
        if real is not None:
            model.train()
            optimizer = torch.optim.Adam(model.parameters(), 1e-4)

            def step(batch, m=model, opt=optimizer):
                loss = sum(m.compute_losses(m(batch), batch).values())
                opt.zero_grad()
                loss.backward()
                opt.step()

            row += f" {32 / _median_seconds(lambda: step(real), args.repeats):.1f} |"
            batches = iter(loader)
            next(batches)
            start = time.perf_counter()
            for _ in range(args.repeats):
                step(next(batches))
            row += f" {32 * args.repeats / (time.perf_counter() - start):.1f} |"
        else:
            row += " (needs --data) |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
