"""Pattern images: five periodic two-colour patterns, the classes a short pretraining run can learn.

The shape scenes (`scenes.py`) are too hard for a ResNet trained from scratch for a
few hundred steps: even a supervised ResNet-18 stays near chance there. Here a
class is a pattern with a fixed orientation (so a horizontal flip keeps it in its
class) drawn at a random period and phase in two random colours with pixel noise.
The random colours dominate a random-init network's pooled features (its kNN
accuracy at 32 px is 39-45 %, chance 20 %), while the class lies in the structure, which
a network trained with colour augmentation, or taught by a teacher that knows the
classes, learns to see.
"""
from __future__ import annotations

import numpy as np

PATTERNS: tuple[str, ...] = ("hstripes", "vstripes", "checks", "dots", "lattice")


def pattern_mask(label: int, size: int | tuple[int, int], period: float, phase: tuple[float, float]) -> np.ndarray:
    """The (height, width) bool mask of pattern `label` with `period` pixels and a phase in [0, 1) per axis;
    `size` is the side of a square or (width, height)."""
    width, height = (size, size) if isinstance(size, int) else size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / period + phase[0], yy / period + phase[1]
    if label == 0:
        return np.sin(2 * np.pi * v) > 0
    if label == 1:
        return np.sin(2 * np.pi * u) > 0
    if label == 2:
        return (np.sin(2 * np.pi * u) > 0) ^ (np.sin(2 * np.pi * v) > 0)
    if label == 3:
        return (u % 1 - 0.5) ** 2 + (v % 1 - 0.5) ** 2 < 0.08
    if label == 4:  # a diagonal lattice of diamonds, symmetric under a horizontal flip
        return (np.sin(2 * np.pi * (u + v) / 1.4) > 0) & (np.sin(2 * np.pi * (u - v) / 1.4) > 0)
    raise ValueError(f"pattern label {label} is not in 0..{len(PATTERNS) - 1}")


def render_pattern(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 image of pattern `label`: period 10-14 px at 64 px (scaled with `size`)."""
    period = rng.uniform(10, 14) * size / 64
    mask = pattern_mask(label, size, period, tuple(rng.uniform(0, 1, 2)))
    fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    img = np.where(mask[..., None], fg, bg).astype(np.float32) + rng.normal(0, 10, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)
