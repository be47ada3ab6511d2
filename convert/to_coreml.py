"""Export to a Core ML ML Program (.mlpackage) with an image input, fp16 by default.

    python convert/to_coreml.py                                  # default model, fp16, iOS17
    python convert/to_coreml.py --precision fp32 --deployment-target macOS14

The input is an RGB image (ct.ImageType): its scale/bias carry the normalisation, and a 1x1
conv at the front finishes it where one scale cannot (per-channel std, grey models), so an app
feeds camera frames directly. With class labels the model is a classifier that also outputs
the raw logits. On macOS the artifact is verified with Core ML's predict; on Linux with the
project's numpy ML Program evaluator (mlprogram/), through the same verification path.
"""
from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch import nn

from convert.cli import main
from convert.pipeline import Converter, ConvertError, Exported, Job
from quantize.pt2e import METHODS, quantize_pt2e, xnnpack_quantizer
from common.quiet import progress_bars_off

TARGETS = ("iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")
INPUT_NAME, PROBS_NAME, LOGITS_NAME = "image", "probabilities", "logits"


COMPRESSIONS = ("linear8", "palettize6", "palettize4")
# coremltools draws a progress bar per op conversion and MIL pass pipeline, with no option to turn
# them off (apple/coremltools#1815): a conversion printed dozens of bar updates
PROGRESS_MODULES = ("coremltools.converters.mil.frontend.torch.ops",
                    "coremltools.converters.mil.mil.passes.pass_pipeline")


@dataclass
class CoreMLOptions:
    deployment_target: str = "iOS17"


def add_arguments(parser) -> None:
    parser.add_argument("--deployment-target", choices=TARGETS,
                        help="minimum_deployment_target (default iOS17, i.e. macOS14)")


def image_adapter(preprocess: dict) -> tuple[float, list[float], np.ndarray | None]:
    """ImageType scale and per-channel bias, plus the 3x3 channel mix still needed after them.

    With s = mean(std): scale*pixel + bias_c = (pixel/255 - mean_c)/s. The mix turns that into
    (pixel/255 - mean_c)/std_c, or into the grey value a grey model was trained on (luma weights
    sum to 1, so mixing commutes with the normalisation). None when nothing is left to do.
    """
    mean, std = np.asarray(preprocess["mean"]), np.asarray(preprocess["std"])
    s = float(std.mean())
    scale, bias = 1.0 / (255.0 * s), [float(-m / s) for m in mean]
    if preprocess["grayscale"]:
        if not np.allclose(mean, mean[0]) or not np.allclose(std, std[0]):
            raise ConvertError("a grey model needs equal mean/std on all channels")
        return scale, bias, np.tile(np.asarray(LUMA), (3, 1))
    mix = np.diag(s / std)
    return scale, bias, None if np.allclose(mix, np.eye(3)) else mix


