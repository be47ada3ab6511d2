"""Published (official-format, 1000-class ImageNet) checkpoints: class names, calibration and verification
from one folder or array, and refusals before any export work. Random weights exercise the code paths."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.eval_set import EvalSet
from convert import to_coreml, to_executorch, to_onnx
from convert.cli import main
from convert.verify import verification_set
from data import imagenet_labels, label_indices
from model import create_model
from quantize.calibration import calibration_batch, held_out_images

SIZE = 32
WNIDS = ["n01440764", "n01443537", "n02012849"]  # tench, goldfish, crane (bird)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """An official-format checkpoint ({'model': state_dict}, 1000 classes, no names) of a small variant."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("official") / "ckpt_nano.pth"
    torch.save({"model": create_model("shunted_nano", num_classes=1000, input_size=SIZE).state_dict()}, path)
    return path


def _write_pngs(folder, n, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def _convert(converter, official, tmp_path, *args):
    return main(converter, ["--checkpoint", str(official), "--input-size", str(SIZE), "--output-dir", str(tmp_path / "out"),
                            *[str(a) for a in args]])


def test_official_checkpoint_carries_imagenet_names(official):
    labels = create_model(checkpoint_path=official, input_size=SIZE).meta["labels"]
    assert len(labels) == len(set(labels)) == 1000
    assert labels[:2] == ["tench", "goldfish"] and labels[134] == "crane (bird)" and labels[207] == "golden retriever"
    assert label_indices(WNIDS, labels) == [0, 1, 134]
    assert label_indices(["Golden_Retriever", "tench"], labels) == [207, 0]
    assert label_indices(["tench", "not a class"], labels) is None
    assert create_model("shunted_nano", input_size=SIZE).meta["labels"] is None  # random weights: no names
    with pytest.warns(UserWarning, match="3-class head"):
        tuned = create_model("shunted_nano", num_classes=3, checkpoint_path=official, input_size=SIZE, reset_head=True)
    assert tuned.meta["labels"] is None  # a new head is not ImageNet's


@pytest.mark.parametrize("converter", [to_onnx.CONVERTER, to_executorch.CONVERTER], ids=["onnx", "executorch"])
def test_int8_with_too_few_images_refuses_before_any_export(official, tmp_path, capsys, converter):
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).standard_normal((40, 3, SIZE, SIZE)).astype(np.float32))
    assert _convert(converter, official, tmp_path, "--precision", "int8", "--calib", images) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "leaves 20 images" in err and "needs 88 at least" in err and "--verify-data" in err, err
    assert not (tmp_path / "out").exists()


def test_weight_compression_without_images_refuses(official, tmp_path, capsys):
    assert _convert(to_coreml.CONVERTER, official, tmp_path, "--compress", "palettize4") == 2
    err = capsys.readouterr().err
    assert "judged on real images" in err and "--verify-data" in err and err.count("\n") == 1, err


def test_one_array_splits_into_disjoint_calibration_and_verification(official):
    meta = create_model(checkpoint_path=official, input_size=SIZE).meta
    n = 300
    tagged = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 3, SIZE, SIZE)).copy()
    path = official.parent / "tagged.npy"
    np.save(path, tagged)
    calibration = calibration_batch(str(path), meta)
    held, labels, classes = held_out_images(str(path), meta["preprocess"], 1000, len(calibration), 0)
    calibrated, judged = set(calibration[:, 0, 0, 0].tolist()), {float(x[0, 0, 0]) for x in held}
    assert len(calibration) == 150 and len(held) == 150 and classes is None and len(labels) == 0
    assert calibrated.isdisjoint(judged) and calibrated | judged == set(range(n))
    again = calibration_batch(str(path), meta)
    assert np.array_equal(again, calibration)  # reproducible


def test_imagenet_layout_folder_gives_labels_and_unknown_names_agreement_only(official, tmp_path):
    meta = create_model(checkpoint_path=official, input_size=SIZE).meta
    for i, wnid in enumerate(WNIDS):
        _write_pngs(tmp_path / "val" / wnid, 10, seed=i)
    images = verification_set(meta, 100, 0, str(tmp_path / "val"))
    assert images.n_real == 30 and sorted(set(images.labels.tolist())) == [0, 1, 134]
    eval_set = EvalSet(str(tmp_path / "val"), "test", meta["preprocess"], model_labels=meta["labels"])
    assert sorted(set(eval_set.labels.tolist())) == [0, 1, 134] and len(eval_set.classes) == 1000
    assert sorted({int(label) for _, label in eval_set.torch_dataset()}) == [0, 1, 134]
    (tmp_path / "val" / WNIDS[0]).rename(tmp_path / "val" / "my_class")
    assert verification_set(meta, 100, 0, str(tmp_path / "val")).labels is None


