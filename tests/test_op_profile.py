"""benchmarks/research/op_profile.py: event arithmetic on synthetic profiles, user errors, and real tiny artifacts."""
import json

import numpy as np
import pytest

from benchmarks.research import op_profile
from conftest import TRAINED
from model import create_model
from model.deploy import deploy_form
from model.graph_stats import count_macs
from convert import to_executorch, to_onnx
from convert.cli import main as convert_main

FAST = op_profile.Plan(runs=3, warmup=1, threads=2)
# Conv2d modules of shunted_nano deployed at 32 px (the single-token K/V scales collapsed): the Conv
# nodes of its ONNX graph and the convolution.out calls of its portable program
CONVS = 53


# --- arithmetic on synthetic events -------------------------------------------------------------
def _ort_event(name, ts, dur, op=None):
    if op is None:
        return {"cat": "Session", "name": name, "ts": ts, "dur": dur}
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_ort_events_drop_warmup_and_sum_to_model_run():
    events = []
    for run, start in enumerate((0, 1000, 2000, 3000)):  # run 0 is warm-up, run 3 interrupted: 10x slower
        scale = 10 if run in (0, 3) else 1
        events += [_ort_event("model_run", start, 100 * scale),
                   _ort_event("conv_a", start + 1, 40 * scale, "Conv"), _ort_event("conv_b", start + 50, 20 * scale, "Conv"),
                   _ort_event("add", start + 80, 10 * scale, "Add"),
                   {"cat": "Node", "name": "conv_a_fence_before", "ts": start, "dur": 0, "args": {"op_name": "Conv"}}]
    nodes, run_ms = op_profile.ort_node_times(events, warmup=1)
    assert run_ms.tolist() == pytest.approx([0.1, 0.1, 1.0])
    assert nodes["conv_a"] == ["Conv", 3, pytest.approx(0.48)]
    ops = op_profile.by_op_type(nodes, run_ms)
    assert ops["Conv"] == [6, pytest.approx(0.72)] and ops["Add"] == [3, pytest.approx(0.12)]
    nodes, run_ms = op_profile.ort_node_times(events, warmup=1, share=0.5)  # the interrupted run is left out
    ops = op_profile.by_op_type(nodes, run_ms)
    assert run_ms.tolist() == pytest.approx([0.1, 0.1])
    assert ops["Conv"] == [4, pytest.approx(0.12)] and ops["Add"] == [2, pytest.approx(0.02)]
    result = op_profile.summary(ops, run_ms, "model_run")
    assert result["total_ms"] == pytest.approx(0.1) and result["runs_averaged"] == 2
    rows = result["rows"]
    assert [r["op"] for r in rows] == ["Conv", "(session, outside kernels)", "Add"]
    assert rows[0]["count"] == 2 and rows[0]["ms"] == pytest.approx(0.06) and rows[0]["percent"] == pytest.approx(60)
    assert sum(r["ms"] for r in rows) == pytest.approx(0.1) and sum(r["percent"] for r in rows) == pytest.approx(100)


def test_etdump_events_nest_into_rows_and_flag_microsecond_floors():
    ms = lambda *v: np.asarray(v, dtype=float)  # noqa: E731 - two runs per event
    events = [("Method::execute", False, ms(1.0, 1.2)), ("DELEGATE_CALL", False, ms(0.8, 1.0)),
              ("Convolution (NHWC, QC8) IGEMM #1", True, ms(0.3, 0.3)),
              ("Convolution (NHWC, QC8) IGEMM #2", True, ms(0.1, 0.1)),
              ("Transpose (ND, X8) #1", True, ms(0.0, 0.0)),
              ("OPERATOR_CALL", False, ms(0.15, 0.15)), ("native_call_add.out", False, ms(0.1, 0.1))]
    ops, calls, notes = op_profile.et_ops(events)
    assert calls["Method::execute"] == [2, pytest.approx(2.2)]
    rows = {r["op"]: r for r in op_profile.summary(ops, ms(1.0, 1.2), "Method::execute")["rows"]}
    assert rows["Convolution (NHWC, QC8) IGEMM"]["count"] == 2 and rows["Convolution (NHWC, QC8) IGEMM"]["ms"] == pytest.approx(0.4)
    assert rows["add.out"]["ms"] == pytest.approx(0.1)
    assert rows[op_profile.UNATTRIBUTED]["ms"] == pytest.approx(0.5)
    assert rows["(operator call, outside portable kernels)"]["ms"] == pytest.approx(0.05)
    assert rows["(method, outside operator and delegate calls)"]["ms"] == pytest.approx(0.05)
    assert sum(r["ms"] for r in rows.values()) == pytest.approx(1.1)
    assert len(notes) == 1 and "33% of delegate-op timings read 0 us" in notes[0]


