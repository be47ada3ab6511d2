"""The report's measurements: accuracy of every artifact against the PyTorch reference, latency of
every row in one interleaved run, and the typed :class:`Row` each result becomes."""
from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.latency import LatencyResult, Target
from benchmarks.report.build import FORMAT_NAMES, Job, Weights


@dataclass
class AccuracyPhase:
    """The accuracy phase: the reference's metrics (or error) and each artifact's, keyed by spec."""

    reference: dict = field(default_factory=dict)
    artifacts: dict[str, dict] = field(default_factory=dict)
    data: str | None = None  # the evaluation set, described
    judge: "ArtifactJudge | None" = None  # None: no reference, so no artifact is judged

    def collect(self, jobs: list[Job]) -> None:
        """Gather the judged jobs' results, keyed by spec."""
        self.artifacts.update({job.spec: job.accuracy for job in jobs if job.accuracy is not None})


@dataclass
class Row:
    """One row of the report: what was measured, as values (the table's cells are rendered from it)."""

    label: str
    format: str
    precision: str
    spec: str
    runtime: str
    artifact: str | None = None
    device: str | None = None
    compute_units: str | None = None
    status: str = "ok"  # "ok", "error" or "needs macOS"
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    size_mb: float | None = None
    built: str | None = None
    build_seconds: float | None = None
    verification: dict | None = None
    details: dict | None = None
    int8_search: dict | None = None  # the float units the converter's search kept, with its ranking
    accuracy: dict = field(default_factory=dict)
    top1: float | None = None
    top5: float | None = None
    delta_top1: float | None = None
    agreement: float | None = None
    agreement_lower95: float | None = None
    drop_lower95: float | None = None
    n: int | None = None
    latency: dict | None = None
    times_ms: list[float] | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    fps: float | None = None
    peak_rss_mb: float | None = None
    load_seconds: float | None = None
    threads: int | None = None
    speedup: float | None = None
    pareto: bool = False


def prepare_accuracy(weights: Weights, data: str, split: str, limit: int | None, cpu_only: bool) -> AccuracyPhase:
    """The evaluation set and the fp32 PyTorch reference on it, before any artifact is judged; a failure
    is the phase's reference error, not an exception."""
    from benchmarks import accuracy as acc
    from benchmarks.eval_set import EvalSet
    result = AccuracyPhase()
    try:
        eval_set = EvalSet(data, split, weights.meta["preprocess"], limit, weights.meta.get("labels"))
        result.data = f"{eval_set.describe()}, {len(eval_set)} images"
        reference = acc.reference_results(weights.path, eval_set, batch_size=64, device="cpu" if cpu_only else None)
    except Exception as err:
        result.reference = {"status": "error", "error": f"{type(err).__name__}: {err}"[:600]}
        return result
    result.reference = {**reference.metrics, "status": "ok", "engine": f"pytorch ({reference.device})"}
    result.judge = ArtifactJudge(eval_set, reference)
    return result


@dataclass
class ArtifactJudge:
    """One artifact's accuracy against the reference on the shared images; picklable, so a build worker
    judges what it has just built while other conversions run."""

    eval_set: object  # benchmarks.eval_set.EvalSet
    reference: object  # benchmarks.accuracy.Reference
    coreml_limit: int | None = None
    threads: int | None = None

    def __call__(self, job: Job, threads: int | None = None) -> None:
        """Set ``job.accuracy``: the metrics, or ``status: error`` when the runtime fails on it."""
        from benchmarks import accuracy as acc
        try:
            job.accuracy = acc.measure_accuracy(job.path, self.eval_set, self.reference, batch_size=64,
                                                threads=threads or self.threads, coreml_limit=self.coreml_limit,
                                                progress=False).to_dict()
        except Exception as err:  # a runtime failing on this artifact is its row's error
            job.accuracy = {"status": "error", "error": f"{type(err).__name__}: {err}"[:600]}
            return
        from benchmarks.apple_crosscheck import PAIR
        if job.spec in PAIR and job.accuracy.get("status") == "ok":  # outputs just computed: from runtime.memo
            from runtime import load_artifact
            n = min(self.coreml_limit or len(self.eval_set), len(self.eval_set))
            job.judged_logits = load_artifact(job.path, threads=threads).judged_outputs(
                next(self.eval_set.batches(n, n)))


def latency_targets(weights: Weights, jobs: list[Job], cuda: bool) -> list[tuple[Target, Job | None]]:
    """The timed rows: PyTorch fp32 on CPU (and CUDA), then each artifact (Core ML on macOS: twice)."""
    targets: list[tuple[Target, Job | None]] = [(Target(weights.path, label="PyTorch fp32 CPU"), None)]
    if cuda:
        targets.append((Target(weights.path, label="PyTorch fp32 CUDA", device="cuda"), None))
    for job in jobs:
        if job.format == "coreml" and platform.system() == "Darwin":
            targets += [(Target(job.path, label=f"{job.label} {cu}", compute_units=cu), job) for cu in ("ALL", "CPU_ONLY")]
        else:
            targets.append((Target(job.path, label=job.label), job))
    return targets


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
    if fmt == "coreai":
        where = "OS framework" if platform.system() == "Darwin" else "reference CPU path, not a device figure"
        return f"Core AI runtime {v.get('coreai-core', '')} ({where})".replace("  ", " ")
    return fmt


