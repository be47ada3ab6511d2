"""Converters end to end on a small model; artifacts are re-run independently of the converters."""
import json
import os
import stat

import numpy as np
import pytest
import torch

from convert import to_coreml, to_executorch, to_onnx
from convert.cli import main
from convert.pipeline import Converter
from data import FASHION_MNIST_CLASSES, build_dataset, fashion_mnist_preprocess
from model import create_model
from model.deploy.norms import NormForm, channel_norm
from model.shunted import LayerNorm2d

SIZE = 32


def inputs_for_check(n_random=4):
    """Real Fashion-MNIST test images when installed, plus random ones, preprocessed."""
    spec = fashion_mnist_preprocess(SIZE)
    batches = [np.random.default_rng(1).standard_normal((n_random, 3, SIZE, SIZE)).astype(np.float32)]
    try:
        ds = build_dataset("fashion-mnist", "test", spec, limit=8)
        batches.insert(0, torch.stack([ds[i][0] for i in range(len(ds))]).numpy())
    except Exception:  # dataset not installed: random only
        pass
    return np.concatenate(batches)


def reference(checkpoint, x):
    with torch.no_grad():
        return create_model(checkpoint_path=checkpoint).eval()(torch.from_numpy(x)).numpy()


def convert_ok(converter, args):
    assert main(converter, [str(a) for a in args]) == 0


@pytest.mark.slow
def test_onnx_matches_pytorch_in_onnxruntime(checkpoint, tmp_path):
    import onnx
    import onnxruntime as ort
    out = tmp_path / "m.onnx"
    convert_ok(to_onnx.CONVERTER, ["--checkpoint", checkpoint, "--output", out])
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version >= 20
    ops = {node.op_type for node in proto.graph.node}
    assert {"LayerNormalization", "Gelu"} <= ops and "Erf" not in ops  # fused forms (to_onnx docstring)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["labels"]) == FASHION_MNIST_CLASSES
    x = inputs_for_check()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    want = reference(checkpoint, x)
    assert np.abs(got - want).max() <= 1e-3
    assert (got.argmax(1) == want.argmax(1)).all()
    manifest = json.loads((tmp_path / "m.onnx.json").read_text())
    assert manifest["verification"]["status"] == "passed"
    assert manifest["verification"]["real_samples"] in (0, 1000)
    assert manifest["model"]["labels"] == FASHION_MNIST_CLASSES and len(manifest["sha256"]) == 64


@pytest.mark.slow
def test_executorch_matches_pytorch_in_its_runtime(checkpoint, tmp_path):
    from executorch.runtime import Runtime
    out = tmp_path / "m.pte"
    convert_ok(to_executorch.CONVERTER, ["--checkpoint", checkpoint, "--output", out])
    manifest = json.loads((tmp_path / "m.pte.json").read_text())
    assert manifest["details"]["not_delegated_ops"] == 0, manifest["details"]["not_delegated"]
    method = Runtime.get().load_program(out).load_method("forward")
    x = inputs_for_check()
    got = np.concatenate([method.execute([torch.from_numpy(x[i:i + 1])])[0].numpy() for i in range(len(x))])
    want = reference(checkpoint, x)
    assert np.abs(got - want).max() <= 1e-3
    assert (got.argmax(1) == want.argmax(1)).all()


