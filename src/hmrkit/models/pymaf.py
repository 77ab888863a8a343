"""PyMAF-like regressor (Zhang et al. 2021; the base of W-HMR): mesh-aligned features over a
pyramid of decoder maps, iterative parameter regression, and W-HMR's hybrid vertex regressor.

- :class:`DeconvDecoder`: "Simple Baselines" deconvolutions (4x4, stride 2, BN, ReLU) on the
  backbone's last map, one map per level (PyMAF: 3 levels of 256 channels).
- Level 0 samples the first map on a ``grid x grid`` lattice; level ``l > 0`` samples map ``l``
  at the weak-perspective projection (:func:`~hmrkit.geometry.cameras.project_weak_perspective`)
  of a sparse point set of level ``l - 1``'s mesh (detached, as PyMAF); each point's feature is
  reduced by a per-point MLP (:class:`PointMLP`, PIFu / PyMAF: ``C -> 128 -> 64 -> 32`` with the
  input concatenated to every hidden layer) and the points' features are concatenated.
- Each parameter level is one step of the SPIN regressor
  (:class:`~hmrkit.models.heads.IterativeRegressor`, its own weights per level) from the
  previous level's estimate (detached).
- :class:`VertexRegressor` (W-HMR's hybrid module, "2 param + 1 vert"): the last level regresses
  the sparse vertex set directly from the points' (unreduced) features and coordinates with a
  small transformer; the intermediate and full meshes are upsampled from it
  (:class:`VertexSets`), supervised by the triple vertex loss (eq. 9).

Point sets (:class:`VertexSets`): the paper's 431 / 1723 / 6890 SMPL vertices come from
GraphCMR's mesh downsampling, which is not available here; hmrkit builds nested sets of any
body model (Anny-24, SMPL with the user's file) by farthest-point sampling of the template
(sparse ``V / 16``, intermediate ``V / 4`` by default: 431 / 1723 for SMPL's 6890, 77 / 307
for Anny-24's 1229), upsampled by inverse-distance weights of the 3 nearest coarser vertices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmrkit.body.model import BodyModel
from hmrkit.geometry.cameras import project_weak_perspective

from .heads import IterativeRegressor, RegressorOutput

__all__ = [
    "DeconvDecoder",
    "LevelOutput",
    "PointMLP",
    "PyMAFHead",
    "VertexRegressor",
    "VertexSets",
    "farthest_points",
    "grid_points",
    "sample_points",
    "upsampling_weights",
]


# --------------------------------------------------------------------------- point sets


def farthest_points(points: np.ndarray, count: int, start: int = 0) -> np.ndarray:
    """Indices of ``count`` points of ``points (N, 3)`` by farthest-point sampling from
    ``start`` (deterministic; each new point is the farthest from those already chosen)."""
    points = np.asarray(points, dtype=np.float64)
    if not 1 <= count <= len(points):
        raise ValueError(f"farthest_points: count {count} not in [1, {len(points)}]")
    chosen = np.empty(count, dtype=np.int64)
    chosen[0] = start
    dist = np.linalg.norm(points - points[start], axis=1)
    for i in range(1, count):
        chosen[i] = int(np.argmax(dist))
        dist = np.minimum(dist, np.linalg.norm(points - points[chosen[i]], axis=1))
    return chosen


def upsampling_weights(coarse: np.ndarray, fine: np.ndarray, k: int = 3
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Each fine point as a convex combination of its ``k`` nearest coarse points (inverse
    distance weights; a point that IS a coarse point takes it alone): ``(N, k)`` indices into
    ``coarse`` and ``(N, k)`` weights summing to one."""
    d = np.linalg.norm(fine[:, None] - coarse[None], axis=-1)
    idx = np.argsort(d, axis=1)[:, :k]
    near = np.take_along_axis(d, idx, axis=1)
    w = 1.0 / np.maximum(near, 1e-9)
    exact = near[:, 0] < 1e-9
    w[exact] = 0.0
    w[exact, 0] = 1.0
    return idx, w / w.sum(axis=1, keepdims=True)


