"""Sharded storage of scene records: atomic tar shards with an index, and random access.

A *record* is one full image with its labels: a ``dict[str, bytes]`` from member names
(``"image.jpg"``, ``"labels.npz"``, ...) to encoded bytes. A *shard* is a plain POSIX ustar
archive holding many records as WebDataset-style members ``{key}.{name}``, followed by an
index and a fixed-size footer::

    000000000.image.jpg  000000000.labels.npz ...   records, in order, each member 512-aligned
    __index__.json                                   data offset, size and CRC-32 of every member,
                                                     persons per record, split metadata, SHA-256
                                                     of all record bytes
    __footer__.json                                  512 bytes: magic, offset / size / SHA-256 of
                                                     the index, total file size
    1024 zero bytes                                  end of archive (no record padding)

``tar tf`` and WebDataset read shards as ordinary tars. :class:`ShardReader` reads the footer
(the last 2048 bytes), then the index, and reads any member with one ``pread`` at its offset,
without scanning or extracting the archive.

Atomicity: :class:`ShardWriter` writes to ``<final>.tmp-<pid>`` and renames to the final
``shard-00003.tar`` only in :meth:`ShardWriter.close`, after the index and footer are written
and flushed to disk. A killed writer leaves only a ``.tmp-*`` file, which readers ignore; a
truncated or foreign tar lacks a valid footer and index and is rejected
(:func:`scan_shards` skips it with a counted warning, or raises when ``strict``).

Splits: :func:`write_split` writes record ``i`` of ``n`` into shard ``i // shard_size`` of a
split folder, optionally only the shards of job ``i`` of ``N`` (round-robin, for SLURM arrays
or job queues), over a spawn-safe process pool, skipping shards already complete (resume: their
CRCs are checked, corrupt ones rewritten), and keeps an atomic ``manifest.json`` listing every
shard of the split (:func:`read_manifest`). :func:`check_split` compares a folder with its
manifest (absent, truncated or corrupt shards), so a reader can refuse an incomplete split.

Image members are stored and decoded in R, G, B(, A) channel order (the PNG / JPEG order):
:func:`encode_image` and :func:`decode_image` do OpenCV's BGR swap, so channel ``k`` of the
array is channel ``k`` of the file (e.g. ``iuv.png`` channel 0 = body-part index).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import multiprocessing
import os
import pickle
import re
import tarfile
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    "SHARD_FORMAT",
    "SHARD_VERSION",
    "MANIFEST_NAME",
    "InvalidShardError",
    "SplitMismatchError",
    "SplitCheck",
    "check_split",
    "ShardWriter",
    "ShardReader",
    "ShardScan",
    "open_shard",
    "scan_shards",
    "read_scenes",
    "shard_name",
    "shard_path",
    "record_key",
    "shards_for_job",
    "write_split",
    "update_manifest",
    "read_manifest",
    "encode_image",
    "decode_image",
    "encode_npz",
    "decode_npz",
    "encode_json",
    "encode_member",
    "decode_member",
    "summarize_record",
]

SHARD_FORMAT = "hmrkit-shard"
"""Magic string in every shard footer and index."""

SHARD_VERSION = 1
"""Version of the shard layout."""

MANIFEST_NAME = "manifest.json"
"""Name of the per-split summary file."""

INDEX_MEMBER = "__index__.json"
FOOTER_MEMBER = "__footer__.json"
_BLOCK = 512
_FOOTER_DATA = 512
_TAIL = 2 * _BLOCK + _BLOCK + _FOOTER_DATA  # footer header + footer data + end of archive
_SHARD_RE = re.compile(r"^shard-(\d{5,})\.tar$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-./]*$")


OVERWRITE_HINT = "overwrite it (hmrkit synth --overwrite; write_split(..., overwrite=True))"


class SplitMismatchError(ValueError):
    """A split folder that holds shards of another split (other records, meta or size)."""


class InvalidShardError(ValueError):
    """A file that is not a complete, valid hmrkit shard (truncated, no index, corrupt)."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: not a valid hmrkit shard: {reason}")
        self.path = Path(path)
        self.reason = reason


# --------------------------------------------------------------------------- member codecs


