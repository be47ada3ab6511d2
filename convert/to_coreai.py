"""Export to an Apple Core AI asset (.aimodel), verified by Apple's Core AI runtime.

    python convert/to_coreai.py                                   # default model, fp32, float input
    python convert/to_coreai.py --precision fp16 --image-input    # uint8 RGB frames in
    python convert/to_coreai.py --precision fp16 --compress palettize4

coreai-torch converts the torch.export program (decomposed with its own table). The asset's
metadata carries the labels, the preprocessing and the checkpoint's sha256. Verification runs the
asset with ``coreai.runtime`` through the shared verification path: on Linux its reference CPU
path (not the Neural Engine), on macOS 27 the OS framework. Weight compression uses coreai-opt.

Inputs: by default the normalised float tensor ``input``. ``--image-input`` makes it ``image``,
uint8 RGB frames (N, S, S, 3) as a camera delivers them after resize and crop, with the
normalisation inside the model. Core AI's own image type (an RGBA CVPixelBuffer) cannot be made by
coreai-torch 0.4.3 and the Linux runtime cannot feed one, so it is not offered.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn

from convert.cli import main
from convert.pipeline import Converter, ConvertError, Exported, Job
from convert.to_coreml import image_adapter

TENSOR_INPUT, IMAGE_INPUT, LOGITS_NAME = "input", "image", "logits"
# weight-only compression (coreai-opt) -> the storage type that must then hold the weights
COMPRESSIONS = {"linear8": "Int8", "palettize6": "UInt6", "palettize4": "UInt4"}


@dataclass
class CoreAIOptions:
    image_input: bool = False  # uint8 RGB frames (N, S, S, 3) with the preprocessing inside


def add_arguments(parser) -> None:
    parser.add_argument("--image-input", action="store_true", help="input uint8 RGB frames (N, S, S, 3) named "
                        "'image', normalised inside the model (default: the normalised float tensor 'input')")


class FrameInput(nn.Module):
    """uint8 RGB frames (N, S, S, 3) in, logits out: the normalisation (and grey mix) as a 1x1 conv."""

    def __init__(self, model: nn.Module, preprocess: dict):
        super().__init__()
        scale, bias, mix = image_adapter(preprocess)
        mix = torch.eye(3, dtype=torch.float64) if mix is None else torch.as_tensor(mix, dtype=torch.float64)
        self.model, self.normalise = model, nn.Conv2d(3, 3, 1)
        self.normalise.weight.data.copy_((mix * scale).reshape(3, 3, 1, 1))
        self.normalise.bias.data.copy_(mix @ torch.tensor(bias, dtype=torch.float64))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalise(image.permute(0, 3, 1, 2).to(self.normalise.weight.dtype)))


class Half(nn.Module):
    """The model computing in fp16 behind float32 inputs and outputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half() if x.is_floating_point() else x).float()


def compress_weights(model: nn.Module, method: str, example: torch.Tensor) -> nn.Module:
    """coreai-opt weight-only compression: int8 per output channel, or k-means palettes per 16 channels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coreai-opt warns about every torch it has not been tested with
        if method == "linear8":
            from coreai_opt.quantization import Quantizer, QuantizerConfig
            compressor = Quantizer(model, QuantizerConfig.presets.w8(axis=0))
        else:
            from coreai_opt.palettization import KMeansPalettizer, KMeansPalettizerConfig
            presets = KMeansPalettizerConfig.presets
            compressor = KMeansPalettizer(model, presets.w6() if method == "palettize6" else presets.w4())
        compressor.prepare((example,))
        return compressor.finalize()


def convert_program(model: nn.Module, example: torch.Tensor, input_name: str):
    """torch.export -> coreai-torch's decompositions -> an AIProgram with named input and output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="coreai-torch has only been validated")  # "2.13.0+cpu" > "2.13.0"
        import coreai_torch
    with torch.no_grad():
        program = torch.export.export(model, (example,), strict=False)
        program = program.run_decompositions(coreai_torch.get_decomp_table())
    converter = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE)
    converter.add_exported_program(program, input_names=[input_name], output_names=[LOGITS_NAME])
    return converter.to_coreai()


