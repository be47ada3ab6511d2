"""benchmarks/research/block_parts.py and the module paths convert/to_onnx.py keeps for it."""
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
import numpy as np

from benchmarks.research.block_parts import PARTS, FileGraph, file_node, node_macs, part_of, parts_table
from convert.to_onnx import keep_module_paths, module_paths
from quantize.onnxrt import NAME_SCOPES


@pytest.mark.parametrize("module,op,part", [
    ("stages.0.entry.convs.0", "Conv", "patch embedding"),
    ("stages.1.entry.norm.0", "LayerNormalization", "patch embedding"),
    ("stages.0.blocks.0.attn.coarse.reduce", "QLinearConv", "attention: token aggregation (reduce, norm, GELU)"),
    ("stages.0.blocks.0.attn.fine.norm.0", "LayerNormalization", "attention: token aggregation (reduce, norm, GELU)"),
    ("stages.0.blocks.0.attn.fine", "Gelu", "attention: token aggregation (reduce, norm, GELU)"),
    ("stages.0.blocks.0.attn.fine", "QLinearAdd", "attention: local conv of V"),
    ("stages.3.blocks.0.attn.local", "Conv", "attention: local conv of V"),
    ("stages.3.blocks.0.attn", "Add", "attention: local conv of V"),
    ("stages.0.blocks.0.attn.q", "FusedConv", "attention: q, k/v and output projections"),
    ("stages.0.blocks.0.attn.coarse.kv", "Conv", "attention: q, k/v and output projections"),
    ("stages.3.blocks.0.attn.kv", "Conv", "attention: q, k/v and output projections"),
    ("stages.2.blocks.1.attn.proj", "Conv", "attention: q, k/v and output projections"),
    ("stages.2.blocks.1.attn.coarse_value", "Conv", "attention: q, k/v and output projections"),
    ("stages.2.blocks.1.attn.coarse_proj", "Conv", "attention: q, k/v and output projections"),
    ("stages.0.blocks.0.attn", "MatMulIntegerToFloat", "attention: softmax(QK^T)V"),
    ("stages.0.blocks.0.attn", "Softmax", "attention: softmax(QK^T)V"),
    ("stages.0.blocks.0.mlp.fc1", "Conv", "MLP: fc1, GELU, fc2"),
    ("stages.0.blocks.0.mlp", "Gelu", "MLP: fc1, GELU, fc2"),
    ("stages.0.blocks.0.mlp.dwconv", "Conv", "MLP: depthwise conv"),
    ("stages.0.blocks.0.mlp", "Add", "MLP: depthwise conv"),
    ("stages.0.blocks.0.norm1.0", "LayerNormalization", "norms"),
    ("stages.2.norm.0", "LayerNormalization", "norms"),
    ("stages.2.blocks.3", "QLinearAdd", "residual adds"),
    ("head", "Gemm", "head"),
    ("", "ReduceMean", "head"),
    ("stages.0.blocks.0.attn", "Transpose", "layout ops"),
    (None, "ReorderInput", "layout ops"),
    (None, "DequantizeLinear", "quantize/dequantize"),
    (None, "Conv", "(not attributed)"),
])
def test_every_node_kind_of_a_block_has_its_part(module, op, part):
    assert part in PARTS and part_of(module, op) == part


def test_ort_node_names_lead_back_to_the_file_node():
    graph = FileGraph(_tiny_model(relu=True))
    assert file_node("node_conv2d_token_50", graph) == "node_conv2d"
    assert file_node("node_matmul/MatmulTransposeFusion/", graph) == "node_matmul"
    assert file_node("node_view", graph) == "node_view"
    assert file_node("c_nchwc", graph) == "node_conv2d"  # an NCHWc conv, named after its output
    assert file_node("a_nchwc", graph) == "node_conv2d"  # ... after the ReLU it absorbed
    assert file_node("Transpose_token_41", graph) is None and file_node("x_nchwc", graph) is None


def _tiny_model(relu=False):
    """x (1, 4, 8, 8) -> Conv 3x3 (8 out) [-> Relu] -> Reshape (1, 8, 64) -> MatMul with (64, 5)."""
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="node_conv2d", pads=[1, 1, 1, 1])
    act = [helper.make_node("Relu", ["c"], ["a"], name="node_relu")] if relu else []
    nodes = [conv, *act, helper.make_node("Reshape", ["a" if relu else "c", "shape"], ["r"], name="node_view"),
             helper.make_node("MatMul", ["r", "m"], ["y"], name="node_matmul")]
    inits = [numpy_helper.from_array(np.zeros((8, 4, 3, 3), np.float32), "w"),
             numpy_helper.from_array(np.array([1, 8, 64], np.int64), "shape"),
             numpy_helper.from_array(np.zeros((64, 5), np.float32), "m")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    scopes_of = {"node_conv2d": ["", "b.mlp", "b.mlp.fc1", "conv2d"], "node_relu": ["", "b.mlp", "b.mlp.fc1", "relu"],
                 "node_view": ["", "b.attn", "view"], "node_matmul": ["", "matmul"]}
    for node in model.graph.node:
        scopes = scopes_of[node.name]
        entry = node.metadata_props.add()
        entry.key, entry.value = NAME_SCOPES, repr(scopes)
        entry = node.metadata_props.add()
        entry.key, entry.value = "pkg.torch.onnx.stack_trace", "File ..."
    return model


def test_macs_come_from_the_static_shapes():
    assert node_macs(_tiny_model()) == {"node_conv2d": 8 * 8 * 8 * 4 * 9, "node_matmul": 8 * 5 * 64}


def test_the_file_keeps_only_each_nodes_module_and_parts_sum_to_the_run():
    model = _tiny_model()
    paths = module_paths(model)
    assert paths == {"node_conv2d": "b.mlp.fc1", "node_view": "b.attn", "node_matmul": ""}
    keep_module_paths(model, paths)
    assert [[(p.key, p.value) for p in n.metadata_props] for n in model.graph.node] == [
        [("module", "b.mlp.fc1")], [("module", "b.attn")], [("module", "")]]
    kernel_ms = {"node_conv2d_token_7": 0.5, "node_view": 0.1, "node_matmul": 0.2, "Transpose_token_9": 0.05}
    ops = {"node_conv2d_token_7": "FusedConv", "node_view": "Reshape", "node_matmul": "MatMul",
           "Transpose_token_9": "Transpose"}
    rows = {r["part"]: r for r in parts_table(kernel_ms, ops, model, runs_total_ms=1.0, peak_gmacs=1.0)}
    assert rows["MLP: fc1, GELU, fc2"]["ms"] == 0.5 and rows["MLP: fc1, GELU, fc2"]["macs"] == 18432
    assert rows["MLP: fc1, GELU, fc2"]["floor_ms"] == pytest.approx(18432 / 1e6)
    assert rows["layout ops"]["nodes"] == 2 and rows["layout ops"]["ms"] == pytest.approx(0.15)
    assert rows["head"]["macs"] == 2560
    assert rows["(session, outside kernels)"]["ms"] == pytest.approx(0.15)
    assert sum(r["percent"] for r in rows.values()) == pytest.approx(100)
