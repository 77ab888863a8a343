"""A method added in one new file plus one YAML (tests/fixtures/toy_method.py, toy.yaml), with
no edit elsewhere, trains, evaluates and predicts through the standard commands, with a
refiner after it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from hmrkit.cli import main
from hmrkit.predict import main as predict

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_toy_method_trains_evaluates_and_predicts(tmp_path):
    from hmrkit.models.registry import method_class

    assert method_class("tests.fixtures.toy_method.ToyMethod").__name__ == "ToyMethod"
    data = tmp_path / "train"
    assert main(["synth", "--n", "4", "--out", str(data), "--seed", "12"]) == 0
    assert main(["train", "--config", str(FIXTURES / "toy.yaml"), "--data.train", str(data),
                 "--data.val", str(data),
                 "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]) == 0
    ckpt = tmp_path / "runs" / "toy" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=False)
    assert saved["global_step"] == 6
    assert saved["hmrkit"]["method"] == "tests.fixtures.toy_method.ToyMethod"

    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out),
                 "--refiner", "identity"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["refiner"] == "identity" and metrics["count"] > 0
    assert {"mpjpe", "pa_mpjpe", "pve", "root_transl", "toy_scale"} <= set(metrics["overall"])
    assert "TOY-SCALE" in (out / "metrics.md").read_text()

    image = cv2.resize(np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8),
                       (160, 120))
    cv2.imwrite(str(tmp_path / "person.png"), image)
    pred = tmp_path / "pred"
    assert predict([str(tmp_path / "person.png"), "--checkpoint", str(ckpt), "--out", str(pred),
                    "--refiner", "identity", "--formats", "obj"]) == 0
    index = json.loads((pred / "index.json").read_text())
    assert index["method"] == "tests.fixtures.toy_method.ToyMethod" and index["crop_size"] == 32
    params = np.load(pred / "person_p0.npz")
    assert params["betas"].shape == (10,) and np.isfinite(params["transl"]).all()
    assert (pred / "person_p0.obj").is_file() and (pred / "person_overlay.png").is_file()
