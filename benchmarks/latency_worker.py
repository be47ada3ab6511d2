"""The latency worker: one process that loads one artifact and times it on request.

    python -m benchmarks.latency_worker    # started by benchmarks/latency.py, one per row

Protocol, one JSON object per line: the parent sends the request (artifact, threads, batch, device,
compute units, warm-up runs), the worker replies with what it loaded; then ``{"cmd": "run", "n": N,
"untimed": U}`` is answered with N timings and ``{"cmd": "exit"}`` with the peak resident memory.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _proc_status_mb(field_name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _rss_mb() -> float | None:
    return _proc_status_mb("VmRSS")


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process's own address space.
    ``ru_maxrss`` is not used there because Linux carries it across fork + exec, so a worker
    started by a large parent (the report, after converting models) would report the parent's peak.
    Elsewhere (macOS): ``ru_maxrss`` (bytes there).
    """
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if platform.system() == "Darwin" else peak / 1024.0


def failure(err: Exception) -> dict:
    """The reply to a failed load or run; a user mistake (UserError) is marked and keeps its message alone."""
    from common.errors import UserError
    user = isinstance(err, UserError)
    return {"ok": False, "user": user, "error": str(err) if user else f"{type(err).__name__}: {err}"}


def serve() -> int:
    """Serve one artifact: JSON lines in on stdin, JSON lines out on the original stdout.

    Runtimes may print to fd 1 from C code, so the protocol gets a private copy of fd 1 and fd 1
    itself is pointed at stderr before anything is imported.
    """
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    request = json.loads(sys.stdin.readline())
    try:
        from common.quiet import quiet_third_party
        quiet_third_party()
        from runtime import load_artifact
        rss_before = _rss_mb()
        path, threads, batch = Path(request["artifact"]), request["threads"], request["batch"]
        runner = load_artifact(path, threads=threads, compute_units=request["compute_units"])
        run, device = runner.run, request["device"]
        engine = getattr(runner, "engine", runner.format)
        if device == "cuda":
            import torch
            if not torch.cuda.is_available():
                raise RuntimeError("CUDA was asked for but torch.cuda.is_available() is False")
            model = runner.model.cuda()
            engine = f"pytorch-cuda ({torch.cuda.get_device_name()})"

            def run(x, model=model):  # input upload and logits download are part of the time
                with torch.inference_mode():
                    out = model(torch.from_numpy(x).cuda()).cpu()
                torch.cuda.synchronize()
                return out.numpy()
        size = runner.input_size
        x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
        used_threads = threads
        if runner.format == "pytorch":
            import torch
            used_threads = torch.get_num_threads()
        out = None
        for _ in range(request["warmup"]):
            out = run(x)
        send({"ok": True, "format": runner.format, "precision": runner.precision, "engine": engine,
              "static_batch": runner.batch, "input_size": size, "load_seconds": runner.load_seconds,
              "threads": used_threads, "rss_before_load_mb": rss_before, "rss_after_warmup_mb": _rss_mb(),
              "output_shape": list(np.shape(out)) if out is not None else None})
    except Exception as err:  # any load/run failure becomes the row's error, never a crash of the parent
        send(failure(err))
        return 1
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "run":
            try:
                times = []
                for _ in range(command.get("untimed", 1)):
                    run(x)
                for _ in range(command["n"]):
                    start = time.perf_counter_ns()
                    run(x)
                    times.append(time.perf_counter_ns() - start)
                send({"ok": True, "times_ns": times})
            except Exception as err:
                send(failure(err))
                return 1
        elif command["cmd"] == "exit":
            send({"ok": True, "peak_rss_mb": _peak_rss_mb(), "rss_mb": _rss_mb()})
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(serve())
