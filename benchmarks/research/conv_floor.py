"""How far int8 convolutions can take latency down: the floor left when the convs do no arithmetic.

    python benchmarks/research/conv_floor.py                                    # the shipped default model
    python benchmarks/research/conv_floor.py --model shunted_t --input-size 224 --calib fashion-mnist --calib-size 64

Quantization makes the convolutions' arithmetic cheaper; the rest of a run (norms, GELU, softmax,
attention matmuls, layout and quantize/dequantize ops, the runtime's cost per op) it leaves or adds
to. To measure that rest, this builds for each format, next to the fp32 and int8 artifacts of the
model (converted and verified as usual, into a temporary folder), a probe of each: the same model
with every ``nn.Conv2d`` replaced by a stand-in with the same input and output shapes and almost no
arithmetic (XNNPACK: a grouped 1x1 conv; ONNX Runtime: slices and tiles, see :func:`cheap_conv`),
converted by the same code without verification (it computes another function; it is timed and deleted). All eight
are timed in one interleaved run (benchmarks/latency.py). With medians T:

    conv arithmetic share of fp32 = 1 - T(probe fp32) / T(fp32)
    int8 floor                    = T(probe int8) / T(fp32)

The floor is the int8/fp32 ratio the int8 graph would reach if its convolutions cost nothing; an
int8 target below it needs the non-conv part of the graph made cheaper, not better conv kernels.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.latency import Target, measure, round_orders, split_runs  # noqa: E402
from common.cli import Parser  # noqa: E402
from common.errors import UserError  # noqa: E402
from convert.api import ConvertRequest, VerificationFailed, convert, converter  # noqa: E402
from convert.manifest import finalize, remove, temporary_path  # noqa: E402
from convert.pipeline import export_unverified, prepare  # noqa: E402
from common.machine import machine_description, physical_cores  # noqa: E402
from runtime.runners import onnx_session  # noqa: E402
from common.text_table import text_table  # noqa: E402

PROBE_KIND = {"onnx": "slice", "executorch": "grouped"}  # the cheapest stand-in each runtime runs natively


class ChannelMatch(nn.Module):
    """The output shape of a conv from ``in_channels`` to ``out_channels`` at ``stride`` with no
    arithmetic: strided slicing over H and W, then the channels repeated and/or the first ones kept."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int]):
        super().__init__()
        self.out_channels, self.stride = out_channels, tuple(stride)
        self.repeats = -(-out_channels // in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1):
            x = x[:, :, ::self.stride[0], ::self.stride[1]]
        if self.repeats > 1:
            x = x.repeat(1, self.repeats, 1, 1)
        return x[:, :self.out_channels] if x.shape[1] != self.out_channels else x


def cheap_conv(conv: nn.Conv2d, kind: str) -> nn.Module:
    """``grouped``: a 1x1 unpadded conv, same stride, groups = gcd(in, out) (XNNPACK runs it as one
    op, about max(in, out) multiply-adds per pixel); ``slice``: :class:`ChannelMatch` (ONNX Runtime
    runs grouped convs about as slowly as dense ones at these sizes, but Slice and Tile quickly)."""
    if kind == "slice":
        return ChannelMatch(conv.in_channels, conv.out_channels, conv.stride)
    return nn.Conv2d(conv.in_channels, conv.out_channels, 1, stride=conv.stride,
                     groups=math.gcd(conv.in_channels, conv.out_channels), bias=conv.bias is not None).eval()


def strip_conv_arithmetic(model: nn.Module, example: torch.Tensor, kind: str) -> int:
    """Replace every ``nn.Conv2d`` of ``model`` by :func:`cheap_conv` of the same input and output
    shapes; returns how many were replaced. Raises ValueError if a shape would change."""
    def shapes() -> dict[str, tuple]:
        seen, hooks = {}, []
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, ChannelMatch)):
                hooks.append(module.register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, tuple(out.shape))))
        with torch.no_grad():
            model(example)
        for hook in hooks:
            hook.remove()
        return seen

    before = shapes()
    for parent in list(model.modules()):
        for child_name, conv in list(parent.named_children()):
            if isinstance(conv, nn.Conv2d):
                setattr(parent, child_name, cheap_conv(conv, kind))
    after = shapes()
    changed = [name for name in before if after.get(name) != before[name]]
    if changed:
        raise ValueError(f"stripping changes the output shape of {', '.join(changed)}")
    return len(before)


