"""Map-style dataset over synthetic scene shards, yielding one :mod:`Sample <hmrkit.data.sample>`
per person.

Layout: ``root/<split>/shard-NNNNN.tar`` written by :func:`hmrkit.data.shards.write_split`;
each record is one full image with per-person labels (see ``SCENE_RECORD`` below). The
dataset indexes ``(shard, record, person)`` triples from the shard indexes alone (persons and
visible fractions are stored there), keeping the persons with
``visible_fraction >= min_visible`` (``persons="visible"``) or all of them (``"all"``).

A sample is the square crop of ``crop_size`` pixels around the person's box (bilinear for the
image, nearest for mask / IUV / depth), with the labels of the Sample schema. With
``crop_style="blazepose"`` the crop is MediaPipe's rotated square instead (what BlazePose
models read, :data:`hmrkit.data.images.CROP_STYLES`), built from the person's labelled 2D
keypoints in the virtual image below (:func:`hmrkit.blazepose.roi.keypoint_roi`), jittered by
the augmentation (:func:`hmrkit.data.augment.jitter_roi`), sampled as MediaPipe samples it
(:func:`hmrkit.blazepose.roi.sampling_center`, replicated border); the sample then also holds
``box_rotation``.

Coordinate frames of a sample (augmentation included; see :mod:`hmrkit.data.augment`):
everything lives in one *virtual full image*, the source image after the augmentation's view
change (rotation about the principal point, then mirror ``x -> W - x``; the identity when not
augmenting). In it:

- ``keypoints2d/*``, ``box_center``, the principal point of ``camera/intrinsics`` are virtual
  full-image pixels;
  ``box_center`` / ``box_size`` are the box actually cropped (after scale / translation jitter);
- ``crop_affine`` maps virtual full-image pixels to crop pixels:
  ``crop_affine @ [x, y, 1]`` of a keypoint is where it appears in ``image``; it equals
  ``hmrkit.geometry.crops.crop_matrix(box_center, box_size, crop_size)``;
- 3D labels are in the virtual camera frame: ``Camera.from_sample(s).project(joints3d) ==
  keypoints2d/smpl24`` holds for augmented samples too, a flip mirrors the 3D labels
  (``x -> -x``) and swaps left / right joints, a rotation rolls them by ``rot_z(theta)``;
- ``meta/source_affine`` (2, 3) maps source full-image pixels to virtual ones (identity
  without augmentation): ``crop_affine @ meta/source_affine`` crops the stored image;
- ``meta/index`` (3,) int64: ``(shard, record, person)`` of the sample.

With ``rois = M > 1`` a sample also holds the Multi-RoI crops (:mod:`hmrkit.data.rois`) around
its box: ``rois/image`` (M, 3, S, S), ``rois/box_center`` (M, 2), ``rois/box_size`` (M,),
``rois/crop_affine`` (M, 2, 3), same frames as above, RoI 0 being the sample's own crop.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hmrkit.body.anny24 import NUM_BETAS as ANNY24_NUM_BETAS
from hmrkit.body.labels import body_model_code
from hmrkit.data.augment import (
    AugmentConfig,
    EpochSeededAugmentation,
    augmented_box,
    jitter_roi,
    occluder_layer,
    transform_labels,
    view_change,
)
from hmrkit.data.images import CROP_STYLES, as_bgr_uint, person_crop, warp
from hmrkit.data.rois import MAX_ROIS
from hmrkit.data.sample import ROI_KEYS, ROTATED_BOX_KEYS, SAMPLE_KEYS
from hmrkit.data.shards import ShardReader, decode_image, decode_npz, scan_shards
from hmrkit.geometry.cameras import default_focal

__all__ = ["SyntheticDataset", "SCENE_RECORD", "META_KEYS"]

SCENE_RECORD: dict[str, str] = {
    "image.jpg": "RGB full image (JPEG; or image.png)",
    "labels.npz": "per-person arrays (leading axis P) and per-image camera arrays",
    "instances.png": "uint8 (H, W): 0 background, p + 1 where person p is visible",
    "iuv.png": "uint16 (H, W, 3): body-part index (0 background), U * 65535, V * 65535",
    "depth.png": "uint16 (H, W) depth in millimetres, 0 background",
    "meta.json": "free-form scene parameters",
}
"""Members of one scene record (see the scene engine)."""

META_KEYS: dict[str, str] = {
    "meta/index": "(3,) int64: shard, record, person",
    "meta/body_model": "() int64: the labels' body model, Anny-24 "
                       "(hmrkit.body.labels.LABEL_BODY_MODELS)",
    "meta/source_affine": "(2, 3) stored full-image pixels -> the sample's full-image pixels",
}
"""Bookkeeping keys (allowed by :func:`hmrkit.data.sample.check_sample`)."""

ANNY24_LABELS = body_model_code("anny24")
"""``meta/body_model`` of the scene engine's labels (Anny-24 parameters)."""
_IMAGE_NAMES = ("image.jpg", "image.jpeg", "image.png")
_DENSE = {"mask": "instances.png", "iuv": "iuv.png", "depth": "depth.png"}
_PERSON_SHAPES: dict[str, tuple[int, ...]] = {
    "keypoints2d/smpl24": (24, 3),
    "keypoints2d/coco17": (17, 3),
    "keypoints2d/lsp14": (14, 3),
    "joints3d": (24, 3),
    "keypoints3d/lsp14": (14, 3),
    "global_orient": (3, 3),
    "body_pose": (23, 3, 3),
    "betas": (ANNY24_NUM_BETAS,),
    "transl": (3,),
    "world_global_orient": (3, 3),
}
_MAX_OPEN = 64
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_\-.]+$")


