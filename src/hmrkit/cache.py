"""``hmrkit cache``: a frozen BlazePose backbone's outputs for a synthetic split, on disk.

    hmrkit cache --data data/synth/train --out data/cache/bp-full-train --variant full --copies 4

Cuts ``--copies`` versions of every person of the split as a BlazePose model reads them
(MediaPipe's rotated square from the labelled keypoints, :data:`hmrkit.data.images.CROP_STYLES`;
copy 0 without augmentation, the others with the ROI jitter, flips, colour gain and occluders of
the options below, copy ``c`` drawing the augmentation of epoch ``c``), runs the landmark network
on them and writes its outputs (``--outputs``, :data:`hmrkit.models.backbones.BLAZEPOSE_INPUTS`)
with the labels of each copy into a feature cache (:mod:`hmrkit.data.feature_cache`: chunks
written atomically, a manifest recording how it was built). Rerunning the same command resumes
after the last complete chunk; a folder built otherwise is refused unless ``--overwrite``.
Training reads it with ``data.format: feature-cache`` (the backbone's signature is checked, so
a stale cache is refused).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from pathlib import Path

from hmrkit.args import non_negative_int, positive_float, positive_int

DEFAULT_OUTPUTS = ("trunk", "encoder", "landmarks", "world", "presence")
LABEL_KEYS = (
    "crop_affine", "box_center", "box_size", "box_rotation", "camera/intrinsics",
    "camera/image_size", "camera/to_world", "keypoints2d/smpl24", "keypoints2d/coco17",
    "keypoints2d/lsp14", "joints3d", "keypoints3d/lsp14", "global_orient", "body_pose", "betas",
    "transl", "world_global_orient", "has_keypoints2d", "has_joints3d", "has_smpl", "has_world",
    "meta/body_model", "meta/index",
)
"""The Sample keys stored next to the backbone's outputs (what training and its losses read)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="a synthetic split (hmrkit synth folder)")
    parser.add_argument("--out", required=True, help="the cache folder")
    parser.add_argument("--variant", default="full", choices=("lite", "full", "heavy"))
    parser.add_argument("--outputs", nargs="+", default=list(DEFAULT_OUTPUTS),
                        help=f"backbone outputs to store (default {' '.join(DEFAULT_OUTPUTS)})")
    parser.add_argument("--copies", type=positive_int, default=4,
                        help="versions of every person (default 4; copy 0 unaugmented)")
    parser.add_argument("--no-clean-first", action="store_true",
                        help="augment copy 0 too")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="augmentation seed")
    parser.add_argument("--scale", type=positive_float, nargs=2, default=(0.85, 1.15),
                        metavar=("LOW", "HIGH"), help="crop side jitter (default 0.85 1.15)")
    parser.add_argument("--translation", type=float, default=0.05,
                        help="crop centre jitter in crop sides (default 0.05)")
    parser.add_argument("--roi-rotation", type=float, default=8.0,
                        help="crop angle noise in degrees (default 8)")
    parser.add_argument("--flip", type=float, default=0.5, help="flip probability (default 0.5)")
    parser.add_argument("--occlusion", type=float, default=0.25,
                        help="probability of synthetic occluders (default 0.25)")
    parser.add_argument("--limit", type=positive_int, help="the first N persons only")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--chunk-size", type=positive_int, default=512,
                        help="items per chunk file (default 512)")
    parser.add_argument("--workers", type=non_negative_int, default=1,
                        help="DataLoader processes cutting the crops (default 1; 0: in this "
                        "process, so that the recorded CPU time is the whole cost)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch threads for the network (default 1)")
    parser.add_argument("--blazepose-dir", help="BlazePose model folder (default: the cache)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a cache built otherwise (default: refuse)")


def _source(folder: Path) -> dict:
    from hmrkit.data.shards import MANIFEST_NAME

    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        raise FileNotFoundError(f"{folder}: no {MANIFEST_NAME}; make the split with hmrkit synth")
    return {"data": str(folder), "manifest_sha256": hashlib.sha256(manifest.read_bytes())
            .hexdigest()}


class _CopiedItems:
    """Item ``k`` = copy ``k // N`` of person ``k % N``: the clean dataset for copy 0 (when
    ``clean_first``), the augmented one at epoch ``c`` otherwise."""

    def __init__(self, clean, augmented, copies: int, clean_first: bool,
                 limit: int | None = None):
        self.clean, self.augmented = clean, augmented
        self.n = len(clean) if limit is None else min(len(clean), limit)
        self.copies, self.clean_first = copies, clean_first

    def __len__(self) -> int:
        return self.n * self.copies

    def __getitem__(self, k: int):
        copy, index = divmod(int(k), self.n)
        if copy == 0 and self.clean_first:
            return self.clean[index]
        self.augmented.set_epoch(copy)
        return self.augmented[index]