def test_xnnpack_runs_a_channel_norm_without_layout_transposes(tmp_path):
    """The ``conv`` norm form (eps as the variance conv's bias, the affine as a depthwise conv)
    lowers to ops XNNPACK runs channels-last: no Transpose between the graph's input and output ones."""
    from benchmarks.research.op_profile import et_module, etdump_events
    torch.manual_seed(0)
    norm = LayerNorm2d(32, eps=1e-6)
    norm.weight.data.uniform_(0.5, 1.5)
    norm.bias.data.uniform_(-0.5, 0.5)
    model = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 1), norm, torch.nn.Conv2d(32, 32, 1)).eval()
    x = torch.randn(1, 32, 8, 8)
    want = model(x)
    model[1] = channel_norm(norm, NormForm("conv"))
    path = tmp_path / "norm.pte"
    to_executorch.save_program(to_executorch.lower(model, x, "xnnpack"), path)
    module = et_module(path)
    torch.testing.assert_close(module.forward([x])[0], want, atol=1e-4, rtol=1e-4)
    module.write_etdump_result_to_file(str(tmp_path / "norm.etdp"))
    ops = [name for name, delegated, _ in etdump_events(tmp_path / "norm.etdp", warmup=0) if delegated]
    assert ops[0].startswith("Transpose") and ops[-1].startswith("Transpose"), ops  # NCHW input, output
    assert any(op.startswith("Convolution (NHWC, F32) DWConv") for op in ops), ops
    assert not [op for op in ops[1:-1] if op.startswith(("Transpose", "Add"))], ops


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_coreml_package_is_an_image_classifier(checkpoint, tmp_path, precision):
    import coremltools as ct
    out = tmp_path / f"m_{precision}.mlpackage"
    convert_ok(to_coreml.CONVERTER, ["--checkpoint", checkpoint, "--output", out, "--precision", precision,
                                     "--verify-images", "50"])
    spec = ct.models.MLModel(str(out), skip_model_load=True).get_spec()
    assert spec.description.input[0].type.WhichOneof("Type") == "imageType"
    assert spec.description.predictedFeatureName == "classLabel"
    assert "logits" in [o.name for o in spec.description.output]
    manifest = json.loads((tmp_path / f"{out.name}.json").read_text())
    assert manifest["details"]["max_rank"] <= 4
    assert manifest["details"]["compute_precision"] == precision
    assert manifest["verification"]["status"] == "passed"
    assert json.loads(spec.description.metadata.userDefined["labels"]) == FASHION_MNIST_CLASSES


def _no_partials(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".partial")] == []


@pytest.mark.parametrize("args,message", [
    (["--checkpoint", "missing.pt"], "not found"),
    (["--model", "shunted_micro", "--checkpoint", "{ckpt}"], "shunted_nano checkpoint, not shunted_micro"),
    (["--checkpoint", "{ckpt}", "--input-size", "100"], "multiple of 32"),
    (["--checkpoint", "{ckpt}", "--precision", "int3"], "not available"),
])
def test_bad_requests_exit_2_with_one_line(checkpoint, tmp_path, capsys, args, message):
    args = [a.replace("{ckpt}", str(checkpoint)) for a in args] + ["--output", str(tmp_path / "x.onnx")]
    assert main(to_onnx.CONVERTER, args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint_and_unknown_backend(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(to_onnx.CONVERTER, ["--checkpoint", str(bad), "--output", str(tmp_path / "x.onnx")]) == 2
    assert "not a readable" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse choices: exit 2 with a usage line
        main(to_executorch.CONVERTER, ["--backend", "tpu"])
    assert exit_info.value.code == 2


def test_existing_output_needs_force(checkpoint, tmp_path, capsys):
    out = tmp_path / "keep.onnx"
    out.write_bytes(b"user data")
    assert main(to_onnx.CONVERTER, ["--checkpoint", str(checkpoint), "--output", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"user data"


def test_output_directory_that_cannot_exist(checkpoint, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert main(to_onnx.CONVERTER, ["--checkpoint", str(checkpoint), "--output", str(blocker / "x.onnx")]) == 2
    assert "cannot create output directory" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_directory(checkpoint, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    assert main(to_onnx.CONVERTER, ["--checkpoint", str(checkpoint), "--output", str(locked / "x.onnx")]) == 2
    assert "not writable" in capsys.readouterr().err


@pytest.mark.slow
def test_failed_verification_leaves_nothing(checkpoint, tmp_path, capsys):
    def export_wrong_weights(job, tmp):
        with torch.no_grad():
            job.deploy_model.head.bias.add_(1.0)  # the artifact now disagrees with the reference
        return to_onnx.export_onnx(job, tmp)

    broken = Converter("onnx", ".onnx", ("fp32",), export_wrong_weights, to_onnx.OnnxOptions, to_onnx.add_arguments)
    assert main(broken, ["--checkpoint", str(checkpoint), "--output", str(tmp_path / "x.onnx")]) == 1
    assert "does not match" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
