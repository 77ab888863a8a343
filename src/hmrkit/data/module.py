"""Lightning data module over hmrkit's datasets: synthetic shards and the public formats.

Every dataset yields Samples of one schema (:mod:`hmrkit.data.sample`), so a data module is
only "which files, which crop, which augmentation, how many workers"; the files are read by
:func:`hmrkit.data.formats.build_dataset`. Under ``hmrkit train`` the crop size, the RoI count
and the keys the model reads are linked from the model (its method contract), not set here.

Determinism: the training order and the augmentation are functions of one ``seed`` (``hmrkit
train`` sets it from the config's ``seed_everything``) and of the epoch: epoch ``e`` visits
the samples in :class:`ResumableSampler`'s order for ``(seed, e)`` and augments item ``i``
with the parameters of ``(seed, e, i)`` (:mod:`hmrkit.data.augment`), in the training process
or in any DataLoader worker. :class:`ResumableLoader` gives Lightning its position in the
epoch, which Lightning saves in every checkpoint, so a resumed run continues the interrupted
epoch with the batches it had not seen, in the same order.
"""

from __future__ import annotations

import dataclasses

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from hmrkit.data.augment import AugmentConfig
from hmrkit.data.formats import SPARSE_KEYS, build_dataset, evenly_spaced
from hmrkit.data.rois import MAX_ROIS

SPIN_AUGMENTATION = AugmentConfig()
"""The default training augmentation (SPIN's settings; never modified)."""


class DataError(ValueError):
    """Data the module cannot read; the message names the config key and the file."""


def set_epoch(dataset: Dataset, epoch: int) -> None:
    """Tell the dataset under ``dataset`` (through ``Subset``\\ s) the epoch of its seeded
    augmentation (:class:`~hmrkit.data.augment.EpochSeededAugmentation`)."""
    while dataset is not None:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
            return
        dataset = getattr(dataset, "dataset", None)


class EpochItems(Dataset):
    """``dataset`` addressed by ``(epoch, index)`` pairs (:class:`ResumableSampler`'s): each
    read first sets the augmentation epoch, so it is right in DataLoader workers too,
    persistent or not."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        set_epoch(self.dataset, epoch)
        return self.dataset[index]


class ResumableSampler(DistributedSampler):
    """The shuffled order of epoch ``e``: ``DistributedSampler``'s for ``seed + e`` (this
    replica's share of it), as ``(epoch, index)`` pairs for :class:`EpochItems`. ``skip``
    leaves out the first samples of the next pass only (a resumed epoch). Being a
    ``DistributedSampler``, Lightning keeps it under DDP and sets its epoch."""

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True,
                         seed=seed, drop_last=True)
        self.skip = 0

    def __iter__(self):
        epoch, skip, self.skip = self.epoch, self.skip, 0
        return iter([(epoch, int(i)) for i in list(super().__iter__())[skip:]])


class ResumableLoader(DataLoader):
    """A training DataLoader over a :class:`ResumableSampler` whose position in the epoch
    Lightning saves with every checkpoint (``state_dict``: epoch and samples yielded) and gives
    back on resume (``load_state_dict``: the next pass skips those). Its ``generator`` (the
    seeds of worker processes) restarts from ``(seed, epoch)`` at every epoch."""

    def __iter__(self):
        sampler = self.sampler
        self._epoch = sampler.epoch
        self._yielded = sampler.skip // self.batch_size
        if self.generator is not None:
            self.generator.manual_seed(sampler.seed * 1_000_003 + sampler.epoch)
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": getattr(self, "_epoch", self.sampler.epoch),
                "samples": getattr(self, "_yielded", 0) * self.batch_size,
                "seed": self.sampler.seed}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.set_epoch(state["epoch"])
        done = int(state["samples"])
        self.sampler.skip = done if done < len(self) * self.batch_size else 0


class HMRDataModule(L.LightningDataModule):
    """Training and validation data for every method (DDP-ready: see :class:`ResumableSampler`)."""

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
        seed: int | None = None,
        crop_style: str = "box",
        features: dict | None = None,
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
                Its ``seed`` defaults to ``seed``.
            max_val_samples: validate on this many samples, evenly spread (None: all).
            max_train_samples: train on the first this many samples (None: all).
            keys: Sample keys the model reads besides the regression labels (linked from the
                model's ``input_keys``).
            seed: seed of the training order and, unless ``augment.seed`` is set, of the
                augmentation (``hmrkit train``: the config's ``seed_everything``; None: drawn
                from torch's generator).
            crop_style: how people are cut (:data:`hmrkit.data.images.CROP_STYLES`; linked
                from the model's ``crop_style``).
            features: the model's backbone cache signature, checked against a
                ``feature-cache`` split (linked from the model; None: it reads no cache).
        """
        super().__init__()
        for key, value, low in (("crop_size", crop_size, 8), ("rois", rois, 1),
                                ("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                ("max_val_samples", max_val_samples, 1),
                                ("max_train_samples", max_train_samples, 1)):
            if value is not None and (isinstance(value, bool) or value < low):
                raise ValueError(f"data.{key} must be an integer >= {low}, got {value!r}")
        if rois > MAX_ROIS:
            raise ValueError(f"data.rois must be at most {MAX_ROIS}, got {rois}")
        self.save_hyperparameters()
        self.train_path, self.val_path = train, val
        self.format, self.val_format = format, val_format or format
        self.image_root = image_root
        self.crop_size, self.rois = crop_size, rois
        self.crop_style, self.features = crop_style, features
        self.batch_size, self.num_workers = batch_size, num_workers
        self.seed = int(torch.randint(2**31 - 1, ())) if seed is None else int(seed)
        if augment is not None and augment.seed is None:
            augment = dataclasses.replace(augment, seed=self.seed)
        self.augment = augment
        self.max_val_samples, self.max_train_samples = max_val_samples, max_train_samples
        self.keys = tuple(dict.fromkeys((*SPARSE_KEYS, "meta/body_model", *keys)))
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _build(self, key: str, format: str, path, augment) -> Dataset:
        try:
            return build_dataset(format, path, self.crop_size, augment, self.rois,
                                 image_root=self.image_root, keys=self.keys,
                                 crop_style=self.crop_style, signature=self.features)
        except (FileNotFoundError, ValueError) as err:
            raise DataError(f"data.{key}: {err}") from err

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            train = self._build("train", self.format, self.train_path, self.augment)
            if self.max_train_samples is not None:
                train = Subset(train, range(min(self.max_train_samples, len(train))))
            if len(train) < self.batch_size:
                raise DataError(f"data.train: {self.train_path} holds {len(train)} samples, "
                                f"fewer than one batch (data.batch_size {self.batch_size})")
            self.train_set = train
        if stage in (None, "fit", "validate") and self.val_path and self.val_set is None:
            val = self._build("val", self.val_format, self.val_path, None)
            self.val_set = evenly_spaced(val, self.max_val_samples)

    def _generator(self) -> torch.Generator:
        """The loaders' own generator: they draw nothing from torch's global one."""
        return torch.Generator().manual_seed(self.seed)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = ResumableSampler(self.train_set, self.seed, replicas, rank)
        return ResumableLoader(
            EpochItems(self.train_set), batch_size=self.batch_size, sampler=sampler,
            drop_last=True, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
            generator=self._generator(),
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(
            self.val_set, batch_size=self.batch_size, shuffle=False,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(), generator=self._generator(),
        )
