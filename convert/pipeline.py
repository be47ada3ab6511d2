"""The one conversion pipeline: arguments -> model -> export to a temporary name -> verify -> manifest.

Each ``to_<format>.py`` script describes its format with a :class:`Converter` and calls :func:`main`.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from data import DataError, build_dataset
from model import CheckpointError, create_model, file_sha256, list_models
from quantize.calibration import calibration_batch

from runtime.quiet import quiet_third_party

from .manifest import finalize, remove, temporary_path, versions
from .verify import compare, failures, reference_logits, verification_inputs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "weights" / "shunted_nano_fmnist.pt"
DEFAULT_VARIANT = "shunted_nano"
ARTIFACTS = ROOT / "artifacts"


class ConvertError(Exception):
    """A user mistake or an unsupported request; printed as one line, exit status 2."""


class VerificationFailed(Exception):
    """The artifact does not compute what the PyTorch model computes; exit status 1."""


@dataclass
class Job:
    """Everything an exporter needs: the deploy-ready model, the example input, the request."""

    args: argparse.Namespace
    model: torch.nn.Module  # the reference (eval mode, unfused)
    deploy_model: torch.nn.Module  # BatchNorm and attention scale folded, in the converter's model_form
    meta: dict
    example: torch.Tensor
    checkpoint: Path | None
    _calibration: np.ndarray | None = None

    @property
    def precision(self) -> str:
        return self.args.precision

    @property
    def float_modules(self) -> list[str]:
        """int8: --float-modules plus what the deploy model keeps float (``int8_float_modules``)."""
        return [*self.args.float_modules, *self.deploy_model.int8_float_modules()]

    def calibration(self) -> np.ndarray:
        """Calibration inputs (--calib, default the checkpoint's dataset), loaded once."""
        if self._calibration is None:
            source = self.args.calib or self.meta.get("dataset")
            if source is None:
                raise ConvertError("int8 needs calibration images: pass --calib fashion-mnist, an image folder "
                                   "or a .npy array of preprocessed images")
            self._calibration = calibration_batch(source, self.meta, self.args.calib_size)
        return self._calibration


@dataclass
class Exported:
    """What an exporter reports back: the input/output description and format-specific details."""

    input: dict
    outputs: dict
    details: dict = field(default_factory=dict)
    runnable_here: bool = True
    not_runnable_reason: str = ""


@dataclass
class Converter:
    format: str
    suffix: str
    precisions: tuple[str, ...]
    export: Callable[[Job, Path], Exported]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    name_tag: Callable[[argparse.Namespace], str] = lambda args: ""
    fold_norms: bool = True  # see ShuntedTransformer.fuse_for_deploy
    # the deploy model in the form this format runs best (norm form), applied once in prepare()
    model_form: Callable[[torch.nn.Module, argparse.Namespace], torch.nn.Module] = lambda model, args: model


def build_parser(converter: Converter) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=f"Export a Shunted Transformer to {converter.format}, verified against PyTorch.")
    parser.add_argument("--model", choices=list_models(), help="variant (default: the checkpoint's, "
                        f"else the shipped default model {DEFAULT_CHECKPOINT.name})")
    parser.add_argument("--checkpoint", type=Path, help="our checkpoint or an official Shunted one")
    parser.add_argument("--imgsz", type=int, help="input size, a multiple of 32 (default: the checkpoint's)")
    parser.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    parser.add_argument("--output", type=Path, help="artifact path (default: <output-dir>/<checkpoint>_<size>_<precision>)")
    parser.add_argument("--output-dir", type=Path, default=ARTIFACTS, help="folder for the default name (artifacts/)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing artifact")
    parser.add_argument("--precision", default=converter.precisions[0], help=f"one of {', '.join(converter.precisions)}")
    parser.add_argument("--calib", help="int8 calibration: fashion-mnist, an image folder or a .npy array "
                        "(default: the checkpoint's dataset)")
    parser.add_argument("--calib-size", type=int, default=256, help="calibration images (default 256)")
    parser.add_argument("--float-modules", nargs="*", default=[], metavar="NAME",
                        help="int8: modules kept in float (e.g. stages.0.blocks.0.attn), see quantize/sensitivity.py")
    parser.add_argument("--eval-images", type=int, default=1000,
                        help="labelled test images for the accuracy check against fp32 (0 to skip)")
    parser.add_argument("--verify-data", help="dataset for verification images: fashion-mnist or an image folder "
                        "(default: the checkpoint's dataset)")
    parser.add_argument("--verify-images", type=int, default=32, help="real images used in verification")
    parser.add_argument("--verify-random", type=int, default=8, help="random images used in verification")
    if converter.add_arguments:
        converter.add_arguments(parser)
    return parser


def _resolve_checkpoint(args: argparse.Namespace) -> Path | None:
    if args.checkpoint is not None:
        return args.checkpoint
    if args.model is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise ConvertError(f"default weights {DEFAULT_CHECKPOINT} are missing; pass --model and --checkpoint")
        return DEFAULT_CHECKPOINT
    print(f"warning: no --checkpoint: exporting freshly initialised {args.model} weights (fine for latency "
          f"work, meaningless predictions)", file=sys.stderr)
    return None


def _resolve_output(converter: Converter, args: argparse.Namespace, meta: dict, checkpoint: Path | None) -> Path:
    if args.output is None:
        stem = checkpoint.stem if checkpoint else f"{meta['variant']}_random"
        tag = converter.name_tag(args)
        name = f"{stem}_{meta['input_size']}_{args.precision}{'_' + tag if tag else ''}"
        if args.batch != 1:
            name += f"_b{args.batch}"
        args.output = args.output_dir / f"{name}{converter.suffix}"
    output = args.output
    if output.suffix != converter.suffix:
        raise ConvertError(f"--output {output} must end in {converter.suffix}")
    if output.exists() and not args.force:
        raise ConvertError(f"{output} already exists; pass --force to overwrite it or choose another --output")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConvertError(f"cannot create output directory {output.parent}: {err.strerror}") from None
    if not os.access(output.parent, os.W_OK):
        raise ConvertError(f"output directory {output.parent} is not writable; choose another --output")
    return output