def build(fmt: str, precision: str, base: ConvertRequest, folder: Path, probe: bool) -> Path:
    """One artifact in ``folder``: converted and verified, or (probe) with the convs stripped, unverified."""
    format_converter = converter(fmt)
    output = folder / f"{'probe' if probe else 'model'}_{precision}{format_converter.suffix}"
    request = replace(base, precision=precision, output=output)
    if not probe:
        convert(None, fmt, request)
        return output
    job, output = prepare(format_converter, request)
    strip_conv_arithmetic(job.deploy_model, job.example, PROBE_KIND[fmt])
    tmp = temporary_path(output)
    try:
        manifest, _ = export_unverified(format_converter, job, tmp)
        manifest["verification"] = {"status": "not run", "reason": "timing probe: convolutions stripped of arithmetic"}
        finalize(tmp, output, manifest)
    finally:
        remove(tmp)
    return output


class ConvChain(nn.Sequential):
    """``count`` 1x1 convs of ``channels`` channels in a row."""

    def __init__(self, count: int, channels: int):
        super().__init__(*(nn.Conv2d(channels, channels, 1) for _ in range(count)))


def onnx_cost_per_conv(channels: int, size: int, threads: int, runs: int = 2000, chain: int = 56) -> dict[str, float]:
    """Microseconds one more conv adds to an ONNX Runtime run, fp32 (NCHWc Conv) and int8 (QDQ, fused to
    QLinearConv, uint8 in and out, no Q/DQ between the convs): (t(chain + 1 convs) - t(1 conv)) / chain,
    each graph timed ``runs`` times in 20 interleaved rounds. On a tiny shape this is the cost a conv has without arithmetic."""
    import numpy as np
    import onnx
    from quantize.onnxrt import quantize_qdq
    x = torch.randn(1, channels, size, size)
    calibration = np.random.default_rng(0).standard_normal((8, channels, size, size), dtype=np.float32)
    sessions = {}
    with tempfile.TemporaryDirectory(prefix="conv_chain-") as tmp:
        for count in (1, chain + 1):
            fp32 = Path(tmp) / f"chain{count}.onnx"
            program = torch.onnx.export(ConvChain(count, channels).eval(), (x,), None, dynamo=True,
                                        input_names=["input"], verbose=False)
            onnx.save(program.model_proto, str(fp32))  # weights inline, as convert/to_onnx.py saves them
            int8 = fp32.with_name(f"chain{count}_int8.onnx")
            quantize_qdq(fp32, int8, calibration, "input")
            for precision, path in (("fp32", fp32), ("int8", int8)):
                sessions[precision, count] = onnx_session(path, threads)
    feed = {"input": x.numpy()}
    keys = list(sessions)
    times = {key: [] for key in keys}
    for count, order in zip(split_runs(runs, 20), round_orders(len(keys), 20)):
        for index in order:
            sess = sessions[keys[index]]
            for _ in range(count):
                start = time.perf_counter()
                sess.run(None, feed)
                times[keys[index]].append(time.perf_counter() - start)
    median = {key: float(np.median(t)) * 1e6 for key, t in times.items()}
    return {precision: (median[precision, chain + 1] - median[precision, 1]) / chain for precision in ("fp32", "int8")}


def floors(medians: dict[tuple[str, str, bool], float]) -> list[dict]:
    """Per format, from {(format, precision, probe): median ms}: the measured int8/fp32 ratio, the
    conv arithmetic share of fp32 and the int8 floor."""
    out = []
    for fmt in dict.fromkeys(key[0] for key in medians):
        fp32, int8 = medians[fmt, "fp32", False], medians[fmt, "int8", False]
        probe32, probe8 = medians[fmt, "fp32", True], medians[fmt, "int8", True]
        out.append({"format": fmt, "fp32_ms": fp32, "int8_ms": int8, "probe_fp32_ms": probe32, "probe_int8_ms": probe8,
                    "int8_over_fp32": int8 / fp32, "conv_arithmetic_share": 1 - probe32 / fp32, "int8_floor": probe8 / fp32})
    return out


