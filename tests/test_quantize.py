"""Quantization: calibration input checks, the PT2E filter, sensitivity, and int8 artifacts."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TRAINED
from common.defaults import SHIPPED_CHECKPOINT
from common.contract import per_image_cosine
from data import DataError, fashion_mnist_preprocess
from model import create_model
from model.deploy import deploy_form
from quantize.calibration import calibration_batch
from quantize.pt2e import quantize_pt2e, xnnpack_quantizer
from quantize.sensitivity import Study, too_small, units

META = {"preprocess": fashion_mnist_preprocess(32), "input_size": 32}


def test_flat_image_folder_is_resized_to_the_model(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((50, 70, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    batch = calibration_batch(str(tmp_path), META, limit=10)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == np.float32


def test_flat_folder_holds_one_decoded_photo_at_a_time(tmp_path, monkeypatch):
    """Calibration and verification read a flat folder photo by photo: 1,024 camera photos held
    decoded at once would need 37 GB (64 of 12 MP took 3.0 GB before, 92 MB after)."""
    import weakref
    import data.image_folder as image_folder
    for i in range(4):
        Image.fromarray(np.full((50, 70, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    read, alive_at_read = [], []
    real_load = image_folder.load_image

    def counting_load(path, *args):
        alive_at_read.append(sum(ref() is not None for ref in read))
        image = real_load(path, *args)
        read.append(weakref.ref(image))
        return image

    monkeypatch.setattr(image_folder, "load_image", counting_load)
    batch = calibration_batch(str(tmp_path), META, limit=4)
    assert batch.shape == (4, 3, 32, 32) and alive_at_read == [0, 0, 0, 0]


def test_calibration_decodes_camera_jpegs_smaller_verification_whole(tmp_path):
    """Calibration reads a camera JPEG at a DCT scale (within a level of the whole photo); the images
    that judge the artifact are decoded whole, as the demos decode them."""
    from data import cifar10_preprocess, load_image, preprocess_files
    from quantize.calibration import held_out_images
    photo = Image.open(Path(__file__).resolve().parents[1] / "data/photos/cifar10/dog/dog-farm.webp")
    for i, box in enumerate([(0, 0, 1200, 900), (300, 100, 1500, 1000)]):
        photo.convert("RGB").crop(box).resize((1600, 1200)).save(tmp_path / f"{i}.jpg", quality=90)
    meta = {"preprocess": cifar10_preprocess(), "input_size": 32}
    files = sorted(tmp_path.iterdir())
    whole = preprocess_files(files, meta["preprocess"])
    assert load_image(files[0], 2 * meta["preprocess"]["resize"]).size == (200, 150)
    calibration = calibration_batch(str(tmp_path), meta, limit=2)  # in its own seeded order
    levels = [min(np.abs(c - w).mean() for w in whole) * 0.25 * 255 for c in calibration]  # std ~0.25
    assert all(0 < level < 1 for level in levels), levels
    held, _, _ = held_out_images(str(tmp_path), meta["preprocess"], 2, 0, seed=0)
    assert sorted(x.numpy().tobytes() for x in held) == sorted(x.tobytes() for x in whole)


@pytest.mark.parametrize("make,message", [
    (lambda p: p, "no readable images"),
    (lambda p: (p / "x.jpg").write_bytes(b"not a jpeg") and p, "no readable images"),
    (lambda p: (p / "IMG_0001.HEIC").write_bytes(b"ftypheic") and p, r"HEIC photos \(1 of them\).*to JPEG"),
])
def test_empty_or_non_image_calibration_is_refused(tmp_path, make, message):
    folder = make(tmp_path) or tmp_path
    with pytest.raises(DataError, match=message):
        calibration_batch(str(folder), META, limit=4)


def test_misshaped_calibration_array_is_refused(tmp_path):
    path = tmp_path / "calib.npy"
    np.save(path, np.zeros((4, 3, 28, 28), np.float32))
    with pytest.raises(DataError, match=r"expected \(N, 3, 32, 32\)"):
        calibration_batch(str(path), META, limit=4)
    with pytest.raises(DataError, match="calib-size"):
        calibration_batch(str(path), META, limit=0)


def _quantized_convs(float_modules):
    model = create_model("shunted_nano", num_classes=10).eval()
    calib = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    graph = quantize_pt2e(model, torch.from_numpy(calib[:1]), calib, xnnpack_quantizer(float_modules))
    return sum(1 for n in graph.graph.nodes if "dequantize_per_channel" in str(n.target))


def test_float_modules_and_norms_stay_float():
    everything = _quantized_convs([])
    model = create_model("shunted_nano")
    assert everything == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) + 1  # + head Linear
    assert _quantized_convs(["stages.3.blocks.0"]) < everything
    assert _quantized_convs(units(model)) == 0


def test_no_channel_mean_is_quantized():
    """XNNPACK's quantizer lets a mean share its input's quantization whatever its filter says. In Core
    ML W8A8 (the only int8 deploy form with channel means as ``mean`` ops) that kept norms from fusing
    into ``layer_norm``: their squares were computed in fp16, which overflows above 256."""
    model = deploy_form(create_model("shunted_nano", num_classes=10, depths=(1, 1, 1, 1)).eval(), "coreml", 32)
    calib = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    graph = quantize_pt2e(model, torch.from_numpy(calib[:1]), calib, xnnpack_quantizer())
    quantized = [n.args[0] for n in graph.graph.nodes if str(n.target).startswith("quantized_decomposed.quantize_per")]
    means = [n for n in graph.graph.nodes if "mean" in str(n.target)]
    assert len(quantized) > 10 and len(means) > 10 and not [n for n in quantized if n in means]


@pytest.mark.slow
def test_sensitivity_ranks_every_unit_and_mixed_precision_meets_the_contract():
    rng = np.random.default_rng(0)
    model = create_model("shunted_nano", num_classes=10, input_size=32, depths=(1, 1, 1, 1)).eval()
    images = rng.standard_normal((96, 3, 32, 32)).astype(np.float32)  # >= the 88 the int8 contract needs
    study = Study(model, rng.standard_normal((20, 3, 32, 32)).astype(np.float32), images)
    none, every = study.logits([]), study.logits(study.units)
    np.testing.assert_allclose(none, study.reference, atol=1e-5)  # nothing quantized: the fp32 model
    assert np.abs(every - study.reference).max() > 1e-3  # everything quantized: int8 noise
    rows = study.ranking()
    assert sorted(r.unit for r in rows) == sorted(units(model))
    assert all(np.isfinite(r.sqnr_db) and 0 <= r.mac_share <= 1 for r in rows)
    assert [r.priority for r in rows] == sorted((r.priority for r in rows), reverse=True)
    result = study.mixed_precision(rows)
    assert result["holds"]  # at worst every unit float, which is the fp32 model
    assert too_small(96) is None and "only 24 held-out images" in too_small(24)


@pytest.mark.slow
@pytest.mark.skipif(not TRAINED.is_file(), reason="default weights not present")
def test_int8_onnx_of_default_model_keeps_accuracy(tmp_path):
    from convert import to_onnx
    out = tmp_path / "m8.onnx"
    args = ["--checkpoint", str(TRAINED), "--precision", "int8", "--calib-size", "64", "--output", str(out)]
    assert to_onnx.main(to_onnx.CONVERTER, args) == 0
    manifest = json.loads((tmp_path / "m8.onnx.json").read_text())
    verification = manifest["verification"]
    assert verification["real_samples"] == 1000 and verification["status"] == "passed"
    assert verification["agreement_lower95"] >= 0.97 and verification["drop_lower95_points"] <= 1.0
    fp32_bytes = 4 * sum(p.numel() for p in create_model(checkpoint_path=TRAINED).parameters())
    assert manifest["size_bytes"] <= 0.3 * fp32_bytes
    # ONNX Runtime's fused int8 kernels compute what the QDQ graph says on this CPU: no u8 x s8
    # int16 saturation (x86 without VNNI) where the QDQ nodes run one by one as float ops
    import onnxruntime as ort
    images = calibration_batch("fashion-mnist", create_model(checkpoint_path=TRAINED).meta, limit=16)
    logits = {}
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
        logits[level] = np.concatenate([session.run(None, {"input": image[None]})[0] for image in images])
    unfused, fused = logits.values()
    cosine = per_image_cosine(unfused, fused).min()  # the same graph two ways: every sample must match
    assert cosine >= 0.999, cosine
    import onnx
    graph = onnx.load(str(out)).graph
    produced_by = {output: node.op_type for node in graph.node for output in node.output}
    quantized = [n for n in graph.node if n.op_type in ("Conv", "Add")
                 and all(produced_by.get(i) == "DequantizeLinear" for i in n.input[:2])]
    assert {n.op_type for n in quantized} == {"Conv", "Add"}  # QDQ around convs and residual adds
    kept_float = tmp_path / "m8_float_stage4.onnx"
    assert to_onnx.main(to_onnx.CONVERTER, args[:-1] + [str(kept_float), "--float-modules", "stages.3"]) == 0
    details = json.loads((tmp_path / "m8_float_stage4.onnx.json").read_text())["details"]["quantization"]
    assert details["float_nodes"] > 0
    graph = onnx.load(str(kept_float)).graph
    produced_by = {output: node.op_type for node in graph.node for output in node.output}
    quantized_convs = [n for n in graph.node if n.op_type == "Conv" and produced_by.get(n.input[1]) == "DequantizeLinear"]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert 0 < len(quantized_convs) < len(convs)  # stage 4's convs stay float


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="default weights not present")
def test_sensitivity_tool_says_when_its_sample_is_too_small_and_keeps_existing_output(tmp_path, capsys):
    from quantize.rank_units import main
    existing = tmp_path / "kept.json"
    existing.write_text("user data")
    assert main(["--output", str(existing), "--calib-size", "32", "--held-out", "40"]) == 2
    assert "--force" in capsys.readouterr().err and existing.read_text() == "user data"
    out = tmp_path / "s.json"
    assert main(["--output", str(out), "--calib-size", "32", "--held-out", "40"]) == 0
    printed = capsys.readouterr().out
    assert "only 40 held-out images" in printed and "np.float64" not in printed
    result = json.loads(out.read_text())
    assert result["images"] == 40 and result["warning"]
    assert {u["unit"] for u in result["units"]} == set(units(create_model(checkpoint_path=SHIPPED_CHECKPOINT)))


def _two_convs(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)
               for name, shape in (("w1", (4, 3, 3, 3)), ("w2", (2, 4, 1, 1)))]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["hidden"], pads=[1, 1, 1, 1], name="c1"),
             helper.make_node("Conv", ["hidden", "w2"], ["out"], name="c2")]
    graph = helper.make_graph(nodes, "two_convs", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 8, 8])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_onnx_range_methods_differ_and_entropy_clips_rare_outliers(tmp_path):
    """ORT's quantize_static alone gives entropy one candidate range (min/max); ours searches 2048 bins."""
    import onnx
    from onnx import numpy_helper
    from quantize.onnxrt import METHODS, quantize_qdq
    _two_convs(tmp_path / "fp32.onnx")
    calibration = np.random.default_rng(1).normal(0, 1, (64, 3, 8, 8)).astype(np.float32)
    calibration[::16, 0, 0, 0] = 40.0  # four outlier pixels in 12,288 values
    scale = {}
    for method in METHODS:
        out = tmp_path / f"{method}.onnx"
        assert quantize_qdq(tmp_path / "fp32.onnx", out, calibration, "input", method)["method"] == method
        scale[method] = float(numpy_helper.to_array(next(i for i in onnx.load(str(out)).graph.initializer
                                                         if i.name == "input_scale")))
    assert scale["minmax"] >= 40 / 255
    assert scale["entropy"] < 0.5 * scale["minmax"]  # 0.03% of values: the 99.999th percentile keeps them
    assert scale["percentile"] <= scale["minmax"]


