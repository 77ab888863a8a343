"""The lifting head (Martinez-style residual MLP -> body parameters)."""

from __future__ import annotations

import pytest
import torch

from hmrkit.geometry.rotations import sixd_to_rotmat
from hmrkit.models.heads import RegressorOutput, mean_parameters
from hmrkit.models.lifting import LiftingRegressor


@pytest.fixture(scope="module")
def mean():
    return mean_parameters(24, 10)


def test_outputs_start_at_the_mean_and_are_valid(mean):
    torch.manual_seed(0)
    head = LiftingRegressor(30, 3, 24, 10, width=64, iterations=3)
    outs = head(torch.randn(8, 30), torch.randn(8, 3))
    assert len(outs) == 3 and all(isinstance(o, RegressorOutput) for o in outs)
    last = outs[-1]
    assert last.rotmat.shape == (8, 24, 3, 3) and last.betas.shape == (8, 10)
    assert last.cam.shape == (8, 3) and last.sixd.shape == (8, 24, 6)
    eye = torch.eye(3).expand(8, 24, 3, 3)
    assert torch.allclose(last.rotmat @ last.rotmat.transpose(-1, -2), eye, atol=1e-5)
    # tiny initial decoders: the first output is the mean (SPIN's start), scale included
    first = outs[0]
    mean_rot = sixd_to_rotmat(torch.as_tensor(mean["pose"]).view(24, 6))
    assert (first.rotmat - mean_rot).abs().max() < 0.05
    assert (first.cam[:, 0] - float(mean["cam"][0])).abs().max() < 0.05
    assert (first.betas).abs().max() < 0.05


def test_camera_scale_stays_positive_and_gradients_reach_every_parameter(mean):
    torch.manual_seed(1)
    head = LiftingRegressor(12, 0, 24, 10, width=32, blocks=1, iterations=2)
    with torch.no_grad():
        head.decode.bias[-3] = -30.0  # a wild step on the log-scale
    outs = head(torch.randn(5, 12))
    assert (outs[-1].cam[:, 0] > 0).all()
    loss = sum((o.sixd**2).mean() + o.cam.mean() + o.betas.pow(2).mean() for o in outs)
    loss.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_it_fits_a_small_mapping(mean):
    """Trained on 64 random inputs -> random 6D pose targets, the error falls far below the
    mean start's (a check that the head can learn, not a benchmark)."""
    torch.manual_seed(2)
    x = torch.randn(64, 20)
    target = torch.randn(64, 24, 6) * 0.3 + torch.as_tensor(mean["pose"]).view(24, 6)
    head = LiftingRegressor(20, 0, 24, 10, width=128, dropout=0.0)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    start = ((head(x)[-1].sixd - target) ** 2).mean().item()
    for _ in range(150):
        loss = ((head(x)[-1].sixd - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    assert ((head(x)[-1].sixd - target) ** 2).mean().item() < 0.2 * start


def test_bad_arguments():
    with pytest.raises(ValueError, match="iterations >= 1"):
        LiftingRegressor(10, 0, 24, 10, iterations=0)
