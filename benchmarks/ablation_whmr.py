"""W-HMR ablations in kind of the paper's Tables 2, 5 and 6: train, evaluate, time, tabulate.

    python benchmarks/ablation_whmr.py --out runs/ablation-whmr --data-root data/synth
        [--steps 300 --batch-size 32 --limit 500]
        [--backbone-checkpoint src/hmrkit/models/weights/cliff-r18-96-synth.pt]

Every row trains with the same backbone (ResNet-18 at 96 px, its weights from
``--backbone-checkpoint``: by default the shipped CLIFF model's backbone), data, seed and step
budget (``configs/whmr-r18-96-kp-stage*.yaml``, ``configs/camrot-r18-96-cpu.yaml`` plus the
overrides below). Rows:

- Table 5 in kind (stage I, from the backbone): ``base`` (PyMAF-like: no vertex regressor, no
  global information, no focal predictor), ``+V`` (hybrid vertex regressor), ``+G`` (5-D global
  information), ``+F`` (focal predictor), ``V+F+G``; the IUV / inverse-depth heads in all;
- ``stage II`` (full FULL2) from ``V+F+G``'s checkpoint;
- ``camera rotation``: hmrkit's estimator (pitch, roll, vertical FoV) from the backbone;
- ``stage III`` (OrientCorrect) and ``SPEC-like`` (the rotation fed into the regressor, whole
  network fine-tuned) from ``stage II``, both with the estimator's rotation.

Each W-HMR row is evaluated with ``hmrkit evaluate`` on ``synth-v1`` and ``synth-v1-hard``
(``--limit`` persons each, evenly spread): MPJPE, PA-MPJPE, PVE; the camera metrics of the
predicted focal (``focal_err_pct``, ``root_transl``, ``reproj_pct``) next to CLIFF's
``sqrt(W^2 + H^2)`` (``*_cliff*``) per lens range; the world-frame errors (``w_mpjpe*``,
``w_pve*``). The estimator is scored here (pitch / roll / FoV errors in degrees, on the same
persons' full images) against a level camera and the test set's median FoV. Persons per second
(batch 1, ``infer`` on the same real synth-v1 people, interleaved across models) of W-HMR's
rows and of the shipped CLIFF model (same backbone and crop) are measured in one process at
the end. Writes ``<out>/ablation.json`` and ``<out>/ablation.md``; a finished row is not run
again (delete its folder to redo it); the tables hold every row finished in ``--out``, also by
earlier runs (``--rows`` picks what to train now); ``--tables-only`` trains and times nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHIPPED = ROOT / "src" / "hmrkit" / "models" / "weights" / "cliff-r18-96-synth.pt"
TESTS = ("synth-v1", "synth-v1-hard")
LENS_NAMES = ("wide (< 28 mm)", "normal (28-60 mm)", "long (> 60 mm)")  # evaluate.LENSES

MODEL = "--model.init_args."
# the configs' head without the hybrid vertex regressor (jsonargparse cannot set a nested
# class-typed argument to null from the command line, so the whole head is given)
NO_V = [MODEL + "head", json.dumps({"class_path": "hmrkit.models.pymaf.PyMAFHead", "init_args": {
    "channels": 128, "hidden": 512, "vertex_regressor": None}})]
NO_G = [MODEL + "box_info", "null"]
NO_F = [MODEL + "focal", "null"]


@dataclass(frozen=True)
class Row:
    config: str
    overrides: tuple[str, ...] = ()
    init_from: str | None = None  # the row whose checkpoint this one starts from
    camera_rotation: bool = False  # reads the camera-rotation row's estimator
    kind: str = "whmr"  # "whmr" (evaluated by hmrkit evaluate) or "camrot"


STAGE1 = "whmr-r18-96-kp-stage1.yaml"
ROWS: dict[str, Row] = {
    "base": Row(STAGE1, (*NO_V, *NO_G, *NO_F)),
    "+V": Row(STAGE1, (*NO_G, *NO_F)),
    "+G": Row(STAGE1, (*NO_V, *NO_F)),
    "+F": Row(STAGE1, (*NO_V, *NO_G)),
    "V+F+G": Row(STAGE1),
    "stage II": Row("whmr-r18-96-kp-stage2.yaml", init_from="V+F+G"),
    "camera rotation": Row("camrot-r18-96-cpu.yaml", kind="camrot"),
    "stage III": Row("whmr-r18-96-kp-stage3.yaml", init_from="stage II", camera_rotation=True),
    "SPEC-like": Row("whmr-r18-96-kp-speclike.yaml", init_from="stage II",
                     camera_rotation=True),
}
TABLE5 = ["base", "+V", "+G", "+F", "V+F+G", "stage II", "stage III", "SPEC-like"]
FOCAL_ROWS = ["+F", "V+F+G", "stage II"]
WORLD = [  # (label, row, metric suffix: w_mpjpe<suffix>, w_pve<suffix>)
    ("camera-frame output (level camera)", "stage III", "_camframe"),
    ("camera frame turned by the estimated rotation", "stage III", "_rotest"),
    ("SPEC-like (estimated rotation)", "SPEC-like", ""),
    ("OrientCorrect (estimated rotation)", "stage III", ""),
    ("OrientCorrect fed the true rotation", "stage III", "_octrue"),
    ("camera frame turned by the true rotation", "stage III", "_rottrue"),
]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "row"


def checkpoint_of(out: Path, name: str) -> Path:
    return out / slug(name) / "runs" / "row" / "version_0" / "checkpoints" / "last.ckpt"


def train_argv(name: str, args: argparse.Namespace) -> list[str]:
    """``hmrkit train`` arguments of a row (the shared budget and data, its overrides)."""
    row, out, data = ROWS[name], Path(args.out), Path(args.data_root)
    argv = ["train", "--config", str(CONFIGS / row.config), *row.overrides,
            "--trainer.max_steps", str(args.steps), "--data.batch_size", str(args.batch_size),
            "--trainer.val_check_interval", str(args.steps),
            "--data.max_val_samples", str(args.val_samples),
            "--data.train", str(data / "train"), "--data.val", str(data / "val"),
            "--seed_everything", str(args.seed),
            "--trainer.logger.init_args.save_dir", str(out / slug(name) / "runs"),
            "--trainer.logger.init_args.name", "row",
            "--trainer.logger.init_args.version", "0"]  # a killed row restarts in place
    backbone = ("--model.init_args.net.init_args.backbone.init_args.checkpoint"
                if row.kind == "camrot" else MODEL + "backbone.init_args.checkpoint")
    if row.init_from is None:
        argv += [backbone, args.backbone_checkpoint] if args.backbone_checkpoint else \
            [backbone, "null"]
    else:
        argv += [MODEL + "init_checkpoint", str(checkpoint_of(out, row.init_from))]
    if row.camera_rotation:
        argv += [MODEL + "camera_rotation.init_args.checkpoint",
                 str(checkpoint_of(out, "camera rotation"))]
    return argv


def camera_rotation_errors(checkpoint: Path, data: Path, limit: int) -> dict:
    """Pitch, roll and vertical-FoV errors (degrees) of a camera-rotation run on ``limit``
    persons of ``data`` (evenly spread), overall and per lens; with two references: a level
    camera (pitch = roll = 0) and the test set's own median FoV."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from hmrkit.data.formats import build_dataset, evenly_spaced
    from hmrkit.evaluate import lens_subsets
    from hmrkit.models.camcalib import FULL_IMAGE_KEY, CameraRotationNet, camera_targets

    net = CameraRotationNet(image_size=96, fov=True, checkpoint=str(checkpoint)).eval()
    keys = (FULL_IMAGE_KEY, "camera/intrinsics", "camera/image_size", "camera/to_world")
    dataset = evenly_spaced(build_dataset("synth", data, 96, keys=keys), limit)
    pred, true, lens = [], [], []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=32):
            pred.append(net(batch[FULL_IMAGE_KEY]))
            true.append(camera_targets(batch).to(pred[-1]))
            lens += lens_subsets(batch)
    pred, true = torch.rad2deg(torch.cat(pred)).numpy(), torch.rad2deg(torch.cat(true)).numpy()
    reference = np.concatenate([np.zeros_like(true[:, :2]),
                                np.full_like(true[:, 2:], np.median(true[:, 2]))], 1)
    names = np.asarray(lens)

    def summary(sel) -> dict:
        err, ref = np.abs(pred[sel] - true[sel]), np.abs(reference[sel] - true[sel])
        out = {"count": int(sel.sum())}
        for i, key in enumerate(("pitch", "roll", "vfov")):
            out[f"{key}_deg"] = float(err[:, i].mean())
            out[f"{key}_deg_median"] = float(np.median(err[:, i]))
            out[f"{key}_deg_reference"] = float(ref[:, i].mean())
        return out

    result = {"overall": summary(np.ones(len(names), bool)), "subsets": {}}
    for name in LENS_NAMES:
        if (names == name).any():
            result["subsets"][name] = summary(names == name)
    return result


