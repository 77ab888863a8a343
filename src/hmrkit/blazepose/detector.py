"""BlazePose person detector: SSD anchors, box decoding, non-maximum suppression.

The detector (``pose_detection.tflite``, run in torch through :mod:`hmrkit.blazepose.graph`)
reads a 224x224 letterboxed RGB image in [-1, 1] and scores 2254 anchors; each anchor
regresses a face box and four keypoints: 0 mid-hip centre, 1 a point whose distance to the
hip centre is the full-body radius and whose direction is the body's "up", 2 mid-shoulder
centre, 3 the same for the upper body. MediaPipe's settings (``pose_detection_cpu.pbtxt``):
SSD anchors with 5 layers, strides 8-16-32-32-32, fixed anchor size; coordinates scaled by
224; sigmoid scores clipped at +-100; weighted non-maximum suppression at IoU 0.3.

Everything here is batched torch and works on any device; NMS runs per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "POSE_DETECTION_ANCHORS",
    "AnchorOptions",
    "box_iou",
    "decode_detections",
    "non_max_suppression",
    "ssd_anchors",
    "weighted_non_max_suppression",
]


@dataclass(frozen=True)
class AnchorOptions:
    """MediaPipe's ``SsdAnchorsCalculatorOptions`` (the fields these models use)."""

    input_size: int = 224
    num_layers: int = 5
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    anchor_offset: float = 0.5
    strides: tuple[int, ...] = (8, 16, 32, 32, 32)
    aspect_ratios: tuple[float, ...] = (1.0,)
    reduce_boxes_in_lowest_layer: bool = False
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = True


POSE_DETECTION_ANCHORS = AnchorOptions()
"""The anchor settings of ``pose_detection.tflite`` (2254 anchors)."""


def _scale(options: AnchorOptions, index: int) -> float:
    n = len(options.strides)
    if n == 1:
        return (options.min_scale + options.max_scale) / 2
    return options.min_scale + (options.max_scale - options.min_scale) * index / (n - 1)


def ssd_anchors(options: AnchorOptions = POSE_DETECTION_ANCHORS,
                dtype=torch.float32) -> torch.Tensor:
    """SSD anchors ``(N, 4)`` = ``(x_center, y_center, w, h)`` normalised to [0, 1].

    Layers sharing a stride share a feature map; per cell the anchors are, for each of those
    layers, one per aspect ratio plus (``interpolated_scale_aspect_ratio > 0``) one at the
    geometric mean of this and the next layer's scale. Order: layer group, row, column,
    anchor (the order of the network's outputs).
    """
    out = []
    layer = 0
    strides = options.strides
    while layer < options.num_layers:
        sizes: list[tuple[float, float]] = []  # (w, h) per anchor of a cell
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            scale = _scale(options, last)
            if last == 0 and options.reduce_boxes_in_lowest_layer:
                pairs = [(1.0, 0.1), (2.0, scale), (0.5, scale)]
            else:
                pairs = [(ar, scale) for ar in options.aspect_ratios]
                if options.interpolated_scale_aspect_ratio > 0:
                    nxt = 1.0 if last == len(strides) - 1 else _scale(options, last + 1)
                    pairs.append((options.interpolated_scale_aspect_ratio,
                                  math.sqrt(scale * nxt)))
            for ratio, s in pairs:
                sizes.append((s * math.sqrt(ratio), s / math.sqrt(ratio)))
            last += 1
        cells = math.ceil(options.input_size / strides[layer])
        grid = (torch.arange(cells, dtype=torch.float64) + options.anchor_offset) / cells
        y, x = torch.meshgrid(grid, grid, indexing="ij")
        per_cell = len(sizes)
        xc = x.reshape(-1, 1).expand(-1, per_cell)
        yc = y.reshape(-1, 1).expand(-1, per_cell)
        wh = torch.tensor(sizes, dtype=torch.float64)
        if options.fixed_anchor_size:
            wh = torch.ones_like(wh)
        w = wh[:, 0].expand(cells * cells, -1)
        h = wh[:, 1].expand(cells * cells, -1)
        out.append(torch.stack([xc, yc, w, h], -1).reshape(-1, 4))
        layer = last
    return torch.cat(out).to(dtype)


def decode_detections(raw_boxes: torch.Tensor, raw_scores: torch.Tensor, anchors: torch.Tensor,
                      scale: float = 224.0, score_clip: float = 100.0):
    """Decode the detector outputs (MediaPipe's ``TensorsToDetectionsCalculator``).

    ``raw_boxes (B, N, 4 + 2K)`` ordered x, y, w, h then keypoint x, y (in ``scale`` units,
    relative to the anchor); ``raw_scores (B, N)`` or ``(B, N, 1)`` logits. Returns
    ``boxes (B, N, 4)`` as normalised ``(xmin, ymin, xmax, ymax)``, ``keypoints (B, N, K, 2)``
    normalised, and ``scores (B, N)`` = sigmoid of the logits clipped to ``+-score_clip``.
    """
    if raw_scores.dim() == 3:
        raw_scores = raw_scores[..., 0]
    ax, ay, aw, ah = anchors.to(raw_boxes).unbind(-1)
    xc = raw_boxes[..., 0] / scale * aw + ax
    yc = raw_boxes[..., 1] / scale * ah + ay
    w = raw_boxes[..., 2] / scale * aw
    h = raw_boxes[..., 3] / scale * ah
    boxes = torch.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], -1)
    kp = raw_boxes[..., 4:].reshape(*raw_boxes.shape[:-1], -1, 2)
    kx = kp[..., 0] / scale * aw[..., None] + ax[..., None]
    ky = kp[..., 1] / scale * ah[..., None] + ay[..., None]
    scores = torch.sigmoid(raw_scores.clamp(-score_clip, score_clip))
    return boxes, torch.stack([kx, ky], -1), scores


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix ``(N, M)`` of ``(xmin, ymin, xmax, ymax)`` boxes; 0 when disjoint."""
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-30), torch.zeros_like(inter))


def non_max_suppression(boxes: torch.Tensor, scores: torch.Tensor, threshold: float = 0.3
                        ) -> torch.Tensor:
    """Greedy NMS of one image: indices kept, best first; a box is dropped when its IoU with
    a kept, better box exceeds ``threshold`` (MediaPipe's ``DEFAULT`` algorithm)."""
    order = torch.argsort(scores, descending=True, stable=True)
    iou = box_iou(boxes[order], boxes[order])
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i].cpu() > threshold
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def weighted_non_max_suppression(boxes: torch.Tensor, keypoints: torch.Tensor,
                                 scores: torch.Tensor, threshold: float = 0.3):
    """MediaPipe's ``WEIGHTED`` NMS of one image.

    Repeatedly takes the best remaining detection and the remaining ones whose IoU with it
    exceeds ``threshold`` (itself included), and outputs their score-weighted mean box and
    keypoints with the best one's score. Returns ``(boxes (M, 4), keypoints (M, K, 2),
    scores (M,))``, best first.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    iou = box_iou(boxes, boxes)
    remaining = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    out_b, out_k, out_s = [], [], []
    while bool(remaining.any()):
        best = int(torch.nonzero(remaining)[0])
        group = remaining & (iou[best] > threshold)
        group[best] = True
        w = scores * group
        total = w.sum()
        out_b.append((boxes * w[:, None]).sum(0) / total)
        out_k.append((keypoints * w[:, None, None]).sum(0) / total)
        out_s.append(scores[best])
        remaining &= ~group
    if not out_s:
        return boxes[:0], keypoints[:0], scores[:0]
    return torch.stack(out_b), torch.stack(out_k), torch.stack(out_s)
