"""ONNX Runtime static QDQ quantization of an exported fp32 model.

Defaults chosen by measurement on the development machine (2-core AMD EPYC VM; docs/quantization.md):
all Conv nodes (depthwise included: leaving them float adds Q/DQ pairs that cost more than they
save) and the residual Adds (QLinearAdd keeps the residual stream int8), MatMul (attention) left
float, uint8 activations with int8 per-channel weights in 7 bits (``reduce_range``): on x86 CPUs
without VNNI, ONNX Runtime multiplies u8 x s8 pairs with an instruction that saturates at int16,
which full-range weights can overflow; 7-bit weights cannot. Activation ranges: the
0.001st-99.999th percentiles of a 2048-bin histogram by default, chosen by measurement against
min/max and entropy. The measurements behind both choices: docs/quantization.md.
"""
from __future__ import annotations

import ast
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from common.quiet import prints_silenced

from .onnx_ranges import activation_ranges

METHODS = ("percentile", "minmax", "entropy")  # the default first: measured best, docs/quantization.md
ACTIVATIONS = ("uint8", "int8")
QUANTIZED_OPS = ("Conv", "Add")
NAME_SCOPES = "pkg.torch.onnx.name_scopes"  # the exporter's per-node metadata: the module paths it was traced in
# create_calibrator options per method. ORT's entropy default (128 bins searched with 128 quantized
# bins) has one candidate, the whole range, which is min/max; 2048 bins (TensorRT's choice) give a search.
CALIBRATOR_OPTIONS = {"percentile": {}, "minmax": {}, "entropy": {"num_bins": 2048, "num_quantized_bins": 128}}


def name_scopes(node) -> list[str]:
    """The module paths the exporter traced an ONNX node in, outermost first, then the FX node's name
    ([] for a node it did not make)."""
    return next((ast.literal_eval(p.value) for p in node.metadata_props if p.key == NAME_SCOPES), [])


def float_nodes(model_path: Path, float_modules: Iterable[str]) -> list[str]:
    """Names of the nodes that belong to any of ``float_modules`` (from the exporter's name scopes)."""
    import onnx
    prefixes = tuple(float_modules)
    if not prefixes:
        return []
    names = []
    for node in onnx.load(str(model_path)).graph.node:
        scopes = name_scopes(node)
        if any(scope == prefix or scope.startswith(prefix + ".") for scope in scopes for prefix in prefixes):
            names.append(node.name)
    return names


def quantize_qdq(fp32_path: Path, out_path: Path, calibration: np.ndarray, input_name: str,
                 method: str = METHODS[0], activation: str = "uint8", float_modules: Iterable[str] = ()) -> dict:
    """Write a QDQ int8 model of ``fp32_path`` to ``out_path``; returns what was done."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method_enum = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="shunted-quantize-") as scratch, prints_silenced():
        prepared, cache = Path(scratch) / "prepared.onnx", Path(scratch) / "ranges.json"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        # name scopes are read from the exported file: quant_pre_process drops node metadata, keeps names
        kept = {node.name for node in onnx.load(str(prepared)).graph.node}
        excluded = [name for name in float_nodes(fp32_path, float_modules) if name in kept]
        save_tensors_data(activation_ranges(prepared, calibration, input_name, method_enum, QUANTIZED_OPS,
                                            CALIBRATOR_OPTIONS[method], Path(scratch)), cache)
        quantize_static(
            str(prepared), str(out_path), None, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8, reduce_range=True, op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=excluded, calibrate_method=method_enum, calibration_cache_path=cache)
    return {"method": method, "activation_type": activation, "weight_type": "int8 per-channel",
            "quantized_ops": list(QUANTIZED_OPS), "float_nodes": len(excluded),
            "calibration_images": len(calibration)}