def encode_image(array: np.ndarray, ext: str = "png", quality: int = 95) -> bytes:
    """Encode an image (H, W[, C]) uint8 (any format) or uint16 (PNG) to ``ext`` bytes.

    Channels are in R, G, B(, A) order (swapped to OpenCV's BGR here). JPEG uses
    ``quality``; PNG is lossless, and 16-bit PNGs keep all 16 bits.
    """
    ext = ext.lower().lstrip(".")
    a = np.asarray(array)
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_image: dtype {a.dtype} not supported; use uint8 or uint16")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2BGR)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGBA2BGRA)
    elif a.ndim != 2:
        raise ValueError(f"encode_image: shape {a.shape} not supported; (H, W) or (H, W, 1|3|4)")
    if ext in ("jpg", "jpeg"):
        if a.dtype != np.uint8:
            raise ValueError("encode_image: JPEG needs uint8; use PNG for 16-bit images")
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == "png":
        params = []
    else:
        raise ValueError(f"encode_image: unknown image extension '{ext}' (use jpg or png)")
    ok, buf = cv2.imencode("." + ext, np.ascontiguousarray(a), params)
    if not ok:
        raise ValueError(f"encode_image: OpenCV could not encode a {a.shape} {a.dtype} {ext}")
    return buf.tobytes()


def decode_image(data: bytes, rgb: bool = True) -> np.ndarray:
    """Decode JPEG / PNG bytes to (H, W) or (H, W, C) in R, G, B(, A) order, dtype as stored.

    16-bit PNGs stay uint16 (``cv2.IMREAD_UNCHANGED``). ``rgb=False`` skips the channel swap
    and returns OpenCV's B, G, R(, A) order (faster when only a crop is needed).
    """
    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise ValueError(f"decode_image: cannot decode {len(data)} bytes as an image")
    if not rgb:
        return a
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGBA)
    return a


def encode_npz(arrays: Mapping[str, Any], compress: bool = False) -> bytes:
    """``.npz`` bytes of ``arrays``, byte-for-byte reproducible (fixed zip timestamps).

    ``np.savez`` stamps the current time into the zip; this does not, so the same arrays give
    the same bytes. Keys may contain ``/`` (``"keypoints2d/coco17"``); ``np.load`` reads the
    result. No pickled objects.
    """
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    return buf.getvalue()


def decode_npz(data: bytes) -> dict[str, np.ndarray]:
    """All arrays of ``.npz`` bytes (no pickles)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def encode_json(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, UTF-8): equal objects give equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def encode_member(name: str, value: Any, quality: int = 95) -> bytes:
    """Encode ``value`` by the extension of ``name`` (jpg/png image, npz, npy, json, txt).

    ``bytes`` pass through unchanged.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    ext = name.rsplit(".", 1)[-1].lower()
    if ext in ("jpg", "jpeg", "png"):
        return encode_image(value, ext, quality)
    if ext == "npz":
        return encode_npz(value)
    if ext == "npy":
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
        return buf.getvalue()
    if ext == "json":
        return encode_json(value)
    if ext == "txt":
        return str(value).encode()
    raise ValueError(f"encode_member: no encoder for '{name}'; pass bytes")


def decode_member(name: str, data: bytes) -> Any:
    """Decode member bytes by the extension of ``name``.

    jpg / jpeg / png -> ndarray (RGB order, 16-bit kept), npz -> ``dict[str, ndarray]``,
    npy -> ndarray, json -> object, txt -> str; anything else is returned as bytes.
    """
    ext = name.rsplit(".", 1)[-1].lower()
    if ext in ("jpg", "jpeg", "png"):
        return decode_image(data)
    if ext == "npz":
        return decode_npz(data)
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if ext == "json":
        return json.loads(data)
    if ext == "txt":
        return data.decode()
    return data


def summarize_record(members: Mapping[str, bytes]) -> dict[str, Any]:
    """Per-record facts kept in the shard index: persons and their visible fractions.

    Read from ``labels.npz`` (length of ``box_size``, ``visible_fraction``) when present, so a
    dataset can index persons from the shard index alone. Returns ``{}`` otherwise.
    """
    data = members.get("labels.npz")
    if data is None:
        return {}
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        files = set(z.files)
        if "box_size" not in files:
            return {}
        persons = int(np.asarray(z["box_size"]).reshape(-1).shape[0])
        out: dict[str, Any] = {"persons": persons}
        if "visible_fraction" in files:
            vf = np.asarray(z["visible_fraction"], dtype=np.float64).reshape(-1)
            if vf.shape[0] != persons:
                raise ValueError(
                    f"labels.npz: visible_fraction has {vf.shape[0]} entries for {persons} persons"
                )
            out["visible_fraction"] = [float(v) for v in vf]
    return out


# --------------------------------------------------------------------------- names


def shard_name(j: int) -> str:
    """File name of shard ``j``: ``shard-00003.tar``."""
    return f"shard-{int(j):05d}.tar"


