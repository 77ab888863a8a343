"""Multi-RoI boxes: the paper's values for a known box, shapes, dtypes, gradients, errors."""

import numpy as np
import pytest
import torch

from hmrkit.data.rois import MAX_ROIS, multi_roi_boxes
from hmrkit.geometry.cameras import cliff_bbox_info


def test_known_box_values():
    centers, sizes = multi_roi_boxes(np.array([100.0, 200.0]), 50.0)
    np.testing.assert_allclose(
        centers, [[100, 200], [105, 200], [95, 200], [100, 205], [100, 195]]
    )
    np.testing.assert_allclose(sizes, [50, 75, 62.5, 40, 32.5])
    assert MAX_ROIS == 5


def test_first_m_and_custom_layout():
    c3, s3 = multi_roi_boxes([10.0, 20.0], 100.0, m=3)
    np.testing.assert_allclose(c3, [[10, 20], [20, 20], [0, 20]])
    np.testing.assert_allclose(s3, [100, 150, 125])
    c1, s1 = multi_roi_boxes([10.0, 20.0], 100.0, m=1)
    np.testing.assert_allclose(c1, [[10, 20]])
    np.testing.assert_allclose(s1, [100])
    c, s = multi_roi_boxes([0.0, 0.0], 10.0, m=2, offsets=[(0, 0), (1, -1)], scales=[1, 2])
    np.testing.assert_allclose(c, [[0, 0], [10, -10]])
    np.testing.assert_allclose(s, [10, 20])


def test_batched_torch_matches_numpy_and_has_gradients():
    g = torch.Generator().manual_seed(0)
    center = (torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 500).requires_grad_()
    size = (torch.rand(2, 3, generator=g, dtype=torch.float64) * 200 + 20).requires_grad_()
    centers, sizes = multi_roi_boxes(center, size)
    assert centers.shape == (2, 3, 5, 2) and sizes.shape == (2, 3, 5)
    assert centers.dtype == torch.float64
    for idx in [(0, 0), (1, 2)]:
        cn, sn = multi_roi_boxes(center[idx].detach().numpy(), size[idx].item())
        np.testing.assert_allclose(centers[idx].detach().numpy(), cn)
        np.testing.assert_allclose(sizes[idx].detach().numpy(), sn)
    (centers.sum() + sizes.sum()).backward()
    assert torch.allclose(size.grad, torch.full_like(size, 1.0 + 1.5 + 1.25 + 0.8 + 0.65))
    assert torch.allclose(center.grad, torch.full_like(center, 5.0))


def test_cliff_box_info_per_roi():
    centers, sizes = multi_roi_boxes(torch.tensor([[320.0, 240.0]]), torch.tensor([200.0]))
    info = cliff_bbox_info(centers.reshape(-1, 2), sizes.reshape(-1), (640, 480), 800.0, None)
    assert info.shape == (5, 3)
    assert torch.allclose(info[:, 2], sizes[0])
    assert torch.allclose(info[1, :2], torch.tensor([20.0, 0.0]))


@pytest.mark.parametrize("m", [0, 6, 2.0, True])
def test_bad_m(m):
    with pytest.raises(ValueError, match="m must"):
        multi_roi_boxes([0.0, 0.0], 1.0, m=m)


def test_bad_shapes_and_layouts():
    with pytest.raises(ValueError, match=r"center has shape"):
        multi_roi_boxes(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match=r"size has shape"):
        multi_roi_boxes(np.zeros((4, 2)), np.ones(3))
    with pytest.raises(ValueError, match="offsets"):
        multi_roi_boxes([0.0, 0.0], 1.0, m=1, offsets=[(0, 0)], scales=[1, 2])
    with pytest.raises(ValueError, match="positive"):
        multi_roi_boxes([0.0, 0.0], 1.0, m=1, offsets=[(0, 0)], scales=[0])
