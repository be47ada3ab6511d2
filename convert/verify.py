"""Verification shared by every converter: the same images through the artifact and PyTorch,
judged by the accuracy contract (common/contract.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from common.contract import contract_for, judge, measure
from data import DataError, model_labels, preprocess_batch
from quantize.calibration import calibration_count, held_out_images


@dataclass
class VerificationSet:
    """Real images first (``n_real``), then random ones; ``labels`` when they are the model's classes."""

    inputs: np.ndarray
    n_real: int
    labels: np.ndarray | None
    source: str
    calibration_used: int = 0  # images of the same source that calibration took (these are not among them)

    @property
    def description(self) -> str:
        apart = f", none of the {self.calibration_used} calibration images" if self.calibration_used else ""
        return f"{self.n_real} real ({self.source}{apart}) + {len(self.inputs) - self.n_real} random"


def verification_source(meta: dict, verify_data: str | None, calib: str | None = None) -> str | None:
    """Where the real images that judge an artifact come from: ``verify_data``, else the checkpoint's
    dataset, else the int8 calibration source (its images that calibration did not take)."""
    return verify_data or meta.get("dataset") or calib


def verification_set(meta: dict, n_real: int, n_random: int, data: str | None = None,
                     calibration_used: int = 0, seed: int = 0) -> VerificationSet:
    """Real images of ``data`` (default: the checkpoint's dataset) and ``n_random`` noise images."""
    source = data or meta.get("dataset")
    spec, size = meta["preprocess"], meta["preprocess"]["crop"]
    real, labels = np.zeros((0, 3, size, size), np.float32), None
    if source and n_real:
        try:
            images, found, classes = held_out_images(source, spec, n_real, calibration_used, seed)
            real = torch.stack(images).numpy() if images else real
            labels = model_labels(found, classes, meta)
        except DataError as err:
            if data:  # asked for explicitly: a user mistake
                raise
            print(f"note: no real images for verification ({err}); using random images only")
            source = None
    rng = np.random.default_rng(seed)
    noise = (preprocess_batch(list(rng.integers(0, 256, (n_random, size, size, 3), dtype=np.uint8)), spec)
             if n_random else np.zeros((0, 3, size, size), np.float32))
    return VerificationSet(np.concatenate([real, noise]), len(real), labels, str(source or "random only"),
                           calibration_used if source else 0)


def calibration_overlap(meta: dict, calib_source: str | None, calib_size: int | None, verify_source: str | None) -> int:
    """How many images calibration takes from the verification source (0 if another source)."""
    if calib_source is None or calib_source != verify_source:
        return 0
    return calibration_count(calib_source, meta, calib_size)


def reference_logits(model: torch.nn.Module, inputs: np.ndarray, batch: int = 64) -> np.ndarray:
    with torch.inference_mode():
        model = model.eval()
        return np.concatenate([model(torch.from_numpy(inputs[i:i + batch])).numpy()
                               for i in range(0, len(inputs), batch)])


def judge_artifact(kind: str, reference: np.ndarray, candidate: np.ndarray, images: VerificationSet,
                   random_weights: bool) -> dict:
    """The contract's figures for ``kind`` (a precision or compression), with ``missed`` and ``status``."""
    figures = measure(reference, candidate, images.n_real, images.labels)
    missed = judge(contract_for(kind), figures, random_weights)
    return {**figures, "contract": kind, "judged_by": "numerics (random weights)" if random_weights else
            "decisions and numerics", "missed": missed, "status": "failed" if missed else "passed"}
