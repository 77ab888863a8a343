"""Lightning data module over hmrkit's datasets: synthetic shards and the public formats.

Every dataset yields Samples of one schema (:mod:`hmrkit.data.sample`), so a data module is
only "which files, which crop, which augmentation, how many workers"; the files are read by
:func:`hmrkit.data.formats.build_dataset`. Under ``hmrkit train`` the crop size, the RoI count
and the keys the model reads are linked from the model (its method contract), not set here.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from hmrkit.data.augment import AugmentConfig
from hmrkit.data.formats import SPARSE_KEYS, build_dataset, evenly_spaced

SPIN_AUGMENTATION = AugmentConfig()
"""The default training augmentation (SPIN's settings; never modified)."""


class HMRDataModule(L.LightningDataModule):
    """Training and validation data for every method (DDP-ready: Lightning adds samplers)."""

    def __init__(
        self,
        train: str = "data/synth/train",
        val: str | None = "data/synth/val",
        format: str = "synth",
        val_format: str | None = None,
        image_root: str | None = None,
        crop_size: int = 224,
        rois: int = 1,
        batch_size: int = 32,
        num_workers: int = 2,
        augment: AugmentConfig | None = SPIN_AUGMENTATION,
        max_val_samples: int | None = 512,
        max_train_samples: int | None = None,
        keys: tuple[str, ...] = (),
    ):
        """
        Args:
            train: training data (a shard folder for ``synth``, see :data:`FORMATS`).
            val: validation data, or None for no validation.
            format: format of ``train`` (and of ``val`` unless ``val_format``).
            val_format: format of ``val`` when it differs.
            image_root: image folder of ``spin-npz`` files.
            crop_size: side of the square person crop in pixels (the method's input).
            rois: crops per person (Multi-RoI; 1 for single-crop methods).
            batch_size: samples per batch and device.
            num_workers: DataLoader processes (0: load in the training process).
            augment: training augmentation (default: SPIN's, :class:`AugmentConfig`); null: off.
            max_val_samples: validate on this many samples, evenly spread (None: all).
            max_train_samples: train on the first this many samples (None: all).
            keys: Sample keys the model reads besides the regression labels (linked from the
                model's ``input_keys``).
        """
        super().__init__()
        self.save_hyperparameters()
        self.train_path, self.val_path = train, val
        self.format, self.val_format = format, val_format or format
        self.image_root = image_root
        self.crop_size, self.rois = crop_size, rois
        self.batch_size, self.num_workers = batch_size, num_workers
        self.augment = augment
        self.max_val_samples, self.max_train_samples = max_val_samples, max_train_samples
        self.keys = tuple(dict.fromkeys((*SPARSE_KEYS, "meta/body_model", *keys)))
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            train = build_dataset(self.format, self.train_path, self.crop_size, self.augment,
                                  self.rois, image_root=self.image_root, keys=self.keys)
            if self.max_train_samples is not None:
                train = Subset(train, range(min(self.max_train_samples, len(train))))
            self.train_set = train
        if stage in (None, "fit", "validate") and self.val_path and self.val_set is None:
            val = build_dataset(self.val_format, self.val_path, self.crop_size, None, self.rois,
                                image_root=self.image_root, keys=self.keys)
            self.val_set = evenly_spaced(val, self.max_val_samples)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=shuffle, drop_last=shuffle,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []
