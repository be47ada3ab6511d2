"""numpy kernels for activation quantization (W8A8) and compressed weights (constexpr ops).

Weights are decompressed in float32 and rounded once to the declared dtype; quantize divides,
rounds half to even and clips, each step giving the value the input's dtype would give.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np

from .dtypes import FLOAT16_PATTERNS, STORAGE, unpack_bits
from .ops import registrar

F32 = np.float32
OPS: dict[str, Callable] = {}
op = registrar(OPS)


def _along(param: np.ndarray, rank: int, axis) -> np.ndarray:
    """A scalar, or a vector laid along ``axis`` of a rank-``rank`` tensor."""
    param = np.asarray(param)
    if param.ndim in (0, rank):
        return param
    shape = [1] * rank
    shape[int(axis) % rank] = -1
    return param.reshape(shape)


@op("quantize")
def quantize(input, scale, output_dtype: str, zero_point=None, axis=None):
    if input.dtype == np.float16 and _per_tensor(scale, zero_point):  # 65,536 possible inputs: look them up
        return _quantize_table(*_key(scale), *_key(zero_point), output_dtype)[input.view(np.uint16)]
    return _quantize(input, scale, output_dtype, zero_point, axis)


@op("dequantize")
def dequantize(input, scale, zero_point=None, axis=None):
    if input.dtype.itemsize == 1 and _per_tensor(scale, zero_point):  # 256 possible inputs: look them up
        return _dequantize_table(input.dtype.str, *_key(scale), *_key(zero_point))[input.view(np.uint8)]
    return _dequantize(input, scale, zero_point, axis)


def _quantize(input, scale, output_dtype: str, zero_point=None, axis=None):
    # float32 arithmetic rounded to the operands' type after each step: the same values as numpy's float16
    # loops (float32 carries more than twice float16's precision), computed several times faster
    dtype = np.result_type(input, scale)
    ratio = input.astype(F32) / _along(scale, input.ndim, axis).astype(F32)
    q = np.rint(ratio.astype(dtype).astype(F32, copy=False))  # half to even
    if zero_point is not None:  # integers: exact, or far beyond the clip range
        q = q + _along(zero_point, input.ndim, axis).astype(F32)
    info = np.iinfo(STORAGE[output_dtype])
    return np.clip(q, info.min, info.max).astype(STORAGE[output_dtype])


def _dequantize(input, scale, zero_point=None, axis=None):
    x = input.astype(F32)
    if zero_point is not None:  # a difference of 8-bit integers: exact in any float type
        x = x - _along(zero_point, input.ndim, axis).astype(F32)
    return (x * _along(scale, input.ndim, axis).astype(F32)).astype(scale.dtype)


# Per-tensor quantize of float16 and dequantize of 8-bit codes are functions of a 16- or 8-bit pattern:
# each op's table holds the kernel above applied to every pattern once, so a lookup gives its values.
def _per_tensor(scale, zero_point) -> bool:
    return np.size(scale) == 1 and (zero_point is None or np.size(zero_point) == 1)


def _key(value) -> tuple:
    """A hashable, exact form of a scalar parameter (or of None)."""
    return (None, None) if value is None else (np.asarray(value).dtype.str, np.asarray(value).tobytes())


def _scalar(dtype: str | None, data: bytes | None):
    return None if dtype is None else np.frombuffer(data, dtype)[0]


@lru_cache(maxsize=1024)
def _quantize_table(scale_dtype, scale, zero_dtype, zero, output_dtype: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN patterns: whatever the kernel gives them
        return _quantize(FLOAT16_PATTERNS, _scalar(scale_dtype, scale), output_dtype, _scalar(zero_dtype, zero))


@lru_cache(maxsize=1024)
def _dequantize_table(code_dtype: str, scale_dtype, scale, zero_dtype, zero) -> np.ndarray:
    codes = np.arange(256, dtype=np.uint8).view(code_dtype)
    return _dequantize(codes, _scalar(scale_dtype, scale), _scalar(zero_dtype, zero))


@op("constexpr_affine_dequantize")
def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    rank = quantized_data.ndim
    shifted = quantized_data.astype(F32) - _along(zero_point, rank, axis).astype(F32)
    return (shifted * _along(scale, rank, axis).astype(F32)).astype(scale.dtype)


def _block_shapes(data_shape: tuple[int, ...], param_shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Shapes that split data into (p0, n0 / p0, p1, ...) blocks and spread one parameter per block."""
    if len(param_shape) != len(data_shape) or any(n % p for n, p in zip(data_shape, param_shape)):
        raise ValueError(f"block parameters of shape {param_shape} do not tile data of shape {data_shape}")
    split = [d for n, p in zip(data_shape, param_shape) for d in (p, n // p)]
    spread = [d for p in param_shape for d in (p, 1)]
    return split, spread


@op("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(data, scale, offset=None):
    split, spread = _block_shapes(data.shape, scale.shape)
    blocks = data.astype(F32).reshape(split)
    if offset is not None:
        blocks = blocks - offset.astype(F32).reshape(spread)
    return (blocks * scale.astype(F32).reshape(spread)).reshape(data.shape).astype(scale.dtype)


def _lut_blockwise(indices: np.ndarray, lut: np.ndarray, vector_axis) -> np.ndarray:
    """iOS 18 look-up: one palette (NUM_PALETTES, VECTOR_SIZE) per block of ``indices``."""
    rank, vector_size = indices.ndim, lut.shape[-1]
    split, spread = _block_shapes(indices.shape, lut.shape[:rank])
    palettes = lut.reshape(spread + list(lut.shape[-2:]))
    picked = np.take_along_axis(palettes, indices.astype(np.intp).reshape(split + [1, 1]), axis=-2)
    values = picked.reshape(indices.shape + (vector_size,))
    if vector_size == 1:
        return values[..., 0]
    axis = int(vector_axis) % rank
    shape = list(indices.shape)
    shape[axis] *= vector_size
    return np.moveaxis(values, -1, axis + 1).reshape(shape)


@op("constexpr_lut_to_dense")
def constexpr_lut_to_dense(indices, lut, shape=None, vector_axis=None):
    if shape is None:
        return _lut_blockwise(indices, lut, vector_axis)
    # iOS 16: indices packed LSB-first into bytes, one palette of 2**nbits entries.
    nbits = int(np.log2(lut.size))
    count = int(np.prod(shape))
    return lut[unpack_bits(indices, nbits, count)].reshape([int(s) for s in shape])


@op("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(nonzero_data, mask, shape=None):
    if shape is not None:  # iOS 16: a flat bit mask packed LSB-first into bytes
        mask = unpack_bits(mask, 1, int(np.prod(shape))).reshape([int(s) for s in shape])
    dense = np.zeros(mask.shape, nonzero_data.dtype)
    dense[mask != 0] = nonzero_data
    return dense


@op("constexpr_lut_to_sparse")
def constexpr_lut_to_sparse(indices_mask, indices_nonzero_data, lut, vector_axis=None):
    """Palettized non-zeros of a sparse tensor: (mask of the output, its non-zero values)."""
    indices = constexpr_sparse_to_dense(indices_nonzero_data, indices_mask)
    dense = _lut_blockwise(indices, lut, vector_axis)
    mask = indices_mask if lut.shape[-1] == 1 else np.repeat(indices_mask, lut.shape[-1], int(vector_axis))
    return mask, dense[mask != 0]
