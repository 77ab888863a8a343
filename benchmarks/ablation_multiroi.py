"""Multi-RoI ablations in kind of the paper's Tables 2 and 4: train, evaluate, time, tabulate.

    python benchmarks/ablation_multiroi.py --out runs/ablation [--steps 2500 --batch-size 32]
        [--backbone-checkpoint runs/keypoints-r18-96-cpu/version_0/checkpoints/last.ckpt]

Every row trains with the same backbone, resolution, data, seed and step budget
(``configs/multiroi-tiny-cpu.yaml`` / ``configs/cliff-r18-96-kp.yaml`` plus the overrides
below), then is evaluated on ``synth-v1`` and ``synth-v1-hard`` (``--limit`` persons each,
evenly spread): MPJPE, PA-MPJPE and ``root_transl`` (full-image camera translation error, the
quantity L_cam is meant to improve). Frames per second (batch 1, model forward on real crops)
of every trained model are measured in one process at the end, interleaved, so their ratios
compare. Writes ``<out>/ablation.json`` and ``<out>/ablation.md``; a finished row is not run
again (delete its folder to redo it).

Table 2 rows: CLIFF, full method (5 RoIs), w/o RAF (``fusion none``), w/o L_cam
(``camera_consistency 0``), w/o L_cont (``contrastive 0``). Table 4 rows: 1 to 5 RoIs.
Camera rows: L_cam with the t_z scale term (``camera_scale_term tz``) and the official code's
variant (``camera_variant code``, pairs with RoI 0), against the full method and w/o L_cam.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTIROI = str(ROOT / "configs" / "multiroi-tiny-cpu.yaml")
CLIFF = str(ROOT / "configs" / "cliff-r18-96-kp.yaml")

ROWS: dict[str, tuple[str, list[str], int]] = {
    # name: (config, overrides, RoIs)
    "CLIFF": (CLIFF, [], 1),
    "Multi-RoI (full, 5 RoIs)": (MULTIROI, [], 5),
    "w/o RAF": (MULTIROI, ["--model.init_args.fusion", "hmrkit.models.fusion.NoFusion"], 5),
    "w/o L_cam": (MULTIROI, ["--model.init_args.losses.init_args.camera_consistency", "0"], 5),
    "w/o L_cont": (MULTIROI, ["--model.init_args.losses.init_args.contrastive", "0",
                              "--model.init_args.projection", "null"], 5),
    "L_cam, t_z scale term": (MULTIROI, ["--model.init_args.losses.init_args.camera_scale_term",
                                         "tz"], 5),
    "L_cam, official code": (MULTIROI, ["--model.init_args.losses.init_args.camera_variant",
                                        "code",
                                        "--model.init_args.losses.init_args.camera_pairs",
                                        "first"], 5),
    **{f"{m} RoI{'s' if m > 1 else ''}": (MULTIROI, [], m) for m in range(1, 5)},
}
TABLE2 = ["CLIFF", "Multi-RoI (full, 5 RoIs)", "w/o RAF", "w/o L_cam", "w/o L_cont"]
TABLE4 = ["1 RoI", "2 RoIs", "3 RoIs", "4 RoIs", "Multi-RoI (full, 5 RoIs)"]
CAMERA = ["Multi-RoI (full, 5 RoIs)", "L_cam, t_z scale term", "L_cam, official code",
          "w/o L_cam"]
TESTS = {"synth-v1": "data/synth/synth-v1", "synth-v1-hard": "data/synth/synth-v1-hard"}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def train_and_evaluate(name: str, args: argparse.Namespace) -> dict:
    from hmrkit.cli import main

    config, overrides, rois = ROWS[name]
    folder = Path(args.out) / _slug(name)
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    ckpt = folder / "runs" / "row" / "version_0" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        argv = ["train", "--config", config, *overrides,
                "--trainer.max_steps", str(args.steps),
                "--data.batch_size", str(args.batch_size),
                "--trainer.val_check_interval", str(args.steps),
                "--seed_everything", str(args.seed),
                "--trainer.logger.init_args.save_dir", str(folder / "runs"),
                "--trainer.logger.init_args.name", "row"]
        if config == MULTIROI:  # the data's RoI count is linked from the model
            argv += ["--model.init_args.num_rois", str(rois)]
        if args.backbone_checkpoint:
            argv += ["--model.init_args.backbone.init_args.checkpoint", args.backbone_checkpoint]
        start = time.perf_counter()
        if main(argv) != 0:
            raise SystemExit(f"training row '{name}' failed")
        train_seconds = time.perf_counter() - start
    else:
        train_seconds = None
    result = {"name": name, "rois": rois, "overrides": overrides, "steps": args.steps,
              "batch_size": args.batch_size, "seed": args.seed, "checkpoint": str(ckpt),
              "train_seconds": train_seconds, "tests": {}}
    for test, data in TESTS.items():
        out = folder / f"eval-{test}"
        if main(["evaluate", "--checkpoint", str(ckpt), "--data", str(ROOT / data),
                 "--out", str(out), "--limit", str(args.limit)]) != 0:
            raise SystemExit(f"evaluating row '{name}' on {test} failed")
        result["tests"][test] = json.loads((out / "metrics.json").read_text())["overall"]
    done.write_text(json.dumps(result, indent=2))
    return result


def frames_per_second(results: dict[str, dict], repeats: int, rounds: int) -> dict[str, float]:
    """Batch-1 model forward on the same real synth-v1 people, interleaved across models."""
    import torch

    from hmrkit.data.formats import build_dataset
    from hmrkit.models.checkpoints import load_method

    data = build_dataset("synth", ROOT / TESTS["synth-v1"], 96, None, rois=5)
    batches = [{k: v[None] for k, v in data[i].items() if isinstance(v, torch.Tensor)}
               for i in range(repeats)]
    models = {n: load_method(r["checkpoint"]) for n, r in results.items()}
    times: dict[str, list[float]] = {n: [] for n in models}
    with torch.no_grad():
        for model in models.values():  # warm-up
            model(batches[0])
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                for batch in batches:
                    model(batch)
                times[name].append(len(batches) / (time.perf_counter() - start))
    return {n: statistics.median(v) for n, v in times.items()}


def markdown(results: dict[str, dict], fps: dict[str, float]) -> str:
    tests = list(TESTS)
    head = "| row | " + " | ".join(f"{t} MPJPE | {t} PA-MPJPE | {t} root transl" for t in tests)
    head += " | fps (batch 1) |"
    sep = "| --- |" + " ---: |" * (3 * len(tests) + 1)
    out = []
    tables = [("Table 2 in kind", TABLE2), ("Table 4 in kind", TABLE4),
              ("Camera consistency variants", CAMERA)]
    for title, rows in tables:
        if not all(name in results for name in rows):
            continue
        out += [f"### {title}", "", head, sep]
        for name in rows:
            r = results[name]
            cells = [f"{r['tests'][t][k]:.1f}" for t in tests
                     for k in ("mpjpe", "pa_mpjpe", "root_transl")]
            out.append(f"| {name} | " + " | ".join(cells) + f" | {fps[name]:.1f} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=1000, help="persons per test set")
    parser.add_argument("--backbone-checkpoint", help="initial backbone weights for every row")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), help="subset of the rows")
    parser.add_argument("--fps-people", type=int, default=20)
    parser.add_argument("--fps-rounds", type=int, default=3)
    args = parser.parse_args()
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {list(ROWS)}")
    for data in TESTS.values():
        if not (ROOT / data).is_dir():
            raise SystemExit(f"{data} is missing: hmrkit synth --benchmark {Path(data).name} "
                             f"--out {data} --workers 2")
    results = {name: train_and_evaluate(name, args) for name in args.rows}
    fps = frames_per_second(results, args.fps_people, args.fps_rounds)
    for name, value in fps.items():
        results[name]["fps"] = value
    out = Path(args.out)
    (out / "ablation.json").write_text(json.dumps(results, indent=2))
    if all(r in results for r in TABLE2 + TABLE4):
        (out / "ablation.md").write_text(markdown(results, fps))
        print(markdown(results, fps))
    else:
        print(json.dumps({n: {"fps": r["fps"], **r["tests"]} for n, r in results.items()},
                         indent=2))


if __name__ == "__main__":
    main()
