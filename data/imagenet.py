"""The 1000 ILSVRC-2012 classes of the published Shunted checkpoints (WordNet ids, display names)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

IMAGENET_TABLE = Path(__file__).with_name("imagenet_classes.tsv")


@lru_cache(maxsize=None)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """``(wnid, name)`` of each class in the official checkpoints' index order (sorted WordNet ids)."""
    rows = [line.split("\t") for line in IMAGENET_TABLE.read_text().splitlines()
            if line and not line.startswith("#")]
    return tuple((row[0], row[1]) for row in rows)


def imagenet_labels() -> list[str]:
    """The 1000 display names ('tench', 'goldfish', ...), index order."""
    return [name for _, name in imagenet_classes()]

