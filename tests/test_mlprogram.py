"""The numpy ML Program evaluator (mlprogram/): each op against PyTorch, our models end to end."""
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import Function, Program as MilProgram, types

import mlprogram
from common.defaults import SHIPPED_VARIANT
from mlprogram.blobs import BlobFile
from model import create_model
from model.deploy import deploy_form
from model.shunted import ConvMlp, LayerNorm2d

F32, F16 = np.float32, np.float16
SCALE = 1 / (0.226 * 255)
BIAS = [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]
SPEC_FILE = Path("Data/com.apple.CoreML/model.mlmodel")
WEIGHT_FILE = Path("Data/com.apple.CoreML/weights/weight.bin")
rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape).astype(F32)


def save_mil(inputs: dict, build: Callable, path: Path, opset=ct.target.iOS17) -> Path:
    """Save, with no graph passes, the program ``build(input vars) -> outputs`` on ``inputs`` (name -> array)."""
    specs = {name: mb.placeholder(shape=a.shape, dtype=types.fp16 if a.dtype == F16 else types.fp32)
             for name, a in inputs.items()}
    program = MilProgram()
    with Function(specs, opset_version=opset) as function:
        function.set_outputs(build(function.inputs))
    program.add_function("main", function)
    model = ct.convert(program, convert_to="mlprogram", pass_pipeline=ct.PassPipeline.EMPTY,
                       compute_precision=ct.precision.FLOAT32, minimum_deployment_target=opset)
    model.save(str(path))
    return path


# ----------------------------------------------------------------------------- one op at a time
@dataclass
class Case:
    """One op: ``inputs`` feed the program, ``consts`` are baked in; ``build(dtype, input vars, consts,
    name)`` makes the MIL op, ``torch_fn(*inputs, *consts)`` computes the same in float32 PyTorch."""

    name: str
    inputs: list
    consts: list
    build: Callable
    torch_fn: Callable
    fp16: bool = True


def pads_then(fn, pads):
    return lambda x, w, *rest: fn(F.pad(x, pads), w, *rest)


def layer_norm_over(axes):
    def ref(x, *params, eps):
        mean = x.mean(dim=axes, keepdim=True)
        out = (x - mean) / torch.sqrt(((x - mean) ** 2).mean(dim=axes, keepdim=True) + eps)
        if params:
            shape = [n if i in [a % x.ndim for a in axes] else 1 for i, n in enumerate(x.shape)]
            out = out * params[0].reshape(shape) + params[1].reshape(shape)
        return out
    return ref


def torch_slice(index):
    return lambda x: x[index]


