"""Inference speed of Multi-RoI HMR with 1 to 5 RoIs (paper Table 4), batch 1.

    python benchmarks/bench_multiroi.py [--res 224] [--backbone resnet50] [--fusion raf]

One person per call (batch 1, as the paper's frames per second), model forward only (backbone
on the M crops, fusion, decoders, body model) on random crops: no cropping or data loading.
All RoI counts (and CLIFF, the single-crop baseline, for reference) use the same backbone and
resolution and are measured in one run, interleaved round by round (CPU machines are noisy;
compare the ratios). Paper (RTX 3090, HRNet/ResNet at 224 px): 76.3 fps with 1 RoI, 55.6 with
5, i.e. 5 RoIs run at 0.73x the speed of 1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _batch(res: int, rois: int) -> dict[str, torch.Tensor]:
    from hmrkit.data.rois import multi_roi_boxes
    from hmrkit.geometry.crops import crop_matrix

    center, size = torch.tensor([[320.0, 240.0]]), torch.tensor([300.0])
    centers, sizes = multi_roi_boxes(center, size, m=rois)
    batch = {"image": torch.rand(1, 3, res, res), "box_center": center, "box_size": size,
             "camera/intrinsics": torch.tensor([[800.0, 800.0, 320.0, 240.0]]),
             "camera/image_size": torch.tensor([[640.0, 480.0]]),
             "crop_affine": crop_matrix(center, size, res)}
    if rois > 1:
        batch.update({"rois/image": torch.rand(1, rois, 3, res, res), "rois/box_center": centers,
                      "rois/box_size": sizes,
                      "rois/crop_affine": crop_matrix(centers[0], sizes[0], res)[None]})
    return batch


def main() -> None:
    from functools import partial

    from hmrkit.models.backbones import TimmBackbone
    from hmrkit.models.fusion import FUSIONS
    from hmrkit.models.heads import CameraDecoder, IterativeRegressor
    from hmrkit.models.methods import CLIFF, MultiRoI

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--hidden", type=int, default=1024, help="regressor width")
    parser.add_argument("--fusion", default="raf", help="raf, raf-code, attention or none")
    parser.add_argument("--max-rois", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per model and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    common = dict(backbone=partial(TimmBackbone, name=args.backbone), crop_size=args.res,
                  head=partial(IterativeRegressor, hidden=args.hidden))
    models = {"CLIFF": (CLIFF(**common), _batch(args.res, 1))}
    camera_head = partial(CameraDecoder, hidden=args.hidden)
    for m in range(1, args.max_rois + 1):
        models[f"Multi-RoI {m}"] = (MultiRoI(num_rois=m, fusion=FUSIONS[args.fusion],
                                             camera_head=camera_head, **common),
                                    _batch(args.res, m))
    for name, (model, batch) in models.items():
        model.to(device).eval()
        models[name] = (model, {k: v.to(device) for k, v in batch.items()})

    def call(model, batch) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for model, batch in models.values():  # warm-up
        call(model, batch)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, (model, batch) in models.items():
            times[name] += [call(model, batch) for _ in range(args.repeats)]
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"{args.backbone} at {args.res} px, fusion {args.fusion}, batch 1, device {device}, "
          f"{threads} threads, median of {args.rounds} x {args.repeats} calls")
    print("| model | ms / person | persons/s | speed vs 1 RoI | time vs 1 RoI |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = statistics.median(times["Multi-RoI 1"])
    for name, values in times.items():
        t = statistics.median(values)
        print(f"| {name} | {1e3 * t:.1f} | {1 / t:.1f} | {base / t:.2f}x | {t / base:.2f}x |")


if __name__ == "__main__":
    main()
