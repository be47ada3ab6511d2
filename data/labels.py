"""Class names of a data source matched to a model's labels (by name, or by WordNet id for ImageNet)."""
from __future__ import annotations

import numpy as np

from .imagenet import imagenet_classes, imagenet_labels


def _key(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def label_indices(class_names: list[str], labels: list[str] | None) -> list[int] | None:
    """The model's class index of each source class, or None unless every one matches.

    A class matches a label by name (case-insensitive, ``_`` read as a space) or, for ImageNet
    models, by WordNet id (``n01440764``): ImageNet val layouts use either.
    """
    if not labels or not class_names:
        return None
    index = {_key(label): i for i, label in enumerate(labels)}
    if labels == imagenet_labels():
        index.update({wnid: i for i, (wnid, _) in enumerate(imagenet_classes())})
    found = [index.get(_key(name)) for name in class_names]
    return None if None in found else found


def model_labels(found: np.ndarray, class_names: list[str] | None, meta: dict) -> np.ndarray | None:
    """Labels of held-out images as the model's class indices; None when the source's classes are
    not the model's (then only agreement with the reference can be measured)."""
    if not class_names or not len(found):
        return None
    mapping = label_indices(class_names, meta.get("labels"))
    if mapping is not None:
        return np.asarray(mapping)[np.asarray(found)]
    if meta.get("labels") is None and len(class_names) == meta["num_classes"]:
        return np.asarray(found)
    return None