def coreml_static_checks(manifest: dict) -> str:
    d, v = manifest.get("details", {}), manifest.get("verification", {})
    parts = [f"rank <= {d['max_rank']}" if "max_rank" in d else None,
             f"{d['compute_precision']} compute" if "compute_precision" in d else None,
             f"{d['num_ops']} ops" if "num_ops" in d else None,
             f"verification {v.get('status', '?')}" + (f" ({v['engine']})" if v.get("engine") else "")]
    return "static checks: " + ", ".join(p for p in parts if p)


def make_row(target: Target | None, job: Job | None, latency: LatencyResult | None, base: LatencyResult | None,
             weights: Weights,
             accuracy: AccuracyPhase, versions: dict) -> Row:
    """One row from an artifact's build, accuracy and latency results (``job`` None: the PyTorch reference)."""
    fmt = job.format if job else "pytorch"
    device = target.device if target else None
    compute_units = target.compute_units if target and fmt == "coreml" and platform.system() == "Darwin" else None
    row = Row(label=target.label if target else job.label, format=FORMAT_NAMES.get(fmt, fmt),
              precision=job.precision_label if job else "fp32", spec=job.spec if job else "pytorch:fp32",
              runtime=runtime_name(fmt, device or "cpu", compute_units, versions),
              artifact=str(job.path if job else weights.path) if (job is None or job.path) else None,
              device=device, compute_units=compute_units)
    if job is not None and job.error:
        row.status, row.error = "error", job.error
        return row
    manifest = job.manifest if job else None
    row.size_mb = (manifest["size_bytes"] if manifest else Path(weights.path).stat().st_size) / 1e6
    row.built, row.build_seconds = (job.built, job.build_seconds) if job else (None, None)
    row.verification, row.details = (manifest or {}).get("verification"), (manifest or {}).get("details")
    row.int8_search = (manifest or {}).get("int8_search")
    row.accuracy = accuracy.reference if job is None else accuracy.artifacts.get(job.spec, {})
    if not weights.random and row.accuracy:
        if row.accuracy.get("status") == "error":
            row.status, row.error = "error", f"accuracy: {row.accuracy['error']}"
        elif row.accuracy.get("note") and not row.accuracy.get("subset"):  # a subset shows as (n=...) in top-1
            row.notes.append(row.accuracy["note"])
        if row.accuracy.get("status") == "ok":
            for key in ("top1", "top5", "delta_top1", "agreement", "agreement_lower95", "drop_lower95", "n"):
                setattr(row, key, row.accuracy.get(key))
    if job is None and row.top1 is not None:
        row.delta_top1 = 0.0
    if latency is not None:
        row.latency = {k: v for k, v in latency.to_dict().items() if k != "times_ms"}
        row.times_ms = latency.times_ms
        if latency.status == "needs macOS":
            row.status = "needs macOS"
        elif latency.status == "error":
            row.status, row.error = "error", f"latency: {latency.error}" + (f"; {row.error}" if row.error else "")
        elif latency.note:
            row.notes.append(latency.note)
        for key in ("median_ms", "p90_ms", "p99_ms", "fps", "peak_rss_mb", "load_seconds", "threads"):
            setattr(row, key, getattr(latency, key))
    row.speedup = base.median_ms / row.median_ms if base and row.median_ms else None
    if fmt == "coreml" and manifest:
        row.notes.insert(0, coreml_static_checks(manifest))
    if job is not None and job.built == "reused":
        row.notes.append("reused")
    return row


def make_rows(jobs: list[Job], measured: list[tuple[tuple[Target, Job | None], LatencyResult]], weights: Weights,
              accuracy: AccuracyPhase, versions: dict) -> list[Row]:
    """The reference rows, then every job's rows in the order asked for (a failed build: one error row),
    each marked whether it is on the Pareto front."""
    base = measured[0][1] if measured[0][1].ok else None
    rows = [make_row(target, None, latency, base, weights, accuracy, versions)
            for (target, job), latency in measured if job is None]
    for job in jobs:
        if job.error:
            rows.append(make_row(None, job, None, base, weights, accuracy, versions))
        rows += [make_row(target, job, latency, base, weights, accuracy, versions)
                 for (target, owner), latency in measured if owner is job]
    front = pareto_front([(r.median_ms, r.top1) if isinstance(r.median_ms, float) and isinstance(r.top1, float)
                          and not r.accuracy.get("subset") else (math.nan, math.nan) for r in rows])  # same images only
    for i, row in enumerate(rows):
        row.pareto = i in front
    return rows


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