def test_a_class_folder_tree_is_evaluated_without_its_calibration_images(official, tmp_path):
    from data import build_dataset
    meta = create_model(checkpoint_path=official, input_size=SIZE).meta
    for i, wnid in enumerate(WNIDS):
        _write_pngs(tmp_path / "val" / wnid, 10, seed=i)
    calibrated = calibration_batch(str(tmp_path / "val"), meta)
    taken = {path for path, _ in build_dataset(str(tmp_path / "val"), "train", meta["preprocess"],
                                               limit=len(calibrated)).samples}
    eval_set = EvalSet(str(tmp_path / "val"), "test", meta["preprocess"], model_labels=meta["labels"])
    judged = {path for path, _ in eval_set.dataset.samples}
    assert len(calibrated) == 12 and len(eval_set) == 18 == len(eval_set.labels)
    assert judged.isdisjoint(taken) and len(judged | taken) == 30
    assert "all but the 12 int8 calibration images" in eval_set.describe()
    assert len(EvalSet(str(tmp_path / "val"), "test", meta["preprocess"], limit=5).dataset.samples) == 5


def test_one_folder_serves_calibration_and_verification(official, tmp_path, capsys):
    _write_pngs(tmp_path / "photos", 240, seed=0)
    assert _convert(to_onnx.CONVERTER, official, tmp_path, "--precision", "int8", "--calib", tmp_path / "photos",
                    "--random-weights") == 0
    summary = capsys.readouterr().out
    manifest = json.loads(next((tmp_path / "out").glob("*.onnx.json")).read_text())
    assert manifest["quantization"]["calibration_source"] == str(tmp_path / "photos")
    assert manifest["quantization"]["calibration_images"] == 120
    assert manifest["verification"]["data"] == f"120 real ({tmp_path / 'photos'}, none of the 120 calibration images) + 8 random"
    assert manifest["model"]["labels"] == imagenet_labels()
    assert "120 images of" in summary and "none of the 120 calibration images" in summary


@pytest.mark.slow
def test_coreml_classifier_of_an_official_checkpoint_names_imagenet_classes(official, tmp_path):
    import coremltools as ct
    assert _convert(to_coreml.CONVERTER, official, tmp_path) == 0
    spec = ct.models.MLModel(str(next((tmp_path / "out").glob("*.mlpackage"))), skip_model_load=True).get_spec()
    assert spec.description.predictedFeatureName == "classLabel"
    assert json.loads(spec.description.metadata.userDefined["labels"]) == imagenet_labels()
    program = str(spec.mlProgram)  # the classify op holds the class names the classifier returns
    assert all(f'"{name}"' in program for name in ("tench", "golden retriever", "crane (machine)"))


def test_report_without_data_measures_latency_and_says_what_int8_needs(official, tmp_path, capsys):
    from benchmarks.report import main as report_main
    assert report_main(["--checkpoint", str(official), "--artifacts", "onnx:fp32,onnx:int8", "--runs", "3",
                        "--rounds", "1", "--warmup", "1", "--runs-dir", str(tmp_path / "runs"),
                        "--artifacts-dir", str(tmp_path / "art"), "--input-size", str(SIZE)]) == 0
    captured = capsys.readouterr()
    assert "accuracy (and int8, judged on real images) needs --data FOLDER" in captured.err
    report = json.loads(next((tmp_path / "runs").glob("*/report.json")).read_text())
    rows = {(row["format"], row["precision"]): row for row in report["rows"]}
    assert rows[("ONNX", "fp32")]["status"] == "ok" and rows[("ONNX", "fp32")]["median_ms"] > 0
    int8 = rows[("ONNX", "int8")]
    assert int8["status"] == "error" and int8["error"] == "int8 is calibrated and judged on real images: pass --data FOLDER"