def build_cache(args: argparse.Namespace, progress: bool = True) -> dict:
    """Build (or resume) the cache of ``args``; returns its manifest."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from hmrkit.data.augment import AugmentConfig
    from hmrkit.data.dataset import SyntheticDataset
    from hmrkit.data.feature_cache import HALF_OUTPUTS, PREFIX, CacheWriter, read_cache_manifest
    from hmrkit.models.backbones import BlazePoseBackbone

    torch.set_num_threads(args.threads)
    folder = Path(args.data)
    backbone = BlazePoseBackbone(variant=args.variant, inputs=tuple(args.outputs),
                                 directory=args.blazepose_dir).eval()
    augment = AugmentConfig(scale=tuple(args.scale), translation=args.translation,
                            roi_rotation_deg=args.roi_rotation, flip_prob=args.flip,
                            occlusion_prob=args.occlusion, seed=args.seed)
    res = 256
    common = {"split": None, "crop_size": res, "keys": ("image", *LABEL_KEYS),
              "crop_style": "blazepose"}
    clean = SyntheticDataset(folder, augment=None, **common)
    augmented = SyntheticDataset(folder, augment=augment, **common)
    items = _CopiedItems(clean, augmented, args.copies, not args.no_clean_first, args.limit)
    build = {
        "signature": backbone.cache_signature(),
        "outputs": {k: list(v) for k, v in backbone.raw_shapes().items()},
        "source": _source(folder), "augment": dataclasses.asdict(augment),
        "copies": args.copies, "clean_first": not args.no_clean_first, "seed": args.seed,
        "chunk_size": args.chunk_size, "persons": items.n, "labels": list(LABEL_KEYS),
    }
    writer = CacheWriter(args.out, build, overwrite=args.overwrite)
    pending = writer.pending()
    # one loader over the pending chunks; its batches never cross a chunk's end
    batches, owner = [], []
    for j in pending:
        span = list(writer.items(j))
        for i in range(0, len(span), args.batch_size):
            batches.append(span[i : i + args.batch_size])
            owner.append(j)
    loader = DataLoader(items, batch_sampler=batches, num_workers=args.workers)
    bar = tqdm(total=len(pending), disable=not progress, desc="cache", unit="chunk")
    parts: dict[str, list] = {}
    t0, c0, net_seconds = time.perf_counter(), time.process_time(), 0.0
    for b, batch in enumerate(loader):
        t1 = time.perf_counter()
        with torch.no_grad():
            images = batch.pop("image").contiguous(memory_format=torch.channels_last)
            raw = backbone.raw(images)
        net_seconds += time.perf_counter() - t1
        for k, v in raw.items():
            dtype = np.float16 if k in HALF_OUTPUTS else np.float32
            parts.setdefault(PREFIX + k, []).append(v.numpy().astype(dtype))
        for k, v in batch.items():
            parts.setdefault(k, []).append(v.numpy())
        j = owner[b]
        if b + 1 == len(batches) or owner[b + 1] != j:  # the chunk is complete
            n = len(writer.items(j))
            seconds = time.perf_counter() - t0
            writer.write_chunk(j, {k: np.concatenate(v) for k, v in parts.items()}, seconds,
                               cpu_seconds=time.process_time() - c0)
            bar.update(1)
            bar.set_postfix(ms_per_item=f"{1000 * seconds / n:.0f}",
                            net_ms_per_item=f"{1000 * net_seconds / n:.0f}")
            parts, t0, c0, net_seconds = {}, time.perf_counter(), time.process_time(), 0.0
    bar.close()
    return read_cache_manifest(args.out)


def run(args: argparse.Namespace) -> int:
    from hmrkit.blazepose.assets import BlazePoseModelError
    from hmrkit.data.feature_cache import FeatureCacheError

    try:
        manifest = build_cache(args, progress=sys.stderr.isatty())
    except (FeatureCacheError, BlazePoseModelError, FileNotFoundError, ValueError) as err:
        print(f"hmrkit cache: {err}", file=sys.stderr)
        return 2
    n = max(manifest["items"], 1)
    print(f"wrote {args.out}: {manifest['items']} items ({manifest['persons']} persons x "
          f"{manifest['copies']} copies), {manifest['bytes'] / 1e6:.1f} MB "
          f"({manifest['bytes'] / n / 1e3:.2f} kB per item), {manifest['seconds']:.0f} s "
          f"({1000 * manifest['seconds'] / n:.0f} ms per item; CPU time of this process "
          f"{1000 * manifest['cpu_seconds'] / n:.0f} ms per item)")
    return 0
