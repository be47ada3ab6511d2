"""Dataset entry point: ``build_dataset`` picks CIFAR-10, Fashion-MNIST or an image folder from a source string."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .cifar10 import CLASSES as CIFAR10_CLASSES, Cifar10
from .errors import DataError
from .fashion_mnist import CLASSES as FASHION_MNIST_CLASSES, FashionMNIST
from .image_folder import ImageFolder, load_image, preprocess_files

__all__ = ["CIFAR10_CLASSES", "Cifar10", "DataError", "FASHION_MNIST_CLASSES", "FashionMNIST", "ImageFolder",
           "build_dataset", "dataset_name", "load_image", "preprocess_files"]

FASHION_MNIST = "fashion-mnist"
CIFAR10 = "cifar10"
NAMED = {FASHION_MNIST: FashionMNIST, CIFAR10: Cifar10}
SOURCES_HINT = "'cifar10', 'cifar10:PATH', 'fashion-mnist', 'fashion-mnist:DIR' or a folder with one sub-folder per class"


def dataset_name(source: str | Path) -> str | None:
    """"cifar10" or "fashion-mnist" for those sources (with or without ``:PATH``), else None."""
    name = str(source).split(":", 1)[0]
    return name if name in NAMED else None


def build_dataset(source: str | Path, split: str, spec: dict[str, Any] | None = None,
                  train: bool = False, seed: int = 0,
                  limit: int | None = None, val_fraction: float = 0.1,
                  augment: str = "crop-flip") -> Cifar10 | FashionMNIST | ImageFolder:
    """Dataset for ``source``: "cifar10[:PATH]", "fashion-mnist[:DIR]", or an image-folder path.

    ``spec`` None means the dataset's default (CIFAR-10 at 32 px, Fashion-MNIST at 28 px,
    ImageNet at 224 px). ``val_fraction`` and ``augment`` (see ``InMemorySplit``) apply to the
    named data sets; a folder keeps its own split and augmentation (DataError otherwise).
    """
    text = str(source)
    name = dataset_name(text)
    if name is not None:
        root = text[len(name) + 1:] or None
        return NAMED[name](root, split, spec, train=train, seed=seed, limit=limit, val_fraction=val_fraction,
                           augment=augment)
    if (val_fraction, augment) != (0.1, "crop-flip"):
        raise DataError(f"val_fraction and augment apply to {', '.join(NAMED)}; {text} keeps its own split and "
                        "augmentation: leave them at their defaults")
    if not Path(text).is_dir():
        raise DataError(f"data source {text!r} is not a folder: pass {SOURCES_HINT}")
    return ImageFolder(text, split, spec, train=train, seed=seed, limit=limit)
