"""Synthetic test images shared by the image fixture scripts (jpeg/, webp/)."""
from __future__ import annotations

import numpy as np


def synthetic(w: int, h: int, channels: int, seed: int) -> np.ndarray:
    """Gradients, a ring pattern, a sharp-edged box and noise: content with rich detail."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        r = np.hypot(x - w * (0.3 + 0.2 * c), y - h * 0.6)
        v = 128 + 90 * np.sin(r / (2.0 + c)) * np.cos(x / (5.0 + 2 * c))
        v += (x / max(w - 1, 1) - 0.5) * 80 * (1 - c % 2 * 2) + (y / max(h - 1, 1)) * 40
        v[(x > w * 0.55) & (x < w * 0.8) & (y > h * 0.2) & (y < h * 0.5)] = 30 + 80 * c
        v += rng.normal(0, 12, size=v.shape)
        planes.append(v)
    a = np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)
    return a[:, :, 0] if channels == 1 else a