X4 = randn(2, 3, 4, 5)
CASES = [
    Case("add_broadcast", [X4, randn(3, 1, 1)], [], lambda dt, xs, cs, n: mb.add(x=xs[0], y=xs[1], name=n),
         torch.add),
    Case("sub_const_scalar", [randn(2, 3)], [], lambda dt, xs, cs, n: mb.sub(x=xs[0], y=dt(1.5), name=n),
         lambda x: x - 1.5),
    Case("mul_rank_broadcast", [randn(4, 1, 5), randn(3, 1)], [],
         lambda dt, xs, cs, n: mb.mul(x=xs[0], y=xs[1], name=n), torch.mul),
    Case("relu", [X4], [], lambda dt, xs, cs, n: mb.relu(x=xs[0], name=n), torch.relu),
    Case("gelu_exact", [3 * X4], [], lambda dt, xs, cs, n: mb.gelu(x=xs[0], name=n), F.gelu),
    Case("gelu_tanh", [3 * X4], [], lambda dt, xs, cs, n: mb.gelu(x=xs[0], mode="TANH_APPROXIMATION", name=n),
         lambda x: F.gelu(x, approximate="tanh")),
    Case("gelu_sigmoid", [3 * X4], [],
         lambda dt, xs, cs, n: mb.gelu(x=xs[0], mode="SIGMOID_APPROXIMATION", name=n),
         lambda x: x * torch.sigmoid(1.702 * x)),
    Case("rsqrt_epsilon", [np.abs(X4) + 0.01], [],
         lambda dt, xs, cs, n: mb.rsqrt(x=xs[0], epsilon=dt(0.5), name=n), lambda x: torch.rsqrt(x + 0.5)),
    Case("softmax_last", [4 * X4], [], lambda dt, xs, cs, n: mb.softmax(x=xs[0], axis=-1, name=n),
         lambda x: torch.softmax(x, -1)),
    Case("softmax_axis1", [4 * X4], [], lambda dt, xs, cs, n: mb.softmax(x=xs[0], axis=1, name=n),
         lambda x: torch.softmax(x, 1)),
    Case("reduce_mean_keep", [X4], [],
         lambda dt, xs, cs, n: mb.reduce_mean(x=xs[0], axes=[2, 3], keep_dims=True, name=n),
         lambda x: x.mean(dim=(2, 3), keepdim=True)),
    Case("reduce_mean_negative_axis", [X4], [],
         lambda dt, xs, cs, n: mb.reduce_mean(x=xs[0], axes=[-1], keep_dims=False, name=n),
         lambda x: x.mean(dim=-1)),
    Case("layer_norm_channels", [X4 * 3 + 1], [1 + randn(3) / 5, randn(3) / 5],
         lambda dt, xs, cs, n: mb.layer_norm(x=xs[0], axes=[1], gamma=cs[0], beta=cs[1], epsilon=dt(1e-5),
                                          name=n),
         lambda x, g, b: layer_norm_over([1])(x, g, b, eps=1e-5)),
    Case("layer_norm_negative_axis_big_epsilon", [X4 / 4], [],
         lambda dt, xs, cs, n: mb.layer_norm(x=xs[0], axes=[-1], epsilon=dt(0.1),
                                          name=n),
         lambda x: layer_norm_over([-1])(x, eps=0.1)),
    Case("layer_norm_spatial", [X4], [1 + randn(4, 5) / 5, randn(4, 5) / 5],
         lambda dt, xs, cs, n: mb.layer_norm(x=xs[0], axes=[2, 3], gamma=cs[0], beta=cs[1], epsilon=dt(1e-5),
                                          name=n),
         lambda x, g, b: layer_norm_over([2, 3])(x, g, b, eps=1e-5)),
    Case("batch_norm", [X4], [randn(3), 0.5 + np.abs(randn(3)), 1 + randn(3) / 5, randn(3)],
         lambda dt, xs, cs, n: mb.batch_norm(x=xs[0], mean=cs[0], variance=cs[1], gamma=cs[2], beta=cs[3],
                                             epsilon=dt(1e-3), name=n),
         lambda x, m, v, g, b: F.batch_norm(x, m, v, g, b, eps=1e-3)),
    Case("reshape_infer", [X4], [], lambda dt, xs, cs, n: mb.reshape(x=xs[0], shape=[2, -1, 5], name=n),
         lambda x: x.reshape(2, -1, 5)),
    Case("reshape_zero_keeps_dim", [X4], [],
         lambda dt, xs, cs, n: mb.reshape(x=xs[0], shape=[0, 0, 5, 4], name=n),
         lambda x: x.reshape(2, 3, 5, 4)),
    Case("transpose_nhwc", [X4], [], lambda dt, xs, cs, n: mb.transpose(x=xs[0], perm=[0, 2, 3, 1], name=n),
         lambda x: x.permute(0, 2, 3, 1)),
    Case("transpose_shuffle", [X4], [],
         lambda dt, xs, cs, n: mb.transpose(x=xs[0], perm=[3, 1, 0, 2], name=n),
         lambda x: x.permute(3, 1, 0, 2)),
    Case("matmul_broadcast_batch", [randn(2, 1, 4, 5), randn(3, 5, 6)], [],
         lambda dt, xs, cs, n: mb.matmul(x=xs[0], y=xs[1], name=n), torch.matmul),
    Case("matmul_transpose_y", [randn(2, 3, 4, 5), randn(2, 3, 6, 5)], [],
         lambda dt, xs, cs, n: mb.matmul(x=xs[0], y=xs[1], transpose_y=True, name=n),
         lambda x, y: x @ y.transpose(-1, -2)),
    Case("matmul_transpose_x", [randn(3, 5, 4), randn(3, 5, 6)], [],
         lambda dt, xs, cs, n: mb.matmul(x=xs[0], y=xs[1], transpose_x=True, name=n),
         lambda x, y: x.transpose(-1, -2) @ y),
    Case("linear", [randn(2, 5)], [randn(7, 5), randn(7)],
         lambda dt, xs, cs, n: mb.linear(x=xs[0], weight=cs[0], bias=cs[1], name=n), F.linear),
    Case("linear_no_bias", [randn(3, 2, 5)], [randn(7, 5)],
         lambda dt, xs, cs, n: mb.linear(x=xs[0], weight=cs[0], name=n), F.linear),
    Case("concat_negative_axis", [X4, randn(2, 3, 4, 2), randn(2, 3, 4, 1)], [],
         lambda dt, xs, cs, n: mb.concat(values=xs, axis=-1, name=n), lambda *v: torch.cat(v, -1)),
    Case("concat_interleave", [X4, X4 + 10], [],
         lambda dt, xs, cs, n: mb.concat(values=xs, axis=1, interleave=True, name=n),
         lambda a, b: torch.stack([a, b], 2).reshape(2, 6, 4, 5)),
    Case("slice_stride", [X4], [],
         lambda dt, xs, cs, n: mb.slice_by_index(x=xs[0], begin=[0, 1, 0, 0], end=[2, 3, 4, 5], stride=[1, 1, 2, 2],
                                              name=n),
         torch_slice((slice(0, 2), slice(1, 3), slice(0, 4, 2), slice(0, 5, 2)))),
    Case("slice_masks", [X4], [],
         lambda dt, xs, cs, n: mb.slice_by_index(x=xs[0], begin=[9, 1, 9, 2], end=[9, 9, 3, 9],
                                              begin_mask=[True, False, True, False],
                                              end_mask=[True, True, False, True], name=n),
         torch_slice((slice(None), slice(1, None), slice(None, 3), slice(2, None)))),
    Case("slice_negative_indices", [X4], [],
         lambda dt, xs, cs, n: mb.slice_by_index(x=xs[0], begin=[-1, -2, 0, -4], end=[2, 3, -1, -1],
                                              name=n),
         torch_slice((slice(-1, 2), slice(-2, 3), slice(0, -1), slice(-4, -1)))),
    Case("slice_negative_stride", [X4], [],
         lambda dt, xs, cs, n: mb.slice_by_index(x=xs[0], begin=[0, 0, 0, 3], end=[2, 3, 4, 0], stride=[1, 1, 1, -2],
                                              name=n),
         lambda x: torch.flip(x, (3,))[..., 1:5:2]),
    Case("slice_squeeze", [X4], [],
         lambda dt, xs, cs, n: mb.slice_by_index(x=xs[0], begin=[1, 0, 2, 0], end=[2, 3, 3, 5],
                                              squeeze_mask=[True, False, True, False], name=n),
         torch_slice((1, slice(None), 2, slice(None)))),
    Case("conv_valid_strided", [randn(1, 4, 9, 9)], [randn(6, 4, 3, 3) / 3, randn(6)],
         lambda dt, xs, cs, n: mb.conv(x=xs[0], weight=cs[0], bias=cs[1], strides=[2, 2], pad_type="valid",
                                    name=n),
         lambda x, w, b: F.conv2d(x, w, b, stride=2)),
    Case("conv_same_strided", [randn(1, 4, 8, 8)], [randn(5, 4, 3, 3) / 3],
         lambda dt, xs, cs, n: mb.conv(x=xs[0], weight=cs[0], strides=[2, 2], pad_type="same", name=n),
         pads_then(lambda x, w: F.conv2d(x, w, stride=2), (0, 1, 0, 1))),
    Case("conv_same_lower", [randn(1, 4, 8, 8)], [randn(5, 4, 3, 3) / 3],
         lambda dt, xs, cs, n: mb.conv(x=xs[0], weight=cs[0], strides=[2, 2], pad_type="same_lower",
                                    name=n),
         pads_then(lambda x, w: F.conv2d(x, w, stride=2), (1, 0, 1, 0))),
    Case("conv_custom_asymmetric_dilated", [randn(1, 4, 9, 10)], [randn(6, 4, 3, 2) / 3, randn(6)],
         lambda dt, xs, cs, n: mb.conv(x=xs[0], weight=cs[0], bias=cs[1], pad_type="custom", pad=[1, 2, 0, 3],
                                    strides=[1, 2], dilations=[2, 1], name=n),
         pads_then(lambda x, w, b: F.conv2d(x, w, b, stride=(1, 2), dilation=(2, 1)), (0, 3, 1, 2))),
    Case("conv_grouped", [randn(1, 4, 7, 7)], [randn(6, 2, 3, 3) / 3, randn(6)],
         lambda dt, xs, cs, n: mb.conv(x=xs[0], weight=cs[0], bias=cs[1], groups=2, pad_type="custom", pad=[1, 1, 1, 1],
                                    name=n),
         lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2)),
    Case("conv_depthwise_same_dilated", [randn(1, 4, 8, 8)], [randn(4, 1, 3, 3) / 3, randn(4)],
         lambda dt, xs, cs, n: mb.conv(x=xs[0], weight=cs[0], bias=cs[1], groups=4, pad_type="same", dilations=[2, 2],
                                    name=n),
         lambda x, w, b: F.conv2d(x, w, b, padding=2, dilation=2, groups=4)),
    Case("conv_depthwise_strided", [randn(1, 4, 9, 9)], [randn(4, 1, 3, 3) / 3],
         lambda dt, xs, cs, n: mb.conv(x=xs[0], weight=cs[0], groups=4, strides=[2, 2], pad_type="custom",
                                    pad=[1, 1, 1, 1], name=n),
         lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=4)),
    Case("conv_depthwise_multiplier", [randn(1, 4, 6, 6)], [randn(8, 1, 3, 3) / 3],
         lambda dt, xs, cs, n: mb.conv(x=xs[0], weight=cs[0], groups=4, pad_type="valid",
                                    name=n),
         lambda x, w: F.conv2d(x, w, groups=4)),
    Case("conv_pointwise_strided", [randn(1, 4, 7, 7)], [randn(6, 4, 1, 1)],
         lambda dt, xs, cs, n: mb.conv(x=xs[0], weight=cs[0], strides=[2, 2], name=n),
         lambda x, w: F.conv2d(x, w, stride=2)),
    Case("conv_patch", [randn(1, 4, 8, 8)], [randn(6, 4, 4, 4) / 4, randn(6)],
         lambda dt, xs, cs, n: mb.conv(x=xs[0], weight=cs[0], bias=cs[1], strides=[4, 4], name=n),
         lambda x, w, b: F.conv2d(x, w, b, stride=4)),
    Case("cast_to_int32", [3 * X4], [], lambda dt, xs, cs, n: mb.cast(x=xs[0], dtype="int32", name=n),
         lambda x: x.to(torch.int32), fp16=False),
    Case("quantize_per_tensor_int8", [X4], [],
         lambda dt, xs, cs, n: mb.dequantize(input=mb.quantize(input=xs[0], scale=dt(0.02), zero_point=np.int8(3),
                                                            output_dtype="int8", name=n + "_q"),
                                          scale=dt(0.02), zero_point=np.int8(3), name=n),
         lambda x: torch.quantize_per_tensor(x, 0.02, 3, torch.qint8).dequantize()),
    Case("quantize_per_channel_uint8", [X4], [],
         lambda dt, xs, cs, n: mb.dequantize(
             input=mb.quantize(input=xs[0], scale=np.array([0.01, 0.02, 0.03], dt), axis=-3, output_dtype="uint8",
                               zero_point=np.array([128, 100, 140], np.uint8), name=n + "_q"),
             scale=np.array([0.01, 0.02, 0.03], dt), zero_point=np.array([128, 100, 140], np.uint8), axis=1,
             name=n),
         lambda x: torch.quantize_per_channel(x, torch.tensor([0.01, 0.02, 0.03], dtype=torch.float64),
                                              torch.tensor([128, 100, 140]), 1, torch.quint8).dequantize()),
]
QUANTIZED = {"quantize_per_tensor_int8": lambda x: torch.quantize_per_tensor(x, 0.02, 3, torch.qint8),
             "quantize_per_channel_uint8": lambda x: torch.quantize_per_channel(
                 x, torch.tensor([0.01, 0.02, 0.03], dtype=torch.float64), torch.tensor([128, 100, 140]), 1,
                 torch.quint8)}
