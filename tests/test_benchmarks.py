"""benchmarks/: latency statistics, Pareto front, run folders, accuracy metrics, and the report end to end."""
import json
import math
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from benchmarks import accuracy, latency, report
from benchmarks.eval_set import EvalSet
from benchmarks.report import build as report_build, measure as report_measure
from benchmarks.report import plot as report_plot, render as report_render
from data import fashion_mnist_preprocess
from common import machine

SIZE = 32


# --- latency statistics -----------------------------------------------------------------------------
def test_latency_stats_on_synthetic_timings():
    times = np.random.default_rng(0).permutation(np.arange(1, 101, dtype=float))  # 1..100 ms, shuffled
    stats = latency.latency_stats(times, batch=1)
    assert stats["n"] == 100
    assert stats["median_ms"] == pytest.approx(50.5)
    assert stats["p90_ms"] == pytest.approx(90.1)  # linear interpolation between order statistics
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["min_ms"] == 1 and stats["max_ms"] == 100 and stats["mean_ms"] == pytest.approx(50.5)
    assert stats["fps"] == pytest.approx(1000 / 50.5)
    assert latency.latency_stats(times, batch=8)["fps"] == pytest.approx(8 * 1000 / 50.5)


def test_latency_stats_outliers_move_p99_not_median():
    stats = latency.latency_stats([2.0] * 95 + [200.0] * 5)
    assert stats["median_ms"] == 2.0 and stats["p90_ms"] == 2.0
    assert stats["p99_ms"] == pytest.approx(200.0)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, -2.0]])
def test_latency_stats_rejects_bad_timings(bad):
    with pytest.raises(ValueError):
        latency.latency_stats(bad)


def test_runs_split_into_rotated_rounds():
    assert latency.split_runs(100, 10) == [10] * 10
    assert latency.split_runs(7, 3) == [3, 2, 2]
    assert latency.split_runs(3, 10) == [1, 1, 1]  # never an empty block
    orders = latency.round_orders(3, 3)
    assert orders == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    assert {o[0] for o in orders} == {0, 1, 2}  # each worker goes first once


def test_physical_cores_and_machine_line():
    cores = machine.physical_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert machine.cpu_model()
    assert f"{cores} physical core" in machine.machine_description()


def test_child_processes_get_thread_limits_and_the_environment_is_restored(monkeypatch):
    import subprocess
    import sys
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    code = "import os; print(os.environ['OMP_NUM_THREADS'], os.environ['OPENBLAS_NUM_THREADS'])"
    with machine.children_environment(machine.thread_variables(1)):
        seen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert seen.split() == ["1", "1"]
    assert os.environ["OMP_NUM_THREADS"] == "7" and "OPENBLAS_NUM_THREADS" not in os.environ


