"""The report's outputs from its rows: the table's cells, report.md, report.json and the plot."""
from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict
from pathlib import Path

from benchmarks.report.build import RANDOM_NA
from benchmarks.report.measure import Row

COLUMNS = ["format", "runtime", "precision", "status", "size MB", "top-1", "delta top-1", "agreement",
           "contract", "median ms", "p90 ms", "FPS", "speed-up", "peak memory MB"]


def contract_cell(row: Row) -> str:
    """The accuracy contract (common/contract.py) on the report's own measurement: its decisions,
    on every image the report ran; the numerical checks are the artifact's verification."""
    from common.contract import contract_for, judge
    if row.agreement_lower95 is None:
        return "-"
    figures = {"real_samples": row.n, "top1_agreement": row.agreement / 100,
               "agreement_lower95": row.agreement_lower95 / 100, "delta_top1_points": row.delta_top1,
               "drop_lower95_points": row.drop_lower95}
    precision, _, compress = row.spec.partition(":")[2].partition("+")
    missed = judge(contract_for(compress or precision), figures)
    verdict = "holds" if not missed else "misses: " + "; ".join(missed)
    return f"{verdict} (agreement >= {row.agreement_lower95:.2f}% at 95%)"


def float_units_note(row: Row) -> str | None:
    """What the int8 search kept float, and the share of multiply-accumulates that costs."""
    search = row.int8_search or {}
    units = search.get("float_units")
    if not units:
        return None
    shares = {r["unit"]: r["mac_share"] for r in search.get("ranking", [])}
    return (f"{len(units)} unit{'s' if len(units) > 1 else ''} float ({', '.join(units)}; {sum(shares.get(u, 0) for u in units):.1%} of MACs)")


def num(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def cells(row: Row, random_weights: bool) -> dict:
    """The row as the markdown table shows it, keyed by COLUMNS."""
    if row.status == "error":
        status = f"error: {row.error[:160]}"
    elif row.status == "needs macOS":
        status = "ok, latency needs macOS"
    else:
        status = "ok"
    notes = row.notes + ([float_units_note(row)] if float_units_note(row) else [])
    if notes:
        status += " - " + "; ".join(notes)
    accuracy_missing = RANDOM_NA if random_weights else "no labels" if row.agreement is not None else "-"
    subset = f" (n={row.n})" if row.n and row.accuracy.get("subset") else ""
    latency_missing = "needs macOS" if row.status == "needs macOS" else "-"
    return {
        "format": row.format, "runtime": row.runtime, "precision": row.precision, "status": status,
        "size MB": num(row.size_mb, ".2f"),
        "top-1": num(row.top1, ".2f", accuracy_missing) + (subset if row.top1 is not None else ""),
        "delta top-1": num(row.delta_top1, "+.2f", accuracy_missing),
        "agreement": num(row.agreement, ".2f", accuracy_missing) + ("%" if row.agreement is not None else ""),
        "contract": contract_cell(row) if not random_weights else RANDOM_NA,
        "median ms": num(row.median_ms, ".2f", latency_missing),
        "p90 ms": num(row.p90_ms, ".2f", latency_missing),
        "FPS": num(row.fps, ".1f", latency_missing),
        "speed-up": (num(row.speedup, ".2f") + "x") if row.speedup else latency_missing,
        "peak memory MB": num(row.peak_rss_mb, ".0f", latency_missing),
    }


def document(header: dict, rows: list[Row]) -> dict:
    """report.json: the run's ``header`` (machine, settings, phases, notes) and every row with its cells."""
    return {**header, "columns": COLUMNS,
            "rows": [{**asdict(row), "cells": cells(row, header["random_weights"])} for row in rows],
            "pareto": [row.label for row in rows if row.pareto]}


def markdown_table(report: dict) -> str:
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(esc(r["cells"][c]) for c in COLUMNS) + " |" for r in report["rows"]]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """report.md from report.json's content."""
    rows = report["rows"]
    weights = (f"random weights ({Path(report['checkpoint']).name}, seed 0)" if report["random_weights"]
               else f"`{report['checkpoint']}` (sha256 {report['checkpoint_sha256'][:12]})")
    load = report.get("load_average_start")
    lines = [
        f"# Accuracy vs latency: {report['model']} at {report['input_size']} px",
        "",
        f"- created {report['created']}, wall time {report['wall_seconds']:.0f} s "
        f"(reference {report['phases'].get('reference_s', 0):.0f} s, artifacts with their accuracy "
        f"{report['phases'].get('artifacts_and_accuracy_s', 0):.0f} s, "
        f"latency {report['phases'].get('latency_s', 0):.0f} s)",
        f"- machine: {report['machine']}; {report['platform']}"
        + (f"; load average at start {load[0]:.2f}" if load else ""),
        f"- weights: {weights}",
        f"- accuracy: {RANDOM_NA}" if report["random_weights"] else
        f"- accuracy: {report['data'] or 'not measured'}; reference = PyTorch fp32; agreement = same top-1 as the reference",
        f"- latency: batch {report['batch']}, {report['runs']} timed runs per row after {report['warmup']} warm-up runs, "
        f"interleaved in {report['rounds']} rounds, each row in its own process, {report['threads']} threads, "
        f"OMP_WAIT_POLICY={report['omp_wait_policy']}; speed-up vs PyTorch fp32 CPU of this run",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
        *[f"- {note}" for note in report.get("notes", [])],
        "",
        markdown_table(report),
        "",
    ]
    if report["pareto"]:
        lines += ["Pareto front (fastest first; no other row is both faster and more accurate): "
                  + ", ".join(report["pareto"]), ""]
    errors = [r for r in rows if r.get("error")]
    if errors:
        lines += ["Errors:", ""] + [f"- {r['label']}: {r['error']}" for r in errors] + [""]
    ref = report.get("reference_accuracy") or {}
    if ref.get("status") == "ok" and ref.get("top5") is not None:
        lines += [f"Reference top-5: {ref['top5']:.2f}% on {ref['n']} images ({ref.get('engine')}).", ""]
    if platform.system() != "Darwin" and any(r["format"] == "Core ML" for r in rows):
        lines += ["Core ML rows: latency needs macOS (Core ML predict); their accuracy comes from the project's numpy "
                  "ML Program evaluator on a subset (n shown), compared with the reference on the same images.", ""]
    if platform.system() != "Darwin" and any(r["format"] == "Core AI" for r in rows):
        lines += ["Core AI rows: Apple's Core AI runtime on Linux runs a reference CPU path: its latency is not a "
                  "device figure, and its accuracy covers a subset (n shown; docs/coreai.md has the whole test set).", ""]
    if report.get("apple_cross_check"):
        from benchmarks.apple_crosscheck import describe
        lines += [describe(report["apple_cross_check"]) + ".", ""]
    lines += ["Plot: accuracy_vs_latency.png. Raw timings and every figure: report.json.", ""]
    return "\n".join(lines)


def plot_or_note(report: dict, rows: list[Row], run_dir: Path) -> None:
    """accuracy_vs_latency.png in ``run_dir``; a failed plot is a note: the tables are still worth having."""
    from benchmarks.report.plot import plot
    try:
        plot(rows, report, run_dir / "accuracy_vs_latency.png")
    except Exception as err:
        report["notes"].append(f"plot failed: {type(err).__name__}: {err}")
        print(f"warning: plot failed: {err}", file=sys.stderr)


def write(run_dir: Path, report: dict) -> None:
    """report.json and report.md in ``run_dir``."""
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (run_dir / "report.md").write_text(markdown(report))
