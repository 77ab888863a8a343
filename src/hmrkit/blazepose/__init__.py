"""BlazePose GHUM 3D (Google MediaPipe, Apache-2.0) in torch: hmrkit's real-image front end.

- :mod:`~hmrkit.blazepose.assets`: the pinned model files, the user cache, ``fetch``;
- :mod:`~hmrkit.blazepose.tflite_reader` / :mod:`~hmrkit.blazepose.graph`: ``.tflite`` ->
  trainable, batched ``torch.nn.Module`` (no TensorFlow);
- :mod:`~hmrkit.blazepose.detector`: SSD anchors, decoding, (weighted) NMS;
- :mod:`~hmrkit.blazepose.roi`: letterbox and rotated-square crops as affine maps;
- :mod:`~hmrkit.blazepose.landmarks`: the landmark network's outputs, heatmap refinement;
- :mod:`~hmrkit.blazepose.pipeline`: :class:`BlazePose` (every person -> :class:`Person`).

Set-up: ``python -m hmrkit.blazepose fetch`` (run by ``make venv``).
"""

from __future__ import annotations

from .assets import BlazePoseModelError, blazepose_dir, fetch, load_model, model_path
from .names import BLAZEPOSE33_NAMES
from .pipeline import BlazePose, Detection, Person

__all__ = [
    "BLAZEPOSE33_NAMES",
    "BlazePose",
    "BlazePoseModelError",
    "Detection",
    "Person",
    "blazepose_dir",
    "fetch",
    "load_model",
    "model_path",
]
