"""Our artifacts against the published network exported the straightforward way, timed in one run.

    python benchmarks/research/vs_published.py --checkpoint ckpt_T.pth --data photos/   # official weights
    python benchmarks/research/vs_published.py --model shunted_t                         # seeded random weights

The baseline is the published (B, N, C) formulation (benchmarks/research/published_shunted.py) with
the checkpoint's weights, exported as it is by the same ONNX / ExecuTorch-XNNPACK code as ours and
verified against our PyTorch model like any artifact (both compute one function; a mismatch fails).
Beside it, for each runtime: our fp32 and int8 artifacts of the same weights, built by the
converters. All six are timed in one interleaved run (benchmarks/latency.py); each ratio is ours over
the baseline of its runtime, as a ratio of medians and the 10th-90th percentile of the per-round
ratios. Artifacts go to ``--artifacts-dir`` and are reused while their manifests match.

A candidate change of our graph is measured in the same run: ``--variant few_reshapes=true`` (any
fields of ``model.deploy.Recipe``, benchmarks/research/recipe_variants.py) builds our fp32 and int8
artifacts again from that recipe, verified by the same contract, and reports each over ours of the
same precision, round by round.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.latency import LatencyResult, Target, measure, split_runs  # noqa: E402
from benchmarks.report.build import Job as ReportJob, reusable  # noqa: E402
from benchmarks.research.published_shunted import VARIANTS, build_reference, official_checkpoint, randomize_  # noqa: E402
from benchmarks.research.recipe_variants import Variant, VariantError, parse_variant  # noqa: E402
from common.cli import Parser, run_cli  # noqa: E402
from common.defaults import ARTIFACTS_DIR, RANDOM_WEIGHTS_DATA  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.machine import machine_description, physical_cores  # noqa: E402
from common.quiet import quiet_third_party  # noqa: E402
from common.text_table import text_table  # noqa: E402
from convert.api import ConvertRequest, VerificationFailed, convert, converter  # noqa: E402
from convert.manifest import finalize, remove, temporary_path  # noqa: E402
from convert.pipeline import export_unverified, prepare, verify  # noqa: E402
from model import file_sha256, read_checkpoint  # noqa: E402
from model.checkpoint import describe_architecture, identify_variant  # noqa: E402

FORMATS = ("onnx", "executorch")
RUNTIMES = {"onnx": "ONNX Runtime", "executorch": "ExecuTorch XNNPACK"}
ROWS = (("published", "fp32"), ("ours", "fp32"), ("ours", "int8"))
PUBLISHED_GRAPH = "published (B, N, C) formulation, exported as it is"


class PublishedError(UserError):
    """Weights the published formulation cannot hold, or an artifact that could not be timed."""


def random_official(variant: str, directory: Path) -> Path:
    """Seeded, realistic-scale random weights of ``variant`` in the official checkpoint format, saved once."""
    path = directory / "random_weights" / f"{variant}_published_random.pth"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        official_checkpoint(randomize_(build_reference(variant), seed=0), path, name=variant)
    return path


def published_model(checkpoint: Path) -> torch.nn.Module:
    """The published formulation holding the official-layout ``checkpoint``'s weights, eval mode."""
    stored = read_checkpoint(checkpoint)
    if not stored.official:
        raise PublishedError(f"{checkpoint} does not use the official key names (patch_embed1..., block1...); "
                             f"pass an official Shunted-T/S/B checkpoint, or --model NAME for random weights")
    variant = identify_variant(stored.state_dict)
    if variant not in VARIANTS:
        raise PublishedError(f"{checkpoint} holds {variant or 'an unknown network'}, not a published variant "
                             f"({', '.join(VARIANTS)})")
    model = build_reference(variant, describe_architecture(stored.state_dict)["num_classes"])
    model.load_state_dict({stored.file_key(key): value for key, value in stored.state_dict.items()})
    return model.eval()


def artifact(fmt: str, side: str, precision: str, request: ConvertRequest, directory: Path) -> Path:
    """Where the ``side`` (published or ours) ``precision`` artifact of ``request``'s weights goes."""
    return directory / f"{request.checkpoint.stem}_{side}_{request.input_size}_{precision}{converter(fmt).suffix}"


def side_name(variant: Variant) -> str:
    """The row of ours built from ``variant``'s recipe (its label and file name part)."""
    return f"ours-{variant.tag}"


