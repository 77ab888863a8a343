"""The command line: demo and synth end to end, and clear errors on bad arguments."""

from __future__ import annotations

import json

import pytest
import torch

from hmrkit.cli import main


def test_demo_runs_the_shipped_model_next_to_the_ground_truth(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--scenes", "2"]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["model"].endswith("cliff-r18-96-synth.pt") and index["persons"] >= 2
    for scene in index["scenes"]:
        for view in ("image", "pred", "true", "pred_side", "true_side"):
            assert (tmp_path / f"{scene['scene']}_{view}.png").stat().st_size > 1000
        for kind in ("pred", "true"):
            assert (tmp_path / "meshes" / f"{scene['scene']}_p0_{kind}.glb").is_file()
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    table = capsys.readouterr().out
    assert "| cliff-r18-96-synth | all |" in table and "| mean pose | all |" in table
    assert 0 < index["metrics"]["cliff-r18-96-synth"]["pa_mpjpe"] < 1000


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
