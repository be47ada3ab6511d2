"""benchmarks/research/vs_published.py: the published baseline holds the checkpoint's weights and is
verified against our model; ratios come from interleaved rounds; wrong weights are refused in one line."""
import json

import numpy as np
import pytest
import torch

from benchmarks.latency import LatencyResult
from benchmarks.research import vs_published
from conftest import TRAINED
from model import create_model


def test_the_published_baseline_computes_what_our_model_computes(tmp_path):
    checkpoint = vs_published.random_official("shunted_t", tmp_path)
    published = vs_published.published_model(checkpoint)
    ours = create_model(checkpoint_path=checkpoint).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = ours(x), published(x)
    assert (got - expected).abs().max().item() < 1e-4 * expected.abs().max().item()
    assert vs_published.random_official("shunted_t", tmp_path) == checkpoint  # saved once, reused


def test_weights_without_the_official_key_names_are_refused_in_one_line(capsys):
    assert vs_published.main(["--checkpoint", str(TRAINED), "--formats", "onnx", "--runs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "official key names" in err and err.count("\n") == 1, err


def _row(label, times):
    return LatencyResult(label, label, median_ms=float(np.median(times)), times_ms=list(times))


def test_ratios_are_per_runtime_and_per_round():
    base = [10.0] * 4 + [20.0] * 4  # round 2 twice as slow for every artifact: the ratio holds
    rows = {("onnx", "published", "fp32"): _row("p", base),
            ("onnx", "ours", "fp32"): _row("f", [v * 0.8 for v in base]),
            ("onnx", "ours", "int8"): _row("i", [v * 0.5 for v in base])}
    (entry,) = vs_published.ratios(rows, runs=8, rounds=2)
    assert entry["runtime"] == "ONNX Runtime" and entry["published_fp32_ms"] == 15.0
    assert entry["ours_fp32_ratio"] == 0.8 and entry["ours_int8_ratio"] == 0.5
    assert entry["ours_int8_round_p10_p90"] == [0.5, 0.5]
    assert "0.50x" in vs_published.format_ratios([entry])


@pytest.mark.slow
def test_vs_published_builds_verifies_and_times_both_runtimes(tmp_path):
    out = tmp_path / "result.json"
    assert vs_published.main(["--model", "shunted_t", "--input-size", "32", "--runs", "4", "--rounds", "2",
                              "--artifacts-dir", str(tmp_path / "art"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [e["runtime"] for e in result["results"]] == ["ONNX Runtime", "ExecuTorch XNNPACK"]
    for name, path in result["artifacts"].items():
        manifest = json.loads((tmp_path / "art" / f"{path.split('/')[-1]}.json").read_text())
        assert manifest["verification"]["status"] == "passed", name
        assert ("graph" in manifest) == name.split()[1].startswith("published")
        assert manifest["seconds"] > 0, name
