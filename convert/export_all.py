"""Export every format in one go and print a summary table.

    python convert/export_all.py                      # default model: ONNX, ExecuTorch, Core ML fp16
    python convert/export_all.py --model shunted_t --checkpoint t.pth --output-dir out/ --force
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.api import ConvertRequest, Manifest, VerificationFailed, convert, converter
from convert.pipeline import prepare
from common.cli import Parser, run_cli
from common.defaults import ARTIFACTS_DIR
from common.errors import UserError
from model import list_models
from common.quiet import quiet_third_party
from common.text_table import text_table

JOBS = (("onnx", "fp32"), ("executorch", "fp32"), ("coreml", "fp16"))  # (format, precision)


def parse_request(argv: list[str] | None) -> ConvertRequest:
    """The command line as the request every format shares."""
    parser = Parser(description="Export ONNX, ExecuTorch (XNNPACK) and Core ML artifacts, verified.")
    parser.add_argument("--model", choices=list_models())
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--input-size", "--imgsz", type=int)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=ARTIFACTS_DIR, help="folder for all artifacts (default: artifacts/)")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    return ConvertRequest(model=args.model, checkpoint=args.checkpoint, input_size=args.input_size, batch=args.batch,
                          output_dir=args.output_dir, force=args.force)


def row(fmt: str, manifest: Manifest | None, error: str | None) -> list[str]:
    if manifest is None:
        return [fmt, "-", "FAILED", "-", "-", "-", error or ""]
    v = manifest.verification
    figures = (f"{v['max_abs_diff']:.1e}", f"{v['top1_agreement']:.0%}") if manifest.verified else ("-", "-")
    return [fmt, manifest.precision, v["status"], f"{manifest.size_bytes / 1e6:.2f}",
            *figures, f"{manifest['seconds']:.0f} s  {manifest.path}"]


def export_all(request: ConvertRequest) -> int:
    """Convert ``request`` to every format; print one table; 1 if any failed."""
    for fmt, precision in JOBS:  # every request checked before the first export
        prepare(converter(fmt), replace(request, precision=precision))
    rows, failed = [], 0
    for fmt, precision in JOBS:
        manifest, error = None, None
        try:
            manifest = convert(None, fmt, request, precision=precision)
        except (VerificationFailed, UserError) as err:
            error, failed = str(err), failed + 1
            print(f"error: {fmt}: {err}", file=sys.stderr)
        rows.append(row(fmt, manifest, error))
    header = ["format", "precision", "verification", "MB", "max|diff|", "top-1 agree", "time / path"]
    print(text_table(header, rows))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    request = parse_request(argv)
    quiet_third_party()
    return run_cli(lambda: export_all(request))


if __name__ == "__main__":
    sys.exit(main())
