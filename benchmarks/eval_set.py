"""The images an evaluation runs on: a dataset split preprocessed once with one spec, relabelled to
the model's classes, or judged by agreement only when it has no labels the model knows."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.splits import ALL_SHUFFLED


def resolve_split(data: str, split: str) -> str:
    """``split`` for CIFAR-10, Fashion-MNIST and folders with train/ + val/ (or test/) sub-folders; "all" for a
    plain class-per-folder tree such as ImageNet val, whose every image but those int8 calibration takes
    is evaluation data (:class:`EvalSet` leaves those out)."""
    from data import dataset_name
    text = str(data)
    if dataset_name(text) or not Path(text).is_dir():
        return split
    root = Path(text)
    return split if (root / "train").is_dir() and ((root / "val").is_dir() or (root / "test").is_dir()) else "all"


class EvalSet:
    """A dataset split preprocessed with one spec (``build_dataset``, the project's preprocessing).

    Up to ``MAX_CACHE_BYTES`` of preprocessed images are kept in memory after the first pass, so
    every artifact sees the same arrays without preprocessing again; larger sets are streamed.
    """

    MAX_CACHE_BYTES = 1 << 30

    def __init__(self, data: str, split: str, spec: dict, limit: int | None = None, model_labels: list | None = None):
        """``model_labels``: the model's class names; a source whose classes all match them (by name or
        WordNet id, data.labels) is relabelled to the model's indices (e.g. 10 ImageNet classes). A
        source without labels (a flat folder, a .npy array), or whose classes are not the model's, is
        judged by agreement with the reference only (:attr:`unlabelled` says why)."""
        from data import build_dataset, label_indices
        from quantize.calibration import is_unlabelled
        self.data, self.spec, self.limit, self.unlabelled = str(data), spec, limit, None
        self._images: np.ndarray | None = None
        if is_unlabelled(Path(self.data)):
            self._init_unlabelled()
            return
        self.split = resolve_split(data, split)
        plain_tree = self.split == "all"
        # every image (or the first ``limit``) in one seeded order, the order verification draws from: a
        # prefix (the Core ML and Core AI rows on Linux) samples every class, and repeats no work
        self.dataset = build_dataset(data, self.split, spec, seed=0, limit=None if plain_tree else limit or ALL_SHUFFLED)
        if plain_tree:
            self._drop_calibration_images()
        if len(self.dataset) == 0:
            from data import DataError
            raise DataError(f"split {split!r} of {data} holds no images; pick another split or --data")
        self.labels = np.asarray(self.dataset.targets, dtype=np.int64)
        self.classes = list(getattr(self.dataset, "classes", []))
        mapping = label_indices(self.classes, model_labels)
        if mapping is not None and mapping != list(range(len(self.classes))):
            self.labels, self.classes = np.asarray(mapping, dtype=np.int64)[self.labels], list(model_labels)
        elif mapping is None and model_labels and self.classes:
            self.unlabelled = f"its classes ({', '.join(self.classes[:3])}, ...) are not the model's"
        self.cacheable = len(self) * 3 * spec["crop"] ** 2 * 4 <= self.MAX_CACHE_BYTES

    def _drop_calibration_images(self) -> None:
        """Leave out of a plain class-per-folder tree the images int8 calibration takes from it (a seeded
        prefix of its training part), so int8 rows are never judged on their calibration images."""
        from data import build_dataset
        from data.splits import limit_indices
        from quantize.calibration import calibration_count
        train = build_dataset(self.data, "train", self.spec)  # calibration takes a seeded prefix of it
        used = calibration_count(self.data, {"preprocess": self.spec, "input_size": self.spec["crop"]}, None,
                                 available=len(train))
        taken = {train.samples[i][0] for i in limit_indices(np.arange(len(train)), used, 0)}
        kept = [s for s in self.dataset.samples if s[0] not in taken]
        self.dataset.samples = [kept[i] for i in limit_indices(np.arange(len(kept)), self.limit, 0)]
        self.dataset.targets = [label for _, label in self.dataset.samples]
        self.split = f"all but the {used} int8 calibration images"

    def _init_unlabelled(self) -> None:
        """The images of a flat folder or array that int8 calibration does not take (the converters
        calibrate on a seeded prefix of the same order), preprocessed at once."""
        from data import DataError
        from quantize.calibration import calibration_count, held_out_images
        used = calibration_count(self.data, {"preprocess": self.spec, "input_size": self.spec["crop"]}, None)
        images, _, _ = held_out_images(self.data, self.spec, self.limit or ALL_SHUFFLED, used, seed=0)
        if not images:
            raise DataError(f"{self.data} holds no images beyond the {used} int8 calibration takes; add images")
        self.split, self.unlabelled = f"beyond the {used} int8 calibration images", "no labels"
        self._images, self.dataset, self.classes = np.stack([i.numpy() for i in images]), None, []
        self.labels, self.cacheable = np.full(len(images), -1, dtype=np.int64), True

    @property
    def labelled(self) -> bool:
        return self.unlabelled is None

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self) -> str:
        text = f"{self.data} {self.split}" + (f" (first {self.limit} of a seeded permutation)" if self.limit else "")
        return text + (f"; {self.unlabelled}: agreement with the reference only" if self.unlabelled else "")

    def _item_batches(self, batch_size: int, stop: int):
        for start in range(0, stop, batch_size):
            yield np.stack([self.dataset[i][0].numpy() for i in range(start, min(start + batch_size, stop))])

    def images(self) -> np.ndarray | None:
        """All preprocessed images (N, 3, S, S) if they fit the cache, else None."""
        if self._images is None and self.cacheable:
            if hasattr(self.dataset, "as_tensor"):  # Fashion-MNIST: whole split at once, equal to per-item
                self._images = self.dataset.as_tensor()[0].numpy()
            else:
                self._images = np.concatenate(list(self._item_batches(256, len(self))))
        return self._images

    def torch_dataset(self):
        """The set as a torch Dataset of (image, label), cached tensors when they fit."""
        import torch
        images = self.images()
        if images is None:
            return _Relabelled(self.dataset, self.labels)
        return torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(self.labels))

    def batches(self, batch_size: int, stop: int | None = None):
        stop = len(self) if stop is None else min(stop, len(self))
        images = self.images()
        if images is None:
            yield from self._item_batches(batch_size, stop)
            return
        for start in range(0, stop, batch_size):
            yield images[start:min(start + batch_size, stop)]


class _Relabelled:
    """A dataset's images with :attr:`EvalSet.labels` (the model's class indices)."""

    def __init__(self, dataset, labels: np.ndarray):
        self.dataset, self.labels = dataset, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.dataset[index][0], int(self.labels[index])