def shard_path(folder, j: int) -> Path:
    """Path of shard ``j`` in ``folder``."""
    return Path(folder) / shard_name(j)


def record_key(i: int) -> str:
    """Key of record ``i`` of a split: zero-padded global index (``000000042``)."""
    return f"{int(i):09d}"


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def _padding(size: int) -> bytes:
    return b"\0" * ((-size) % _BLOCK)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a unique temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- writer


class ShardWriter:
    """Write one shard atomically: records go to ``<path>.tmp-<pid>`` until :meth:`close`.

    Use as a context manager: leaving the block normally closes (publishes) the shard; an
    exception aborts it (the temporary file is removed). A killed process leaves only the
    temporary file, which no reader accepts.

    ``meta``: JSON-able facts stored in the index (e.g. the split's generating arguments, used
    to check a resumed split). ``summarize``: per-record facts for the index (default
    :func:`summarize_record`: persons and visible fractions from ``labels.npz``).
    """

    def __init__(
        self,
        path,
        meta: Mapping[str, Any] | None = None,
        summarize: Callable[[Mapping[str, bytes]], dict[str, Any]] | None = summarize_record,
    ):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"ShardWriter: folder {self.path.parent} does not exist")
        self.tmp_path = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self.meta = dict(meta or {})
        self._summarize = summarize
        self._file = open(self.tmp_path, "wb")
        self._pos = 0
        self._records: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._sha = hashlib.sha256()
        self._persons = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._records)

    def _put(self, name: str, data: bytes) -> int:
        header = _tar_header(name, len(data))
        self._file.write(header)
        offset = self._pos + len(header)
        self._file.write(data)
        self._file.write(_padding(len(data)))
        self._pos = offset + len(data) + len(_padding(len(data)))
        return offset

    def write(self, key: str, members: Mapping[str, bytes]) -> None:
        """Append one record: ``members`` maps names (``"image.jpg"``) to bytes."""
        if self._closed:
            raise ValueError(f"ShardWriter({self.path}): already closed")
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(f"ShardWriter: key {key!r} must be non-empty [A-Za-z0-9_-], no dots")
        if key in self._keys:
            raise ValueError(f"ShardWriter: duplicate key {key!r}")
        if not members:
            raise ValueError(f"ShardWriter: record {key!r} has no members")
        entry: dict[str, Any] = {"key": key, "members": {}}
        for name, data in members.items():
            if not isinstance(name, str) or not _NAME_RE.match(name) or "." not in name:
                raise ValueError(
                    f"ShardWriter: record {key!r}: member name {name!r} must look like 'image.jpg'"
                )
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"ShardWriter: record {key!r}: member {name!r} is a {type(data).__name__}, "
                    "not bytes (encode it with hmrkit.data.shards.encode_member)"
                )
            data = bytes(data)
            offset = self._put(f"{key}.{name}", data)
            self._sha.update(data)
            entry["members"][name] = [offset, len(data), zlib.crc32(data)]
        if self._summarize is not None:
            try:
                facts = self._summarize(members)
            except Exception as exc:
                raise ValueError(f"ShardWriter: record {key!r}: {exc}") from exc
            entry.update(facts)
            self._persons += int(facts.get("persons", 0))
        self._records.append(entry)
        self._keys.add(key)

    def close(self) -> Path:
        """Write index and footer, flush to disk and rename to the final path; returns it."""
        if self._closed:
            return self.path
        try:
            index = {
                "format": SHARD_FORMAT,
                "version": SHARD_VERSION,
                "num_records": len(self._records),
                "num_persons": self._persons,
                "data_sha256": self._sha.hexdigest(),
                "meta": self.meta,
                "records": self._records,
            }
            index_bytes = encode_json(index)
            index_offset = self._put(INDEX_MEMBER, index_bytes)
            file_size = self._pos + _BLOCK + _FOOTER_DATA + 2 * _BLOCK
            footer = encode_json(
                {
                    "format": SHARD_FORMAT,
                    "version": SHARD_VERSION,
                    "index_offset": index_offset,
                    "index_size": len(index_bytes),
                    "index_sha256": hashlib.sha256(index_bytes).hexdigest(),
                    "file_size": file_size,
                }
            )
            if len(footer) > _FOOTER_DATA:
                raise ValueError("ShardWriter: footer too long")
            self._put(FOOTER_MEMBER, footer + b" " * (_FOOTER_DATA - len(footer)))
            self._file.write(b"\0" * (2 * _BLOCK))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.tmp_path, self.path)
            _fsync_dir(self.path.parent)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard the shard: close and remove the temporary file."""
        self._closed = True
        if not self._file.closed:
            self._file.close()
        if self.tmp_path.exists():
            self.tmp_path.unlink()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):  # never publish a shard implicitly; just release the file handle
        f = getattr(self, "_file", None)
        if f is not None and not f.closed:
            f.close()


# --------------------------------------------------------------------------- reader


class ShardReader:
    """Random access to the records of one shard (see the module doc for the layout).

    Opening reads and checks the footer and index (raising :class:`InvalidShardError` for a
    truncated, foreign or corrupt file); ``reader[i]`` returns record ``i`` as
    ``dict[name, bytes]``, read with one ``pread`` per member. ``verify_crc`` checks each
    member's CRC-32 on read. The file handle opens lazily and reopens in a new process, so
    readers can be pickled into DataLoader workers.
    """

    def __init__(self, path, verify_crc: bool = True):
        self.path = Path(path)
        self.verify_crc = verify_crc
        self._fd: int | None = None
        self._pid: int | None = None
        try:
            index = self._load_index()
        finally:
            self.close()  # the handle reopens on first read: scanning many shards holds none
        self.num_persons: int = int(index.get("num_persons", 0))
        self.data_sha256: str = index["data_sha256"]
        self.meta: dict[str, Any] = index.get("meta", {})
        records = index["records"]
        self.keys: list[str] = [r["key"] for r in records]
        names = sorted({n for r in records for n in r["members"]})
        self.member_names: tuple[str, ...] = tuple(names)
        col = {n: k for k, n in enumerate(names)}
        loc = np.full((len(records), len(names), 3), -1, dtype=np.int64)
        persons = np.full(len(records), -1, dtype=np.int64)
        vis: list[float] = []
        vis_start = np.zeros(len(records) + 1, dtype=np.int64)
        for i, r in enumerate(records):
            for n, (off, size, crc) in r["members"].items():
                loc[i, col[n]] = (off, size, crc)
            if "persons" in r:
                persons[i] = int(r["persons"])
            vf = r.get("visible_fraction")
            if vf is not None:
                vis.extend(float(v) for v in vf)
            vis_start[i + 1] = len(vis)
        self._col = col
        self._loc = loc
        self._persons = persons
        self._vis = np.asarray(vis, dtype=np.float64)
        self._vis_start = vis_start

    # -- opening and checking

    def _open(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def _pread(self, size: int, offset: int) -> bytes:
        fd = self._open()
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise InvalidShardError(self.path, f"short read at offset {offset} (file changed?)")
        return data

    def _load_index(self) -> dict[str, Any]:
        path = self.path
        try:
            file_size = os.stat(path).st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"ShardReader: no such shard: {path}") from None
        if file_size < _TAIL or file_size % _BLOCK:
            raise InvalidShardError(path, f"truncated ({file_size} bytes, no footer)")
        tail = self._pread(_TAIL, file_size - _TAIL)
        if tail[-2 * _BLOCK :] != b"\0" * (2 * _BLOCK):
            raise InvalidShardError(path, "truncated or no end-of-archive blocks")
        try:
            header = tarfile.TarInfo.frombuf(tail[:_BLOCK], "utf-8", "strict")
        except tarfile.HeaderError as exc:
            raise InvalidShardError(path, f"no index footer ({exc})") from None
        if header.name != FOOTER_MEMBER or header.size != _FOOTER_DATA:
            raise InvalidShardError(path, f"no index footer (last member is '{header.name}')")
        try:
            footer = json.loads(tail[_BLOCK : _BLOCK + _FOOTER_DATA])
        except ValueError:
            raise InvalidShardError(path, "unreadable footer") from None
        if footer.get("format") != SHARD_FORMAT:
            raise InvalidShardError(path, f"unknown format {footer.get('format')!r}")
        if footer.get("version") != SHARD_VERSION:
            raise InvalidShardError(path, f"unsupported version {footer.get('version')!r}")
        if footer.get("file_size") != file_size:
            raise InvalidShardError(
                path, f"size {file_size} differs from the recorded {footer.get('file_size')}"
            )
        offset, size = int(footer["index_offset"]), int(footer["index_size"])
        if not 0 <= offset <= file_size - _TAIL - size:
            raise InvalidShardError(path, "index outside the file")
        data = self._pread(size, offset)
        if hashlib.sha256(data).hexdigest() != footer.get("index_sha256"):
            raise InvalidShardError(path, "index checksum mismatch")
        try:
            index = json.loads(data)
        except ValueError:
            raise InvalidShardError(path, "unreadable index") from None
        if index.get("format") != SHARD_FORMAT or "records" not in index:
            raise InvalidShardError(path, "malformed index")
        if len(index["records"]) != index.get("num_records"):
            raise InvalidShardError(path, "index record count mismatch")
        return index

    def verify(self) -> None:
        """Re-read every member and check the SHA-256 of all record bytes (slow, thorough)."""
        sha = hashlib.sha256()
        for i in range(len(self)):  # the writer hashed members in file order (offsets)
            names = sorted(self.names(i), key=lambda n: self._loc[i, self._col[n], 0])
            for data in self.read(i, names).values():
                sha.update(data)
        if sha.hexdigest() != self.data_sha256:
            raise InvalidShardError(self.path, "data checksum mismatch")

    # -- access

    def __len__(self) -> int:
        return len(self.keys)

    def _check_index(self, i: int) -> int:
        n = len(self.keys)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"ShardReader: record index must be an int, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"ShardReader({self.path.name}): record {i} out of range [0, {n})")
        return int(i) % n

    def names(self, i: int) -> tuple[str, ...]:
        """Member names of record ``i``."""
        i = self._check_index(i)
        return tuple(n for n, k in self._col.items() if self._loc[i, k, 1] >= 0)

    def read(self, i: int, names: Iterable[str] | None = None) -> dict[str, bytes]:
        """Members of record ``i`` (all, or those of ``names`` that it has) as bytes."""
        i = self._check_index(i)
        wanted = self._col if names is None else [n for n in names if n in self._col]
        out: dict[str, bytes] = {}
        for n in wanted:
            off, size, crc = (int(v) for v in self._loc[i, self._col[n]])
            if size < 0:
                continue
            data = self._pread(size, off)
            if self.verify_crc and zlib.crc32(data) != crc:
                raise InvalidShardError(
                    self.path, f"CRC mismatch in member '{self.keys[i]}.{n}'"
                )
            out[n] = data
        return out

    def __getitem__(self, i: int) -> dict[str, bytes]:
        return self.read(i)

    def decoded(self, i: int, names: Iterable[str] | None = None) -> dict[str, Any]:
        """Members of record ``i`` decoded with :func:`decode_member`."""
        return {n: decode_member(n, d) for n, d in self.read(i, names).items()}

    def persons(self, i: int) -> int:
        """Number of persons in record ``i`` from the index (-1 when not recorded)."""
        return int(self._persons[self._check_index(i)])

    def visible_fraction(self, i: int) -> np.ndarray | None:
        """Visible fraction of each person of record ``i`` from the index (None if absent)."""
        i = self._check_index(i)
        a, b = self._vis_start[i], self._vis_start[i + 1]
        if b == a and self._persons[i] != 0:
            return None
        return self._vis[a:b].copy()

    def close(self) -> None:
        """Close the file handle (it reopens on the next read)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        self._pid = None

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_pid"] = None
        return state

    def __repr__(self) -> str:
        return f"ShardReader('{self.path}', records={len(self)}, persons={self.num_persons})"


