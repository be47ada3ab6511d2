"""Block parts of an exported Shunted ONNX graph: which part of the network each node belongs to,
its multiply-accumulates, and the arithmetic floor of each part on this CPU.

The part of a node comes from the module path ``convert/to_onnx.py`` keeps in its metadata (key
``module``) and its op type; ONNX Runtime's optimized graph names fused nodes after the node they
absorbed (``node_conv2d_3_token_50``, ``node_bmm_1/MatmulTransposeFusion/``), which leads back to
the file's node. The floor of a part is its MACs over the peak MAC rate of ONNX Runtime's own conv
kernel (fp32 ``Conv``, int8 ``QLinearConv``) measured on chained large 1x1 convolutions: a bound
that GEMM-shaped parts approach, and that parts which are not a dense GEMM (depthwise convs, the
attention's activation x activation matmuls) stay far above.
"""
from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import numpy as np

from convert.to_onnx import MODULE_KEY

PARTS = ("patch embedding", "attention: token aggregation (reduce, norm, GELU)",
         "attention: q, k/v and output projections", "attention: local conv of V",
         "attention: softmax(QK^T)V", "MLP: fc1, GELU, fc2", "MLP: depthwise conv",
         "norms", "residual adds", "head", "layout ops", "quantize/dequantize", "(not attributed)")
LAYOUT_OPS = {"Transpose", "Reshape", "Slice", "Split", "Concat", "Flatten", "Squeeze", "Unsqueeze",
              "ReorderInput", "ReorderOutput", "Identity"}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
# (module path pattern, op types or None for any, part), the first match wins
RULES = (
    (r"\.entry(\.|$)", None, PARTS[0]),
    (r"\.attn\.(coarse|fine)\.(reduce|norm)(\.|$)", None, PARTS[1]),
    (r"\.attn\.(coarse|fine)$", {"Gelu"}, PARTS[1]),
    (r"\.attn\.((coarse|fine)\.)?local$", None, PARTS[3]),
    (r"\.attn(\.(coarse|fine))?$", {"Add"}, PARTS[3]),
    # coarse_value, coarse_proj: a K/V scale that pooled to one token, folded (model/deploy/attention.py)
    (r"\.attn\.(q|proj|((coarse|fine)\.)?kv|coarse_value|coarse_proj)$", None, PARTS[2]),
    (r"\.attn$", None, PARTS[4]),
    (r"\.mlp\.dwconv$", None, PARTS[6]),
    (r"\.mlp$", {"Add"}, PARTS[6]),
    (r"\.mlp(\.|$)", None, PARTS[5]),
    (r"\.norm\d*(\.|$)", None, PARTS[7]),
    (r"\.blocks\.\d+$", {"Add"}, PARTS[8]),
    (r"^(head(\.|$)|$)", None, PARTS[9]),
)
ORT_SUFFIX = re.compile(r"(_token_\d+|/.*)$")  # what ORT appends to the name of a node it rewrote
NCHWC_SUFFIX = "_nchwc"  # ORT's blocked-layout fp32 convs: named after their output tensor
FUSED_PREFIXES = ("QLinear", "Fused", "Nchwc")


def base_op(op_type: str) -> str:
    """The plain ONNX op an ORT kernel computes: QLinearAdd -> Add, FusedConv -> Conv, ..."""
    if op_type == "MatMulIntegerToFloat":
        return "MatMul"
    for prefix in FUSED_PREFIXES:
        if op_type.startswith(prefix) and len(op_type) > len(prefix):
            return op_type[len(prefix):]
    return op_type


def part_of(module: str | None, op_type: str) -> str:
    """The block part of a node exported from ``module`` (None: unknown) with this op type."""
    op = base_op(op_type)
    if op in QDQ_OPS:
        return "quantize/dequantize"
    if op in LAYOUT_OPS:
        return "layout ops"
    if module is None:
        return "(not attributed)"
    for pattern, ops, part in RULES:
        if re.search(pattern, module) and (ops is None or op in ops):
            return part
    return "(not attributed)"


def node_modules(model) -> dict[str, str]:
    """{node name: module path} of an ONNX model written by convert/to_onnx.py (empty for others)."""
    return {node.name: p.value for node in model.graph.node for p in node.metadata_props if p.key == MODULE_KEY}


class FileGraph:
    """The nodes of an artifact's ONNX graph by name and by the tensors they write, with module paths."""

    def __init__(self, model):
        self.nodes = {node.name: node for node in model.graph.node}
        self.producers = {out: node for node in model.graph.node for out in node.output}
        self.modules = node_modules(model)


