"""PT2E post-training quantization (export -> prepare -> calibrate -> convert) for XNNPACK and Core ML."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

DEQUANTIZE = ("dequantize_per_tensor", "dequantize_per_channel")


def batch_for(size: int) -> int:
    """Static batch of the graphs that observe or simulate: large enough to amortise their per-op
    overhead (a histogram observer costs about the same per call at any batch), small enough for memory."""
    return 128 if size <= 64 else 16


def whole_batches(images: np.ndarray, batch: int):
    """``images`` as tensors of exactly ``batch`` images (static graphs), the last padded with its last
    image; yields (tensor, how many of its images are real)."""
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        yield torch.from_numpy(np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)])), len(chunk)


def _prepared(model: torch.nn.Module, example: torch.Tensor, quantizer) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    return prepare_pt2e(torch.export.export(model.eval(), (example,), strict=False).module(), quantizer)


def quantize_pt2e(model: torch.nn.Module, example: torch.Tensor, calibration: np.ndarray, quantizer,
                  fold_weights: bool = True) -> torch.fx.GraphModule:
    """Observe activations on ``calibration`` and insert int8 Q/DQ into a graph of ``example``'s shape.

    Observation runs in batches of :func:`batch_for` (the last one padded with its last image) on a
    graph of that batch, whose observers (same names, same order) are then loaded into the graph of
    the example's batch. ``fold_weights=False`` keeps each weight's float value behind its
    quantize/dequantize pair (what :func:`only_within` needs to give a unit back its float weights).
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e
    with torch.no_grad():
        prepared = _prepared(model, example, quantizer)
        batch = max(example.shape[0], batch_for(example.shape[-1]))
        observing = prepared if batch == example.shape[0] else \
            _prepared(model, example[:1].expand(batch, *example.shape[1:]).contiguous(), quantizer)
        for padded, _ in whole_batches(calibration, batch):
            observing(padded)
        if observing is not prepared:
            prepared.load_state_dict(observing.state_dict())
        return convert_pt2e(prepared, fold_quantize=fold_weights)


def module_path(node: torch.fx.Node) -> str:
    """The innermost module an exported node came from (its ``nn_module_stack``), or ''."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    return stack[-1][0] if stack else ""


def only_within(graph: torch.fx.GraphModule, units: Iterable[str]) -> torch.fx.GraphModule:
    """A copy of a quantized graph (``fold_weights=False``) in which only ops inside ``units`` read
    quantized values; every other op reads the float value its dequantize node was fed, so each
    unit's quantization error can be measured with one calibration."""
    import copy
    units = tuple(units)
    inside = lambda path: any(path == u or path.startswith(u + ".") for u in units)  # noqa: E731
    graph = copy.deepcopy(graph)
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or not any(name in str(node.target) for name in DEQUANTIZE):
            continue
        source = node.args[0]
        if not isinstance(source, torch.fx.Node) or "dequantize" in str(source.target) \
                or "quantize_per" not in str(source.target):
            continue
        for user in list(node.users):
            if not inside(module_path(user)):
                user.replace_input_with(node, source.args[0])
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph


def _quantizable(float_modules: tuple[str, ...]):
    """Node filter: not inside a LayerNorm2d or a float module.

    (Only an exclusion filter works reliably: the annotators also test a pattern's input nodes,
    which lie outside the module that holds the pattern.)
    """
    def inside(paths: list[str], name: str) -> bool:
        return any(p == name or p.startswith(name + ".") for p in paths)

    def keep(node: torch.fx.Node) -> bool:
        stack = list(node.meta.get("nn_module_stack", {}).values())
        paths = [path for path, _ in stack]
        if any(str(getattr(kind, "__name__", kind)).endswith("LayerNorm2d") for _, kind in stack):
            return False
        return not any(inside(paths, name) for name in float_modules)
    return keep


METHODS = ("histogram", "minmax")  # activation ranges: L2-optimal from a histogram (XNNPACK's default), or min/max


def _config(method: str):
    """XNNPACK's per-channel symmetric config with the activation observer of ``method``."""
    from dataclasses import replace

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver
    config = get_symmetric_quantization_config(is_per_channel=True)
    if method == "histogram":
        return config
    if method != "minmax":
        raise ValueError(f"unknown PT2E calibration method {method!r}; one of {', '.join(METHODS)}")
    spec = replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
    return replace(config, input_activation=spec, output_activation=spec)


def _kept_float(keep):
    """A quantizer that claims every op ``keep`` rejects with an empty annotation, so that no later
    quantizer gives it an observer: XNNPACK's quantizer applies its filter to the patterns it
    annotates, but afterwards lets channel means, reshapes and slices share their input's
    quantization whatever the filter says (a norm's ``mean(dim=1)`` was quantized that way)."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, Quantizer
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    class KeptFloat(Quantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            for node in model.graph.nodes:
                if node.op == "call_function" and not keep(node):
                    node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
            return model

        def validate(self, model: torch.fx.GraphModule) -> None:
            pass

    return KeptFloat()


def xnnpack_quantizer(float_modules: Iterable[str] = (), method: str = METHODS[0]):
    """Per-channel symmetric int8 weights, int8 activations; norms and ``float_modules`` stay float.

    Every op inside LayerNorm2d stays float: quantizing a mean over channels costs accuracy and
    buys nothing, and Core ML fuses a whole float norm into one ``layer_norm`` op (with a quantized
    mean it computed the squares in fp16, which overflow above 256).
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer.composable_quantizer import ComposableQuantizer
    keep = _quantizable(tuple(float_modules))
    quantizer = XNNPACKQuantizer().set_global(_config(method)).set_filter_function(keep)
    return ComposableQuantizer([_kept_float(keep), quantizer])