class ImageClassifier(nn.Module):
    """Adapted image in, (probabilities, logits) out."""

    def __init__(self, model: nn.Module, mix: np.ndarray | None):
        super().__init__()
        self.model = model
        self.mix = None
        if mix is not None:
            self.mix = nn.Conv2d(3, 3, 1, bias=False)
            self.mix.weight.data.copy_(torch.as_tensor(mix, dtype=torch.float32).reshape(3, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(self.mix(image) if self.mix is not None else image)
        return torch.softmax(logits, dim=1), logits


def convert_program(job: Job, scale: float, bias: list[float], mix: np.ndarray | None):
    """torch.export -> MIL (image input, two tensor outputs) -> ML Program, a classifier when labelled.

    The classifier is added in a second pass over the MIL program: coremltools 9 cannot attach a
    ClassifierConfig to a torch.export program with more than one output.
    """
    import coremltools as ct
    model = job.deploy_model
    if job.precision == "int8":  # W8A8: PT2E int8 weights and activations, fp16 elsewhere
        model = quantize_pt2e(model, job.example, job.calibration(), xnnpack_quantizer(job.float_modules, job.calib_method))
    wrapper = ImageClassifier(model, mix)
    with torch.no_grad():
        program = torch.export.export(wrapper, (job.example,), strict=False).run_decompositions({})
    common = {"compute_precision": ct.precision.FLOAT32 if job.precision == "fp32" else ct.precision.FLOAT16,
              "minimum_deployment_target": getattr(ct.target, job.options.deployment_target)}
    image = ct.ImageType(name=INPUT_NAME, shape=tuple(job.example.shape), scale=scale, bias=bias,
                         color_layout=ct.colorlayout.RGB)
    outputs = [ct.TensorType(name=PROBS_NAME), ct.TensorType(name=LOGITS_NAME)]
    labels = job.meta.get("labels")
    if not labels:
        return ct.convert(program, inputs=[image], outputs=outputs, convert_to="mlprogram", **common)
    mil = ct.convert(program, inputs=[image], outputs=outputs, convert_to="milinternal", **common)
    mil.functions["main"].output_types = None
    # the first pass ran the whole pass pipeline; a second run on its output changed no op and took
    # a third of the fp16 conversion (2.7 s of ~6.5 s here)
    return ct.convert(mil, classifier_config=ct.ClassifierConfig(labels, predicted_probabilities_output=PROBS_NAME),
                      convert_to="mlprogram", pass_pipeline=ct.PassPipeline.EMPTY, **common)


def compress_weights(mlmodel, method: str):
    """Weight-only compression of a converted program (activations untouched)."""
    from coremltools.optimize import coreml as cto
    if method == "linear8":
        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"))
        return cto.linear_quantize_weights(mlmodel, config)
    bits = int(method.removeprefix("palettize"))
    config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(mode="kmeans", nbits=bits))
    return cto.palettize_weights(mlmodel, config)


def describe_model(mlmodel, job: Job) -> None:
    meta = job.meta
    mlmodel.short_description = (f"Shunted Transformer {meta['variant']} image classifier "
                                 f"({meta['num_classes']} classes, {meta['input_size']}x{meta['input_size']} RGB)")
    mlmodel.version = "1"
    mlmodel.license = "see the shunted-edge repository; weights: their source's license"
    mlmodel.author = "shunted-edge"
    mlmodel.input_description[INPUT_NAME] = (f"RGB image {meta['input_size']}x{meta['input_size']}, already resized "
                                             f"and centre-cropped as in the preprocess metadata")
    mlmodel.output_description[LOGITS_NAME] = "raw class scores (logits)"
    extra = {"variant": meta["variant"], "input_size": str(meta["input_size"]),
             "preprocess": json.dumps(meta["preprocess"]), "labels": json.dumps(meta.get("labels")),
             "checkpoint_sha256": meta.get("checkpoint_sha256") or "random weights", "precision": job.precision}
    mlmodel.user_defined_metadata.update(extra)


def output_names(mlmodel) -> dict:
    description = mlmodel.get_spec().description
    names = {"logits": LOGITS_NAME}
    if description.predictedFeatureName:
        names.update(class_label=description.predictedFeatureName,
                     probabilities=description.predictedProbabilitiesName)
    else:
        names["probabilities"] = PROBS_NAME
    return names


def structural_checks(path: Path, precision: str, compress: str | None) -> dict:
    """What can be checked without running: op types, tensor ranks, the precision really used."""
    import mlprogram
    program = mlprogram.load(path)
    ops, rank, used = program.op_types(), program.max_rank(), program.compute_precision()
    if rank > 4:
        raise ConvertError(f"the Core ML program has a rank-{rank} tensor; the model must stay within rank 4")
    expected = "fp16" if precision == "int8" else precision
    if used != expected:
        raise ConvertError(f"asked for {precision} but the Core ML program computes in {used}")
    if precision == "int8" and not ops.get("quantize"):
        raise ConvertError("the W8A8 program has no quantize ops: activations were not quantized")
    if compress and not any(op.startswith("constexpr_") for op in ops):
        raise ConvertError(f"--compress {compress} left no compressed (constexpr) weights in the program")
    return {"max_rank": rank, "compute_precision": used, "ops": dict(sorted(ops.items())),
            "num_ops": sum(ops.values())}


def export_coreml(job: Job, tmp: Path) -> Exported:
    scale, bias, mix = image_adapter(job.meta["preprocess"])
    compress = job.request.compress
    if job.precision == "int8" and compress:
        raise ConvertError("--compress applies to fp16/fp32 programs; int8 (W8A8) already stores int8 weights")
    with progress_bars_off(*PROGRESS_MODULES):
        mlmodel = convert_program(job, scale, bias, mix)
        if compress:
            mlmodel = compress_weights(mlmodel, compress)
    describe_model(mlmodel, job)
    mlmodel.save(str(tmp))
    size = job.meta["input_size"]
    return Exported(
        input={"name": INPUT_NAME, "shape": [job.request.batch, 3, size, size], "kind": "image RGB 0..255",
               "image_scale": scale, "image_bias": bias, "channel_mix": None if mix is None else mix.tolist()},
        outputs=output_names(mlmodel),
        details={"deployment_target": job.options.deployment_target, "platform": platform.system(),
                 "verified_with": "Core ML predict" if platform.system() == "Darwin" else "mlprogram numpy evaluator",
                 "compress": compress, **structural_checks(tmp, job.precision, compress)})


# Core ML fuses each whole norm, affine included, into one layer_norm op: folding buys nothing there
# and costs W8A8 precision (verification cosine 0.995 -> 0.989 on the default model).
CONVERTER = Converter("coreml", ".mlpackage", ("fp16", "fp32", "int8"), export_coreml, CoreMLOptions, add_arguments,
                      compressions=COMPRESSIONS, calib_methods=METHODS, name_tag=lambda request, options: request.compress or "",
                      backend=lambda options: "coreml")

if __name__ == "__main__":
    sys.exit(main(CONVERTER))