# --------------------------------------------------------------------------- folders


@dataclass
class ShardScan:
    """Result of :func:`scan_shards`."""

    folder: Path
    valid: list[ShardReader] = field(default_factory=list)
    """Readers of the complete shards, in shard-number order."""
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    """``shard-*.tar`` files that failed validation, with the reason."""
    partial: list[Path] = field(default_factory=list)
    """Temporary files of unfinished writers (``*.tar.tmp-*``), never read."""


_READERS: dict[tuple[str, int, int, int, bool], ShardReader] = {}
_READERS_MAX = 4096


def open_shard(path, verify_crc: bool = True, cache: bool = True) -> ShardReader:
    """A :class:`ShardReader` of ``path``, cached per process by (path, inode, size, mtime).

    Opening parses the shard's index; the cache makes building a second dataset over the same
    shards (e.g. every epoch, or train and validation views) free. A rewritten shard has a new
    size or mtime and is read afresh.
    """
    path = Path(path)
    if not cache:
        return ShardReader(path, verify_crc=verify_crc)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"open_shard: no such shard: {path}") from None
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, bool(verify_crc))
    reader = _READERS.get(key)
    if reader is None:
        reader = ShardReader(path, verify_crc=verify_crc)
        if len(_READERS) >= _READERS_MAX:
            _READERS.pop(next(iter(_READERS)))
        _READERS[key] = reader
    return reader