PARAMS = [(c, d) for c in CASES for d in (F32, F16) if d is F32 or c.fp16]


def tag(case, dt):
    return f"{case.name}_{np.dtype(dt).name}"


@pytest.fixture(scope="module")
def op_program(tmp_path_factory):
    """One saved program holding every case in fp32 and fp16, evaluated once."""
    feeds = {f"{tag(c, d)}_{i}": a.astype(d) for c, d in PARAMS for i, a in enumerate(c.inputs)}

    def build(inputs):
        return [case.build(dt, [inputs[f"{tag(case, dt)}_{i}"] for i in range(len(case.inputs))],
                           [c.astype(dt) for c in case.consts], tag(case, dt)) for case, dt in PARAMS]

    program = mlprogram.load(save_mil(feeds, build, tmp_path_factory.mktemp("ops") / "ops.mlpackage"))
    wanted = [tag(c, d) for c, d in PARAMS] + [tag(c, d) + "_q" for c, d in PARAMS if c.name in QUANTIZED]
    return program, feeds, program.run(feeds, outputs=wanted)


def torch_args(case, dt, feeds):
    args = [feeds[f"{tag(case, dt)}_{i}"].astype(F32) for i in range(len(case.inputs))]
    return [torch.from_numpy(a) for a in args + [c.astype(dt).astype(F32) for c in case.consts]]


