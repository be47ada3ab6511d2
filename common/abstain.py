"""When a classifier says "not sure": the abstention rule a model carries in ``meta["abstain"]``.

The rule is a floor on the top-1 softmax probability, chosen by measurement
(benchmarks/abstention.py) so that a stated share of the model's correct in-domain answers stays
above it. The desktop demo applies it through :func:`AbstainRule.abstains`, the web page
(apps/web/app.js) with the same comparison on the same float64 softmax.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORE = "max_softmax"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def confidence(logits: np.ndarray) -> np.ndarray:
    """The rule's score per row: the top-1 softmax probability."""
    return softmax(logits).max(axis=-1)


def threshold_keeping(correct_confidence: np.ndarray, keep: float) -> float:
    """The highest floor that keeps at least ``keep`` of these (correct answers') confidences."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    values = np.sort(np.asarray(correct_confidence, np.float64))
    if len(values) == 0:
        raise ValueError("no correct answers to choose a threshold from")
    kept = int(np.ceil(keep * len(values) - 1e-9))  # the fewest that make up ``keep`` (float-safe)
    return float(values[len(values) - kept])


@dataclass(frozen=True)
class AbstainRule:
    """Say "not sure" when the top-1 probability is below ``threshold``."""

    threshold: float
    score: str = SCORE

    def __post_init__(self) -> None:
        if self.score != SCORE:
            raise ValueError(f"unknown abstention score {self.score!r}; this version knows {SCORE!r}")
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"abstention threshold must be a probability, got {self.threshold!r}")

    @classmethod
    def from_meta(cls, meta: dict) -> "AbstainRule | None":
        """The rule stored with a model, or None for a model without one (it never abstains)."""
        stored = meta.get("abstain")
        return cls(float(stored["threshold"]), stored.get("score", SCORE)) if stored else None

    def abstains(self, top1_probability: float | np.ndarray) -> bool | np.ndarray:
        """True (per element) where the model should say "not sure"."""
        return top1_probability < self.threshold
