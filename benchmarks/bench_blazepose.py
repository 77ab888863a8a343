"""BlazePose in torch against LiteRT: fidelity of the converted networks and CPU speed.

    python benchmarks/bench_blazepose.py fidelity [--synth data/synth/synth-v1 --scenes 12]
    python benchmarks/bench_blazepose.py speed [--threads 1 2] [--batches 1 32]

``fidelity``: the crops BlazePose itself makes (hmrkit's pipeline) of two public-domain photos
(scikit-image's astronaut and camera) and of the people in the first ``--scenes`` synthetic
images, run through the converted torch network and through LiteRT (``ai-edge-litert``) on the
same float32 input; per variant and output: max and mean absolute difference (landmarks
x, y and z in 256-px crop pixels, visibility logits, pose presence, mask as a probability,
heatmap logits, world landmarks in metres).

``speed``: milliseconds per 256x256 crop (median of ``--repeats``), torch eager (NCHW and
channels_last) at each batch size and thread count, and LiteRT (batch 1, its XNNPACK
delegate, same thread count) in the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial

import numpy as np
import torch

from hmrkit.blazepose.assets import blazepose_dir, load_model
from hmrkit.blazepose.landmarks import split_outputs

VARIANTS = ("lite", "full", "heavy")


def _interpreter(variant: str, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(blazepose_dir() / f"pose_landmark_{variant}.tflite"),
                     num_threads=threads)
    it.allocate_tensors()
    return it


def _litert_outputs(it, crops: np.ndarray) -> dict[str, np.ndarray]:
    index = it.get_input_details()[0]["index"]
    outs = {d["name"]: [] for d in it.get_output_details()}
    for crop in crops:
        it.set_tensor(index, crop[None])
        it.invoke()
        for d in it.get_output_details():
            outs[d["name"]].append(it.get_tensor(d["index"])[0])
    return {k: np.stack(v) for k, v in outs.items()}


def fidelity_crops(synth: str | None, scenes: int) -> np.ndarray:
    """(N, 256, 256, 3) float32 crops of real photos and synthetic people, as BlazePose cuts."""
    from skimage import data

    from hmrkit.blazepose import BlazePose

    bp = BlazePose("full", min_score=0.2)
    images = [data.astronaut(), np.repeat(data.camera()[..., None], 3, axis=2)]
    if synth:
        from blazepose_synth import scenes as synth_scenes  # benchmarks/ is on sys.path

        images += [im for im, _ in synth_scenes(synth, scenes)]
    batch = bp.make_crops(images, bp.detect_people(images))
    return batch["crops"].permute(0, 2, 3, 1).contiguous().numpy()


def _named(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Graph outputs (NHWC, as LiteRT gives them) -> decoded quantities to compare."""
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in outputs.items()}
    t = {k: v.permute(0, 3, 1, 2) if v.dim() == 4 else v for k, v in t.items()}
    n = split_outputs(t)
    lm = n["landmarks"][:, :33]
    return {
        "landmarks xy (crop px)": lm[..., :2], "landmarks z (crop px)": lm[..., 2],
        "visibility logits": lm[..., 3], "pose presence": n["presence"],
        "mask probability": torch.sigmoid(n["mask_logits"]),
        "heatmap logits": n["heatmap_logits"], "world (m)": n["world"][:, :33],
    }


def fidelity(args) -> None:
    crops = fidelity_crops(args.synth, args.scenes)
    print(f"{len(crops)} crops (2 photos + {len(crops) - 2} from synthetic scenes)\n")
    print("| variant | output | max abs diff | mean abs diff |\n| --- | --- | --- | --- |")
    torch.set_num_threads(args.threads[0])
    for variant in args.variants:
        net = load_model(variant).eval()
        with torch.no_grad():
            ours = net(torch.from_numpy(crops).permute(0, 3, 1, 2))
        ours = {k: (v.permute(0, 2, 3, 1) if v.dim() == 4 else v).numpy() for k, v in ours.items()}
        ref = _litert_outputs(_interpreter(variant, args.threads[0]), crops)
        a, b = _named(ours), _named(ref)
        for key in a:
            d = (a[key].double() - b[key].double()).abs()
            print(f"| {variant} | {key} | {d.max().item():.2e} | {d.mean().item():.2e} |")


def _time(fn, repeats: int) -> tuple[float, float]:
    """(median, fastest) seconds of ``repeats`` calls after a warm-up; the fastest shows the
    cost when no other job holds the cores."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.min(times))


def _litert_one(it, crop: np.ndarray) -> None:
    it.set_tensor(it.get_input_details()[0]["index"], crop)
    it.invoke()


def speed(args) -> None:
    rng = np.random.default_rng(0)
    crops = rng.random((max(args.batches), 256, 256, 3), dtype=np.float32)
    print(f"ms per crop, median (fastest) of {args.repeats} runs; load average before: "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print("| variant | threads | batch | torch NCHW | torch channels_last | LiteRT (batch 1) "
          "| best torch / LiteRT |\n| --- | --- | --- | --- | --- | --- | --- |")
    for variant in args.variants:
        net = load_model(variant).eval()
        for threads in args.threads:
            torch.set_num_threads(threads)
            it = _interpreter(variant, threads)
            lite = np.array(_time(partial(_litert_one, it, crops[:1]), args.repeats * 4)) * 1e3
            for batch in args.batches:
                x = torch.from_numpy(crops[:batch]).permute(0, 3, 1, 2).contiguous()
                with torch.no_grad():
                    nchw = np.array(_time(partial(net, x), args.repeats)) * 1e3 / batch
                    net.to(memory_format=torch.channels_last)
                    xl = x.contiguous(memory_format=torch.channels_last)
                    cl = np.array(_time(partial(net, xl), args.repeats)) * 1e3 / batch
                    net.to(memory_format=torch.contiguous_format)
                best = np.minimum(nchw, cl)
                cells = [f"{m:.1f} ({f:.1f})" for m, f in (nchw, cl, lite)]
                print(f"| {variant} | {threads} | {batch} | {' | '.join(cells)} | "
                      f"{best[0] / lite[0]:.2f} ({best[1] / lite[1]:.2f}) |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("fidelity", "speed"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--synth", default=None, help="synthetic split for fidelity crops")
    ap.add_argument("--scenes", type=int, default=12)
    args = ap.parse_args(argv)
    (fidelity if args.what == "fidelity" else speed)(args)


if __name__ == "__main__":
    main()