class VertexSets(nn.Module):
    """Nested sparse / intermediate / full vertex sets of a body model's mesh, and the
    upsampling of predictions from sparse to intermediate to full (see the module doc).

    Buffers are not saved with checkpoints: they are a function of the body model."""

    def __init__(self, body: BodyModel, sparse: int | None = None,
                 intermediate: int | None = None):
        """
        Args:
            body: the method's body model (its template mesh).
            sparse: size of the sparse set (None: ``V // 16``; 431 for SMPL).
            intermediate: size of the intermediate set (None: ``V // 4``; 1723 for SMPL).
        """
        super().__init__()
        template = np.asarray(body.data.v_template, dtype=np.float64)
        V = len(template)
        n_mid = V // 4 if intermediate is None else int(intermediate)
        n_sparse = V // 16 if sparse is None else int(sparse)
        if not 1 <= n_sparse <= n_mid <= V:
            raise ValueError(f"VertexSets: need 1 <= sparse ({n_sparse}) <= intermediate "
                             f"({n_mid}) <= vertices ({V})")
        mid = farthest_points(template, n_mid)
        sparse_in_mid = farthest_points(template[mid], n_sparse)
        up_mid = upsampling_weights(template[mid[sparse_in_mid]], template[mid])
        up_full = upsampling_weights(template[mid], template)
        buffers = {
            "intermediate_index": torch.from_numpy(mid),
            "sparse_index": torch.from_numpy(mid[sparse_in_mid]),
            "up_mid_index": torch.from_numpy(up_mid[0]),
            "up_mid_weight": torch.from_numpy(up_mid[1]).float(),
            "up_full_index": torch.from_numpy(up_full[0]),
            "up_full_weight": torch.from_numpy(up_full[1]).float(),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    @property
    def num_sparse(self) -> int:
        return len(self.sparse_index)

    @staticmethod
    def _upsample(coarse: Tensor, index: Tensor, weight: Tensor) -> Tensor:
        return (coarse[:, index] * weight.to(coarse)[None, ..., None]).sum(dim=2)

    def upsample(self, sparse: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, S, 3)`` sparse vertices -> ``(B, I, 3)`` intermediate and ``(B, V, 3)`` full."""
        mid = self._upsample(sparse, self.up_mid_index, self.up_mid_weight)
        return mid, self._upsample(mid, self.up_full_index, self.up_full_weight)

    def subsets(self, vertices: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, V, 3)`` full meshes -> their sparse ``(B, S, 3)`` and intermediate vertices."""
        return vertices[:, self.sparse_index], vertices[:, self.intermediate_index]


# --------------------------------------------------------------------------- features


class DeconvDecoder(nn.Module):
    """Deconvolution levels on the backbone's last map (Simple Baselines; PyMAF / W-HMR:
    3 x ``ConvTranspose2d(4, stride 2) -> BN -> ReLU``, 256 channels): every level's map."""

    def __init__(self, in_channels: int, channels: int = 256, levels: int = 3):
        super().__init__()
        layers = []
        for i in range(levels):
            layers.append(nn.Sequential(
                nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, stride=2,
                                   padding=1, bias=False),
                nn.BatchNorm2d(channels), nn.ReLU(inplace=True)))
        self.levels = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = []
        for layer in self.levels:
            x = layer(x)
            maps.append(x)
        return maps


def grid_points(n: int) -> Tensor:
    """``(n * n, 2)`` cell centres of an ``n x n`` lattice in normalised crop coordinates
    (PyMAF's level-0 grid; the crop spans ``[-1, 1]``)."""
    c = (torch.arange(n, dtype=torch.float32) + 0.5) / n * 2 - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


def sample_points(feature_map: Tensor, points: Tensor) -> Tensor:
    """Bilinear features ``(B, C, N)`` of ``feature_map (B, C, h, w)`` at ``points (B, N, 2)``
    in normalised crop coordinates (hmrkit's pixel convention: ``-1`` is the crop's edge, so
    ``align_corners=False``; zero outside)."""
    grid = points[:, :, None, :].to(feature_map.dtype)
    return F.grid_sample(feature_map, grid, mode="bilinear", align_corners=False)[..., 0]


