"""Shards: atomic writing, rejection of broken tars, determinism, job fan-out, resume, round trips.

Also home of :func:`make_fake_record`, a random but self-consistent scene record (the scene
engine's format) used by the dataset tests.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from hmrkit.data.shards import (
    InvalidShardError,
    ShardReader,
    ShardWriter,
    decode_image,
    decode_member,
    encode_image,
    encode_json,
    encode_npz,
    read_manifest,
    record_key,
    scan_shards,
    shard_name,
    shards_for_job,
    update_manifest,
    write_split,
)

# --------------------------------------------------------------------------- fake records


def _rotation(rng: np.random.Generator, scale: float = math.pi) -> np.ndarray:
    """A random rotation matrix with angle up to ``scale`` (Rodrigues)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-scale, scale)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def project(points: np.ndarray, focal: float, pp: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points (..., 3) to pixels (..., 2)."""
    return focal * points[..., :2] / points[..., 2:] + pp


def make_fake_scene(rng: np.random.Generator, H: int, W: int, P: int) -> dict:
    """Decoded arrays of one scene: ``image``, ``labels``, ``instances``, ``iuv``, ``depth``, ``meta``.

    Labels are consistent: 2D keypoints are projections of the 3D ones through
    ``focal`` / ``principal_point``; ``transl = joints3d[0] - J0``; ``world_global_orient =
    cam_to_world @ global_orient``; boxes are 1.2x the keypoint extent.
    """
    # imported here: hmrkit.body imports torch, which spawned shard writers need not load
    from hmrkit.body.keypoints import COCO17_NAMES, LSP14_FROM_SMPL24, LSP14_NAMES, SMPL24_NAMES

    focal = float(rng.uniform(0.9, 1.2) * math.hypot(W, H))
    pp = np.array([W / 2 + rng.normal(0, 3), H / 2 + rng.normal(0, 3)])
    pitch = rng.uniform(-0.3, 0.3)
    c, s = math.cos(pitch), math.sin(pitch)
    cam_to_world = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    lab = {k: [] for k in (
        "box_center", "box_size", "keypoints2d/smpl24", "keypoints2d/coco17", "keypoints2d/lsp14",
        "joints3d", "keypoints3d/lsp14", "global_orient", "body_pose", "betas", "transl",
        "world_global_orient", "visible_fraction",
    )}
    coco_from_smpl = {n: SMPL24_NAMES.index(n) for n in COCO17_NAMES if n in SMPL24_NAMES}
    for p in range(P):
        z = rng.uniform(4.0, 7.0)
        uv = np.array([rng.uniform(0.35, 0.65) * W, rng.uniform(0.4, 0.6) * H])
        pelvis = np.array([*((uv - pp) * z / focal), z])
        joints = pelvis + rng.normal(0, 1, size=(24, 3)) * np.array([0.25, 0.35, 0.1])
        joints[0] = pelvis
        head = joints[15]
        lsp3d = np.stack([joints[LSP14_FROM_SMPL24[n]] for n in LSP14_NAMES[:-1]] + [head + [0, -0.12, 0]])
        coco3d = np.stack([
            joints[coco_from_smpl[n]] if n in coco_from_smpl else head + rng.normal(0, 0.05, 3)
            for n in COCO17_NAMES
        ])
        kp = {}
        for name, pts in (("smpl24", joints), ("coco17", coco3d), ("lsp14", lsp3d)):
            vis = (rng.uniform(size=len(pts)) > 0.1).astype(np.float64)
            kp[name] = np.concatenate([project(pts, focal, pp), vis[:, None]], axis=1)
        lo, hi = kp["smpl24"][:, :2].min(0), kp["smpl24"][:, :2].max(0)
        G = _rotation(rng)
        lab["box_center"].append((lo + hi) / 2)
        lab["box_size"].append(1.2 * (hi - lo).max())
        for name in ("smpl24", "coco17", "lsp14"):
            lab[f"keypoints2d/{name}"].append(kp[name])
        lab["joints3d"].append(joints)
        lab["keypoints3d/lsp14"].append(lsp3d)
        lab["global_orient"].append(G)
        lab["body_pose"].append(np.stack([_rotation(rng, 0.5) for _ in range(23)]))
        lab["betas"].append(rng.normal(size=10))
        lab["transl"].append(pelvis - np.array([0.0, 0.2, 0.01]))
        lab["world_global_orient"].append(cam_to_world @ G)
        lab["visible_fraction"].append(0.9 if p == 0 else rng.uniform(0, 1))
    labels = {k: np.asarray(v, dtype=np.float64).reshape(P, *np.shape(v)[1:]) for k, v in lab.items()}
    labels["box_size"] = labels["box_size"].reshape(P)
    labels["visible_fraction"] = labels["visible_fraction"].reshape(P)
    labels.update(
        image_size=np.array([W, H], dtype=np.float64), focal=np.array(focal),
        principal_point=pp, cam_to_world=cam_to_world,
    )
    low = rng.integers(0, 256, size=(max(H // 16, 2), max(W // 16, 2), 3)).astype(np.uint8)
    smooth = cv2.resize(low, (W, H), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    image = (smooth * 0.6 + rng.integers(0, 40, size=(H, W, 3))).astype(np.uint8)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    instances = np.zeros((H, W), np.uint8)
    depth = np.zeros((H, W), np.uint16)
    for p in range(P):
        cx, cy = labels["box_center"][p]
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 < (labels["box_size"][p] / 4) ** 2
        instances[inside] = p + 1
        depth[inside] = round(labels["joints3d"][p, 0, 2] * 1000)
    iuv = np.zeros((H, W, 3), np.uint16)
    fg = instances > 0
    iuv[..., 0][fg] = rng.integers(1, 25, size=fg.sum())
    iuv[..., 1][fg] = rng.integers(0, 65536, size=fg.sum())
    iuv[..., 2][fg] = rng.integers(0, 65536, size=fg.sum())
    return {
        "image": image, "labels": labels, "instances": instances, "iuv": iuv, "depth": depth,
        "meta": {"persons": P, "size": [W, H]},
    }


def encode_scene(scene: dict, image_ext: str = "jpg") -> dict[str, bytes]:
    """Scene arrays -> record members (the scene engine's format)."""
    return {
        f"image.{image_ext}": encode_image(scene["image"], image_ext, quality=95),
        "labels.npz": encode_npz(scene["labels"]),
        "instances.png": encode_image(scene["instances"], "png"),
        "iuv.png": encode_image(scene["iuv"], "png"),
        "depth.png": encode_image(scene["depth"], "png"),
        "meta.json": encode_json(scene["meta"]),
    }


def make_fake_record(rng: np.random.Generator, H: int, W: int, P: int, image_ext: str = "jpg"):
    """A random but consistent scene record ``dict[str, bytes]``."""
    return encode_scene(make_fake_scene(rng, H, W, P), image_ext)


def fake_generator(i: int, H: int = 24, W: int = 32, P: int = 2, seed: int = 0):
    """Deterministic record ``i`` (top level: picklable for spawned workers)."""
    return make_fake_record(np.random.default_rng([seed, i]), H, W, P)


class FailingGenerator:
    """Generates like :func:`fake_generator` but raises at record ``fail_at``; counts calls."""

    def __init__(self, fail_at: int | None = None):
        self.fail_at = fail_at
        self.calls: list[int] = []

    def __call__(self, i: int):
        self.calls.append(i)
        if i == self.fail_at:
            raise RuntimeError(f"engine crashed at record {i}")
        return fake_generator(i)


def tiny_generator(i: int, seed: int = 0) -> dict[str, bytes]:
    """A small record that needs no torch (for spawned pool workers): image, labels, meta."""
    rng = np.random.default_rng([seed, i])
    labels = {"box_size": rng.uniform(10, 20, size=2), "visible_fraction": rng.uniform(size=2)}
    return {
        "image.png": encode_image(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "png"),
        "labels.npz": encode_npz(labels),
        "meta.json": encode_json({"i": i}),
    }


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.tar"))}


# --------------------------------------------------------------------------- round trips


def test_round_trip_every_member_type(tmp_path):
    rng = np.random.default_rng(0)
    scene = make_fake_scene(rng, 48, 64, 2)
    members = encode_scene(scene, "jpg")
    members["image.png"] = encode_image(scene["image"], "png")
    rgba = np.dstack([scene["image"], scene["instances"] * 100])
    members["rgba.png"] = encode_image(rgba, "png")
    members["extra.bin"] = b"\x00\x01raw"
    path = tmp_path / shard_name(0)
    with ShardWriter(path) as w:
        w.write("a", members)
        w.write("b", {"meta.json": encode_json({"x": 1})})
    with ShardReader(path) as r:
        assert len(r) == 2 and r.keys == ["a", "b"]
        assert r[0] == members  # bytes round trip
        assert r.persons(0) == 2 and r.persons(1) == -1
        np.testing.assert_allclose(r.visible_fraction(0), scene["labels"]["visible_fraction"])
        d = r.decoded(0)
    np.testing.assert_array_equal(d["image.png"], scene["image"])
    jpg_means, means = d["image.jpg"].mean((0, 1)), scene["image"].mean((0, 1))
    assert np.abs(jpg_means - means).max() < 2  # JPEG (lossy), channel order kept
    np.testing.assert_array_equal(d["rgba.png"], rgba)
    assert d["iuv.png"].dtype == np.uint16 and d["depth.png"].dtype == np.uint16
    np.testing.assert_array_equal(d["iuv.png"], scene["iuv"])  # channel 0 = part index
    np.testing.assert_array_equal(d["depth.png"], scene["depth"])
    np.testing.assert_array_equal(d["instances.png"], scene["instances"])
    assert set(d["labels.npz"]) == set(scene["labels"])
    for k, v in scene["labels"].items():
        np.testing.assert_array_equal(d["labels.npz"][k], v)
    assert d["meta.json"] == scene["meta"]
    assert d["extra.bin"] == b"\x00\x01raw"
    # an ordinary tar: tar tools and WebDataset see the {key}.{name} members
    with tarfile.open(path) as tf:
        names = tf.getnames()
        assert names[: len(members)] == [f"a.{n}" for n in members]
        assert names[-2:] == ["__index__.json", "__footer__.json"]
        assert tf.extractfile("a.labels.npz").read() == members["labels.npz"]


def test_channel_order_is_rgb_in_file():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200  # red
    data = encode_image(rgb, "png")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgr[0, 0, 2] == 200 and bgr[0, 0, 0] == 0  # OpenCV sees red in its last channel
    np.testing.assert_array_equal(decode_image(data), rgb)
    buf = io.BytesIO()
    np.save(buf, np.arange(2))
    np.testing.assert_array_equal(decode_member("x.npy", buf.getvalue()), np.arange(2))
    assert decode_member("x.txt", b"hi") == "hi" and decode_member("x.bin", b"\x00") == b"\x00"


def test_encode_npz_is_reproducible_and_loadable():
    arrays = {"keypoints2d/coco17": np.ones((2, 17, 3)), "focal": np.array(3.0)}
    a, b = encode_npz(arrays), encode_npz(dict(arrays))
    assert a == b
    with np.load(io.BytesIO(a)) as z:
        assert sorted(z.files) == ["focal", "keypoints2d/coco17"]


def test_writer_rejects_bad_input(tmp_path):
    with ShardWriter(tmp_path / shard_name(0)) as w:
        with pytest.raises(ValueError, match="key"):
            w.write("a.b", {"x.json": b"{}"})
        with pytest.raises(TypeError, match="not bytes"):
            w.write("a", {"x.json": {"a": 1}})
        w.write("a", {"x.json": b"{}"})
        with pytest.raises(ValueError, match="duplicate"):
            w.write("a", {"x.json": b"{}"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ShardWriter(tmp_path / "nope" / shard_name(0))


# --------------------------------------------------------------------------- atomicity


def test_interrupted_writer_leaves_nothing_a_reader_accepts(tmp_path):
    path = tmp_path / shard_name(0)
    w = ShardWriter(path)
    w.write(record_key(0), fake_generator(0))
    w._file.flush()  # the process "dies" here: no close()
    assert not path.exists() and w.tmp_path.exists()
    scan = scan_shards(tmp_path)
    assert scan.valid == [] and scan.rejected == [] and scan.partial == [w.tmp_path]
    w.abort()
    assert not w.tmp_path.exists()


def test_killed_writer_process(tmp_path):
    code = (
        "import os, signal, sys\n"
        "from hmrkit.data.shards import ShardWriter\n"
        "w = ShardWriter(sys.argv[1])\n"
        "w.write('000', {'meta.json': b'{}' * 1000})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    path = tmp_path / shard_name(0)
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True)
    assert proc.returncode != 0
    assert not path.exists()
    scan = scan_shards(tmp_path)
    assert scan.valid == [] and len(scan.partial) == 1


def test_exception_aborts(tmp_path):
    path = tmp_path / shard_name(0)
    with pytest.raises(RuntimeError), ShardWriter(path) as w:
        w.write("a", {"x.json": b"{}"})
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_truncated_indexless_and_corrupt_tars_are_rejected_and_counted(tmp_path):
    good = tmp_path / shard_name(0)
    with ShardWriter(good) as w:
        for i in range(3):
            w.write(record_key(i), fake_generator(i))
    data = good.read_bytes()
    (tmp_path / shard_name(1)).write_bytes(data[: len(data) // 2])  # truncated mid-way
    (tmp_path / shard_name(2)).write_bytes(data[:-1024])  # end-of-archive cut off
    with tarfile.open(tmp_path / shard_name(3), "w") as tf:  # a plain tar, no index
        for n, blob in fake_generator(0).items():
            info = tarfile.TarInfo(f"000.{n}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    corrupt = bytearray(data)
    reader = ShardReader(good)
    footer = json.loads(data[-1536:-1024])
    corrupt[footer["index_offset"] + 10] ^= 0xFF  # index bytes changed
    (tmp_path / shard_name(4)).write_bytes(bytes(corrupt))
    (tmp_path / shard_name(5)).write_bytes(b"")
    for j in range(1, 6):
        with pytest.raises(InvalidShardError):
            ShardReader(tmp_path / shard_name(j))
    with pytest.warns(UserWarning, match=r"skipped 5 invalid shard\(s\)"):
        scan = scan_shards(tmp_path)
    assert [r.path for r in scan.valid] == [good]
    assert [p.name for p, _ in scan.rejected] == [shard_name(j) for j in range(1, 6)]
    with pytest.raises(InvalidShardError, match="shard-00001"):
        scan_shards(tmp_path, strict=True)
    # a flipped byte inside a member: the index is intact, the member's CRC catches it
    off, size, _ = reader._loc[1, reader._col["labels.npz"]]
    bad = bytearray(data)
    bad[off + size // 2] ^= 0xFF
    good.write_bytes(bytes(bad))
    r = ShardReader(good)
    r.read(0)
    with pytest.raises(InvalidShardError, match="CRC"):
        r.read(1)
    with pytest.raises(InvalidShardError):
        ShardReader(good, verify_crc=False).verify()


# --------------------------------------------------------------------------- splits


def test_same_arguments_same_bytes(tmp_path):
    gen = functools.partial(fake_generator, P=3)
    m1 = write_split(gen, 7, tmp_path / "a", shard_size=3, progress=False)
    m2 = write_split(gen, 7, tmp_path / "b", shard_size=3, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert list(a) == [shard_name(j) for j in range(3)] and a == b
    assert m1 == m2 and m1["complete"] and m1["num_records"] == 7 and m1["num_persons"] == 21
    assert read_manifest(tmp_path / "a") == m1
    assert "fake_generator" in m1["args"]["generator"]
    r = ShardReader(tmp_path / "a" / shard_name(2))
    assert r.keys == [record_key(6)]


def test_job_fanout_covers_every_shard_once(tmp_path):
    n, size, jobs = 23, 4, 3
    write_split(fake_generator, n, tmp_path / "single", shard_size=size, progress=False)
    produced = []
    for i in range(jobs):
        before = set(_files(tmp_path / "fan")) if (tmp_path / "fan").exists() else set()
        manifest = write_split(fake_generator, n, tmp_path / "fan", size, shard=(i, jobs), progress=False)
        produced.append(set(_files(tmp_path / "fan")) - before)
        assert manifest["complete"] == (i == jobs - 1)
    for i in range(jobs):
        for k in range(i + 1, jobs):
            assert not produced[i] & produced[k]
    assert set().union(*produced) == set(_files(tmp_path / "single"))
    assert _files(tmp_path / "fan") == _files(tmp_path / "single")
    assert shards_for_job(6, (1, 3)) == [1, 4] and shards_for_job(2, (2, 3)) == []
    for bad in [(3, 3), (-1, 2), (0, 0), "x", (1,)]:
        with pytest.raises(ValueError, match="shard"):
            shards_for_job(6, bad)


def test_resume_skips_complete_shards(tmp_path):
    out = tmp_path / "split"
    crashing = FailingGenerator(fail_at=9)
    with pytest.raises(RuntimeError, match="record 9"):
        write_split(crashing, 14, out, shard_size=4, progress=False)
    assert sorted(_files(out)) == [shard_name(0), shard_name(1)]
    assert not list(out.glob("*.tmp-*"))  # the failed shard was aborted cleanly
    stat0 = os.stat(out / shard_name(0))
    # a stale tmp of a killed earlier attempt at shard 2 is cleaned up when shard 2 completes
    (out / (shard_name(2) + ".tmp-99999")).write_bytes(b"partial")
    resumed = FailingGenerator()
    manifest = write_split(resumed, 14, out, shard_size=4, progress=False)
    assert resumed.calls == list(range(8, 14))
    assert os.stat(out / shard_name(0)).st_mtime_ns == stat0.st_mtime_ns
    assert manifest["complete"] and manifest["num_records"] == 14
    assert not list(out.glob("*.tmp-*"))
    write_split(fake_generator, 14, tmp_path / "ref", shard_size=4, progress=False)
    assert _files(out) == _files(tmp_path / "ref")
    again = FailingGenerator()
    write_split(again, 14, out, shard_size=4, progress=False)
    assert again.calls == []
    # a different split in the same folder is refused, unless overwrite
    with pytest.raises(ValueError, match="beyond this split"):
        write_split(fake_generator, 14, out, shard_size=5, progress=False)
    with pytest.raises(ValueError, match="different split"):
        write_split(fake_generator, 16, out, shard_size=4, progress=False)
    with pytest.raises(ValueError, match="different split"):
        write_split(fake_generator, 14, out, shard_size=4, progress=False, meta={"v": 2})
    write_split(fake_generator, 14, out, shard_size=4, progress=False, meta={"v": 2}, overwrite=True)
    assert ShardReader(out / shard_name(3)).meta == {"v": 2}
    # a corrupt complete shard is rewritten on resume
    (out / shard_name(1)).write_bytes(b"garbage" * 100)
    redo = FailingGenerator()
    with pytest.warns(UserWarning, match="rewriting invalid shard"):
        write_split(redo, 14, out, shard_size=4, progress=False, meta={"v": 2})
    assert redo.calls == [4, 5, 6, 7]


def _flip_byte_in_member(path: Path, record: int, member: str) -> None:
    """Corrupt one byte inside a member: the footer and index stay valid, the CRC does not."""
    reader = ShardReader(path)
    offset, size, _ = (int(v) for v in reader._loc[record, reader._col[member]])
    data = bytearray(path.read_bytes())
    data[offset + size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_rerun_verifies_crcs_and_rewrites_a_corrupt_shard(tmp_path):
    """Issue 15: a rerun kept a shard whose CRC was wrong and reported the split as written."""
    out = tmp_path / "split"
    write_split(fake_generator, 6, out, shard_size=2, progress=False)
    reference = _files(out)
    _flip_byte_in_member(out / shard_name(1), 1, "labels.npz")
    ShardReader(out / shard_name(1))  # still opens: only the member data is bad
    again = FailingGenerator()
    with pytest.warns(UserWarning) as caught:
        write_split(again, 6, out, shard_size=2, progress=False)
    assert again.calls == [2, 3]  # only the corrupt shard is generated again
    assert [str(w.message) for w in caught] == [
        f"{out / shard_name(1)}: rewriting invalid shard "
        "(CRC mismatch in member '000000003.labels.npz')"]
    assert _files(out) == reference


def test_verify_hashes_members_in_file_order(tmp_path):
    """The data SHA-256 covers members in the order written, which need not be sorted."""
    path = tmp_path / shard_name(0)
    with ShardWriter(path, summarize=None) as w:
        w.write("a", {"meta.json": b"{}", "image.png": b"\x89PNG", "labels.npz": b"PK"})
    ShardReader(path).verify()


def test_check_split_names_missing_truncated_and_corrupt_shards(tmp_path):
    from hmrkit.data.shards import check_split

    out = tmp_path / "split"
    write_split(fake_generator, 8, out, shard_size=2, progress=False)
    assert check_split(out).ok and check_split(tmp_path).manifest is None
    (out / shard_name(0)).unlink()
    (out / shard_name(1)).write_bytes((out / shard_name(1)).read_bytes()[:-700])
    _flip_byte_in_member(out / shard_name(2), 0, "image.jpg")
    (out / shard_name(4)).write_bytes((out / shard_name(3)).read_bytes())
    check = check_split(out)
    assert list(check.problems) == [shard_name(j) for j in (0, 1, 2, 4)]
    assert "missing" in check.problems[shard_name(0)]
    assert "truncated" in check.problems[shard_name(1)]
    assert check.problems[shard_name(2)] == "corrupt: CRC mismatch in member '000000004.image.jpg'"
    assert "not part of the split" in check.problems[shard_name(4)]
    assert check_split(out, verify_data=False).problems.keys() == {
        shard_name(j) for j in (0, 1, 4)}
    line = check.describe()
    assert line.startswith(f"{out / shard_name(0)}: missing") and "3 more" in line
    assert "\n" not in line
    # a valid shard of other data in place of the recorded one
    write_split(functools.partial(fake_generator, seed=1), 8, tmp_path / "other", 2,
                progress=False)
    (out / shard_name(0)).write_bytes((tmp_path / "other" / shard_name(0)).read_bytes())
    assert "differs" in check_split(out).problems[shard_name(0)]


def test_spawned_workers_write_the_same_bytes(tmp_path):
    gen = functools.partial(tiny_generator, seed=3)
    write_split(gen, 12, tmp_path / "one", shard_size=3, progress=False)
    write_split(gen, 12, tmp_path / "pool", shard_size=3, workers=2, progress=False)
    assert _files(tmp_path / "pool") == _files(tmp_path / "one")
    assert len(_files(tmp_path / "one")) == 4
    # workers share the records of a single shard too (the pool is per record, not per shard)
    write_split(gen, 12, tmp_path / "single", shard_size=12, workers=2, progress=False)
    single = ShardReader(tmp_path / "single" / "shard-00000.tar")
    many = [ShardReader(p) for p in sorted((tmp_path / "one").glob("shard-*.tar"))]
    assert [single[i] for i in range(12)] == [r[i] for r in many for i in range(len(r))]


def test_split_arguments_and_manifest_errors(tmp_path):
    with pytest.raises(ValueError, match="n must"):
        write_split(fake_generator, -1, tmp_path, progress=False)
    with pytest.raises(ValueError, match="shard_size"):
        write_split(fake_generator, 3, tmp_path, shard_size=0, progress=False)
    with pytest.raises(ValueError, match="workers"):
        write_split(fake_generator, 3, tmp_path, workers=0, progress=False)
    with pytest.raises(TypeError, match="callable"):
        write_split(3, 3, tmp_path, progress=False)
    with pytest.raises(TypeError, match="picklable"):
        write_split(lambda i: fake_generator(i), 4, tmp_path / "l", 2, workers=2, progress=False)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty")):
        (tmp_path / "empty").mkdir()
        read_manifest(tmp_path / "empty")
    m = write_split(fake_generator, 0, tmp_path / "zero", progress=False)
    assert m["num_shards"] == 0 and m["complete"]
    write_split(fake_generator, 5, tmp_path / "m", shard_size=2, progress=False)
    (tmp_path / "m" / shard_name(1)).unlink()
    m = update_manifest(tmp_path / "m")
    assert not m["complete"] and m["missing"] == [shard_name(1)] and m["num_records"] == 3
    # a smaller split over a folder with more shards: refused, or the extra shards go
    with pytest.raises(ValueError, match="beyond this split"):
        write_split(fake_generator, 2, tmp_path / "m", shard_size=2, progress=False)
    m = write_split(fake_generator, 2, tmp_path / "m", shard_size=2, progress=False, overwrite=True)
    assert sorted(_files(tmp_path / "m")) == [shard_name(0)] and m["complete"]
