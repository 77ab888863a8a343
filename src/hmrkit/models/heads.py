"""Reusable heads.  :class:`IterativeRegressor` is SPIN's / HMR's iterative error feedback.

HMR (Kanazawa et al. 2018) and SPIN (Kolotouros et al. 2019): starting from the mean
parameters ``Theta_0``, ``Theta_{t+1} = Theta_t + MLP([phi, Theta_t, info])`` for 3
iterations; pose in 6D (Zhou et al.), converted to rotation matrices by Gram-Schmidt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from hmrkit.geometry.rotations import rotmat_to_sixd, sixd_to_rotmat


@dataclass
class RegressorOutput:
    """Body estimate in the crop: local rotations, shape, weak-perspective crop camera."""

    rotmat: Tensor
    """(B, J, 3, 3) local joint rotations; joint 0 is the root in the camera frame."""
    betas: Tensor
    """(B, K) shape coefficients."""
    cam: Tensor
    """(B, 3) crop camera ``(s, t_x, t_y)``."""
    sixd: Tensor
    """(B, J, 6) the raw 6D output (for regularisers)."""


def mean_parameters(num_joints: int = 24, num_betas: int = 10, samples: int = 4096,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Mean pose (6D per joint), shape and camera from hmrkit's own pose distribution.

    The mean rotation of each joint is the rotation closest to the average matrix of
    poses drawn from :class:`hmrkit.data.synthetic.poses.PoseSampler`; the body faces the
    camera (root = 180 deg about x: body y up -> camera y down); shape 0 (PCA mean);
    camera scale 0.9 (a body filling most of the crop), no offset.
    """
    import roma

    from hmrkit.data.synthetic.poses import PoseSampler

    poses = PoseSampler(seed=seed).sample(samples).double()
    mean = roma.special_procrustes(poses.mean(0))
    mean[0] = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    return {
        "pose": rotmat_to_sixd(mean).reshape(-1).float().numpy()[: num_joints * 6],
        "betas": np.zeros(num_betas, np.float32),
        "cam": np.array([0.9, 0.0, 0.0], np.float32),
    }


class IterativeRegressor(nn.Module):
    """SPIN regressor: ``[features, pose 6D, betas, cam, info] -> fc 1024 -> dropout ->
    fc 1024 -> dropout -> residual deltas``, ``iterations`` times (SPIN: 3)."""

    def __init__(
        self,
        feature_dim: int,
        info_dim: int = 0,
        num_joints: int = 24,
        num_betas: int = 10,
        hidden: int = 1024,
        iterations: int = 3,
        dropout: float = 0.5,
        mean: dict[str, np.ndarray] | None = None,
    ):
        super().__init__()
        self.num_joints, self.num_betas, self.iterations = num_joints, num_betas, iterations
        npose = num_joints * 6
        self.mlp = nn.Sequential(
            nn.Linear(feature_dim + info_dim + npose + num_betas + 3, hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        )
        self.dec_pose = nn.Linear(hidden, npose)
        self.dec_betas = nn.Linear(hidden, num_betas)
        self.dec_cam = nn.Linear(hidden, 3)
        for layer in (self.dec_pose, self.dec_betas, self.dec_cam):
            nn.init.xavier_uniform_(layer.weight, gain=0.01)
            nn.init.zeros_(layer.bias)
        mean = mean if mean is not None else mean_parameters(num_joints, num_betas)
        self.register_buffer("init_pose", torch.as_tensor(mean["pose"]).float()[None])
        self.register_buffer("init_betas", torch.as_tensor(mean["betas"]).float()[None])
        self.register_buffer("init_cam", torch.as_tensor(mean["cam"]).float()[None])

    def forward(self, features: Tensor, info: Tensor | None = None) -> list[RegressorOutput]:
        """Outputs of every iteration (the last is the estimate)."""
        B = features.shape[0]
        pose = self.init_pose.expand(B, -1)
        betas = self.init_betas.expand(B, -1)
        cam = self.init_cam.expand(B, -1)
        outs = []
        for _ in range(self.iterations):
            x = [features, pose, betas, cam] + ([info] if info is not None else [])
            h = self.mlp(torch.cat(x, dim=1))
            pose = pose + self.dec_pose(h)
            betas = betas + self.dec_betas(h)
            cam = cam + self.dec_cam(h)
            sixd = pose.view(B, self.num_joints, 6)
            outs.append(RegressorOutput(sixd_to_rotmat(sixd), betas, cam, sixd))
        return outs
