"""Evaluate an ML Program op by op, checking each result against the type the program declares."""
from __future__ import annotations

import os
from collections import Counter

import numpy as np
from coremltools.models import MLModel

from . import ops, quant
from .batching import batch_blocker, batched_args, constant_names
from .dtypes import STORAGE
from .reader import Operation, ProgramSpec, Ref, Var, read_program

KERNELS = {**ops.OPS, **quant.OPS}
VARIADIC = {"values"}  # parameters that take a tuple of arguments (concat)
PIXEL_LAYOUTS = ("RGB", "BGR", "GRAYSCALE")  # 8-bit image inputs: Core ML feeds pixel values 0..255


class UnsupportedOpError(NotImplementedError):
    """The program contains an op the reference evaluator has no kernel for."""


class ProgramError(RuntimeError):
    """A value disagrees with the type or shape the program declares for it."""


class Program:
    """A Core ML ML Program (function ``main``) read from a saved ``.mlpackage``.

    Image inputs take a float array (1, C, H, W) of pixel values 0..255 in the model's colour
    layout (``image_inputs``); Core ML's scale/bias preprocessing is part of the program itself.
    A classifier's probabilities output holds the scores as a tensor ordered like its class labels.
    """

    def __init__(self, spec: ProgramSpec):
        self.spec = spec
        self.image_inputs = dict(spec.image_inputs)
        self._constant_names = constant_names(spec)
        self._constants: dict[str, np.ndarray] | None = None  # computed on the first run
        self.batch_blocker = batch_blocker(spec, self._constant_names)
        last_use = {}
        for i, op in enumerate(spec.operations):
            for args in op.inputs.values():
                last_use.update({a.name: i for a in args if isinstance(a, Ref)})
        self._release = [[] for _ in spec.operations]
        for name, i in last_use.items():
            if name not in spec.outputs:
                self._release[i].append(name)

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.spec.inputs]

    @property
    def output_names(self) -> list[str]:
        return list(self.spec.outputs)

    def op_types(self) -> Counter:
        """How often each op type occurs (const included)."""
        return Counter(op.type for op in self.spec.operations)

    def max_rank(self) -> int:
        """The highest tensor rank among the program's inputs and op outputs."""
        vars_ = list(self.spec.inputs) + [v for op in self.spec.operations for v in op.outputs]
        return max(len(v.shape) for v in vars_ if v.shape is not None)

    def compute_precision(self) -> str:
        """The type float ops compute in: "fp16" or "fp32" when all agree, else "mixed".

        Constants, casts, quantization and the image scale/bias preprocessing are not counted.
        """
        constants = {v.name for op in self.spec.operations if op.type == "const" for v in op.outputs}
        preprocessing, pre_ops = set(self.image_inputs), set()
        for op in self.spec.operations:
            names = {a.name for args in op.inputs.values() for a in args if isinstance(a, Ref)} - constants
            if op.type in ("mul", "add") and names and names <= preprocessing:
                preprocessing.update(v.name for v in op.outputs)
                pre_ops.add(id(op))
        skip = ("const", "cast", "classify", "quantize")
        floats = {v.dtype for op in self.spec.operations
                  if op.type not in skip and not op.type.startswith("constexpr_") and id(op) not in pre_ops
                  for v in op.outputs if v.dtype in ("fp16", "fp32")}
        return floats.pop() if len(floats) == 1 else "mixed"

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Evaluate the program on ``inputs`` (name -> array).

        Inputs may hold N images along the batch axis the program declares as 1: in one pass when
        ``batch_blocker`` is None, else one image at a time. Returns the program's outputs, or the
        variables named in ``outputs`` (any op output).
        """
        wanted = list(self.spec.outputs if outputs is None else outputs)
        known = set(self.input_names) | {v.name for op in self.spec.operations for v in op.outputs}
        if not set(wanted) <= known:
            raise ValueError(f"the program has no variables {sorted(set(wanted) - known)}")
        unsupported = sorted({op.type for op in self.spec.operations if op.type not in KERNELS})
        if unsupported:
            first = next(op for op in self.spec.operations if op.type == unsupported[0])
            raise UnsupportedOpError(
                f"{self.spec.source}: op {first.type!r} (first at {first.name!r}) is not supported by the "
                f"mlprogram reference evaluator; unsupported op types: {', '.join(unsupported)}")
        env, batch = self._feed(inputs)
        if batch > 1 and self.batch_blocker:
            rows = [self._evaluate({k: v[i:i + 1] for k, v in env.items()}, wanted, 1) for i in range(batch)]
            return {name: np.concatenate([np.atleast_1d(row[name]) for row in rows]) for name in wanted}
        return self._evaluate(env, wanted, batch)

    def constants(self) -> dict[str, np.ndarray]:
        """Every value that depends on no input (weights decompressed), computed once."""
        if self._constants is None:
            env: dict[str, np.ndarray] = {}
            for op in self.spec.operations:
                if all(v.name in self._constant_names for v in op.outputs):
                    self._run_op(op, env, 1)
            self._constants = env
        return self._constants

    def _evaluate(self, env: dict[str, np.ndarray], wanted: list[str], batch: int) -> dict[str, np.ndarray]:
        env = {**self.constants(), **env}
        for op, release in zip(self.spec.operations, self._release):
            if op.outputs[0].name not in self._constant_names:
                self._run_op(op, env, batch)
            for name in release:
                if name not in wanted:
                    env.pop(name, None)
        return {name: np.asarray(env[name]) for name in wanted}

    def _run_op(self, op: Operation, env: dict[str, np.ndarray], batch: int) -> None:
        args = {key: [env[a.name] if isinstance(a, Ref) else a for a in values]
                for key, values in op.inputs.items()}
        args = {key: values if key in VARIADIC else values[0] for key, values in args.items()}
        if batch > 1:
            args = batched_args(op.type, args, batch)
        try:
            with np.errstate(all="ignore"):  # fp16 overflow is reported as inf in the values themselves
                result = KERNELS[op.type](**args)
        except NotImplementedError as err:
            raise UnsupportedOpError(f"op {op.type} {op.name!r}: {err}") from err
        except (ValueError, TypeError, IndexError) as err:
            raise ProgramError(f"op {op.type} {op.name!r} failed: {err}") from err
        for var, value in zip(op.outputs, result if len(op.outputs) > 1 else (result,)):
            env[var.name] = _checked(op, var, value, batch)

    def _feed(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """The inputs as the program's storage types, and how many images they hold."""
        expected = set(self.input_names)
        if set(inputs) != expected:
            raise ValueError(f"program inputs are {sorted(expected)}, got {sorted(inputs)}")
        env, batches = {}, set()
        for var in self.spec.inputs:
            value = np.asarray(inputs[var.name])
            batch = value.shape[0] if value.ndim and var.shape and var.shape[0] == 1 else 1
            if not _fits(value.shape, var.shape, batch):
                raise ValueError(f"input {var.name!r} has shape {value.shape}, the program expects {var.shape}")
            batches.add(batch)
            pixels = self.image_inputs.get(var.name) in PIXEL_LAYOUTS
            if pixels and value.size and (value.min() < 0 or value.max() > 255):
                raise ValueError(f"image input {var.name!r} takes pixel values 0..255 (scale/bias are applied "
                                 f"inside the program), got values in [{value.min()}, {value.max()}]")
            env[var.name] = value.astype(STORAGE[var.dtype])
        if len(batches) > 1:
            raise ValueError(f"the inputs hold different numbers of images: {sorted(batches)}")
        return env, batches.pop() if batches else 1


