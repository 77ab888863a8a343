"""Feature caches: a frozen backbone's outputs for a training split, written once, read by epochs.

Training a head over a frozen backbone on a CPU should not run the backbone every epoch. A
*feature cache* holds, for ``copies`` augmented copies of every person of a split, the backbone's
raw outputs (:meth:`hmrkit.models.backbones.BlazePoseBackbone.raw`) and the person's labels as
that copy was cut (the Sample keys without the image). ``hmrkit cache`` (:mod:`hmrkit.cache`)
writes it; the data module reads it with ``format: feature-cache``
(:class:`FeatureCacheDataset`), whose samples hold ``backbone/<output>`` keys in place of
``image`` (:meth:`hmrkit.models.backbones.Backbone.from_batch` reads them).

On disk, a folder::

    manifest.json       format, version, how it was built (below), its chunks
    chunk-00000.npz     items [0, chunk_size): arrays with a leading item axis
    chunk-00001.npz     ...

Item ``k`` is copy ``k // N`` of person ``k % N`` (``N`` persons in the split; copy 0 without
augmentation when ``clean_first``, copy ``c`` augmented with the parameters of epoch ``c``).
Each chunk (uncompressed ``.npz``: ``backbone/<output>`` arrays in float16 for the wide ones
(``trunk``, ``encoder``, ``heatmaps``), float32 otherwise, and the label keys in float32) is
written to a temporary file and renamed into place, then recorded with its size and sha256 in
``manifest.json`` (itself rewritten atomically), so an interrupted build resumes at the first
missing chunk and never reads a half-written one.

``manifest.json`` records what the cache was built with: ``signature`` (the backbone: class,
variant, sha256 of its weights, its crop settings, :meth:`~hmrkit.models.backbones.Backbone
.cache_signature`), ``outputs`` (names and shapes), ``source`` (the split folder and the sha256
of its ``manifest.json``), ``augment``, ``copies``, ``clean_first``, ``seed``, ``chunk_size``.
A build resumes only with the same record; a reader refuses a cache whose ``format_version``
or ``signature`` differs from what its model's backbone says (a *stale* cache), naming both.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hmrkit.io import atomic_write_text

__all__ = ["CACHE_FORMAT", "CACHE_FORMAT_VERSION", "FeatureCacheDataset", "FeatureCacheError",
           "CacheWriter", "read_cache_manifest"]

CACHE_FORMAT = "hmrkit-feature-cache"
CACHE_FORMAT_VERSION = 1
"""Bumped when the layout or the meaning of the stored arrays changes (older caches are
refused)."""
MANIFEST = "manifest.json"
PREFIX = "backbone/"
HALF_OUTPUTS = ("trunk", "encoder", "heatmaps")
"""Outputs stored in float16 (wide feature maps; the landmarks and labels stay float32)."""
BUILD_KEYS = ("signature", "outputs", "source", "augment", "copies", "clean_first", "seed",
              "chunk_size", "persons", "labels")
"""The manifest entries a resumed build must match."""


class FeatureCacheError(ValueError):
    """A feature cache that is missing, incomplete, corrupt or stale (one line, naming it)."""


def chunk_name(j: int) -> str:
    return f"chunk-{j:05d}.npz"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_cache_manifest(folder) -> dict[str, Any]:
    """The manifest of the cache in ``folder`` (:class:`FeatureCacheError` when absent or not
    a feature cache of this version)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FeatureCacheError(f"{folder}: no feature cache here (no {MANIFEST}); build it with "
                                "hmrkit cache")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FeatureCacheError(f"{path}: unreadable ({err})") from None
    if manifest.get("format") != CACHE_FORMAT:
        raise FeatureCacheError(f"{path}: not a feature cache (format {manifest.get('format')!r})")
    if manifest.get("format_version") != CACHE_FORMAT_VERSION:
        raise FeatureCacheError(
            f"{folder}: feature cache format version {manifest.get('format_version')}, this "
            f"hmrkit reads version {CACHE_FORMAT_VERSION}; rebuild it with hmrkit cache "
            "--overwrite")
    return manifest


