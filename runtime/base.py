"""What every runner shares: the Runner interface, its error, and undoing normalisation for
runtimes that take pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import UserError


class ArtifactError(UserError):
    """An artifact that cannot be loaded or run here; the message says why and what to do."""


def to_pixels(x: np.ndarray, preprocess: dict) -> np.ndarray:
    """Normalized NCHW input -> 0..255 RGB pixels (float): the preprocessing's normalisation undone."""
    mean = np.asarray(preprocess["mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(preprocess["std"], np.float32).reshape(1, 3, 1, 1)
    return np.clip((x * std + mean) * 255.0, 0.0, 255.0)


class Runner:
    """Common interface: ``run(x)`` in fixed-size batches, plus metadata and load time."""

    format = "?"
    remembers_outputs = False  # judged_outputs reuses outputs (runtime.memo)
    _content_key: str | None = None

    def __init__(self, path: Path, meta: dict, precision: str, batch: int | None, load_seconds: float):
        self.path, self.meta, self.precision = path, meta, precision
        self.batch, self.load_seconds = batch, load_seconds

    @property
    def input_size(self) -> int:
        return int(self.meta["input_size"])

    @property
    def labels(self) -> list[str] | None:
        return self.meta.get("labels")

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a (N, 3, S, S) float32 batch of any N (split/padded to the static batch)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.batch is None or len(x) == self.batch:
            return self._run_batch(x)
        outs = []
        for start in range(0, len(x), self.batch):
            chunk = x[start:start + self.batch]
            pad = self.batch - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            outs.append(self._run_batch(chunk)[:self.batch - pad])
        return np.concatenate(outs)

    def judged_outputs(self, x: np.ndarray) -> np.ndarray:
        """Logits of ``x`` for verification and accuracy. Runners of slow reference engines
        (``remembers_outputs``: Core ML's numpy evaluator, Core AI's reference path) take the images
        this artifact has already been run on in this process from ``runtime.memo``, and say on stderr
        how long a pass of over a minute will take (``runtime.progress``); timing uses :meth:`run`,
        which always runs."""
        if not self.remembers_outputs:
            return self.run(x)
        from common.digest import artifact_sha256

        from .memo import remembered
        from .progress import run_with_progress
        engine = getattr(self, "engine", self.format)
        if self._content_key is None:  # the engine too: Core ML on a Mac gives other values per compute unit
            self._content_key = f"{engine}:{artifact_sha256(self.path)}"
        return remembered(self._content_key, np.ascontiguousarray(x, dtype=np.float32),
                          lambda images: run_with_progress(self.run, images, engine))

    def _run_batch(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError
