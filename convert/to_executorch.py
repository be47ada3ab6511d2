"""Export to an ExecuTorch program (.pte), lowered with to_edge_transform_and_lower.

    python convert/to_executorch.py                              # default model, XNNPACK
    python convert/to_executorch.py --model shunted_t --checkpoint t.pth --backend coreml

XNNPACK programs are verified through the ExecuTorch runtime here; Core ML-delegated programs
run only on Apple devices, so they are checked structurally and marked unverified.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from convert.cli import main
from convert.pipeline import Converter, ConvertError, Exported, Job
from quantize.pt2e import METHODS, quantize_pt2e, xnnpack_quantizer

BACKENDS = ("xnnpack", "coreml", "portable")


@dataclass
class ExecuTorchOptions:
    backend: str = "xnnpack"


def add_arguments(parser) -> None:
    parser.add_argument("--backend", choices=BACKENDS,
                        help="delegate: xnnpack (CPU, default), coreml (Apple devices) or portable (no delegate)")


def partitioners(backend: str) -> list:
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        return [XnnpackPartitioner()]
    if backend == "coreml":
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner
        return [CoreMLPartitioner()]
    return []


def delegation_report(edge_program) -> dict:
    """How much of the graph the delegate took, and which ops it left to the portable kernels."""
    from executorch.devtools.backend_debug import get_delegation_info
    info = get_delegation_info(edge_program.exported_program().graph_module)
    left = Counter()
    for row in info.get_operator_delegation_dataframe().itertuples():
        if row.op_type not in ("Total", "getitem") and row.occurrences_in_non_delegated_graphs:
            left[row.op_type] = int(row.occurrences_in_non_delegated_graphs)
    return {"delegated_subgraphs": info.num_delegated_subgraphs, "delegated_ops": info.num_delegated_nodes,
            "not_delegated_ops": sum(left.values()), "not_delegated": dict(left)}


def fold_constants(program):
    """Precompute ops on weights alone (e.g. a norm's (C, 1, 1) scale viewed as a depthwise conv
    weight), so the delegate sees constant weights; quantize/dequantize nodes stay as they are,
    because the XNNPACK partitioner reads quantized weights from those patterns."""
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass
    quant_ops = {node.target for node in program.graph.nodes
                 if node.op == "call_function" and getattr(node.target, "namespace", "") in ("quantized_decomposed", "torchao")}
    return constant_prop_pass(program, custom_skip_targets=quant_ops)


def lower(model: torch.nn.Module, example: torch.Tensor, backend: str):
    """torch.export -> constants folded -> edge dialect, lowered to the backend; returns the edge program manager."""
    from executorch.exir import to_edge_transform_and_lower
    with torch.no_grad():
        program = fold_constants(torch.export.export(model, (example,), strict=False))
    return to_edge_transform_and_lower(program, partitioner=partitioners(backend))


def save_program(edge_program, path: Path) -> None:
    path.write_bytes(edge_program.to_executorch().buffer)


def prepare_model(job: Job) -> torch.nn.Module:
    """The deploy model, PT2E-quantized for int8."""
    backend, model = job.options.backend, job.deploy_model
    if job.precision == "int8":
        if backend != "xnnpack":
            raise ConvertError("--precision int8 is built for the XNNPACK backend; use --backend xnnpack")
        model = quantize_pt2e(model, job.example, job.calibration(), xnnpack_quantizer(job.float_modules, job.calib_method))
    return model


def export_executorch(job: Job, tmp: Path) -> Exported:
    backend = job.options.backend
    edge_program = lower(prepare_model(job), job.example, backend)
    report = delegation_report(edge_program)
    save_program(edge_program, tmp)
    size = job.meta["input_size"]
    return Exported(
        input={"name": "x", "shape": [job.request.batch, 3, size, size], "dtype": "float32", "layout": "NCHW",
               "kind": "normalized (see model.preprocess)"},
        outputs={"logits": 0},
        details={"backend": backend, **report},
        runnable_here=backend != "coreml",
        not_runnable_reason="Core ML-delegated programs run only on Apple devices (macOS/iOS ExecuTorch runtime)")


# XNNPACK runs norms op by op: it gets channel means as convs and centred norm inputs (model.deploy)
CONVERTER = Converter("executorch", ".pte", ("fp32", "int8"), export_executorch, ExecuTorchOptions, add_arguments,
                      calib_methods=METHODS, name_tag=lambda request, options: "" if options.backend == "xnnpack" else options.backend,
                      backend=lambda options: "xnnpack" if options.backend == "xnnpack" else "portable")

if __name__ == "__main__":
    sys.exit(main(CONVERTER))