def test_thread_budget_is_omp_num_threads_when_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert machine.thread_budget() == 3
    for unset in ("", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert machine.thread_budget() == machine.physical_cores()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert machine.thread_budget() == machine.physical_cores()


# --- Pareto front -------------------------------------------------------------------------------
def test_pareto_front_on_synthetic_points():
    points = [(1.0, 80.0),   # 0: fastest of its accuracy -> front
              (2.0, 85.0),   # 1: front
              (3.0, 84.0),   # 2: slower and worse than 1 -> dominated
              (0.5, 70.0),   # 3: fastest -> front
              (5.0, 90.0),   # 4: most accurate -> front
              (2.0, 85.0),   # 5: duplicate of 1 -> kept with it
              (1.0, 79.0),   # 6: same speed as 0, less accurate -> dominated
              (math.nan, math.nan)]  # 7: unmeasured -> never on the front
    assert report_measure.pareto_front(points) == [3, 0, 1, 5, 4]
    assert report_measure.pareto_front([]) == []
    assert report_measure.pareto_front([(3.0, 50.0)]) == [0]


def test_plot_accuracy_axis_spans_at_least_the_minimum():
    low, high = report_plot.accuracy_limits([91.21, 91.25])  # the shipped model's rows: no visible spread
    assert high - low == pytest.approx(report_plot.MIN_ACCURACY_SPAN) and low < 91.21 and high > 91.25
    assert report_plot.accuracy_limits([99.0, 99.9]) == pytest.approx((95.0, 100.0))  # kept within 0-100
    assert report_plot.accuracy_limits([60.0, 90.0]) == pytest.approx((57.0, 93.0))  # a wide spread: its own range


# --- run folders --------------------------------------------------------------------------------
def test_run_folders_never_overwrite(tmp_path):
    now = datetime(2025, 1, 2, 3, 4, 5)
    first = report.make_run_dir(tmp_path, now)
    (first / "report.md").write_text("first")
    second = report.make_run_dir(tmp_path, now)  # same second: a new folder, not the old one
    third = report.make_run_dir(tmp_path, now)
    assert first.name == "report-20250102-030405"
    assert second.name == "report-20250102-030405-1" and third.name == "report-20250102-030405-2"
    assert (first / "report.md").read_text() == "first"
    assert not any(second.iterdir())
    assert report.make_run_dir(tmp_path).name.startswith("report-")


# --- accuracy metrics ---------------------------------------------------------------------------
def test_topk_agreement_and_delta_on_synthetic_logits():
    logits = np.array([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0],    # predicts 1
                       [0.8, 0.1, 0.05, 0.0, 0.0, 0.0],   # predicts 0
                       [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],    # predicts 5
                       [0.3, 0.2, 0.1, 0.0, -1.0, 0.25]])  # predicts 0; label 4 is last -> not in top-5
    labels = np.array([1, 1, 5, 4])
    top5 = accuracy.topk_predictions(logits)
    assert top5.shape == (4, 5) and list(top5[3]) == [0, 5, 1, 2, 3]
    reference_top1 = np.array([1, 0, 3, 0])
    m = accuracy.summarize(top5, labels, reference_top1)
    assert m["top1"] == pytest.approx(50.0)
    assert m["top5"] == pytest.approx(75.0)  # label 1 of image 1 is its 2nd choice
    assert m["agreement"] == pytest.approx(75.0)  # image 2 disagrees
    assert m["reference_top1"] == pytest.approx(25.0) and m["delta_top1"] == pytest.approx(25.0)
    assert accuracy.summarize(top5, labels)["agreement"] is None
    assert accuracy.topk_predictions(np.array([[1.0, 2.0]])).tolist() == [[1, 0]]  # fewer than 5 classes


def test_without_labels_summarize_gives_agreement_only():
    top5 = np.array([[1, 0, 2, 3, 4], [0, 1, 2, 3, 4], [3, 1, 2, 0, 4]])
    m = accuracy.summarize(top5, None, np.array([1, 0, 0]))
    assert m["n"] == 3 and m["top1"] is None and m["top5"] is None and m["delta_top1"] is None
    assert m["agreement"] == pytest.approx(200 / 3) and 0 < m["agreement_lower95"] < m["agreement"]


def _pngs(folder, n, seed):
    from PIL import Image
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")


def test_a_flat_folder_is_judged_by_agreement_on_images_calibration_does_not_take(tmp_path):
    from conftest import TRAINED
    from quantize.calibration import calibration_batch
    spec = fashion_mnist_preprocess(SIZE)
    _pngs(tmp_path / "flat", 24, 0)
    eval_set = EvalSet(str(tmp_path / "flat"), "test", spec)
    calibration = calibration_batch(str(tmp_path / "flat"), {"preprocess": spec, "input_size": SIZE})
    assert not eval_set.labelled and "agreement with the reference only" in eval_set.describe()
    assert len(eval_set) == 24 - len(calibration) == 12
    assert not any(np.array_equal(a, b) for a in eval_set.images() for b in calibration)
    reference = accuracy.reference_results(TRAINED, eval_set, progress=False)
    assert reference.metrics["top1"] is None and reference.metrics["agreement"] == 100.0
    assert len(reference.top1) == 12


