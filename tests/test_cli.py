"""The command line: demo and synth end to end, and clear errors on bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hmrkit.cli import main
from hmrkit.models.weights import DEFAULT_MODEL
from tests.helpers import skip_without_blazepose


def test_demo_runs_the_shipped_model_next_to_the_ground_truth(tmp_path, capsys):
    skip_without_blazepose()  # the default model reads BlazePose's features
    assert main(["demo", "--out", str(tmp_path), "--scenes", "2"]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    stem = DEFAULT_MODEL.stem
    assert index["model"] == str(DEFAULT_MODEL) and index["persons"] >= 2
    for scene in index["scenes"]:
        for view in ("image", "pred", "true", "pred_side", "true_side"):
            assert (tmp_path / f"{scene['scene']}_{view}.png").stat().st_size > 1000
        for kind in ("pred", "true"):
            assert (tmp_path / "meshes" / f"{scene['scene']}_p0_{kind}.glb").is_file()
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    table = capsys.readouterr().out
    assert f"| {stem} | all |" in table and "| mean pose | all |" in table
    assert 0 < index["metrics"][stem]["pa_mpjpe"] < index["metrics"]["mean pose"]["pa_mpjpe"]


def test_demo_with_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--scenes", "1",
                 "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt does not exist" in capsys.readouterr().err


def test_synth_writes_shards_the_reader_feeds_to_a_loader(tmp_path):
    from hmrkit.data.dataset import SyntheticDataset

    out = tmp_path / "train"
    assert main(["synth", "--n", "3", "--out", str(out), "--shard-size", "2", "--seed", "4"]) == 0
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-00000.tar", "shard-00001.tar"]
    dataset = SyntheticDataset(tmp_path, split="train", crop_size=64)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 3, 64, 64)
    assert batch["joints3d"].shape == (2, 24, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["synth", "--out", "x"], "give --n N"),
        (["synth", "--out", "x", "--n", "2", "--shard", "3/2"], "0 <= i < N"),
        (["synth", "--out", "x", "--n", "2", "--shard", "a/b"], "i/N"),
    ],
)
def test_synth_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        main(argv)
    text = str(err.value) + capsys.readouterr().err
    assert message in text


# --------------------------------------------------------------------------- issue 15 probes


@pytest.fixture(scope="module")
def split3(tmp_path_factory):
    """A synthetic split of 6 scenes in 3 shards (the same arguments every time)."""
    out = tmp_path_factory.mktemp("split3") / "test"
    assert main(SYNTH3 + ["--out", str(out)]) == 0
    return out


SYNTH3 = ["synth", "--n", "6", "--shard-size", "2", "--seed", "4", "--split", "test"]


def _copy(split, tmp_path):
    import shutil

    return Path(shutil.copytree(split, tmp_path / "copy"))


def _evaluate(data, out, *extra):
    return main(["evaluate", "--method", "mean-pose", "--data", str(data), "--out", str(out),
                 *extra])


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_evaluate_refuses_a_split_that_does_not_match_its_manifest(split3, tmp_path, capsys):
    """Issue 15: with a shard deleted, evaluate scored fewer people, exit 0, no warning."""
    data = _copy(split3, tmp_path)
    (data / "shard-00001.tar").unlink()
    assert _evaluate(data, tmp_path / "eval") == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{data / 'shard-00001.tar'}: missing" in line and "--allow-partial" in line
    assert not (tmp_path / "eval").exists()
    truncated = data / "shard-00002.tar"
    truncated.write_bytes(truncated.read_bytes()[:-1000])
    assert _evaluate(data, tmp_path / "eval") == 2
    line = _one_line(capsys.readouterr().err)
    assert "shard-00001.tar" in line and "1 more bad shard(s): shard-00002.tar" in line


def test_evaluate_allow_partial_is_loud(split3, tmp_path, capsys):
    assert _evaluate(split3, tmp_path / "full") == 0
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert "partial" not in full and "PARTIAL" not in capsys.readouterr().out
    data = _copy(split3, tmp_path)
    (data / "shard-00000.tar").unlink()
    assert _evaluate(data, tmp_path / "part", "--allow-partial") == 0
    captured = capsys.readouterr()
    metrics = json.loads((tmp_path / "part" / "metrics.json").read_text())
    partial = metrics["partial"]
    assert partial["persons_expected"] == full["count"]
    assert partial["persons_scored"] == metrics["count"] < full["count"]
    assert list(partial["left_out"]) == ["shard-00000.tar"]
    expect = f"PARTIAL RESULT: scored {metrics['count']} of {full['count']} expected persons"
    assert captured.out.startswith(expect) and expect in captured.err
    assert expect in (tmp_path / "part" / "metrics.md").read_text()
    # --limit: at most that many persons expected
    assert _evaluate(data, tmp_path / "lim", "--allow-partial", "--limit", "2") == 0
    partial = json.loads((tmp_path / "lim" / "metrics.json").read_text())["partial"]
    assert partial == {**partial, "persons_scored": 2, "persons_expected": 2}


def test_synth_rerun_rewrites_a_corrupt_shard(split3, tmp_path, capsys):
    """Issue 15: rerunning synth kept a shard whose CRC was wrong and said 'wrote N scenes'."""
    from hmrkit.data.shards import ShardReader

    data = _copy(split3, tmp_path)
    shard = data / "shard-00001.tar"
    good = shard.read_bytes()
    reader = ShardReader(shard)
    offset, size, _ = (int(v) for v in reader._loc[0, reader._col["labels.npz"]])
    bad = bytearray(good)
    bad[offset + size // 2] ^= 0xFF
    shard.write_bytes(bytes(bad))
    capsys.readouterr()
    assert main(SYNTH3 + ["--out", str(data)]) == 0
    captured = capsys.readouterr()
    assert f"{shard}: rewriting invalid shard (CRC mismatch in member '000000002.labels.npz')" \
        in captured.err
    assert "6 of 6 scenes in 3 verified shard(s) (complete)" in captured.out
    assert shard.read_bytes() == good


def test_synth_into_another_split_names_the_overwrite_flag(split3, tmp_path, capsys):
    data = _copy(split3, tmp_path)
    other = ["synth", "--n", "6", "--shard-size", "2", "--seed", "5", "--out", str(data)]
    assert main(other) == 2
    line = _one_line(capsys.readouterr().err)
    assert "belongs to a different split" in line and "hmrkit synth --overwrite" in line
    assert main([*other, "--overwrite"]) == 0


@pytest.mark.parametrize("command", [
    ["evaluate", "--method", "mean-pose", "--data", "x"],
    ["synth", "--n", "1"],
    ["predict", "image.jpg", "--checkpoint", "model.pt"],
])
def test_out_pointing_at_a_file_is_a_usage_error(command, tmp_path, capsys):
    existing = tmp_path / "metrics.json"
    existing.write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main([*command, "--out", str(existing)])
    assert exc.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert f"argument --out: {existing} exists and is not a folder" in line


@pytest.mark.parametrize(("option", "value"), [
    ("--limit", "0"), ("--batch-size", "0"), ("--workers", "-1"), ("--limit", "many")])
def test_evaluate_bad_numbers_are_usage_errors(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _evaluate(tmp_path, tmp_path / "eval", option, value)
    assert exc.value.code == 2
    assert f"argument {option}: expected" in _one_line(capsys.readouterr().err)
