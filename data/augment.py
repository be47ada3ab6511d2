"""Light training augmentation driven by per-epoch uniform draws.

Random numbers come from ``numpy.random.default_rng([seed, epoch])`` drawn for the whole
dataset at once, so item ``i`` gets the same augmentation whichever DataLoader worker loads
it, and a vectorized pass over the whole split gives the same result as per-item loading.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from .preprocess import crop_at, normalize, resize_shorter, to_pil

SCALE_JITTER = 1.25  # natural images: shorter side drawn from [crop, SCALE_JITTER * resize]


def epoch_uniforms(seed: int, epoch: int, n: int, k: int) -> np.ndarray:
    """``(n, k)`` uniforms in [0, 1) for epoch ``epoch``; row ``i`` drives item ``i``."""
    return np.random.default_rng([seed, epoch]).random((n, k))


def pad_crop_flip(pixels: np.ndarray, pad: int, u: np.ndarray) -> np.ndarray:
    """Vectorized random crop with zero padding plus horizontal flip.

    ``pixels``: uint8 ``(N, H, W)`` or ``(N, H, W, C)``; ``u``: ``(N, 3)`` uniforms (row offset,
    column offset, flip).
    """
    n, h, w = pixels.shape[:3]
    padded = np.pad(pixels, ((0, 0), (pad, pad), (pad, pad)) + ((0, 0),) * (pixels.ndim - 3))
    offsets = (u[:, :2] * (2 * pad + 1)).astype(np.int64)
    rows = offsets[:, 0, None] + np.arange(h)
    cols = offsets[:, 1, None] + np.arange(w)
    cols = np.where(u[:, 2, None] < 0.5, cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def scale_crop_flip(image: Image.Image | np.ndarray, spec: dict[str, Any], u: np.ndarray) -> np.ndarray:
    """Random-resized-crop-lite for natural images, ending in the spec's normalization.

    ``u``: 4 uniforms (scale, left, top, flip). The shorter side is resized to a size drawn from
    [crop, SCALE_JITTER * resize], then a random ``crop`` square is taken and flipped half the time.
    """
    crop = spec["crop"]
    side = crop + int(u[0] * (round(SCALE_JITTER * spec["resize"]) - crop + 1))
    image = resize_shorter(to_pil(image, spec), side, spec["interpolation"])
    w, h = image.size
    image = crop_at(image, int(u[1] * (w - crop + 1)), int(u[2] * (h - crop + 1)), crop)
    if u[3] < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return normalize(np.asarray(image), spec)
