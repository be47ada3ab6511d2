"""Fashion-MNIST from the standard IDX files, pre-decoded to uint8 for fast epochs.

Resizing uses PIL everywhere (the spec's bilinear), also in the whole-split fast path
``FashionMNIST.as_tensor``, which batches the per-image steps and therefore matches
per-item loading exactly.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError
from .idx import read_idx
from .in_memory import InMemorySplit
from .preprocess import fashion_mnist_preprocess, preprocess_batch
from .splits import check_split

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "FASHION_MNIST_DIR"
PAD = 2  # training augmentation: random crop with this much zero padding, in 28x28 pixels
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def fashion_mnist_dir(root: str | Path | None = None) -> Path:
    """The folder to read: ``root``, else $FASHION_MNIST_DIR, else the Debian package's folder."""
    return Path(root or os.environ.get(ENV_VAR) or DEFAULT_DIR)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"Fashion-MNIST files not found in {root} (missing {name}[.gz]): install Debian "
                    "package dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist), set "
                    f"{ENV_VAR} or pass a folder holding train-images-idx3-ubyte[.gz], "
                    "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]")


def load_fashion_mnist(root: str | Path | None, file_split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` and labels ``(N,)`` as read-only uint8 arrays for "train" or "test"."""
    folder = fashion_mnist_dir(root)
    image_path, label_path = (_find(folder, name) for name in FILES[file_split])
    images, labels = read_idx(image_path, 3), read_idx(label_path, 1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max(initial=0) >= len(CLASSES):
        raise DataError(f"corrupt Fashion-MNIST files in {folder}: images {images.shape} and labels "
                        f"{labels.shape} (max {labels.max(initial=0)}) do not match; reinstall the data set")
    return images, labels


class FashionMNIST(InMemorySplit):
    """A Fashion-MNIST split (:class:`InMemorySplit`): "train"/"val" from the 60k training file, "test"
    the 10k file; augmentation pads by ``PAD`` pixels."""

    def __init__(self, root: str | Path | None = None, split: str = "train",
                 spec: dict[str, Any] | None = None, train: bool = False, seed: int = 0,
                 limit: int | None = None, val_fraction: float = 0.1, split_seed: int = 0,
                 augment: str = "crop-flip") -> None:
        check_split(split)
        images, labels = load_fashion_mnist(root, "test" if split == "test" else "train")
        super().__init__(images, labels, CLASSES, split, spec if spec is not None else fashion_mnist_preprocess(),
                         train, seed, limit, PAD, val_fraction, split_seed, augment)

    def as_tensor(self, spec: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole split as ``(float32 (N, 3, S, S), int64 (N,))`` in a few seconds for 60k images.

        With the dataset's own spec (the default) this equals per-item loading exactly, including
        the current epoch's augmentation when ``train``.
        """
        images = preprocess_batch(self.pixels(slice(None)), spec if spec is not None else self.spec)
        return torch.from_numpy(images), torch.tensor(self.targets, dtype=torch.int64)
