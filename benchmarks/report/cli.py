"""The report's command line and the order of its phases.

    python -m benchmarks.report                                   # default model on its own test split
    python -m benchmarks.report --model shunted_t --input-size 224     # random weights: latency only
    python -m benchmarks.report --model shunted_t --checkpoint t.pth --data /data/imagenet --limit 5000

Each run writes a new folder ``runs/report-YYYYmmdd-HHMMSS[-N]`` with report.md, report.json and
accuracy_vs_latency.png. Artifacts are built with the converters' Python API into ``artifacts/``
and reused when their manifest matches (same checkpoint sha256, precision, input size, batch and an
intact file). A failing artifact becomes a row with its error. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

from benchmarks.accuracy import DEFAULT_COREML_LIMIT
from benchmarks.latency import DEFAULT_OMP_WAIT_POLICY
from common.cli import Parser, run_cli
from common.defaults import ARTIFACTS_DIR, RANDOM_WEIGHTS_DATA, ROOT, RUNS_DIR, SHIPPED_CHECKPOINT
from common.outputs import OutputError, check_folder
from common.machine import cpu_features, cpu_model, cuda_available, machine_description, physical_cores

DEFAULT_SPECS = ("onnx:fp32", "onnx:int8", "executorch:fp32", "executorch:int8",
                 "coreml:fp16", "coreml:int8", "coreml:fp16+palettize4", "coreai:fp16")
# Apple's Linux reference path runs the default model at 32 px in 0.13 s per image and Shunted-T at 224
# in about 9 s (2-core AMD EPYC, AVX2, 2026-12-07): its 3,000 images of verification and accuracy
# would take hours there, so above this size Core AI is a row on request only (macOS runs it natively)
COREAI_DEFAULT_MAX_SIZE = 64


def default_specs(input_size: int, system: str | None = None) -> tuple[list[str], str | None]:
    """The report's default rows for this input size and OS, and a note when Core AI is left out."""
    if input_size <= COREAI_DEFAULT_MAX_SIZE or (system or platform.system()) == "Darwin":
        return list(DEFAULT_SPECS), None
    return [s for s in DEFAULT_SPECS if not s.startswith("coreai:")], (
        f"note: coreai:fp16 left out at {input_size} px: Apple's Core AI runtime on Linux is a slow reference "
        f"path (Shunted-T at 224: about 9 s per image, hours for the row); add it with --artifacts "
        f"{','.join(DEFAULT_SPECS)}")


