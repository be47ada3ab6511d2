"""Op-level profile of an ONNX (.onnx) or ExecuTorch (.pte) artifact: where one inference's time goes.

    python benchmarks/research/op_profile.py artifacts/shunted_nano_s16_deep_cifar10_32_int8.onnx
    python benchmarks/research/op_profile.py artifacts/shunted_nano_s16_deep_cifar10_32_int8.pte --runs 200 --top 20 --json prof.json

.onnx: ONNX Runtime's profiler (``SessionOptions.enable_profiling``) on the session
``runtime.runners.OnnxRunner`` runs (``onnx_session``: CPU EP, graph optimization level left at its
default ORT_ENABLE_ALL, ``--threads`` intra-op, 1 inter-op). Kernel events are grouped by op type; node counts per op type
of the original graph and of the graph ORT really runs (``optimized_model_filepath``) show what it
fused and inserted, and a third table puts the kernel time by block part (patch embedding, the
attention's parts, the MLP's, norms, layout ops, quantize/dequantize; ``block_parts.py``) beside each
part's MACs and arithmetic floor. .pte: ExecuTorch's ETDump (pybindings ``enable_etdump``) read by
``executorch.devtools.Inspector`` without an ETRecord: portable-kernel events and the XNNPACK
delegate's per-op events, which XNNPACK measures in whole microseconds, floored.

Times are per inference, averaged over ``--runs`` runs after ``--warmup`` dropped ones (or over the
``--fastest`` share of them), with profiling on; the rows sum to the profiled total (time outside
kernels/ops is a row in parentheses). The unprofiled median of as many runs, through the runner
benchmarks/latency.py times (``runtime.load_artifact``), is printed alongside: both profilers cost
time per node/event, which weighs on small models.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import bisect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from importlib import metadata  # noqa: E402

import numpy as np  # noqa: E402

from common.cli import Parser  # noqa: E402
from common.machine import machine_description, physical_cores  # noqa: E402
from common.cli import run_cli  # noqa: E402
from runtime.runners import ArtifactError, load_artifact, manifest_path, onnx_session, read_manifest  # noqa: E402
from common.text_table import text_table  # noqa: E402
from benchmarks.research.block_parts import conv_peak_gmacs, node_modules, parts_table  # noqa: E402

SUFFIXES = (".onnx", ".pte")
ET_CONTAINERS = ("Method::execute", "OPERATOR_CALL", "DELEGATE_CALL")
INSTANCE_SUFFIX = re.compile(r" #\d+$")  # XNNPACK events are named "<op> #<n-th of its type>"
UNATTRIBUTED = "(delegate call, not in delegate op events)"


@dataclass
class Plan:
    runs: int = 200
    warmup: int = 10
    threads: int = 1
    fastest: float = 1.0  # share of the profiled runs averaged, by their total time


# --- shared -------------------------------------------------------------------------------------
def artifact_input(path: Path) -> tuple[dict, np.ndarray]:
    """The artifact's manifest and a fixed random input of the shape it declares (batch 1 if dynamic)."""
    if path.suffix.lower() not in SUFFIXES:
        raise ArtifactError(f"unknown artifact type {path.suffix or path.name!r}; expected .onnx or .pte")
    if not path.is_file():
        raise ArtifactError(f"{path} not found")
    manifest = read_manifest(path)
    if manifest is None:
        raise ArtifactError(f"no manifest {manifest_path(path)} next to {path}; re-export it with convert/to_*.py")
    shape = [d if isinstance(d, int) else 1 for d in manifest["input"]["shape"]]
    return manifest, np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def median_ms(run, plan: Plan) -> float:
    for _ in range(plan.warmup):
        run()
    times = []
    for _ in range(plan.runs):
        start = time.perf_counter_ns()
        run()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return float(np.median(times))


def fastest(run_ms: np.ndarray, share: float) -> np.ndarray:
    """Mask of the runs at or below the ``share`` quantile of their total time (all for 1.0)."""
    return run_ms <= np.quantile(run_ms, share)


def summary(ops: dict[str, list], run_ms: np.ndarray, event: str) -> dict:
    """{op: [events, ms]} summed over the kept runs (``run_ms``) -> totals and per-inference rows."""
    total, runs = float(run_ms.sum()), run_ms.size
    rows = [{"op": op, "count": count / runs, "ms": ms / runs, "percent": 100 * ms / total}
            for op, (count, ms) in ops.items()]
    return {"total_event": event, "runs_averaged": runs, "total_ms": total / runs,
            "total_median_ms": float(np.median(run_ms)), "rows": sorted(rows, key=lambda r: -r["ms"])}