def test_etdump_without_delegate_op_events_says_so():
    ops, _, notes = op_profile.et_ops([("Method::execute", False, np.ones(2)), ("DELEGATE_CALL", False, np.ones(2))])
    assert "no per-op events inside the delegate" in notes[0]


# --- user errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("name,manifest,message", [
    ("model.tflite", None, "unknown artifact type '.tflite'"),
    ("missing.onnx", None, "not found"),
    ("orphan.pte", None, "no manifest"),
    ("broken.onnx", "{not json", "unreadable"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, name, manifest, message):
    path = tmp_path / name
    if name != "missing.onnx":
        path.write_bytes(b"\0" * 16)
    if manifest is not None:
        (tmp_path / f"{name}.json").write_text(manifest)
    assert op_profile.main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("error:") and len(err.splitlines()) == 1


@pytest.mark.parametrize("flag,value,message", [("--runs", "0", "--runs must be >= 1"),
                                                ("--fastest", "0", "--fastest must be in (0, 1]")])
def test_bad_counts_exit_2(capsys, flag, value, message):
    assert op_profile.main(["x.onnx", flag, value]) == 2
    assert message in capsys.readouterr().err


# --- real tiny artifacts (converters, random weights) -------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profile")
    # trained weights: int8 of random weights verifies only by luck (7-bit ONNX weights)
    common = ["--checkpoint", str(TRAINED), "--verify-images", "200"]
    jobs = {"fp32.onnx": (to_onnx, []), "int8.onnx": (to_onnx, ["--precision", "int8", "--calib-size", "64"]),
            "fp32.pte": (to_executorch, []), "portable.pte": (to_executorch, ["--backend", "portable"])}
    for name, (module, extra) in jobs.items():
        assert convert_main(module.CONVERTER, common + extra + ["--output", str(folder / name)]) == 0
    return folder


def _check_sums(result):
    assert result["total_ms"] > 0 and result["unprofiled_median_ms"] > 0
    assert sum(r["ms"] for r in result["rows"]) == pytest.approx(result["total_ms"], rel=1e-6)
    assert sum(r["percent"] for r in result["rows"]) == pytest.approx(100, rel=1e-6)
    assert all(r["ms"] >= 0 for r in result["rows"] if not r["op"].startswith("("))


@pytest.mark.slow
def test_onnx_profiles_count_the_convs_and_write_json(built, tmp_path, capsys):
    out = tmp_path / "p.json"
    assert op_profile.main([str(built / "fp32.onnx"), "--runs", "3", "--warmup", "1", "--top", "5", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "model_run" in table and "graph nodes per op type" in table and "more)" in table
    result = json.loads(out.read_text())
    _check_sums(result)
    rows = {r["op"]: r for r in result["rows"]}
    assert rows["Conv"]["count"] == CONVS and result["graph_nodes"]["Conv"][0] == CONVS
    quantized = op_profile.profile(built / "int8.onnx", FAST)
    _check_sums(quantized)
    rows = {r["op"]: r for r in quantized["rows"]}
    assert "QLinearConv" in rows and "QuantizeLinear" in rows
    assert quantized["graph_nodes"]["com.microsoft:QLinearConv"][1] > 0
    assert "by block part" in table
    for profile in (result, quantized):  # every conv and matmul of the network is in a part of a block
        parts = {r["part"]: r for r in profile["parts"]["rows"]}
        assert profile["parts"]["attributed"] and profile["parts"]["peak_gmacs"] > 0
        assert sum(r["macs"] for r in parts.values()) == count_macs(deploy_form(
            create_model(checkpoint_path=TRAINED), "onnx", 32), 32)
        assert parts.get("(not attributed)", {"macs": 0})["macs"] == 0
        assert parts["MLP: fc1, GELU, fc2"]["ms"] > 0 and parts["attention: softmax(QK^T)V"]["macs"] > 0
        assert sum(r["ms"] for r in parts.values()) == pytest.approx(profile["total_ms"], rel=1e-6)


@pytest.mark.slow
def test_pte_profiles_return_events(built):
    xnnpack = op_profile.profile(built / "fp32.pte", FAST)
    _check_sums(xnnpack)
    ops = [r["op"] for r in xnnpack["rows"]]
    assert op_profile.UNATTRIBUTED in ops
    assert any("Convolution" in op for op in ops) or "no per-op events" in xnnpack["notes"][0]
    portable = op_profile.profile(built / "portable.pte", FAST)
    _check_sums(portable)
    rows = {r["op"]: r for r in portable["rows"]}
    assert rows["convolution.out"]["count"] == CONVS and portable["notes"] == []
