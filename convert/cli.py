"""The converters' command line: argparse fills a :class:`ConvertRequest`, nothing more."""
from __future__ import annotations

import re
import sys
from dataclasses import fields
from pathlib import Path

from common.cli import Parser, run_cli
from common.defaults import ARTIFACTS_DIR, SHIPPED_CHECKPOINT
from model import list_models
from common.quiet import quiet_third_party

from .manifest import Manifest
from .pipeline import Converter, ConvertError, VerificationFailed, build_artifact
from .request import ConvertRequest, RequestError

DEFAULTS = ConvertRequest()


def build_parser(converter: Converter) -> Parser:
    parser = Parser(description=f"Export a Shunted Transformer to {converter.format}, verified against PyTorch.")
    parser.add_argument("--model", choices=list_models(), help="variant (default: the checkpoint's, "
                        f"else the shipped default model {SHIPPED_CHECKPOINT.name})")
    parser.add_argument("--checkpoint", type=Path, help="our checkpoint or an official Shunted one")
    parser.add_argument("--input-size", "--imgsz", type=int,
                        help="input size, a multiple of 32 (default: the checkpoint's)")
    parser.add_argument("--batch", type=int, default=DEFAULTS.batch, help="static batch size (default 1)")
    parser.add_argument("--output", type=Path, help="artifact path (default: <output-dir>/<checkpoint>_<size>_<precision>)")
    parser.add_argument("--output-dir", type=Path, default=ARTIFACTS_DIR, help="folder for the default name (artifacts/)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing artifact")
    parser.add_argument("--precision", default=converter.precisions[0],
                        help=f"one of {', '.join(converter.precisions)} (default {converter.precisions[0]})")
    if converter.compressions:
        parser.add_argument("--compress", choices=converter.compressions, help="weight-only compression")
    parser.add_argument("--calib", help="int8 calibration: cifar10, fashion-mnist, an image folder or a .npy array "
                        "(default: the checkpoint's dataset)")
    parser.add_argument("--calib-size", type=int, help="calibration images (default 1024 up to 64 px, fewer "
                        "above; at most half of a small training split)")
    if converter.calib_methods:
        parser.add_argument("--calib-method", choices=converter.calib_methods,
                            help=f"int8 activation ranges (default {converter.calib_methods[0]})")
    parser.add_argument("--float-modules", nargs="*", default=[], metavar="NAME",
                        help="int8: modules kept in float (e.g. stages.0.blocks.0.attn), see quantize/rank_units.py")
    parser.add_argument("--no-search", action="store_true", help="int8: refuse an artifact that misses the "
                        "accuracy contract instead of searching for units to keep float")
    parser.add_argument("--search-budget", type=int, default=DEFAULTS.search_budget,
                        help=f"int8: most candidate artifacts the search builds (default {DEFAULTS.search_budget})")
    parser.add_argument("--random-weights", action="store_true", help="the weights are untrained: judge "
                        "reduced precisions by numerics only (their top-1 decisions are near-ties)")
    parser.add_argument("--verify-data", help="dataset for verification images: cifar10, fashion-mnist or an image folder "
                        "(default: the checkpoint's dataset)")
    parser.add_argument("--verify-images", type=int, default=DEFAULTS.verify_images,
                        help=f"most real images that judge the artifact (default {DEFAULTS.verify_images})")
    parser.add_argument("--verify-random", type=int, default=DEFAULTS.verify_random,
                        help="noise images for the fp32/fp16 numerical checks")
    if converter.add_arguments:
        converter.add_arguments(parser)
    return parser


def request_from_args(converter: Converter, args) -> ConvertRequest:
    """The parsed command line as a request (format options in the converter's options dataclass)."""
    options = converter.options(**{f.name: getattr(args, f.name) for f in fields(converter.options)
                                   if getattr(args, f.name, None) is not None})
    return ConvertRequest(
        model=args.model, checkpoint=args.checkpoint, input_size=args.input_size, batch=args.batch,
        precision=args.precision,
        compress=getattr(args, "compress", None), calib=args.calib, calib_size=args.calib_size,
        calib_method=getattr(args, "calib_method", None), float_modules=tuple(args.float_modules),
        search=not args.no_search, search_budget=args.search_budget, random_weights=args.random_weights,
        verify_data=args.verify_data,
        verify_images=args.verify_images, verify_random=args.verify_random, output=args.output,
        output_dir=args.output_dir, force=args.force, options=options)


def describe(manifest: Manifest) -> str:
    """The summary a converter prints: where, how big, the contract's verdict, int8 float units."""
    v = manifest.verification
    if v["status"] != "passed":
        check = f"verification {v['status']}: {v.get('reason', '')}"
    elif v.get("top1_agreement") is not None:
        check = (f"contract {v['contract']} holds on {v['data']} images ({v['engine']}): top-1 agreement "
                 f"{v['top1_agreement']:.2%} (95% lower bound {v['agreement_lower95']:.2%}), cosine p5 "
                 f"{v['cosine_p5']:.5f}" + (f", top-1 {v['delta_top1_points']:+.2f} points" if "top1" in v else ""))
    else:
        check = (f"contract {v['contract']} holds on {v['data']} images ({v['engine']}): max|diff| "
                 f"{v['max_abs_diff']:.2e}, over {v['samples']} inputs")
    search = manifest.get("int8_search")
    if manifest.precision == "int8":
        q = manifest.quantization or {}
        units = (f"{len(search['float_units'])} units kept float after {len(search['steps'])} candidates: "
                 f"{', '.join(search['float_units'])}" if search else "every unit int8")
        check += (f"\n  int8: {units} (calibration: {q.get('calib_method')}, {q.get('calibration_images')} images of "
                  f"{q.get('calibration_source')})")
    return (f"wrote {manifest.path} ({manifest.size_bytes / 1e6:.2f} MB; export {manifest['export_seconds']:.1f} s, "
            f"with verification {manifest['seconds']:.1f} s)\n  {check}\n"
            f"  manifest {manifest.manifest_path}")


def in_flags(err: RequestError) -> str:
    """A request error in command-line words: its argument and other field names as flags."""
    flag = lambda m: "--" + m.group(0).replace("_", "-")  # noqa: E731
    text = re.sub(rf"\b{re.escape(err.argument)}\b", flag, str(err), count=1)
    underscored = "|".join(f.name for f in fields(ConvertRequest) if "_" in f.name)
    return re.sub(rf"(?<!-)\b({underscored})\b", flag, text)


def main(converter: Converter, argv: list[str] | None = None) -> int:
    """Parse, convert, print the summary: 0 written, 1 verification failed, 2 a user mistake."""
    args = build_parser(converter).parse_args(argv)
    quiet_third_party()

    def run() -> int:
        try:
            manifest = build_artifact(converter, request_from_args(converter, args))
        except RequestError as err:
            raise ConvertError(in_flags(err)) from None
        except VerificationFailed as err:
            print(f"error: {err}; no artifact was written", file=sys.stderr)
            return 1
        print(describe(manifest))
        return 0
    return run_cli(run)
