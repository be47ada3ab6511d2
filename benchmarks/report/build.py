"""The report's artifacts: ``format:precision[+compress]`` specs, each reused when its manifest
matches or built through the conversion API, and the checkpoint every row is built from."""
from __future__ import annotations

import json
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from common.defaults import SHIPPED_CHECKPOINT, SHIPPED_VARIANT
from common.errors import UserError
from common.quiet import output_to
from data import pixel_cache

FORMAT_NAMES = {"pytorch": "PyTorch", "onnx": "ONNX", "executorch": "ExecuTorch", "coreml": "Core ML",
                "coreai": "Core AI"}
RANDOM_NA = "n/a (random weights)"


class ReportError(UserError):
    """A request the report cannot serve (missing weights, bad arguments); printed as one line."""


@dataclass
class Job:
    """One artifact of the report: ``format:precision[+compress]``, and how it was obtained."""

    spec: str
    format: str
    precision: str
    compress: str | None = None
    path: Path | None = None
    manifest: dict | None = None
    built: str = ""  # "built" or "reused"
    build_seconds: float | None = None
    error: str | None = None
    accuracy: dict | None = None  # set by the report's judge right after the build
    judged_logits: object = None  # numpy logits of the first images, kept for the Apple cross-check

    @property
    def label(self) -> str:
        return f"{FORMAT_NAMES.get(self.format, self.format)} {self.precision_label}"

    @property
    def precision_label(self) -> str:
        if self.format == "coreml" and self.precision == "int8":
            return "W8A8 (int8)"
        return self.precision + (f" + {self.compress}" if self.compress else "")


@dataclass
class Weights:
    """The checkpoint every row is built from."""

    path: Path
    random: bool  # seeded random weights: accuracy is meaningless
    sha256: str
    meta: dict
    notes: list[str]


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


def build(job: Job, weights: Weights, batch: int, directory: Path, verify_data: str | None, rebuild: bool, log,
          calib: str | None = None) -> None:
    """Reuse or convert ``job`` through the conversion API; failures land in ``job.error``."""
    from convert.api import ConvertRequest, convert, converter
    size = weights.meta["input_size"]
    request = ConvertRequest(checkpoint=weights.path, input_size=size, batch=batch, precision=job.precision,
                             compress=job.compress, verify_data=verify_data, output_dir=directory,
                             calib=calib if (job.precision == "int8" or job.compress) else None)
    start = time.perf_counter()
    try:
        job.path = converter(job.format).artifact_path(request, weights.path.stem, size)
        if not rebuild:
            manifest, _ = reusable(job.path, job, weights.sha256, size, batch)
            if manifest is not None:
                job.manifest, job.built = {**manifest, "path": str(job.path)}, "reused"
                return
        print(f"\n=== {job.spec}: {request}", file=log, flush=True)
        with output_to(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            job.manifest = convert(None, job.format, request, output=job.path, force=job.path.exists())
        job.built = "built"
    except Exception as err:  # every failure of one artifact is that row's error, never the report's
        text = str(err).strip()
        job.error = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:600]
        print(f"error: {job.error}", file=log, flush=True)
        if not isinstance(err, UserError):
            traceback.print_exc(file=log)
    job.build_seconds = round(time.perf_counter() - start, 1)


