"""Headless Chromium for the web demo's tests and benchmark: the system's browser (Debian ``chromium``)
driven by Playwright from PyPI; no browser is ever downloaded."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

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
