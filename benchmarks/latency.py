"""Latency of any artifact, each in its own fresh worker process, timed in interleaved rounds.

    python benchmarks/latency.py artifacts/nano_32_fp32.onnx weights/shunted_nano_s16_deep_cifar10.pt
    python benchmarks/latency.py a.onnx b.pte --runs 200 --threads 1 --batch 8 --json out.json

Every artifact (a .pt/.safetensors checkpoint runs in PyTorch eager fp32, .onnx in ONNX Runtime,
.pte in ExecuTorch, .mlpackage in Core ML on macOS) is loaded by its own worker subprocess, started
the same way for every row (benchmarks/latency_worker.py), so the peak resident memory a worker
reports belongs to that artifact alone. The parent then times the artifacts in rounds: in each round
every worker in turn runs one untimed iteration and a block of timed iterations while the others
sleep, so a burst of load on this shared machine hits all artifacts alike instead of whichever one
ran at that moment.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import selectors  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import asdict, dataclass, field, replace  # noqa: E402

import numpy as np  # noqa: E402

from common.cli import Parser, run_cli  # noqa: E402
from common.outputs import check_output, write_output  # noqa: E402
from runtime import check_artifact  # noqa: E402
from common.machine import cuda_available, machine_description, physical_cores, thread_variables  # noqa: E402
from common.text_table import text_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
COREML_SUFFIXES = (".mlpackage", ".mlmodel")
# OpenMP (PyTorch eager's thread pool) spin-waits at every parallel region by default, which on a
# shared, oversubscribed machine makes PyTorch rows several times slower than their compute
# (docs/performance.md, "OpenMP wait policy"). Workers therefore run with PASSIVE waiting unless told
# otherwise; ONNX Runtime and XNNPACK use their own pools and ignore it.
DEFAULT_OMP_WAIT_POLICY = "PASSIVE"
LOAD_TIMEOUT_S = 600.0  # importing a runtime and loading a large model on a busy 2-core machine
BLOCK_TIMEOUT_S = 900.0


class LatencyError(Exception):
    """A worker that could not load or run its artifact; the message carries the worker's error,
    ``user`` whether it was a user mistake (an unusable artifact)."""

    def __init__(self, message: str, user: bool = False):
        super().__init__(message)
        self.user = user


# --- statistics ---------------------------------------------------------------------------------
def latency_stats(times_ms, batch: int = 1) -> dict:
    """median/p90/p99/mean/min/max/std (ms) of per-call times, and FPS = batch / median.

    Percentiles interpolate linearly between order statistics (numpy's default), so p90 of
    1..10 ms is 9.1 ms; with fewer than 100 samples p99 is close to the maximum.
    """
    times = np.asarray(list(times_ms), dtype=np.float64)
    if times.size == 0:
        raise ValueError("no timings to summarise")
    if not np.all(np.isfinite(times)) or (times < 0).any():
        raise ValueError("timings must be finite and non-negative")
    median = float(np.median(times))
    return {"n": int(times.size), "median_ms": median, "p90_ms": float(np.percentile(times, 90)),
            "p99_ms": float(np.percentile(times, 99)), "mean_ms": float(times.mean()),
            "min_ms": float(times.min()), "max_ms": float(times.max()), "std_ms": float(times.std()),
            "fps": batch * 1000.0 / median if median > 0 else math.inf}


def split_runs(runs: int, rounds: int) -> list[int]:
    """``runs`` timed iterations as ``rounds`` blocks as equal as possible (no empty block)."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    rounds = max(1, min(rounds, runs))
    base, extra = divmod(runs, rounds)
    return [base + (1 if i < extra else 0) for i in range(rounds)]


def round_orders(count: int, rounds: int) -> list[list[int]]:
    """Worker order per round: rotated each round, so no artifact always runs first or last."""
    return [[(r + i) % count for i in range(count)] for r in range(rounds)]


# --- what to time -------------------------------------------------------------------------------
@dataclass
class Target:
    """One row: an artifact and how to run it."""

    artifact: Path
    label: str = ""
    device: str = "cpu"  # PyTorch only: "cpu" or "cuda"
    compute_units: str = "ALL"  # Core ML on macOS only: "ALL" or "CPU_ONLY"
    env: dict = field(default_factory=dict)  # extra environment variables of this row's worker

    def __post_init__(self):
        self.artifact = Path(self.artifact)
        if not self.label:
            self.label = self.artifact.name + (f" [{self.device}]" if self.device != "cpu" else "") + \
                (f" [{self.compute_units}]" if self.artifact.suffix in COREML_SUFFIXES else "")


@dataclass
class LatencyResult:
    """One row of :func:`measure`: ``status`` "ok", "error" (``error`` says why; ``user_error``: an
    unusable artifact) or "needs macOS"; the statistics (ms, :func:`latency_stats`) are None unless ok."""

    label: str
    artifact: str
    status: str = "ok"
    batch: int = 1
    error: str | None = None
    user_error: bool = False
    note: str | None = None
    device: str | None = None
    compute_units: str | None = None
    format: str | None = None
    precision: str | None = None
    engine: str | None = None
    runtime: str | None = None  # the browser rows of benchmarks/web_latency.py
    backend: str | None = None
    static_batch: int | None = None
    load_seconds: float | None = None
    threads: int | None = None
    rss_before_load_mb: float | None = None
    peak_rss_mb: float | None = None
    runs: int | None = None
    warmup: int | None = None
    rounds: int | None = None
    omp_wait_policy: str | None = None
    n: int | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    fps: float | None = None
    times_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        """Every field, for JSON."""
        return asdict(self)


def needs_macos(artifact: Path) -> bool:
    return Path(artifact).suffix.lower() in COREML_SUFFIXES and platform.system() != "Darwin"


def default_targets(artifact: str | os.PathLike) -> list[Target]:
    """The rows an artifact gives: Core ML twice (ALL, CPU_ONLY); a checkpoint on CPU (and CUDA)."""
    artifact = Path(artifact)
    if artifact.suffix.lower() in COREML_SUFFIXES:
        return [Target(artifact, compute_units="ALL"), Target(artifact, compute_units="CPU_ONLY")]
    if artifact.suffix.lower() in CHECKPOINT_SUFFIXES and cuda_available():
        return [Target(artifact), Target(artifact, device="cuda")]
    return [Target(artifact)]


# --- the worker (parent side) -------------------------------------------------------------------
class Worker:
    """A child process holding one loaded artifact."""

    def __init__(self, target: Target, threads: int, batch: int, warmup: int,
                 omp_wait_policy: str | None = DEFAULT_OMP_WAIT_POLICY):
        self.target, self.info, self.error, self.user_error = target, {}, None, False
        self.times_ms: list[float] = []
        self.peak_rss_mb = None
        self.stderr = tempfile.TemporaryFile(mode="w+b")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               **thread_variables(threads), "PYTHONUNBUFFERED": "1"}
        if omp_wait_policy:
            env["OMP_WAIT_POLICY"] = omp_wait_policy
        env.update(target.env)
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.latency_worker"], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.request = {"artifact": str(target.artifact.resolve()), "threads": threads, "batch": batch,
                        "device": target.device, "compute_units": target.compute_units, "warmup": warmup}
        self._send(self.request)

    def _send(self, obj: dict) -> None:
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def _stderr_tail(self, lines: int = 6) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace")
        noise = ("Failed to load", "scikit-learn", "has not been tested with coremltools", "[cpuinfo_utils",
                 "[threadpool.cpp", "register_constant", "Resetting threadpool")
        kept = [line for line in text.splitlines() if line.strip() and not any(n in line for n in noise)]
        return " | ".join(kept[-lines:])

    def receive(self, timeout: float) -> dict:
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.kill()
                raise LatencyError(f"worker timed out after {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise LatencyError(f"worker exited with status {code}: {self._stderr_tail() or 'no output'}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise LatencyError(reply.get("error", "unknown worker error"), reply.get("user", False))
        return reply

    def wait_loaded(self) -> None:
        try:
            self.info = self.receive(LOAD_TIMEOUT_S)
        except LatencyError as err:
            self.fail(err)

    def run_block(self, n: int, untimed: int) -> None:
        if self.error:
            return
        try:
            self._send({"cmd": "run", "n": n, "untimed": untimed})
            self.times_ms += [t / 1e6 for t in self.receive(BLOCK_TIMEOUT_S)["times_ns"]]
        except (LatencyError, OSError) as err:
            self.fail(err)

    def finish(self) -> None:
        if self.error:
            return
        try:
            self._send({"cmd": "exit"})
            reply = self.receive(60)
            self.peak_rss_mb = reply["peak_rss_mb"]
            self.proc.wait(timeout=60)
        except (LatencyError, OSError, subprocess.TimeoutExpired) as err:
            self.fail(err)

    def fail(self, err: Exception) -> None:
        self.error = str(err).strip().splitlines()[0][:500] if str(err).strip() else type(err).__name__
        self.user_error = getattr(err, "user", False)
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def result(self, batch: int) -> LatencyResult:
        coreml = self.target.artifact.suffix in COREML_SUFFIXES
        row = LatencyResult(label=self.target.label, artifact=str(self.target.artifact), device=self.target.device,
                            compute_units=self.target.compute_units if coreml else None, batch=batch,
                            status="ok" if not self.error else "error", error=self.error,
                            user_error=self.user_error, peak_rss_mb=self.peak_rss_mb,
                            times_ms=[round(t, 4) for t in self.times_ms],
                            **{k: self.info.get(k) for k in ("format", "precision", "engine", "static_batch",
                                                            "load_seconds", "threads", "rss_before_load_mb")})
        if not self.error and self.times_ms:
            row = replace(row, **latency_stats(self.times_ms, batch))
        if not self.error and self.info.get("static_batch") not in (None, batch):
            row.note = (f"static batch {self.info['static_batch']}: a batch of {batch} runs as "
                        f"{math.ceil(batch / self.info['static_batch'])} calls")
        return row


def measure(targets: list[Target], runs: int = 100, warmup: int = 10, rounds: int = 10, threads: int | None = None,
            batch: int = 1, untimed: int = 1, progress: bool = True,
            omp_wait_policy: str | None = DEFAULT_OMP_WAIT_POLICY) -> list[LatencyResult]:
    """Per-target latency rows, timed in interleaved rounds; a failing target is a row with its error.

    Workers start one after another (each loads and warms up alone), then ``runs`` timed iterations
    per target are split into ``rounds`` blocks; round r runs the workers in an order rotated by r.
    Each block begins with ``untimed`` iterations that re-warm caches the other workers evicted.
    ``omp_wait_policy`` is OMP_WAIT_POLICY of every worker (None: inherit this process's environment).
    """
    from tqdm import tqdm
    threads = threads or physical_cores()
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    rows: dict[int, LatencyResult] = {}
    workers: dict[int, Worker] = {}
    for i, target in enumerate(targets):
        if needs_macos(target.artifact):
            rows[i] = LatencyResult(target.label, str(target.artifact), "needs macOS", batch,
                                    compute_units=target.compute_units,
                                    note="Core ML latency is measured with Core ML predict on macOS only")
    try:
        for i, target in enumerate(tqdm(targets, desc="latency: load + warm-up", unit="artifact",
                                      disable=None if progress else True)):
            if i in rows:
                continue
            if not target.artifact.exists():
                rows[i] = LatencyResult(target.label, str(target.artifact), "error", batch,
                                        error=f"{target.artifact} not found")
                continue
            worker = Worker(target, threads, batch, warmup, omp_wait_policy)
            worker.wait_loaded()  # one at a time: loading never overlaps another worker's work
            workers[i] = worker
        blocks = split_runs(runs, rounds)
        order = sorted(workers)
        with tqdm(total=len(blocks) * len(order), desc=f"latency: {runs} runs x {len(order)} in {len(blocks)} rounds",
                  unit="block", disable=None if progress else True) as bar:
            for block, rotation in zip(blocks, round_orders(len(order), len(blocks))):
                for position in rotation:
                    workers[order[position]].run_block(block, untimed)
                    bar.update()
        for worker in workers.values():
            worker.finish()
    finally:
        for worker in workers.values():
            worker.kill()
    for i, worker in workers.items():
        rows[i] = worker.result(batch)
    for row in rows.values():
        row.threads, row.runs, row.warmup = row.threads or threads, runs, warmup
        row.rounds = len(split_runs(runs, rounds))
        row.omp_wait_policy = omp_wait_policy or os.environ.get("OMP_WAIT_POLICY") or "default"
    return [rows[i] for i in range(len(targets))]


# --- command line -------------------------------------------------------------------------------
def format_table(rows: list[LatencyResult]) -> str:
    header = ["artifact", "status", "threads", "batch", "median ms", "p90 ms", "p99 ms", "FPS", "load s", "peak MB"]
    lines = []
    for row in rows:
        num = (lambda key, fmt: format(getattr(row, key), fmt) if row.ok and getattr(row, key) is not None else "-")
        lines.append([row.label, row.status if row.ok or not row.error else f"error: {row.error[:80]}",
                      str(row.threads or "-"), str(row.batch), num("median_ms", ".2f"),
                      num("p90_ms", ".2f"), num("p99_ms", ".2f"), num("fps", ".1f"), num("load_seconds", ".2f"),
                      num("peak_rss_mb", ".0f")])
    return text_table(header, lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description="Latency of artifacts, each in its own process, timed interleaved.")
    parser.add_argument("artifacts", nargs="+", type=Path, help=".pt/.safetensors (PyTorch eager), .onnx, .pte, .mlpackage")
    parser.add_argument("--runs", type=int, default=100, help="timed iterations per artifact (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations after loading (default 10)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaving rounds the runs are split into (default 10)")
    parser.add_argument("--threads", type=int, help=f"intra-op threads (default: physical cores, {physical_cores()} here)")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    parser.add_argument("--no-cuda", action="store_true", help="time checkpoints on CPU only even if a GPU is present")
    parser.add_argument("--omp-wait-policy", default=DEFAULT_OMP_WAIT_POLICY, choices=("PASSIVE", "ACTIVE", "inherit"),
                        help="OMP_WAIT_POLICY of the workers (PyTorch's OpenMP pool; default PASSIVE, see benchmarks/README.md)")
    parser.add_argument("--json", type=Path, help="also write the rows (with every timing) to this JSON file")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    args = parser.parse_args(argv)
    for name, low in (("runs", 1), ("warmup", 0), ("rounds", 1), ("batch", 1), ("threads", 1)):
        if getattr(args, name) is not None and getattr(args, name) < low:
            parser.error(f"--{name} must be >= {low}, got {getattr(args, name)}")
    return args


def failures(rows: list) -> int:
    """Print one ``error:`` line per failed row (:class:`LatencyResult` or accuracy result); the exit status:
    0, 2 if all were user mistakes, else 1."""
    failed = [row for row in rows if row.status not in ("ok", "needs macOS")]
    for row in failed:
        print(f"error: {row.label}: {row.error}", file=sys.stderr)
    return 0 if not failed else 2 if all(row.user_error for row in failed) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run() -> int:
        for artifact in args.artifacts:
            check_artifact(artifact)
        if args.json:
            check_output(args.json, args.force, "--json")
        targets = []
        for artifact in args.artifacts:
            if args.no_cuda and artifact.suffix.lower() in CHECKPOINT_SUFFIXES:
                targets.append(Target(artifact))
            else:
                targets += default_targets(artifact)
        threads = args.threads or physical_cores()
        rows = measure(targets, args.runs, args.warmup, args.rounds, threads, args.batch,
                       omp_wait_policy=None if args.omp_wait_policy == "inherit" else args.omp_wait_policy)
        print(f"machine: {machine_description(threads)}")
        print(format_table(rows))
        if args.json:
            write_output(args.json, json.dumps({"machine": machine_description(), "threads": threads,
                                                "rows": [row.to_dict() for row in rows]},
                                               indent=2) + "\n", args.force, "--json")
        return failures(rows)
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
