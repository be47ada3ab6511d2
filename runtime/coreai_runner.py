"""Apple Core AI assets (.aimodel) through Apple's ``coreai.runtime``.

On Linux the runtime compiles the asset for its reference CPU path (not the Neural Engine); on
macOS 27 the same calls use the OS framework. The runtime's API is async: the runner keeps its
own event loop and the loaded model, so ``run(x)`` is an ordinary call.
"""
from __future__ import annotations

import asyncio
import time
import weakref
from contextlib import AsyncExitStack
from pathlib import Path

import numpy as np

from .base import ArtifactError, Runner, to_pixels


class CoreAIRunner(Runner):
    format = "coreai"
    engine = "coreai-runtime"
    remembers_outputs = True

    def __init__(self, path: Path, manifest: dict | None):
        from coreai.authoring import AIModelAsset
        start = time.perf_counter()
        try:
            asset = AIModelAsset.load(path)
            info = manifest or asset.metadata.creator_defined_metadata
            if "model" not in info:
                raise ArtifactError(f"{path} carries no shunted-edge metadata and has no manifest; re-export it "
                                    f"with convert/to_coreai.py")
            self._loop, stack = asyncio.new_event_loop(), AsyncExitStack()
            weakref.finalize(self, _close, self._loop, stack)
            model = self._loop.run_until_complete(stack.enter_async_context(asset.executable()))
            self.function = model.load_function("main")
        except RuntimeError as err:  # the runtime reports unreadable or invalid assets as RuntimeError
            raise ArtifactError(f"{path} could not be loaded by the Core AI runtime: {err}") from None
        self.input_name = info["input"]["name"]
        self.logits_name = info.get("outputs", {}).get("logits", "logits")
        self.pixels = info["input"]["dtype"] == "uint8"  # --image-input: uint8 RGB frames, NHWC
        super().__init__(path, info["model"], info["precision"], info["input"]["shape"][0],
                         time.perf_counter() - start)

    def frames(self, x: np.ndarray) -> np.ndarray:
        """Normalized input -> the uint8 RGB frames (N, S, S, 3) an image-input asset takes."""
        pixels = to_pixels(x, self.meta["preprocess"]).round()
        return np.ascontiguousarray(pixels.astype(np.uint8).transpose(0, 2, 3, 1))

    def _run_batch(self, x: np.ndarray) -> np.ndarray:
        from coreai.runtime import NDArray
        feed = NDArray(self.frames(x) if self.pixels else x)
        outputs = self._loop.run_until_complete(self.function({self.input_name: feed}))
        return np.asarray(outputs[self.logits_name].numpy(), np.float32).reshape(len(x), -1)


def _close(loop: asyncio.AbstractEventLoop, stack: AsyncExitStack) -> None:
    """Release the loaded model (and the compiled copy the Linux path keeps in a temporary folder)."""
    if not loop.is_closed():
        loop.run_until_complete(stack.aclose())
        loop.close()