@pytest.mark.parametrize("case,dt", PARAMS, ids=[tag(c, d) for c, d in PARAMS])
def test_op_matches_torch(op_program, case, dt):
    _, feeds, values = op_program
    got, want = values[tag(case, dt)], case.torch_fn(*torch_args(case, dt, feeds)).numpy()
    assert got.shape == want.shape
    if want.dtype == np.int32:
        assert got.dtype == np.int32 and np.array_equal(got, want)
    elif dt is F32:
        assert got.dtype == F32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:
        assert got.dtype == F16  # computed in float16, not upcast
        # fp16 division may move a quantized value across a rounding tie: one quantization step
        atol = 0.03 if case.name in QUANTIZED else 4e-3 * max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got.astype(F32), want, rtol=4e-3, atol=atol)


@pytest.mark.parametrize("name", QUANTIZED)
@pytest.mark.parametrize("dt", [F32, F16], ids=["fp32", "fp16"])
def test_quantize_gives_torch_integers(op_program, name, dt):
    case = next(c for c in CASES if c.name == name)
    _, feeds, values = op_program
    got = values[tag(case, dt) + "_q"]
    want = QUANTIZED[name](torch_args(case, dt, feeds)[0]).int_repr().numpy()
    assert got.dtype == want.dtype
    mismatch = np.abs(got.astype(int) - want.astype(int))
    # fp32 divides exactly as PyTorch does; fp16 division may move a value across a rounding tie
    assert mismatch.max() <= (0 if dt is F32 else 1) and (mismatch > 0).mean() < 0.02


def test_fp16_rounds_and_overflows_like_float16(tmp_path):
    a, b = np.array([[300, 300, 1, 2]], F32), np.array([[300, -300, 1, 2]], F32)
    c, d = np.array([[1, 60000]], F32), np.array([[0.0004, 60000]], F32)
    feeds = {"a": a.astype(F16), "b": b.astype(F16), "c": c.astype(F16), "d": d.astype(F16), "c32": c, "d32": d}
    path = save_mil(feeds, lambda v: [
        mb.mul(x=v["a"], y=v["a"], name="square"), mb.add(x=v["c"], y=v["d"], name="sum16"),
        mb.add(x=v["c32"], y=v["d32"], name="sum32"), mb.matmul(x=v["a"], y=v["b"], transpose_y=True, name="dot"),
        mb.matmul(x=v["a"], y=v["a"], transpose_y=True, name="dot_overflow")], tmp_path / "fp16.mlpackage")
    out = mlprogram.run(path, feeds)
    assert np.isinf(out["square"][0, 0]) and out["square"][0, 2] == 1  # 300**2 = 90000 > 65504
    assert out["sum16"][0, 0] == 1 and out["sum32"][0, 0] == np.float32(1.0004)  # under half an fp16 ulp
    assert np.isinf(out["sum16"][0, 1]) and out["sum32"][0, 1] == 120000
    assert out["dot"][0, 0] == 5  # 90000 - 90000 + 1 + 4: the sum of products accumulates in fp32
    assert np.isinf(out["dot_overflow"][0, 0])  # 180005 does not fit the fp16 result


@pytest.mark.parametrize("mode", ["EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"])
def test_gelu_in_chunks_gives_the_values_of_one_pass(mode, monkeypatch):
    from mlprogram import ops
    x = (np.random.default_rng(0).standard_normal((3, 5, 7, 11)) * 4).astype(F32)  # 1155 elements
    whole = ops.gelu(x, mode)
    monkeypatch.setattr(ops, "GELU_CHUNK", 100)  # 12 chunks, the last one ragged
    chunked = ops.gelu(np.asfortranarray(x), mode)
    assert chunked.shape == x.shape and chunked.dtype == F32
    np.testing.assert_array_equal(chunked, whole)
    np.testing.assert_array_equal(whole.reshape(-1)[:5], ops._gelu(x.reshape(-1)[:5], mode))


FP16_PATTERNS = np.arange(1 << 16, dtype=np.uint16).view(F16)  # built here, not taken from mlprogram
FP16_NUMBERS = FP16_PATTERNS[~np.isnan(FP16_PATTERNS)].reshape(-1, 7)  # 63,490 values, infinities included


def _strided(x: np.ndarray) -> np.ndarray:
    """The same values in a non-contiguous layout (the lookups read bit patterns through a view)."""
    return np.asfortranarray(x)[::-1].T


@pytest.mark.parametrize("mode", ["EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"])
def test_fp16_gelu_lookup_gives_the_kernels_values(mode):
    from mlprogram import ops
    x = _strided(FP16_NUMBERS)
    with np.errstate(invalid="ignore", over="ignore"):
        want = ops._gelu(np.ascontiguousarray(x), mode)
    got = ops.gelu(x, mode)
    assert got.dtype == F16 and got.shape == x.shape
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_float16_conversions_give_numpys_bits():
    from mlprogram.half import nonnegative_to_float16, to_float32
    halves = FP16_PATTERNS[:0x7C00].astype(F32)  # +0 up to the largest finite float16
    midpoints = (halves[:-1] + halves[1:]) / 2  # ties: half to even
    bits = np.concatenate([halves[1:], midpoints, [65519.99, 65520, 1e30]]).astype(F32).view(np.uint32)
    random = np.random.default_rng(7).integers(0, 0x3880_0000, 2_000_000, dtype=np.uint32)  # below 2**-14
    x = np.concatenate([bits - 1, bits, bits + 1, random, [0, 1, 0x7F80_0000, 0x7FC0_1234]]).view(F32)
    with np.errstate(over="ignore", invalid="ignore"):
        want, got = x.astype(F16), nonnegative_to_float16(x)
    assert got.dtype == F16 and got.shape == x.shape
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
    back = to_float32(_strided(FP16_PATTERNS.reshape(256, 256)))
    np.testing.assert_array_equal(back.view(np.uint32), _strided(FP16_PATTERNS.reshape(256, 256)).astype(F32)
                                  .view(np.uint32))