def train_and_evaluate(name: str, args: argparse.Namespace) -> dict:
    from hmrkit.cli import main

    row, out = ROWS[name], Path(args.out)
    folder = out / slug(name)
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    ckpt = checkpoint_of(out, name)
    train_seconds = None
    if not ckpt.is_file():
        start = time.perf_counter()
        if main(train_argv(name, args)) != 0:
            raise SystemExit(f"training row '{name}' failed")
        train_seconds = time.perf_counter() - start
    result = {"name": name, "config": row.config, "overrides": list(row.overrides),
              "init_from": row.init_from, "steps": args.steps, "batch_size": args.batch_size,
              "seed": args.seed, "checkpoint": str(ckpt), "train_seconds": train_seconds,
              "tests": {}}
    for test in TESTS:
        data = Path(args.data_root) / test
        if row.kind == "camrot":
            result["tests"][test] = camera_rotation_errors(ckpt, data, args.limit)
            continue
        target = folder / f"eval-{test}"
        if main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out",
                 str(target), "--limit", str(args.limit)]) != 0:
            raise SystemExit(f"evaluating row '{name}' on {test} failed")
        metrics = json.loads((target / "metrics.json").read_text())
        result["tests"][test] = {"count": metrics["count"], "overall": metrics["overall"],
                                 "subsets": metrics["subsets"]}
    done.write_text(json.dumps(result, indent=2))
    return result


