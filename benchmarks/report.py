"""The accuracy-vs-latency report: build (or reuse) every artifact, measure accuracy and latency.

    python benchmarks/report.py                                   # default model on Fashion-MNIST test
    python benchmarks/report.py --model shunted_t --imgsz 224     # random weights: latency only
    python benchmarks/report.py --model shunted_t --checkpoint t.pth --data /data/imagenet --limit 5000

Each run writes a new folder ``runs/report-YYYYmmdd-HHMMSS[-N]`` with report.md, report.json and
accuracy_vs_latency.png. Artifacts are built with the converters' Python API into ``artifacts/``
and reused when their manifest matches (same checkpoint sha256, precision, input size, batch and an
intact file). A failing artifact becomes a row with its error. See benchmarks/README.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from datetime import datetime  # noqa: E402

from common.defaults import ARTIFACTS_DIR, RUNS_DIR, SHIPPED_CHECKPOINT, SHIPPED_VARIANT  # noqa: E402
from common.cli import Parser  # noqa: E402
from common.errors import UserError  # noqa: E402
from benchmarks.accuracy import DEFAULT_COREML_LIMIT, DEFAULT_DATA  # noqa: E402
from benchmarks.latency import (DEFAULT_OMP_WAIT_POLICY, Target, cpu_features, cpu_model,  # noqa: E402
                                cuda_available, machine_description, physical_cores)

DEFAULT_SPECS = ("onnx:fp32", "onnx:int8", "executorch:fp32", "executorch:int8",
                 "coreml:fp16", "coreml:int8", "coreml:fp16+palettize4")
FORMAT_NAMES = {"pytorch": "PyTorch", "onnx": "ONNX", "executorch": "ExecuTorch", "coreml": "Core ML"}
COLUMNS = ["format", "runtime", "precision", "status", "size MB", "top-1", "delta top-1", "agreement",
           "median ms", "p90 ms", "FPS", "speed-up", "peak memory MB"]
RANDOM_NA = "n/a (random weights)"


class ReportError(UserError):
    """A request the report cannot serve (missing weights, bad arguments); printed as one line."""


# --- run folders --------------------------------------------------------------------------------
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


# --- Pareto front -------------------------------------------------------------------------------
def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (latency, accuracy) no other point dominates, fastest first.

    A point is dominated when another is at least as fast and at least as accurate, and strictly
    better in one of the two. Exact duplicates are both kept.
    """
    front = []
    for i, (lat, acc) in enumerate(points):
        if not all(math.isfinite(v) for v in (lat, acc)):
            continue
        dominated = any(l2 <= lat and a2 >= acc and (l2 < lat or a2 > acc)
                        for j, (l2, a2) in enumerate(points) if j != i and math.isfinite(l2) and math.isfinite(a2))
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


# --- artifact jobs ------------------------------------------------------------------------------
@dataclass
class Job:
    """One artifact of the report: ``format:precision[+compress]``."""

    spec: str
    format: str
    precision: str
    compress: str | None = None
    path: Path | None = None
    manifest: dict | None = None
    built: str = ""  # "built" or "reused"
    build_seconds: float | None = None
    error: str | None = None
    accuracy: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{FORMAT_NAMES.get(self.format, self.format)} {self.precision_label}"

    @property
    def precision_label(self) -> str:
        if self.format == "coreml" and self.precision == "int8":
            return "W8A8 (int8)"
        return self.precision + (f" + {self.compress}" if self.compress else "")


def parse_spec(spec: str) -> Job:
    """``onnx:fp32``, ``executorch:int8``, ``coreml:fp16+palettize4`` -> Job (format checked later)."""
    fmt, sep, rest = spec.strip().partition(":")
    if not sep or not fmt or not rest:
        raise ReportError(f"artifact spec {spec!r} is not FORMAT:PRECISION[+COMPRESS] (e.g. onnx:int8, "
                         f"coreml:fp16+palettize4)")
    precision, _, compress = rest.partition("+")
    return Job(spec.strip(), fmt.lower(), precision, compress or None)