# --- ONNX Runtime -------------------------------------------------------------------------------
def ort_node_times(events: list[dict], warmup: int, share: float = 1.0) -> tuple[dict, np.ndarray]:
    """{node name: [op type, kernel events, ms]} summed over the kept runs after ``warmup``, and their
    model_run ms."""
    runs = sorted((e for e in events if e["name"] == "model_run"), key=lambda e: e["ts"])[warmup:]
    run_ms = np.asarray([r["dur"] / 1000 for r in runs])
    keep, starts = fastest(run_ms, share), [r["ts"] for r in runs]
    nodes = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            run = bisect.bisect_right(starts, e["ts"]) - 1
            if run >= 0 and keep[run]:
                node = nodes.setdefault(e["name"].removesuffix("_kernel_time"), [e["args"]["op_name"], 0, 0.0])
                node[1] += 1
                node[2] += e["dur"] / 1000
    return nodes, run_ms[keep]


def by_op_type(nodes: dict, run_ms: np.ndarray) -> dict:
    """{op type: [kernel events, ms]} of :func:`ort_node_times`, plus the time outside kernels."""
    ops = defaultdict(lambda: [0, 0.0])
    for op, count, ms in nodes.values():
        ops[op][0] += count
        ops[op][1] += ms
    ops["(session, outside kernels)"] = [0, run_ms.sum() - sum(ms for _, ms in ops.values())]
    return dict(ops)


def graph_nodes(original: Path, optimized: Path) -> dict[str, list[int]]:
    """{op type: [nodes in the file, nodes in ORT's optimized graph]}, non-ONNX domains prefixed."""
    import onnx

    def count(path: Path) -> Counter:
        return Counter(f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                       for n in onnx.load(str(path)).graph.node)
    before, after = count(original), count(optimized)
    ops = sorted(before | after, key=lambda op: (-after[op], -before[op], op))
    return {op: [before[op], after[op]] for op in ops}


