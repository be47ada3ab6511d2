"""int8 for any model: the mixed-precision search, and the corpus on every int8 backend (issue #15)."""
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

import corpus
from common import contract
from convert import int8_search
from convert import to_onnx
from convert.api import convert
from convert.cli import main
from convert.request import ConvertRequest
from quantize.sensitivity import UnitFigures


# --- the search, with a stand-in for building and judging ---------------------------------------
@dataclass
class FakeJob:
    request: ConvertRequest


def _search(tmp_path, monkeypatch, needed, units=10, budget=6):
    """Search where a candidate passes iff it keeps at least ``needed`` units float."""
    ranking = [UnitFigures(f"u{i}", 20.0, 0.99, 0.1, 1.0 / (i + 1)) for i in range(units)]
    monkeypatch.setattr(int8_search, "rank_units", lambda job: ranking)
    built = []

    def build(candidate, path):
        k = len(candidate.request.float_modules)
        built.append(k)
        path.write_text(f"artifact with {k} float units")
        missed = [] if k >= needed else ["agreement too low"]
        return {"missed": missed, "top1_agreement": 0.99, "agreement_lower95": 0.98 if not missed else 0.9,
                "cosine_p5": 0.99}

    tmp = tmp_path / "a.onnx"
    tmp.write_text("all-int8 artifact")
    first = {"missed": ["agreement too low"], "top1_agreement": 0.9, "agreement_lower95": 0.85, "cosine_p5": 0.9}
    return int8_search.search(FakeJob(ConvertRequest(search_budget=budget)), build, tmp, first), built, tmp


@pytest.mark.parametrize("needed", [1, 3, 5, 10])
def test_search_finds_the_fewest_float_units_in_ranking_order(tmp_path, monkeypatch, needed):
    (units, figures, record), built, tmp = _search(tmp_path, monkeypatch, needed)
    assert units == [f"u{i}" for i in range(needed)]
    assert figures["missed"] == [] and len(built) <= 6
    assert tmp.read_text() == f"artifact with {needed} float units"  # the chosen one, under the temporary name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]  # the other candidates are gone
    assert [s["float_units"] for s in record["steps"]][0] == []


def test_search_gives_up_within_its_budget_with_advice(tmp_path, monkeypatch):
    with pytest.raises(int8_search.SearchFailed, match="--calib-size.*--calib-method.*--search-budget"):
        _search(tmp_path, monkeypatch, needed=11, units=10, budget=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]


# --- the search for real: a stricter contract than all-int8 meets -------------------------------
@pytest.mark.slow
def test_onnx_int8_searches_then_meets_a_contract_all_int8_misses(tmp_path, monkeypatch, capsys):
    strict = replace(contract.CONTRACTS["int8"], min_agreement=0.993)
    monkeypatch.setitem(contract.CONTRACTS, "int8", strict)
    out = tmp_path / "m8.onnx"
    args = ["--checkpoint", str(corpus.TRAINED), "--precision", "int8", "--calib-size", "256", "--output", str(out)]
    assert main(to_onnx.CONVERTER, args + ["--no-search"]) == 1
    assert "--no-search" in capsys.readouterr().err and not out.exists()
    assert main(to_onnx.CONVERTER, args) == 0
    manifest = json.loads(out.with_name(out.name + ".json").read_text())
    search = manifest["int8_search"]
    assert search["float_units"] and search["steps"][0]["missed"]  # all-int8 missed; the chosen one holds
    assert [s for s in search["steps"] if s["float_units"] == search["float_units"]][0]["missed"] == []
    assert manifest["verification"]["agreement_lower95"] >= 0.993
    assert manifest["quantization"]["float_modules"][:len(search["float_units"])] == search["float_units"]
    assert "units kept float" in capsys.readouterr().out


# --- the corpus: four models, three int8 backends, no extra flags -------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return {name: build(folder) for name, build in corpus.MODELS.items()}


CASES = [(m, f) for m in corpus.MODELS for f in ("onnx", "executorch", "coreml")]


@pytest.mark.slow
@pytest.mark.parametrize("name,fmt", CASES, ids=[f"{m}-{f}" for m, f in CASES])
def test_every_corpus_model_gets_a_verified_int8_artifact(models, tmp_path, name, fmt):
    model = models[name]
    own_data = not model["random_weights"]  # trained models carry their dataset: no extra flags
    suffix = {"onnx": ".onnx", "executorch": ".pte", "coreml": ".mlpackage"}[fmt]
    request = ConvertRequest(checkpoint=Path(model["checkpoint"]), precision="int8", output=tmp_path / f"m{suffix}",
                             random_weights=model["random_weights"],
                             verify_data=None if own_data else model["data"], calib=None if own_data else model["data"],
                             verify_images=64 if not own_data else (300 if fmt == "coreml" else 1000))
    manifest = convert(None, fmt, request)
    v = manifest.verification
    assert v["status"] == "passed" and v["missed"] == []
    if model["random_weights"]:
        assert v["judged_by"].startswith("numerics") and v["cosine_p5"] >= contract.contract_for("int8").min_cosine_p5
    else:
        assert v["top1_agreement"] >= 0.97 and v["agreement_lower95"] >= 0.97
        assert v["real_samples"] >= contract.min_images(0.97)
    units = manifest.get("int8_search", {}).get("float_units", [])
    assert manifest["quantization"]["float_modules"][:len(units)] == units
    assert np.isfinite(v["sqnr_db"])
