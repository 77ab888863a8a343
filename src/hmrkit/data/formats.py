"""Which dataset reads which format: the one place mapping ``(format, path)`` to a dataset.

Light to import (datasets load lazily), so the ``hmrkit`` command line can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from hmrkit.data.augment import AugmentConfig

FORMATS = ("synth", "spin-npz", "3dpw", "feature-cache")
"""``synth``: a folder of ``hmrkit synth`` shards; ``spin-npz``: a SPIN/CLIFF preprocessed
``.npz`` (images under ``image_root``); ``3dpw``: the 3DPW root folder (``split`` picks
``sequenceFiles/<split>``); ``feature-cache``: a frozen backbone's outputs and the labels of a
split, written by ``hmrkit cache`` (:mod:`hmrkit.data.feature_cache`)."""

SPARSE_KEYS = (
    "image", "crop_affine", "box_center", "box_size", "camera/intrinsics", "camera/image_size",
    "camera/to_world", "keypoints2d/smpl24", "keypoints2d/coco17", "keypoints2d/lsp14",
    "joints3d", "keypoints3d/lsp14", "global_orient", "body_pose", "betas", "transl",
    "world_global_orient", "has_keypoints2d", "has_joints3d", "has_smpl", "has_world",
)
"""What the regression baselines read (no dense maps: faster to decode)."""


def build_dataset(
    format: str,
    path: str | Path,
    crop_size: int,
    augment: AugmentConfig | None = None,
    rois: int = 1,
    split: str | None = None,
    image_root: str | Path | None = None,
    keys: tuple[str, ...] | None = SPARSE_KEYS,
    exclude_shards: tuple[str, ...] = (),
    crop_style: str = "box",
    signature: dict | None = None,
) -> Dataset:
    """The dataset of ``format`` at ``path`` (see :data:`FORMATS`); errors name the path.
    ``exclude_shards``: shard file names a ``synth`` split leaves out; ``crop_style``: how the
    people are cut (:data:`hmrkit.data.images.CROP_STYLES`; ``blazepose`` for ``synth``
    only); ``signature``: the reading backbone's cache signature (``feature-cache``)."""
    if format not in FORMATS:
        raise ValueError(f"unknown data format '{format}'; choose one of {FORMATS}")
    if format == "feature-cache":
        from hmrkit.data.feature_cache import FeatureCacheDataset

        if rois != 1:
            raise ValueError("a feature cache holds one crop per person; Multi-RoI methods "
                             "(rois > 1) train on images (format synth)")
        return FeatureCacheDataset(path, signature, keys=keys)  # augmented when it was built
    if crop_style != "box" and format not in ("synth", "feature-cache"):
        raise ValueError(f"crop_style '{crop_style}' is only available for format 'synth', "
                         f"not '{format}'")
    if format == "synth":
        from hmrkit.data.dataset import SyntheticDataset
        from hmrkit.data.sample import ROI_KEYS

        if rois > 1 and keys is not None:  # the Multi-RoI crops and boxes come along
            keys = (*keys, *(k for k in ROI_KEYS if k not in keys))
        return SyntheticDataset(path, split=split, crop_size=crop_size, rois=rois,
                                augment=augment, keys=keys, exclude=exclude_shards,
                                crop_style=crop_style)
    if exclude_shards:
        raise ValueError(f"exclude_shards is only available for format 'synth', not '{format}'")
    if rois != 1:
        raise ValueError(f"rois > 1 is only available for format 'synth', not '{format}'")
    # the public readers return every key they have; rois/* keys are synthetic only
    if format == "spin-npz":
        from hmrkit.data.public import SpinNpzDataset

        if image_root is None:
            raise ValueError(f"{path}: format 'spin-npz' needs image_root (the image folder)")
        return SpinNpzDataset(path, image_root, crop_size=crop_size, augment=augment)
    from hmrkit.data.public import PW3DDataset

    return PW3DDataset(path, split=split or "test", crop_size=crop_size, augment=augment)


def evenly_spaced(dataset: Dataset, limit: int | None) -> Dataset:
    """At most ``limit`` samples of ``dataset``, spread evenly over it (all if None)."""
    from torch.utils.data import Subset

    if limit is None or limit >= len(dataset):
        return dataset
    return Subset(dataset, np.linspace(0, len(dataset) - 1, limit).round().astype(int).tolist())