def build_all(jobs: list[Job], weights: Weights, batch: int, directory: Path, data: str | None, rebuild: bool,
              log_path: Path, workers: int = 1, judge: Callable[[Job, int | None], None] | None = None) -> None:
    """:func:`build` every job, ``workers`` at a time, each in its own process when ``workers`` > 1
    (their CPU threads shared out), one progress line each; converter output goes to ``log_path``.
    ``judge(job, threads)``, when given, runs on each built artifact in the process that built it, so
    one artifact is measured while the next converts."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm import tqdm

    from common.machine import children_environment, physical_cores, thread_variables
    directory.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(jobs), desc="artifacts: build or reuse", unit="artifact", file=sys.stderr)
    todo = []
    for job in jobs:
        if data is None and (job.precision == "int8" or job.compress):
            job.error = f"{job.compress or 'int8'} is calibrated and judged on real images: pass --data FOLDER"
            _report_built(bar, job)
        else:
            todo.append(job)
    logs = [log_path.with_name(f".{log_path.name}.{i}") for i in range(len(todo))]
    args = (weights, batch, directory, None if weights.random else data, rebuild)
    try:
        if workers <= 1 or len(todo) <= 1:
            for job, log in zip(todo, logs):
                bar.set_postfix_str(job.spec)
                _report_built(bar, build_logged(job, *args, log, data, judge=judge))
        else:
            threads = max(1, physical_cores() // workers)
            # each worker's numpy (Core ML's evaluator) and OpenMP pools at its share of the cores: left at
            # every core, two workers' pools spin against each other (Core ML verification 2x slower)
            with children_environment(thread_variables(threads)), ProcessPoolExecutor(
                    min(workers, len(todo)), mp_context=get_context("spawn"), initializer=_init_worker,
                    initargs=(judge, pixel_cache.folder())) as pool:
                futures = {pool.submit(build_logged, job, *args, log, data, threads, _WORKER_JUDGE): job
                           for job, log in sorted(zip(todo, logs), key=lambda pair: -expected_cost(pair[0]))}
                for future in as_completed(futures):
                    job = futures[future]
                    vars(job).update(vars(future.result()))
                    _report_built(bar, job)
    finally:
        bar.close()
        with open(log_path, "w") as out:
            for log in logs:
                if log.exists():
                    out.write(log.read_text(errors="replace"))
                    log.unlink()


# Seconds to build, verify and judge each default artifact in a one-thread worker (fresh report,
# 2026-12-06 21:10, AMD EPYC, 2 cores, workers' thread pools capped; ONNX int8 from 22:21, with its
# calibration session capped too; Core ML and Core AI accuracy reuse their verification's outputs).
# The parallel builds start the costliest first, so that no long job starts last and runs alone on
# an idle machine.
EXPECTED_SECONDS = {("coreai", "float"): 192, ("executorch", "int8"): 67, ("coreml", "int8"): 48,
                    ("executorch", "float"): 31, ("onnx", "int8"): 27, ("coreml", "compressed"): 21,
                    ("coreml", "float"): 17, ("onnx", "float"): 15}


def expected_cost(job: Job) -> int:
    kind = "int8" if job.precision == "int8" else "compressed" if job.compress else "float"
    return EXPECTED_SECONDS.get((job.format, kind), 100)


_WORKER_JUDGE = "worker's judge"  # stands for the judge a worker process received once, at its start
_worker_judge: Callable[[Job, int | None], None] | None = None


def _init_worker(judge: Callable[[Job, int | None], None] | None, pixels: Path | None) -> None:
    """A build worker's start: the report's judge, and the pixel cache the report keeps (data.pixel_cache)."""
    global _worker_judge
    _worker_judge = judge
    pixel_cache.use(pixels)


def build_logged(job: Job, weights: Weights, batch: int, directory: Path, verify_data: str | None, rebuild: bool,
                 log_path: Path, calib: str | None, threads: int | None = None,
                 judge: Callable[[Job, int | None], None] | str | None = None) -> Job:
    """:func:`build` with the converter's output in ``log_path`` (and ``threads`` CPU threads), then
    ``judge`` on the built artifact; returns ``job``."""
    if threads:
        import torch
        torch.set_num_threads(threads)
    judge = _worker_judge if judge == _WORKER_JUDGE else judge
    with open(log_path, "w") as log:
        build(job, weights, batch, directory, verify_data, rebuild, log, calib=calib)
    if judge is not None and not job.error:
        judge(job, threads)
    return job


def _report_built(bar, job: Job) -> None:
    outcome = f"error: {job.error[:150]}" if job.error else f"{job.built} {job.path.name}" + (
        f" in {job.build_seconds:.0f} s" if job.built == "built" else "")
    bar.write(f"  {job.spec}: {outcome}", file=sys.stderr)
    bar.update()


# --- the checkpoint -----------------------------------------------------------------------------
def resolve_weights(checkpoint: Path | None, variant: str | None, input_size: int | None, directory: Path) -> Weights:
    """The weights every row is built from: ``checkpoint`` (resized to ``input_size``), the shipped model,
    or seeded random ``variant`` weights."""
    from model import create_model, file_sha256
    notes = []
    if checkpoint is None and variant is None:
        if not SHIPPED_CHECKPOINT.is_file():
            raise ReportError(f"default weights {SHIPPED_CHECKPOINT} are missing; pass --checkpoint, or "
                              f"--model NAME for random weights (latency only, e.g. --model {SHIPPED_VARIANT} "
                              f"--input-size 32)")
        checkpoint = SHIPPED_CHECKPOINT
    if checkpoint is None:
        notes.append(f"warning: no --checkpoint: {variant} with random weights (seed 0) - accuracy columns "
                     f"are {RANDOM_NA}; latency and speed-ups are real")
        path, random = random_checkpoint(variant, input_size or 224, directory), True
    elif not checkpoint.is_file():
        raise ReportError(f"checkpoint {checkpoint} not found")
    else:
        size = create_model(variant, checkpoint_path=checkpoint).meta["input_size"]
        path, random = checkpoint, False
        if input_size and input_size != size:
            notes.append(f"note: {checkpoint.name} is a {size} px model; running it at {input_size} px")
            path = resized_checkpoint(checkpoint, input_size, directory)
    return Weights(path, random, file_sha256(path), create_model(checkpoint_path=path).meta, notes)


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
    model = create_model(variant, num_classes=1000, input_size=size)
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
    model = create_model(checkpoint_path=checkpoint, input_size=size)
    return save_checkpoint(path, model, {**meta, **model.meta, "input_size": size, "preprocess": spec,
                                         "source_sha256": source_sha})