def build(fmt: str, side: str, precision: str, request: ConvertRequest, directory: Path, graph: tuple | None,
          rebuild: bool) -> Path:
    """One artifact, converted and verified, or reused when its manifest matches. ``graph``: None for ours
    as the converter makes it, else (description, (job, backend) -> the model to export instead of the
    job's deploy form)."""
    path = artifact(fmt, side, precision, request, directory)
    sha = file_sha256(request.checkpoint)
    if not rebuild and reusable(path, ReportJob(f"{fmt}:{precision}", fmt, precision), sha, request.input_size, 1)[0]:
        return path
    request = replace(request, precision=precision, output=path, force=path.exists(),
                      calib=request.calib if precision == "int8" else None)
    if graph is None:
        convert(None, fmt, request)
        return path
    description, exported_model = graph
    format_converter = converter(fmt)
    job, _ = prepare(format_converter, request)
    job = replace(job, deploy_model=exported_model(job, format_converter.backend(job.options)))
    tmp, start = temporary_path(path), time.perf_counter()
    try:
        manifest, _ = export_unverified(format_converter, job, tmp)
        manifest["graph"] = description
        manifest["verification"] = verify(job, tmp, manifest)
        if manifest["verification"].get("missed"):
            raise VerificationFailed(f"the {fmt} {precision} export of the {description} misses the contract "
                                     "against our model: " + "; ".join(manifest["verification"]["missed"]))
        manifest["seconds"] = round(time.perf_counter() - start, 2)
        finalize(tmp, path, manifest, force=True)
    finally:
        remove(tmp)
    return path


def round_ratios(row: LatencyResult, base: LatencyResult, runs: int, rounds: int) -> np.ndarray:
    """Per interleaved round: median of ``row`` over median of ``base``."""
    edges = np.cumsum([0, *split_runs(runs, rounds)])
    return np.array([np.median(row.times_ms[a:b]) / np.median(base.times_ms[a:b]) for a, b in zip(edges, edges[1:])])


def graphs(published: torch.nn.Module, variants: list[Variant]) -> dict[str, tuple | None]:
    """Each row's graph for :func:`build`, by side: published, ours, then ours from each variant's recipe."""
    def variant_model(variant: Variant):
        return lambda job, backend: variant.deploy_model(job.model, backend, job.meta["input_size"])
    sides = {"published": (PUBLISHED_GRAPH, lambda job, backend: published), "ours": None}  # no rewrite
    sides.update({side_name(v): (f"ours, its recipe with {v}", variant_model(v)) for v in variants})
    return sides


def ratios(rows: dict[tuple, LatencyResult], runs: int, rounds: int,
           variants: tuple[Variant, ...] = ()) -> list[dict]:
    """One entry per runtime: the three medians and ours over the published fp32 export; for each
    variant, its medians and its ratio to ours of the same precision."""
    results = []
    for fmt in FORMATS:
        if (fmt, "published", "fp32") not in rows:
            continue
        base = rows[fmt, "published", "fp32"]
        entry = {"runtime": RUNTIMES[fmt], "published_fp32_ms": base.median_ms}
        for precision in ("fp32", "int8"):
            row = rows[fmt, "ours", precision]
            per_round = round_ratios(row, base, runs, rounds)
            entry[f"ours_{precision}_ms"] = row.median_ms
            entry[f"ours_{precision}_ratio"] = round(row.median_ms / base.median_ms, 3)
            entry[f"ours_{precision}_round_p10_p90"] = [round(float(v), 3) for v in np.percentile(per_round, [10, 90])]
        entry["variants"] = [variant_entry(rows, fmt, v, runs, rounds) for v in variants]
        results.append(entry)
    return results


def variant_entry(rows: dict[tuple, LatencyResult], fmt: str, variant: Variant, runs: int, rounds: int) -> dict:
    """``variant``'s rows of ``fmt`` against ours: median ratio of each round's medians, p10-p90 of them."""
    entry = {"variant": str(variant)}
    for precision in ("fp32", "int8"):
        row, ours = rows[fmt, side_name(variant), precision], rows[fmt, "ours", precision]
        per_round = round_ratios(row, ours, runs, rounds)
        entry[f"{precision}_ms"] = row.median_ms
        entry[f"{precision}_vs_ours"] = round(float(np.median(per_round)), 3)
        entry[f"{precision}_vs_ours_round_p10_p90"] = [round(float(v), 3) for v in np.percentile(per_round, [10, 90])]
    return entry


