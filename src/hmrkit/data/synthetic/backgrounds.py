"""Backgrounds: procedural images (gradients, noise, shapes, textures) and user photos."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
KINDS = ("gradient", "noise", "shapes", "stripes", "checker")


def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _blend(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a (1 - t) + b t`` per pixel for a weight ``t`` in [0, 1] of shape (H, W), as uint8 RGB
    (``t`` quantised to 256 levels and applied through a lookup table: fast)."""
    levels = np.linspace(0, 1, 256)[:, None]
    table = (a + levels * (b - a)).astype(np.uint8)[None]  # (1, 256, 3) lookup table
    t8 = np.clip(t * 255 + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(cv2.merge([t8, t8, t8]), table)


def gradient(rng, W: int, H: int) -> np.ndarray:
    """Linear gradient between two random colours along a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    t = (x - W / 2) * np.cos(angle) + (y - H / 2) * np.sin(angle)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return _blend(t, _random_color(rng), _random_color(rng))


def value_noise(rng, W: int, H: int) -> np.ndarray:
    """Multi-octave value noise, tinted with two random colours."""
    acc = np.zeros((H, W), np.float32)
    amp, total = 1.0, 0.0
    for cells in (4, 8, 16, 32):
        grid = rng.random((cells, cells)).astype(np.float32)
        acc += amp * cv2.resize(grid, (W, H), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    t = np.clip(acc / total, 0, 1)
    return _blend(t, _random_color(rng), _random_color(rng))


def shapes(rng, W: int, H: int) -> np.ndarray:
    """Random rectangles, circles and lines over a flat or gradient base."""
    img = np.ascontiguousarray(gradient(rng, W, H) if rng.random() < 0.5 else
                               np.full((H, W, 3), _random_color(rng), np.uint8))
    for _ in range(rng.integers(5, 25)):
        color = tuple(float(c) for c in _random_color(rng))
        x0, y0 = int(rng.integers(0, W)), int(rng.integers(0, H))
        size = int(rng.integers(8, max(9, min(W, H) // 3)))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (x0, y0), (x0 + size, y0 + int(size * rng.uniform(0.3, 2))),
                          color, -1)
        elif kind == 1:
            cv2.circle(img, (x0, y0), size // 2, color, -1, cv2.LINE_AA)
        else:
            x1, y1 = int(rng.integers(0, W)), int(rng.integers(0, H))
            cv2.line(img, (x0, y0), (x1, y1), color, int(rng.integers(1, 8)), cv2.LINE_AA)
    return img


def stripes(rng, W: int, H: int) -> np.ndarray:
    """Periodic stripes at a random angle and period (a regular texture, e.g. a wall)."""
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 60)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    return _blend(t, _random_color(rng), _random_color(rng))


def checker(rng, W: int, H: int) -> np.ndarray:
    """A floor-like checkerboard in perspective-free form, softened by noise."""
    cell = int(rng.integers(10, 80))
    y, x = np.mgrid[0:H, 0:W]
    t = (((x // cell) + (y // cell)) % 2).astype(np.float32)
    base = _blend(t, _random_color(rng), _random_color(rng))
    return cv2.addWeighted(base, 0.85, value_noise(rng, W, H), 0.15, 0)


_MAKERS = {"gradient": gradient, "noise": value_noise, "shapes": shapes, "stripes": stripes,
           "checker": checker}


class BackgroundSource:
    """Backgrounds for scenes: procedural by default, or photos from ``folder`` (mixed with
    procedural ones at ``photo_prob``).  Unreadable images are skipped and counted."""

    def __init__(self, folder: str | Path | None = None, photo_prob: float = 0.7):
        self.photos: list[Path] = []
        self.photo_prob = photo_prob
        self.skipped: list[str] = []
        if folder is not None:
            folder = Path(folder)
            if not folder.is_dir():
                raise FileNotFoundError(f"background folder {folder} does not exist")
            self.photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.photos:
                raise ValueError(f"background folder {folder} holds no {IMAGE_SUFFIXES} images")

    def sample(self, rng: np.random.Generator, W: int, H: int) -> tuple[np.ndarray, str]:
        """An (H, W, 3) uint8 RGB background and a description of it."""
        if self.photos and rng.random() < self.photo_prob:
            for _ in range(5):
                path = self.photos[int(rng.integers(len(self.photos)))]
                img = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if img is None or img.size == 0:
                    if str(path) not in self.skipped:
                        self.skipped.append(str(path))
                        log.warning("background %s is unreadable: skipped", path)
                    continue
                return _random_crop(rng, cv2.cvtColor(img, cv2.COLOR_BGR2RGB), W, H), str(path)
        kind = KINDS[int(rng.integers(len(KINDS)))]
        return _MAKERS[kind](rng, W, H), kind


def _random_crop(rng, img: np.ndarray, W: int, H: int) -> np.ndarray:
    """A random crop of ``img`` resized to (W, H), covering at least half of its short side."""
    h, w = img.shape[:2]
    scale = rng.uniform(0.5, 1.0) * min(w / W, h / H)
    cw, ch = max(1, int(W * scale)), max(1, int(H * scale))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (W, H), interpolation=cv2.INTER_AREA)
