"""Reusable heads: SPIN's / HMR's iterative regressor and Multi-RoI's camera decoder.

HMR (Kanazawa et al. 2018) and SPIN (Kolotouros et al. 2019): starting from the mean
parameters ``Theta_0``, ``Theta_{t+1} = Theta_t + MLP([phi, Theta_t, info])`` for 3
iterations; pose in 6D (Zhou et al.), converted to rotation matrices by Gram-Schmidt.

Heads are parts of the methods (:mod:`hmrkit.models.parts`): their first constructor arguments
are the sizes the method shares with them (feature width, box information width, joints,
shape coefficients), the others their own settings.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

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


MEAN_POSE_FILE = Path(__file__).parent / "weights" / "mean_pose.npz"
"""The mean of hmrkit's pose distribution, as SPIN ships ``smpl_mean_params.npz``: written by
``python -m hmrkit.data.synthetic.poses`` (:func:`hmrkit.data.synthetic.poses.mean_pose`)."""


@functools.lru_cache(maxsize=1)
def _mean_rotmat() -> torch.Tensor:
    with np.load(MEAN_POSE_FILE) as f:
        return torch.from_numpy(f["rotmat"])


MEAN_CAMERA = (0.9, 0.0, 0.0)
"""Initial crop camera ``(s, t_x, t_y)``: a body filling most of the crop, centred."""


def mean_parameters(num_joints: int, num_betas: int) -> dict[str, np.ndarray]:
    """Mean pose (6D per joint), shape and camera the regressors start from.

    The mean rotation of each joint over hmrkit's pose distribution (:data:`MEAN_POSE_FILE`),
    the body facing the camera (root = 180 deg about x: body y up -> camera y down); shape 0
    (PCA mean); camera scale 0.9 (a body filling most of the crop), no offset.
    """
    mean = _mean_rotmat().clone()
    mean[0] = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    return {
        "pose": rotmat_to_sixd(mean).reshape(-1).float().numpy()[: num_joints * 6],
        "betas": np.zeros(num_betas, np.float32),
        "cam": np.array(MEAN_CAMERA, np.float32),
    }


class IterativeRegressor(nn.Module):
    """SPIN regressor: ``[features, pose 6D, betas, cam, info] -> fc 1024 -> dropout ->
    fc 1024 -> dropout -> residual deltas``, ``iterations`` times (SPIN: 3)."""

    def __init__(
        self,
        feature_dim: int,
        info_dim: int,
        num_joints: int,
        num_betas: int,
        hidden: int = 1024,
        iterations: int = 3,
        dropout: float = 0.5,
    ):
        """
        Args:
            feature_dim, info_dim, num_joints, num_betas: given by the method (backbone width,
                box information width, body model joints and shape coefficients).
            hidden: width of the two hidden layers (SPIN: 1024).
            iterations: iterative error feedback steps (SPIN: 3).
            dropout: dropout after each hidden layer (SPIN: 0.5).
        """
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
        mean = mean_parameters(num_joints, num_betas)
        self.register_buffer("init_pose", torch.as_tensor(mean["pose"]).float()[None])
        self.register_buffer("init_betas", torch.as_tensor(mean["betas"]).float()[None])
        self.register_buffer("init_cam", torch.as_tensor(mean["cam"]).float()[None])

    def freeze_camera(self) -> None:
        """Fix the camera output at the mean camera (Multi-RoI's ``D^mesh`` predicts none; no
        unused trainable parameters, which DDP would reject)."""
        nn.init.zeros_(self.dec_cam.weight)
        nn.init.zeros_(self.dec_cam.bias)
        self.dec_cam.requires_grad_(False)

    def forward(self, features: Tensor, info: Tensor | None = None,
                init: RegressorOutput | None = None) -> list[RegressorOutput]:
        """Outputs of every iteration (the last is the estimate), starting from the mean
        parameters or from ``init`` (its ``sixd``, ``betas``, ``cam``: PyMAF's levels each start
        from the previous level's estimate)."""
        B = features.shape[0]
        if init is None:
            pose = self.init_pose.expand(B, -1)
            betas = self.init_betas.expand(B, -1)
            cam = self.init_cam.expand(B, -1)
        else:
            pose, betas, cam = init.sixd.reshape(B, -1), init.betas, init.cam
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


class CameraDecoder(nn.Module):
    """``D^cam`` (Multi-RoI eq. 5): HMR's iterative error feedback on the camera alone.

    ``C_{t+1} = C_t + dec(MLP([u_m, C_t, info_m]))`` from the mean camera, ``iterations`` times;
    MLP = ``fc hidden - ReLU - dropout - fc hidden - ReLU - dropout`` (the FC layers with
    residual connections of HMR [19]); ``dec`` Xavier-initialised with gain 0.01. Applied to
    every RoI with the same weights. ``info_dim > 0`` adds the RoI's box information.
    """

    def __init__(self, feature_dim: int, info_dim: int, hidden: int = 1024,
                 iterations: int = 3, dropout: float = 0.5):
        """
        Args:
            feature_dim, info_dim: given by the method.
            hidden, iterations, dropout: as :class:`IterativeRegressor`'s.
        """
        super().__init__()
        self.iterations = iterations
        self.mlp = nn.Sequential(
            nn.Linear(feature_dim + 3 + info_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        )
        self.dec_cam = nn.Linear(hidden, 3)
        nn.init.xavier_uniform_(self.dec_cam.weight, gain=0.01)
        nn.init.zeros_(self.dec_cam.bias)
        self.register_buffer("init_cam", torch.tensor(MEAN_CAMERA, dtype=torch.float32))

    def forward(self, features: Tensor, info: Tensor | None = None) -> list[Tensor]:
        """``features (..., D)`` [and ``info (..., I)``] -> cameras ``(..., 3)`` of every
        iteration (the last is the estimate)."""
        cam = self.init_cam.to(features.dtype).expand(*features.shape[:-1], 3)
        cams = []
        for _ in range(self.iterations):
            x = [features, cam] + ([info] if info is not None else [])
            cam = cam + self.dec_cam(self.mlp(torch.cat(x, dim=-1)))
            cams.append(cam)
        return cams