def prepare(converter: Converter, args: argparse.Namespace) -> tuple[Job, Path]:
    """Validate the request and build the model; nothing is written yet."""
    if args.precision not in converter.precisions:
        raise ConvertError(f"--precision {args.precision} is not available for {converter.format}; "
                           f"choose one of {', '.join(converter.precisions)}")
    if args.batch < 1:
        raise ConvertError(f"--batch must be >= 1, got {args.batch}")
    checkpoint = _resolve_checkpoint(args)
    model = create_model(args.model, checkpoint_path=checkpoint, img_size=args.imgsz).eval()
    meta = dict(model.meta)
    if checkpoint is not None:
        meta.update(checkpoint=str(checkpoint), checkpoint_sha256=file_sha256(checkpoint))
    output = _resolve_output(converter, args, meta, checkpoint)
    size = meta["input_size"]
    deploy_model = copy.deepcopy(model).fuse_for_deploy(fold_norms=converter.fold_norms, input_size=size)
    deploy_model = converter.model_form(deploy_model, args)
    example = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    return Job(args, model, deploy_model, meta, example, checkpoint), output


def verify(job: Job, tmp: Path, manifest: dict) -> dict:
    """Run the artifact and the PyTorch model on the same real + random images; raise if it misses."""
    from runtime import load_artifact
    args = job.args
    inputs, n_real, source = verification_inputs(job.meta, args.verify_images, args.verify_random, args.verify_data)
    runner = load_artifact(tmp, manifest=manifest)
    figures = compare(reference_logits(job.model, inputs), runner.run(inputs), n_real)
    figures.update(data=source, engine=getattr(runner, "engine", runner.format), status="passed")
    figures["accuracy"] = accuracy_against_reference(job, runner)
    missed = failures(figures, getattr(args, "compress", None) or job.precision)
    if missed:
        figures["status"] = "failed"
        raise VerificationFailed(f"{runner.format} {job.precision} artifact does not match PyTorch: " + "; ".join(missed))
    return figures


def accuracy_against_reference(job: Job, runner) -> dict | None:
    """Top-1 of the artifact and of the fp32 PyTorch model on labelled test images, and their agreement."""
    source = job.args.verify_data or job.meta.get("dataset")
    if not source or job.args.eval_images < 1:
        return None
    dataset = build_dataset(source, "test", job.meta["preprocess"], limit=job.args.eval_images)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).numpy()
    labels = np.asarray([dataset[i][1] for i in range(len(dataset))])
    ref = reference_logits(job.model, images).argmax(1)
    got = runner.run(images).argmax(1)
    top1_ref, top1 = float((ref == labels).mean()), float((got == labels).mean())
    return {"data": str(source), "images": len(labels), "top1": top1, "top1_fp32": top1_ref,
            "delta_top1_points": 100 * (top1 - top1_ref), "top1_agreement": float((ref == got).mean())}


def export_unverified(converter: Converter, job: Job, tmp: Path) -> tuple[dict, Exported]:
    """Write the artifact to ``tmp``; returns its manifest so far (no verification yet) and the export facts."""
    exported = converter.export(job, tmp)
    manifest = {"format": converter.format, "precision": job.precision, "model": job.meta,
                "input": exported.input, "outputs": exported.outputs, "details": exported.details,
                "versions": versions()}
    return manifest, exported


def convert(converter: Converter, args: argparse.Namespace) -> dict:
    """Export, verify and publish one artifact; returns its manifest."""
    job, output = prepare(converter, args)
    tmp = temporary_path(output)
    start = time.perf_counter()
    try:
        manifest, exported = export_unverified(converter, job, tmp)
        export_seconds = time.perf_counter() - start
        if exported.runnable_here:
            manifest["verification"] = verify(job, tmp, manifest)
        else:
            manifest["verification"] = {"status": "not run", "reason": exported.not_runnable_reason}
        manifest["seconds"] = round(time.perf_counter() - start, 2)
        manifest["export_seconds"] = round(export_seconds, 2)
        return finalize(tmp, output, manifest)
    finally:
        remove(tmp)


def describe(manifest: dict) -> str:
    v = manifest["verification"]
    if v["status"] != "passed":
        check = f"verification {v['status']}: {v.get('reason', '')}"
    else:
        check = (f"verified on {v['samples']} inputs ({v['data']}, {v['engine']}): max|diff| {v['max_abs_diff']:.2e}, "
                 f"cosine {v['cosine']:.6f}, top-1 agreement {v['top1_agreement']:.1%}")
    size_mb = manifest["size_bytes"] / 1e6
    return (f"wrote {manifest['path']} ({size_mb:.2f} MB; export {manifest['export_seconds']:.1f} s, "
            f"with verification {manifest['seconds']:.1f} s)\n  {check}\n"
            f"  manifest {manifest['manifest_path']}")


USER_ERRORS = (ConvertError, CheckpointError, DataError, ValueError, FileNotFoundError, PermissionError)


def main(converter: Converter, argv: list[str] | None = None) -> int:
    args = build_parser(converter).parse_args(argv)
    quiet_third_party()
    try:
        manifest = convert(converter, args)
    except VerificationFailed as err:
        print(f"error: {err}; no artifact was written", file=sys.stderr)
        return 1
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(describe(manifest))
    return 0
