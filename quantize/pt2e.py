"""PT2E post-training quantization (export -> prepare -> calibrate -> convert) for XNNPACK and Core ML."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch



def quantize_pt2e(model: torch.nn.Module, example: torch.Tensor, calibration: np.ndarray, quantizer) -> torch.fx.GraphModule:
    """Observe activations on ``calibration`` (in batches of the example's size) and fold in int8 Q/DQ."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    with torch.no_grad():
        graph = torch.export.export(model.eval(), (example,), strict=False).module()
        prepared = prepare_pt2e(graph, quantizer)
        batch = example.shape[0]
        for start in range(0, len(calibration) - batch + 1, batch):
            prepared(torch.from_numpy(calibration[start:start + batch]))
        return convert_pt2e(prepared)


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


def xnnpack_quantizer(float_modules: Iterable[str] = ()):
    """Per-channel symmetric int8 weights, int8 activations; norms and ``float_modules`` stay float.

    The channel-mean convs inside LayerNorm2d stay float: quantizing a mean over channels costs
    accuracy and buys nothing.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantizer.set_filter_function(_quantizable(tuple(float_modules)))
    return quantizer