def _fits(shape: tuple[int, ...], declared: tuple[int | None, ...], batch: int = 1) -> bool:
    """``shape`` is the declared one, with ``batch`` images where the program declares one."""
    if batch > 1 and declared and declared[0] == 1:
        declared = (batch,) + tuple(declared[1:])
    return len(shape) == len(declared) and all(d in (None, n) for d, n in zip(declared, shape))


def _checked(op: Operation, var: Var, value, batch: int = 1):
    """``value`` after checking it against ``var``'s declared type; string scalars stay ``str``."""
    value = np.asarray(value)
    if var.dtype in ("dict", "list"):
        return value
    declared = var.shape if var.dtype != "string" or batch == 1 else (1,)  # a batch of labels
    dtype_ok = value.dtype.kind == "U" if var.dtype == "string" else value.dtype == STORAGE[var.dtype]
    if not dtype_ok or not _fits(value.shape, declared, batch):
        raise ProgramError(f"op {op.type} {op.name!r}: output {var.name!r} is {value.dtype}{list(value.shape)}, "
                           f"the program declares {var.dtype}{list(var.shape)}")
    return str(value) if var.dtype == "string" and value.ndim == 0 else value


def load(path: str | os.PathLike | MLModel) -> Program:
    """Read the ML Program of a saved ``.mlpackage`` (or of an ``MLModel`` backed by one)."""
    return Program(read_program(path))


def run(model_or_path: str | os.PathLike | MLModel | Program,
        inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate a Core ML ML Program on ``inputs`` with the numpy reference kernels."""
    program = model_or_path if isinstance(model_or_path, Program) else load(model_or_path)
    return program.run(inputs)
