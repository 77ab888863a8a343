"""``hmrkit evaluate``: run a method on a split and write its metrics (JSON and Markdown).

    hmrkit evaluate --checkpoint runs/.../last.ckpt --data data/synth/synth-v1 --out eval/
    hmrkit evaluate --method mean-pose --data data/synth/synth-v1 --out eval/mean-pose

Metrics (mm, means over persons): MPJPE, PA-MPJPE and N-MPJPE on the protocol's joints
(``lsp14``: the 14 evaluation joints of 3DPW / H36M, mid-hip aligned; ``smpl24``: the body
model's 24 joints, pelvis aligned), PVE and PA-PVE on every vertex. Per subset where the
data has subsets: for synthetic data, the lens (35 mm-equivalent focal length).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from hmrkit.data.formats import FORMATS, build_dataset, evenly_spaced
from hmrkit.io import atomic_write_text

PROTOCOLS = ("lsp14", "smpl24")  # hmrkit.metrics.PROTOCOLS (checked there); no torch import here

METRIC_NAMES = ("mpjpe", "pa_mpjpe", "n_mpjpe", "pve", "pa_pve", "root_transl")
"""Per-person errors in mm; ``root_transl``: full-image camera translation (root joint)."""
LENSES = ((0.0, 28.0, "wide (< 28 mm)"), (28.0, 60.0, "normal (28-60 mm)"),
          (60.0, math.inf, "long (> 60 mm)"))
"""Subsets of synthetic data by 35 mm-equivalent focal length ``36 f / max(W, H)``."""


def lens_subsets(batch: dict) -> list[str]:
    """The lens subset of every sample of a batch (see :data:`LENSES`)."""
    from hmrkit.geometry.cameras import Camera

    f35 = Camera.from_sample(batch).focal_35mm()
    return [next(name for lo, hi, name in LENSES if lo <= float(f) < hi) for f in f35]


def dataset_for(model, data, format: str = "synth", limit: int | None = None, **kwargs):
    """The test split ``data`` as ``model`` reads it: its crop size and RoI count, ``limit``
    persons evenly spread (all when None); ``kwargs`` go to :func:`build_dataset`."""
    crop = int(getattr(model, "image_size", 64))
    rois = int(getattr(model, "num_rois", 1))
    return evenly_spaced(build_dataset(format, data, crop, rois=rois, **kwargs), limit)


def evaluate(model, dataset, batch_size: int = 32, protocol: str = "lsp14", workers: int = 0,
             device: str = "cpu", progress: bool = True) -> dict:
    """Per-person metrics of ``model`` on ``dataset`` -> ``{"overall", "subsets", ...}``."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    per_sample: dict[str, list] = {k: [] for k in METRIC_NAMES}
    subsets: list[str] = []
    seconds = 0.0
    for batch in tqdm(loader, disable=not progress, desc="evaluate", unit="batch"):
        batch = {k: v.to(device) for k, v in batch.items()}
        start = time.perf_counter()
        with torch.no_grad():
            metrics = model.evaluate_batch(batch, protocol=protocol)
        seconds += time.perf_counter() - start
        for k in METRIC_NAMES:
            per_sample[k].append(metrics[k].float().cpu())
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


def markdown_table(results: dict[str, dict]) -> str:
    """A Markdown table of ``{row name: evaluate() result}``: overall rows, then subsets."""
    head = "| model | subset | persons | " + " | ".join(k.upper().replace("_", "-")
                                                      for k in METRIC_NAMES) + " |"
    lines = [head, "|" + " --- |" * 3 + " ---: |" * len(METRIC_NAMES)]
    for name, res in results.items():
        rows = [("all", {"count": res["count"], **res["overall"]}), *res["subsets"].items()]
        for subset, m in rows:
            cells = " | ".join(f"{m[k]:.1f}" for k in METRIC_NAMES)
            lines.append(f"| {name} | {subset} | {m['count']} | {cells} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="a training checkpoint or an export of a method")
    what.add_argument("--method", choices=("mean-pose",),
                      help="a method without weights (mean-pose: the floor of the baselines)")
    parser.add_argument("--data", required=True, help="the split (a shard folder for synth)")
    parser.add_argument("--format", choices=FORMATS, default="synth")
    parser.add_argument("--split", help="3DPW split (default test)")
    parser.add_argument("--image-root", help="image folder of a spin-npz file")
    parser.add_argument("--out", required=True, help="folder for metrics.json and metrics.md")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="lsp14",
                        help="lsp14: 14 joints, mid-hip aligned; smpl24: 24 joints, pelvis")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader processes")
    parser.add_argument("--limit", type=int, help="evaluate this many persons, evenly spread")
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from hmrkit.models.checkpoints import CheckpointError, load_method
    from hmrkit.models.methods import METHODS

    try:
        if args.checkpoint:
            model, name = load_method(args.checkpoint, args.device), Path(args.checkpoint).name
        else:
            model, name = METHODS[args.method](), args.method
        dataset = dataset_for(model, args.data, args.format, args.limit, split=args.split,
                              image_root=args.image_root)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"hmrkit evaluate: {err}", file=sys.stderr)
        return 2
    result = evaluate(model, dataset, args.batch_size, args.protocol, args.workers, args.device)
    result.update(model=name, data=str(args.data), format=args.format)
    out = Path(args.out)
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=1))
    table = markdown_table({name: result})
    atomic_write_text(out / "metrics.md", table)
    print(table, end="")
    return 0
