"""numpy kernels for the MIL tensor ops of our models' programs.

Every op returns its result in the dtype the program declares, so an fp16 program runs in float16:
elementwise arithmetic rounds each step to float16 (numpy float16 semantics, so overflow to inf
shows); transcendental functions (erf, exp, rsqrt) are evaluated in float32 and rounded once; sums
and sums of products (conv, matmul, linear, means, variance, the softmax denominator) accumulate
in float32, as fp16 hardware kernels do, and are rounded when stored.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .dtypes import FLOAT16_PATTERNS, STORAGE
from .half import nonnegative_to_float16, to_float32

F32 = np.float32


def registrar(table: dict[str, Callable]) -> Callable:
    """A decorator ``@op("name")`` that files a kernel under its MIL op name in ``table``."""
    def op(name: str):
        def register(fn: Callable) -> Callable:
            table[name] = fn
            return fn
        return register
    return op


OPS: dict[str, Callable] = {}
op = registrar(OPS)


def _f32(x: np.ndarray) -> np.ndarray:
    return to_float32(x)


def _axes(axes, rank: int) -> tuple[int, ...]:
    return tuple(sorted(int(a) % rank for a in np.atleast_1d(axes)))


@op("const")
def const(val):
    return val


@op("cast")
def cast(x, dtype: str):
    return x.astype(STORAGE[dtype])


@op("add")
def add(x, y):
    return np.add(x, y)


@op("sub")
def sub(x, y):
    return np.subtract(x, y)


@op("mul")
def mul(x, y):
    return np.multiply(x, y)


@op("relu")
def relu(x):
    return np.maximum(x, x.dtype.type(0))


def erf(x: np.ndarray) -> np.ndarray:
    """Error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7), evaluated in float64."""
    x = x.astype(np.float64)
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


GELU_CHUNK = 1 << 15  # elements per pass: the float64 temporaries of erf stay in cache


@op("gelu")
def gelu(x, mode: str = "EXACT"):
    """GELU: float16 by table lookup, float32 in chunks of ``GELU_CHUNK`` elements (the same values as
    in one pass, and at 224 px about twice as fast: a stage-1 MLP's float64 temporaries are 400 MB each)."""
    if mode not in ("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"):
        raise NotImplementedError(f"gelu mode {mode!r} is not supported")
    if x.dtype == np.float16:  # 65,536 possible inputs: look up the values _gelu gives them
        return _gelu_table(mode)[x.view(np.uint16)]
    flat, out = x.reshape(-1), np.empty(x.size, x.dtype)
    for start in range(0, flat.size, GELU_CHUNK):
        out[start:start + GELU_CHUNK] = _gelu(flat[start:start + GELU_CHUNK], mode)
    return out.reshape(x.shape)


@lru_cache(maxsize=None)
def _gelu_table(mode: str) -> np.ndarray:
    """``_gelu`` of every float16 bit pattern, indexed by the pattern."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinity patterns
        return _gelu(FLOAT16_PATTERNS, mode)


def _gelu(x: np.ndarray, mode: str) -> np.ndarray:
    v = _f32(x)
    if mode == "EXACT":
        y = 0.5 * v * (1.0 + erf(v / np.sqrt(2.0)))
    elif mode == "TANH_APPROXIMATION":
        y = 0.5 * v * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (v + 0.044715 * v ** 3)))
    else:
        y = v / (1.0 + np.exp(-1.702 * v))
    return y.astype(x.dtype)


@op("rsqrt")
def rsqrt(x, epsilon=1e-12):
    return (1.0 / np.sqrt(_f32(x + np.asarray(epsilon, x.dtype)))).astype(x.dtype)


@op("softmax")
def softmax(x, axis=-1):
    """Softmax. Of float16: exp by table and numpy's float16 division as numpy computes it (in float32,
    rounded once), the rounding done by ``half`` (probabilities are often float16 subnormals, which
    numpy rounds slowly)."""
    shifted = x - np.max(x, axis=int(axis), keepdims=True)
    if x.dtype != np.float16:
        exps = np.exp(shifted)
        return exps / np.sum(exps, axis=int(axis), keepdims=True, dtype=F32).astype(x.dtype)
    exps = to_float32(_exp_table()[shifted.view(np.uint16)])
    total = np.sum(exps, axis=int(axis), keepdims=True).astype(np.float16)
    return nonnegative_to_float16(exps / to_float32(total))


@lru_cache(maxsize=None)
def _exp_table() -> np.ndarray:
    """``np.exp`` of every float16 bit pattern, indexed by the pattern."""
    with np.errstate(over="ignore", invalid="ignore"):  # infinities and NaN patterns
        return np.exp(FLOAT16_PATTERNS)


@op("reduce_mean")
def reduce_mean(x, axes=None, keep_dims=False):
    axes = None if axes is None else _axes(axes, x.ndim)
    return np.asarray(np.mean(x, axis=axes, keepdims=bool(keep_dims), dtype=F32)).astype(x.dtype)


@op("layer_norm")
def layer_norm(x, axes, gamma=None, beta=None, epsilon=1e-5):
    axes = _axes(axes, x.ndim)
    mean = np.mean(x, axis=axes, keepdims=True, dtype=F32).astype(x.dtype)
    centred = x - mean
    var = np.mean(np.square(_f32(centred)), axis=axes, keepdims=True).astype(x.dtype)
    out = centred * rsqrt(var, epsilon)
    param_shape = [n if i in axes else 1 for i, n in enumerate(x.shape)]
    if gamma is not None:
        out = out * gamma.reshape(param_shape)
    if beta is not None:
        out = out + beta.reshape(param_shape)
    return out


@op("batch_norm")
def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    """Per-channel (axis 1) affine map; its float32 scale and shift are folded from the statistics."""
    scale = 1.0 / np.sqrt(_f32(variance) + F32(epsilon))
    if gamma is not None:
        scale = scale * _f32(gamma)
    shift = -_f32(mean) * scale + (0.0 if beta is None else _f32(beta))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (_f32(x) * scale.reshape(shape) + shift.reshape(shape)).astype(x.dtype)


@op("reshape")
def reshape(x, shape):
    shape = [int(s) for s in shape]
    if len(shape) == x.ndim:  # 0 keeps the input's dimension
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@op("transpose")
def transpose(x, perm):
    return np.transpose(x, [int(p) for p in perm])


@op("concat")
def concat(values, axis, interleave=False):
    axis = int(axis) % values[0].ndim
    if not interleave:
        return np.concatenate(values, axis=axis)
    stacked = np.stack(values, axis=axis + 1)
    return stacked.reshape(values[0].shape[:axis] + (-1,) + values[0].shape[axis + 1:])


@op("slice_by_index")
def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    rank = x.ndim
    stride = [1] * rank if stride is None else [int(s) for s in stride]
    begin_mask, end_mask, squeeze_mask = ([False] * rank if m is None else [bool(v) for v in m]
                                          for m in (begin_mask, end_mask, squeeze_mask))
    index = []
    for i in range(rank):
        if squeeze_mask[i]:
            index.append(int(begin[i]))
        else:
            index.append(slice(None if begin_mask[i] else int(begin[i]), None if end_mask[i] else int(end[i]),
                               stride[i]))
    return np.asarray(x[tuple(index)])


@op("matmul")
def matmul(x, y, transpose_x=False, transpose_y=False):
    a, b = _f32(x), _f32(y)
    if transpose_x and a.ndim > 1:
        a = np.swapaxes(a, -1, -2)
    if transpose_y and b.ndim > 1:
        b = np.swapaxes(b, -1, -2)
    return np.asarray(np.matmul(a, b)).astype(x.dtype, copy=False)


@op("linear")
def linear(x, weight, bias=None):
    out = np.matmul(_f32(x), _f32(weight).T)
    if bias is not None:
        out += _f32(bias)
    return out.astype(x.dtype, copy=False)


def conv_padding(pad_type: str, pad, size: tuple[int, ...], kernel: tuple[int, ...], strides, dilations):
    """(before, after) padding per spatial axis for MIL pad_type "valid", "custom", "same" or "same_lower"."""
    if pad_type == "valid":
        return [(0, 0)] * len(size)
    if pad_type == "custom":
        return [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(size))]
    if pad_type not in ("same", "same_lower"):
        raise NotImplementedError(f"conv pad_type {pad_type!r} is not supported")
    pads = []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small = total // 2
        pads.append((small, total - small) if pad_type == "same" else (total - small, small))
    return pads


@op("conv")
def conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    """2-D convolution, NCHW input and (C_out, C_in / groups, KH, KW) weight."""
    if x.ndim != 4:
        raise NotImplementedError(f"conv on a rank-{x.ndim} input: only 2-D convolution is supported")
    kernel = weight.shape[2:]
    strides = (1, 1) if strides is None else tuple(int(s) for s in strides)
    dilations = (1, 1) if dilations is None else tuple(int(d) for d in dilations)
    pads = conv_padding(str(pad_type), pad, x.shape[2:], kernel, strides, dilations)
    xp = _padded(x, pads)
    w, groups = _f32(weight), int(groups)
    (sh, sw), (dh, dw), (kh, kw) = strides, dilations, kernel
    n, c, h, wd = xp.shape
    out_h, out_w = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    if groups == c == w.shape[0]:  # depthwise: a sum of shifted, scaled copies
        out = np.zeros((n, c, out_h, out_w), F32)
        for i in range(kh):
            for j in range(kw):
                window = xp[:, :, i * dh:i * dh + sh * (out_h - 1) + 1:sh, j * dw:j * dw + sw * (out_w - 1) + 1:sw]
                out += window * w[:, 0, i, j][None, :, None, None]
    elif kh == kw == 1:  # a matrix product per pixel
        cols = xp[:, :, ::sh, ::sw][:, :, :out_h, :out_w].reshape(n, c, out_h * out_w)
        out = _grouped(lambda xg, wg: np.matmul(wg[:, :, 0, 0], xg), cols, w, groups).reshape(n, -1, out_h, out_w)
    else:  # im2col: (N, C, OH, OW, KH, KW) windows contracted with the kernel
        windows = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
        cols = windows[:, :, ::sh, ::sw, ::dh, ::dw]
        out = _grouped(lambda xg, wg: np.tensordot(xg, wg, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2),
                       cols, w, groups)
    if bias is not None:
        out += _f32(bias)[None, :, None, None]
    return out.astype(x.dtype, copy=False)


def _padded(x: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    """NCHW ``x`` in float32 with zeros around its spatial axes, converted and padded in one copy."""
    if not any(before or after for before, after in pads):
        return _f32(x)
    (top, bottom), (left, right) = pads
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + top + bottom, w + left + right), F32)
    out[:, :, top:top + h, left:left + w] = x
    return out


def _grouped(kernel: Callable, cols: np.ndarray, w: np.ndarray, groups: int) -> np.ndarray:
    cin, cout = cols.shape[1] // groups, w.shape[0] // groups
    return np.concatenate([kernel(cols[:, g * cin:(g + 1) * cin], w[g * cout:(g + 1) * cout])
                           for g in range(groups)], axis=1)


@op("classify")
def classify(probabilities, classes, batched=False):
    """Core ML classifier head: the top class label, and the scores (ordered like ``classes``).

    ``batched``: one label per image of a batch along axis 0."""
    if batched:
        return np.asarray([classes[int(i)] for i in np.argmax(probabilities.reshape(len(probabilities), -1), 1)]), \
            probabilities
    label = classes[int(np.argmax(probabilities))]
    return np.asarray(label), probabilities
