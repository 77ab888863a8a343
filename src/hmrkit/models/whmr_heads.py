"""W-HMR's heads beyond the PyMAF-like regressor: the focal (depth) predictor, OrientCorrect and
the auxiliary dense heads.

- :class:`FocalPredictor` (W-HMR eq. 3, official code): from the last decoder map,
  ``conv 7x7 / 2 -> conv 7x7 / 2 -> 5`` channels read as 5 tokens, one transformer block
  (2 heads), the tokens' mean, ``Linear -> Linear -> BatchNorm1d -> sigmoid``, times 10:
  ``T_z = 10 sigmoid(BN(.))`` metres. The focal follows as ``f = s h_box T_z / 2`` with ``s``
  detached (:func:`hmrkit.geometry.cameras.focal_from_depth`). The code's convolutions have no
  padding (a 56 x 56 map gives 10 x 10 tokens); here they pad by 3 so that the small maps of
  CPU crops (24 x 24 at 96 px) still give 6 x 6 tokens.
- :class:`OrientCorrect` (eq. 6): ``R_w = R_c + MLP([phi, 6D(R_cam), R_c])`` where ``phi`` holds
  the body features and the global information, ``R_cam`` the camera rotation to the world and
  ``R_c`` the local (camera-frame) root rotation; the residual is ADDED to the rotation matrix
  (as the paper explains) and the sum projected to the nearest rotation at inference
  (:meth:`OrientCorrect.rotation`; the code's "unbiased Gram-Schmidt").
- :class:`DenseHeads` (eqs. 11-12, PyMAF / W-HMR ``IUV_predict_layer``, ``Depth_predict_layer``):
  one 3x3 convolution each for the fine part index (background + 24 parts), the coarse part
  index (background + 14 parts, :data:`COARSE_PART_OF_JOINT`), U and V per part, and the inverse
  depth.
"""

from __future__ import annotations

import roma
import torch
from torch import Tensor, nn

from hmrkit.geometry.rotations import rotmat_to_sixd

__all__ = ["COARSE_PART_OF_JOINT", "DenseHeads", "FocalPredictor", "OrientCorrect",
           "coarse_part_table"]

MAX_DEPTH = 10.0
"""W-HMR: ``T_z = 10 sigmoid(.)``; "distortion becomes irrelevant when a person stands 10 m
from the camera"."""

COARSE_PART_OF_JOINT: tuple[int, ...] = (
    1, 3, 4, 1, 5, 6, 1, 7, 8, 1, 7, 8, 2, 1, 1, 2, 9, 10, 11, 12, 13, 14, 13, 14,
)
"""Coarse part (1..14, DensePose's 14 "AnnIndex" parts: torso, head, left / right upper leg,
lower leg, foot, upper arm, lower arm, hand) of each SMPL-24 / Anny-24 joint's part; the
synthetic IUV labels' fine part ``i`` is joint ``i - 1`` (0: background)."""


def coarse_part_table() -> Tensor:
    """``(25,)`` fine part index (0 background) -> coarse part (0 background, 1..14)."""
    return torch.tensor((0, *COARSE_PART_OF_JOINT), dtype=torch.long)


class FocalPredictor(nn.Module):
    """``T_z`` of each person from the last decoder map (see the module doc)."""

    def __init__(self, in_channels: int, map_size: int, mid_channels: int = 64,
                 tokens: int = 5, heads: int = 2, hidden: int = 10):
        """
        Args:
            in_channels, map_size: given by the method (decoder channels, side of its last map).
            mid_channels: width of the first convolution (code: 64).
            tokens: channels of the second convolution, read as tokens (code: 5).
            heads: attention heads of the transformer block (code: 2).
            hidden: width between the two linear layers (code: 10).
        """
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 7, stride=2, padding=3, bias=False),
            nn.Conv2d(mid_channels, tokens, 7, stride=2, padding=3, bias=False),
        )
        side = ((map_size + 1) // 2 + 1) // 2  # two 7x7 / 2 convolutions padded by 3
        dim = side * side
        if dim % heads:
            heads = 1
        self.block = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0,
                                                activation="gelu", batch_first=True,
                                                norm_first=True)
        self.out = nn.Sequential(nn.Linear(dim, hidden), nn.Linear(hidden, 1), nn.BatchNorm1d(1))

    def forward(self, feature_map: Tensor) -> Tensor:
        """``(B, C, s, s)`` -> ``T_z (B,)`` in ``(0, 10)`` metres."""
        tokens = self.conv(feature_map).flatten(2)
        pooled = self.block(tokens).mean(dim=1)
        return MAX_DEPTH * torch.sigmoid(self.out(pooled))[:, 0]


