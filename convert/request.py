"""What a conversion is asked to do (:class:`ConvertRequest`), and the one artifact naming rule."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.defaults import ARTIFACTS_DIR


@dataclass
class ConvertRequest:
    """One artifact to build. ``None`` means the default: the shipped model, the format's first
    precision, the checkpoint's input size and dataset, ``<output_dir>/<artifact_name>``."""

    model: str | None = None  # variant; default: the checkpoint's
    checkpoint: Path | None = None  # ours or an official one; default: the shipped model unless ``model``
    imgsz: int | None = None
    batch: int = 1
    precision: str | None = None
    compress: str | None = None  # weight-only compression (formats that offer it)
    calib: str | None = None  # int8 calibration: 'cifar10', 'fashion-mnist', an image folder or a .npy array
    calib_size: int | None = None  # None: quantize.calibration.calibration_count
    calib_method: str | None = None  # activation ranges; None: the format's first (chosen by measurement)
    float_modules: tuple[str, ...] = ()  # int8: modules kept float
    search: bool = True  # int8: when all-int8 misses the accuracy contract, keep the fewest units float
    search_budget: int = 6  # int8: most artifacts the search may build and judge
    random_weights: bool = False  # untrained weights: reduced precisions judged by numerics (also from metadata)
    verify_data: str | None = None  # real images that judge the artifact (default: the checkpoint's dataset)
    verify_images: int = 1000  # real images, as many as the data has up to this
    verify_random: int = 8  # noise images, for the numerical checks of fp32/fp16 only
    output: Path | None = None
    output_dir: Path = ARTIFACTS_DIR
    force: bool = False
    options: Any = None  # the format's own options dataclass; None: its defaults


def artifact_name(stem: str, size: int, precision: str, tag: str = "", batch: int = 1) -> str:
    """``<stem>_<size>_<precision>[_<tag>][_b<batch>]`` (the suffix is the format's)."""
    return f"{stem}_{size}_{precision}" + (f"_{tag}" if tag else "") + (f"_b{batch}" if batch != 1 else "")


def checkpoint_stem(checkpoint: Path | None, variant: str) -> str:
    """The name an artifact's file starts with: the checkpoint's stem, or ``<variant>_random``."""
    return checkpoint.stem if checkpoint else f"{variant}_random"
