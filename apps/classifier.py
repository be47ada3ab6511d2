"""The model side of the demo: open any artifact and classify BGR frames with its own preprocessing."""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apps import AppError
from common.abstain import AbstainRule, softmax
from data.preprocess import preprocess_image
from runtime import ArtifactError, load_artifact

COREML_SUFFIXES = (".mlpackage", ".mlmodel")


@dataclass
class Prediction:
    topk: list[tuple[str, float]]  # (label, probability), most likely first
    ms: float  # inference time of the runtime call
    abstained: bool = False  # the model's rule says "not sure": the top-k are guesses


class Classifier:
    """A loaded artifact plus the preprocessing, labels and abstention rule from its manifest or checkpoint."""

    def __init__(self, runner, topk: int):
        self.runner, self.topk = runner, topk
        self.spec = runner.meta["preprocess"]
        self.rule = AbstainRule.from_meta(runner.meta)
        self.runtime = f"{runner.format} {runner.precision}"

    def knows(self) -> str:
        """What the model can name: its classes and the data set they come from."""
        labels, meta = self.runner.labels, self.runner.meta
        dataset = meta.get("dataset") or ("ImageNet" if meta["num_classes"] == 1000 else "its training data")
        named = ", ".join(labels) if labels and len(labels) <= 12 else f"{meta['num_classes']} classes"
        return f"knows {named} ({dataset})"

    def label(self, index: int) -> str:
        labels = self.runner.labels
        return labels[index] if labels and index < len(labels) else f"class {index}"

    def __call__(self, image: np.ndarray) -> Prediction:
        x = preprocess_image(image, self.spec, color_order="BGR")[None]
        start = time.perf_counter()
        logits = self.runner.run(x)[0]
        ms = (time.perf_counter() - start) * 1e3
        probs = softmax(logits)
        best = np.argsort(-probs, kind="stable")[:self.topk]
        abstained = bool(self.rule.abstains(probs[best[0]])) if self.rule else False
        return Prediction([(self.label(int(i)), float(probs[i])) for i in best], ms, abstained)


def open_classifier(weights: Path, threads: int | None, topk: int) -> Classifier:
    """Load ``weights`` (.pt/.pth/.safetensors, .onnx, .pte; .mlpackage on macOS) with its runtime."""
    if weights.exists() and weights.suffix.lower() in COREML_SUFFIXES and platform.system() != "Darwin":
        raise AppError("Core ML models run only on macOS/iOS; use the .onnx or .pte artifact here")
    try:
        return Classifier(load_artifact(weights, threads=threads), topk)
    except ArtifactError as err:
        raise AppError(str(err)) from None
    except ImportError as err:
        raise AppError(f"cannot load {weights}: its runtime {err.name} is not installed "
                       f"(pip install -r requirements.txt)") from None
