"""Light training augmentation driven by per-epoch uniform draws.

Random numbers come from ``numpy.random.default_rng([seed, epoch])`` drawn for the whole
dataset at once, so item ``i`` gets the same augmentation whichever DataLoader worker loads
it, and a vectorized pass over the whole split gives the same result as per-item loading.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .preprocess import crop_at, normalize, resize_shorter, to_pil

SCALE_JITTER = 1.25  # natural images: shorter side drawn from [crop, SCALE_JITTER * resize]
AUGMENTS = ("crop-flip", "trivial")  # --augment: crop-flip alone, or crop-flip then one trivial_augment op
TRIVIAL_DRAWS = 3  # uniforms per image that trivial_augment takes: operation, strength, sign


def epoch_uniforms(seed: int, epoch: int, n: int, k: int, stream: int = 0) -> np.ndarray:
    """``(n, k)`` uniforms in [0, 1) for epoch ``epoch``; row ``i`` drives item ``i``. Each ``stream``
    is independent (stream 0: crops and flips; adding a stream leaves the others' draws as they were)."""
    return np.random.default_rng([seed, epoch] + ([stream] if stream else [])).random((n, k))


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


def decode_side(spec: dict[str, Any]) -> int:
    """Shorter side a photo needs before ``scale_crop_flip``: twice the largest it resizes to, so a
    camera JPEG decoded smaller (``load_image(min_side=...)``) still resizes down with antialiasing."""
    return 2 * round(SCALE_JITTER * spec["resize"])


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


def _affine(image: Image.Image, m: float, shear_x: float = 0, shear_y: float = 0, dx: float = 0, dy: float = 0):
    """Shear by ``m * shear`` or translate by ``m * d`` pixels, filling with black."""
    data = (1, m * shear_x, m * dx, m * shear_y, 1, m * dy)
    return image.transform(image.size, Image.Transform.AFFINE, data, Image.Resampling.NEAREST, fillcolor=0)


# one photometric or geometric change per image, ``m`` in [-1, 1] (sign drawn for symmetric ones);
# ranges as TrivialAugment-Wide (Mueller & Hutter 2021) with translation capped at half the side
TRIVIAL_OPS = (
    lambda im, m: im,
    lambda im, m: _affine(im, m, shear_x=0.99),
    lambda im, m: _affine(im, m, shear_y=0.99),
    lambda im, m: _affine(im, m, dx=im.size[0] / 2),
    lambda im, m: _affine(im, m, dy=im.size[1] / 2),
    lambda im, m: im.rotate(135 * m, Image.Resampling.NEAREST, fillcolor=0),
    lambda im, m: ImageEnhance.Brightness(im).enhance(1 + 0.99 * m),
    lambda im, m: ImageEnhance.Color(im).enhance(1 + 0.99 * m),
    lambda im, m: ImageEnhance.Contrast(im).enhance(1 + 0.99 * m),
    lambda im, m: ImageEnhance.Sharpness(im).enhance(1 + 0.99 * m),
    lambda im, m: ImageOps.posterize(im, 8 - int(abs(m) * 6)),
    lambda im, m: ImageOps.solarize(im, 255 - int(abs(m) * 255)),
    lambda im, m: ImageOps.autocontrast(im),
    lambda im, m: ImageOps.equalize(im),
)


def trivial_augment(pixels: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One randomly chosen operation at a random strength (TrivialAugment) on one uint8 image.

    ``pixels``: ``(H, W)`` or ``(H, W, 3)``; ``u``: ``TRIVIAL_DRAWS`` uniforms (operation, strength,
    sign). Returns uint8 pixels of the same shape.
    """
    op = TRIVIAL_OPS[min(int(u[0] * len(TRIVIAL_OPS)), len(TRIVIAL_OPS) - 1)]
    strength = u[1] if u[2] < 0.5 else -u[1]
    return np.asarray(op(Image.fromarray(np.ascontiguousarray(pixels)), strength))