def test_class_folders_that_are_not_the_models_classes_give_agreement_only(tmp_path):
    from data import FASHION_MNIST_CLASSES
    for name in ("red", "green"):
        _pngs(tmp_path / "colours" / name, 5, len(name))
    spec = fashion_mnist_preprocess(SIZE)
    assert EvalSet(str(tmp_path / "colours"), "test", spec).labelled  # a model without names: as is
    eval_set = EvalSet(str(tmp_path / "colours"), "test", spec, model_labels=list(FASHION_MNIST_CLASSES))
    assert not eval_set.labelled and eval_set.unlabelled.startswith("its classes (green, red")


def test_artifact_spec_parsing_and_naming(tmp_path):
    job = report_build.parse_spec("coreml:fp16+palettize4")
    assert (job.format, job.precision, job.compress) == ("coreml", "fp16", "palettize4")
    assert job.precision_label == "fp16 + palettize4"
    assert report_build.parse_spec("coreml:int8").precision_label == "W8A8 (int8)"
    from convert.api import ConvertRequest, converter
    request = ConvertRequest(precision="int8", output_dir=tmp_path)
    assert converter("onnx").artifact_path(request, "m", 32).name == "m_32_int8.onnx"
    request = ConvertRequest(precision="fp16", compress="palettize4", batch=4, output_dir=tmp_path)
    assert converter("coreml").artifact_path(request, "m", 32).name == "m_32_fp16_palettize4_b4.mlpackage"
    with pytest.raises(report_build.ReportError):
        report_build.parse_spec("onnx")


def test_parallel_builds_start_the_costliest_artifacts_first():
    from benchmarks.report.cli import DEFAULT_SPECS
    jobs = [report_build.parse_spec(spec) for spec in DEFAULT_SPECS]
    order = [job.spec for job in sorted(jobs, key=lambda job: -report_build.expected_cost(job))]
    assert order[:3] == ["coreai:fp16", "executorch:int8", "coreml:int8"]
    assert order[-2:] == ["coreml:fp16", "onnx:fp32"]  # the cheapest last


def test_core_ai_is_a_default_row_where_it_takes_minutes_not_hours():
    from benchmarks.report.cli import DEFAULT_SPECS, default_specs
    assert default_specs(32, "Linux") == (list(DEFAULT_SPECS), None)
    assert default_specs(224, "Darwin") == (list(DEFAULT_SPECS), None)  # the OS runs it natively
    specs, note = default_specs(224, "Linux")
    assert specs == [s for s in DEFAULT_SPECS if s != "coreai:fp16"] and len(specs) == len(DEFAULT_SPECS) - 1
    assert "coreai:fp16 left out at 224 px" in note and f"--artifacts {','.join(DEFAULT_SPECS)}" in note


def test_reuse_requires_matching_intact_manifest(tmp_path):
    from convert.manifest import finalize
    artifact = tmp_path / "m_32_fp32.onnx"
    tmp = tmp_path / ".partial-m_32_fp32.onnx"
    tmp.write_bytes(b"not really onnx")
    finalize(tmp, artifact, {"format": "onnx", "precision": "fp32", "details": {},
                             "model": {"checkpoint_sha256": "abc", "input_size": 32},
                             "input": {"shape": [1, 3, 32, 32]}, "verification": {"status": "passed"}})
    job = report_build.parse_spec("onnx:fp32")
    assert report_build.reusable(artifact, job, "abc", 32, 1)[0] is not None
    assert "checkpoint sha256" in report_build.reusable(artifact, job, "other", 32, 1)[1]
    assert "input size" in report_build.reusable(artifact, job, "abc", 64, 1)[1]
    assert "batch" in report_build.reusable(artifact, job, "abc", 32, 2)[1]
    assert "precision" in report_build.reusable(artifact, report_build.parse_spec("onnx:int8"), "abc", 32, 1)[1]
    artifact.write_bytes(b"changed")
    assert "changed" in report_build.reusable(artifact, job, "abc", 32, 1)[1]