def format_floors(results: list[dict]) -> str:
    header = ["format", "fp32 ms", "int8 ms", "int8/fp32", "probe fp32 ms", "probe int8 ms", "conv share", "int8 floor"]
    rows = [[r["format"], f"{r['fp32_ms']:.3f}", f"{r['int8_ms']:.3f}", f"{r['int8_over_fp32']:.2f}x",
             f"{r['probe_fp32_ms']:.3f}", f"{r['probe_int8_ms']:.3f}", f"{r['conv_arithmetic_share']:.0%}",
             f"{r['int8_floor']:.2f}x"] for r in results]
    return text_table(header, rows, right_from=1)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, ConvertRequest]:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--formats", nargs="+", choices=list(PROBE_KIND), default=list(PROBE_KIND))
    parser.add_argument("--runs", type=int, default=1000, help="timed runs per artifact (default 1000)")
    parser.add_argument("--rounds", type=int, default=50, help="interleaving rounds (default 50)")
    parser.add_argument("--threads", type=int, help="threads (default: physical cores)")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    parser.add_argument("--model", help="as for the converters")
    parser.add_argument("--checkpoint", type=Path, help="as for the converters")
    parser.add_argument("--input-size", "--imgsz", type=int, help="as for the converters")
    parser.add_argument("--calib", help="as for the converters")
    parser.add_argument("--calib-size", type=int, default=ConvertRequest.calib_size, help="as for the converters")
    parser.add_argument("--verify-images", type=int, default=ConvertRequest.verify_images, help="as for the converters")
    args = parser.parse_args(argv)
    request = ConvertRequest(model=args.model, checkpoint=args.checkpoint, input_size=args.input_size, calib=args.calib,
                             calib_size=args.calib_size, verify_images=args.verify_images)
    return args, request


def main(argv: list[str] | None = None) -> int:
    args, request = parse_args(argv)
    if args.runs < 1 or args.rounds < 1 or (args.threads is not None and args.threads < 1):
        print("error: --runs, --rounds and --threads must be >= 1", file=sys.stderr)
        return 2
    threads = args.threads or physical_cores()
    with tempfile.TemporaryDirectory(prefix="conv_floor-") as tmp:
        built = {}
        try:
            for fmt in args.formats:
                folder = Path(tmp) / fmt
                folder.mkdir()
                for precision in ("fp32", "int8"):
                    for probe in (False, True):
                        built[fmt, precision, probe] = build(fmt, precision, request, folder, probe)
        except (UserError, VerificationFailed) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        keys = list(built)
        rows = measure([Target(built[key], label=f"{key[0]} {key[1]}{' probe' if key[2] else ''}") for key in keys],
                       args.runs, rounds=args.rounds, threads=threads)
    failed = [row for row in rows if not row.ok]
    if failed:
        print(f"error: {failed[0].label}: {failed[0].error}", file=sys.stderr)
        return 1
    results = floors({key: row.median_ms for key, row in zip(keys, rows)})
    print(f"machine: {machine_description(threads)}; {args.runs} runs per artifact in {args.rounds} interleaved rounds")
    print(format_floors(results))
    per_conv = {}
    if "onnx" in args.formats:
        for channels, size in ((8, 1), (32, 8)):
            per_conv[f"{channels}ch_{size}x{size}"] = cost = onnx_cost_per_conv(channels, size, threads)
            print(f"ONNX Runtime, one more 1x1 conv of {channels} channels at {size}x{size} pixels adds "
                  f"{cost['fp32']:.2f} us fp32, {cost['int8']:.2f} us int8 (QLinearConv, no Q/DQ between convs)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(threads), "request": repr(request), "runs": args.runs,
                                         "rounds": args.rounds, "results": results,
                                         "onnx_us_per_conv": per_conv}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