def scan_shards(
    folder, strict: bool = False, verify_crc: bool = True, cache: bool = True,
    exclude: Iterable[str] = (),
) -> ShardScan:
    """Open every ``shard-NNNNN.tar`` of ``folder`` (but the file names in ``exclude``);
    invalid ones are skipped and counted.

    With ``strict`` an invalid shard raises :class:`InvalidShardError`; otherwise one warning
    names the count and the files. Unfinished ``.tmp-*`` files are listed, never opened.
    Readers come from :func:`open_shard` (cached unless ``cache=False``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"scan_shards: folder {folder} does not exist")
    scan = ShardScan(folder)
    entries = []
    exclude = set(exclude)
    for p in folder.iterdir():
        m = _SHARD_RE.match(p.name)
        if m and p.name in exclude:
            continue
        if m:
            entries.append((int(m.group(1)), p))
        elif ".tar.tmp-" in p.name:
            scan.partial.append(p)
    for _, p in sorted(entries):
        try:
            scan.valid.append(open_shard(p, verify_crc=verify_crc, cache=cache))
        except InvalidShardError as exc:
            if strict:
                raise
            scan.rejected.append((p, exc.reason))
    scan.partial.sort()
    if scan.rejected:
        listing = ", ".join(f"{p.name} ({why})" for p, why in scan.rejected[:5])
        more = "" if len(scan.rejected) <= 5 else f", and {len(scan.rejected) - 5} more"
        warnings.warn(
            f"{folder}: skipped {len(scan.rejected)} invalid shard(s): {listing}{more}",
            stacklevel=2,
        )
    return scan


def read_scenes(folder, limit: int | None = None) -> Iterator[tuple[np.ndarray, dict]]:
    """The scenes of a split in order, each as its RGB image and its decoded ``labels.npz``
    (every shard must be valid); at most ``limit`` scenes."""
    n = 0
    for reader in scan_shards(folder, strict=True).valid:
        for i in range(len(reader.keys)):
            if limit is not None and n >= limit:
                return
            record = reader[i]
            name = next(k for k in record if k.startswith("image."))
            yield decode_image(record[name]), decode_npz(record["labels.npz"])
            n += 1


def shards_for_job(num_shards: int, shard: tuple[int, int] | None) -> list[int]:
    """Shard numbers job ``i`` of ``N`` produces: ``j`` with ``j % N == i`` (all for None).

    Round-robin, so jobs get nearly equal work; the ``N`` jobs together cover every shard
    exactly once.
    """
    if shard is None:
        return list(range(num_shards))
    try:
        i, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"shard must be a pair (job, num_jobs), got {shard!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard=(job, num_jobs) needs 0 <= job < num_jobs, got {shard!r}")
    return list(range(i, num_shards, n))


def _describe_callable(fn: Callable) -> str:
    if isinstance(fn, functools.partial):
        args = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in fn.keywords.items()]
        text = f"functools.partial({_describe_callable(fn.func)}, {', '.join(args)})"
        return text if len(text) <= 500 else text[:497] + "..."
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"


def _write_shard_task(task: tuple) -> dict[str, Any]:
    """Write one shard of a split (top level, so spawned pool workers can run it)."""
    generate_record, path, start, stop, meta, on_record = task
    with ShardWriter(path, meta=meta) as writer:
        for i in range(start, stop):
            writer.write(record_key(i), generate_record(i))
            if on_record is not None:
                on_record()
    _remove_stale(path)
    return {"shard": Path(path).name, "num_records": stop - start}


def _write_parallel(todo: list[tuple], workers: int, bar) -> None:
    """Generate the records of ``todo``'s shards in a process pool, in order, and write each
    shard from this process (parallel over records, so one shard also uses every worker)."""
    indices = [i for _, _, start, stop, _ in todo for i in range(start, stop)]
    generate_record = todo[0][0]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=min(workers, len(indices)), initializer=_init_worker) as pool:
        records = pool.imap(generate_record, indices, chunksize=2)
        for _, path, start, stop, meta in todo:
            with ShardWriter(path, meta=meta) as writer:
                for i in range(start, stop):
                    writer.write(record_key(i), next(records))
                    bar.update(1)
            _remove_stale(path)


def _remove_stale(path) -> None:
    """Delete leftovers (``.tmp-*``) of earlier interrupted attempts at shard ``path``."""
    for stale in Path(path).parent.glob(Path(path).name + ".tmp-*"):
        stale.unlink(missing_ok=True)


def _init_worker() -> None:
    """One torch thread per pool worker: the pool is the parallelism."""
    import torch

    torch.set_num_threads(1)


def _shard_state(path: Path, start: int, stop: int, meta: dict[str, Any]) -> str | None:
    """``None`` if ``path`` is a complete shard of exactly records ``[start, stop)`` with
    ``meta`` whose every member passes its CRC-32 and the data SHA-256; otherwise why it must
    be (re)written (``"absent"``, ``"truncated ..."``, ``"CRC mismatch ..."``). A valid shard of
    a different split raises :class:`SplitMismatchError`."""
    if not path.exists():
        return "absent"
    try:
        reader = ShardReader(path)
    except InvalidShardError as exc:
        return exc.reason
    expected = [record_key(i) for i in range(start, stop)]
    if reader.keys != expected or reader.meta != meta:
        what = "records" if reader.keys != expected else "meta"
        raise SplitMismatchError(
            f"{path} belongs to a different split (its {what} differ from this call's); "
            f"write to a new folder or {OVERWRITE_HINT}"
        )
    try:
        reader.verify()
    except InvalidShardError as exc:
        return exc.reason
    finally:
        reader.close()
    return None


def write_split(
    generate_record: Callable[[int], dict[str, bytes]],
    n: int,
    out,
    shard_size: int = 1000,
    shard: tuple[int, int] | None = None,
    workers: int = 1,
    progress: bool = True,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write records ``0 .. n-1`` of a split into ``out/shard-NNNNN.tar``; returns the manifest.

    Record ``i`` goes to shard ``i // shard_size`` under key :func:`record_key` ``(i)``.
    ``generate_record(i)`` must be deterministic in ``i`` and, with ``workers > 1``, picklable
    (a top-level function or a ``functools.partial`` of one: the pool uses the ``spawn`` start
    method). ``shard=(i, N)`` writes only job ``i``'s shards (:func:`shards_for_job`).
    Complete shards of the same split are kept (resume) after checking every member's CRC-32
    and the data SHA-256; a truncated or corrupt one is rewritten. A shard of a different
    split (other keys or ``meta``) raises :class:`SplitMismatchError` unless ``overwrite``.
    ``meta``: JSON-able description stored in every shard index and the manifest (e.g. the
    engine config). Each rewritten shard is named in a warning.
    """
    if not callable(generate_record):
        raise TypeError("write_split: generate_record must be callable")
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"write_split: n must be a non-negative integer, got {n!r}")
    if not isinstance(shard_size, (int, np.integer)) or shard_size < 1:
        raise ValueError(f"write_split: shard_size must be a positive integer, got {shard_size!r}")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"write_split: workers must be a positive integer, got {workers!r}")
    meta = json.loads(encode_json(dict(meta or {})))  # normalise (and check JSON-ability)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    num_shards = math.ceil(n / shard_size)
    stray = sorted(
        p for p in out.glob("shard-*.tar") if _SHARD_RE.match(p.name)
        and int(_SHARD_RE.match(p.name).group(1)) >= num_shards
    )
    if stray and not overwrite:
        raise SplitMismatchError(
            f"write_split: {out} holds {len(stray)} shard(s) beyond this split's {num_shards} "
            f"(first: {stray[0].name}); write to a new folder or {OVERWRITE_HINT}"
        )
    for p in stray:
        p.unlink(missing_ok=True)
    todo = []
    for j in shards_for_job(num_shards, shard):
        start, stop = j * shard_size, min(n, (j + 1) * shard_size)
        path = shard_path(out, j)
        why = "overwrite" if overwrite else _shard_state(path, start, stop, meta)
        if why is None:
            continue
        if why not in ("absent", "overwrite"):
            warnings.warn(f"{path}: rewriting invalid shard ({why})", stacklevel=2)
        todo.append((generate_record, str(path), start, stop, meta))
    total = sum(t[3] - t[2] for t in todo)
    if workers > 1 and total > 1:
        try:
            pickle.dumps(generate_record)
        except Exception as exc:
            raise TypeError(
                "write_split: with workers > 1, generate_record must be picklable (a top-level "
                f"function or a functools.partial of one): {exc}"
            ) from None
    from tqdm.auto import tqdm

    with tqdm(total=total, disable=not progress, unit="rec", desc=f"write {out.name}") as bar:
        if workers == 1 or total <= 1:
            for task in todo:
                _write_shard_task((*task, lambda: bar.update(1)))
        else:
            _write_parallel(todo, int(workers), bar)
    args = {
        "n": int(n),
        "shard_size": int(shard_size),
        "generator": _describe_callable(generate_record),
        "meta": meta,
    }
    return update_manifest(out, args)


