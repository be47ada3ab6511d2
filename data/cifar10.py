"""CIFAR-10 (32x32 RGB photos, 10 classes) read from a JPEG archive or its unpacked folder.

The layout is ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``, as a ``.tar.gz``/``.tar`` archive
or a folder. Archives are read in one streaming pass without unpacking; decoded splits are kept
in memory as uint8 ``(N, 32, 32, 3)`` for the rest of the process.

The repository ships ``data/shipped/cifar10.tar.gz``: the whole 10,000-image test split and a
fixed subset of the training split (250 per class, for calibration); ``cifar10`` alone reads it,
unless $CIFAR10_PATH names the full data set. Training needs the full archive: ``cifar10:PATH``.
"""
from __future__ import annotations

import io
import os
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import DataError
from .in_memory import InMemorySplit
from .splits import check_split

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN = [0.4914, 0.4822, 0.4465]
STD = [0.2470, 0.2435, 0.2616]
SIZE = 32
PAD = 4  # training augmentation: random crop with this much zero padding
SHIPPED = Path(__file__).resolve().parent / "shipped" / "cifar10.tar.gz"
ENV_VAR = "CIFAR10_PATH"
LAYOUT = "train/<class>/*.jpg and test/<class>/*.jpg"


def cifar10_preprocess(input_size: int = SIZE) -> dict[str, Any]:
    """CIFAR-10 spec: shorter side to ``input_size`` (bilinear, antialiased when shrinking a photo),
    centre crop, CIFAR-10 mean/std."""
    return {"mean": list(MEAN), "std": list(STD), "channel_order": "RGB", "resize": input_size,
            "crop": input_size, "interpolation": "bilinear", "grayscale": False}


def cifar10_path(root: str | Path | None = None) -> Path:
    """The archive or folder to read: ``root``, else $CIFAR10_PATH, else the shipped subset."""
    path = Path(root or os.environ.get(ENV_VAR) or SHIPPED)
    if not path.exists():
        raise DataError(f"CIFAR-10 not found at {path}: pass cifar10:PATH with a .tar.gz archive or a "
                        f"folder holding {LAYOUT}")
    return path


def _decode(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as err:
        raise DataError(f"CIFAR-10 image {name} is unreadable ({err}); replace the data set file") from None
    if pixels.shape != (SIZE, SIZE, 3):
        raise DataError(f"CIFAR-10 image {name} is {pixels.shape[1]}x{pixels.shape[0]}, not 32x32; "
                        f"pass the CIFAR-10 data set ({LAYOUT})")
    return pixels


def _members(path: Path, file_split: str):
    """(class name, file name, bytes) of every image of ``file_split``, in any order."""
    if path.is_dir():
        for class_dir in sorted((path / file_split).glob("*/")):
            for file in sorted(class_dir.glob("*.jpg")) + sorted(class_dir.glob("*.png")):
                yield class_dir.name, file.name, file.read_bytes()
        return
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                parts = member.name.lstrip("./").split("/")
                if member.isfile() and len(parts) == 3 and parts[0] == file_split:
                    yield parts[1], parts[2], archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{path} is not a readable CIFAR-10 archive ({err}); pass a .tar.gz or a folder "
                        f"holding {LAYOUT}") from None


@lru_cache(maxsize=4)
def _load(path: Path, mtime: float, file_split: str) -> tuple[np.ndarray, np.ndarray]:
    found = sorted((cls, name, data) for cls, name, data in _members(path, file_split))
    unknown = sorted({cls for cls, _, _ in found} - set(CLASSES))
    if unknown or not found:
        raise DataError(f"{path} holds no CIFAR-10 {file_split} split (found classes {unknown or 'none'}): "
                        f"pass an archive or folder holding {LAYOUT}")
    images = np.stack([_decode(data, f"{file_split}/{cls}/{name}") for cls, name, data in found])
    labels = np.array([CLASSES.index(cls) for cls, _, _ in found], np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def load_cifar10(root: str | Path | None, file_split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 32, 32, 3)`` uint8 and labels ``(N,)`` of the "train" or "test" file split,
    sorted by class, then file name (the test split keeps its standard order within a class)."""
    path = cifar10_path(root).resolve()
    return _load(path, path.stat().st_mtime, file_split)


class Cifar10(InMemorySplit):
    """A CIFAR-10 split (:class:`InMemorySplit`) of the archive or folder ``root``; augmentation pads by
    ``PAD`` pixels."""

    def __init__(self, root: str | Path | None = None, split: str = "train",
                 spec: dict[str, Any] | None = None, train: bool = False, seed: int = 0,
                 limit: int | None = None, val_fraction: float = 0.1, split_seed: int = 0,
                 augment: str = "crop-flip") -> None:
        check_split(split)
        images, labels = load_cifar10(root, "test" if split == "test" else "train")
        super().__init__(images, labels, CLASSES, split, spec if spec is not None else cifar10_preprocess(),
                         train, seed, limit, PAD, val_fraction, split_seed, augment)
