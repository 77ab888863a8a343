"""Training reader speed: samples per second of the synthetic reader, optionally against another
hmrkit source tree in the same run.

    python benchmarks/bench_reader.py data/synth/train [--compare-src ../other/src]
        [--crop 96] [--rois 1 5] [--samples 300] [--rounds 5]

Each measurement is a fresh process (one thread) that builds the reader as training does
(:func:`hmrkit.data.formats.build_dataset`, the regression keys, SPIN's augmentation or none)
and times ``--samples`` consecutive ``__getitem__`` calls after a short warm-up, by the
process's CPU time (``--clock cpu``, default: what a loader worker costs, and steadier on a
shared machine) or by the wall clock. With ``--compare-src`` the two trees run in turn, round
by round (A B A B ...), so a drift of the machine's speed hits both; the table gives the median
samples/s of each and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def worker(args: argparse.Namespace) -> None:
    """Time the reader of the hmrkit on ``sys.path`` and print one JSON line."""
    import torch

    torch.set_num_threads(1)
    import hmrkit
    from hmrkit.data.augment import AugmentConfig
    from hmrkit.data.formats import build_dataset

    augment = AugmentConfig(seed=0) if args.augment else None
    dataset = build_dataset("synth", args.data, args.crop, augment, args.rois)
    n = len(dataset)
    for i in range(5):  # warm-up: file handles, caches
        dataset[i % n]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    start = clock()
    for i in range(args.samples):
        dataset[(7 * i) % n]
    seconds = clock() - start
    print(json.dumps({"samples_per_s": args.samples / seconds, "hmrkit": hmrkit.__file__}))


def measure(src: Path, args: argparse.Namespace, rois: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--worker", args.data, "--crop", str(args.crop),
           "--rois", str(rois), "--samples", str(args.samples), "--clock", args.clock]
    if args.augment:
        cmd.append("--augment")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"reader run with {src} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["hmrkit"].startswith(str(src.resolve())):
        raise SystemExit(f"{src}: the run imported hmrkit from {result['hmrkit']}")
    return result["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a folder of synthetic shards (hmrkit synth --out ...)")
    parser.add_argument("--compare-src", type=Path, help="another hmrkit tree's src folder")
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--rois", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--augment", action="store_true", help="SPIN's augmentation (seed 0)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="time by the process's CPU time (default) or the wall clock")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.rois = args.rois[0]
        return worker(args)
    trees = {"this tree": SRC}
    if args.compare_src:
        trees["compared"] = args.compare_src.resolve()
    rates: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.rounds):
        for rois in args.rois:
            for name, src in trees.items():
                rates.setdefault((rois, name), []).append(measure(src, args, rois))
    aug = "SPIN augmentation" if args.augment else "no augmentation"
    print(f"synthetic reader, crop {args.crop} px, {aug}, {args.samples} samples per run, "
          f"{args.clock} time, median of {args.rounds} interleaved runs (one thread)")
    head = "| RoIs | " + " | ".join(f"{n} samples/s" for n in trees)
    print(head + (" | ratio this / compared |" if len(trees) > 1 else " |"))
    print("| ---: |" + " ---: |" * (len(trees) + (len(trees) > 1)))
    for rois in args.rois:
        med = [statistics.median(rates[rois, n]) for n in trees]
        cells = " | ".join(f"{m:.1f}" for m in med)
        if len(trees) > 1:
            ratios = [a / b for a, b in zip(rates[rois, "this tree"], rates[rois, "compared"],
                                           strict=True)]
            cells += f" | {statistics.median(ratios):.3f}"
        print(f"| {rois} | {cells} |")


if __name__ == "__main__":
    main()
