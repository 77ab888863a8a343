"""``hmrkit evaluate``: run a method on a split and write its metrics (JSON and Markdown).

    hmrkit evaluate --checkpoint runs/.../last.ckpt --data data/synth/synth-v1 --out eval/
    hmrkit evaluate --method mean-pose --data data/synth/synth-v1 --out eval/mean-pose
    hmrkit evaluate --checkpoint model.pt --refiner identity --data ... --out ...

A ``synth`` split is first checked against its ``manifest.json`` (every shard present, complete
and passing its CRCs, :func:`hmrkit.data.shards.check_split`): a missing, truncated or corrupt
shard is an error naming it, so a benchmark never silently shrinks. ``--allow-partial`` scores
the shards that are sound instead, and says so loudly: the persons scored against those
expected, on stdout and under ``"partial"`` in ``metrics.json``.

Metrics (mm, means over persons) are those the method's estimate supports
(:func:`hmrkit.metrics.scoring.score`, plus the method's own): MPJPE, PA-MPJPE and N-MPJPE on
the protocol's joints (``lsp14``: the 14 evaluation joints of 3DPW / H36M, mid-hip aligned;
``smpl24``: the body model's 24 joints, pelvis aligned), PVE and PA-PVE on every vertex, the
root translation error, world-frame errors when the method estimates a world orientation.
Per subset where the data has subsets: for synthetic data, the lens (35 mm-equivalent focal
length). ``--refiner`` runs a refinement stage after the method
(:mod:`hmrkit.models.refiners`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from hmrkit.args import non_negative_int, output_folder, positive_int
from hmrkit.data.formats import FORMATS, SPARSE_KEYS, build_dataset, evenly_spaced
from hmrkit.io import atomic_write_text

LENSES = ((0.0, 28.0, "wide (< 28 mm)"), (28.0, 60.0, "normal (28-60 mm)"),
          (60.0, math.inf, "long (> 60 mm)"))
"""Subsets of synthetic data by 35 mm-equivalent focal length ``36 f / max(W, H)``."""

IMAGELESS_CROP = 64
"""Crop side given to the readers for methods that read no image (only the geometry counts)."""


def lens_subsets(batch: dict) -> list[str]:
    """The lens subset of every sample of a batch (see :data:`LENSES`)."""
    from hmrkit.geometry.cameras import Camera

    f35 = Camera.from_sample(batch).focal_35mm()
    return [next(name for lo, hi, name in LENSES if lo <= float(f) < hi) for f in f35]


def dataset_for(model, data, format: str = "synth", limit: int | None = None,
                extra_keys: tuple[str, ...] = (), **kwargs):
    """The test split ``data`` as ``model`` reads it (the method contract: its crop size and
    style, RoI count and input keys, with the labels the metrics need, and ``extra_keys``),
    ``limit`` persons evenly spread (all when None); ``kwargs`` go to :func:`build_dataset`."""
    keys = (*model.input_keys(), *SPARSE_KEYS, "meta/body_model", *extra_keys)
    keys = tuple(dict.fromkeys(keys))
    if model.crop_size is None:
        keys = tuple(k for k in keys if not k.endswith("image"))
    crop = IMAGELESS_CROP if model.crop_size is None else model.crop_size
    dataset = build_dataset(format, data, crop, rois=model.num_rois, keys=keys,
                            crop_style=getattr(model, "crop_style", "box"), **kwargs)
    return evenly_spaced(dataset, limit)


def evaluate(model, dataset, batch_size: int = 32, protocol: str = "lsp14", workers: int = 0,
             device: str = "cpu", progress: bool = True, refiner=None) -> dict:
    """Per-person metrics of ``model`` (then ``refiner``) on ``dataset`` ->
    ``{"overall", "subsets", ...}``."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    per_sample: dict[str, list] = {}
    subsets: list[str] = []
    seconds = 0.0
    for batch in tqdm(loader, disable=not progress, desc="evaluate", unit="batch"):
        batch = {k: v.to(device) for k, v in batch.items()}
        start = time.perf_counter()
        with torch.no_grad():
            est = model.infer(batch, refiner)
            metrics = model.evaluate_batch(batch, protocol=protocol, est=est)
        seconds += time.perf_counter() - start
        for k, v in metrics.items():
            per_sample.setdefault(k, []).append(v.float().cpu())
        subsets.extend(lens_subsets(batch))
    values = {k: torch.cat(v).numpy() for k, v in per_sample.items()}
    names = np.asarray(subsets)
    result = {
        "protocol": protocol,
        "count": int(len(names)),
        "overall": {k: float(np.nanmean(v)) for k, v in values.items()},
        "subsets": {},
        "model_seconds_per_person": seconds / max(len(names), 1),
    }
    for _, _, name in LENSES:
        sel = names == name
        if sel.any():
            result["subsets"][name] = {"count": int(sel.sum()),
                                       **{k: float(np.nanmean(v[sel])) for k, v in values.items()}}
    return result


def _columns(results: dict[str, dict]) -> list[str]:
    """Metric columns of a table: the known ones in their order, then the others, sorted."""
    from hmrkit.metrics.scoring import METRIC_ORDER

    present = {k for res in results.values() for k in res["overall"]}
    return [k for k in METRIC_ORDER if k in present] + sorted(present - set(METRIC_ORDER))


