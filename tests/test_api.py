"""The Python API: a model object in, a verified artifact out; mistakes raise ValueError/TypeError
subclasses that name the Python argument, before any export work."""
import json

import numpy as np
import pytest
import torch

from common.errors import UserError
from convert.api import ConvertRequest, RequestError, RequestTypeError, convert
from convert.to_onnx import OnnxOptions
from model import create_model, make_meta
from runtime import load_artifact

SIZE = 32


@pytest.fixture(scope="module")
def tuned():
    """A model of ours as a notebook holds it: trained weights in memory, its .meta, training mode."""
    torch.manual_seed(0)
    model = create_model("shunted_nano", num_classes=3, input_size=SIZE, labels=["red", "green", "blue"])
    model.meta["random_weights"] = True  # judged by numerics: these weights decide nothing
    return model.train()


def test_a_model_object_converts_and_is_left_as_it_was(tuned, tmp_path):
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    manifest = convert(tuned, "onnx", output_dir=tmp_path, options=OnnxOptions())
    assert str(manifest.path).endswith("shunted_nano_model_32_fp32.onnx") and manifest.verified
    assert (manifest.format, manifest.precision, manifest.input_size, manifest.quantization) == ("onnx", "fp32", SIZE, None)
    assert manifest.labels == ["red", "green", "blue"] and manifest.size_bytes == manifest.path.stat().st_size
    sidecar = json.loads(manifest.manifest_path.read_text())
    assert sidecar["model"] == manifest.meta and len(sidecar["model"]["weights_sha256"]) == 64
    assert tuned.training and all(torch.equal(before[k], v) for k, v in tuned.state_dict().items())
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        want = tuned.eval()(torch.from_numpy(x)).numpy()
    tuned.train()
    np.testing.assert_allclose(load_artifact(manifest.path).run(x), want, atol=1e-4)


@pytest.mark.parametrize("call,error,argument", [
    (lambda m, d: convert(m, "onnx", output_dir=d, precision="fp64"), RequestError, "precision"),
    (lambda m, d: convert(m, "onnx", output_dir=d, batch=0), RequestError, "batch"),
    (lambda m, d: convert(m, "onnx", output_dir=d, batch="2"), RequestTypeError, "batch"),
    (lambda m, d: convert(m, "onnx", output_dir=d, calib_size=0), RequestError, "calib_size"),
    (lambda m, d: convert(m, "onnx", output_dir=d, options=object()), RequestTypeError, "options"),
    (lambda m, d: convert(m, "onnx", output_dir=d, input_size=64), RequestError, "input_size"),
    (lambda m, d: convert(m, "onnx", output_dir=d, precison="int8"), RequestTypeError, "precison"),
    (lambda m, d: convert(m, "tflite", output_dir=d), RequestError, "format"),
    (lambda m, d: convert(torch.nn.Linear(2, 2), "onnx", output_dir=d), RequestTypeError, "model"),
    (lambda m, d: convert(m, "onnx", ConvertRequest(checkpoint=d / "w.pt"), output_dir=d), RequestError, "model"),
    (lambda m, d: convert(m, "onnx", output_dir=d, float_modules="stage1"), RequestTypeError, "float_modules"),
])
def test_mistakes_raise_python_errors_naming_the_argument(tuned, tmp_path, call, error, argument):
    with pytest.raises(error) as caught:
        call(tuned, tmp_path)
    assert caught.value.argument == argument and argument in str(caught.value)
    assert isinstance(caught.value, ValueError) and not list(tmp_path.iterdir())


def test_a_model_without_meta_and_a_missing_checkpoint(tmp_path):
    bare = create_model("shunted_nano", num_classes=3, input_size=SIZE)
    del bare.meta
    with pytest.raises(RequestError, match="make_meta"):
        convert(bare, "onnx", output_dir=tmp_path)
    bare.meta = make_meta("shunted_nano", 3, SIZE)
    assert convert(bare, "onnx", output_dir=tmp_path, random_weights=True).verification["status"] == "passed"
    with pytest.raises(UserError, match="not found|does not exist|no such"):
        convert(tmp_path / "missing.pt", "onnx", output_dir=tmp_path)


def test_the_command_line_still_speaks_in_flags(tmp_path, capsys):
    from convert import to_onnx
    from convert.cli import main
    assert main(to_onnx.CONVERTER, ["--model", "shunted_nano", "--input-size", "32", "--calib-size", "0",
                                    "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: --calib-size must be >= 1, got 0"


@pytest.mark.slow
def test_the_example_session_runs_end_to_end(tmp_path):
    """docs/example_session.py: fine-tune, three int8 formats, load and compare, in one session."""
    import runpy
    from pathlib import Path
    example = runpy.run_path(str(Path(__file__).resolve().parents[1] / "docs" / "example_session.py"), run_name="example")
    agreement = example["main"](tmp_path)
    assert set(agreement) == {"onnx", "executorch", "coreml"}
    assert all(share >= 0.9 for share in agreement.values()), agreement  # 33 held-out photos; the contract judged 198
