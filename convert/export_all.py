"""Export every format in one go and print a summary table.

    python convert/export_all.py                      # default model: ONNX, ExecuTorch, Core ML fp16
    python convert/export_all.py --model shunted_t --checkpoint t.pth --output-dir out/ --force
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert import to_coreml, to_executorch, to_onnx
from convert.pipeline import USER_ERRORS, VerificationFailed, build_parser, convert
from model import list_models
from runtime.quiet import quiet_third_party
from runtime.text_table import text_table

# (converter, its own extra arguments)
JOBS = [(to_onnx.CONVERTER, []), (to_executorch.CONVERTER, ["--backend", "xnnpack"]),
        (to_coreml.CONVERTER, ["--precision", "fp16"])]


def shared_arguments(argv: list[str] | None) -> list[str]:
    """The command line, as arguments every converter understands."""
    parser = argparse.ArgumentParser(description="Export ONNX, ExecuTorch (XNNPACK) and Core ML artifacts, verified.")
    parser.add_argument("--model", choices=list_models())
    parser.add_argument("--checkpoint")
    parser.add_argument("--imgsz")
    parser.add_argument("--batch")
    parser.add_argument("--output-dir", help="folder for all artifacts (default: artifacts/)")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    shared = [f"--{k}={v}" for k, v in (("model", args.model), ("checkpoint", args.checkpoint),
                                        ("imgsz", args.imgsz), ("batch", args.batch),
                                        ("output-dir", args.output_dir)) if v is not None]
    return shared + (["--force"] if args.force else [])


def row(converter, manifest: dict | None, error: str | None) -> list[str]:
    if manifest is None:
        return [converter.format, "-", "FAILED", "-", "-", "-", error or ""]
    v = manifest["verification"]
    figures = (f"{v['max_abs_diff']:.1e}", f"{v['top1_agreement']:.0%}") if v["status"] == "passed" else ("-", "-")
    return [converter.format, manifest["precision"], v["status"], f"{manifest['size_bytes'] / 1e6:.2f}",
            *figures, f"{manifest['seconds']:.0f} s  {manifest['path']}"]


def main(argv: list[str] | None = None) -> int:
    quiet_third_party()
    shared = shared_arguments(argv)
    rows, failed = [], 0
    for converter, extra in JOBS:
        job_args = build_parser(converter).parse_args(shared + extra)
        manifest, error = None, None
        try:
            manifest = convert(converter, job_args)
        except (VerificationFailed, *USER_ERRORS) as err:
            error, failed = str(err), failed + 1
            print(f"error: {converter.format}: {err}", file=sys.stderr)
        rows.append(row(converter, manifest, error))
    header = ["format", "precision", "verification", "MB", "max|diff|", "top-1 agree", "time / path"]
    print(text_table(header, rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