@pytest.mark.parametrize("name", ["softmax", "layer_norm", "rsqrt"])
def test_fp16_kernels_give_numpys_float16_values(name):
    """Kernels that convert with mlprogram.half give what numpy's own float16 arithmetic gives, on
    20,000 float16 values (subnormals and infinities included)."""
    from mlprogram import ops
    x = FP16_NUMBERS.reshape(-1)[::3][:20_000].reshape(100, 200)
    y = np.random.default_rng(1).permutation(x.reshape(-1)).reshape(100, 200)
    with np.errstate(all="ignore"):
        if name == "softmax":
            z = np.clip(x, -60, 60)
            shifted = z - z.max(-1, keepdims=True)
            e = np.exp(shifted)
            want, got = e / e.sum(-1, keepdims=True, dtype=F32).astype(F16), ops.softmax(z)
        elif name == "layer_norm":
            z = np.clip(x, -200, 200)
            centred = z - z.mean(-1, keepdims=True, dtype=F32).astype(F16)
            var = np.mean(np.square(centred, dtype=F32), -1, keepdims=True).astype(F16)
            rstd = (1.0 / np.sqrt((var + F16(1e-5)).astype(F32))).astype(F16)
            gamma, beta = y[0] / F16(100), y[1] / F16(100)
            want, got = centred * rstd * gamma + beta, ops.layer_norm(z, [-1], gamma, beta, F16(1e-5))
        else:
            z = np.abs(x)
            want, got = (1.0 / np.sqrt((z + F16(1e-3)).astype(F32))).astype(F16), ops.rsqrt(z, F16(1e-3))
    assert got.dtype == F16 and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("scale,zero_point,output_dtype", [
    (F16(0.0213), np.int8(3), "int8"), (F16(7.5), None, "int8"), (F16(1e-3), np.uint8(128), "uint8"),
    (F32(0.0213), np.int8(-5), "int8")])
def test_per_tensor_quantize_lookups_give_the_kernels_values(scale, zero_point, output_dtype):
    from mlprogram import quant
    x = _strided(FP16_NUMBERS)
    with np.errstate(invalid="ignore"):
        want = quant._quantize(np.ascontiguousarray(x), scale, output_dtype, zero_point)
    got = quant.quantize(x, scale, output_dtype, zero_point)
    assert got.dtype == want.dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, want)
    codes = _strided(np.arange(256, dtype=np.uint8).view(got.dtype).reshape(16, 16))
    want = quant._dequantize(np.ascontiguousarray(codes), scale, zero_point)
    got = quant.dequantize(codes, scale, zero_point)
    assert got.dtype == scale.dtype
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_evaluator_passes_hold_about_32_small_images_and_one_large():
    """On Linux the Core ML runner feeds the evaluator 32 images of 32 px per pass but one of 224 px:
    at 224, passes of 32 took 0.96 s per image against 0.58 s one by one (Shunted-T, fp16)."""
    from runtime.runners import CoreMLRunner
    runner, passes = object.__new__(CoreMLRunner), []
    runner._run_batch = lambda x: passes.append(len(x)) or np.arange(len(x), dtype=F32)[:, None]
    for size, n, expected in ((32, 70, [32, 32, 6]), (64, 20, [8, 8, 4]), (224, 3, [1, 1, 1])):
        passes.clear()
        out = runner.run(np.zeros((n, 3, size, size), F32))
        assert passes == expected and out.shape == (n, 1)


def test_blob_file_reads_what_coremltools_writes(tmp_path):
    from coremltools.libmilstoragepython import _BlobStorageWriter
    arrays = {"fp16": randn(7).astype(F16), "fp32": randn(5), "int8": np.arange(-4, 5, dtype=np.int8),
              "uint8": np.arange(250, 256, dtype=np.uint8), "int16": np.arange(-3, 3, dtype=np.int16),
              "uint16": np.arange(6, dtype=np.uint16), "int32": np.arange(-2, 3, dtype=np.int32),
              "uint32": np.arange(4, dtype=np.uint32), "int4": np.array([-8, 7, -1, 0, 3], np.int8),
              "uint1": np.array([1, 0, 1, 1, 0, 0, 1, 0, 1], np.uint8), "uint2": np.array([3, 0, 1, 2, 3], np.uint8),
              "uint3": np.array([7, 0, 5, 1, 6], np.uint8), "uint4": np.array([15, 0, 9, 1, 4], np.uint8),
              "uint6": np.array([63, 0, 33, 1, 17], np.uint8)}
    writer = _BlobStorageWriter(str(tmp_path / "w.bin"))
    offsets = {name: getattr(writer, f"write_{'float' if name == 'fp32' else name}_data")(
        a.view(np.uint16) if name == "fp16" else a) for name, a in arrays.items()}
    del writer
    blobs = BlobFile(tmp_path / "w.bin")
    for name, a in arrays.items():
        got = blobs.read(offsets[name], name, a.shape)
        assert got.dtype == a.dtype and np.array_equal(got, a), name
    with pytest.raises(ValueError, match="holds fp32 but the program declares fp16"):
        blobs.read(offsets["fp32"], "fp16", (5,))


