"""Calibration images for post-training quantization, and the held-out images that judge it,
preprocessed exactly as at inference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data import DataError, ImageFolder, build_dataset, preprocess_files
from data.image_folder import unreadable_note


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in Image.registered_extensions())


def _pool_size(path: Path) -> int:
    """Images in an unlabelled source (a flat folder or a .npy array)."""
    if path.suffix == ".npy":
        return len(_open_array(path, mmap=True))
    return len(_image_files(path))


def _open_array(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as err:
        raise DataError(f"image file {path} is not a readable .npy array ({err})") from None


def calibration_side(spec: dict) -> int:
    """Shorter side calibration decodes a camera JPEG to (``load_image``'s ``min_side``): twice the
    preprocessing's resize. Calibration only measures activation ranges, and a 12 MP photo then
    decodes about 9x faster; verification decodes whole, as the demos do."""
    return 2 * spec["resize"]


def _pool_images(path: Path, spec: dict, start: int, count: int, seed: int,
                 min_side: int | None = None) -> np.ndarray:
    """Images ``start .. start+count`` of an unlabelled source in its fixed seeded order: calibration
    takes a prefix, verification the images after it, so the two never overlap."""
    size = spec["crop"]
    if path.suffix == ".npy":
        batch = _open_array(path)
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise DataError(f"image array {path} has shape {batch.shape}; expected (N, 3, {size}, {size}) "
                            f"preprocessed images")
        order = np.random.default_rng(seed).permutation(len(batch))[start:start + count]
        return batch[np.sort(order)].astype(np.float32)
    files = _image_files(path)
    order = np.random.default_rng(seed).permutation(len(files))[start:start + count]
    return preprocess_files([files[i] for i in order], spec, skip_unreadable=True, min_side=min_side)


def default_calibration_size(input_size: int) -> int:
    """1024 images up to 64 px, fewer for larger inputs (about the same observation time), >= 128."""
    return 1024 if input_size <= 64 else max(128, int(1024 * (64 / input_size) ** 2))


def is_unlabelled(path: Path) -> bool:
    """A .npy array or a folder of images without class sub-folders: images without labels."""
    return path.suffix == ".npy" or (path.is_dir() and not any(p.is_dir() for p in path.iterdir()))


def calibration_count(source: str, meta: dict, requested: int | None, available: int | None = None) -> int:
    """Images calibration takes: ``requested``, or by default :func:`default_calibration_size`, but
    at most half of a small training split, folder or array, so the rest can verify the artifact
    (``available``: that split's size when the caller has it, instead of reading the source again)."""
    if requested is not None:
        if requested < 1:
            raise DataError(f"--calib-size must be >= 1, got {requested}")
        return requested
    wanted = default_calibration_size(meta["input_size"])
    path = Path(source)
    if available is None:
        available = _pool_size(path) if is_unlabelled(path) else len(build_dataset(source, "train", meta["preprocess"]))
    return wanted if available >= 2 * wanted else max(1, available // 2)


def calibration_batch(source: str, meta: dict, limit: int | None = None, seed: int = 0) -> np.ndarray:
    """(N, 3, S, S) float32 calibration inputs from 'cifar10', 'fashion-mnist', an image folder or a .npy file.

    Images are resized/cropped to the model's input size by its own preprocessing spec. The
    training split is used (a seeded prefix of it), so evaluation data stays unseen; ``limit``
    None takes :func:`calibration_count` images.
    """
    limit = calibration_count(source, meta, limit)
    spec, path = meta["preprocess"], Path(source)
    if is_unlabelled(path):
        batch = _pool_images(path, spec, 0, limit, seed, calibration_side(spec))
    else:
        dataset = build_dataset(source, "train", spec, seed=seed, limit=limit)
        batch = preprocess_files([p for p, _ in dataset.samples], spec, min_side=calibration_side(spec)) \
            if isinstance(dataset, ImageFolder) else torch.stack([dataset[i][0] for i in range(len(dataset))]).numpy()
    if len(batch) == 0:
        files = sorted(str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) \
            if path.is_dir() else []
        skipped = f": {unreadable_note(files)}; or" if files else ";"
        raise DataError(f"no readable images in {source} for calibration{skipped} pass 'cifar10', "
                        f"'fashion-mnist', a folder of images or a .npy array")
    return batch


def held_out_images(source: str, spec: dict, n_real: int, calibration_used: int, seed: int):
    """Up to ``n_real`` real images, their labels and the source's class names (None when it has no
    classes): the test split, then validation, then the training images calibration did not use (it
    takes a seeded prefix); for a flat folder or an array, the images after the calibration prefix."""
    path = Path(source)
    if is_unlabelled(path):
        return list(torch.from_numpy(_pool_images(path, spec, calibration_used, n_real, seed))), np.zeros(0, int), None
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
        classes = classes or list(dataset.classes)
        for i in range(skip, len(dataset)):
            image, label = dataset[i]
            images.append(image)
            labels.append(label)
    return images, np.asarray(labels), classes