def update_manifest(out, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rescan ``out`` and atomically rewrite its ``manifest.json``; returns the manifest.

    ``args`` (``n``, ``shard_size``, ...) default to those of the existing manifest. Jobs of a
    fanned-out split each update it when they finish; call this once more after all jobs end
    if they finished at the same moment (the manifest is a summary; readers use shard indexes).
    """
    out = Path(out)
    if args is None:
        args = read_manifest(out)["args"]
    args = dict(args)
    n, shard_size = int(args["n"]), int(args["shard_size"])
    num_shards = math.ceil(n / shard_size)
    shards, missing = [], []
    for j in range(num_shards):
        path = shard_path(out, j)
        try:
            reader = ShardReader(path)
        except (FileNotFoundError, InvalidShardError):
            missing.append(shard_name(j))
            continue
        entry = {
            "name": path.name,
            "num_records": len(reader),
            "num_persons": reader.num_persons,
            "size": path.stat().st_size,
            "data_sha256": reader.data_sha256,
        }
        visible = [reader.visible_fraction(i) for i in range(len(reader))]
        if all(v is not None for v in visible):  # lets a reader count the persons it expects
            entry["visible_fraction"] = [float(v) for a in visible for v in a]
        shards.append(entry)
        reader.close()
    manifest = {
        "format": "hmrkit-split",
        "version": SHARD_VERSION,
        "num_shards": num_shards,
        "num_records": sum(s["num_records"] for s in shards),
        "num_persons": sum(s["num_persons"] for s in shards),
        "complete": not missing,
        "missing": missing,
        "shards": shards,
        "args": args,
    }
    _atomic_write_bytes(out / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
    return manifest


@dataclass
class SplitCheck:
    """Result of :func:`check_split`: how a split folder matches its ``manifest.json``."""

    folder: Path
    manifest: dict[str, Any] | None
    """The manifest (None when the folder has none: nothing can be checked)."""
    problems: dict[str, str] = field(default_factory=dict)
    """``{shard name: what is wrong}``: absent, truncated, corrupt, or not as recorded."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """One line naming the first bad shard, and how many others there are."""
        if self.ok:
            return f"{self.folder}: every shard matches {MANIFEST_NAME}"
        names = list(self.problems)
        line = f"{self.folder / names[0]}: {self.problems[names[0]]}"
        if len(names) > 1:
            line += f" (and {len(names) - 1} more bad shard(s): {', '.join(names[1:4])}"
            line += ", ...)" if len(names) > 4 else ")"
        return line


def check_split(folder, verify_data: bool = True) -> SplitCheck:
    """Compare a split folder with its manifest: each of the split's ``num_shards`` shards
    (those missing when the manifest was written included) must exist, be a complete shard of
    the recorded size and data SHA-256 and, with ``verify_data``, pass the CRC-32 of every
    member and the data SHA-256 (reads all the data). Shard files beyond the split are
    problems too. Without a manifest nothing is checked (``manifest`` is None)."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except FileNotFoundError:
        return SplitCheck(folder, None)
    check = SplitCheck(folder, manifest)
    recorded = {s["name"]: s for s in manifest.get("shards", [])}
    names = [shard_name(j) for j in range(int(manifest["num_shards"]))]
    for name in names:
        path = folder / name
        if not path.exists():
            check.problems[name] = "missing (listed in the split's manifest)"
            continue
        try:
            reader = ShardReader(path)
        except InvalidShardError as exc:
            check.problems[name] = f"not a valid shard: {exc.reason}"
            continue
        entry = recorded.get(name)  # None: written after the manifest (e.g. a fanned-out job)
        if entry is not None and (reader.data_sha256, path.stat().st_size) != (
                entry["data_sha256"], entry["size"]):
            check.problems[name] = "differs from the shard the manifest records"
        elif verify_data:
            try:
                reader.verify()
            except InvalidShardError as exc:
                check.problems[name] = f"corrupt: {exc.reason}"
        reader.close()
    for p in sorted(folder.glob("shard-*.tar")):
        if _SHARD_RE.match(p.name) and p.name not in names:
            check.problems[p.name] = f"not part of the split ({len(names)} shards in its manifest)"
    return check


def read_manifest(folder) -> dict[str, Any]:
    """The ``manifest.json`` of a split folder (``FileNotFoundError`` naming it if absent)."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"read_manifest: no {MANIFEST_NAME} in {Path(folder)}")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != "hmrkit-split":
        raise ValueError(f"read_manifest: {path} is not an hmrkit split manifest")
    return manifest
