"""``hmrkit evaluate``: run a method on a split and write its metrics (JSON and Markdown).

    hmrkit evaluate --checkpoint runs/.../last.ckpt --data data/synth/synth-v1 --out eval/
    hmrkit evaluate --method mean-pose --data data/synth/synth-v1 --out eval/mean-pose

A ``synth`` split is first checked against its ``manifest.json`` (every shard present, complete
and passing its CRCs, :func:`hmrkit.data.shards.check_split`): a missing, truncated or corrupt
shard is an error naming it, so a benchmark never silently shrinks. ``--allow-partial`` scores
the shards that are sound instead, and says so loudly: the persons scored against those
expected, on stdout and under ``"partial"`` in ``metrics.json``.

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

from hmrkit.args import non_negative_int, output_folder, positive_int
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
    f35 = 36.0 * batch["focal"] / batch["image_size"].max(dim=1).values
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
    parser.add_argument("--out", required=True, type=output_folder,
                        help="folder for metrics.json and metrics.md")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="lsp14",
                        help="lsp14: 14 joints, mid-hip aligned; smpl24: 24 joints, pelvis")
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
    from hmrkit.models.checkpoints import CheckpointError, load_method
    from hmrkit.models.methods import METHODS

    check = None
    try:
        if args.format == "synth":
            folder = Path(args.data) / args.split if args.split else Path(args.data)
            check = check_synth_split(folder, args.allow_partial) if folder.is_dir() else None
        if args.checkpoint:
            model, name = load_method(args.checkpoint, args.device), Path(args.checkpoint).name
        else:
            model, name = METHODS[args.method](), args.method
        bad = tuple(check.problems) if check is not None else ()
        dataset = dataset_for(model, args.data, args.format, args.limit, split=args.split,
                              image_root=args.image_root, exclude_shards=bad)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"hmrkit evaluate: {err}", file=sys.stderr)
        return 2
    result = evaluate(model, dataset, args.batch_size, args.protocol, args.workers, args.device)
    result.update(model=name, data=str(args.data), format=args.format)
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
