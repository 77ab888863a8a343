"""Keypoint pretext: integral regression golden values and symmetry, training, and its
checkpoint as a method's backbone."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from hmrkit.cli import main
from hmrkit.models.backbones import TimmBackbone
from hmrkit.models.pretext import KeypointPretext, integral_keypoints

ROOT = Path(__file__).resolve().parents[1]


def test_integral_keypoints_of_a_peak_is_the_cell_centre_and_its_depth():
    logits = torch.full((1, 2, 8, 6), -1e4)
    logits[0, 0, 2, 5] = 0.0  # row 2, column 5
    logits[0, 1, 7, 0] = 0.0
    depth = torch.arange(96.0).view(1, 2, 8, 6)
    xy, z = integral_keypoints(logits, depth)
    assert torch.allclose(xy[0, 0], torch.tensor([(5 + 0.5) / 6 * 2 - 1, (2 + 0.5) / 8 * 2 - 1]))
    assert torch.allclose(xy[0, 1], torch.tensor([(0 + 0.5) / 6 * 2 - 1, (7 + 0.5) / 8 * 2 - 1]))
    assert torch.allclose(z[0], torch.tensor([depth[0, 0, 2, 5], depth[0, 1, 7, 0]]))


def test_integral_keypoints_uniform_and_mirror_symmetry():
    xy, z = integral_keypoints(torch.zeros(1, 1, 5, 4), torch.arange(20.0).view(1, 1, 5, 4))
    assert torch.allclose(xy, torch.zeros(1, 1, 2), atol=1e-6)
    assert torch.allclose(z, torch.tensor([[9.5]]))  # the mean depth
    logits, depth = torch.randn(3, 4, 7, 9), torch.randn(3, 4, 7, 9)
    xy, z = integral_keypoints(logits, depth)
    xy_f, z_f = integral_keypoints(logits.flip(-1), depth.flip(-1))
    assert torch.allclose(xy_f[..., 0], -xy[..., 0], atol=1e-6)  # x mirrors, y and z do not
    assert torch.allclose(xy_f[..., 1], xy[..., 1], atol=1e-6)
    assert torch.allclose(z_f, z, atol=1e-6)


def test_pretext_fits_one_batch():
    torch.manual_seed(0)
    model = KeypointPretext(crop_size=64, head_channels=32)
    b = 4
    joints = torch.randn(b, 24, 3) * 0.3
    kp = torch.cat([torch.rand(b, 24, 2) * 64, torch.ones(b, 24, 1)], -1)
    batch = {
        "image": torch.rand(b, 3, 64, 64), "keypoints2d/smpl24": kp, "joints3d": joints,
        "crop_affine": torch.eye(2, 3).expand(b, 2, 3), "box_center": torch.full((b, 2), 32.0),
        "box_size": torch.full((b,), 64.0), "has_keypoints2d": torch.ones(b),
        "has_joints3d": torch.ones(b),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        total = sum(model.losses(batch).values())
        first = float(total) if first is None else first
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert float(sum(model.losses(batch).values())) < 0.7 * first


@pytest.fixture(scope="module")
def pretext_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("pretext")
    assert main(["synth", "--n", "4", "--out", str(work / "train"), "--seed", "5"]) == 0
    config = str(ROOT / "configs" / "keypoints-r18-96-cpu.yaml")
    assert main(["train", "--config", config, "--data.train", str(work / "train"),
                 "--data.val", str(work / "train"), "--data.num_workers", "0",
                 "--data.batch_size", "4", "--trainer.max_steps", "3",
                 "--trainer.val_check_interval", "3",
                 "--trainer.logger.init_args.save_dir", str(work / "runs")]) == 0
    ckpt = work / "runs" / "keypoints-r18-96-cpu" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


def test_pretext_checkpoint_initialises_a_method_backbone(pretext_run):
    from hmrkit.models.methods import CLIFF

    state = torch.load(pretext_run, weights_only=False)["state_dict"]
    model = CLIFF(crop_size=96, backbone=partial(TimmBackbone, checkpoint=str(pretext_run)))
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[f"backbone.{name}"]), name


def test_pretext_checkpoint_for_another_backbone_is_refused(pretext_run):
    from hmrkit.models.methods import HMR

    with pytest.raises(ValueError, match=str(pretext_run.name)):
        HMR(crop_size=96, backbone=partial(TimmBackbone, name="resnet34",
                                           checkpoint=str(pretext_run)))


def test_a_method_trained_from_a_backbone_checkpoint_loads_without_that_file(
        pretext_run, tmp_path):
    from hmrkit.models.checkpoints import export_method, load_method
    from hmrkit.models.methods import CLIFF
    from hmrkit.models.parts import plain

    model = CLIFF(crop_size=96, backbone=partial(TimmBackbone, checkpoint=str(pretext_run)))
    arguments = plain(dict(model.hparams))
    arguments["backbone"]["init_args"]["checkpoint"] = str(tmp_path / "moved-away.ckpt")
    ckpt = tmp_path / "run.ckpt"
    torch.save({"hmrkit": {"method": "hmrkit.models.methods.cliff.CLIFF"},
                "hyper_parameters": arguments, "state_dict": model.state_dict()}, ckpt)
    for path in (ckpt, export_method(ckpt, tmp_path / "model.pt", half=False)["out"]):
        loaded = load_method(path)
        assert plain(dict(loaded.hparams))["backbone"]["init_args"]["checkpoint"] is None
        assert torch.equal(loaded.backbone.net.conv1.weight, model.backbone.net.conv1.weight)