def persons_per_second(models: dict[str, str], data: Path, people: int, rounds: int
                       ) -> dict[str, float]:
    """Batch-1 ``infer`` (estimate and posed mesh) on the same real people of ``data``,
    interleaved across models; the median over ``rounds`` of persons per second."""
    import torch

    from hmrkit.evaluate import dataset_for
    from hmrkit.models.checkpoints import load_method

    loaded = {n: load_method(p) for n, p in models.items()}
    batches = {}
    for name, model in loaded.items():
        dataset = dataset_for(model, data, limit=people)
        batches[name] = [{k: v[None] for k, v in dataset[i].items()
                          if isinstance(v, torch.Tensor) and k in model.input_keys()}
                         for i in range(len(dataset))]
    times: dict[str, list[float]] = {n: [] for n in loaded}
    with torch.no_grad():
        for name, model in loaded.items():  # warm-up
            model.infer(batches[name][0])
        for _ in range(rounds):
            for name, model in loaded.items():
                start = time.perf_counter()
                for batch in batches[name]:
                    model.infer(batch)
                times[name].append(len(batches[name]) / (time.perf_counter() - start))
    return {n: statistics.median(v) for n, v in times.items()}


# ---------------------------------------------------------------------------- tables

def _cell(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.1f}"


def _metric(result: dict, test: str, key: str, subset: str | None = None):
    block = result["tests"].get(test, {})
    block = block.get("subsets", {}).get(subset, {}) if subset else block.get("overall", {})
    return block.get(key)


