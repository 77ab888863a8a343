"""How long ``hmrkit predict`` takes to its first result, and per person after that.

``stages IMAGE``: in one fresh process, the CPU and wall seconds of each start-up stage of
``hmrkit predict IMAGE`` (the argument parser, the imports torch and friends bring, the
detector's files, the model, reading, detecting, estimating, writing). CPU seconds are the
steadier figure on a shared machine (wall seconds include waiting for a core).

``runs INPUT... --runs N``: runs ``hmrkit predict INPUT... --out TMP`` N times as a user would
(a new process each time) and reports, per run, the wall seconds of the whole command, the CPU
seconds of the process, ``index.json``'s ``first_result_s`` (from the start of ``hmrkit``'s
predict module to the first image's files written) and the seconds per person after loading
(``(total_s - load_s) / persons``), with the load average before and after.

``steady INPUT... --repeat N``: in one process, the CPU and wall seconds of every image after
loading (detect + estimate + write), N passes over the inputs.

    python benchmarks/predict_startup.py stages photo.jpg
    python benchmarks/predict_startup.py runs photos/ --runs 3
    python benchmarks/predict_startup.py steady photos/ --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def stages(image: str) -> None:
    t0c, t0w = time.process_time(), time.perf_counter()
    last = [t0c, t0w]
    rows = []

    def mark(name: str) -> None:
        c, w = time.process_time(), time.perf_counter()
        rows.append((name, c - last[0], w - last[1], c - t0c, w - t0w))
        last[:] = [c, w]

    from hmrkit import cli

    parser = cli.build_parser()
    out = tempfile.mkdtemp(prefix="hmrkit-startup-")
    args = parser.parse_args(["predict", image, "--out", out])
    mark("argument parser (no torch)")
    import torch

    torch.set_num_threads(args.threads)
    mark("import torch")
    import hmrkit.blazepose  # noqa: F401  (roma -> torch._dynamo)

    mark("import hmrkit.blazepose (roma, torch._dynamo)")
    from hmrkit import predict

    detector = predict.load_detector(args.detector_model, "cpu", args.min_score)
    mark("detector files (BlazePose full)")
    import timm  # noqa: F401

    mark("import timm")
    import lightning  # noqa: F401

    mark("import lightning (torchmetrics, scipy.signal)")
    model = predict.load_model(predict.DEFAULT_MODEL, "cpu")
    mark("model (build + weights)")
    source = predict.collect_sources([image])[0]
    frame = next(predict.iter_frames([source]))
    mark("read the image")
    boxes, _ = predict.DetectedPeople(detector, predict.reads_rotated_boxes(model))(frame)
    mark(f"detect ({len(boxes)} people)")
    job = predict.Job(frame, boxes, None, predict._new_entry(frame))
    job.results = predict.estimate(model, [(frame.image, b, None) for b in boxes], "cpu", 16)
    mark("estimate")
    predict.write_job(job, Path(out), model.body.faces.numpy(), args.formats, model.body.name,
                      True, args.overlay_size)
    mark("write meshes, parameters, overlay, side view")
    print(f"load average {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs; "
          f"torch threads {torch.get_num_threads()}\n")
    print("| stage | CPU s | wall s | CPU s so far | wall s so far |")
    print("|---|---:|---:|---:|---:|")
    for name, c, w, cc, cw in rows:
        print(f"| {name} | {c:.2f} | {w:.2f} | {cc:.2f} | {cw:.2f} |")


def runs(inputs: list[str], n: int, extra: list[str]) -> None:
    hmrkit = Path(sys.executable).with_name("hmrkit")
    command = [str(hmrkit)] if hmrkit.exists() else [sys.executable, "-m", "hmrkit.cli"]
    print("| run | load avg before / after | wall s | CPU s (user + sys) | first result s | "
          "load s | persons | s per person after loading |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for i in range(n):
        with tempfile.TemporaryDirectory() as out:
            before = os.getloadavg()[0]
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([*command, "predict", *inputs, "--out", out, *extra], check=True,
                           stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            now = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (now.ru_utime - used.ru_utime) + (now.ru_stime - used.ru_stime)
            index = json.loads((Path(out) / "index.json").read_text())
        t, persons = index["timing"], index["summary"]["persons"]
        per = (t["total_s"] - t["load_s"]) / max(persons, 1)
        print(f"| {i + 1} | {before:.1f} / {os.getloadavg()[0]:.1f} | {wall:.1f} | {cpu:.1f} | "
              f"{t['first_result_s']:.1f} | {t['load_s']:.1f} | {persons} | {per:.2f} |")


def steady(inputs: list[str], repeat: int) -> None:
    from hmrkit import cli, predict

    args = cli.build_parser().parse_args(["predict", *inputs, "--out",
                                          tempfile.mkdtemp(prefix="hmrkit-steady-")])
    sources, boxes, model, refiner, _ = predict._setup(args)
    runner = predict.Predictor(model, args, boxes, refiner)
    runner.out.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.1f}\n")
    print("| pass | image | size | persons | CPU s | wall s |")
    print("|---|---|---|---:|---:|---:|")
    for n in range(repeat):
        for frame in predict.iter_frames(sources):
            c, w = time.process_time(), time.perf_counter()
            runner.add(frame)
            if runner.pending:
                runner.flush()
            persons = len(runner.entries[-1]["persons"])
            size = "x".join(map(str, frame.image.shape[1::-1])) if frame.image is not None else "-"
            print(f"| {n + 1} | {frame.stem} | {size} | {persons} | "
                  f"{time.process_time() - c:.2f} | {time.perf_counter() - w:.2f} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stages", help="start-up stages in one process")
    s.add_argument("image")
    r = sub.add_parser("runs", help="whole commands, as a user runs them")
    r.add_argument("inputs", nargs="+")
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="more hmrkit predict options (last)")
    t = sub.add_parser("steady", help="per image after loading, in one process")
    t.add_argument("inputs", nargs="+")
    t.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    if args.command == "stages":
        stages(args.image)
    elif args.command == "steady":
        steady(args.inputs, args.repeat)
    else:
        runs(args.inputs, args.runs, args.extra)


if __name__ == "__main__":
    main()
