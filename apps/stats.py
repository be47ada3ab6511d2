"""Latency and throughput bookkeeping: smoothed FPS for the overlay, figures for the summary."""
from __future__ import annotations

import statistics
import time


class Stats:
    """Call ``tick(ms)`` once per processed frame; the clock starts when the object is made."""

    def __init__(self, smoothing: float = 0.9):
        self.smoothing, self.fps, self.latencies = smoothing, 0.0, []
        self.start = self.last = time.perf_counter()

    def tick(self, inference_ms: float) -> None:
        now = time.perf_counter()
        instant = 1.0 / max(now - self.last, 1e-9)
        self.fps = instant if not self.latencies else self.smoothing * self.fps + (1 - self.smoothing) * instant
        self.last = now
        self.latencies.append(inference_ms)

    @property
    def frames(self) -> int:
        return len(self.latencies)

    def summary(self, skipped: int, dropped: int) -> dict:
        elapsed = self.last - self.start
        lat = self.latencies or [0.0]
        return {"frames": self.frames, "skipped": skipped, "dropped": dropped,
                "inference_ms_mean": round(statistics.fmean(lat), 3),
                "inference_ms_median": round(statistics.median(lat), 3),
                "fps": round(self.frames / elapsed, 2) if elapsed > 0 else 0.0,
                "seconds": round(elapsed, 2)}
