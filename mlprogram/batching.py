"""Running a batch-1 program on N images in one pass, where that provably computes the same function.

Core ML programs of our models are converted with a static batch of 1. Every tensor that depends on
the input then has a leading dimension of 1 that holds the image; if no op mixes, reduces, moves,
slices or re-counts that dimension, feeding N images along it gives each image exactly what it gets
alone. :func:`batch_blocker` checks that statically, op by op; :func:`batched_args` rewrites the few
arguments that spell the batch out (a reshape's target shape, a slice's bounds on axis 0).
"""
from __future__ import annotations

import numpy as np

from .reader import Operation, ProgramSpec, Ref

ELEMENTWISE = {"add", "sub", "mul", "relu", "gelu", "rsqrt", "cast", "batch_norm", "quantize", "dequantize"}
AXIS_OPS = {"softmax": "axis", "concat": "axis", "reduce_mean": "axes", "layer_norm": "axes"}
SAFE = ELEMENTWISE | set(AXIS_OPS) | {"reshape", "transpose", "slice_by_index", "matmul", "linear", "conv",
                                      "classify"}


def constant_names(spec: ProgramSpec) -> set[str]:
    """Variables that do not depend on any program input (const ops and ops on constants only)."""
    names: set[str] = set()
    for op in spec.operations:
        refs = [a.name for args in op.inputs.values() for a in args if isinstance(a, Ref)]
        if all(name in names for name in refs):
            names.update(v.name for v in op.outputs)
    return names


def batch_blocker(spec: ProgramSpec, constants: set[str]) -> str | None:
    """Why the program cannot take N images along axis 0 in one pass, or None when it can."""
    for var in spec.inputs:
        if not var.shape or var.shape[0] != 1:
            return f"input {var.name!r} has no leading batch dimension of 1"
    ranks = {v.name: len(v.shape) for v in spec.inputs}
    literals = {op.outputs[0].name: op.inputs["val"][0] for op in spec.operations if op.type == "const"}
    for op in spec.operations:
        if all(v.name in constants for v in op.outputs):
            continue
        why = _op_blocker(op, constants, ranks, literals)
        if why:
            return f"op {op.type} {op.name!r}: {why}"
        ranks.update((v.name, len(v.shape)) for v in op.outputs if v.shape is not None)
    return None


def _op_blocker(op: Operation, constants: set[str], ranks: dict[str, int], literals: dict) -> str | None:
    """Why ``op`` would mix images of a batch, or None (``literals``: the const ops' values)."""
    if op.type not in SAFE:
        return "not known to keep images apart"
    if op.type == "classify":  # one label per image (ops.classify, batched)
        return None
    for var in op.outputs:
        if not var.shape or var.shape[0] != 1:
            return f"output {var.name!r} has no leading batch dimension of 1"
    rank = len(op.outputs[0].shape)
    def value(key):  # an argument, a const op's value in place of its name
        arg = op.inputs[key][0] if key in op.inputs else None
        return literals.get(arg.name, arg) if isinstance(arg, Ref) else arg
    varying = [a.name for args in op.inputs.values() for a in args
               if isinstance(a, Ref) and a.name not in constants]
    if any(ranks.get(name) != rank for name in varying) and op.type in ELEMENTWISE | {"concat", "matmul"}:
        return "an input of another rank would broadcast across the batch"
    x = value("x")
    in_rank = ranks.get(x.name, rank) if isinstance(x, Ref) else rank
    if op.type in AXIS_OPS:
        axes = value(AXIS_OPS[op.type])
        if axes is None or isinstance(axes, Ref) or 0 in {int(a) % in_rank for a in np.atleast_1d(axes)}:
            return f"{AXIS_OPS[op.type]} includes the batch axis"
    if op.type in ("quantize", "dequantize") and value("axis") is not None and int(value("axis")) % rank == 0:
        return "per-axis parameters along the batch axis"
    if op.type == "transpose" and int(np.asarray(value("perm"))[0]) != 0:
        return "the batch axis is moved"
    if op.type == "slice_by_index":
        return _slice_blocker(value)
    if op.type in ("matmul", "linear") and rank < 3 and _matrix_blocker(op, value, varying):
        return "the batch axis takes part in the product"
    return None


def _matrix_blocker(op: Operation, value, varying: list[str]) -> bool:
    """A rank-2 product keeps images apart only as (N, C) rows times a constant matrix."""
    x, other = value("x"), value("weight" if op.type == "linear" else "y")
    return not isinstance(x, Ref) or x.name not in varying or (isinstance(other, Ref) and other.name in varying) \
        or bool(value("transpose_x"))


def _slice_blocker(value) -> str | None:
    def first(key, default):
        arg = value(key)
        return default if arg is None else np.atleast_1d(arg)[0]
    if isinstance(value("begin"), Ref) or isinstance(value("end"), Ref):
        return "slice bounds computed at run time"
    whole = (bool(first("begin_mask", False)) or int(first("begin", 0)) == 0) and \
            (bool(first("end_mask", False)) or int(first("end", 1)) >= 1)
    if bool(first("squeeze_mask", False)) or int(first("stride", 1)) != 1 or not whole:
        return "the batch axis is sliced"
    return None


def batched_args(op_type: str, args: dict, batch: int) -> dict:
    """``args`` of one op with the batch size spelled where the program spells a 1."""
    if op_type == "reshape":
        return {**args, "shape": [batch] + [int(s) for s in np.asarray(args["shape"])[1:]]}
    if op_type == "slice_by_index":
        rank = len(np.atleast_1d(args["begin"]))
        masks = {key: np.asarray([False] * rank if args.get(key) is None else args[key], bool).copy()
                 for key in ("begin_mask", "end_mask")}
        for mask in masks.values():
            mask[0] = True
        return {**args, **masks}
    if op_type == "classify":
        return {**args, "batched": True}
    if op_type == "concat":
        return {**args, "values": [np.broadcast_to(v, (batch,) + v.shape[1:]) for v in args["values"]]}
    return args