def _resolve_folder(root, split: str | None) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"SyntheticDataset: data folder {root} does not exist")
    if split is None:
        return root
    if not isinstance(split, str) or not _SPLIT_RE.match(split) or split in (".", ".."):
        raise ValueError(
            f"SyntheticDataset: bad split name {split!r} (expected a sub-folder name of {root})"
        )
    folder = root / split
    if not folder.is_dir():
        found = [p.name for p in sorted(root.iterdir()) if p.is_dir() and p.name[0] != "."]
        raise ValueError(
            f"SyntheticDataset: no split '{split}' in {root}; available splits: {found or 'none'}"
        )
    return folder


class SyntheticDataset(EpochSeededAugmentation, Dataset):
    """Persons of the scene records in ``root/split`` as Samples (see the module doc).

    Args:
        root: folder holding one sub-folder of shards per split (or the shards themselves
            with ``split=None``).
        split: split name, e.g. ``"train"``.
        crop_size: side ``S`` of the square crop in pixels.
        rois: number of Multi-RoI crops ``M`` in ``1 .. 5``; > 1 adds the ``rois/*`` keys.
        augment: training augmentation, or None for none (evaluation).
        keys: the sample keys to return (default: all); dense maps not asked for are not
            decoded, which is faster.
        persons: ``"visible"`` keeps persons with ``visible_fraction >= min_visible``;
            ``"all"`` keeps every person.
        min_visible: threshold of ``persons="visible"``.
        strict: raise on an invalid shard instead of skipping it with a warning.
        verify_crc: check each member's CRC-32 when reading.
        exclude: file names of shards not to read (e.g. those
            :func:`~hmrkit.data.shards.check_split` finds corrupt).
        crop_style: ``"box"`` (upright square around the labelled box) or ``"blazepose"``
            (MediaPipe's rotated square from the labelled keypoints; see the module doc).
    """

    def __init__(
        self,
        root,
        split: str | None = "train",
        crop_size: int = 224,
        rois: int = 1,
        augment: AugmentConfig | None = None,
        keys: Iterable[str] | None = None,
        persons: str = "visible",
        min_visible: float = 0.3,
        strict: bool = False,
        verify_crc: bool = True,
        exclude: Iterable[str] = (),
        crop_style: str = "box",
    ):
        if crop_style not in CROP_STYLES:
            raise ValueError(f"SyntheticDataset: crop_style must be one of {CROP_STYLES}, got "
                             f"{crop_style!r}")
        self.crop_style = crop_style
        if not isinstance(crop_size, (int, np.integer)) or isinstance(crop_size, bool):
            raise ValueError(f"SyntheticDataset: crop_size must be an int, got {crop_size!r}")
        if crop_size < 8:
            raise ValueError(f"SyntheticDataset: crop_size must be >= 8, got {crop_size}")
        if not isinstance(rois, (int, np.integer)) or not 1 <= rois <= MAX_ROIS:
            raise ValueError(
                f"SyntheticDataset: rois must be an int in [1, {MAX_ROIS}], got {rois!r}"
            )
        if augment is not None and not isinstance(augment, AugmentConfig):
            raise TypeError(
                f"SyntheticDataset: augment must be an AugmentConfig or None, got "
                f"{type(augment).__name__}"
            )
        if persons not in ("visible", "all"):
            raise ValueError(
                f"SyntheticDataset: persons must be 'visible' or 'all', got {persons!r}"
            )
        if not 0.0 <= float(min_visible) <= 1.0:
            raise ValueError(
                f"SyntheticDataset: min_visible must be in [0, 1], got {min_visible!r}"
            )
        self.crop_size = int(crop_size)
        self.rois = int(rois)
        self.augment = augment
        self.persons = persons
        self.min_visible = float(min_visible)
        self.epoch = 0
        available = (set(SAMPLE_KEYS) - set(ROI_KEYS) - set(ROTATED_BOX_KEYS)) | set(META_KEYS)
        if self.rois > 1:
            available |= set(ROI_KEYS)
        if crop_style == "blazepose":
            available |= {k for k in ROTATED_BOX_KEYS if self.rois > 1 or "rois/" not in k}
        if keys is None:
            self.keys = frozenset(available)
        else:
            keys = [keys] if isinstance(keys, str) else list(keys)
            unknown = sorted(set(keys) - available)
            if unknown:
                roi = any(k.startswith("rois/") for k in unknown)
                hint = " (rois/* keys need rois > 1)" if roi else ""
                raise ValueError(
                    f"SyntheticDataset: unknown keys {unknown}{hint}; known: {sorted(available)}"
                )
            self.keys = frozenset(keys)

        self.folder = _resolve_folder(root, split)
        scan = scan_shards(self.folder, strict=strict, verify_crc=verify_crc, exclude=exclude)
        self.rejected = scan.rejected
        """Invalid shards that were skipped, with the reason."""
        if not scan.valid:
            notes = []
            if scan.rejected:
                notes.append(f"{len(scan.rejected)} invalid shard(s) skipped")
            if scan.partial:
                notes.append(f"{len(scan.partial)} unfinished .tmp file(s)")
            extra = f" ({'; '.join(notes)})" if notes else ""
            raise ValueError(
                f"SyntheticDataset: no valid shards (shard-NNNNN.tar) in {self.folder}{extra}"
            )
        self.shards: list[ShardReader] = scan.valid
        self._items = self._build_index()
        if len(self._items) == 0:
            raise ValueError(
                f"SyntheticDataset: {self.folder} has {sum(len(r) for r in self.shards)} records "
                f"but no person passes persons={persons!r}, min_visible={self.min_visible}"
            )
        self._lru: OrderedDict[int, None] = OrderedDict()

    # ------------------------------------------------------------------ index

    def _build_index(self) -> np.ndarray:
        rows = []
        for s, reader in enumerate(self.shards):
            for r in range(len(reader)):
                count = reader.persons(r)
                vis = reader.visible_fraction(r)
                if count < 0 or (vis is None and self.persons == "visible"):
                    count, vis = self._persons_from_labels(reader, r)
                rows.extend((s, r, int(p)) for p in self._kept(count, vis))
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3)

    def _kept(self, count: int, vis: np.ndarray | None) -> np.ndarray:
        """Indices of the persons of a record this dataset keeps (``persons``, ``min_visible``)."""
        if self.persons == "all" or vis is None:
            return np.arange(count)
        return np.nonzero(np.asarray(vis) >= self.min_visible)[0]

    def expected_persons(self, manifest: dict) -> int:
        """Persons this dataset would hold with every shard of a split's ``manifest.json``:
        from the visible fractions it records per shard (its person count where it has none).
        """
        return sum(len(self._kept(s["num_persons"], s.get("visible_fraction")))
                   for s in manifest.get("shards", []))

    @staticmethod
    def _persons_from_labels(reader: ShardReader, r: int) -> tuple[int, np.ndarray | None]:
        """Persons of a record whose index lacks them, from its labels (cached on the reader)."""
        cache = reader.__dict__.setdefault("_label_persons", {})
        if r not in cache:
            data = reader.read(r, ["labels.npz"]).get("labels.npz")
            count, vis = 0, None
            if data is not None:
                labels = decode_npz(data)
                count = len(np.asarray(labels.get("box_size", [])).reshape(-1))
                if "visible_fraction" in labels:
                    vis = np.asarray(labels["visible_fraction"], dtype=np.float64).reshape(-1)
            cache[r] = (count, vis)
        return cache[r]

    @property
    def items(self) -> np.ndarray:
        """``(N, 3)`` int64 ``(shard, record, person)`` of every sample."""
        return self._items

    def __len__(self) -> int:
        return len(self._items)

    def _reader(self, s: int) -> ShardReader:
        self._lru[s] = None
        self._lru.move_to_end(s)
        while len(self._lru) > _MAX_OPEN:
            old, _ = self._lru.popitem(last=False)
            self.shards[old].close()
        return self.shards[s]

    # ------------------------------------------------------------------ samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self._items)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"SyntheticDataset: index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"SyntheticDataset: index {index} out of range [0, {n})")
        index = int(index) % n
        s, r, p = (int(v) for v in self._items[index])
        keys = self.keys
        want_image = "image" in keys or "rois/image" in keys or "full_image" in keys
        want_dense = {k: v for k, v in _DENSE.items() if k in keys or f"has_{k}" in keys}
        names = ["labels.npz", *(_IMAGE_NAMES if want_image else ()), *want_dense.values()]
        raw = self._reader(s).read(r, names)
        if "labels.npz" not in raw:
            raise ValueError(f"{self.shards[s].path}: record {r} has no labels.npz")
        labels = decode_npz(raw["labels.npz"])
        image = None
        if want_image:
            name = next((n for n in _IMAGE_NAMES if n in raw), None)
            if name is None:
                raise ValueError(f"{self.shards[s].path}: record {r} has no image member")
            image = as_bgr_uint(decode_image(raw[name], rgb=False))  # RGB when cropped

        # camera and box of the stored image
        if "image_size" in labels:
            wh = np.asarray(labels["image_size"], dtype=np.float64).reshape(2)
        elif image is not None:
            wh = np.array([image.shape[1], image.shape[0]], dtype=np.float64)
        else:
            raise ValueError(f"{self.shards[s].path}: record {r} has no image_size")
        focal = float(labels["focal"]) if "focal" in labels else float(default_focal(wh))
        pp = np.asarray(labels.get("principal_point", wh / 2), dtype=np.float64).reshape(2)
        center = np.asarray(labels["box_center"], dtype=np.float64)[p]
        size = float(np.asarray(labels["box_size"], dtype=np.float64).reshape(-1)[p])

        # augmentation: box jitter, then the view change to the virtual full image
        params = self.augmentation_params(index)
        person = {k: np.asarray(v)[p] for k, v in labels.items() if k in _PERSON_SHAPES}
        person["principal_point"] = pp
        if "cam_to_world" in labels:
            person["cam_to_world"] = np.asarray(labels["cam_to_world"])
        rotation, border = None, "zero"
        if self.crop_style == "blazepose":  # the ROI of the keypoints in the virtual image
            view = view_change(params, wh, pp)
            person = transform_labels(person, view)
            center, size, rotation = self._blazepose_roi(person, params)
            border = "replicate"
        else:
            center, size, view = augmented_box(params, center, size, wh, pp)
            person = transform_labels(person, view)
        source = view.affine()

        res = self.crop_size
        layer = occluder_layer(params, res)
        cut = person_crop(
            image, center, size, res, rois=self.rois, source=source, rotation=rotation,
            count=self.rois if "rois/image" in keys else 1, bgr=True, gain=params.color_gain,
            occluders=layer, area_downscale=False, border=border,
        )
        stored = cut.from_stored[0]  # stored image -> the person's crop
        out: dict[str, Any] = cut.sample_keys(rois=self.rois > 1)
        if "full_image" in keys:  # the whole virtual image (area-averaged: a strong downscale)
            out["full_image"] = person_crop(
                image, wh / 2, float(wh.max()), res, source=source, bgr=True,
                gain=params.color_gain).images[0]
        zero = np.zeros((res, res), np.float32)
        if "mask" in want_dense:
            if "instances.png" in raw and "mask" not in keys:  # only the flag is wanted
                out["has_mask"] = 1.0
            elif "instances.png" in raw:
                inst = warp(decode_image(raw["instances.png"]), stored, res, "nearest")
                out["mask"], out["has_mask"] = (inst == p + 1).astype(np.float32), 1.0
            else:
                out["mask"], out["has_mask"] = zero, 0.0
        if "iuv" in want_dense:
            drop = self.augment is not None and self.augment.iuv_on_flip == "drop"
            keep = not (params.flip and drop)
            if "iuv.png" in raw and keep and "iuv" not in keys:
                out["has_iuv"] = 1.0
            elif "iuv.png" in raw and keep:
                iuv = warp(decode_image(raw["iuv.png"], rgb=False), stored, res, "nearest")
                iuv = iuv.transpose(2, 0, 1)[::-1].astype(np.float32)  # BGR -> I, U, V
                iuv[1:] *= np.float32(1.0 / 65535.0)
                out["iuv"], out["has_iuv"] = np.ascontiguousarray(iuv), 1.0
            else:
                out["iuv"], out["has_iuv"] = np.zeros((3, res, res), np.float32), 0.0
        if "depth" in want_dense:
            if "depth.png" in raw and "depth" not in keys:
                out["has_depth"] = 1.0
            elif "depth.png" in raw:
                depth = warp(decode_image(raw["depth.png"]), stored, res, "nearest")
                out["depth"], out["has_depth"] = depth.astype(np.float32) * 1e-3, 1.0
            else:
                out["depth"], out["has_depth"] = zero, 0.0

        if layer is not None:  # occluded pixels leave the person's dense labels
            hidden = layer[..., 3] >= 0.5
            for key in ("mask", "depth"):
                if isinstance(out.get(key), np.ndarray):
                    out[key] = np.where(hidden, np.float32(0), out[key])
            if isinstance(out.get("iuv"), np.ndarray):
                out["iuv"] = np.where(hidden[None], np.float32(0), out["iuv"])
        out["camera/intrinsics"] = np.array([focal, focal, *person["principal_point"]])
        out["camera/image_size"] = wh
        out["camera/to_world"] = person.get("cam_to_world", np.zeros((3, 3)))
        for key, shape in _PERSON_SHAPES.items():
            out[key] = person[key] if key in person else np.zeros(shape)
        out["has_keypoints2d"] = float(any(k.startswith("keypoints2d/") for k in person))
        out["has_joints3d"] = float("joints3d" in person)
        out["has_smpl"] = float(all(k in person for k in ("global_orient", "body_pose", "betas")))
        out["has_world"] = float("world_global_orient" in person and "cam_to_world" in person)
        out["meta/source_affine"] = source
        sample = {
            k: torch.as_tensor(np.asarray(v), dtype=torch.float32)
            for k, v in out.items()
            if k in keys
        }
        if "meta/index" in keys:
            sample["meta/index"] = torch.tensor([s, r, p], dtype=torch.int64)
        if "meta/body_model" in keys:
            sample["meta/body_model"] = torch.tensor(ANNY24_LABELS, dtype=torch.int64)
        return sample

    def _blazepose_roi(self, person: dict, params) -> tuple[np.ndarray, float, float]:
        """MediaPipe's crop of a person from its keypoints (virtual image), jittered, as the box
        ``person_crop`` cuts (:func:`hmrkit.blazepose.roi.sampling_center`)."""
        from hmrkit.blazepose.roi import keypoint_roi, sampling_center

        coco = torch.as_tensor(person["keypoints2d/coco17"], dtype=torch.float64)[None]
        smpl = torch.as_tensor(person["keypoints2d/smpl24"], dtype=torch.float64)[None]
        center, size, rotation = (v[0].numpy() for v in keypoint_roi(coco, smpl))
        center, size, rotation = jitter_roi(center, float(size), float(rotation), params)
        center = sampling_center(torch.from_numpy(center), size, rotation, self.crop_size)
        return center.numpy(), size, rotation

    def __repr__(self) -> str:
        return (
            f"SyntheticDataset('{self.folder}', samples={len(self)}, shards={len(self.shards)}, "
            f"crop_size={self.crop_size}, rois={self.rois}, augment={self.augment is not None})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lru"] = OrderedDict()
        return state
