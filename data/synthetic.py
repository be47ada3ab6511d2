"""A small labelled RGB image folder made on the spot: shapes on clutter, saved the ways users save.

Six classes (circle, square, triangle, horizontal and vertical stripes, cross) in random colours,
sizes and positions over noisy backgrounds, written as RGB PNG, RGBA PNG, palette PNG and JPEG,
so tests and examples can fine-tune and quantize on a realistic user folder without a download.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "hstripes", "vstripes", "cross")
_SAVE_MODES = ("RGB", "RGBA", "P", "JPEG")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def draw(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of ``kind``."""
    background = rng.integers(0, 256, 3) * 0.5 + rng.normal(0, 20, (size, size, 3))
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(image)
    extent = int(rng.integers(size // 3, size - 4))
    x0, y0 = (int(v) for v in rng.integers(0, size - extent, 2))
    box = (x0, y0, x0 + extent, y0 + extent)
    fill = _colour(rng)
    if kind == "circle":
        pen.ellipse(box, fill=fill)
    elif kind == "square":
        pen.rectangle(box, fill=fill)
    elif kind == "triangle":
        pen.polygon([(x0, y0 + extent), (x0 + extent, y0 + extent), (x0 + extent // 2, y0)], fill=fill)
    elif kind in ("hstripes", "vstripes"):
        step = max(2, extent // 6)
        for offset in range(0, extent, 2 * step):
            stripe = ((x0, y0 + offset, x0 + extent, y0 + offset + step - 1) if kind == "hstripes"
                      else (x0 + offset, y0, x0 + offset + step - 1, y0 + extent))
            pen.rectangle(stripe, fill=fill)
    elif kind == "cross":
        bar = max(2, extent // 5)
        middle = extent // 2 - bar // 2
        pen.rectangle((x0, y0 + middle, x0 + extent, y0 + middle + bar), fill=fill)
        pen.rectangle((x0 + middle, y0, x0 + middle + bar, y0 + extent), fill=fill)
    else:
        raise ValueError(f"unknown shape {kind!r}; one of {', '.join(CLASSES)}")
    return image


def _save(image: Image.Image, stem: Path, mode: str) -> None:
    if mode == "JPEG":
        image.save(stem.with_suffix(".jpg"), quality=90)
    elif mode == "P":
        image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(stem.with_suffix(".png"))
    elif mode == "RGBA":
        rgba = image.convert("RGBA")
        rgba.putalpha(255)
        rgba.save(stem.with_suffix(".png"))
    else:
        image.save(stem.with_suffix(".png"))


def make_shapes_folder(root: Path, per_class: int, size: int = 72, seed: int = 0) -> Path:
    """Write ``root/<class>/*.png|jpg``, ``per_class`` images per class (no split folders); returns root."""
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        folder = Path(root) / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _save(draw(kind, size, rng), folder / f"{kind}_{i:04d}", _SAVE_MODES[i % len(_SAVE_MODES)])
    return Path(root)


def scene_free_images(n: int, size: int = 96, seed: int = 0) -> list[Image.Image]:
    """``n`` RGB images that show no object: uniform noise, smooth colour fields (coarse noise
    enlarged bicubically) and flat colours with a linear gradient, in turn. For measuring how
    often a classifier declines to name what is not there."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-1.0, 1.0, size)
    images = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        elif kind == 1:
            coarse = rng.integers(0, 256, (int(rng.integers(2, 9)),) * 2 + (3,), dtype=np.uint8)
            pixels = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
        else:
            base, slope = rng.uniform(0, 255, 3), rng.uniform(-60, 60, 3)
            plane = np.broadcast_to(ramp[:, None] if rng.random() < 0.5 else ramp[None, :], (size, size))
            pixels = np.clip(base + slope * plane[..., None], 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels))
    return images
