"""A lifting head: body parameters from a feature vector with the recipe of a 2D->3D lifter.

Martinez et al. 2017 ("A simple yet effective baseline for 3d human pose estimation") lift 2D
joints to 3D with a residual MLP: the input standardised, ``Linear(width) -> BatchNorm ->
ReLU -> Dropout``, then residual blocks of two such layers with a skip connection, then a
linear output; trained with Adam, batch normalisation and dropout 0.5.  On true 2D joints of
hmrkit's own synthetic people that recipe reaches about 50 mm PA-MPJPE where SPIN's
iterative regressor (:class:`~hmrkit.models.heads.IterativeRegressor`) with its recipe stays
at 74-80 mm (``notes/poses.md``, ``benchmarks/oracle_lifting.py``).

:class:`LiftingRegressor` keeps the Martinez trunk and outputs what every hmrkit head
outputs (:class:`~hmrkit.models.heads.RegressorOutput`: 6D pose per joint -> rotation
matrices, shape, weak-perspective crop camera), as residuals from the mean parameters (SPIN's
start); the camera scale is regressed as its logarithm, so it stays positive.  With
``iterations > 1`` it refines them like HMR's iterative error feedback: a residual block
reads the trunk features with the current estimate and adds a correction.  It is a head
part like :class:`~hmrkit.models.heads.IterativeRegressor` (same constructor sizes, same
call ``head(features, info) -> [outputs per iteration]``), so a method can take either; the
input is any feature vector (2D landmarks and box information, BlazePose world landmarks,
CNN features).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from hmrkit.geometry.rotations import sixd_to_rotmat
from hmrkit.models.heads import RegressorOutput, mean_parameters


def _layer(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    """``Linear -> BatchNorm1d -> ReLU -> Dropout`` (Martinez et al. 2017, Fig. 1)."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), nn.ReLU(),
                         nn.Dropout(dropout))


class ResidualBlock(nn.Module):
    """Two :func:`_layer` of ``width`` with a skip connection (Martinez et al. 2017)."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(_layer(width, width, dropout), _layer(width, width, dropout))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


class LiftingRegressor(nn.Module):
    """Residual-MLP head: ``[features, info] -> standardise -> Linear(width) -> BN -> ReLU ->
    Dropout -> blocks x ResidualBlock -> (pose 6D, betas, cam)`` as residuals from the mean
    parameters; optionally ``iterations - 1`` refinements (module doc).

    A part of the methods (:mod:`hmrkit.models.parts`) like
    :class:`~hmrkit.models.heads.IterativeRegressor`: the method gives the sizes.

    Args:
        feature_dim, info_dim, num_joints, num_betas: given by the method (feature width, box
            information width (0 for none), body model joints and shape coefficients).
        width: hidden width (Martinez: 1024).
        blocks: residual blocks of the trunk (Martinez: 2).
        dropout: dropout probability (Martinez: 0.5; 0.2 is far better for body parameters
            on true 2D input, docs/poses.md).
        iterations: 1 = a plain lifter; more adds refinement steps.
    """

    def __init__(self, feature_dim: int, info_dim: int, num_joints: int, num_betas: int,
                 width: int = 1024, blocks: int = 2, dropout: float = 0.2, iterations: int = 1):
        super().__init__()
        if iterations < 1 or blocks < 0 or width < 1:
            raise ValueError(f"LiftingRegressor: iterations >= 1, blocks >= 0 and width >= 1 "
                             f"needed, got {iterations}, {blocks}, {width}")
        self.num_joints, self.num_betas, self.iterations = num_joints, num_betas, iterations
        n_params = num_joints * 6 + num_betas + 3
        # standardisation by running statistics (Martinez: the training set's mean and std)
        self.standardise = nn.BatchNorm1d(feature_dim + info_dim, affine=False)
        self.trunk = nn.Sequential(_layer(feature_dim + info_dim, width, dropout),
                                   *[ResidualBlock(width, dropout) for _ in range(blocks)])
        self.decode = nn.Linear(width, n_params)
        self.refine = nn.ModuleList(
            nn.Sequential(_layer(width + n_params, width, dropout), ResidualBlock(width, dropout),
                          nn.Linear(width, n_params))
            for _ in range(iterations - 1))
        for layer in [self.decode] + [r[-1] for r in self.refine]:
            nn.init.xavier_uniform_(layer.weight, gain=0.01)
            nn.init.zeros_(layer.bias)
        mean = mean_parameters(num_joints, num_betas)
        cam = np.array([np.log(mean["cam"][0]), *mean["cam"][1:]])
        start = np.concatenate([mean["pose"], mean["betas"], cam]).astype(np.float32)
        self.register_buffer("init_params", torch.as_tensor(start)[None])

    def _output(self, params: Tensor) -> RegressorOutput:
        B, P = params.shape[0], self.num_joints * 6
        sixd = params[:, :P].reshape(B, self.num_joints, 6)
        cam = params[:, P + self.num_betas :]
        # the scale is regressed as its logarithm: positive, so the camera-scale prior
        # exp(-10 s) stays bounded whatever a large early step does
        cam = torch.cat([cam[:, :1].exp(), cam[:, 1:]], dim=1)
        return RegressorOutput(sixd_to_rotmat(sixd), params[:, P : P + self.num_betas], cam,
                               sixd)

    def forward(self, features: Tensor, info: Tensor | None = None) -> list[RegressorOutput]:
        """Outputs after the lifter and after each refinement (the last is the estimate)."""
        x = features if info is None else torch.cat([features, info], dim=1)
        h = self.trunk(self.standardise(x))
        params = self.init_params + self.decode(h)
        outs = [self._output(params)]
        for step in self.refine:
            params = params + step(torch.cat([h, params], dim=1))
            outs.append(self._output(params))
        return outs
