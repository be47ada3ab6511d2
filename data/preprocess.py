"""Preprocessing spec (a plain dict stored in checkpoints) and its one implementation.

A spec is ``{"mean", "std", "channel_order", "resize", "crop", "interpolation", "grayscale"}``:
convert to RGB (grey replicated; colour converted to grey first when ``grayscale``), resize the
shorter side to ``resize`` with PIL, center-crop ``crop`` x ``crop``, scale to [0, 1], normalize.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from PIL import Image

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
SPEC_KEYS = ("mean", "std", "channel_order", "resize", "crop", "interpolation", "grayscale")


def imagenet_preprocess(input_size: int = 224) -> dict[str, Any]:
    """ImageNet evaluation spec: resize to input_size/0.875 (256 for 224), bicubic, center crop."""
    return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channel_order": "RGB",
            "resize": int(input_size / 0.875), "crop": input_size, "interpolation": "bicubic",
            "grayscale": False}


def fashion_mnist_preprocess(input_size: int = 28) -> dict[str, Any]:
    """Fashion-MNIST spec: bilinear resize to input_size, grey replicated to 3 channels."""
    return {"mean": [FASHION_MNIST_MEAN] * 3, "std": [FASHION_MNIST_STD] * 3,
            "channel_order": "RGB", "resize": input_size, "crop": input_size,
            "interpolation": "bilinear", "grayscale": True}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_preprocess(spec: Any) -> dict[str, Any]:
    """Return ``spec`` unchanged if valid, else raise ValueError naming the bad key."""
    if not isinstance(spec, dict):
        raise ValueError(f"preprocess spec must be a dict, got {type(spec).__name__}")
    missing = [k for k in SPEC_KEYS if k not in spec]
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if missing or unknown:
        raise ValueError(f"preprocess spec: missing keys {missing}, unknown keys {unknown}; "
                         f"expected exactly {list(SPEC_KEYS)}")
    for key in ("mean", "std"):
        values = spec[key]
        if not (isinstance(values, list) and len(values) == 3 and all(map(_is_number, values))):
            raise ValueError(f"preprocess spec: {key!r} must be a list of 3 numbers, got {values!r}")
    if not all(s > 0 for s in spec["std"]):
        raise ValueError(f"preprocess spec: 'std' must be positive, got {spec['std']!r}")
    if spec["channel_order"] != "RGB":
        raise ValueError(f"preprocess spec: 'channel_order' must be 'RGB', got {spec['channel_order']!r}")
    if not (_is_size(spec["resize"]) and _is_size(spec["crop"]) and spec["resize"] >= spec["crop"]):
        raise ValueError("preprocess spec: 'resize' and 'crop' must be positive ints with "
                         f"resize >= crop, got resize={spec['resize']!r} crop={spec['crop']!r}")
    if spec["interpolation"] not in INTERPOLATIONS:
        raise ValueError(f"preprocess spec: 'interpolation' must be one of {sorted(INTERPOLATIONS)}, "
                         f"got {spec['interpolation']!r}")
    if not isinstance(spec["grayscale"], bool):
        raise ValueError(f"preprocess spec: 'grayscale' must be a bool, got {spec['grayscale']!r}")
    return spec


def to_pil(image: Image.Image | np.ndarray, spec: dict[str, Any],
           color_order: str = "RGB") -> Image.Image:
    """PIL image in mode "L" when ``spec["grayscale"]``, else "RGB" (grey replicated)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError("image array must be uint8 HxW (grey) or HxWx3, "
                             f"got {image.dtype} {image.shape}")
        if color_order not in ("RGB", "BGR"):
            raise ValueError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")
        if image.ndim == 3 and color_order == "BGR":
            image = image[..., ::-1]
        image = Image.fromarray(np.ascontiguousarray(image))
    elif not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image or numpy array, got {type(image).__name__}")
    if spec["grayscale"]:
        return image if image.mode == "L" else image.convert("RGB").convert("L")
    return image if image.mode == "RGB" else image.convert("RGB")


def resize_shorter(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Resize so the shorter side equals ``size``; the longer side is truncated like torchvision's."""
    w, h = image.size
    longer = int(size * max(w, h) / min(w, h))
    return image.resize((size, longer) if w <= h else (longer, size), INTERPOLATIONS[interpolation])


def crop_at(image: Image.Image, left: int, top: int, size: int) -> Image.Image:
    """Square crop of side ``size`` with its top-left corner at (left, top)."""
    return image.crop((left, top, left + size, top + size))


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Center square crop of side ``size``."""
    w, h = image.size
    return crop_at(image, round((w - size) / 2), round((h - size) / 2), size)


def normalize(pixels: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """uint8 pixels -> normalized float32 ``(..., 3, H, W)``.

    ``pixels`` is ``(..., H, W)`` grey when ``spec["grayscale"]`` (replicated to 3 channels), else
    ``(..., H, W, 3)`` RGB. Uses a per-channel 256-entry table of ``(v / 255 - mean) / std`` in float32.
    """
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    mean, std = (np.asarray(spec[key], np.float32)[:, None] for key in ("mean", "std"))
    table = (levels - mean) / std
    planes = [pixels] * 3 if spec["grayscale"] else [pixels[..., c] for c in range(3)]
    out = np.empty((*planes[0].shape[:-2], 3, *planes[0].shape[-2:]), np.float32)
    for c, plane in enumerate(planes):
        out[..., c, :, :] = table[c][plane]
    return out


def crop_pixels(image: Image.Image | np.ndarray, spec: dict[str, Any], color_order: str = "RGB") -> np.ndarray:
    """uint8 pixels of the resized, centre-cropped image: ``(crop, crop)`` grey or ``(crop, crop, 3)``."""
    image = to_pil(image, spec, color_order)
    return np.asarray(center_crop(resize_shorter(image, spec["resize"], spec["interpolation"]),
                                  spec["crop"]))


def preprocess_batch(images: Iterable[Image.Image | np.ndarray], spec: dict[str, Any],
                     color_order: str = "RGB") -> np.ndarray:
    """Preprocess several images into one float32 array ``(N, 3, crop, crop)``."""
    validate_preprocess(spec)
    pixels = [crop_pixels(image, spec, color_order) for image in images]
    if not pixels:
        return np.zeros((0, 3, spec["crop"], spec["crop"]), np.float32)
    return normalize(np.stack(pixels), spec)


def preprocess_image(image: Image.Image | np.ndarray, spec: dict[str, Any],
                     color_order: str = "RGB") -> np.ndarray:
    """Preprocess one PIL image or uint8 HxW / HxWx3 array (``color_order`` "RGB" or "BGR")
    into a float32 array ``(3, crop, crop)``."""
    return preprocess_batch([image], spec, color_order)[0]
