"""What a conversion is asked to do (:class:`ConvertRequest`), and the one artifact naming rule."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.defaults import ARTIFACTS_DIR
from common.errors import UserError


class RequestError(UserError, ValueError):
    """A request field with a wrong value; ``argument`` names the field (the CLI maps it to its flag)."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument


class RequestTypeError(RequestError, TypeError):
    """A request field of the wrong type."""


_COUNTS = {"batch": 1, "calib_size": 1, "search_budget": 1, "verify_images": 0, "verify_random": 0}
_TEXTS = ("precision", "compress", "calib_method", "verify_data")
_PATHS = ("checkpoint", "output", "output_dir", "calib")


@dataclass
class ConvertRequest:
    """One artifact to build. ``None`` means the default: the shipped model, the format's first
    precision, the checkpoint's input size and dataset, ``<output_dir>/<artifact_name>``."""

    model: Any = None  # a variant name, or a model of ours (nn.Module with .meta); default: the checkpoint's
    checkpoint: Path | None = None  # ours or an official one; default: the shipped model unless ``model``
    input_size: int | None = None
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

    def __post_init__(self):
        """Check types and ranges now, not deep inside an export; errors name the field."""
        for name, low in _COUNTS.items():
            value = getattr(self, name)
            if value is None and name == "calib_size":
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise RequestTypeError(name, f"{name} must be an int, got {type(value).__name__}")
            if value < low:
                raise RequestError(name, f"{name} must be >= {low}, got {value}")
        for name in _TEXTS:
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise RequestTypeError(name, f"{name} must be a str, got {type(getattr(self, name)).__name__}")
        for name in _PATHS:
            if getattr(self, name) is not None and not isinstance(getattr(self, name), (str, os.PathLike)):
                raise RequestTypeError(name, f"{name} must be a path, got {type(getattr(self, name)).__name__}")
        if isinstance(self.float_modules, str) or not all(isinstance(n, str) for n in self.float_modules):
            raise RequestTypeError("float_modules", "float_modules must be a sequence of module names")
        self.float_modules = tuple(self.float_modules)
        if self.model is not None and not isinstance(self.model, str):
            _check_module(self.model)
            if self.checkpoint is not None:
                raise RequestError("checkpoint", "pass a model object or a checkpoint, not both")
        if self.verify_images + self.verify_random < 1:
            raise RequestError("verify_images", "verification needs at least one image: raise verify_images or "
                                                "verify_random")


def _check_module(model: Any) -> None:
    from model import ShuntedTransformer
    if not isinstance(model, ShuntedTransformer):
        raise RequestTypeError("model", f"model must be a variant name or a ShuntedTransformer (model.create_model), "
                                        f"got {type(model).__name__}")
    meta = getattr(model, "meta", None)
    missing = [k for k in ("variant", "num_classes", "input_size", "preprocess") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise RequestError("model", f"model has no .meta with {', '.join(missing)}: build it with create_model(...) "
                                    f"or set model.meta = make_meta(...)")


def artifact_name(stem: str, size: int, precision: str, tag: str = "", batch: int = 1) -> str:
    """``<stem>_<size>_<precision>[_<tag>][_b<batch>]`` (the suffix is the format's)."""
    return f"{stem}_{size}_{precision}" + (f"_{tag}" if tag else "") + (f"_b{batch}" if batch != 1 else "")


def checkpoint_stem(checkpoint: Path | None, variant: str, in_memory: bool = False) -> str:
    """The name an artifact's file starts with: the checkpoint's stem, ``<variant>_model`` for a model
    object, or ``<variant>_random``."""
    return checkpoint.stem if checkpoint else f"{variant}_model" if in_memory else f"{variant}_random"
