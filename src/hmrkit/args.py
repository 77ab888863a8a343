"""Command-line argument types and the ``hmrkit`` argparse parser (light to import).

Usage errors are one line on stderr, ``<prog>: error: <what is wrong>``, with exit status 2
(argparse's own errors print the whole usage first; :class:`OneLineParser` does not).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


class OneLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (no usage dump), exit status 2.
    Sub-command parsers made with ``add_subparsers`` are of the same class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, low: float, strict: bool, expected: str):
    """An argparse type: a finite ``kind`` above ``low`` (``strict``) or at least ``low``; the
    error says ``expected <expected>``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'") from None
        if not (value > low if strict else value >= low) or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    parse.__doc__ = f"An option that must be {expected}."
    return parse


positive_int = _number(int, 0, True, "a positive integer")
non_negative_int = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a positive number")


def output_folder(text: str) -> Path:
    """An output folder: absent (it is created) or an existing folder, never a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} exists and is not a folder")
    for parent in path.parents:  # e.g. --out results.json/eval
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{parent} is a file, not a folder")
            break
    return path