def _differences(a: dict, b: dict) -> list[str]:
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


class CacheWriter:
    """Writes a feature cache chunk by chunk; resumes an interrupted one (module doc).

    ``build`` holds the :data:`BUILD_KEYS` entries. An existing cache with another build record
    is refused unless ``overwrite`` (then its chunks are deleted).
    """

    def __init__(self, folder, build: dict[str, Any], overwrite: bool = False):
        self.folder = Path(folder)
        missing = [k for k in BUILD_KEYS if k not in build]
        if missing:
            raise ValueError(f"CacheWriter: build record lacks {missing}")
        self.build = json.loads(json.dumps(build))  # plain JSON values, as they are read back
        self.total = int(build["persons"]) * int(build["copies"])
        self.num_chunks = -(-self.total // int(build["chunk_size"]))
        self.chunks: dict[int, dict] = {}
        if (self.folder / MANIFEST).exists():
            old = read_cache_manifest(self.folder) if not overwrite else None
            if old is not None:
                diff = _differences({k: old.get(k) for k in BUILD_KEYS}, self.build)
                if diff:
                    raise FeatureCacheError(
                        f"{self.folder}: holds a feature cache built otherwise ({'; '.join(diff)}"
                        "); pass --overwrite to replace it")
                self.chunks = {int(c["index"]): c for c in old.get("chunks", [])}
            else:
                for path in self.folder.glob("chunk-*.npz"):
                    path.unlink()
                (self.folder / MANIFEST).unlink()
        self.folder.mkdir(parents=True, exist_ok=True)
        for j, entry in list(self.chunks.items()):  # drop chunks whose file is not the one recorded
            path = self.folder / entry["name"]
            if not path.is_file() or path.stat().st_size != entry["bytes"] or _sha256(
                    path) != entry["sha256"]:
                del self.chunks[j]
        self.seconds = sum(float(c.get("seconds", 0.0)) for c in self.chunks.values())
        self.cpu_seconds = sum(float(c.get("cpu_seconds", 0.0)) for c in self.chunks.values())
        self._write_manifest()

    def items(self, j: int) -> range:
        """Item indices of chunk ``j``."""
        size = int(self.build["chunk_size"])
        return range(j * size, min((j + 1) * size, self.total))

    def pending(self) -> list[int]:
        """Chunks still to write, in order."""
        return [j for j in range(self.num_chunks) if j not in self.chunks]

    def write_chunk(self, j: int, arrays: dict[str, np.ndarray], seconds: float = 0.0,
                    cpu_seconds: float = 0.0) -> None:
        """Write chunk ``j`` (arrays with a leading axis of ``len(items(j))``) atomically and
        record it (with the wall and CPU seconds it took)."""
        n = len(self.items(j))
        bad = [k for k, v in arrays.items() if len(v) != n]
        if bad:
            raise ValueError(f"CacheWriter: chunk {j} needs {n} items; {bad} differ")
        path = self.folder / chunk_name(j)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())

        from hmrkit.io import _atomic

        _atomic(path, write)
        self.chunks[j] = {"index": j, "name": path.name, "items": [j * int(
            self.build["chunk_size"]), j * int(self.build["chunk_size"]) + n],
            "bytes": path.stat().st_size, "sha256": _sha256(path), "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3)}
        self.seconds += seconds
        self.cpu_seconds += cpu_seconds
        self._write_manifest()

    def _write_manifest(self) -> None:
        chunks = [self.chunks[j] for j in sorted(self.chunks)]
        done = sum(c["items"][1] - c["items"][0] for c in chunks)
        manifest = {
            "format": CACHE_FORMAT, "format_version": CACHE_FORMAT_VERSION, **self.build,
            "items": self.total, "complete": len(chunks) == self.num_chunks,
            "items_written": done, "bytes": sum(c["bytes"] for c in chunks),
            "seconds": round(self.seconds, 3), "cpu_seconds": round(self.cpu_seconds, 3),
            "chunks": chunks,
        }
        atomic_write_text(self.folder / MANIFEST, json.dumps(manifest, indent=1))


class FeatureCacheDataset(Dataset):
    """The samples of a feature cache (module doc): ``backbone/<output>`` tensors and the label
    keys, one item per (copy, person).

    Args:
        folder: the cache folder.
        signature: the reading model's backbone signature
            (:meth:`~hmrkit.models.backbones.Backbone.cache_signature`); a cache built with
            another is refused (stale). None: the model cannot read cached outputs (refused).
        keys: Sample keys wanted (``image`` and keys the cache does not hold but that the
            backbone's cached outputs replace are ignored; any other missing key is an error).
        verify: check every chunk's sha256 against the manifest.
    """

    def __init__(self, folder, signature: dict | None, keys: tuple[str, ...] | None = None,
                 verify: bool = True):
        self.folder = Path(folder)
        manifest = read_cache_manifest(self.folder)
        if signature is None:
            raise FeatureCacheError(
                f"{self.folder}: the model's backbone cannot read cached outputs (only a frozen "
                "backbone can); train it on images (data.format synth)")
        signature = json.loads(json.dumps(signature))
        diff = _differences(manifest.get("signature") or {}, signature)
        if diff:
            raise FeatureCacheError(
                f"{self.folder}: stale feature cache, built for another backbone or crop "
                f"({'; '.join(diff)}: cache != model); rebuild it with hmrkit cache --overwrite")
        if not manifest.get("complete"):
            raise FeatureCacheError(
                f"{self.folder}: incomplete feature cache ({manifest.get('items_written')} of "
                f"{manifest.get('items')} items); finish it by rerunning the same hmrkit cache "
                "command")
        self.manifest = manifest
        arrays: dict[str, list[np.ndarray]] = {}
        for entry in manifest["chunks"]:
            path = self.folder / entry["name"]
            if not path.is_file():
                raise FeatureCacheError(f"{path}: missing chunk of the feature cache; rerun the "
                                        "hmrkit cache command to rewrite it")
            if verify and (path.stat().st_size != entry["bytes"] or _sha256(path) != entry[
                    "sha256"]):
                raise FeatureCacheError(f"{path}: corrupt chunk (size or sha256 differs from "
                                        f"{MANIFEST}); rerun the hmrkit cache command")
            with np.load(path, allow_pickle=False) as f:
                for k in f.files:
                    arrays.setdefault(k, []).append(f[k])
        self.arrays = {k: torch.from_numpy(np.concatenate(v)) for k, v in arrays.items()}
        self.length = int(manifest["items"])
        stored = set(self.arrays)
        if keys is None:
            self.keys = tuple(sorted(stored))
        else:
            wanted = [k for k in keys if k != "image" and not k.startswith("rois/")]
            missing = sorted(set(wanted) - stored)
            if missing:
                raise FeatureCacheError(f"{self.folder}: the cache holds no {missing}; rebuild "
                                        "it with these keys (hmrkit cache --overwrite)")
            self.keys = tuple(dict.fromkeys([*wanted, *(k for k in stored
                                                        if k.startswith(PREFIX))]))

    @property
    def outputs(self) -> dict[str, list[int]]:
        """The cached backbone outputs and their shapes."""
        return self.manifest["outputs"]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"FeatureCacheDataset: index {index} out of range [0, {self.length})")
        out = {}
        for k in self.keys:
            v = self.arrays[k][index]
            out[k] = v.float() if v.dtype == torch.float16 else v
        return out

    def __repr__(self) -> str:
        return (f"FeatureCacheDataset('{self.folder}', items={self.length}, "
                f"outputs={sorted(self.outputs)})")
