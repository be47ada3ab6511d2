"""MIL data types: their names, numpy storage types and the packing of sub-byte integers."""
from __future__ import annotations

import numpy as np
from coremltools.proto import MIL_pb2

_T = MIL_pb2.DataType
# MIL DataType enum -> (name used in this package, numpy dtype that holds the values).
MIL_TYPES: dict[int, tuple[str, type]] = {
    _T.BOOL: ("bool", np.bool_), _T.STRING: ("string", np.str_),
    _T.FLOAT16: ("fp16", np.float16), _T.FLOAT32: ("fp32", np.float32), _T.FLOAT64: ("fp64", np.float64),
    _T.INT8: ("int8", np.int8), _T.INT16: ("int16", np.int16), _T.INT32: ("int32", np.int32),
    _T.INT64: ("int64", np.int64), _T.UINT8: ("uint8", np.uint8), _T.UINT16: ("uint16", np.uint16),
    _T.UINT32: ("uint32", np.uint32), _T.UINT64: ("uint64", np.uint64),
    _T.INT4: ("int4", np.int8), _T.UINT1: ("uint1", np.uint8), _T.UINT2: ("uint2", np.uint8),
    _T.UINT3: ("uint3", np.uint8), _T.UINT4: ("uint4", np.uint8), _T.UINT6: ("uint6", np.uint8),
}
STORAGE: dict[str, np.dtype] = {name: np.dtype(np_type) for name, np_type in MIL_TYPES.values()}
SUB_BYTE_BITS = {"int4": 4, "uint1": 1, "uint2": 2, "uint3": 3, "uint4": 4, "uint6": 6}
# Every float16 value, indexed by its bit pattern: kernels of one float16 input tabulate themselves on it.
FLOAT16_PATTERNS = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
FLOAT16_PATTERNS.flags.writeable = False


def mil_type_name(code: int) -> str:
    if code not in MIL_TYPES:
        raise NotImplementedError(f"MIL data type {_T.Name(code)} is not supported by the reference evaluator")
    return MIL_TYPES[code][0]


def unpack_bits(packed: np.ndarray, nbits: int, count: int, signed: bool = False) -> np.ndarray:
    """The first ``count`` ``nbits``-bit integers packed LSB-first into the bytes ``packed``."""
    bits = np.unpackbits(np.ascontiguousarray(packed).view(np.uint8), bitorder="little")
    if bits.size < count * nbits:
        raise ValueError(f"{bits.size} bits cannot hold {count} {nbits}-bit values")
    values = (bits[:count * nbits].reshape(count, nbits).astype(np.int16) << np.arange(nbits)).sum(axis=1)
    if signed:
        values = np.where(values >= 1 << (nbits - 1), values - (1 << nbits), values)
    return values.astype(np.int8 if signed else np.uint8)


def unpack_sub_byte(packed: np.ndarray, dtype: str, count: int) -> np.ndarray:
    """The first ``count`` values of sub-byte type ``dtype`` ("int4", "uint1", ...) packed in ``packed``."""
    return unpack_bits(packed, SUB_BYTE_BITS[dtype], count, signed=dtype.startswith("int"))
