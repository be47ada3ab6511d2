"""Dataset entry point: ``build_dataset`` picks Fashion-MNIST or an image folder from a source string."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import DataError
from .fashion_mnist import CLASSES as FASHION_MNIST_CLASSES, FashionMNIST
from .image_folder import ImageFolder, load_image

__all__ = ["DataError", "FASHION_MNIST_CLASSES", "FashionMNIST", "ImageFolder", "build_dataset", "load_image"]

FASHION_MNIST = "fashion-mnist"


def build_dataset(source: str | Path, split: str, spec: dict[str, Any] | None = None,
                  train: bool = False, seed: int = 0, limit: int | None = None) -> FashionMNIST | ImageFolder:
    """Dataset for ``source``: "fashion-mnist", "fashion-mnist:DIR", or an image-folder path.

    ``spec`` None means the dataset's default (Fashion-MNIST at 28 px, ImageNet at 224 px).
    """
    text = str(source)
    if text == FASHION_MNIST or text.startswith(FASHION_MNIST + ":"):
        root = text[len(FASHION_MNIST) + 1:] or None
        return FashionMNIST(root, split, spec, train=train, seed=seed, limit=limit)
    if not Path(text).is_dir():
        raise DataError(f"data source {text!r} is not a folder: pass 'fashion-mnist', "
                        "'fashion-mnist:DIR' or a folder with one sub-folder per class")
    return ImageFolder(text, split, spec, train=train, seed=seed, limit=limit)