class OrientCorrect(nn.Module):
    """W-HMR eq. 6: the world-frame root rotation from body features, the camera rotation and
    the local root rotation (see the module doc; code ``Global_Orient_Regressor``: FC 2048 ->
    FC 2048 -> 9, dropout, output layer Xavier gain 0.01)."""

    def __init__(self, feature_dim: int, hidden: int = 2048, dropout: float = 0.5):
        """
        Args:
            feature_dim: given by the method (body features and global information).
            hidden: width of the two hidden layers (code: 2048).
            dropout: dropout after each hidden layer (code: 0.5).
        """
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(feature_dim + 6 + 9, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        )
        self.residual = nn.Linear(hidden, 9)
        nn.init.xavier_uniform_(self.residual.weight, gain=0.01)
        nn.init.zeros_(self.residual.bias)

    def forward(self, features: Tensor, cam_to_world: Tensor, local_orient: Tensor) -> Tensor:
        """``(B, D)``, ``(B, 3, 3)``, ``(B, 3, 3)`` -> ``R_c + residual (B, 3, 3)`` (not yet a
        rotation: training supervises this sum, as the code)."""
        B = features.shape[0]
        x = torch.cat([features, rotmat_to_sixd(cam_to_world).to(features),
                       local_orient.reshape(B, 9)], dim=1)
        return local_orient + self.residual(self.mlp(x)).view(B, 3, 3)

    @staticmethod
    def rotation(matrix: Tensor) -> Tensor:
        """The nearest rotation to ``(B, 3, 3)`` (SVD, :func:`roma.special_procrustes`)."""
        return roma.special_procrustes(matrix)


class DenseHeads(nn.Module):
    """IUV and inverse-depth maps from the last decoder map (one 3x3 convolution each)."""

    def __init__(self, in_channels: int, parts: int = 25, coarse_parts: int = 15,
                 iuv: bool = True, depth: bool = True):
        """
        Args:
            in_channels: given by the method (decoder channels).
            parts: fine part classes, background included (24 parts + 1).
            coarse_parts: coarse part classes, background included (14 + 1; 0: no coarse head).
            iuv: predict the IUV maps (part index, coarse part, U and V per part).
            depth: predict the inverse-depth map.
        """
        super().__init__()

        def conv(out: int) -> nn.Conv2d:
            return nn.Conv2d(in_channels, out, 3, padding=1)

        self.parts = parts
        self.index = conv(parts) if iuv else None
        self.coarse = conv(coarse_parts) if iuv and coarse_parts else None
        self.u = conv(parts) if iuv else None
        self.v = conv(parts) if iuv else None
        self.depth = conv(1) if depth else None

    def forward(self, feature_map: Tensor) -> dict[str, Tensor]:
        """Maps at the decoder's resolution: ``part_logits (B, P, h, w)``, ``coarse_logits``,
        ``uv (B, 2, P, h, w)``, ``inverse_depth (B, 1, h, w)``."""
        out: dict[str, Tensor] = {}
        if self.index is not None:
            out["part_logits"] = self.index(feature_map)
            out["uv"] = torch.stack([self.u(feature_map), self.v(feature_map)], dim=1)
        if self.coarse is not None:
            out["coarse_logits"] = self.coarse(feature_map)
        if self.depth is not None:
            out["inverse_depth"] = self.depth(feature_map)
        return out
