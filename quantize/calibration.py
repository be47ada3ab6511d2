"""Calibration images for post-training quantization, preprocessed exactly as at inference."""
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
        raise DataError(f"no readable images in {folder} for calibration; pass 'fashion-mnist' or a folder of images")
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


def calibration_batch(source: str, meta: dict, limit: int, seed: int = 0) -> np.ndarray:
    """(N, 3, S, S) float32 calibration inputs from 'fashion-mnist', an image folder or a .npy file.

    Images are resized/cropped to the model's input size by its own preprocessing spec. The
    training split is used, so evaluation data stays unseen.
    """
    if limit < 1:
        raise DataError(f"--calib-size must be >= 1, got {limit}")
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