def table5(results: dict[str, dict]) -> list[str]:
    rows = [n for n in TABLE5 if n in results]
    keys = ("mpjpe", "pa_mpjpe", "pve")
    head = "| row | " + " | ".join(f"{t} {k.upper().replace('_', '-')}" for t in TESTS
                                    for k in keys) + " |"
    lines = [head, "| --- |" + " ---: |" * (len(keys) * len(TESTS))]
    for name in rows:
        cells = [_cell(_metric(results[name], t, k)) for t in TESTS for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def camera_table(results: dict[str, dict]) -> list[str]:
    """Predicted focal vs CLIFF's sqrt(W^2 + H^2) per test set and lens."""
    pairs = (("focal_err_pct", "focal_err_cliff_pct"), ("root_transl", "root_transl_cliff"),
             ("reproj_pct", "reproj_cliff_pct"))
    head = ("| row | test | lens | persons | focal err % (pred / CLIFF) | root transl mm "
            "(pred / CLIFF) | reprojection % of box (pred / CLIFF) |")
    lines = [head, "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for name in (n for n in FOCAL_ROWS if n in results):
        for test in TESTS:
            block = results[name]["tests"].get(test)
            if block is None:
                continue
            subsets = [(None, "all", block.get("count"))] + [
                (s, s, block["subsets"][s]["count"]) for s in LENS_NAMES
                if s in block["subsets"]]
            for subset, label, count in subsets:
                cells = [f"{_cell(_metric(results[name], test, a, subset))} / "
                         f"{_cell(_metric(results[name], test, b, subset))}" for a, b in pairs]
                lines.append(f"| {name} | {test} | {label} | {count} | " + " | ".join(cells)
                             + " |")
    return lines


def world_table(results: dict[str, dict]) -> list[str]:
    head = "| world orientation from | " + " | ".join(
        f"{t} W-MPJPE | {t} W-PVE | {t} PA-MPJPE" for t in TESTS) + " |"
    lines = [head, "| --- |" + " ---: |" * (3 * len(TESTS))]
    for label, name, suffix in WORLD:
        if name not in results:
            continue
        cells = []
        for t in TESTS:
            cells += [_cell(_metric(results[name], t, f"w_mpjpe{suffix}")),
                      _cell(_metric(results[name], t, f"w_pve{suffix}")),
                      _cell(_metric(results[name], t, "pa_mpjpe"))]
        lines.append(f"| {label} ({name}) | " + " | ".join(cells) + " |")
    return lines


def camrot_table(result: dict) -> list[str]:
    head = ("| test | lens | persons | pitch err deg (mean / median / level camera) | "
            "roll err deg (same) | vertical FoV err deg (mean / median / median FoV) |")
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: |"]
    for test in TESTS:
        block = result["tests"].get(test)
        if block is None:
            continue
        for label, m in [("all", block["overall"]), *block["subsets"].items()]:
            cells = [f"{_cell(m[f'{k}_deg'])} / {_cell(m[f'{k}_deg_median'])} / "
                     f"{_cell(m[f'{k}_deg_reference'])}" for k in ("pitch", "roll", "vfov")]
            lines.append(f"| {test} | {label} | {m['count']} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict[str, dict], fps: dict[str, float], settings: str) -> str:
    out = [f"Settings: {settings}", ""]
    if any(n in results for n in TABLE5):
        out += ["### Table 5 in kind (mm)", "", *table5(results), ""]
    if any(n in results for n in FOCAL_ROWS):
        out += ["### Predicted focal against CLIFF's sqrt(W^2 + H^2)", "",
                *camera_table(results), ""]
    if "stage III" in results or "SPEC-like" in results:
        out += ["### World frame, Tables 2 and 6 in kind (mm)", "", *world_table(results), ""]
    if "camera rotation" in results:
        out += ["### Camera-rotation estimator", "", *camrot_table(results["camera rotation"]),
                ""]
    if fps:
        out += ["### Speed (batch 1, one process, interleaved)", "",
                "| model | persons / s |", "| --- | ---: |",
                *(f"| {n} | {v:.1f} |" for n, v in fps.items()), ""]
    return "\n".join(out)


def rows_with_dependencies(wanted: list[str]) -> list[str]:
    """``wanted`` and every row they start from, in :data:`ROWS` order."""
    need = set(wanted)
    for name in reversed(list(ROWS)):
        if name in need:
            row = ROWS[name]
            if row.init_from:
                need.add(row.init_from)
            if row.camera_rotation:
                need.add("camera rotation")
    return [n for n in ROWS if n in need]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ablation-whmr")
    parser.add_argument("--data-root", default=str(ROOT / "data" / "synth"),
                        help="holds train, val, synth-v1 and synth-v1-hard")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--val-samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=500, help="persons per test set")
    parser.add_argument("--backbone-checkpoint", default=str(SHIPPED),
                        help="initial backbone weights of every row ('' : random)")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), help="subset of the rows")
    parser.add_argument("--fps-people", type=int, default=20)
    parser.add_argument("--fps-rounds", type=int, default=3)
    parser.add_argument("--tables-only", action="store_true",
                        help="tabulate the rows already finished; train and time nothing")
    args = parser.parse_args()
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {list(ROWS)}")
    data = Path(args.data_root)
    for split in ("train", "val", *TESTS):
        if not (data / split).is_dir():
            raise SystemExit(f"{data / split} is missing (see docs/whmr.md for the data)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tables_only:
        args.fps_people = 0
    else:
        for name in rows_with_dependencies(args.rows):
            train_and_evaluate(name, args)
    # every row finished in this folder, also by earlier runs
    results = {n: json.loads((out / slug(n) / "result.json").read_text()) for n in ROWS
               if (out / slug(n) / "result.json").is_file()}
    speed = {f"CLIFF (shipped, {SHIPPED.name})": str(SHIPPED)}
    speed |= {f"W-HMR {n}": results[n]["checkpoint"] for n in ("base", "V+F+G", "stage III")
              if n in results}
    fps = persons_per_second(speed, data / TESTS[0], args.fps_people, args.fps_rounds) \
        if args.fps_people > 0 else {}
    stored = vars(args)
    if args.tables_only and (out / "ablation.json").is_file():  # keep what was measured
        previous = json.loads((out / "ablation.json").read_text())
        fps, stored = previous.get("persons_per_second", {}), previous.get("settings", stored)
    settings = (f"{stored['steps']} steps at batch {stored['batch_size']} per row, seed "
                f"{stored['seed']}, backbone from {stored['backbone_checkpoint'] or 'random'}, "
                f"{stored['limit']} persons per test set")
    (out / "ablation.json").write_text(json.dumps(
        {"settings": stored, "rows": results, "persons_per_second": fps}, indent=2))
    text = markdown(results, fps, settings)
    (out / "ablation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
