"""Read the ML Program a Core ML model holds into plain Python: typed variables, ops, numpy constants."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from coremltools.models import MLModel
from coremltools.proto import FeatureTypes_pb2, MIL_pb2

from .blobs import BlobFile
from .dtypes import STORAGE, SUB_BYTE_BITS, mil_type_name, unpack_sub_byte

WEIGHTS_PREFIX = "@model_path/weights/"


@dataclass(frozen=True)
class Var:
    """A named value: ``dtype`` is a MIL type name ("fp16", "int8", "string", ...), or "list"/"dict";
    ``shape`` has None for a dimension that is not fixed (and is None for lists and dicts)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None


@dataclass(frozen=True)
class Ref:
    """An argument that names a variable (rather than holding a constant value)."""

    name: str


@dataclass(frozen=True)
class Operation:
    """One op: each input parameter maps to its arguments, each a ``Ref`` or a constant value."""

    type: str
    name: str
    inputs: dict[str, tuple]
    outputs: tuple[Var, ...]


@dataclass(frozen=True)
class ProgramSpec:
    """Function ``main``: its inputs, output names and ops in execution order."""

    inputs: tuple[Var, ...]
    outputs: tuple[str, ...]
    operations: tuple[Operation, ...]
    image_inputs: dict[str, str]  # input name -> colour layout ("RGB", "BGR", "GRAYSCALE", ...)
    source: str


def read_program(model: str | Path | MLModel) -> ProgramSpec:
    """Read function ``main`` of a saved ``.mlpackage`` (or an ``MLModel`` backed by one)."""
    if not isinstance(model, MLModel):
        if not Path(model).exists():
            raise FileNotFoundError(f"no Core ML model at {model}")
        model = MLModel(str(model), skip_model_load=True)
    spec = model.get_spec()
    source = str(model.package_path or "in-memory model")
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{source} holds a {spec.WhichOneof('Type')} model, not an ML Program")
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    values = _ValueReader(Path(model.weights_dir) if model.weights_dir else None)
    operations = tuple(_operation(op, values) for op in block.operations)
    image_inputs = {f.name: FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(f.type.imageType.colorSpace)
                    for f in spec.description.input if f.type.WhichOneof("Type") == "imageType"}
    return ProgramSpec(inputs=tuple(_var(v.name, v.type) for v in function.inputs), outputs=tuple(block.outputs),
                       operations=operations, image_inputs=image_inputs, source=source)


def _var(name: str, value_type: MIL_pb2.ValueType) -> Var:
    kind = value_type.WhichOneof("type")
    if kind == "tensorType":
        tensor = value_type.tensorType
        shape = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None
                      for d in tensor.dimensions)
        return Var(name, mil_type_name(tensor.dataType), shape)
    return Var(name, {"listType": "list", "dictionaryType": "dict"}.get(kind, kind), None)


def _operation(op: MIL_pb2.Operation, values: "_ValueReader") -> Operation:
    inputs = {key: tuple(Ref(a.name) if a.WhichOneof("binding") == "name" else values.read(a.value)
                         for a in arg.arguments) for key, arg in op.inputs.items()}
    # const and the iOS 16/17 constexpr ops carry their data as attributes.
    inputs.update({key: (values.read(v),) for key, v in op.attributes.items() if key != "name"})
    name = op.attributes["name"].immediateValue.tensor.strings.values[0] if "name" in op.attributes else ""
    return Operation(op.type, name or op.outputs[0].name, inputs, tuple(_var(o.name, o.type) for o in op.outputs))


class _ValueReader:
    """Decodes ``MIL_pb2.Value``s: immediate tensors and lists, and blobs in the package's weight files."""

    def __init__(self, weights_dir: Path | None):
        self.weights_dir, self.files = weights_dir, {}

    def read(self, value: MIL_pb2.Value):
        if value.type.WhichOneof("type") == "listType":
            return [self.read(v) for v in value.immediateValue.list.values]
        var = _var("", value.type)
        shape = tuple(var.shape)
        if value.WhichOneof("value") == "blobFileValue":
            array = self._blob_file(value.blobFileValue.fileName).read(value.blobFileValue.offset, var.dtype, shape)
        else:
            array = self._immediate(value.immediateValue.tensor, var.dtype, shape)
        return str(array) if var.dtype == "string" and array.ndim == 0 else array

    @staticmethod
    def _immediate(tensor: MIL_pb2.TensorValue, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        field = tensor.WhichOneof("value")
        if field is None:
            array = np.zeros(count, STORAGE[dtype])
        elif field == "bytes":
            raw = np.frombuffer(tensor.bytes.values, np.uint8)
            array = unpack_sub_byte(raw, dtype, count) if dtype in SUB_BYTE_BITS else raw.view(STORAGE[dtype])
        else:
            array = np.array(list(getattr(tensor, field).values), dtype=STORAGE[dtype])
        if array.size != count:
            raise ValueError(f"immediate {dtype} value has {array.size} elements, its type declares shape {shape}")
        return array.reshape(shape)

    def _blob_file(self, file_name: str) -> BlobFile:
        if self.weights_dir is None or not file_name.startswith(WEIGHTS_PREFIX):
            raise ValueError(f"weight file {file_name!r} is not inside the package's weights folder")
        if file_name not in self.files:
            self.files[file_name] = BlobFile(self.weights_dir / file_name[len(WEIGHTS_PREFIX):])
        return self.files[file_name]