def asset_metadata(job: Job, input_description: dict):
    """Labels, preprocessing, checkpoint sha256 and what the runner needs, as the asset's metadata."""
    from coreai.runtime import AIModelAssetMetadata
    meta = job.meta
    metadata = AIModelAssetMetadata()
    metadata.author = "shunted-edge"
    metadata.license = "see the shunted-edge repository; weights: their source's license"
    metadata.model_description = (f"Shunted Transformer {meta['variant']} image classifier ({meta['num_classes']} "
                                  f"classes, {meta['input_size']}x{meta['input_size']} RGB), {job.precision}")
    entries = {"labels": meta.get("labels"), "preprocess": meta["preprocess"],
               "checkpoint_sha256": meta.get("checkpoint_sha256") or "random weights", "precision": job.precision,
               "compress": job.request.compress, "input": input_description, "model": meta}
    for key, value in _without_nulls(entries).items():
        metadata.set_custom(key, value)
    return metadata


def _without_nulls(value):
    """``value`` with None dict entries left out (Core AI metadata has no null)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return [_without_nulls(v) for v in value] if isinstance(value, (list, tuple)) else value


def structural_checks(path: Path, precision: str, compress: str | None) -> dict:
    """Storage and compute types, op count; the weights must be stored as the precision asks."""
    from coreai.authoring import AIModelAsset
    summary = AIModelAsset.load(path).summary(include_statistics=True)
    storage = dict(summary.storage_types)
    expected = COMPRESSIONS[compress] if compress else {"fp32": "Float32", "fp16": "Float16"}[precision]
    if max(storage, key=storage.get) != expected:
        raise ConvertError(f"asked for {compress or precision} but the Core AI program stores most weights as "
                           f"{max(storage, key=storage.get)} ({storage})")
    return {"storage_types": storage, "compute_types": list(summary.compute_types),
            "num_ops": sum(n for _, n in summary.operation_distribution)}


def export_coreai(job: Job, tmp: Path) -> Exported:
    size, batch, compress = job.meta["input_size"], job.request.batch, job.request.compress
    model = compress_weights(job.deploy_model, compress, job.example) if compress else job.deploy_model
    if job.options.image_input:
        model = FrameInput(model, job.meta["preprocess"])
        example = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8,
                                generator=torch.Generator().manual_seed(0))
        scale, bias, mix = image_adapter(job.meta["preprocess"])
        described = {"name": IMAGE_INPUT, "shape": [batch, size, size, 3], "dtype": "uint8", "layout": "NHWC",
                     "kind": "image RGB 0..255", "image_scale": scale, "image_bias": bias,
                     "channel_mix": None if mix is None else mix.tolist()}
    else:
        example = job.example
        described = {"name": TENSOR_INPUT, "shape": [batch, 3, size, size], "dtype": "float32", "layout": "NCHW",
                     "kind": "normalized (see model.preprocess)"}
    if job.precision == "fp16":
        model = Half(model)
    program = convert_program(model.eval(), example, described["name"])
    program.save_asset(tmp, metadata=asset_metadata(job, described))
    return Exported(input=described, outputs={"logits": LOGITS_NAME},
                    details={"image_input": job.options.image_input, "compress": compress,
                             **structural_checks(tmp, job.precision, compress)})


# The deploy form with fused channels-last layer_norms (model.deploy's "onnx" recipe): coreai-torch
# lowers each to its layer_norm op, which computes in fp32 inside an fp16 program. The mean/variance
# forms ("portable", "coreml") square activations in fp16 and overflow on some images (default model,
# 1,000 test images: one image's logits collapse, cosine -0.11; fused: worst cosine 0.99999).
CONVERTER = Converter("coreai", ".aimodel", ("fp32", "fp16"), export_coreai, CoreAIOptions, add_arguments,
                      compressions=tuple(COMPRESSIONS),
                      name_tag=lambda request, options: "_".join(
                          filter(None, (request.compress, "image" if options.image_input else ""))),
                      backend=lambda options: "onnx")

if __name__ == "__main__":
    sys.exit(main(CONVERTER))