class PointMLP(nn.Module):
    """Per-point dimension reduction of mesh-aligned features (PIFu / PyMAF ``MAF_Extractor``):
    1x1 convolutions ``C -> d_1 -> ... -> d_n``, the input features concatenated to every
    hidden layer, leaky ReLU between, ReLU at the end; the points' outputs are concatenated."""

    def __init__(self, in_channels: int, dims: tuple[int, ...] = (128, 64, 32)):
        super().__init__()
        self.layers = nn.ModuleList()
        width = in_channels
        for i, d in enumerate(dims):
            self.layers.append(nn.Conv1d(width + (in_channels if i else 0), d, 1))
            width = d
        self.out_dim = dims[-1]

    def forward(self, features: Tensor) -> Tensor:
        """``(B, C, N)`` -> ``(B, N * d_n)``."""
        y = features
        for i, layer in enumerate(self.layers):
            y = layer(y if i == 0 else torch.cat([y, features], dim=1))
            y = F.leaky_relu(y) if i < len(self.layers) - 1 else F.relu(y)
        return y.flatten(1)


class VertexRegressor(nn.Module):
    """W-HMR's vertex regressor (the hybrid module's last level, "direct" variant): one token
    per sparse vertex from its mesh-aligned feature, its current position and a learned vertex
    embedding; a transformer encoder; the vertex positions out directly (W-HMR uses a
    Graphormer: 4 layers, width 32, 4 heads)."""

    def __init__(self, point_channels: int, num_points: int, hidden: int = 32, layers: int = 4,
                 heads: int = 4, dropout: float = 0.1):
        """
        Args:
            point_channels, num_points: given by the head (decoder channels, sparse vertices).
            hidden, layers, heads, dropout: the transformer's width, depth, heads, dropout.
        """
        super().__init__()
        self.embed = nn.Linear(point_channels + 3, hidden)
        self.vertex_embedding = nn.Parameter(torch.zeros(num_points, hidden))
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(hidden, 3)

    def forward(self, features: Tensor, positions: Tensor) -> Tensor:
        """``features (B, C, N)`` and current ``positions (B, N, 3)`` -> ``(B, N, 3)``."""
        tokens = self.embed(torch.cat([features.transpose(1, 2), positions], dim=-1))
        return self.out(self.encoder(tokens + self.vertex_embedding))


# --------------------------------------------------------------------------- the head


@dataclass
class LevelOutput:
    """One level's estimate: parameters (parameter levels) and its posed mesh."""

    vertices: Tensor
    """(B, V, 3) posed vertices without translation."""
    joints: Tensor
    """(B, J, 3) posed joints without translation."""
    cam: Tensor
    """(B, 3) crop camera (a vertex level keeps the previous level's)."""
    rotmat: Tensor | None = None
    """(B, J, 3, 3) camera-frame rotations of a parameter level (None for the vertex level)."""
    params: RegressorOutput | None = None
    """The regressor's own output (its root is the world root in the SPEC-like variant)."""
    features: Tensor | None = None
    """(B, D) the regressor's input features (point features and box information)."""
    sparse: Tensor | None = None
    """(B, S, 3) sparse vertices as regressed (vertex level only)."""
    intermediate: Tensor | None = None
    """(B, I, 3) intermediate vertices upsampled from ``sparse`` (vertex level only)."""