def profile_onnx(path: Path, x: np.ndarray, plan: Plan) -> dict:
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        session = onnx_session(path, plan.threads, enable_profiling=True, profile_file_prefix=str(Path(tmp) / "ort"),
                               optimized_model_filepath=str(optimized))
        feed = {session.get_inputs()[0].name: x}
        for _ in range(plan.warmup + plan.runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        counts = graph_nodes(path, optimized)
    level = session.get_session_options().graph_optimization_level.name
    nodes, run_ms = ort_node_times(events, plan.warmup, plan.fastest)
    return {"runtime": f"ONNX Runtime {ort.__version__} CPU EP, {level}",
            **summary(by_op_type(nodes, run_ms), run_ms, "model_run"), "graph_nodes": counts,
            "parts": onnx_parts(path, nodes, run_ms, plan), "notes": []}


def onnx_parts(path: Path, nodes: dict, run_ms: np.ndarray, plan: Plan) -> dict:
    """The kernel time of :func:`ort_node_times` by block part, beside each part's arithmetic floor."""
    import onnx
    model = onnx.load(str(path))
    int8 = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    peak = conv_peak_gmacs(int8, plan.threads)
    runs = run_ms.size
    rows = parts_table({name: ms / runs for name, (_, _, ms) in nodes.items()},
                       {name: op for name, (op, _, _) in nodes.items()}, model, float(run_ms.mean()), peak)
    return {"peak_gmacs": peak, "peak_kernel": "QLinearConv" if int8 else "Conv", "rows": rows,
            "attributed": bool(node_modules(model))}


# --- ExecuTorch ---------------------------------------------------------------------------------
def et_module(path: Path):
    """The program loaded by the ExecuTorch pybindings with ETDump on (the Runtime API offers no ETDump)."""
    from executorch.extension.pybindings.portable_lib import _load_for_executorch
    try:
        return _load_for_executorch(str(path), enable_etdump=True)
    except Exception as err:  # the runtime raises RuntimeError/ValueError variants on bad programs
        raise ArtifactError(f"{path} could not be loaded by the ExecuTorch runtime: {err}") from None


def etdump_events(etdump: Path, warmup: int) -> list[tuple[str, bool, np.ndarray]]:
    """(name, delegated, per-run ms after ``warmup``) of every event of the execute block(s)."""
    from executorch.devtools import Inspector
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Output Buffer not found": we record timings, not tensors
        inspector = Inspector(etdump_path=str(etdump))
    return [(e.name, e.is_delegated_op, np.asarray(e.perf_data.raw[warmup:], dtype=np.float64))
            for block in inspector.event_blocks if any(e.name == "Method::execute" for e in block.events)
            for e in block.events if e.perf_data is not None]


def et_ops(events: list[tuple[str, bool, np.ndarray]]) -> tuple[dict, dict, list[str]]:
    """Leaf events grouped by op, plus the container time no leaf accounts for, as {op: [samples, ms]};
    {container: [samples, ms]}; notes on what the delegate's events can and cannot tell.
    Containers nest: Method::execute > DELEGATE_CALL > delegate ops, and > OPERATOR_CALL > native_call_*."""
    ops, calls = defaultdict(lambda: [0, 0.0]), defaultdict(lambda: [0, 0.0])
    leaf_ms = {True: 0.0, False: 0.0}
    zeros = samples = 0
    for name, delegated, times in events:
        ms = float(times.sum())
        if name in ET_CONTAINERS:
            calls[name][0] += times.size
            calls[name][1] += ms
            continue
        op = INSTANCE_SUFFIX.sub("", name) if delegated else name.removeprefix("native_call_")
        ops[op][0] += times.size
        ops[op][1] += ms
        leaf_ms[delegated] += ms
        if delegated:
            zeros += int((times == 0).sum())
            samples += times.size
    calls = dict(calls)
    for label, container, inner in ((UNATTRIBUTED, "DELEGATE_CALL", leaf_ms[True]),
                                    ("(operator call, outside portable kernels)", "OPERATOR_CALL", leaf_ms[False])):
        if container in calls:
            ops[label] = [calls[container][0], calls[container][1] - inner]
    inside = sum(calls[c][1] for c in ("DELEGATE_CALL", "OPERATOR_CALL") if c in calls)
    ops["(method, outside operator and delegate calls)"] = [0, calls["Method::execute"][1] - inside]
    notes = []
    if samples:
        share = (calls["DELEGATE_CALL"][1] - leaf_ms[True]) / calls["DELEGATE_CALL"][1]
        notes.append(f"XNNPACK times its ops in whole microseconds, floored ({zeros / samples:.0%} of delegate-op "
                     f"timings read 0 us); the {share:.0%} of DELEGATE_CALL in no op event is that loss plus "
                     f"the delegate's own profiling (logging its op events)")
    elif "DELEGATE_CALL" in calls:
        notes.append("this ExecuTorch build records no per-op events inside the delegate; only DELEGATE_CALL is timed")
    return dict(ops), calls, notes


def profile_pte(path: Path, x: np.ndarray, plan: Plan) -> dict:
    import torch
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    _unsafe_reset_threadpool(plan.threads)
    inputs = [torch.from_numpy(x)]
    module = et_module(path)
    for _ in range(plan.warmup + plan.runs):
        module.forward(inputs)
    with tempfile.TemporaryDirectory() as tmp:
        etdump = Path(tmp) / "profile.etdp"
        module.write_etdump_result_to_file(str(etdump))
        events = etdump_events(etdump, plan.warmup)
    run_ms = next(times for name, _, times in events if name == "Method::execute")
    keep = fastest(run_ms, plan.fastest)
    ops, _, notes = et_ops([(name, delegated, times[keep]) for name, delegated, times in events])
    return {"runtime": f"ExecuTorch {metadata.version('executorch')} (ETDump, no ETRecord)",
            **summary(ops, run_ms[keep], "Method::execute"), "notes": notes}


# --- command line -------------------------------------------------------------------------------
def profile(path: Path, plan: Plan | None = None) -> dict:
    """Profile one artifact; the dict the table and --json are made from."""
    plan = plan or Plan(threads=physical_cores())
    manifest, x = artifact_input(path)
    load_before = os.getloadavg()[0]
    result = (profile_onnx if path.suffix.lower() == ".onnx" else profile_pte)(path, x, plan)
    runner = load_artifact(path, threads=plan.threads, manifest=manifest)
    result["unprofiled_median_ms"] = median_ms(lambda: runner.run(x), plan)
    return {"artifact": str(path), "format": manifest["format"], "precision": manifest["precision"],
            "input_shape": list(x.shape), "machine": machine_description(plan.threads), **asdict(plan),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], **result}


