"""The weight file of an ML Program (``weights/weight.bin``): MIL blob storage version 2, read with numpy.

Layout: a 64-byte header (uint32 blob count, uint32 version), then per blob a 64-byte metadata
record (uint32 sentinel 0xDEADBEEF, uint32 data type, uint64 size in bytes, uint64 data offset,
uint64 padding bits of the last byte) that a program's ``blobFileValue.offset`` points to.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .dtypes import STORAGE, SUB_BYTE_BITS, unpack_sub_byte

SENTINEL = 0xDEADBEEF
BLOB_TYPES = {1: "fp16", 2: "fp32", 3: "uint8", 4: "int8", 5: "bf16", 6: "int16", 7: "uint16", 8: "int4",
              9: "uint1", 10: "uint2", 11: "uint4", 12: "uint3", 13: "uint6", 14: "int32", 15: "uint32"}


class BlobFile:
    """Typed arrays stored in one blob storage file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data = np.fromfile(self.path, dtype=np.uint8)
        self.data.flags.writeable = False
        version = int(self.data[4:8].view(np.uint32)[0]) if self.data.size >= 64 else None
        if version != 2:
            raise ValueError(f"{self.path}: not a version-2 MIL blob storage file (version {version})")

    def read(self, offset: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        """The array of ``dtype`` and ``shape`` whose metadata record starts at ``offset``."""
        meta = self.data[offset:offset + 64]
        sentinel, code = (int(v) for v in meta[:8].view(np.uint32))
        size, start, padding_bits = (int(v) for v in meta[8:32].view(np.uint64))
        where = f"{self.path} at offset {offset}"
        if sentinel != SENTINEL:
            raise ValueError(f"{where}: no blob metadata record (sentinel {sentinel:#x})")
        if BLOB_TYPES.get(code) != dtype:
            raise ValueError(f"{where}: blob holds {BLOB_TYPES.get(code, code)} but the program declares {dtype}")
        count = int(np.prod(shape, dtype=np.int64))
        raw = self.data[start:start + size]
        if dtype in SUB_BYTE_BITS:
            stored = (size * 8 - padding_bits) // SUB_BYTE_BITS[dtype]
            values = unpack_sub_byte(raw, dtype, count) if stored == count else None
        else:
            stored = size // STORAGE[dtype].itemsize
            values = raw.view(STORAGE[dtype]) if stored == count else None
        if values is None:
            raise ValueError(f"{where}: blob holds {stored} {dtype} values, the program declares shape {shape}")
        return values.reshape(shape)
