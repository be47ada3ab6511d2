"""benchmarks/research/conv_floor.py: the stripped probes keep every shape, the arithmetic of the floor, and the CLI."""
import json
from pathlib import Path

import pytest
import torch

from benchmarks.research import conv_floor
from conftest import TRAINED
from model import create_model
from model.deploy import deploy_form


@pytest.mark.parametrize("kind", ["grouped", "slice"])
def test_stripping_keeps_every_conv_shape_and_removes_the_arithmetic(kind):
    torch.manual_seed(0)
    model = deploy_form(create_model("shunted_nano", input_size=64), "portable", 64)
    x = torch.randn(1, 3, 64, 64)
    dense_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    replaced = conv_floor.strip_conv_arithmetic(model, x, kind)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if kind == "grouped":
        assert len(convs) == replaced and all(m.kernel_size == (1, 1) and m.padding == (0, 0) for m in convs)
        assert sum(m.weight.numel() for m in convs) < dense_weights / 10
    else:
        assert not convs and sum(isinstance(m, conv_floor.ChannelMatch) for m in model.modules()) == replaced
    assert replaced > 40
    with torch.no_grad():
        assert model(x).shape == (1, 1000)


@pytest.mark.parametrize("cin, cout, stride", [(3, 32, (4, 4)), (32, 128, (1, 1)), (128, 32, (1, 1)), (64, 64, (2, 2))])
def test_channel_match_gives_the_conv_output_shape(cin, cout, stride):
    conv = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
    x = torch.randn(1, cin, 16, 16)
    assert conv_floor.ChannelMatch(cin, cout, stride)(x).shape == conv(x).shape


def test_floor_arithmetic():
    medians = {("onnx", "fp32", False): 1.0, ("onnx", "fp32", True): 0.4,
               ("onnx", "int8", False): 0.8, ("onnx", "int8", True): 0.7}
    (row,) = conv_floor.floors(medians)
    assert row["int8_over_fp32"] == pytest.approx(0.8)
    assert row["conv_arithmetic_share"] == pytest.approx(0.6) and row["int8_floor"] == pytest.approx(0.7)
    assert "0.70x" in conv_floor.format_floors([row]) and "60%" in conv_floor.format_floors([row])


def test_bad_counts_exit_2(capsys):
    assert conv_floor.main(["--runs", "0"]) == 2
    assert capsys.readouterr().err.startswith("error:")


@pytest.mark.slow
def test_onnx_floor_end_to_end(tmp_path, capsys):
    out = tmp_path / "floor.json"  # trained weights: int8 of random weights verifies only by luck (7-bit ONNX weights)
    assert conv_floor.main(["--checkpoint", str(TRAINED), "--formats", "onnx", "--calib-size", "64", "--verify-images", "200",
                            "--runs", "20", "--rounds", "2", "--json", str(out)]) == 0
    assert "int8 floor" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["results"]
    assert row["format"] == "onnx" and all(row[k] > 0 for k in ("fp32_ms", "int8_ms", "probe_fp32_ms", "probe_int8_ms"))


def test_executorch_probe_strips_the_model_in_its_xnnpack_form(checkpoint):
    """The probe keeps the real program's non-conv ops: norms already centred, only convs replaced."""
    from convert import to_executorch
    from convert.api import ConvertRequest
    from convert.pipeline import prepare
    from model.deploy.norms import ConvNormalize, DeployLayerNorm2d
    job, _ = prepare(to_executorch.CONVERTER, ConvertRequest(checkpoint=checkpoint, output=Path("unused.pte")))
    norms = [m for m in job.deploy_model.modules() if isinstance(m, DeployLayerNorm2d)]
    assert norms and all(isinstance(n[0], ConvNormalize) for n in norms)  # conv form, no input mean subtracted
    assert conv_floor.strip_conv_arithmetic(job.deploy_model, job.example, conv_floor.PROBE_KIND["executorch"]) > 0
