"""HMR and CLIFF baselines: forward on real synthetic samples, losses, a few steps down."""

from __future__ import annotations

import pytest
import torch

from hmrkit.cli import main
from hmrkit.losses.sets import gt_rotmat
from hmrkit.models.methods.base import Optim
from hmrkit.models.methods.cliff import CLIFF
from hmrkit.models.methods.hmr import HMR


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from hmrkit.data.dataset import SyntheticDataset

    root = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--n", "4", "--out", str(root / "train"), "--seed", "9"]) == 0
    dataset = SyntheticDataset(root, split="train", crop_size=64)
    return next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))


@pytest.mark.parametrize("method", [HMR, CLIFF])
def test_forward_losses_and_overfitting(method, batch):
    torch.manual_seed(0)
    model = method(crop_size=64, optim=Optim(lr=1e-3))
    est = model(batch)
    B = batch["image"].shape[0]
    assert est.rotmat.shape == (B, 24, 3, 3) and est.vertices.shape == (B, 1229, 3)
    assert est.transl.shape == (B, 3)
    model.train()
    opt = model.configure_optimizers()
    first = None
    for _ in range(8):
        losses = model.compute_losses(model(batch), batch)
        total = sum(losses.values())
        assert all(torch.isfinite(v) for v in losses.values())
        first = total.item() if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert total.item() < first


def test_cliff_full_image_loss_is_zero_at_ground_truth(batch):
    """CLIFF's full-image projection of the labels reproduces the labelled 2D keypoints."""
    from hmrkit.geometry.cameras import full_to_crop_camera
    from hmrkit.models.methods.base import BodyEstimate

    model = CLIFF(crop_size=64)
    rotmat = gt_rotmat(batch)
    out = model.body(rotmat[:, 0], rotmat[:, 1:], batch["betas"])
    # The body model's joints + transl are the camera-frame joints of the label.
    cam = full_to_crop_camera(batch["transl"] + out.joints[:, 0], batch["box_center"],
                              batch["box_size"], batch["camera/image_size"],
                              batch["camera/intrinsics"][:, 0])
    est = BodyEstimate(rotmat=rotmat, betas=batch["betas"], cam_crop=cam, transl=batch["transl"],
                       vertices=out.vertices, joints=out.joints)
    model.losses.keypoint_sets = ("smpl24",)
    assert model.losses.keypoints_2d(est, batch, model.loss_context).item() < 1e-8


def test_root_translation_error_is_the_camera_frame_root_distance():
    from hmrkit.body.estimate import BodyEstimate
    from hmrkit.body.model import BodyOutput
    from hmrkit.metrics.scoring import root_translation_error

    torch.manual_seed(0)
    joints, transl = torch.randn(3, 24, 3), torch.randn(3, 3)
    gt = BodyOutput(torch.randn(3, 10, 3), joints)
    shift = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, -0.4], [0.01, 0.0, 0.0]])
    # the prediction's body is offset, its translation compensates except for `shift`
    body_offset = torch.randn(3, 1, 3)
    est = BodyEstimate(rotmat=torch.eye(3).expand(3, 24, 3, 3), betas=torch.zeros(3, 10),
                       cam_crop=torch.zeros(3, 3), transl=transl - body_offset[:, 0] + shift,
                       vertices=gt.vertices, joints=joints + body_offset)
    error = root_translation_error(est, gt, {"transl": transl})
    assert torch.allclose(error, torch.tensor([0.0, 500.0, 10.0]), atol=1e-3)
    masked = root_translation_error(est, gt, {"transl": transl,
                                              "meta/has_transl": torch.tensor([1.0, 0.0, 1.0])})
    assert torch.isnan(masked[1]) and torch.allclose(masked[[0, 2]], error[[0, 2]])
    assert torch.isnan(root_translation_error(est, gt, {})).all()