class PyMAFHead(nn.Module):
    """PyMAF-like iterative regressor with mesh-aligned feedback (see the module doc)."""

    def __init__(
        self,
        in_channels: int,
        info_dim: int,
        body: BodyModel,
        channels: int = 256,
        levels: int = 3,
        grid: int = 8,
        point_dims: tuple[int, ...] = (128, 64, 32),
        hidden: int = 1024,
        dropout: float = 0.5,
        sparse_vertices: int | None = None,
        intermediate_vertices: int | None = None,
        vertex_regressor: Callable[[int, int], VertexRegressor] | None = None,
    ):
        """
        Args:
            in_channels, info_dim, body: given by the method (backbone map channels, box
                information width, body model).
            channels: decoder channels (PyMAF / W-HMR: 256).
            levels: decoder levels = regression levels (PyMAF: 3).
            grid: level-0 lattice side (W-HMR code, ResNet: 8).
            point_dims: per-point MLP widths (W-HMR code: 128, 64, 32 after the 256 input).
            hidden: width of each level's regressor (SPIN: 1024).
            dropout: dropout of the regressors.
            sparse_vertices, intermediate_vertices: :class:`VertexSets` sizes (None: ``V / 16``,
                ``V / 4``); the sparse set is also the point set the levels sample at.
            vertex_regressor: the hybrid variant's last level (:class:`VertexRegressor`, with
                its settings); None: every level regresses parameters (PyMAF).
        """
        super().__init__()
        if levels < 2 and vertex_regressor is not None:
            raise ValueError("PyMAFHead: the vertex regressor needs at least 2 levels")
        self.decoder = DeconvDecoder(in_channels, channels, levels)
        self.vertex_sets = VertexSets(body, sparse_vertices, intermediate_vertices)
        self.register_buffer("grid", grid_points(grid), persistent=False)
        n_points = self.vertex_sets.num_sparse
        self.point_mlps = nn.ModuleList(PointMLP(channels, tuple(point_dims))
                                        for _ in range(levels))
        self.hybrid = vertex_regressor is not None
        n_param = levels - 1 if self.hybrid else levels
        dims = [grid * grid * point_dims[-1]] + [n_points * point_dims[-1]] * (levels - 1)
        self.regressors = nn.ModuleList(
            IterativeRegressor(dims[i], info_dim, body.num_joints, body.num_betas, hidden=hidden,
                               iterations=1, dropout=dropout)
            for i in range(n_param))
        if self.hybrid:
            self.point_mlps = self.point_mlps[:n_param]
            self.vertex_regressor = vertex_regressor(point_channels=channels,
                                                     num_points=n_points)
            w = torch.as_tensor(np.asarray(body.data.lbs_weights), dtype=torch.float32).T
            self.register_buffer("joint_weights", w / w.sum(1, keepdim=True).clamp_min(1e-12),
                                 persistent=False)
        self.num_levels = levels

    def _points(self, level: int, prev: LevelOutput | None, batch: int) -> Tensor:
        if prev is None:
            return self.grid[None].expand(batch, -1, -1)
        sparse = prev.vertices.detach()[:, self.vertex_sets.sparse_index]
        return project_weak_perspective(sparse, prev.cam.detach())

    def forward(self, feature_map: Tensor, info: Tensor | None, body: BodyModel,
                root_to_camera: Tensor | None = None) -> tuple[list[LevelOutput], list[Tensor]]:
        """The backbone's map ``(B, C, h, w)`` -> every level's output and the decoder maps.

        ``root_to_camera (B, 3, 3)``: the regressed root is a world-frame orientation, turned
        into the camera frame by this rotation before posing (SPEC-like variant)."""
        maps = self.decoder(feature_map)
        B = feature_map.shape[0]
        outs: list[LevelOutput] = []
        prev: LevelOutput | None = None
        for level, fmap in enumerate(maps):
            points = self._points(level, prev, B)
            raw = sample_points(fmap, points)
            if self.hybrid and level == self.num_levels - 1:
                outs.append(self._vertex_level(raw, prev))
                break
            features = self.point_mlps[level](raw)
            x = features if info is None else torch.cat([features, info], dim=1)
            init = None if prev is None else _detached(prev.params)
            params = self.regressors[level](features, info, init=init)[-1]
            rotmat = params.rotmat
            if root_to_camera is not None:
                root = (root_to_camera.to(rotmat) @ rotmat[:, 0])[:, None]
                rotmat = torch.cat([root, rotmat[:, 1:]], dim=1)
            posed = body(rotmat[:, 0], rotmat[:, 1:], params.betas)
            prev = LevelOutput(posed.vertices, posed.joints, params.cam, rotmat, params, x)
            outs.append(prev)
        return outs, maps

    def _vertex_level(self, raw: Tensor, prev: LevelOutput) -> LevelOutput:
        """Sparse vertices regressed directly, upsampled; joints moved with the vertices they
        skin: ``J = J_prev + A (V - V_prev)`` (``A``: skinning weights normalised per joint)."""
        start = prev.vertices.detach()[:, self.vertex_sets.sparse_index]
        sparse = self.vertex_regressor(raw, start)
        mid, full = self.vertex_sets.upsample(sparse)
        moved = full - prev.vertices.detach()
        joints = prev.joints.detach() + self.joint_weights.to(full) @ moved
        return LevelOutput(full, joints, prev.cam, sparse=sparse, intermediate=mid)


def _detached(p: RegressorOutput) -> RegressorOutput:
    return RegressorOutput(p.rotmat.detach(), p.betas.detach(), p.cam.detach(), p.sixd.detach())
