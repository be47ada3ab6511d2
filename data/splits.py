"""Deterministic seeded splits and subsets of index sets."""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from .errors import DataError

# a ``limit`` no data set reaches: every item, in the seeded order a limit gives (so that every
# prefix mixes classes), where ``None`` keeps the file order
ALL_SHUFFLED = sys.maxsize

SPLITS = ("train", "val", "test")


def check_split(split: str, allowed: Sequence[str] = SPLITS) -> str:
    """Return ``split`` or raise DataError listing the allowed values."""
    if split not in allowed:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(allowed)}")
    return split


def stratified_split(targets: Sequence[int], fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split indices into ``len(fractions)`` disjoint sorted parts, per class, with a seeded shuffle.

    Each class contributes ``round(fraction * class_size)`` items to every part but the first,
    which takes the rest; the result depends only on ``targets``, ``fractions`` and ``seed``.
    """
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        sizes = [round(f * len(members)) for f in fractions[1:]]
        bounds = np.cumsum([len(members) - sum(sizes)] + sizes)[:-1]
        for part, chunk in zip(parts, np.split(members, bounds)):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def limit_indices(indices: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """First ``limit`` items of a seeded permutation of ``indices`` (all of them if None).

    The permuted order is kept, so a prefix of the result mixes classes (good for calibration).
    """
    if limit is None:
        return indices
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise DataError(f"limit must be a positive int or None, got {limit!r}")
    return indices[np.random.default_rng(seed).permutation(len(indices))[:limit]]
