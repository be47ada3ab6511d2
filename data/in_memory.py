"""A split of a data set held in memory as uint8 pixels, with seeded per-epoch augmentation."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import AUGMENTS, TRIVIAL_DRAWS, epoch_uniforms, pad_crop_flip, trivial_augment
from .errors import DataError
from .preprocess import preprocess_image, validate_preprocess
from .splits import check_split, limit_indices, stratified_split


class InMemorySplit(Dataset):
    """One split of ``images`` (uint8 ``(N, H, W)`` grey or ``(N, H, W, 3)`` RGB) and ``labels``,
    yielding ``(float32 tensor (3, S, S), int label)`` through ``spec``.

    ``images`` is the training file for "train"/"val" (a seeded stratified split, ``val_fraction``,
    ``split_seed``; independent of ``seed``) and the test file for "test". ``train=True`` adds a
    random crop with ``pad`` zero padding and a horizontal flip, drawn per epoch (call
    ``set_epoch``), and with ``augment="trivial"`` one :func:`trivial_augment` operation. ``limit``
    keeps the first N of a ``seed``-permutation of the split. ``val_fraction`` 0: "train" is every
    training image and "val" is empty.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str], split: str,
                 spec: dict[str, Any], train: bool, seed: int, limit: int | None, pad: int,
                 val_fraction: float = 0.1, split_seed: int = 0, augment: str = "crop-flip") -> None:
        check_split(split)
        if not 0 <= val_fraction < 1:
            raise DataError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        if augment not in AUGMENTS:
            raise DataError(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
        self.augment = augment
        self.spec = validate_preprocess(spec)
        self.split, self.train, self.seed, self.epoch, self.pad = split, train, seed, 0, pad
        self._draws: tuple[int, np.ndarray, np.ndarray | None] | None = None
        self.classes = list(classes)
        indices = np.arange(len(labels))
        if split == "val" and val_fraction == 0:
            indices = indices[:0]
        elif split != "test" and val_fraction > 0:
            train_idx, val_idx = stratified_split(labels, (1 - val_fraction, val_fraction), split_seed)
            indices = train_idx if split == "train" else val_idx
        indices = limit_indices(indices, limit, seed)
        self.images = images[indices]
        self.targets: list[int] = labels[indices].tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call before each training epoch)."""
        self.epoch = epoch

    def pixels(self, index: slice) -> np.ndarray:
        """The uint8 pixels of ``index``, augmented when ``train``."""
        pixels = self.images[index]
        if not self.train:
            return pixels
        if self._draws is None or self._draws[0] != self.epoch:
            n, trivial = len(self.images), self.augment == "trivial"
            self._draws = (self.epoch, epoch_uniforms(self.seed, self.epoch, n, 3),
                           epoch_uniforms(self.seed, self.epoch, n, TRIVIAL_DRAWS, stream=1) if trivial else None)
        _, crop_draws, trivial_draws = self._draws
        pixels = pad_crop_flip(pixels, self.pad, crop_draws[index])
        if trivial_draws is not None:
            pixels = np.stack([trivial_augment(p, u) for p, u in zip(pixels, trivial_draws[index])])
        return pixels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = range(len(self))[index]
        pixels = self.pixels(slice(index, index + 1))[0]
        return torch.from_numpy(preprocess_image(pixels, self.spec)), self.targets[index]