def reusable(path: Path, job: Job, checkpoint_sha: str, size: int, batch: int) -> tuple[dict | None, str]:
    """(manifest, "") if the artifact at ``path`` is the one asked for and intact, else (None, why)."""
    from convert.manifest import artifact_sha256, artifact_size
    from runtime import ArtifactError, read_manifest
    if not path.exists():
        return None, "absent"
    try:
        manifest = read_manifest(path)
    except ArtifactError as err:
        return None, str(err)
    if manifest is None:
        return None, "no manifest"
    model, details = manifest.get("model", {}), manifest.get("details", {})
    checks = {
        "checkpoint sha256": model.get("checkpoint_sha256") == checkpoint_sha,
        "precision": manifest.get("precision") == job.precision,
        "input size": model.get("input_size") == size,
        "batch": (manifest.get("input", {}).get("shape") or [None])[0] == batch,
        "verification": manifest.get("verification", {}).get("status") in ("passed", "not run"),
        "backend": job.format != "executorch" or details.get("backend", "xnnpack") == "xnnpack",
        "compression": job.compress is None or job.compress in json.dumps(manifest),
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        return None, "manifest differs in " + ", ".join(failed)
    if manifest.get("size_bytes") != artifact_size(path) or manifest.get("sha256") != artifact_sha256(path):
        return None, "file changed since its manifest was written"
    return manifest, ""


def build(job: Job, checkpoint: Path, checkpoint_sha: str, size: int, batch: int, directory: Path,
          verify_data: str | None, rebuild: bool, log, calib: str | None = None) -> None:
    """Reuse or convert ``job`` through the conversion API; failures land in ``job.error``."""
    from convert.api import ConvertRequest, convert, converter
    request = ConvertRequest(checkpoint=checkpoint, imgsz=size, batch=batch, precision=job.precision,
                             compress=job.compress, verify_data=verify_data, output_dir=directory,
                             calib=calib if (job.precision == "int8" or job.compress) else None,
                             eval_images=0)  # the report measures accuracy itself, on the whole test set
    start = time.perf_counter()
    try:
        job.path = converter(job.format).artifact_path(request, checkpoint.stem, size)
        if not rebuild:
            manifest, _ = reusable(job.path, job, checkpoint_sha, size, batch)
            if manifest is not None:
                job.manifest, job.built = {**manifest, "path": str(job.path)}, "reused"
                return
        print(f"\n=== {job.spec}: {request}", file=log, flush=True)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            job.manifest = convert(job.format, replace(request, output=job.path, force=job.path.exists()))
        job.built = "built"
    except Exception as err:  # every failure of one artifact is that row's error, never the report's
        text = str(err).strip()
        job.error = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:600]
        print(f"error: {job.error}", file=log, flush=True)
        if not isinstance(err, UserError):
            traceback.print_exc(file=log)
    job.build_seconds = round(time.perf_counter() - start, 1)


# --- the effective checkpoint -------------------------------------------------------------------
def random_checkpoint(variant: str, size: int, directory: Path) -> Path:
    """Seeded random weights (1000-class ImageNet head, ImageNet preprocessing) saved once and reused."""
    import torch

    from data import imagenet_preprocess
    from model import create_model, read_checkpoint, save_checkpoint
    path = directory / "random_weights" / f"{size}px" / f"{variant}_random.pt"  # artifacts: <variant>_random_<size>_...
    if path.is_file():
        try:
            meta = read_checkpoint(path).meta
            if meta.get("variant") == variant and meta.get("input_size") == size:
                return path
        except Exception:  # unreadable leftover: write it again
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = create_model(variant, num_classes=1000, img_size=size)
    return save_checkpoint(path, model, {**model.meta, "preprocess": imagenet_preprocess(size), "random_weights": True})


