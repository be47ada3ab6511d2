"""Core AI assets (.aimodel): converted by coreai-torch, run by Apple's Core AI runtime (Linux: its
reference CPU path), checked against PyTorch and against the Core ML path."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("coreai_torch", reason="coreai-torch is not installed (scripts/setup.sh installs it)")
pytest.importorskip("coreai.runtime", reason="coreai-core is not installed (scripts/setup.sh installs it)")

from apps import webcam  # noqa: E402
from benchmarks.apple_crosscheck import cross_check  # noqa: E402
from convert import to_coreai, to_coreml  # noqa: E402
from convert.cli import main  # noqa: E402
from convert.verify import verification_set  # noqa: E402
from data import FASHION_MNIST_CLASSES  # noqa: E402
from model import create_model, file_sha256  # noqa: E402
from runtime import ArtifactError, load_artifact  # noqa: E402


def convert(converter, checkpoint, out, *args):
    assert main(converter, ["--checkpoint", str(checkpoint), "--output", str(out), "--verify-images", "64",
                            "--random-weights", *map(str, args)]) == 0  # the fixture's weights are random
    return json.loads(out.with_name(out.name + ".json").read_text())


def images(checkpoint, n=24):
    """Real test images (when the dataset is installed) and random ones, preprocessed."""
    return verification_set(create_model(checkpoint_path=checkpoint).meta, n, 8).inputs


def reference(checkpoint, x):
    with torch.no_grad():
        return create_model(checkpoint_path=checkpoint).eval()(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def fp32_asset(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("coreai") / "m.aimodel"
    return out, convert(to_coreai.CONVERTER, checkpoint, out)


@pytest.mark.slow
def test_fp32_asset_is_verified_by_apple_runtime(checkpoint, fp32_asset, tmp_path):
    from coreai.authoring import AIModelAsset
    out, manifest = fp32_asset
    v = manifest["verification"]
    assert v["engine"] == "coreai-runtime" and v["status"] == "passed" and v["contract"] == "fp32"
    assert manifest["input"]["name"] == "input" and manifest["input"]["dtype"] == "float32"
    assert max(manifest["details"]["storage_types"].items(), key=lambda kv: kv[1])[0] == "Float32"
    custom = AIModelAsset.load(out).metadata.creator_defined_metadata
    assert custom["labels"] == FASHION_MNIST_CLASSES and custom["checkpoint_sha256"] == file_sha256(checkpoint)
    assert custom["preprocess"] == create_model(checkpoint_path=checkpoint).meta["preprocess"]
    x = images(checkpoint)
    want = reference(checkpoint, x)
    runner = load_artifact(out)
    assert (runner.format, runner.engine, runner.batch) == ("coreai", "coreai-runtime", 1)
    got = runner.run(x)
    assert np.abs(got - want).max() <= 1e-3 and (got.argmax(1) == want.argmax(1)).all()
    bare = shutil.copytree(out, tmp_path / "no_manifest.aimodel")  # metadata alone describes the asset
    assert np.abs(load_artifact(bare).run(x[:4]) - got[:4]).max() <= 1e-6


@pytest.mark.slow
def test_fp16_image_input_agrees_with_core_ml_fp16(checkpoint, tmp_path):
    ai = tmp_path / "m_fp16.aimodel"
    manifest = convert(to_coreai.CONVERTER, checkpoint, ai, "--precision", "fp16", "--image-input")
    assert manifest["verification"]["status"] == "passed" and manifest["verification"]["engine"] == "coreai-runtime"
    assert manifest["input"]["name"] == "image" and manifest["input"]["shape"][1:] == [32, 32, 3]
    assert max(manifest["details"]["storage_types"].items(), key=lambda kv: kv[1])[0] == "Float16"
    ml = tmp_path / "m_fp16.mlpackage"
    convert(to_coreml.CONVERTER, checkpoint, ml, "--precision", "fp16")
    result = cross_check(ai, ml, images(checkpoint))
    assert result["engines"] == ["coreai-runtime", "mlprogram-numpy"]
    assert result["cosine_p5"] >= 0.999 and result["top1_agreement"] >= 0.9


@pytest.mark.slow
def test_webcam_demo_runs_the_asset(fp32_asset, tmp_path, capsys):
    image = tmp_path / "shirt.png"
    cv2.imwrite(str(image), np.full((48, 64, 3), 90, np.uint8))
    assert webcam.main(["--weights", str(fp32_asset[0]), "--source", str(image), "--headless", "--json",
                        "--output", str(tmp_path / "out")]) == 0
    *frames, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(frames) == 1 and frames[0]["topk"][0]["label"] in FASHION_MNIST_CLASSES
    assert summary["summary"]["runtime"] == "coreai fp32"


@pytest.mark.parametrize("args,message", [
    (["--precision", "int8"], "not available for coreai"),
    (["--precision", "fp16"], "--force"),  # the output exists
])
def test_user_mistakes_exit_2_with_one_line(checkpoint, tmp_path, capsys, args, message):
    out = tmp_path / "keep.aimodel"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    assert main(to_coreai.CONVERTER, ["--checkpoint", str(checkpoint), "--output", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.aimodel"] and (out / "mine.txt").read_text() == "user data"


def test_unknown_compression_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        main(to_coreai.CONVERTER, ["--compress", "palettize3"])
    assert exit_info.value.code == 2


def test_folder_without_an_asset_is_an_artifact_error(tmp_path):
    (tmp_path / "empty.aimodel").mkdir()
    with pytest.raises(ArtifactError, match="no shunted-edge metadata"):
        load_artifact(tmp_path / "empty.aimodel")
