"""``benchmarks/ablation_whmr.py``: which rows train from which, the training arguments of a
row, and the tables built from results (no training here; tests/test_whmr.py trains)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import ablation_whmr as ab  # noqa: E402


def _args(tmp_path, **kw):
    base = dict(out=str(tmp_path / "out"), data_root=str(tmp_path / "data"), steps=7,
                batch_size=5, val_samples=3, seed=2, backbone_checkpoint="bb.pt")
    return argparse.Namespace(**{**base, **kw})


def _value(argv, key):
    return argv[argv.index(key) + 1]


def test_rows_pull_in_what_they_start_from():
    assert ab.rows_with_dependencies(["base"]) == ["base"]
    assert ab.rows_with_dependencies(["stage III"]) == [
        "V+F+G", "stage II", "camera rotation", "stage III"]
    assert ab.rows_with_dependencies(["SPEC-like", "+G"]) == [
        "+G", "V+F+G", "stage II", "camera rotation", "SPEC-like"]


def test_every_row_shares_the_budget_and_switches_only_its_parts(tmp_path):
    args = _args(tmp_path)
    for name in ab.ROWS:
        argv = ab.train_argv(name, args)
        assert _value(argv, "--trainer.max_steps") == "7"
        assert _value(argv, "--data.batch_size") == "5"
        assert _value(argv, "--seed_everything") == "2"
        assert _value(argv, "--data.train") == str(tmp_path / "data" / "train")
    base = ab.train_argv("base", args)
    assert _value(base, "--model.init_args.box_info") == "null"
    assert _value(base, "--model.init_args.focal") == "null"
    assert json.loads(_value(base, "--model.init_args.head"))["init_args"][
        "vertex_regressor"] is None
    assert _value(base, "--model.init_args.backbone.init_args.checkpoint") == "bb.pt"
    full = ab.train_argv("V+F+G", args)
    assert "--model.init_args.focal" not in full and "--model.init_args.head" not in full
    stage2 = ab.train_argv("stage II", args)
    assert _value(stage2, "--model.init_args.init_checkpoint") == str(
        ab.checkpoint_of(Path(args.out), "V+F+G"))
    assert "--model.init_args.backbone.init_args.checkpoint" not in stage2
    stage3 = ab.train_argv("stage III", args)
    assert _value(stage3, "--model.init_args.camera_rotation.init_args.checkpoint") == str(
        ab.checkpoint_of(Path(args.out), "camera rotation"))
    rot = ab.train_argv("camera rotation", _args(tmp_path, backbone_checkpoint=""))
    assert _value(rot, "--model.init_args.net.init_args.backbone.init_args.checkpoint") == "null"


def _result(**overall):
    subsets = {"wide (< 28 mm)": {"count": 1, **{k: v + 1 for k, v in overall.items()}}}
    return {"tests": {t: {"count": 2, "overall": overall, "subsets": subsets}
                      for t in ab.TESTS}}


def test_tables_place_each_metric_in_its_column():
    results = {
        "base": _result(mpjpe=300.0, pa_mpjpe=150.0, pve=float("nan")),
        "V+F+G": _result(mpjpe=290.0, pa_mpjpe=140.0, pve=310.0, focal_err_pct=20.0,
                         focal_err_cliff_pct=30.0),
        "stage III": _result(pa_mpjpe=140.0, w_mpjpe_camframe=400.0, w_mpjpe=250.0,
                             w_pve_rottrue=260.0),
    }
    t5 = ab.table5(results)
    assert t5[2] == "| base | 300.0 | 150.0 | - | 300.0 | 150.0 | - |"
    assert t5[3].startswith("| V+F+G | 290.0 | 140.0 | 310.0 |")
    cam = ab.camera_table(results)
    assert cam[2].startswith("| V+F+G | synth-v1 | all | 2 | 20.0 / 30.0 | - / - |")
    assert cam[3].startswith("| V+F+G | synth-v1 | wide (< 28 mm) | 1 | 21.0 / 31.0 |")
    world = {line.split(" | ")[0]: line for line in ab.world_table(results)[2:]}
    assert world["| camera-frame output (level camera) (stage III)"].startswith(
        "| camera-frame output (level camera) (stage III) | 400.0 | - | 140.0 |")
    assert "| OrientCorrect (estimated rotation) (stage III) | 250.0 |" in "\n".join(
        world.values())
    assert not any("SPEC-like" in k for k in world)  # no row, no line


@pytest.mark.parametrize("value, text", [(None, "-"), (float("nan"), "-"), (3.14159, "3.1")])
def test_cells(value, text):
    assert ab._cell(value) == text