def resized_checkpoint(checkpoint: Path, size: int, directory: Path) -> Path:
    """The checkpoint's weights with input size ``size`` (resize/crop scaled alike), saved once."""
    from model import create_model, file_sha256, read_checkpoint, save_checkpoint
    meta = read_checkpoint(checkpoint).meta
    original = create_model(checkpoint_path=checkpoint).meta
    if original["input_size"] == size:
        return checkpoint
    spec = dict(original["preprocess"])
    spec["resize"], spec["crop"] = max(size, round(size * spec["resize"] / spec["crop"])), size
    path = directory / "resized" / f"{size}px" / checkpoint.name  # artifacts: <stem>_<size>_...
    source_sha = file_sha256(checkpoint)
    if path.is_file():
        try:
            if read_checkpoint(path).meta.get("source_sha256") == source_sha:
                return path
        except Exception:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    model = create_model(checkpoint_path=checkpoint, img_size=size)
    return save_checkpoint(path, model, {**meta, **model.meta, "input_size": size, "preprocess": spec,
                                         "source_sha256": source_sha})


# --- table cells --------------------------------------------------------------------------------
def num(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def runtime_name(fmt: str, device: str = "cpu", compute_units: str | None = None, versions: dict | None = None) -> str:
    v = versions or {}
    if fmt == "pytorch":
        return f"PyTorch {v.get('torch', '')} eager {'CUDA' if device == 'cuda' else 'CPU'}".replace("  ", " ")
    if fmt == "onnx":
        return f"ONNX Runtime {v.get('onnxruntime', '')} CPU EP".replace("  ", " ")
    if fmt == "executorch":
        return f"ExecuTorch {v.get('executorch', '')} XNNPACK".replace("  ", " ")
    if fmt == "coreml":
        if compute_units:
            return f"Core ML {compute_units}"
        return "Core ML (accuracy here: mlprogram numpy evaluator)" if platform.system() != "Darwin" else "Core ML"
    return fmt


def coreml_static_checks(manifest: dict) -> str:
    d, v = manifest.get("details", {}), manifest.get("verification", {})
    parts = [f"rank <= {d['max_rank']}" if "max_rank" in d else None,
             f"{d['compute_precision']} compute" if "compute_precision" in d else None,
             f"{d['num_ops']} ops" if "num_ops" in d else None,
             f"verification {v.get('status', '?')}" + (f" ({v['engine']})" if v.get("engine") else "")]
    return "static checks: " + ", ".join(p for p in parts if p)


def installed_versions() -> dict:
    from convert.manifest import versions
    return versions()


# --- the report ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from model import list_models
    parser = Parser(description="Accuracy-vs-latency report of every artifact of a model.")
    parser.add_argument("--model", choices=list_models(), help="variant; without --checkpoint: random weights "
                        "(latency only, accuracy n/a)")
    parser.add_argument("--checkpoint", type=Path, help="weights (default: weights/shunted_nano_fmnist.pt)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="'fashion-mnist' (default) or an image folder in "
                        "ImageNet val layout (one sub-folder per class)")
    parser.add_argument("--split", default="test", help="split for accuracy (default test)")
    parser.add_argument("--imgsz", type=int, help="input size (default: the checkpoint's; 224 for random weights)")
    parser.add_argument("--threads", type=int, help=f"threads for every runtime (default: physical cores, "
                        f"{physical_cores()} here)")
    parser.add_argument("--runs", type=int, default=100, help="timed iterations per artifact (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations after loading (default 10)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaving rounds (default 10)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of artifacts and timing (default 1)")
    parser.add_argument("--limit", type=int, help="accuracy on the first N images of a seeded permutation")
    parser.add_argument("--coreml-limit", type=int, default=DEFAULT_COREML_LIMIT, help="images for Core ML accuracy "
                        f"on Linux (numpy evaluator; default {DEFAULT_COREML_LIMIT}, 0 = all)")
    parser.add_argument("--artifacts", default=",".join(DEFAULT_SPECS), help="comma-separated FORMAT:PRECISION"
                        f"[+COMPRESS] (default: {','.join(DEFAULT_SPECS)})")
    parser.add_argument("--artifacts-dir", type=Path, default=ARTIFACTS_DIR, help="where artifacts are built "
                        "and reused (default artifacts/)")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="parent of the run folders (default runs/)")
    parser.add_argument("--rebuild", action="store_true", help="convert again even when a matching artifact exists")
    parser.add_argument("--no-cuda", action="store_true", help="no PyTorch CUDA row even if a GPU is present")
    parser.add_argument("--omp-wait-policy", default=DEFAULT_OMP_WAIT_POLICY, choices=("PASSIVE", "ACTIVE", "inherit"),
                        help="OMP_WAIT_POLICY of the latency workers (default PASSIVE, see benchmarks/README.md)")
    args = parser.parse_args(argv)
    for name, low in (("runs", 1), ("warmup", 0), ("rounds", 1), ("batch", 1), ("coreml_limit", 0)):
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}")
    for name in ("threads", "limit", "imgsz"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def resolve_checkpoint(args: argparse.Namespace) -> tuple[Path, bool, list[str]]:
    """(checkpoint every row is built from, random weights?, warnings)."""
    from model import create_model
    notes = []
    if args.checkpoint is None and args.model is None:
        if not SHIPPED_CHECKPOINT.is_file():
            raise ReportError(f"default weights {SHIPPED_CHECKPOINT} are missing; pass --checkpoint, or "
                              f"--model NAME for random weights (latency only, e.g. --model {SHIPPED_VARIANT} --imgsz 32)")
        args.checkpoint = SHIPPED_CHECKPOINT
    if args.checkpoint is None:
        size = args.imgsz or 224
        notes.append(f"warning: no --checkpoint: {args.model} with random weights (seed 0) - accuracy columns "
                     f"are {RANDOM_NA}; latency and speed-ups are real")
        return random_checkpoint(args.model, size, args.artifacts_dir), True, notes
    if not args.checkpoint.is_file():
        raise ReportError(f"checkpoint {args.checkpoint} not found")
    meta = create_model(args.model, checkpoint_path=args.checkpoint).meta
    if args.imgsz and args.imgsz != meta["input_size"]:
        notes.append(f"note: {args.checkpoint.name} is a {meta['input_size']} px model; running it at {args.imgsz} px")
        return resized_checkpoint(args.checkpoint, args.imgsz, args.artifacts_dir), False, notes
    return args.checkpoint, False, notes


def run_report(args: argparse.Namespace) -> Path:
    from tqdm import tqdm

    from benchmarks import accuracy as acc
    from benchmarks import latency as lat
    from model import create_model, file_sha256
    from runtime.quiet import quiet_third_party

    started, wall = datetime.now(), time.perf_counter()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    quiet_third_party()
    jobs = [parse_spec(s) for s in args.artifacts.split(",") if s.strip()]
    checkpoint, random_weights, notes = resolve_checkpoint(args)
    for note in notes:
        print(note, file=sys.stderr)
    run_dir = make_run_dir(args.runs_dir, started)
    print(f"report: {run_dir}", file=sys.stderr)
    meta = create_model(checkpoint_path=checkpoint).meta
    size, sha = meta["input_size"], file_sha256(checkpoint)
    threads = args.threads or physical_cores()
    phases = {}

    # 1. artifacts
    t0 = time.perf_counter()
    args.artifacts_dir.mkdir(parents=True, exist_ok=True)
    verify_data = None if random_weights else args.data
    with open(run_dir / "conversions.log", "w") as log:
        bar = tqdm(jobs, desc="artifacts: build or reuse", unit="artifact", file=sys.stderr)
        for job in bar:
            bar.set_postfix_str(job.spec)
            build(job, checkpoint, sha, size, args.batch, args.artifacts_dir, verify_data, args.rebuild, log,
                  calib=args.data)
            bar.write(f"  {job.spec}: " + (f"error: {job.error[:150]}" if job.error else
                                            f"{job.built} {job.path.name}" +
                                            (f" in {job.build_seconds:.0f} s" if job.built == "built" else "")),
                      file=sys.stderr)
    phases["artifacts_s"] = round(time.perf_counter() - t0, 1)
    ok_jobs = [j for j in jobs if not j.error]

    # 2. accuracy
    t0 = time.perf_counter()
    reference = None
    reference_accuracy: dict = {}
    eval_description = None
    if not random_weights:
        try:
            eval_set = acc.EvalSet(args.data, args.split, meta["preprocess"], args.limit)
            eval_description = f"{eval_set.describe()}, {len(eval_set)} images"
            reference = acc.reference_results(checkpoint, eval_set, batch_size=64,
                                              device="cpu" if args.no_cuda else None)
            reference_accuracy = {**reference.metrics, "status": "ok", "engine": f"pytorch ({reference.device})"}
        except Exception as err:
            reference_accuracy = {"status": "error", "error": f"{type(err).__name__}: {err}"[:600]}
        if reference is not None:
            for job in ok_jobs:
                try:
                    job.accuracy = acc.measure_accuracy(job.path, eval_set, reference, batch_size=64, threads=threads,
                                                        coreml_limit=args.coreml_limit or None)
                except Exception as err:  # a runtime failing on this artifact is its row's error
                    job.accuracy = {"status": "error", "error": f"{type(err).__name__}: {err}"[:600]}
    phases["accuracy_s"] = round(time.perf_counter() - t0, 1)

    # 3. latency, interleaved, one process per row
    t0 = time.perf_counter()
    targets: list[tuple[Target, Job | None]] = [(Target(checkpoint, label="PyTorch fp32 CPU"), None)]
    if not args.no_cuda and cuda_available():
        targets.append((Target(checkpoint, label="PyTorch fp32 CUDA", device="cuda"), None))
    for job in ok_jobs:
        if job.format == "coreml":
            targets += [(Target(job.path, label=f"{job.label} {cu}", compute_units=cu), job) for cu in ("ALL", "CPU_ONLY")] \
                if platform.system() == "Darwin" else [(Target(job.path, label=job.label), job)]
        else:
            targets.append((Target(job.path, label=job.label), job))
    omp = None if args.omp_wait_policy == "inherit" else args.omp_wait_policy
    latencies = lat.measure([t for t, _ in targets], runs=args.runs, warmup=args.warmup, rounds=args.rounds,
                            threads=threads, batch=args.batch, omp_wait_policy=omp)
    phases["latency_s"] = round(time.perf_counter() - t0, 1)

    # 4. rows
    versions = installed_versions()
    base = latencies[0] if latencies[0]["status"] == "ok" else None
    measured = list(zip(targets, latencies))
    rows = [make_row(target, None, latency, base, checkpoint, random_weights, reference_accuracy, versions)
            for (target, job), latency in measured if job is None]
    for job in jobs:  # in the order asked for; a failed artifact is a row with its error
        if job.error:
            rows.append(make_row(None, job, None, base, checkpoint, random_weights, reference_accuracy, versions))
        rows += [make_row(target, job, latency, base, checkpoint, random_weights, reference_accuracy, versions)
                 for (target, owner), latency in measured if owner is job]
    points = [(r["median_ms"], r["top1"]) if isinstance(r.get("median_ms"), float) and isinstance(r.get("top1"), float)
              else (math.nan, math.nan) for r in rows]
    front = pareto_front(points)
    for i, row in enumerate(rows):
        row["pareto"] = i in front
    wall_s = round(time.perf_counter() - wall, 1)
    report = {
        "created": started.isoformat(timespec="seconds"), "run_dir": str(run_dir),
        "command": "python benchmarks/report.py " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("report.py") else None,
        "machine": machine_description(threads), "cpu_model": cpu_model(), "cpu_features": cpu_features(),
        "physical_cores": physical_cores(), "threads": threads, "platform": platform.platform(),
        "load_average_start": load_start, "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "model": meta["variant"], "input_size": size, "checkpoint": str(checkpoint), "checkpoint_sha256": sha,
        "random_weights": random_weights, "data": None if random_weights else eval_description,
        "coreml_limit": args.coreml_limit, "batch": args.batch, "runs": args.runs, "warmup": args.warmup,
        "rounds": args.rounds, "omp_wait_policy": omp or os.environ.get("OMP_WAIT_POLICY") or "default",
        "artifacts_dir": str(args.artifacts_dir), "versions": versions,
        "reference_accuracy": reference_accuracy, "phases": phases, "wall_seconds": wall_s,
        "columns": COLUMNS, "rows": rows, "pareto": [rows[i]["label"] for i in front], "notes": notes,
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    try:
        plot(rows, report, run_dir / "accuracy_vs_latency.png")
    except Exception as err:  # the tables are still worth having
        report["notes"].append(f"plot failed: {type(err).__name__}: {err}")
        print(f"warning: plot failed: {err}", file=sys.stderr)
    report["wall_seconds"] = round(time.perf_counter() - wall, 1)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (run_dir / "report.md").write_text(markdown(report))
    print(markdown_table(rows))
    print(f"\nreport written to {run_dir} ({report['wall_seconds']:.0f} s)")
    return run_dir


def make_row(target: Target | None, job: Job | None, latency: dict | None, base: dict | None, checkpoint: Path,
             random_weights: bool, reference_accuracy: dict, versions: dict) -> dict:
    """One report row: the artifact's build, accuracy and latency results, as values and as cells."""
    fmt = job.format if job else "pytorch"
    row = {"label": target.label if target else job.label, "format": FORMAT_NAMES.get(fmt, fmt),
           "precision": job.precision_label if job else "fp32", "spec": job.spec if job else "pytorch:fp32",
           "artifact": str(job.path if job else checkpoint) if (job is None or job.path) else None,
           "device": target.device if target else None, "compute_units": target.compute_units if target and fmt == "coreml"
           and platform.system() == "Darwin" else None}
    row["runtime"] = runtime_name(fmt, row["device"] or "cpu", row["compute_units"], versions)
    notes = []
    if job is not None and job.error:
        row.update(status="error", error=job.error, size_mb=None, top1=None, top5=None, delta_top1=None,
                   agreement=None, median_ms=None, p90_ms=None, p99_ms=None, fps=None, speedup=None, peak_rss_mb=None)
        row["cells"] = cells(row, random_weights, notes)
        return row
    manifest = job.manifest if job else None
    size_bytes = manifest["size_bytes"] if manifest else Path(checkpoint).stat().st_size
    row.update(size_mb=size_bytes / 1e6, built=job.built if job else None, build_seconds=job.build_seconds if job else None,
               verification=(manifest or {}).get("verification"), details=(manifest or {}).get("details"))
    status, error = "ok", None
    accuracy = reference_accuracy if job is None else job.accuracy
    row["accuracy"] = accuracy
    if not random_weights and accuracy:
        if accuracy.get("status") == "error":
            status, error = "error", f"accuracy: {accuracy['error']}"
        elif accuracy.get("note") and not accuracy.get("subset"):  # a subset shows as (n=...) in top-1
            notes.append(accuracy["note"])
    row.update({k: accuracy.get(k) if not random_weights and accuracy.get("status") == "ok" else None
                for k in ("top1", "top5", "delta_top1", "agreement", "n")})
    if job is None:
        row["delta_top1"] = 0.0 if row["top1"] is not None else None
    if latency is not None:
        row["latency"] = {k: v for k, v in latency.items() if k != "times_ms"}
        row["times_ms"] = latency.get("times_ms")
        if latency["status"] == "needs macOS":
            status = "needs macOS"
        elif latency["status"] == "error":
            status, error = "error", f"latency: {latency['error']}" + (f"; {error}" if error else "")
        elif latency.get("note"):
            notes.append(latency["note"])
    for key in ("median_ms", "p90_ms", "p99_ms", "fps", "peak_rss_mb", "load_seconds", "threads"):
        row[key] = (latency or {}).get(key)
    row["speedup"] = base["median_ms"] / row["median_ms"] if base and row.get("median_ms") else None
    if fmt == "coreml" and manifest:
        notes.insert(0, coreml_static_checks(manifest))
    if job is not None and job.built == "reused":
        notes.append("reused")
    row.update(status=status, error=error)
    row["cells"] = cells(row, random_weights, notes)
    return row


def cells(row: dict, random_weights: bool, notes: list[str]) -> dict:
    """The row as the markdown table shows it, keyed by COLUMNS."""
    if row["status"] == "error":
        status = f"error: {row['error'][:160]}"
    elif row["status"] == "needs macOS":
        status = "ok, latency needs macOS"
    else:
        status = "ok"
    if notes:
        status += " - " + "; ".join(notes)
    accuracy_missing = RANDOM_NA if random_weights else "-"
    subset = f" (n={row['n']})" if row.get("n") and row.get("accuracy", {}).get("subset") else ""
    needs_mac = row["status"] == "needs macOS"
    latency_missing = "needs macOS" if needs_mac else "-"
    return {
        "format": row["format"], "runtime": row["runtime"], "precision": row["precision"], "status": status,
        "size MB": num(row.get("size_mb"), ".2f"),
        "top-1": num(row.get("top1"), ".2f", accuracy_missing) + (subset if row.get("top1") is not None else ""),
        "delta top-1": num(row.get("delta_top1"), "+.2f", accuracy_missing),
        "agreement": num(row.get("agreement"), ".2f", accuracy_missing) + ("%" if row.get("agreement") is not None else ""),
        "median ms": num(row.get("median_ms"), ".2f", latency_missing),
        "p90 ms": num(row.get("p90_ms"), ".2f", latency_missing),
        "FPS": num(row.get("fps"), ".1f", latency_missing),
        "speed-up": (num(row.get("speedup"), ".2f") + "x") if row.get("speedup") else latency_missing,
        "peak memory MB": num(row.get("peak_rss_mb"), ".0f", latency_missing),
    }


def markdown_table(rows: list[dict]) -> str:
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(esc(r["cells"][c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    rows = report["rows"]
    weights = (f"random weights ({Path(report['checkpoint']).name}, seed 0)" if report["random_weights"]
               else f"`{report['checkpoint']}` (sha256 {report['checkpoint_sha256'][:12]})")
    load = report.get("load_average_start")
    lines = [
        f"# Accuracy vs latency: {report['model']} at {report['input_size']} px",
        "",
        f"- created {report['created']}, wall time {report['wall_seconds']:.0f} s "
        f"(artifacts {report['phases'].get('artifacts_s', 0):.0f} s, accuracy {report['phases'].get('accuracy_s', 0):.0f} s, "
        f"latency {report['phases'].get('latency_s', 0):.0f} s)",
        f"- machine: {report['machine']}; {report['platform']}"
        + (f"; load average at start {load[0]:.2f}" if load else ""),
        f"- weights: {weights}",
        f"- accuracy: {RANDOM_NA}" if report["random_weights"] else
        f"- accuracy: {report['data'] or 'not measured'}; reference = PyTorch fp32; agreement = same top-1 as the reference",
        f"- latency: batch {report['batch']}, {report['runs']} timed runs per row after {report['warmup']} warm-up runs, "
        f"interleaved in {report['rounds']} rounds, each row in its own process, {report['threads']} threads, "
        f"OMP_WAIT_POLICY={report['omp_wait_policy']}; speed-up vs PyTorch fp32 CPU of this run",
        f"- versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
        *[f"- {note}" for note in report.get("notes", [])],
        "",
        markdown_table(rows),
        "",
    ]
    if report["pareto"]:
        lines += ["Pareto front (fastest first; no other row is both faster and more accurate): "
                  + ", ".join(report["pareto"]), ""]
    errors = [r for r in rows if r.get("error")]
    if errors:
        lines += ["Errors:", ""] + [f"- {r['label']}: {r['error']}" for r in errors] + [""]
    ref = report.get("reference_accuracy") or {}
    if ref.get("status") == "ok":
        lines += [f"Reference top-5: {ref['top5']:.2f}% on {ref['n']} images ({ref.get('engine')}).", ""]
    if platform.system() != "Darwin" and any(r["format"] == "Core ML" for r in rows):
        lines += ["Core ML rows: latency needs macOS (Core ML predict); their accuracy comes from the project's numpy "
                  "ML Program evaluator on a subset (n shown), compared with the reference on the same images.", ""]
    lines += ["Plot: accuracy_vs_latency.png. Raw timings and every figure: report.json.", ""]
    return "\n".join(lines)


def plot(rows: list[dict], report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    cores = report.get("physical_cores")
    title = (f"{report['model']} {report['input_size']} px, batch {report['batch']}"
             + (f", {report['data']}" if report.get("data") else "")
             + f"\n{report['cpu_model']} ({cores} cores, {report.get('cpu_features', '')}), "
             f"{report['threads']} thread{'s' if report['threads'] != 1 else ''}")
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    timed = [r for r in rows if isinstance(r.get("median_ms"), float)]
    if report["random_weights"] or not any(isinstance(r.get("top1"), float) for r in timed):
        names = [r["label"] for r in timed]
        ax.barh(range(len(timed)), [r["median_ms"] for r in timed], color="tab:blue", label="median")
        ax.errorbar([r["median_ms"] for r in timed], range(len(timed)), fmt="none", ecolor="gray", capsize=3,
                    xerr=[[0] * len(timed), [max(r["p90_ms"] - r["median_ms"], 0) for r in timed]], label="to p90")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_yticks(range(len(timed)), names)
        ax.invert_yaxis()
        ax.set_xlabel("median latency (ms)")
        ax.set_title(title + " - accuracy n/a (random weights)", fontsize=10)
        for i, r in enumerate(timed):
            ax.annotate(f" {r['median_ms']:.2f} ms", (r["median_ms"], i), va="bottom", fontsize=8)
    else:
        points = [r for r in timed if isinstance(r.get("top1"), float)]
        front = [r for r in points if r.get("pareto")]
        ax.scatter([r["median_ms"] for r in points], [r["top1"] for r in points], s=40, color="tab:blue",
                   label="artifact (median)", zorder=3)
        ax.errorbar([r["median_ms"] for r in points], [r["top1"] for r in points], fmt="none", ecolor="gray",
                    alpha=0.6, capsize=2, xerr=[[0] * len(points), [max(r["p90_ms"] - r["median_ms"], 0) for r in points]],
                    label="to p90 latency", zorder=1)
        ax.scatter([r["median_ms"] for r in front], [r["top1"] for r in front], s=120, facecolors="none",
                   edgecolors="tab:red", linewidths=1.5, label="Pareto front", zorder=4)
        if front:
            xs, ys = [], []
            for r in sorted(front, key=lambda r: r["median_ms"]):  # staircase: best accuracy reachable per budget
                if xs:
                    xs.append(r["median_ms"])
                    ys.append(ys[-1])
                xs.append(r["median_ms"])
                ys.append(r["top1"])
            ax.plot(xs, ys, color="tab:red", linestyle="--", linewidth=1, zorder=2)
        same_top1: dict[float, int] = {}  # rows of equal accuracy (every fp32 row) alternate above/below
        for r in sorted(points, key=lambda r: r["median_ms"]):
            top1 = round(r["top1"], 2)
            n = same_top1[top1] = same_top1.get(top1, -1) + 1
            ax.annotate(r["label"], (r["median_ms"], r["top1"]), textcoords="offset points",
                        xytext=(5, 4) if n % 2 == 0 else (5, -11), fontsize=8)
        lats = [r["median_ms"] for r in points]
        if lats and max(lats) / max(min(lats), 1e-9) > 8:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax.set_xlabel("median latency (ms)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        left_out = [r["label"] for r in rows if r not in points]
        ax.set_title(title, fontsize=10)
        if left_out:
            fig.text(0.01, 0.01, "not plotted (no latency or accuracy here): " + ", ".join(left_out), fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # this process's PyTorch work (reference accuracy, conversions) gets the workers' OpenMP policy,
    # set before torch is first imported (parse_args imports it), unless --omp-wait-policy inherit
    policy = next((a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
                   for i, a in enumerate(argv) if a.startswith("--omp-wait-policy")), DEFAULT_OMP_WAIT_POLICY)
    if policy in ("PASSIVE", "ACTIVE") and "torch" not in sys.modules:  # too late to matter once imported
        os.environ.setdefault("OMP_WAIT_POLICY", policy)
    args = parse_args(argv)
    try:
        run_report(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
