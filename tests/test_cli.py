"""The command line: demo and synth end to end, and clear errors on bad arguments."""

from __future__ import annotations

import json

import pytest
import torch

from hmrkit.cli import main


def test_demo_writes_meshes_picture_and_index(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--num-bodies", "2"]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert len(index["bodies"]) == 2
    for body in index["bodies"]:
        assert (tmp_path / body["mesh"]).stat().st_size > 100_000
    assert (tmp_path / "bodies.png").stat().st_size > 10_000
    assert "| body | pose |" in capsys.readouterr().out


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
