"""Decoding the BlazePose landmark network (MediaPipe's post-processing, batched in torch).

Network outputs (crop of 256x256): 39 landmarks x (x, y, z, visibility, presence) in crop
pixels (``z`` in the same units, hip-centred) and logits, pose presence (sigmoid in the graph),
segmentation logits (256x256), heatmap logits (64x64x39) and world landmarks (39 x 3, metres,
hip-centred). MediaPipe then (``tensors_to_pose_landmarks_and_segmentation.pbtxt``) takes the
sigmoid of visibility and presence, refines x, y from the heatmaps (kernel 7, minimum
confidence 0.5), projects the landmarks to the image through the ROI and rotates the world
landmarks about z by the ROI rotation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .names import NUM_NETWORK_LANDMARKS

__all__ = ["LandmarkNet", "refine_from_heatmaps", "rotate_world", "split_outputs"]


def split_outputs(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Name the five graph outputs by their shapes.

    Returns ``landmarks (B, 39, 5)`` raw, ``presence (B,)``, ``mask_logits (B, 256, 256)``,
    ``heatmap_logits (B, 39, 64, 64)`` and ``world (B, 39, 3)`` (metres).
    """
    named = {}
    for value in outputs.values():
        shape = tuple(value.shape[1:])
        if shape == (NUM_NETWORK_LANDMARKS * 5,):
            named["landmarks"] = value.reshape(-1, NUM_NETWORK_LANDMARKS, 5)
        elif shape == (1,):
            named["presence"] = value[:, 0]
        elif len(shape) == 3 and shape[0] == 1:
            named["mask_logits"] = value[:, 0]
        elif len(shape) == 3 and shape[0] == NUM_NETWORK_LANDMARKS:
            named["heatmap_logits"] = value
        elif shape == (NUM_NETWORK_LANDMARKS * 3,):
            named["world"] = value.reshape(-1, NUM_NETWORK_LANDMARKS, 3)
    missing = {"landmarks", "presence", "mask_logits", "heatmap_logits", "world"} - set(named)
    if missing:
        raise ValueError(f"not a BlazePose landmark graph: no output for {sorted(missing)}")
    return named


def refine_from_heatmaps(xy: torch.Tensor, heatmap_logits: torch.Tensor, res: int = 256,
                         kernel: int = 7, min_confidence: float = 0.5) -> torch.Tensor:
    """MediaPipe's ``RefineLandmarksFromHeatmapCalculator``, batched.

    ``xy (B, K, 2)`` crop pixels, ``heatmap_logits (B, K, h, w)``. For each landmark, the
    ``kernel x kernel`` window of the heatmap around the cell ``trunc(xy / res * size)`` (cut
    at the borders) gives ``sigmoid`` weights; when the largest reaches ``min_confidence`` the
    landmark moves to the weighted mean cell index, ``res * mean / size`` (MediaPipe's
    convention: cell ``i`` at ``i * res / size``). Landmarks whose cell is outside the heatmap
    are left as they are. Differentiable in the heatmaps.
    """
    b, k, h, w = heatmap_logits.shape
    col = torch.trunc(xy[..., 0] / res * w).long()
    row = torch.trunc(xy[..., 1] / res * h).long()
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    off = (kernel - 1) // 2
    pad = nn.functional.pad(heatmap_logits, (off, off, off, off), value=-math.inf)
    d = torch.arange(-off, off + 1, device=xy.device)
    rows = (row.clamp(0, h - 1)[..., None] + d + off)  # (B, K, kernel) in padded coords
    cols = (col.clamp(0, w - 1)[..., None] + d + off)
    bi = torch.arange(b, device=xy.device)[:, None, None, None]
    ki = torch.arange(k, device=xy.device)[None, :, None, None]
    window = pad[bi, ki, rows[..., :, None], cols[..., None, :]]  # (B, K, kernel, kernel)
    conf = torch.sigmoid(window)
    total = conf.sum((-1, -2))
    grid_r = (rows - off).to(conf.dtype)[..., :, None]
    grid_c = (cols - off).to(conf.dtype)[..., None, :]
    mean_c = (conf * grid_c).sum((-1, -2)) / total.clamp(min=1e-30)
    mean_r = (conf * grid_r).sum((-1, -2)) / total.clamp(min=1e-30)
    refine = inside & (conf.amax((-1, -2)) >= min_confidence) & (total > 0)
    refined = torch.stack([mean_c * res / w, mean_r * res / h], -1)
    return torch.where(refine[..., None], refined, xy)


def rotate_world(world: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """MediaPipe's ``WorldLandmarkProjectionCalculator``: rotate ``(B, K, 3)`` about z by
    MediaPipe's ROI angle ``r`` (= ``-rotation`` of :func:`~hmrkit.blazepose.roi.detection_roi`)."""
    r = -rotation.to(world.dtype)
    c, s = torch.cos(r)[:, None], torch.sin(r)[:, None]
    x, y, z = world.unbind(-1)
    return torch.stack([c * x - s * y, s * x + c * y, z], -1)


class LandmarkNet(nn.Module):
    """The landmark network with named outputs (see :func:`split_outputs`).

    ``graph``: a :class:`~hmrkit.blazepose.graph.TFLiteGraph` of a ``pose_landmark_*`` file.
    Input: RGB crops ``(B, 3, 256, 256)`` in [0, 1].
    """

    def __init__(self, graph: nn.Module):
        super().__init__()
        self.graph = graph

    def forward(self, crops: torch.Tensor, keep=None) -> dict[str, torch.Tensor]:
        outputs = self.graph(crops, keep=keep)
        named = split_outputs({k: outputs[k] for k in self.graph.output_names()})
        if keep is not None:
            named["intermediates"] = {k: v for k, v in outputs.items()
                                      if k not in self.graph.output_names()}
        return named
