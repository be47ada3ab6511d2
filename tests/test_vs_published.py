"""benchmarks/research/vs_published.py: the published baseline holds the checkpoint's weights and is
verified against our model; ratios come from interleaved rounds; wrong weights are refused in one line."""
import json

import numpy as np
import pytest
import torch

from benchmarks.latency import LatencyResult
from benchmarks.research import vs_published
from benchmarks.research.recipe_variants import VariantError, parse_variant
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


def test_a_variant_is_timed_against_ours_of_its_precision_round_by_round():
    base = [10.0] * 4 + [20.0] * 4
    variant = parse_variant("few_reshapes=true")
    side = vs_published.side_name(variant)
    rows = {("onnx", "published", "fp32"): _row("p", base),
            ("onnx", "ours", "fp32"): _row("f", [v * 0.8 for v in base]),
            ("onnx", "ours", "int8"): _row("i", [v * 0.5 for v in base]),
            ("onnx", side, "fp32"): _row("vf", [v * 0.8 * 0.9 for v in base]),
            ("onnx", side, "int8"): _row("vi", [v * 0.5 * (1.1 if v < 15 else 1.3) for v in base])}
    (entry,) = vs_published.ratios(rows, runs=8, rounds=2, variants=(variant,))
    (got,) = entry["variants"]
    assert got["variant"] == "few_reshapes=true" and got["fp32_vs_ours"] == 0.9
    assert got["int8_vs_ours"] == 1.2 and got["int8_vs_ours_round_p10_p90"] == [1.12, 1.28]
    table = vs_published.format_ratios([entry])
    assert "few_reshapes=true" in table and "0.900x" in table and "1.200x" in table


def test_variants_name_recipe_fields_and_values_of_their_kind():
    variant = parse_variant("few_reshapes=1, norm_means=conv")
    assert variant.changes == (("few_reshapes", True), ("norm_means", "conv"))
    assert variant.tag == "few_reshapes-true+norm_means-conv"
    recipe = variant.recipe("onnx")
    assert recipe.few_reshapes and recipe.norm_means == "conv" and recipe.fold_norms  # the rest as "onnx" has it
    for bad in ("few_reshape=true", "few_reshapes", "few_reshapes=maybe", "norm_means=median", ","):
        with pytest.raises(VariantError):
            parse_variant(bad)


def test_a_bad_variant_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        vs_published.main(["--model", "shunted_t", "--variant", "fewer_reshapes=true"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --variant") and "few_reshapes" in err and err.count("\n") == 1, err


def test_a_variant_computes_what_our_model_computes():
    model = create_model("shunted_nano", input_size=32).eval()
    deploy = parse_variant("few_reshapes=true,centred_stream=true").deploy_model(model, "onnx", 32)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model(x), deploy(x)
    assert (got - expected).abs().max().item() < 1e-4 * expected.abs().max().item()


@pytest.mark.slow
def test_vs_published_builds_verifies_and_times_both_runtimes(tmp_path):
    out = tmp_path / "result.json"
    assert vs_published.main(["--model", "shunted_t", "--input-size", "32", "--runs", "4", "--rounds", "2",
                              "--artifacts-dir", str(tmp_path / "art"), "--json", str(out),
                              "--variant", "few_reshapes=true"]) == 0
    result = json.loads(out.read_text())
    assert [e["runtime"] for e in result["results"]] == ["ONNX Runtime", "ExecuTorch XNNPACK"]
    assert [v["variant"] for e in result["results"] for v in e["variants"]] == ["few_reshapes=true"] * 2
    assert len(result["artifacts"]) == 10
    for name, path in result["artifacts"].items():
        manifest = json.loads((tmp_path / "art" / f"{path.split('/')[-1]}.json").read_text())
        assert manifest["verification"]["status"] == "passed", name
        side = name.split()[1]
        assert ("graph" in manifest) == (side != "ours"), name
        assert side != "ours-few_reshapes-true" or "few_reshapes=true" in manifest["graph"], name
        assert manifest["seconds"] > 0, name
