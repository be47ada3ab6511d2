"""The demo's overlay: top-k labels with probability bars (or "not sure" and the guesses dimmed),
inference ms, smoothed FPS, runtime, and at the bottom what the model knows."""
from __future__ import annotations

import cv2
import numpy as np

from apps.classifier import Prediction

FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT = (255, 255, 255)
GUESS = (150, 150, 150)  # dimmed text of guesses when the model is not sure
BAR = (70, 150, 40)  # BGR green behind each label, as long as its probability
GUESS_BAR = (120, 90, 60)  # BGR slate blue: no antialiased grey text has its colour
NOT_SURE = "not sure"
DIM = 0.35  # brightness left under the panel


def _style(image: np.ndarray) -> tuple[float, int, int]:
    """Font scale, thickness and row height that stay readable from 48 px to 4K frames."""
    scale = float(np.clip(min(image.shape[:2]) / 600, 0.3, 1.6))
    thickness = max(1, round(scale * 1.5))
    (_, height), baseline = cv2.getTextSize("Ag", FONT, scale, thickness)
    return scale, thickness, height + baseline + max(2, round(8 * scale))


def _panel(image: np.ndarray, lines: list[str], top: int, bars: list[float] = (), first_bar: int = 0,
           dimmed: range = range(0)) -> None:
    """Darken a box at the left edge starting at row ``top`` and write ``lines`` in it, with ``bars``
    behind the lines from ``first_bar`` on; the ``dimmed`` lines are grey, their bars too."""
    scale, thickness, row = _style(image)
    pad = max(2, row // 3)
    width = max(cv2.getTextSize(line, FONT, scale, thickness)[0][0] for line in lines) + 2 * pad
    height = row * len(lines) + pad
    box = image[top:top + height, :width]
    box[:] = (box * DIM).astype(np.uint8)
    for i, fraction in enumerate(bars, first_bar):
        y = top + pad // 2 + i * row
        colour = GUESS_BAR if i in dimmed else BAR
        cv2.rectangle(image, (0, y + 1), (round(fraction * width), y + row - 2), colour, cv2.FILLED)
    for i, line in enumerate(lines):
        baseline_y = top + (i + 1) * row - max(2, row // 4)
        cv2.putText(image, line, (pad, baseline_y), FONT, scale, GUESS if i in dimmed else TEXT, thickness,
                    cv2.LINE_AA)


def draw_overlay(image: np.ndarray, prediction: Prediction, fps: float, runtime: str,
                 knows: str | None = None) -> np.ndarray:
    """Annotate ``image`` in place (and return it); ``knows``: a line at the bottom."""
    lines = [f"{prob * 100:5.1f}%  {label}" for label, prob in prediction.topk]
    head = [NOT_SURE] if prediction.abstained else []
    guesses = range(1, 1 + len(lines)) if prediction.abstained else range(0)
    _panel(image, head + lines + [f"{prediction.ms:.1f} ms  {fps:.1f} FPS", runtime], 0,
           [prob for _, prob in prediction.topk], first_bar=len(head), dimmed=guesses)
    if knows:
        _panel(image, [knows], max(0, image.shape[0] - _style(image)[2] - 4))
    return image


def draw_note(image: np.ndarray, text: str) -> np.ndarray:
    """A one-line note at the bottom-left corner of a copy of ``image``."""
    image = image.copy()
    _panel(image, [text], max(0, image.shape[0] - _style(image)[2] - 4))
    return image
