"""Export to ONNX (torch.onnx dynamo exporter, opset >= 18), checked and verified with ONNX Runtime.

LayerNorms are exported channels-last as fused ``LayerNormalization`` and GELU as the opset-20
``Gelu`` op: ONNX Runtime runs both as single kernels, and its channels-last int8 convs absorb
the transposes (docs/quantization.md).

    python convert/to_onnx.py                                  # the shipped default model
    python convert/to_onnx.py --model shunted_t --checkpoint shunted_t.pth --output t.onnx
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from convert.cli import main
from convert.pipeline import Converter, ConvertError, Exported, Job
from quantize.onnxrt import ACTIVATIONS, METHODS, name_scopes, quantize_qdq

MIN_OPSET = 18
OPSET = 20  # the first with a Gelu op
MODULE_KEY = "module"  # node metadata: the module the node was exported from (op profiles by block part)


@dataclass
class OnnxOptions:
    opset: int = OPSET
    dynamic_batch: bool = False
    activation_type: str = "uint8"


def add_arguments(parser) -> None:
    parser.add_argument("--opset", type=int, help=f"ONNX opset (default {OPSET}, >= {MIN_OPSET})")
    parser.add_argument("--dynamic-batch", action="store_true", help="make the batch dimension dynamic")
    parser.add_argument("--activation-type", choices=ACTIVATIONS, help="int8 activation type (default uint8)")


def export_onnx(job: Job, tmp: Path) -> Exported:
    import onnx
    options = job.options
    if options.opset < MIN_OPSET:
        raise ConvertError(f"--opset {options.opset} is too old; use {MIN_OPSET} or newer")
    example = job.example
    dynamic_shapes = None
    if options.dynamic_batch:  # a batch of 1 would be specialised away, so trace with 2
        example = torch.cat([example, example]) if len(example) == 1 else example
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    program = torch.onnx.export(job.deploy_model, (example,), None, dynamo=True, opset_version=options.opset,
                                input_names=["input"], output_names=["logits"],
                                dynamic_shapes=dynamic_shapes, verbose=False)
    proto = program.model_proto
    paths = module_paths(proto)
    details = {}
    if job.precision == "int8":
        proto, details = quantize(proto, job, tmp)
    keep_module_paths(proto, paths)
    props = {"shunted_edge": json.dumps(job.meta), "labels": json.dumps(job.meta["labels"]),
             "preprocess": json.dumps(job.meta["preprocess"]), "variant": job.meta["variant"]}
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp))  # weights inline: our largest model is far below 2 GB
    size = job.meta["input_size"]
    return Exported(
        input={"name": "input", "shape": ["batch" if options.dynamic_batch else job.request.batch, 3, size, size],
               "dtype": "float32", "layout": "NCHW", "kind": "normalized (see model.preprocess)"},
        outputs={"logits": "logits"},
        details={"opset": options.opset, "nodes": len(proto.graph.node), "dynamic_batch": options.dynamic_batch,
                 **({"quantization": details} if details else {})})


def module_paths(proto) -> dict[str, str]:
    """{node name: the innermost module the exporter traced it in ("" for the model itself)}."""
    return {node.name: scopes[-2] if len(scopes) > 1 else "" for node in proto.graph.node
            if (scopes := name_scopes(node))}


def keep_module_paths(proto, paths: dict[str, str]) -> None:
    """Replace every node's exporter debug info (stack traces, FX nodes: a third of an int8 file) by its
    module path, where ``paths`` knows the node (quantization keeps the exported nodes' names)."""
    for node in proto.graph.node:
        del node.metadata_props[:]
        if node.name in paths:
            entry = node.metadata_props.add()
            entry.key, entry.value = MODULE_KEY, paths[node.name]


def quantize(proto, job: Job, tmp: Path):
    """Static QDQ int8 of the fp32 graph, calibrated on the job's calibration images."""
    import onnx
    fp32 = tmp.with_name(tmp.stem + ".fp32.onnx")
    onnx.save(proto, str(fp32))
    try:
        details = quantize_qdq(fp32, tmp, job.calibration(), "input", job.calib_method,
                               job.options.activation_type, job.float_modules)
    finally:
        fp32.unlink(missing_ok=True)
    return onnx.load(str(tmp)), details


CONVERTER = Converter("onnx", ".onnx", ("fp32", "int8"), export_onnx, OnnxOptions, add_arguments, calib_methods=METHODS,
                      backend=lambda options: "onnx")

if __name__ == "__main__":
    sys.exit(main(CONVERTER))