def markdown_table(results: dict[str, dict]) -> str:
    """A Markdown table of ``{row name: evaluate() result}``: overall rows, then subsets."""
    columns = _columns(results)
    head = "| model | subset | persons | " + " | ".join(k.upper().replace("_", "-")
                                                      for k in columns) + " |"
    lines = [head, "|" + " --- |" * 3 + " ---: |" * len(columns)]
    for name, res in results.items():
        rows = [("all", {"count": res["count"], **res["overall"]}), *res["subsets"].items()]
        for subset, m in rows:
            cells = " | ".join(f"{m[k]:.1f}" if k in m else "-" for k in columns)
            lines.append(f"| {name} | {subset} | {m['count']} | {cells} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="a training checkpoint or an export of a method")
    what.add_argument("--method", help="a method without weights, by name or class path "
                      "(mean-pose: the floor of the baselines)")
    parser.add_argument("--data", required=True, help="the split (a shard folder for synth)")
    parser.add_argument("--format", choices=FORMATS, default="synth")
    parser.add_argument("--split", help="3DPW split (default test)")
    parser.add_argument("--image-root", help="image folder of a spin-npz file")
    parser.add_argument("--out", required=True, type=output_folder,
                        help="folder for metrics.json and metrics.md")
    parser.add_argument("--protocol", default="lsp14",
                        help="lsp14 (default): 14 joints, mid-hip aligned; smpl24: 24 joints, "
                        "pelvis aligned")
    parser.add_argument("--refiner", "--refine", help="a refinement stage after the method, "
                        "by name or class path (identity, keypoints, keypoints-labels, dense, "
                        "dense-labels, ...)")
    parser.add_argument("--refiner-arg", action="append", metavar="NAME=VALUE",
                        help="an option of the refiner (repeatable), e.g. noise_px=5")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--workers", type=non_negative_int, default=0,
                        help="DataLoader processes")
    parser.add_argument("--limit", type=positive_int,
                        help="evaluate this many persons, evenly spread")
    parser.add_argument("--allow-partial", action="store_true",
                        help="score a synth split whose shards do not all match its manifest "
                        "(missing, truncated, corrupt): the sound ones, reported as partial")
    parser.add_argument("--device", default="cpu")


def check_synth_split(folder: Path, allow_partial: bool):
    """:func:`~hmrkit.data.shards.check_split` of a synth split: raises ``ValueError`` naming
    the first bad shard unless ``allow_partial``; warns on stderr when there is no manifest."""
    from hmrkit.data.shards import MANIFEST_NAME, check_split

    check = check_split(folder)
    if check.manifest is None:
        print(f"hmrkit evaluate: warning: {folder} has no {MANIFEST_NAME}; cannot check that "
              "no shard is missing", file=sys.stderr)
    elif not check.ok and not allow_partial:
        raise ValueError(f"{check.describe()}; the split does not match its {MANIFEST_NAME}: "
                         "rewrite it with the same hmrkit synth command, or pass "
                         "--allow-partial to score the sound shards")
    return check


def partial_report(check, dataset, limit: int | None) -> dict:
    """What a partial evaluation left out: persons scored vs expected, and the bad shards."""
    base = getattr(dataset, "dataset", dataset)  # under evenly_spaced's Subset
    expected = None
    if not check.manifest.get("missing"):  # per-shard counts of the whole split are known
        expected = base.expected_persons(check.manifest)
        expected = expected if limit is None else min(limit, expected)
    return {"persons_scored": len(dataset), "persons_expected": expected,
            "left_out": dict(check.problems)}


def run(args: argparse.Namespace) -> int:
    from hmrkit.metrics.scoring import PROTOCOLS
    from hmrkit.models.checkpoints import CheckpointError, load_method
    from hmrkit.models.registry import RegistryError, make_refiner, method_class

    check = None
    try:
        if args.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol '{args.protocol}'; choose one of "
                             f"{sorted(PROTOCOLS)}")
        if args.format == "synth":
            folder = Path(args.data) / args.split if args.split else Path(args.data)
            check = check_synth_split(folder, args.allow_partial) if folder.is_dir() else None
        if args.checkpoint:
            model, name = load_method(args.checkpoint, args.device), Path(args.checkpoint).name
        else:
            model, name = method_class(args.method)(), args.method
        if args.refiner_arg and not args.refiner:
            raise ValueError("--refiner-arg needs --refiner")
        refiner = make_refiner(args.refiner, args.refiner_arg) if args.refiner else None
        bad = tuple(check.problems) if check is not None else ()
        extra = refiner.input_keys() if refiner is not None else ()
        dataset = dataset_for(model, args.data, args.format, args.limit, split=args.split,
                              image_root=args.image_root, exclude_shards=bad, extra_keys=extra)
    except (CheckpointError, RegistryError, FileNotFoundError, ValueError) as err:
        print(f"hmrkit evaluate: {err}", file=sys.stderr)
        return 2
    from hmrkit.models.refiners import RefinerError

    try:
        result = evaluate(model, dataset, args.batch_size, args.protocol, args.workers,
                          args.device, refiner=refiner)
    except RefinerError as err:  # a refiner that cannot run on this data, said in one line
        print(f"hmrkit evaluate: {err}", file=sys.stderr)
        return 2
    result.update(model=name, data=str(args.data), format=args.format, refiner=args.refiner,
                  refiner_args=args.refiner_arg or [])
    note = ""
    if check is not None and not check.ok:
        partial = result["partial"] = partial_report(check, dataset, args.limit)
        expected = partial["persons_expected"]
        note = (f"PARTIAL RESULT: scored {partial['persons_scored']} of "
                f"{'an unknown number of' if expected is None else expected} expected persons; "
                f"left out {len(check.problems)} bad shard(s): {check.describe()}\n")
    out = Path(args.out)
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=1))
    table = markdown_table({name: result})
    atomic_write_text(out / "metrics.md", (f"**{note.strip()}**\n\n" if note else "") + table)
    print(note + table, end="")
    if note:
        print(note, end="", file=sys.stderr)
    return 0
