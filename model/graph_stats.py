"""Static facts about an exported graph: tensor ranks, op counts, layout shuffles, MACs."""
from __future__ import annotations

from collections import Counter

import torch

LAYOUT_OPS = {"view", "reshape", "_unsafe_view", "permute", "transpose", "t", "flatten", "unflatten",
              "squeeze", "unsqueeze", "expand", "contiguous", "clone", "view_copy", "permute_copy",
              "unsqueeze_copy", "squeeze_copy", "expand_copy", "transpose_copy"}


def export(model: torch.nn.Module, input_size: int, batch: int = 1) -> torch.export.ExportedProgram:
    """torch.export with static shapes, in eval mode."""
    example = torch.randn(batch, 3, input_size, input_size)
    with torch.no_grad():
        return torch.export.export(model.eval(), (example,), strict=False)


def _op_name(node: torch.fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0]


def graph_stats(program: torch.export.ExportedProgram) -> dict:
    """Max tensor rank, op histogram, layout-op count and any symbolic (data-dependent) shapes."""
    ranks, ops, symbolic = [], Counter(), []
    for node in program.graph.nodes:
        val = node.meta.get("val")
        vals = val if isinstance(val, (tuple, list)) else [val]
        for v in vals:
            if isinstance(v, torch.Tensor):
                ranks.append(v.dim())
                if any(not isinstance(s, int) for s in v.shape):
                    symbolic.append(node.name)
        if node.op == "call_function":
            ops[_op_name(node)] += 1
    layout = sum(n for op, n in ops.items() if op in LAYOUT_OPS)
    return {"max_rank": max(ranks), "ops": dict(ops), "num_ops": sum(ops.values()),
            "layout_ops": layout, "symbolic_shapes": symbolic}


def count_macs(model: torch.nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one image, counted by torch's FLOP counter (convs and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.randn(1, 3, input_size, input_size))
    return counter.get_total_flops() // 2