# --- latency workers ----------------------------------------------------------------------------
def test_failing_artifacts_are_error_rows_not_crashes(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model")
    rows = latency.measure([latency.Target(broken), latency.Target(tmp_path / "missing.pte"),
                            latency.Target(tmp_path / "m.mlpackage")], runs=3, rounds=1, warmup=1, progress=False)
    assert rows[0].status == "error" and "ONNX Runtime" in rows[0].error and rows[0].median_ms is None
    assert rows[1].status == "error" and "not found" in rows[1].error
    if latency.needs_macos(tmp_path / "m.mlpackage"):
        assert rows[2].status == "needs macOS"


def test_latency_and_accuracy_from_python_are_typed_results(checkpoint):
    row, = latency.measure([latency.Target(checkpoint)], runs=4, rounds=2, warmup=1, progress=False)
    assert isinstance(row, latency.LatencyResult) and row.ok and row.n == 4 and len(row.times_ms) == 4
    assert 0 < row.min_ms <= row.median_ms <= row.max_ms and row.rounds == 2 and row.threads >= 1
    assert json.loads(json.dumps(row.to_dict()))["median_ms"] == row.median_ms
    eval_set = EvalSet("fashion-mnist", "test", fashion_mnist_preprocess(SIZE), limit=32)
    reference = accuracy.reference_results(checkpoint, eval_set, progress=False)
    result = accuracy.measure_accuracy(checkpoint, eval_set, reference, progress=False)
    assert isinstance(result, accuracy.AccuracyResult) and result.ok and result.n == 32
    assert result.agreement == 100.0 and result.top1 == reference.metrics["top1"] and result.delta_top1 == 0.0


# --- the report end to end ----------------------------------------------------------------------
def _fashion_mnist_installed() -> bool:
    try:
        from data import build_dataset
        build_dataset("fashion-mnist", "test", fashion_mnist_preprocess(SIZE), limit=1)
        return True
    except Exception:
        return False


def _check_outputs(run_dir):
    files = {p.name for p in run_dir.iterdir()}
    assert {"report.md", "report.json", "accuracy_vs_latency.png"} <= files
    assert (run_dir / "accuracy_vs_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((run_dir / "report.json").read_text())
    md = (run_dir / "report.md").read_text()
    assert "| " + " | ".join(report_render.COLUMNS) + " |" in md
    assert data["columns"] == report_render.COLUMNS
    for row in data["rows"]:
        assert set(report_render.COLUMNS) <= set(row["cells"])
    return data, md


@pytest.mark.slow
@pytest.mark.skipif(not _fashion_mnist_installed(), reason="Fashion-MNIST not installed")
def test_report_end_to_end_with_an_error_row(checkpoint, tmp_path):
    argv = ["--checkpoint", str(checkpoint), "--artifacts", "onnx:fp32,onnx:fp64", "--limit", "24",
            "--runs", "6", "--rounds", "2", "--warmup", "1", "--no-cuda",
            "--artifacts-dir", str(tmp_path / "artifacts"), "--runs-dir", str(tmp_path / "runs")]
    assert report.main(argv) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    data, md = _check_outputs(run_dir)
    rows = {row["spec"]: row for row in data["rows"]}
    assert list(rows) == ["pytorch:fp32", "onnx:fp32", "onnx:fp64"]
    torch_row, onnx_row, bad = rows["pytorch:fp32"], rows["onnx:fp32"], rows["onnx:fp64"]
    assert bad["status"] == "error" and "fp64" in bad["error"] and bad["cells"]["status"].startswith("error:")
    assert onnx_row["status"] == "ok" and torch_row["status"] == "ok"
    assert onnx_row["agreement"] == pytest.approx(100.0) and onnx_row["delta_top1"] == pytest.approx(0.0)
    assert onnx_row["n"] == 24 and torch_row["speedup"] == pytest.approx(1.0)
    assert onnx_row["median_ms"] > 0 and onnx_row["p90_ms"] >= onnx_row["median_ms"] and onnx_row["speedup"] > 0
    # each row's peak memory is its own process's: ONNX Runtime never imports torch
    assert 0 < onnx_row["peak_rss_mb"] < torch_row["peak_rss_mb"]
    assert data["pareto"] and "fp64" in md and data["build_workers"] == min(2, machine.physical_cores())
    # the reference first, then each worker judges the artifact it has just built
    assert list(data["phases"]) == ["reference_s", "artifacts_and_accuracy_s", "latency_s"]
    log = (run_dir / "conversions.log").read_text()  # the workers' logs, in the order of the specs
    assert 0 <= log.index("=== onnx:fp32") < log.index("error: RequestError: precision fp64")
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []
    # a second report reuses the artifact (same checkpoint, precision, size) into a new folder
    assert report.main(argv) == 0
    second = max((tmp_path / "runs").iterdir())
    assert second != run_dir
    assert json.loads((second / "report.json").read_text())["rows"][1]["built"] == "reused"


@pytest.mark.slow
def test_report_with_random_weights_marks_accuracy_na(tmp_path):
    argv = ["--model", "shunted_nano", "--input-size", str(SIZE), "--artifacts", "executorch:fp64",
            "--runs", "4", "--rounds", "2", "--warmup", "1", "--no-cuda",
            "--artifacts-dir", str(tmp_path / "artifacts"), "--runs-dir", str(tmp_path / "runs")]
    assert report.main(argv) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    data, md = _check_outputs(run_dir)
    assert data["random_weights"] is True
    torch_row, bad = data["rows"]
    assert torch_row["cells"]["top-1"] == report_build.RANDOM_NA and torch_row["cells"]["agreement"] == report_build.RANDOM_NA
    assert torch_row["median_ms"] > 0 and torch_row["cells"]["speed-up"] == "1.00x"
    assert bad["status"] == "error" and "fp64" in bad["error"]
    assert report_build.RANDOM_NA in md


def test_accuracy_cli_on_an_image_folder(checkpoint, tmp_path):
    from PIL import Image
    from data import FASHION_MNIST_CLASSES
    rng = np.random.default_rng(0)
    for root, names in (("val", FASHION_MNIST_CLASSES[1:3]), ("other", ("a", "b"))):
        for label in names:  # ImageNet val layout: one sub-folder per class, no train/val split
            (tmp_path / root / label).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / root / label / f"{i}.png")
    out = tmp_path / "rows.json"
    assert accuracy.main([str(checkpoint), "--data", str(tmp_path / "val"), "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["status"] == "ok" and row["n"] == 3  # the folder but the 3 images int8 calibration takes
    assert row["agreement"] == pytest.approx(100.0) and row["delta_top1"] == pytest.approx(0.0)
    assert 0.0 <= row["top1"] <= row["top5"] <= 100.0
    assert accuracy.main([str(checkpoint), "--data", str(tmp_path / "other"), "--json", str(out), "--force"]) == 0
    (row,) = json.loads(out.read_text())  # not the model's classes: agreement only
    assert row["status"] == "ok" and row["top1"] is None and row["agreement"] == pytest.approx(100.0)


def test_text_table_aligns_columns():
    from common.text_table import text_table
    text = text_table(["op", "ms"], [["Conv", "1.5"], ["Add", "12.25"]], right_from=1)
    assert text.splitlines() == ["op       ms", "----  -----", "Conv    1.5", "Add   12.25"]


def test_report_judges_each_row_by_the_accuracy_contract():
    labels = np.arange(1000) % 10
    reference = labels.copy()
    good, bad = reference.copy(), reference.copy()
    good[:5] = (good[:5] + 1) % 10  # 99.5% agreement
    bad[:60] = (bad[:60] + 1) % 10  # 94%
    rows = {}
    for name, top1 in (("good", good), ("bad", bad)):
        m = accuracy.summarize(np.stack([top1] * 5, 1), labels, reference)
        assert m["agreement_lower95"] < m["agreement"]
        rows[name] = report_measure.Row(label=name, format="ONNX", precision="int8", spec="onnx:int8", runtime="ort",
                                        **{k: m[k] for k in ("agreement", "agreement_lower95", "drop_lower95", "n")},
                                        delta_top1=m["delta_top1"])
    assert report_render.contract_cell(rows["good"]).startswith("holds")
    assert "misses" in report_render.contract_cell(rows["bad"])
    rows["good"].int8_search = {"float_units": ["head"], "ranking": [{"unit": "head", "mac_share": 0.01}]}
    assert "1 unit float (head; 1.0% of MACs)" in report_render.cells(rows["good"], False)["status"]


def test_the_report_runs_as_a_module_and_as_a_folder(tmp_path):
    import subprocess
    import sys
    from common.defaults import ROOT
    for command, cwd in ((["-m", "benchmarks.report"], ROOT), ([str(ROOT / "benchmarks" / "report")], tmp_path)):
        proc = subprocess.run([sys.executable, *command, "--help"], cwd=cwd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m benchmarks.report"), proc.stderr


def test_every_prefix_of_the_evaluation_order_samples_every_class_as_verification_does():
    """The test photos are stored class by class; the Core ML and Core AI rows on Linux judge a prefix."""
    from convert.verify import verification_set
    from data.cifar10 import cifar10_preprocess
    from common.defaults import CIFAR10_CHECKPOINT
    from model import read_checkpoint
    eval_set = EvalSet("cifar10", "test", cifar10_preprocess(SIZE))
    assert np.bincount(eval_set.labels[:200], minlength=10).min() >= 5
    meta = read_checkpoint(CIFAR10_CHECKPOINT).meta
    verified = verification_set(meta, 64, 0).inputs
    np.testing.assert_array_equal(next(eval_set.batches(64, 64)), verified)


def test_outputs_of_slow_engines_are_computed_once_per_artifact_and_image():
    from runtime.memo import remembered
    calls = []

    def run(x):
        calls.append(len(x))
        return x.reshape(len(x), -1)[:, :2] * 2

    images = np.random.default_rng(0).standard_normal((6, 3, 4, 4)).astype(np.float32)
    first = remembered("engine:sha-a", images[:4], run)
    again = remembered("engine:sha-a", images, run)  # 4 seen, 2 new
    other = remembered("engine:sha-b", images[:4], run)  # another artifact: runs again
    assert calls == [4, 2, 4]
    np.testing.assert_array_equal(again[:4], first)
    np.testing.assert_array_equal(other, run(images[:4]))


def test_the_apple_cross_check_compares_the_outputs_the_judges_kept(tmp_path):
    from benchmarks.apple_crosscheck import report_cross_check
    logits = np.random.default_rng(0).standard_normal((20, 10)).astype(np.float32)
    jobs = [report_build.parse_spec(spec) for spec in ("coreml:fp16", "coreai:fp16")]
    for job, noise, engine in zip(jobs, (1e-3, 0.0), ("mlprogram-numpy", "coreai-runtime")):
        job.path, job.accuracy = tmp_path / f"missing_{job.format}", {"status": "ok", "engine": engine}
        job.judged_logits = logits + noise  # the files do not exist: nothing may run them again
    result = report_cross_check(jobs, "cifar10", "test", 20)
    assert result["status"] == "ok" and result["images"] == 20 and result["top1_agreement"] == 1.0
    assert result["engines"] == ["coreai-runtime", "mlprogram-numpy"]
    assert result["max_abs_diff"] == pytest.approx(1e-3, rel=1e-2)
