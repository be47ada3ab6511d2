"""Headless Chromium for the web demo's tests and benchmark: the system's browser (Debian ``chromium``)
driven by Playwright from PyPI; no browser is ever downloaded."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def chromium_missing() -> str | None:
    """Why headless Chromium cannot run here, or None."""
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -r requirements.txt)"
    return None


def fake_camera(y4m: Path) -> list[str]:
    """Flags that grant camera permission and play ``y4m`` (looped, at its frame rate) as the camera."""
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}"]


def launch(playwright, args: list[str] = ()):
    """Headless Chromium at CHROMIUM with extra command-line ``args``."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(args))


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """An uncompressed 4:2:0 video for :func:`fake_camera` from equal-sized RGB frames (even width and
    height): BT.601 studio range, chroma averaged over 2x2 blocks."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            r, g, b = np.moveaxis(frame.astype(np.float32), -1, 0)
            y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
            u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
            v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
            chroma = [c.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)) for c in (u, v)]
            f.write(b"FRAME\n" + b"".join(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in [y, *chroma]))
    return path