def file_node(name: str, graph: FileGraph) -> str | None:
    """The file's node an ORT graph node comes from: its own name less ORT's suffixes, or, for the
    NCHWc convs ORT names after the tensor they write (``conv2d_2_nchwc``, ``relu_nchwc``), the conv
    that writes that tensor, through the activation or residual add the conv absorbed."""
    while name not in graph.nodes:
        shorter = ORT_SUFFIX.sub("", name)
        if shorter == name:
            break
        name = shorter
    if name in graph.nodes:
        return name
    if not name.endswith(NCHWC_SUFFIX):
        return None
    node = graph.producers.get(name.removesuffix(NCHWC_SUFFIX))
    while node is not None and node.op_type != "Conv":
        node = next((graph.producers[i] for i in node.input
                     if i in graph.producers and graph.producers[i].op_type == "Conv"), None)
    return node.name if node is not None else None


def node_macs(model) -> dict[str, int]:
    """{node name: multiply-accumulates} of every Conv, MatMul and Gemm, from inferred static shapes."""
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    macs = {}
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if not out or not all(out):
            continue
        if node.op_type == "Conv":
            weight = shapes.get(node.input[1])
            if weight:
                macs[node.name] = int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0])
            trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
            if a:
                macs[node.name] = int(np.prod(out)) * (a[-2] if trans_a else a[-1])
    return macs


def conv_peak_gmacs(int8: bool, threads: int, channels: int = 256, side: int = 56, depth: int = 4,
                    runs: int = 30) -> float:
    """Peak MAC rate (GMAC/s) of ONNX Runtime's conv kernel on this CPU: ``depth`` chained channels x
    channels 1x1 convolutions on a side x side image, fp32 ``Conv`` or (``int8``) QDQ convs that ORT
    runs as ``QLinearConv``s, so that the layout reorders (fp32) or the quantize/dequantize (int8) at
    the ends of the chain weigh little; the best of ``runs`` timed runs after 5 warm-up runs."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((channels, channels, 1, 1)).astype(np.float32) / channels ** 0.5
    if int8:
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zu"], ["q0"])]
        for i in range(depth):
            nodes += [helper.make_node("DequantizeLinear", [f"q{i}", "s", "zu"], [f"d{i}"]),
                      helper.make_node("Conv", [f"d{i}", "wd"], [f"c{i}"]),
                      helper.make_node("QuantizeLinear", [f"c{i}", "s", "zu"], [f"q{i + 1}"])]
        nodes += [helper.make_node("DequantizeLinear", ["wq", "ws", "zw"], ["wd"], axis=0),
                  helper.make_node("DequantizeLinear", [f"q{depth}", "s", "zu"], ["y"])]
        inits = [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.uint8(128), "zu"),
                 numpy_helper.from_array(np.clip(np.round(weight * 1000), -127, 127).astype(np.int8), "wq"),
                 numpy_helper.from_array(np.full(channels, 1e-3, np.float32), "ws"),
                 numpy_helper.from_array(np.zeros(channels, np.int8), "zw")]
    else:
        nodes = [helper.make_node("Conv", [f"c{i - 1}" if i else "x", "w"], [f"c{i}" if i < depth - 1 else "y"])
                 for i in range(depth)]
        inits = [numpy_helper.from_array(weight, "w")]
    shape = [1, channels, side, side]
    graph = helper.make_graph(nodes, "conv_peak", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conv.onnx"
        onnx.save(model, str(path))
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"x": rng.standard_normal(shape).astype(np.float32)}
    best = float("inf")
    for i in range(5 + runs):
        start = time.perf_counter()
        session.run(None, feed)
        if i >= 5:
            best = min(best, time.perf_counter() - start)
    return depth * channels * channels * side * side / best / 1e9


def parts_table(kernel_ms: dict[str, float], ort_ops: dict[str, str], model, runs_total_ms: float,
                peak_gmacs: float) -> list[dict]:
    """Per block part: kernel ms per inference, share of the run, MACs and the floor at ``peak_gmacs``.

    ``kernel_ms``: {ORT node name: ms per inference}; ``ort_ops``: {ORT node name: op type}; ``model``:
    the artifact's ONNX model (module paths and shapes); ``runs_total_ms``: one inference, profiled.
    """
    graph, macs = FileGraph(model), node_macs(model)
    modules, op_types = graph.modules, {name: node.op_type for name, node in graph.nodes.items()}
    rows = {part: {"part": part, "ms": 0.0, "nodes": 0, "macs": 0} for part in PARTS}
    for name, ms in kernel_ms.items():
        source = file_node(name, graph)
        part = part_of(modules.get(source), ort_ops.get(name, op_types.get(source, "")))
        rows[part]["ms"] += ms
        rows[part]["nodes"] += 1
    for name, count in macs.items():
        rows[part_of(modules.get(name), op_types[name])]["macs"] += count
    outside = runs_total_ms - sum(r["ms"] for r in rows.values())
    table = [r for r in rows.values() if r["nodes"] or r["macs"]]
    table.append({"part": "(session, outside kernels)", "ms": outside, "nodes": 0, "macs": 0})
    for row in table:
        row["percent"] = 100 * row["ms"] / runs_total_ms
        row["floor_ms"] = row["macs"] / peak_gmacs / 1e6
    return table
