"""Files shipped with hmrkit's models: the default model and the mean pose.

:data:`DEFAULT_MODEL` is the model ``hmrkit predict`` and ``hmrkit demo`` use when no checkpoint
is given (an export, :func:`hmrkit.models.checkpoints.export_method`); ``docs/baselines.md``
gives the config and commands that trained it and its figures.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CLIFF_R18_MODEL", "DEFAULT_MODEL", "HMR_BP_MODEL", "WEIGHTS_DIR"]

WEIGHTS_DIR = Path(__file__).parent
"""The folder of the shipped files."""
DEFAULT_MODEL = WEIGHTS_DIR / "cliff-bp-full-synth.pt"
"""The default model (``hmrkit predict``, ``hmrkit demo``): CLIFF with a lifting head on the
frozen BlazePose GHUM full backbone (its weights come from set-up, not from this file);
``configs/cliff-bp-full-cpu.yaml``."""
HMR_BP_MODEL = WEIGHTS_DIR / "hmr-bp-full-synth.pt"
"""HMR with the same head, backbone and budget (``configs/hmr-bp-full-cpu.yaml``): the same
PA-MPJPE on synth-v1, worse MPJPE, PVE and placement (docs/baselines.md); the default
before it."""
CLIFF_R18_MODEL = WEIGHTS_DIR / "cliff-r18-96-synth.pt"
"""The previous default: CLIFF on a ResNet-18 at 96 px, trained on CPU (docs/baselines.md)."""
