"""CutMix (Yun et al., ICCV 2019): paste a random box of another image of the batch, mix the labels.

A regulariser for small vision transformers trained on small data sets: each mixed batch is a
batch of the same shape (static shapes, ``torch.compile``-friendly), and the loss is the mix of
the two images' losses in proportion to their areas.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Mixed:
    """A batch after CutMix: ``images``, their own ``targets``, the pasted images' ``partners``
    and ``keep``, the share of each image's area that is still its own (1.0: not mixed)."""

    images: torch.Tensor
    targets: torch.Tensor
    partners: torch.Tensor
    keep: float

    def loss(self, criterion, logits: torch.Tensor) -> torch.Tensor:
        if self.keep == 1.0:
            return criterion(logits, self.targets)
        return self.keep * criterion(logits, self.targets) + (1 - self.keep) * criterion(logits, self.partners)


@dataclass(frozen=True)
class CutMix:
    """Mix a batch with probability ``prob``; box area share drawn from Beta(``alpha``, ``alpha``)."""

    prob: float
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.prob <= 1 or self.alpha <= 0:
            raise ValueError(f"CutMix needs 0 <= prob <= 1 and alpha > 0, got {self.prob}, {self.alpha}")

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> Mixed:
        """``images`` (N, C, H, W) and their ``targets``; ``rng`` draws every random choice."""
        if self.prob == 0 or rng.random() >= self.prob:
            return Mixed(images, targets, targets, 1.0)
        h, w = images.shape[-2:]
        cut = np.sqrt(1.0 - rng.beta(self.alpha, self.alpha))
        cy, cx = rng.integers(h), rng.integers(w)
        top, bottom = np.clip([cy - round(h * cut / 2), cy + round(h * cut / 2)], 0, h)
        left, right = np.clip([cx - round(w * cut / 2), cx + round(w * cut / 2)], 0, w)
        order = torch.from_numpy(rng.permutation(len(targets))).to(targets.device)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = images[order][..., top:bottom, left:right]
        keep = 1.0 - (bottom - top) * (right - left) / (h * w)
        return Mixed(mixed, targets, targets[order], float(keep))