# ----------------------------------------------------------------------------- our models end to end
def randomized(model: nn.Module) -> nn.Module:
    """Non-trivial norms, BN statistics, biases and a wider head, so every parameter matters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LayerNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(0.02 * torch.randn(m.bias.shape, generator=g))
        model.head.weight.mul_(10)
    return model.eval()


def convert(model: nn.Module, size: int, precision: str, **kwargs):
    example = torch.zeros(1, 3, size, size)
    program = torch.export.export(model, (example,)).run_decompositions({})
    image = ct.ImageType(name="image", shape=(1, 3, size, size), scale=SCALE, bias=BIAS,
                         color_layout=ct.colorlayout.RGB)
    return ct.convert(program, inputs=[image], convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                      compute_precision=getattr(ct.precision, {"fp16": "FLOAT16", "fp32": "FLOAT32"}[precision]),
                      **kwargs)


def pixels(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, 3, size, size)).astype(F32)


def torch_logits(model: nn.Module, pix: np.ndarray) -> np.ndarray:
    x = pix * np.float32(SCALE) + np.asarray(BIAS, F32).reshape(1, 3, 1, 1)
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def agrees(want: np.ndarray, got: np.ndarray, precision: str) -> bool:
    """The acceptance test: fp32 max|diff| <= 1e-3; fp16 cosine >= 0.999 and the same top-1."""
    got = got.astype(F32)
    if precision == "fp32":
        return float(np.abs(want - got).max()) <= 1e-3
    return cosine(want, got) >= 0.999 and int(want.argmax()) == int(got.argmax())


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return randomized(create_model("shunted_nano", num_classes=10, input_size=32))


@pytest.fixture(scope="module")
def nano_packages(nano, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nano")
    paths = {}
    for precision in ("fp32", "fp16"):
        paths[precision] = folder / f"nano_{precision}.mlpackage"
        convert(nano, 32, precision).save(str(paths[precision]))
    return paths


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_nano_matches_torch(nano, nano_packages, precision):
    program = mlprogram.load(nano_packages[precision])
    assert program.input_names == ["image"] and program.image_inputs == {"image": "RGB"}
    assert program.compute_precision() == precision and program.max_rank() == 4
    assert {"conv", "layer_norm", "matmul", "softmax", "gelu", "slice_by_index", "concat"} <= set(program.op_types())
    for seed in range(3):
        pix = pixels(32, seed)
        want, got = torch_logits(nano, pix), program.run({"image": pix})[program.output_names[0]]
        assert got.dtype == (F32 if precision == "fp32" else F16)
        assert agrees(want, got, precision), (np.abs(want - got).max(), cosine(want, got))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_batch_runs_in_one_pass_as_each_image_alone(nano_packages, precision, tmp_path):
    plain = mlprogram.load(nano_packages[precision])  # attention heads folded into the batch axis
    assert "no leading batch dimension" in plain.batch_blocker
    torch.manual_seed(0)
    default_kind = randomized(create_model(SHIPPED_VARIANT, num_classes=10, input_size=32))
    convert(deploy_form(default_kind, "coreml", 32), 32, precision).save(str(tmp_path / "deploy.mlpackage"))
    program = mlprogram.load(tmp_path / "deploy.mlpackage")  # the form convert/to_coreml.py writes
    assert program.batch_blocker is None
    batch = np.concatenate([pixels(32, seed) for seed in range(5)])
    name = program.output_names[0]
    alone = np.concatenate([program.run({"image": image[None]})[name] for image in batch]).astype(F32)
    together = program.run({"image": batch})[name].astype(F32)
    assert together.shape == (5, 10) and (together.argmax(1) == alone.argmax(1)).all()
    if precision == "fp32":
        np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)
    else:  # float32 sums ordered otherwise for a batch round to other fp16 values now and then
        assert min(cosine(a, b) for a, b in zip(together, alone)) >= 0.9999


MIXING = {  # programs (x of shape (1, 4, 6)) in which images of a batch would meet
    "softmax over the batch axis": lambda x: mb.softmax(x=x, axis=0),
    "mean over the batch axis": lambda x: mb.reduce_mean(x=x, axes=[0, 2], keep_dims=True),
    "batch axis moved": lambda x: mb.transpose(x=x, perm=[1, 0, 2]),
    "batch axis merged": lambda x: mb.reshape(x=x, shape=[4, 6]),
    "batch axis sliced": lambda x: mb.slice_by_index(x=mb.concat(values=[x, x], axis=0), begin=[1, 0, 0],
                                                     end=[2, 4, 6]),
    "rank-2 input broadcast against rank 3": lambda x: mb.add(
        x=x, y=mb.reshape(x=mb.slice_by_index(x=x, begin=[0, 0, 0], end=[1, 1, 6]), shape=[1, 6])),
}


@pytest.mark.parametrize("build", list(MIXING.values()), ids=list(MIXING))
def test_programs_where_images_would_meet_run_one_image_at_a_time(tmp_path, build):
    program = mlprogram.load(save_mil({"x": randn(1, 4, 6)}, lambda xs: [build(xs["x"])], tmp_path / "mix.mlpackage"))
    assert program.batch_blocker, "the static check let a program that mixes images through"
    batch = randn(3, 4, 6)
    name = program.output_names[0]
    alone = np.concatenate([program.run({"x": row[None]})[name] for row in batch])
    np.testing.assert_array_equal(program.run({"x": batch})[name], alone)


def test_image_input_takes_pixels_not_normalized_values(nano_packages):
    with pytest.raises(ValueError, match="pixel values 0..255"):
        mlprogram.run(nano_packages["fp32"], {"image": pixels(32) / 127.5 - 1})
    with pytest.raises(ValueError, match="program inputs are"):
        mlprogram.run(nano_packages["fp32"], {"input": pixels(32)})


def edited_copy(package: Path, folder: Path, edit: Callable) -> Path:
    """A copy of ``package`` whose spec ``edit(spec, weight_bytes)`` has changed before saving."""
    copy = folder / f"edited_{package.name}"
    shutil.copytree(package, copy)
    spec = ct.models.MLModel(str(copy), skip_model_load=True).get_spec()
    weights = bytearray((copy / WEIGHT_FILE).read_bytes())
    edit(spec, weights)
    (copy / SPEC_FILE).write_bytes(spec.SerializeToString())
    (copy / WEIGHT_FILE).write_bytes(bytes(weights))
    return copy


def main_ops(spec):
    function = spec.mlProgram.functions["main"]
    return function.block_specializations[function.opset].operations


def swap_two_conv_weights(spec, weights: bytearray) -> None:
    """Exchange the stored data of two same-shaped conv weights in weight.bin."""
    consts = {op.outputs[0].name: op.attributes["val"] for op in main_ops(spec) if op.type == "const"}
    by_shape = {}
    for op in main_ops(spec):
        if op.type == "conv":
            value = consts[op.inputs["weight"].arguments[0].name]
            by_shape.setdefault(tuple(d.constant.size for d in value.type.tensorType.dimensions), []).append(value)
    first, second = next(v for v in by_shape.values() if len(v) >= 2)[:2]
    spans = []
    for value in (first, second):
        size, start = np.frombuffer(bytes(weights), np.uint64, 2, value.blobFileValue.offset + 8)
        spans.append(slice(int(start), int(start + size)))
    weights[spans[0]], weights[spans[1]] = weights[spans[1]], weights[spans[0]]


def drop_folded_transpose(spec, weights: bytearray) -> None:
    """Clear a matmul's transpose_x on a square operand (attention over several keys): same shapes."""
    ops = main_ops(spec)
    shapes = {o.name: [d.constant.size for d in o.type.tensorType.dimensions] for op in ops for o in op.outputs}
    flags = {op.outputs[0].name: op.attributes["val"].immediateValue.tensor.bools.values[0]
             for op in ops if op.type == "const" and op.attributes["val"].immediateValue.tensor.bools.values}

    def shape(op, key):
        return shapes[op.inputs[key].arguments[0].name]

    matmul = next(op for op in ops if op.type == "matmul" and flags[op.inputs["transpose_x"].arguments[0].name]
                  and shape(op, "x")[-1] == shape(op, "x")[-2] and shape(op, "y")[-1] > 1)
    flag = matmul.inputs["transpose_x"].arguments[0]
    flag.ClearField("name")
    flag.value.type.tensorType.dataType = ct.proto.MIL_pb2.BOOL
    flag.value.immediateValue.tensor.bools.values.append(False)


