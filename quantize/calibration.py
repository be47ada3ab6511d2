"""Calibration images for post-training quantization, and the held-out images that judge it,
preprocessed exactly as at inference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data import DataError, build_dataset, load_image, preprocess_batch


def _flat_folder(folder: Path, spec: dict, limit: int, seed: int) -> np.ndarray:
    """Images lying directly in ``folder`` (no class sub-folders), unreadable ones skipped."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in Image.registered_extensions())
    order = np.random.default_rng(seed).permutation(len(files))[:limit]
    images = []
    for index in order:
        try:
            images.append(load_image(files[index]))
        except DataError:
            continue
    if not images:
        raise DataError(f"no readable images in {folder} for calibration; pass 'cifar10', 'fashion-mnist' or a folder of images")
    return preprocess_batch(images, spec)


def _array_file(path: Path, size: int, limit: int) -> np.ndarray:
    try:
        batch = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"calibration file {path} is not a readable .npy array ({err})") from None
    if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
        raise DataError(f"calibration array {path} has shape {batch.shape}; expected (N, 3, {size}, {size}) "
                        f"preprocessed images")
    return batch[:limit].astype(np.float32)


def default_calibration_size(input_size: int) -> int:
    """1024 images up to 64 px, fewer for larger inputs (about the same observation time), >= 128."""
    return 1024 if input_size <= 64 else max(128, int(1024 * (64 / input_size) ** 2))


def _is_flat_or_array(path: Path) -> bool:
    return path.suffix == ".npy" or (path.is_dir() and not any(p.is_dir() for p in path.iterdir()))


def calibration_count(source: str, meta: dict, requested: int | None) -> int:
    """Images calibration takes: ``requested``, or by default :func:`default_calibration_size`, but
    at most half of a small labelled training split, so the rest can verify the artifact."""
    if requested is not None:
        if requested < 1:
            raise DataError(f"--calib-size must be >= 1, got {requested}")
        return requested
    wanted = default_calibration_size(meta["input_size"])
    if _is_flat_or_array(Path(source)):
        return wanted
    available = len(build_dataset(source, "train", meta["preprocess"]))
    return wanted if available >= 2 * wanted else max(1, available // 2)


def calibration_batch(source: str, meta: dict, limit: int | None = None, seed: int = 0) -> np.ndarray:
    """(N, 3, S, S) float32 calibration inputs from 'cifar10', 'fashion-mnist', an image folder or a .npy file.

    Images are resized/cropped to the model's input size by its own preprocessing spec. The
    training split is used (a seeded prefix of it), so evaluation data stays unseen; ``limit``
    None takes :func:`calibration_count` images.
    """
    limit = calibration_count(source, meta, limit)
    spec, size = meta["preprocess"], meta["input_size"]
    path = Path(source)
    if path.suffix == ".npy":
        batch = _array_file(path, size, limit)
    elif path.is_dir() and not any(p.is_dir() for p in path.iterdir()):
        batch = _flat_folder(path, spec, limit, seed)
    else:
        dataset = build_dataset(source, "train", spec, seed=seed, limit=limit)
        batch = torch.stack([dataset[i][0] for i in range(len(dataset))]).numpy()
    if len(batch) == 0:
        raise DataError(f"calibration source {source} gave no images")
    return batch


def held_out_images(source: str, spec: dict, n_real: int, calibration_used: int, seed: int):
    """Up to ``n_real`` real images, their labels and the class count: the test split, then
    validation, then the training images calibration did not use (it takes a seeded prefix)."""
    images, labels, classes = [], [], None
    for split, skip in (("test", 0), ("val", 0), ("train", calibration_used)):
        if len(images) >= n_real:
            break
        try:
            dataset = build_dataset(source, split, spec, seed=seed, limit=skip + n_real - len(images))
        except DataError:
            if split == "test":
                raise
            continue
        classes = classes or len(dataset.classes)
        for i in range(skip, len(dataset)):
            image, label = dataset[i]
            images.append(image)
            labels.append(label)
    return images, np.asarray(labels), classes
