"""Verification shared by every converter: same inputs through the artifact and PyTorch, compared."""
from __future__ import annotations

import numpy as np
import torch

from data import DataError, build_dataset, preprocess_batch

# Pass criteria per precision: fp32 must match numerically; reduced precisions must keep the decisions.
THRESHOLDS = {
    "fp32": {"max_abs_diff": 1e-3, "top1_agreement": 1.0},
    "fp16": {"cosine": 0.999, "top1_agreement_real": 0.99},
    "int8": {"cosine": 0.99, "top1_agreement_real": 0.99},
    # weight-only compression of an fp16 Core ML program
    "linear8": {"cosine": 0.995, "top1_agreement_real": 0.99},
    "palettize6": {"cosine": 0.99, "top1_agreement_real": 0.97},
    # 4-bit weights are lossy by design (default model: worst-sample cosine 0.967, 96.9% agreement on
    # 64 test images, also with per-16-channel tables on iOS18), so they are judged by decisions.
    "palettize4": {"cosine": 0.95, "top1_agreement_real": 0.95},
}


def verification_inputs(meta: dict, n_real: int, n_random: int, data: str | None = None,
                        seed: int = 0) -> tuple[np.ndarray, int, str]:
    """(inputs, how many are real, data source): real test images first, then random RGB images."""
    source = data or meta.get("dataset")
    spec = meta["preprocess"]
    real = np.zeros((0, 3, spec["crop"], spec["crop"]), np.float32)
    if source and n_real:
        try:
            dataset = build_dataset(source, "test", spec, limit=n_real, seed=seed)
            real = torch.stack([dataset[i][0] for i in range(len(dataset))]).numpy()
        except DataError as err:
            if data:  # asked for explicitly: a user mistake
                raise
            print(f"note: no real images for verification ({err}); using random images only")
            source = None
    rng = np.random.default_rng(seed)
    size = spec["crop"]
    noise = preprocess_batch(list(rng.integers(0, 256, (n_random, size, size, 3), dtype=np.uint8)), spec)
    return np.concatenate([real, noise]), len(real), source or "random only"


def _top1(logits: np.ndarray) -> np.ndarray:
    return logits.argmax(axis=1)


def compare(reference: np.ndarray, candidate: np.ndarray, n_real: int) -> dict:
    """max/mean |diff|, cosine (worst sample), top-1 agreement overall and on the real images."""
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    diff = np.abs(ref - cand)
    cos = (ref * cand).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1) + 1e-12)
    agree = _top1(ref) == _top1(cand)
    return {"samples": len(ref), "real_samples": n_real, "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()), "cosine": float(cos.min()),
            "top1_agreement": float(agree.mean()),
            "top1_agreement_real": float(agree[:n_real].mean()) if n_real else None}


def failures(figures: dict, precision: str) -> list[str]:
    """The thresholds that ``figures`` misses for this precision (empty when it passes)."""
    missed = []
    for key, bound in THRESHOLDS[precision].items():
        value = figures.get(key)
        if value is None:
            continue
        ok = value <= bound if key == "max_abs_diff" else value >= bound
        if not ok:
            missed.append(f"{key} {value:.6g} (needs {'<=' if key == 'max_abs_diff' else '>='} {bound})")
    return missed


def reference_logits(model: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(inputs)).numpy()


def accuracy_against_reference(model: torch.nn.Module, runner, source: str | None, preprocess: dict,
                               limit: int) -> dict | None:
    """Top-1 of the artifact and of the fp32 PyTorch model on labelled test images, and their agreement."""
    if not source or limit < 1:
        return None
    dataset = build_dataset(source, "test", preprocess, limit=limit)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).numpy()
    labels = np.asarray([dataset[i][1] for i in range(len(dataset))])
    ref = reference_logits(model, images).argmax(1)
    got = runner.run(images).argmax(1)
    top1_ref, top1 = float((ref == labels).mean()), float((got == labels).mean())
    return {"data": str(source), "images": len(labels), "top1": top1, "top1_fp32": top1_ref,
            "delta_top1_points": 100 * (top1 - top1_ref), "top1_agreement": float((ref == got).mean())}