@pytest.mark.parametrize("edit", [swap_two_conv_weights, drop_folded_transpose])
def test_broken_program_fails_the_comparison(nano, nano_packages, tmp_path, edit):
    pix = pixels(32)
    want = torch_logits(nano, pix)
    intact = mlprogram.run(nano_packages["fp32"], {"image": pix})["linear"]
    broken = mlprogram.run(edited_copy(nano_packages["fp32"], tmp_path, edit), {"image": pix})["linear"]
    assert agrees(want, intact, "fp32") and not agrees(want, broken, "fp32")


def test_unknown_op_raises_naming_it(nano_packages, tmp_path):
    def rename_gelu(spec, weights):
        next(op for op in main_ops(spec) if op.type == "gelu").type = "gelu_fancy"

    program = mlprogram.load(edited_copy(nano_packages["fp16"], tmp_path, rename_gelu))
    assert program.op_types()["gelu_fancy"] == 1
    with pytest.raises(mlprogram.UnsupportedOpError, match="op 'gelu_fancy'.*not supported"):
        program.run({"image": pixels(32)})


def test_classifier_with_bgr_image_gives_label_and_scores(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 4)).eval()
    labels = ["ant", "bee", "cat", "dog"]
    program = torch.export.export(model, (torch.zeros(1, 3, 16, 16),)).run_decompositions({})
    image = ct.ImageType(name="image", shape=(1, 3, 16, 16), scale=1 / 255, bias=[-0.4, -0.5, -0.6],
                         color_layout=ct.colorlayout.BGR)
    ct.convert(program, inputs=[image], classifier_config=ct.ClassifierConfig(labels), convert_to="mlprogram",
               minimum_deployment_target=ct.target.iOS17,
               compute_precision=ct.precision.FLOAT32).save(str(tmp_path / "cls.mlpackage"))
    result = mlprogram.run(tmp_path / "cls.mlpackage", {"image": pixels(16)})
    with torch.no_grad():
        want = model(torch.from_numpy(pixels(16) / 255 + np.array([-0.4, -0.5, -0.6], F32).reshape(1, 3, 1, 1)))
    scores = next(v for v in result.values() if v.dtype == F32)
    np.testing.assert_allclose(scores, want.numpy(), rtol=1e-5, atol=1e-6)
    assert str(next(v for v in result.values() if v.dtype.kind == "U")) == labels[int(want.argmax())]
    batch = np.concatenate([pixels(16, seed) for seed in range(4)])
    batched = mlprogram.run(tmp_path / "cls.mlpackage", {"image": batch})
    each = [mlprogram.run(tmp_path / "cls.mlpackage", {"image": image[None]}) for image in batch]
    assert list(next(v for v in batched.values() if v.dtype.kind == "U")) == \
        [str(next(v for v in r.values() if v.dtype.kind == "U")) for r in each]


# ----------------------------------------------------------------------------- compressed weights, W8A8
def coremltools_decompressed(model) -> dict:
    """Every constexpr output as coremltools' own op definitions decompress it."""
    import inspect
    from coremltools.converters.mil.frontend.milproto.load import load
    spec = model.get_spec()
    values = {}
    for op in load(spec, spec.specificationVersion, model.weights_dir).functions["main"].operations:
        if op.op_type.startswith("constexpr_"):
            args = {key: None if key not in op.inputs else
                    op.inputs[key].val if op.inputs[key].val is not None else values[op.inputs[key].name]
                    for key in inspect.signature(type(op).decompress).parameters}
            out = type(op).decompress(**args)
            values.update(zip([o.name for o in op.outputs], out if isinstance(out, tuple) else (out,)))
    return values


def assert_same_weights(model) -> None:
    want, program = coremltools_decompressed(model), mlprogram.load(model)
    got = program.run({v.name: np.zeros(v.shape, F32) for v in program.spec.inputs}, outputs=list(want))
    assert want
    for name, value in want.items():
        assert got[name].dtype == value.dtype and np.array_equal(got[name], value), name


def test_int8_weight_compressed_nano_matches_torch(nano, nano_packages):
    import coremltools.optimize.coreml as cto
    model = cto.linear_quantize_weights(ct.models.MLModel(str(nano_packages["fp16"]), skip_model_load=True),
                                        cto.OptimizationConfig(cto.OpLinearQuantizerConfig(weight_threshold=512)))
    program = mlprogram.load(model)
    assert program.op_types()["constexpr_affine_dequantize"] > 40 and program.compute_precision() == "fp16"
    assert_same_weights(model)
    pix = pixels(32)
    assert cosine(torch_logits(nano, pix), program.run({"image": pix})[program.output_names[0]]) >= 0.99


