"""Image-folder datasets in ImageNet layout: one sub-folder per class, any format PIL opens."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from .augment import decode_side, epoch_uniforms, scale_crop_flip
from .errors import DataError
from . import pixel_cache
from .preprocess import crop_pixels, imagenet_preprocess, normalize, validate_preprocess
from .splits import SPLITS, check_split, limit_indices, stratified_split

FRACTIONS = (0.8, 0.1, 0.1)  # train/val/test of a folder without split sub-folders
SPLIT_DIRS = {"train": ("train",), "val": ("val", "test"), "test": ("test", "val")}
LAYOUT_HINT = "expected one sub-folder per class (ImageNet layout)"
HEIC = {".heic", ".heif"}  # an iPhone's photos: neither PIL, OpenCV nor most browsers read them
HEIC_ADVICE = "convert to JPEG first (on a Mac: sips -s format jpeg IN.heic --out OUT.jpg)"


def load_image(path: str | Path, min_side: int | None = None) -> Image.Image:
    """Open an image file as upright PIL RGB; DataError if it is missing or unreadable.

    Read as OpenCV's ``imread`` reads it for the desktop demo: a camera's EXIF orientation applied
    (browsers apply it too), so a photo taken upright is seen upright, its colour profile ignored, and
    16-bit grey reduced to its top byte (PIL's own conversion would clip it to white).

    ``min_side`` (training and calibration only): a JPEG may be decoded at 1/2, 1/4 or 1/8 of its size
    (libjpeg's DCT scaling) while its shorter side stays at least this; other formats decode whole.
    """
    try:
        with Image.open(path) as image:
            if min_side:
                image.draft(image.mode, (min_side, min_side))
            ImageOps.exif_transpose(image, in_place=True)
            if image.mode.startswith("I;16"):
                image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path} ({exc}): pass an image file PIL can open "
                        "(jpg, png, bmp, webp, tiff, ...)") from None


def preprocess_file(path: str | Path, spec: dict[str, Any], min_side: int | None = None) -> np.ndarray:
    """One image file -> float32 ``(3, crop, crop)``, as ``preprocess_image(load_image(path, min_side),
    spec)``; its pixels come from :mod:`data.pixel_cache` when a run keeps them there."""
    validate_preprocess(spec)
    geometry = (spec["resize"], spec["crop"], spec["interpolation"], spec["grayscale"], min_side)
    pixels = pixel_cache.cached(path, geometry, lambda: crop_pixels(load_image(path, min_side), spec))
    return normalize(pixels, spec)


def preprocess_files(paths: Iterable[str | Path], spec: dict[str, Any], skip_unreadable: bool = False,
                     min_side: int | None = None) -> np.ndarray:
    """Image files -> one float32 array ``(N, 3, crop, crop)``, decoded one at a time so a folder of
    camera photos never sits whole in memory (a 12 MP photo is 36 MB decoded). Unreadable files
    raise DataError, or are left out with ``skip_unreadable``; ``min_side`` as in :func:`load_image`."""
    arrays = []
    for path in paths:
        try:
            arrays.append(preprocess_file(path, spec, min_side))
        except DataError:
            if not skip_unreadable:
                raise
    return np.stack(arrays) if arrays else np.zeros((0, 3, spec["crop"], spec["crop"]), np.float32)


def unreadable_note(paths: list[str]) -> str:
    """How many of ``paths`` were skipped, the first of them, and for HEIC photos what to do."""
    note = f"{len(paths)} non-image or corrupt files such as {paths[0]}"
    heic = sum(os.path.splitext(p)[1].lower() in HEIC for p in paths)
    if heic:
        note += f"; HEIC photos ({heic} of them) cannot be read by PIL, OpenCV or most browsers: {HEIC_ADVICE}"
    return note


def _is_image(path: str, extensions: set[str], verify: bool) -> bool:
    if os.path.splitext(path)[1].lower() not in extensions:
        return False
    if not verify:
        return True
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # PIL raises many types for corrupt files; any of them means "skip"
        return False


def class_names(folder: Path) -> list[str]:
    """Sorted names of the class sub-folders of ``folder``; DataError if there are none."""
    names = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")) \
        if folder.is_dir() else []
    if not names:
        raise DataError(f"no images found in {folder}: {LAYOUT_HINT}")
    return names


def scan_folder(folder: Path, classes: list[str], verify: bool = True) -> tuple[list[tuple[str, int]], list[str]]:
    """``(samples, skipped)``: readable images as (path, label) in sorted order, and skipped files.

    Files whose extension PIL does not know, or (``verify``) that fail ``Image.verify``, are skipped;
    hidden files are ignored. Verification reads headers only, so it stays cheap.
    """
    extensions = set(Image.registered_extensions())
    samples: list[tuple[str, int]] = []
    skipped: list[str] = []
    for label, name in enumerate(classes):
        for dirpath, _, filenames in sorted(os.walk(folder / name, followlinks=True)):
            for filename in sorted(f for f in filenames if not f.startswith(".")):
                path = os.path.join(dirpath, filename)
                if _is_image(path, extensions, verify):
                    samples.append((path, label))
                else:
                    skipped.append(path)
    return samples, skipped


class ImageFolder(Dataset):
    """Class-per-folder images yielding ``(float32 tensor (3, crop, crop), int label)``.

    If ``root`` holds ``train/`` and ``val/`` (or ``test/``) they are the splits ("val" and "test"
    fall back to each other) and classes come from ``train/``; otherwise ``root`` itself is split
    80/10/10 per class with ``split_seed``. ``split="all"`` takes every image of ``root``.
    ``train=True`` applies random-resized-crop-lite and flip, drawn per epoch (call ``set_epoch``).
    ``limit`` keeps the first N of a ``seed``-permutation. ``verify=False`` skips the header check
    of every file (large trees); unreadable files then raise DataError when loaded.
    """

    def __init__(self, root: str | Path, split: str = "train", spec: dict[str, Any] | None = None,
                 train: bool = False, seed: int = 0, limit: int | None = None, split_seed: int = 0,
                 verify: bool = True) -> None:
        check_split(split, SPLITS + ("all",))
        self.root = Path(root)
        self.spec = validate_preprocess(spec if spec is not None else imagenet_preprocess())
        self.split, self.train, self.seed, self.epoch = split, train, seed, 0
        self._draws: tuple[int, np.ndarray] | None = None
        folder, split_by_seed = self._split_folder(split)
        self.classes = class_names(folder)
        if folder != self.root:  # split sub-folders: labels follow train/ so all splits agree
            train_classes = class_names(self.root / "train")
            extra = sorted(set(self.classes) - set(train_classes))
            if extra:
                raise DataError(f"{folder} has class folders {extra[:3]} missing from "
                                f"{self.root / 'train'}: give every split the same class sub-folders")
            self.classes = train_classes
        samples, skipped = scan_folder(folder, self.classes, verify)
        if not samples:
            raise DataError(f"no readable images in {folder}: {unreadable_note(skipped)}" if skipped
                            else f"no images found in {folder}: {LAYOUT_HINT}")
        if skipped:
            warnings.warn(f"skipped {unreadable_note(skipped)} in {folder}", stacklevel=2)
        indices = np.arange(len(samples))
        if split_by_seed:
            parts = stratified_split([label for _, label in samples], FRACTIONS, split_seed)
            indices = parts[SPLITS.index(split)]
        self.samples = [samples[i] for i in limit_indices(indices, limit, seed)]
        self.targets: list[int] = [label for _, label in self.samples]
        self.skipped = len(skipped)

    def _split_folder(self, split: str) -> tuple[Path, bool]:
        """The folder holding ``split`` and whether it still needs a seeded split."""
        has = {name: (self.root / name).is_dir() for name in ("train", "val", "test")}
        if not (has["train"] and (has["val"] or has["test"])):
            return self.root, split != "all"
        if split == "all":
            raise DataError(f"{self.root} holds split sub-folders (train/, val/ or test/): pass split "
                            "train, val or test, or point at one of those sub-folders with split all")
        return self.root / next(d for d in SPLIT_DIRS[split] if has[d]), False

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call before each training epoch)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        if not self.train:
            return torch.from_numpy(preprocess_file(path, self.spec)), label
        image = load_image(path, decode_side(self.spec))
        if self._draws is None or self._draws[0] != self.epoch:
            self._draws = self.epoch, epoch_uniforms(self.seed, self.epoch, len(self), 4)
        return torch.from_numpy(scale_crop_flip(image, self.spec, self._draws[1][index])), label