def test_onnx_calibration_session_takes_the_processs_thread_budget(tmp_path, monkeypatch):
    """ORT ignores OMP_NUM_THREADS; its calibration session must not take every core in a build worker."""
    from onnxruntime.quantization import CalibrationMethod
    from quantize import onnx_ranges
    from quantize.onnxrt import CALIBRATOR_OPTIONS
    _two_convs(tmp_path / "fp32.onnx")
    seen = []
    monkeypatch.setattr(onnx_ranges, "_chunk_size", lambda calibrator, *args: seen.append(
        calibrator.infer_session.get_session_options()) or 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    images = np.random.default_rng(0).normal(0, 1, (8, 3, 8, 8)).astype(np.float32)
    onnx_ranges.activation_ranges(tmp_path / "fp32.onnx", images, "input", CalibrationMethod.MinMax, ["Conv"],
                                  CALIBRATOR_OPTIONS["minmax"], tmp_path)
    (options,) = seen
    assert options.intra_op_num_threads == 1 and options.graph_optimization_level.name == "ORT_DISABLE_ALL"


@pytest.mark.parametrize("method", ["percentile", "minmax", "entropy"])
def test_onnx_ranges_in_small_chunks_equal_onnx_runtimes_single_pass(tmp_path, method):
    """Bounded memory must not change a single range: chunks of 3 images against ORT holding all 40."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator
    from quantize.onnx_ranges import _Reader, activation_ranges
    from quantize.onnxrt import CALIBRATOR_OPTIONS
    _two_convs(tmp_path / "fp32.onnx")
    images = np.random.default_rng(2).normal(0, 1, (40, 3, 8, 8)).astype(np.float32)
    images[7, 1, 2, 3], images[31, 0, 0, 0] = 25.0, -60.0  # extremes in different chunks, not the first
    enum = {"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy}[method]
    options = CALIBRATOR_OPTIONS[method]
    single = create_calibrator(tmp_path / "fp32.onnx", ["Conv"], augmented_model_path=str(tmp_path / "one.onnx"),
                               calibrate_method=enum, extra_options=options)
    single.collect_data(_Reader(images, "input"))
    expected = single.compute_data()
    per_image = (4 + 2) * 8 * 8 * 4 + 3 * 8 * 8 * 4  # bytes of the calibrated outputs of one image
    chunked = activation_ranges(tmp_path / "fp32.onnx", images, "input", enum, ["Conv"], options, tmp_path,
                                chunk_bytes=3 * per_image)
    assert set(chunked.data) == set(expected.data) and len(expected.data) >= 2
    for name, ranges in expected.data.items():
        assert (chunked.data[name].range_value == ranges.range_value), name
