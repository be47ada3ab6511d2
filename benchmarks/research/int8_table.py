"""int8 on every backend for a set of models: the accuracy contract's figures, the float units the
search kept, and int8/fp32 latency measured interleaved in one run.

    python benchmarks/research/int8_table.py shipped=weights/shunted_nano_fmnist.pt \\
        mine=runs/train/final.pt:/data/my_folder t=t.pth:fashion-mnist:random --json table.json

A model is NAME=CHECKPOINT[:DATA[:random]] (DATA: the verification/calibration images; ``random``:
untrained weights, judged by numerics). Core ML rows are verified with the mlprogram evaluator
on Linux (no latency there); ``--coreml-images`` caps its real images (the bound accounts for it);
random-weight models are verified on 64 real images.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import json  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402

from benchmarks.latency import Target, measure  # noqa: E402
from common.cli import Parser, run_cli  # noqa: E402
from common.errors import UserError  # noqa: E402
from convert.api import ConvertRequest, VerificationFailed, convert  # noqa: E402
from common.machine import machine_description  # noqa: E402
from common.text_table import text_table  # noqa: E402

FORMATS = ("onnx", "executorch", "coreml")
TIMED = ("onnx", "executorch")  # Core ML latency needs macOS
RANDOM_IMAGES = 64  # random weights are judged by numerics, whose percentile needs few images (as tests/test_int8.py)


def parse_model(spec: str) -> tuple[str, dict]:
    name, sep, rest = spec.partition("=")
    parts = rest.split(":")
    if not sep or not parts[0]:
        raise UserError(f"model {spec!r} is not NAME=CHECKPOINT[:DATA[:random]]")
    return name, {"checkpoint": Path(parts[0]), "data": parts[1] if len(parts) > 1 and parts[1] else None,
                  "random_weights": len(parts) > 2 and parts[2] == "random"}


def build(name: str, model: dict, fmt: str, precision: str, folder: Path, coreml_images: int) -> dict:
    """Convert one artifact; the manifest, or {'error': ...} when even the search fails."""
    suffix = {"onnx": ".onnx", "executorch": ".pte", "coreml": ".mlpackage"}[fmt]
    request = ConvertRequest(checkpoint=model["checkpoint"], precision=precision, verify_data=model["data"],
                             calib=model["data"], random_weights=model["random_weights"],
                             output=folder / f"{name}_{precision}{suffix}", force=True,
                             verify_images=RANDOM_IMAGES if model["random_weights"] else
                             coreml_images if fmt == "coreml" else ConvertRequest.verify_images)
    try:
        return dict(convert(None, fmt, request))
    except (UserError, VerificationFailed) as err:
        return {"error": str(err)}
    except Exception as err:  # a bug: keep the traceback with the row
        return {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}


def row(name: str, fmt: str, manifest: dict, ratio: float | None) -> list[str]:
    if "error" in manifest:
        return [name, fmt, "FAILED", "-", "-", "-", "-", manifest["error"][:80]]
    v = manifest["verification"]
    units = manifest.get("int8_search", {}).get("float_units", [])
    delta = f"{v['delta_top1_points']:+.2f}" if v.get("delta_top1_points") is not None else "n/a"
    return [name, fmt, f"{v['top1_agreement']:.2%} (>= {v['agreement_lower95']:.2%})", delta,
            f"{v['cosine_p5']:.4f}", str(len(units)) + (f" ({', '.join(units)})" if units else ""),
            "-" if ratio is None else f"{ratio:.2f}x", v["judged_by"]]


def run_table(models: dict, runs: int, rounds: int, coreml_images: int, json_path: Path | None,
              formats: tuple[str, ...] = FORMATS) -> int:
    results, targets = {}, []
    with tempfile.TemporaryDirectory(prefix="int8-table-") as tmp:
        for name, model in models.items():
            for fmt in formats:
                results[name, fmt] = build(name, model, fmt, "int8", Path(tmp), coreml_images)
                print(f"{name} {fmt}: {results[name, fmt].get('error') or 'verified'}", flush=True)
                if fmt in TIMED and "error" not in results[name, fmt]:
                    fp32 = build(name, model, fmt, "fp32", Path(tmp), coreml_images)
                    if "error" not in fp32:
                        targets += [Target(Path(fp32["path"]), f"{name} {fmt} fp32"),
                                    Target(Path(results[name, fmt]["path"]), f"{name} {fmt} int8")]
        timing = {t.label: r for t, r in zip(targets, measure(targets, runs, rounds=rounds))} if targets else {}
    table = []
    for (name, fmt), manifest in results.items():
        fp32, int8 = timing.get(f"{name} {fmt} fp32"), timing.get(f"{name} {fmt} int8")
        ratio = int8.median_ms / fp32.median_ms if fp32 and int8 and fp32.median_ms and int8.median_ms else None
        table.append(row(name, fmt, manifest, ratio))
    header = ["model", "backend", "top-1 agreement (95% bound)", "delta top-1", "cosine p5", "float units",
              "int8/fp32", "judged by"]
    print(f"\n{machine_description()}; latency: {runs} runs each in {rounds} interleaved rounds")
    print(text_table(header, table))
    if json_path:
        json_path.write_text(json.dumps({"machine": machine_description(), "header": header, "rows": table,
                                         "manifests": {f"{n} {f}": m for (n, f), m in results.items()}},
                                        indent=2, default=str) + "\n")
    return 1 if any("error" in m for m in results.values()) else 0


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="NAME=CHECKPOINT[:DATA[:random]]")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--coreml-images", type=int, default=300, help="real images for Core ML rows (default 300)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {','.join(FORMATS)}")
    parser.add_argument("--json", type=Path, help="also write the table and manifests here")
    args = parser.parse_args(argv)
    formats = tuple(args.formats.split(","))
    if not formats or not set(formats) <= set(FORMATS):
        parser.error(f"--formats {args.formats}: choose from {','.join(FORMATS)}")
    return run_cli(lambda: run_table(dict(parse_model(m) for m in args.models), args.runs, args.rounds,
                                     args.coreml_images, args.json, formats))


if __name__ == "__main__":
    sys.exit(main())
