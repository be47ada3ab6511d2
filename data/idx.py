"""Reader for the IDX format used by (Fashion-)MNIST, raw or gzip-compressed."""
from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError

UBYTE = 0x08


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file with ``ndim`` dimensions as a read-only uint8 array.

    Decoded arrays are cached per (path, mtime, size), so train and val share one decode.
    """
    path = Path(path)
    stat = path.stat()
    return _read_idx_cached(str(path), stat.st_mtime_ns, stat.st_size, ndim)


@functools.lru_cache(maxsize=4)
def _read_idx_cached(path: str, mtime_ns: int, size: int, ndim: int) -> np.ndarray:
    try:
        data = gzip.decompress(Path(path).read_bytes()) if path.endswith(".gz") else Path(path).read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"corrupt IDX file {path} ({exc}): delete it and reinstall the data set") from None
    header = 4 + 4 * ndim
    if len(data) < header or data[0:2] != b"\0\0" or data[2] != UBYTE or data[3] != ndim:
        raise DataError(f"corrupt IDX file {path}: bad magic number, expected an unsigned-byte "
                        f"IDX file with {ndim} dimensions; delete it and reinstall the data set")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise DataError(f"corrupt IDX file {path}: header says shape {shape} but the file holds "
                        f"{len(data) - header} bytes of data; delete it and reinstall the data set")
    array = np.frombuffer(data, np.uint8, offset=header).reshape(shape)
    array.setflags(write=False)
    return array
