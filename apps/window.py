"""The interactive window: q/Esc quit, s snapshot, space pause; image sources wait for a key per image."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from apps.outputs import save_snapshot
from apps.overlay import draw_note

TITLE = "shunted-edge"
QUIT_KEYS = (ord("q"), 27)


class Window:
    def __init__(self, snapshots: Path, step: bool, fps: float):
        self.snapshots, self.step, self.paused = snapshots, step, False
        self.interval = 1.0 / fps if fps > 0 else 0.0  # video files play no faster than recorded
        self.shown = time.perf_counter()

    def show(self, image: np.ndarray) -> bool:
        """Display one annotated frame and handle keys; False when the user quits."""
        cv2.imshow(TITLE, image)
        while True:
            remaining_ms = round((self.interval - (time.perf_counter() - self.shown)) * 1000)
            key = cv2.waitKey(0 if self.paused or self.step else max(1, remaining_ms)) & 0xFF
            if key in QUIT_KEYS or cv2.getWindowProperty(TITLE, cv2.WND_PROP_VISIBLE) < 1:
                return False
            if key == ord("s"):
                self._snapshot(image)
            elif key == ord(" ") and not self.step:
                self.paused = not self.paused
                cv2.imshow(TITLE, draw_note(image, "paused: space resumes") if self.paused else image)
            elif not self.paused:
                self.shown = time.perf_counter()
                return True

    def _snapshot(self, image: np.ndarray) -> None:
        try:
            print(f"saved {save_snapshot(image, self.snapshots)}", flush=True)
        except OSError as err:
            print(f"error: cannot save a snapshot in {self.snapshots}: {err.strerror}", file=sys.stderr)

    def close(self) -> None:
        cv2.destroyAllWindows()


def open_window(snapshots: Path, step: bool, fps: float) -> Window | None:
    """A window showing "loading model", or None without a display (no DISPLAY/WAYLAND_DISPLAY on
    Linux, or cv2.imshow failing, as in opencv-python-headless)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return None
    try:
        cv2.imshow(TITLE, draw_note(np.zeros((240, 320, 3), np.uint8), "loading model..."))
        cv2.waitKey(1)
    except cv2.error:
        return None
    return Window(snapshots, step, fps)