def format_ratios(results: list[dict]) -> str:
    def cell(entry: dict, precision: str) -> str:
        low, high = entry[f"ours_{precision}_round_p10_p90"]
        return (f"{entry[f'ours_{precision}_ms']:.2f} ms = {entry[f'ours_{precision}_ratio']:.2f}x "
                f"(rounds {low:.2f}-{high:.2f}x)")
    table = text_table(["runtime", "published fp32", "ours fp32 / published", "ours int8 / published"],
                       [[e["runtime"], f"{e['published_fp32_ms']:.2f} ms", cell(e, "fp32"), cell(e, "int8")]
                        for e in results])
    variants = [(e["runtime"], v) for e in results for v in e.get("variants", [])]
    if not variants:
        return table

    def against_ours(variant: dict, precision: str) -> str:
        low, high = variant[f"{precision}_vs_ours_round_p10_p90"]
        return (f"{variant[f'{precision}_ms']:.2f} ms = {variant[f'{precision}_vs_ours']:.3f}x "
                f"(rounds {low:.2f}-{high:.2f}x)")
    return table + "\n\n" + text_table(
        ["runtime", "variant", "fp32 / ours fp32", "int8 / ours int8"],
        [[runtime, v["variant"], against_ours(v, "fp32"), against_ours(v, "int8")] for runtime, v in variants])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n\n")[0])
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, help="official Shunted-T/S/B checkpoint (official key names)")
    weights.add_argument("--model", choices=list(VARIANTS), help="seeded random weights of this variant "
                                                                 "(default shunted_t)")
    parser.add_argument("--input-size", "--imgsz", type=int, default=224, help="input size (default 224)")
    parser.add_argument("--data", default=RANDOM_WEIGHTS_DATA, help="real images that calibrate and judge int8 "
                        f"(default {RANDOM_WEIGHTS_DATA})")
    parser.add_argument("--verify-images", type=int, default=ConvertRequest.verify_images,
                        help=f"real images that verify each artifact (default {ConvertRequest.verify_images})")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--runs", type=int, default=100, help="timed runs per artifact (default 100)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaving rounds (default 10)")
    parser.add_argument("--threads", type=int, help="threads (default: physical cores)")
    parser.add_argument("--artifacts-dir", type=Path, default=ARTIFACTS_DIR / "vs_published",
                        help="where the artifacts are built and reused (default artifacts/vs_published)")
    parser.add_argument("--variant", action="append", default=[], metavar="FIELD=VALUE[,...]",
                        help="also build ours from its recipe with these model.deploy.Recipe fields changed "
                             "(e.g. few_reshapes=true) and time it against ours; repeatable")
    parser.add_argument("--rebuild", action="store_true", help="convert again even when a matching artifact exists")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    for name in ("runs", "rounds", "threads", "input_size", "verify_images"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint} not found; pass an official Shunted checkpoint file")
    try:
        args.variants = tuple(dict.fromkeys(parse_variant(text) for text in args.variant))
    except VariantError as err:
        parser.error(f"--variant: {err}")
    return args


def run(args: argparse.Namespace) -> dict:
    args.artifacts_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or random_official(args.model or "shunted_t", args.artifacts_dir)
    published = published_model(checkpoint)
    request = ConvertRequest(checkpoint=checkpoint, input_size=args.input_size, verify_data=args.data,
                             calib=args.data, random_weights=args.checkpoint is None,
                             verify_images=args.verify_images)
    sides = graphs(published, list(args.variants))
    rows = [*ROWS, *((side_name(v), precision) for v in args.variants for precision in ("fp32", "int8"))]
    paths = {}
    for fmt in args.formats:
        for side, precision in rows:
            print(f"{fmt} {side} {precision}: building or reusing", file=sys.stderr, flush=True)
            paths[fmt, side, precision] = build(fmt, side, precision, request, args.artifacts_dir, sides[side],
                                                args.rebuild)
    threads = args.threads or physical_cores()
    keys = list(paths)
    measured = measure([Target(paths[key], label=" ".join(key)) for key in keys], args.runs, rounds=args.rounds,
                       threads=threads)
    failed = [row for row in measured if not row.ok]
    if failed:
        raise PublishedError(f"{failed[0].label}: {failed[0].error}")
    results = ratios(dict(zip(keys, measured)), args.runs, args.rounds, args.variants)
    machine = machine_description(threads)
    print(f"{checkpoint.name} at {args.input_size} px; machine: {machine}; {args.runs} runs per artifact in "
          f"{args.rounds} interleaved rounds, batch 1")
    print(format_ratios(results))
    report = {"checkpoint": str(checkpoint), "input_size": args.input_size, "machine": machine, "runs": args.runs,
              "rounds": args.rounds, "results": results, "artifacts": {" ".join(k): str(v) for k, v in paths.items()}}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_third_party()

    def command() -> int:
        try:
            run(args)
        except VerificationFailed as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    return run_cli(command)


if __name__ == "__main__":
    sys.exit(main())