def format_profile(p: dict, top: int) -> str:
    shown, rest = p["rows"][:top], p["rows"][top:]
    lines = [[r["op"], f"{r['count']:g}" if r["count"] else "", f"{r['ms']:.4f}", f"{r['percent']:.1f}"] for r in shown]
    if rest:
        lines.append([f"({len(rest)} more)", f"{sum(r['count'] for r in rest):g}", f"{sum(r['ms'] for r in rest):.4f}",
                      f"{sum(r['percent'] for r in rest):.1f}"])
    averaged = f"the fastest {p['runs_averaged']} of {p['runs']} runs" if p["fastest"] < 1 else f"{p['runs']} runs"
    text = [f"{p['artifact']} ({p['format']} {p['precision']}, input {'x'.join(map(str, p['input_shape']))})",
            f"{p['runtime']}; {p['machine']}; {averaged} after {p['warmup']} warm-up; "
            f"load average {p['load_average'][0]} -> {p['load_average'][1]}",
            f"per inference, profiled ({p['total_event']}): mean {p['total_ms']:.3f} ms, median "
            f"{p['total_median_ms']:.3f} ms; unprofiled median {p['unprofiled_median_ms']:.3f} ms "
            f"(profiled mean / unprofiled median {p['total_ms'] / p['unprofiled_median_ms']:.2f}x)",
            text_table(["op", "count", "ms", "%"], lines, right_from=1), *p["notes"]]
    if "graph_nodes" in p:
        text += ["graph nodes per op type (ONNX file -> ORT optimized graph):",
                 text_table(["op", "file", "optimized"], [[op, str(a), str(b)] for op, (a, b) in p["graph_nodes"].items()],
                            right_from=1)]
    if "parts" in p:
        text += format_parts(p["parts"])
    return "\n".join(text)


def format_parts(parts: dict) -> list[str]:
    """The kernel time by block part beside each part's arithmetic floor."""
    if not parts["attributed"]:
        return ["by block part: the file carries no module paths (export it again with convert/to_onnx.py)"]
    lines = [[r["part"], f"{r['nodes']}" if r["nodes"] else "", f"{r['ms']:.4f}", f"{r['percent']:.1f}",
              f"{r['macs'] / 1e6:.1f}" if r["macs"] else "", f"{r['floor_ms']:.4f}" if r["macs"] else "",
              f"{r['ms'] / r['floor_ms']:.1f}x" if r["macs"] and r["ms"] > 0 else ""] for r in parts["rows"]]
    return [f"by block part (kernels of ORT's optimized graph, per inference); floor = MACs at the peak of "
            f"ORT's {parts['peak_kernel']} (four chained 256x256 1x1 convs, 56x56) here, {parts['peak_gmacs']:.1f} GMAC/s:",
            text_table(["part", "kernels", "ms", "%", "MMACs", "floor ms", "ms / floor"], lines, right_from=1)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description="Op-level profile of an .onnx or .pte artifact.")
    parser.add_argument("artifact", type=Path, help=".onnx or .pte written by convert/ (with its manifest)")
    parser.add_argument("--runs", type=int, default=200, help="profiled runs (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="runs dropped before them (default 10)")
    parser.add_argument("--fastest", type=float, default=1.0, help="average only this share of the runs, the "
                        "fastest by total time (default 1: all; 0.5 drops runs other processes interrupted)")
    parser.add_argument("--threads", type=int, help=f"intra-op threads (default: physical cores, {physical_cores()} here)")
    parser.add_argument("--top", type=int, default=15, help="table rows; the rest are summed in one (default 15)")
    parser.add_argument("--json", type=Path, help="also write the whole profile to this JSON file")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> str | None:
    for name, least in (("runs", 1), ("warmup", 0), ("top", 1), ("threads", 1)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            return f"--{name} must be >= {least}"
    if not 0 < args.fastest <= 1:
        return "--fastest must be in (0, 1]"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from common.quiet import quiet_third_party
    quiet_third_party()
    plan = Plan(args.runs, args.warmup, args.threads or physical_cores(), args.fastest)
    return run_cli(lambda: show(profile(args.artifact, plan), args))


def show(result: dict, args: argparse.Namespace) -> None:
    """The profile's table on stdout, and the whole of it in ``--json``."""
    print(format_profile(result, args.top))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
