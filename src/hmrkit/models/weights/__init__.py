"""Model files shipped inside hmrkit, and the default model of ``hmrkit predict`` and the demo.

Light to import (no torch): ``hmrkit predict`` reads :data:`DEFAULT_MODEL` while parsing its
arguments.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent
"""The folder of the shipped model files."""

DEFAULT_MODEL = WEIGHTS_DIR / "cliff-r18-96-synth.pt"
"""The model ``hmrkit predict`` and ``hmrkit demo`` use without ``--checkpoint`` (an export,
float16 weights; how it was trained: docs/baselines.md). Changing the default model is changing
this one line."""