def make_run_dir(base: Path = RUNS_DIR, now: datetime | None = None) -> Path:
    """Create and return a new ``base/report-YYYYmmdd-HHMMSS[-N]``; never reuses an existing folder.

    ``os.mkdir`` is atomic, so two reports started in the same second still get two folders.
    """
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    stem = f"report-{(now or datetime.now()):%Y%m%d-%H%M%S}"
    for n in range(10_000):
        folder = base / (stem if n == 0 else f"{stem}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder name for {base / stem}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from model import list_models
    parser = Parser(prog="python -m benchmarks.report",
                    description="Accuracy-vs-latency report of every artifact of a model.")
    parser.add_argument("--model", choices=list_models(), help="variant; without --checkpoint: random weights "
                        "(latency only, accuracy n/a)")
    parser.add_argument("--checkpoint", type=Path, help=f"weights (default: {SHIPPED_CHECKPOINT.relative_to(ROOT)})")
    parser.add_argument("--data", help="'cifar10[:PATH]', 'fashion-mnist[:DIR]', an image folder in ImageNet val "
                        "layout (one sub-folder per class: accuracy), or a folder of images or .npy without labels "
                        "(agreement with PyTorch only); default: the checkpoint's dataset (random weights: "
                        f"{RANDOM_WEIGHTS_DATA}, for int8 calibration)")
    parser.add_argument("--split", default="test", help="split for accuracy (default test)")
    parser.add_argument("--input-size", "--imgsz", type=int,
                        help="input size (default: the checkpoint's; 224 for random weights)")
    parser.add_argument("--threads", type=int, help=f"threads for every runtime (default: physical cores, "
                        f"{physical_cores()} here)")
    parser.add_argument("--runs", type=int, default=100, help="timed iterations per artifact (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations after loading (default 10)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaving rounds (default 10)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of artifacts and timing (default 1)")
    parser.add_argument("--limit", type=int, help="accuracy on the first N images of a seeded permutation")
    parser.add_argument("--coreml-limit", type=int, default=DEFAULT_COREML_LIMIT, help="images for Core ML accuracy "
                        f"on Linux (numpy evaluator; default {DEFAULT_COREML_LIMIT}, 0 = all)")
    parser.add_argument("--artifacts", help="comma-separated FORMAT:PRECISION[+COMPRESS] (default: "
                        f"{','.join(DEFAULT_SPECS)}; on Linux coreai:fp16 only up to {COREAI_DEFAULT_MAX_SIZE} px)")
    parser.add_argument("--artifacts-dir", type=Path, default=ARTIFACTS_DIR, help="where artifacts are built "
                        "and reused (default artifacts/)")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="parent of the run folders (default runs/)")
    parser.add_argument("--rebuild", action="store_true", help="convert again even when a matching artifact exists")
    parser.add_argument("--no-cuda", action="store_true", help="no PyTorch CUDA row even if a GPU is present")
    parser.add_argument("--omp-wait-policy", default=DEFAULT_OMP_WAIT_POLICY, choices=("PASSIVE", "ACTIVE", "inherit"),
                        help="OMP_WAIT_POLICY of the latency workers (default PASSIVE, see benchmarks/README.md)")
    parser.add_argument("--build-workers", type=int, default=min(2, physical_cores()),
                        help="artifacts converted at once, each in its own process (default: 2 on 2+ cores; "
                             "1: one after another in this process)")
    parser.add_argument("--web", action="store_true", help="also time the ONNX artifacts in headless Chromium "
                        "(ONNX Runtime Web, WASM; benchmarks/web_latency.py): this machine's browser, not a phone")
    args = parser.parse_args(argv)
    for name, low in (("runs", 1), ("warmup", 0), ("rounds", 1), ("batch", 1), ("coreml_limit", 0)):
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}")
    for name in ("threads", "limit", "input_size", "build_workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("artifacts_dir", "runs_dir"):
        try:
            check_folder(getattr(args, name), f"--{name.replace('_', '-')}")
        except OutputError as err:
            parser.error(str(err))
    return args


def run_report(args: argparse.Namespace, command: str | None = None) -> None:
    """Build, measure and render one report into a new run folder."""
    from benchmarks import latency
    from benchmarks.apple_crosscheck import report_cross_check
    from benchmarks.report.build import build_all, parse_spec, resolve_weights
    from benchmarks.report.measure import AccuracyPhase, latency_targets, make_rows, prepare_accuracy
    from benchmarks.report.render import document, markdown_table, plot_or_note, write
    from convert.manifest import versions
    from common.quiet import quiet_third_party
    from data import pixel_cache

    started, wall = datetime.now(), time.perf_counter()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    quiet_third_party()
    weights = resolve_weights(args.checkpoint, args.model, args.input_size, args.artifacts_dir)
    specs, left_out = (args.artifacts.split(","), None) if args.artifacts else \
        default_specs(weights.meta["input_size"])
    jobs = [parse_spec(s) for s in specs if s.strip()]
    if left_out:
        weights.notes.append(left_out)
    for note in weights.notes:
        print(note, file=sys.stderr)
    args.data = args.data or weights.meta.get("dataset") or (RANDOM_WEIGHTS_DATA if weights.random else None)
    if not args.data:
        print(f"note: {weights.path} names no dataset: accuracy (and int8, judged on real images) needs --data "
              f"FOLDER; measuring latency only", file=sys.stderr)
    run_dir = make_run_dir(args.runs_dir, started)
    print(f"report: {run_dir}", file=sys.stderr)
    threads = args.threads or physical_cores()
    phases = {}

    with pixel_cache.shared_cache(run_dir):  # a folder's photos decoded once, not once per artifact
        t0 = time.perf_counter()  # the reference first: each build worker then judges the artifact it built
        judged = not weights.random and bool(args.data)
        accuracy = prepare_accuracy(weights, args.data, args.split, args.limit, cpu_only=args.no_cuda) if judged \
            else AccuracyPhase()
        if accuracy.judge is not None:
            accuracy.judge.coreml_limit, accuracy.judge.threads = args.coreml_limit or None, threads
        phases["reference_s"] = round(time.perf_counter() - t0, 1)

        t0 = time.perf_counter()
        build_all(jobs, weights, args.batch, args.artifacts_dir, args.data, args.rebuild, run_dir / "conversions.log",
                  args.build_workers, judge=accuracy.judge)
        built = [job for job in jobs if not job.error]
        accuracy.collect(built)
        cross_check = report_cross_check(built, args.data, args.split, args.coreml_limit or None) if judged else None
        phases["artifacts_and_accuracy_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()  # interleaved, one process per row
    targets = latency_targets(weights, built, cuda=not args.no_cuda and cuda_available())
    omp = None if args.omp_wait_policy == "inherit" else args.omp_wait_policy
    latencies = latency.measure([t for t, _ in targets], runs=args.runs, warmup=args.warmup, rounds=args.rounds,
                                threads=threads, batch=args.batch, omp_wait_policy=omp)
    web = []  # the ONNX artifacts again, timed in the page
    if args.web:
        from benchmarks.web_latency import measure_web
        onnx = [job for job in built if job.format == "onnx"]
        web = [((latency.Target(job.path, label=f"{job.label} in Chromium"), job), row) for job, row in
               zip(onnx, measure_web([job.path for job in onnx], args.runs, args.warmup, args.rounds, threads))]
    phases["latency_s"] = round(time.perf_counter() - t0, 1)

    installed = versions()
    rows = make_rows(jobs, list(zip(targets, latencies)) + web, weights, accuracy, installed)
    engines = {target.label: row.runtime for (target, _), row in web}
    for row in rows:
        row.runtime = engines.get(row.label, row.runtime)
    meta = weights.meta
    header = {
        "created": started.isoformat(timespec="seconds"), "run_dir": str(run_dir),
        "command": command,
        "machine": machine_description(threads), "cpu_model": cpu_model(), "cpu_features": cpu_features(),
        "physical_cores": physical_cores(), "threads": threads, "platform": platform.platform(),
        "load_average_start": load_start, "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "model": meta["variant"], "input_size": meta["input_size"], "checkpoint": str(weights.path),
        "checkpoint_sha256": weights.sha256, "random_weights": weights.random,
        "data": accuracy.data, "coreml_limit": args.coreml_limit, "build_workers": args.build_workers, "batch": args.batch, "runs": args.runs,
        "warmup": args.warmup, "rounds": args.rounds,
        "omp_wait_policy": omp or os.environ.get("OMP_WAIT_POLICY") or "default",
        "artifacts_dir": str(args.artifacts_dir), "versions": installed,
        "reference_accuracy": accuracy.reference, "phases": phases, "wall_seconds": None, "notes": weights.notes,
        "apple_cross_check": cross_check,
    }
    report = document(header, rows)
    plot_or_note(report, rows, run_dir)
    report["wall_seconds"] = round(time.perf_counter() - wall, 1)
    write(run_dir, report)
    print(markdown_table(report))
    print(f"\nreport written to {run_dir} ({report['wall_seconds']:.0f} s)")


def omp_wait_policy(argv: list[str]) -> str:
    """--omp-wait-policy alone, read before :func:`parse_args` imports torch (for --model's choices)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--omp-wait-policy", default=DEFAULT_OMP_WAIT_POLICY)
    return early.parse_known_args(argv)[0].omp_wait_policy


def main(argv: list[str] | None = None) -> int:
    command = "python -m benchmarks.report " + " ".join(sys.argv[1:]) if argv is None else None
    argv = sys.argv[1:] if argv is None else list(argv)
    # this process's PyTorch work (reference accuracy, conversions) gets the workers' OpenMP policy,
    # set before torch is first imported, unless --omp-wait-policy inherit
    policy = omp_wait_policy(argv)
    if policy in ("PASSIVE", "ACTIVE") and "torch" not in sys.modules:  # too late to matter once imported
        os.environ.setdefault("OMP_WAIT_POLICY", policy)
    args = parse_args(argv)
    return run_cli(lambda: run_report(args, command))
