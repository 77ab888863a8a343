"""Checkpoints of hmrkit 0.1 (flat method arguments) load into the composed methods and predict
exactly as before: the shipped demo model against outputs recorded with hmrkit 0.1."""

from __future__ import annotations

import torch

from hmrkit.demo import shipped_model_path
from hmrkit.geometry.crops import crop_matrix
from hmrkit.models.checkpoints import load_method, read_checkpoint
from hmrkit.models.compat import is_flat, upgrade


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    center = torch.tensor([[300.0, 260.0], [120.0, 200.0]])
    size = torch.tensor([240.0, 150.0])
    return {"image": torch.rand(2, 3, 96, 96, generator=g), "box_center": center,
            "box_size": size, "crop_affine": crop_matrix(center, size, 96).float(),
            "camera/intrinsics": torch.tensor([[800.0, 800.0, 320.0, 240.0]] * 2),
            "camera/image_size": torch.tensor([[640.0, 480.0]] * 2)}


def test_the_shipped_model_is_a_flat_checkpoint_that_upgrades():
    checkpoint = read_checkpoint(shipped_model_path())
    method = checkpoint["hmrkit"]["method"]
    arguments = checkpoint["hyper_parameters"]
    assert method == "hmrkit.models.methods.cliff.CLIFF" and is_flat(method, arguments)
    new, state = upgrade(method, arguments, checkpoint["state_dict"])
    assert new["crop_size"] == 96 and new["head"]["init_args"] == {"hidden": 512, "iterations": 3}
    assert new["backbone"]["init_args"]["name"] == "resnet18"
    assert new["optim"] == {"lr": 0.0005, "weight_decay": 0.0, "schedule": "cosine",
                            "warmup_steps": 100}
    assert "backbone.net.conv1.weight" in state and "backbone.pixel_mean" in state
    assert not is_flat(method, new)


def test_the_shipped_model_predicts_what_hmrkit_0_1_predicted():
    """Recorded with hmrkit 0.1 (commit c880157) on the same input; the full tensors matched
    bit for bit when this test was written."""
    model = load_method(shipped_model_path())
    assert type(model).__name__ == "CLIFF" and model.crop_size == 96
    with torch.no_grad():
        est = model(_batch())
    torch.testing.assert_close(est.transl, torch.tensor(
        [[-0.404819, 0.319297, 8.699112], [-3.443236, -0.657850, 13.542768]]),
        atol=2e-6, rtol=0)
    torch.testing.assert_close(est.betas[:, :3], torch.tensor(
        [[-0.903526, -4.719600, -2.101854], [-0.741957, -3.825945, -1.302706]]),
        atol=2e-6, rtol=0)
    torch.testing.assert_close(est.rotmat[:, 5, 0], torch.tensor(
        [[9.986640e-01, -1.489227e-02, -4.948288e-02], [9.999652e-01, 3.221141e-05,
                                                         -8.344681e-03]]), atol=2e-6, rtol=0)
    torch.testing.assert_close(est.joints[:, 10], torch.tensor(
        [[0.570149, 0.566781, 0.098223], [0.324697, 0.799783, 0.050747]]), atol=2e-6, rtol=0)


def test_flat_multiroi_arguments_upgrade():
    """hmrkit 0.1's 32 flat Multi-RoI arguments map onto the parts (and build)."""
    from hmrkit.models.methods import MultiRoI
    from hmrkit.models.parts import build

    flat = {"backbone": "resnet18", "image_size": 32, "regressor_hidden": 32, "num_rois": 3,
            "fusion": "attention", "fusion_hidden": 16, "camera_consistency": 0.5,
            "contrastive": 0.0, "keypoint_frame": "original", "lr": 1e-3}
    new, state = upgrade("hmrkit.models.methods.multiroi.MultiRoI", flat,
                         {"backbone.conv1.weight": torch.zeros(1), "pixel_std": torch.ones(1),
                          "camera_decoder.init_cam": torch.zeros(3)})
    assert set(state) == {"backbone.net.conv1.weight", "backbone.pixel_std",
                          "camera_decoder.init_cam"}
    model = build(MultiRoI, new)
    assert model.num_rois == 3 and model.projection is None and model.optim.lr == 1e-3
    assert model.fusion.query.out_features == 16 and model.camera_decoder.mlp[0].out_features == 32
    assert model.losses.camera_consistency == 0.5 and model.losses.keypoint_frame == "original"
