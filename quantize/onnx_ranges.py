"""Activation ranges for ONNX Runtime static quantization, collected in bounded memory.

ONNX Runtime's calibrators keep every intermediate output of every calibration image until the
last image has run: Shunted-S at 224 with 128 images took more than 24 GB. Here the images run in
chunks of at most :data:`CHUNK_BYTES` of intermediate outputs. Histogram methods first take each
tensor's global extremes in one pass, then size every histogram from them, so that each chunk adds
its counts to the same bins: the ranges are exactly those of ONNX Runtime's single pass
(tests/test_quantize.py compares them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

CHUNK_BYTES = 1 << 30  # intermediate outputs held at once


def activation_ranges(model_path: Path, images: np.ndarray, input_name: str, method, op_types: Sequence[str],
                      options: dict, scratch: Path, chunk_bytes: int = CHUNK_BYTES):
    """The ``TensorsData`` ONNX Runtime's ``method`` calibrator computes for ``images`` (N, C, H, W).

    Args:
        model_path: the (pre-processed) float model.
        method: an ``onnxruntime.quantization.CalibrationMethod``.
        op_types: operator types whose tensors get ranges.
        options: ``create_calibrator`` extra options (``num_bins``, ``symmetric``, ...).
        scratch: a folder for the augmented model.
    """
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import CalibrationMethod, HistogramCollector, create_calibrator

    from runtime.runners import onnx_session
    augmented = scratch / "augmented.onnx"
    calibrator = create_calibrator(model_path, list(op_types), augmented_model_path=str(augmented),
                                   calibrate_method=method, extra_options=options)
    # ORT's calibration session takes every core and spins between ops; this one takes the process's
    # thread budget (a report build worker's share), with ORT's settings otherwise (no graph rewrites)
    calibrator.infer_session = onnx_session(augmented, graph_optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    chunk = _chunk_size(calibrator, images, input_name, chunk_bytes)
    if method != CalibrationMethod.MinMax:
        extremes = _extremes(calibrator, _chunks(images, chunk), input_name)
        calibrator.collector = HistogramCollector(
            method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
            num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
            scenario=calibrator.scenario)
        absolute = calibrator.method == "percentile" and calibrator.symmetric  # ORT's collect_absolute_value
        for name, (low, high, abs_low, abs_high) in extremes.items():
            calibrator.collector.histogram_dict[name] = _empty_histogram(low, high, abs_low, abs_high,
                                                                         calibrator.num_bins, absolute)
    for part in _chunks(images, chunk):
        calibrator.collect_data(_Reader(part, input_name))
    return calibrator.compute_data()


class _Reader:
    """A ``CalibrationDataReader`` of ``images``, one image per batch (as the converters feed them)."""

    def __init__(self, images: np.ndarray, input_name: str) -> None:
        self._batches = iter({input_name: images[i:i + 1]} for i in range(len(images)))

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def _chunks(images: np.ndarray, size: int) -> Iterator[np.ndarray]:
    return (images[i:i + size] for i in range(0, len(images), size))


def _calibrated_outputs(calibrator, image: np.ndarray, input_name: str) -> dict[str, np.ndarray]:
    names = [o.name for o in calibrator.infer_session.get_outputs()]
    values = calibrator.infer_session.run(None, {input_name: image})
    wanted = getattr(calibrator, "tensors_to_calibrate", names)  # min/max calibrators keep every output
    return {n: v for n, v in zip(names, values) if n in wanted}


def _chunk_size(calibrator, images: np.ndarray, input_name: str, chunk_bytes: int) -> int:
    per_image = sum(v.nbytes for v in _calibrated_outputs(calibrator, images[:1], input_name).values())
    return max(1, chunk_bytes // max(per_image, 1))


def _extremes(calibrator, chunks: Iterator[np.ndarray], input_name: str) -> dict[str, tuple]:
    """Per tensor: (min, max, min of |x|, max of |x|) over every image."""
    found: dict[str, tuple] = {}
    for part in chunks:
        for i in range(len(part)):
            for name, value in _calibrated_outputs(calibrator, part[i:i + 1], input_name).items():
                magnitude = np.absolute(value)
                new = (np.nanmin(value), np.nanmax(value), np.nanmin(magnitude), np.nanmax(magnitude))
                old = found.get(name, new)
                found[name] = (min(old[0], new[0]), max(old[1], new[1]), min(old[2], new[2]), max(old[3], new[3]))
    return found


def _empty_histogram(low, high, abs_low, abs_high, bins: int, absolute: bool) -> tuple:
    """The histogram ORT's collector would start from had it seen every image at once, with no counts."""
    if absolute:  # bins over [min |x|, max |x|]
        edges = np.histogram(np.array([abs_low, abs_high]), bins=bins)[1].astype(np.asarray(abs_high).dtype)
        return np.zeros(bins, dtype=np.int64), edges, low, high
    threshold = np.array(max(abs(low), abs(high)), dtype=np.asarray(high).dtype)  # bins over [-t, t]
    edges = np.histogram(np.empty(0, dtype=threshold.dtype), bins, range=(-threshold, threshold))[1]
    return np.zeros(bins, dtype=np.int64), edges, low, high, threshold
