"""In-browser latency of ONNX artifacts: ONNX Runtime Web (WASM) in headless Chromium on this machine.

    python benchmarks/web_latency.py artifacts/shunted_nano_s16_deep_cifar10_32_fp32.onnx artifacts/shunted_nano_s16_deep_cifar10_32_int8.onnx

Each artifact is loaded by its own page (apps/web/bench.html) served cross-origin isolated, so WASM
runs with threads. The page times ``session.run`` with ``performance.now``; after the warm-up (until
V8 has optimised the hot WASM code) the runs are taken in interleaved rounds as in benchmarks/latency.py. These are figures for this
machine's browser, not a phone's.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
from dataclasses import replace  # noqa: E402

from apps import AppError  # noqa: E402
from apps.chromium import chromium_missing, launch  # noqa: E402
from apps.website import RUNTIME_DIR, site_files, web_model  # noqa: E402
from apps.webserver import make_server  # noqa: E402
from benchmarks.latency import (LatencyResult, format_table, latency_stats, physical_cores, round_orders,  # noqa: E402
                                split_runs)

LOAD_TIMEOUT_MS = 300_000
WARM_BLOCK, PATIENCE, MAX_WARM_BLOCKS = 20, 3, 60
NOTE = "in this machine's browser, not a phone; accuracy is the artifact's in Python ONNX Runtime"


def runtime_version() -> str:
    return json.loads((RUNTIME_DIR.parent / "package.json").read_text())["version"]


def _open(browser, base: str, name: str, threads: int) -> tuple[object, dict]:
    page = browser.new_context().new_page()
    page.goto(f"{base}bench.html?model={name}&backend=wasm&threads={threads}")
    page.wait_for_function("document.getElementById('result').textContent !== 'loading…'", timeout=LOAD_TIMEOUT_MS)
    status = json.loads(page.text_content("#result"))
    if "error" in status:
        raise AppError(status["error"])
    return page, status


def _warm_up(page, warmup: int) -> None:
    """``warmup`` runs, then blocks of WARM_BLOCK until PATIENCE blocks in a row bring no new best median:
    V8 compiles hot WASM functions again, optimised, in the background (tier-up), which takes seconds on
    a busy machine."""
    page.evaluate("(n) => bench(n)", warmup)
    best, stale = float("inf"), 0
    for _ in range(MAX_WARM_BLOCKS):
        median = statistics.median(page.evaluate("(n) => bench(n)", WARM_BLOCK))
        best, stale = (median, 0) if median < 0.9 * best else (best, stale + 1)
        if stale == PATIENCE:
            return


def measure_web(artifacts: list[Path], runs: int = 100, warmup: int = 10, rounds: int = 10,
                threads: int | None = None) -> list[LatencyResult]:
    """One row per artifact, as benchmarks/latency.py's (with ``runtime`` and ``note`` set); every row is
    an error row when the browser cannot run here."""
    threads = threads or physical_cores()
    rows = [LatencyResult(Path(a).name, str(a), "error", threads=threads, note=NOTE,
                          runtime="ONNX Runtime Web in headless Chromium") for a in artifacts]
    missing = chromium_missing()
    if not artifacts:
        return []
    if missing:
        return [replace(row, error=missing) for row in rows]
    try:
        pages, times, engine = _time_in_pages(artifacts, runs, warmup, rounds, threads)
    except Exception as err:  # the browser, the page or the runtime failing is every row's error
        text = str(err).strip().splitlines()
        return [replace(row, error=f"{type(err).__name__}: {text[0] if text else ''}"[:600]) for row in rows]
    return [replace(row, **latency_stats(t), status="ok", label=f"{row.label} (browser)", runtime=engine,
                    precision=status["precision"], threads=status["threads"], backend=status["backend"],
                    runs=runs, warmup=warmup, rounds=len(split_runs(runs, rounds)), times_ms=t)
            for row, status, t in zip(rows, pages, times)]


def _time_in_pages(artifacts: list[Path], runs: int, warmup: int, rounds: int, threads: int):
    """(each page's status, each page's timings in ms, the engine's description)."""
    from playwright.sync_api import sync_playwright
    server = make_server(site_files([web_model(Path(a)) for a in artifacts]), "127.0.0.1", 0, None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            pages = [_open(browser, base, Path(a).name, threads) for a in artifacts]
            for page, _ in pages:
                _warm_up(page, warmup)
            times: list[list[float]] = [[] for _ in pages]
            blocks = split_runs(runs, rounds)
            for block, order in zip(blocks, round_orders(len(pages), len(blocks))):
                for i in order:
                    page = pages[i][0]
                    page.evaluate("() => bench(1)")  # re-warm what the other pages evicted
                    times[i] += page.evaluate("(n) => bench(n)", block)
            engine = f"ONNX Runtime Web {runtime_version()} WASM, headless Chromium {browser.version}"
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return [status for _, status in pages], times, engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Latency of ONNX artifacts in headless Chromium (ONNX Runtime Web, WASM).")
    parser.add_argument("artifacts", nargs="+", type=Path, help=".onnx artifacts")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per artifact (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs after loading (default 10)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaving rounds (default 10)")
    parser.add_argument("--threads", type=int, help=f"WASM threads (default: physical cores, {physical_cores()} here)")
    args = parser.parse_args(argv)
    rows = measure_web(args.artifacts, args.runs, args.warmup, args.rounds, args.threads)
    print(f"{rows[0].runtime}: {NOTE}")
    print(format_table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