COMPRESSED_FORMS = {  # form: (deployment target, op it introduces, optimize.coreml function, its op config)
    "int8_asymmetric": (ct.target.iOS17, "constexpr_affine_dequantize", "linear_quantize_weights",
                        lambda c: c.OpLinearQuantizerConfig(mode="linear")),
    "palettize4": (ct.target.iOS17, "constexpr_lut_to_dense", "palettize_weights",
                   lambda c: c.OpPalettizerConfig(nbits=4)),
    "palettize6": (ct.target.iOS17, "constexpr_lut_to_dense", "palettize_weights",
                   lambda c: c.OpPalettizerConfig(nbits=6)),
    "prune": (ct.target.iOS17, "constexpr_sparse_to_dense", "prune_weights",
              lambda c: c.OpMagnitudePrunerConfig(target_sparsity=0.5)),
    "int4_per_block_ios18": (ct.target.iOS18, "constexpr_blockwise_shift_scale", "linear_quantize_weights",
                             lambda c: c.OpLinearQuantizerConfig(mode="linear", dtype="int4", granularity="per_block",
                                                                 block_size=16)),
    "int8_per_channel_ios18": (ct.target.iOS18, "constexpr_blockwise_shift_scale", "linear_quantize_weights",
                               lambda c: c.OpLinearQuantizerConfig()),
    "palettize4_grouped_ios18": (ct.target.iOS18, "constexpr_lut_to_dense", "palettize_weights",
                                 lambda c: c.OpPalettizerConfig(nbits=4, granularity="per_grouped_channel",
                                                                group_size=16)),
    "palettize2_vector_ios18": (ct.target.iOS18, "constexpr_lut_to_dense", "palettize_weights",
                                lambda c: c.OpPalettizerConfig(nbits=2, cluster_dim=2)),
    "palettize3_channel_scale_ios18": (ct.target.iOS18, "constexpr_blockwise_shift_scale", "palettize_weights",
                                       lambda c: c.OpPalettizerConfig(nbits=3, enable_per_channel_scale=True)),
    "prune_ios18": (ct.target.iOS18, "constexpr_sparse_to_dense", "prune_weights",
                    lambda c: c.OpMagnitudePrunerConfig(target_sparsity=0.5)),
}


@pytest.fixture(scope="module")
def conv_models(tmp_path_factory):
    """An fp16 conv program per deployment target, its weight stored uncompressed."""
    weight, folder = randn(64, 32, 3, 3).astype(F16), tmp_path_factory.mktemp("conv")
    return {target: ct.models.MLModel(str(save_mil(
        {"x": randn(1, 32, 6, 6).astype(F16)}, lambda v: [mb.conv(x=v["x"], weight=weight, pad_type="same", name="y")],
        folder / f"{target.name}.mlpackage", opset=target)), skip_model_load=True)
        for target in (ct.target.iOS17, ct.target.iOS18)}


@pytest.mark.parametrize("form", COMPRESSED_FORMS)
def test_compressed_weights_match_coremltools(conv_models, form):
    import coremltools.optimize.coreml as cto
    target, op_type, compress, config = COMPRESSED_FORMS[form]
    model = getattr(cto, compress)(conv_models[target], cto.OptimizationConfig(config(cto)))
    assert mlprogram.load(model).op_types()[op_type] == 1
    assert_same_weights(model)


def test_joint_prune_palettize_matches_coremltools(conv_models):
    import coremltools.optimize.coreml as cto
    pruned = cto.prune_weights(conv_models[ct.target.iOS18],
                               cto.OptimizationConfig(cto.OpMagnitudePrunerConfig(target_sparsity=0.5)))
    model = cto.palettize_weights(pruned, cto.OptimizationConfig(cto.OpPalettizerConfig(nbits=4)),
                                  joint_compression=True)
    assert mlprogram.load(model).op_types()["constexpr_lut_to_sparse"] == 1
    assert_same_weights(model)


class TinyNet(nn.Module):
    """Stem conv, a shunted ConvMlp with its residual, mean pool and a linear head."""

    def __init__(self):
        super().__init__()
        self.stem, self.mlp, self.head = nn.Conv2d(3, 16, 3, 2, 1), ConvMlp(16, 32), nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return self.head((x + self.mlp(x)).mean(dim=(2, 3)))


@pytest.mark.slow
def test_w8a8_program_matches_pt2e_reference(tmp_path):
    """PT2E int8 weights and activations: the Core ML program gives PyTorch's quantized numbers."""
    pt2e = pytest.importorskip("torchao.quantization.pt2e.quantize_pt2e")
    xnnpack = pytest.importorskip("executorch.backends.xnnpack.quantizer.xnnpack_quantizer")
    torch.manual_seed(0)
    example = torch.randn(1, 3, 16, 16)
    graph = torch.export.export(TinyNet().eval(), (example,)).module()
    quantizer = xnnpack.XNNPACKQuantizer().set_global(xnnpack.get_symmetric_quantization_config(is_per_channel=True))
    prepared = pt2e.prepare_pt2e(graph, quantizer)
    for _ in range(8):
        prepared(torch.randn(1, 3, 16, 16))
    quantized = pt2e.convert_pt2e(prepared)
    program = torch.export.export(quantized, (example,)).run_decompositions({})
    ct.convert(program, inputs=[ct.TensorType(name="x", shape=example.shape)], convert_to="mlprogram",
               minimum_deployment_target=ct.target.iOS17,
               compute_precision=ct.precision.FLOAT32).save(str(tmp_path / "w8a8.mlpackage"))
    evaluator = mlprogram.load(tmp_path / "w8a8.mlpackage")
    assert {"quantize", "dequantize", "constexpr_affine_dequantize"} <= set(evaluator.op_types())
    xs = [torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) for seed in range(3)]
    with torch.no_grad():
        want = np.concatenate([quantized(x).numpy() for x in xs])
    assert evaluator.batch_blocker is None
    got = evaluator.run({"x": torch.cat(xs).numpy()})[evaluator.output_names[0]]  # the three in one pass
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_shunted_t_224_fp16_matches_torch_in_under_30s(tmp_path):
    torch.manual_seed(0)
    model = deploy_form(randomized(create_model("shunted_t", num_classes=10, input_size=224)), "portable", 224)
    convert(model, 224, "fp16").save(str(tmp_path / "t.mlpackage"))
    program = mlprogram.load(tmp_path / "t.mlpackage")
    assert program.compute_precision() == "fp16" and program.max_rank() <= 4
    pix = pixels(224)
    start = time.perf_counter()
    got = program.run({"image": pix})[program.output_names[0]]
    seconds = time.perf_counter() - start
    print(f"shunted_t 224 fp16: {seconds:.2f} s in the evaluator")
    assert seconds < 30
    assert agrees(torch_logits(model, pix), got, "fp16"), cosine(torch_logits(model, pix), got)
