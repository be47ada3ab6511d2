"""The one conversion pipeline: request -> model -> export to a temporary name -> verify -> manifest.

Each ``to_<format>.py`` describes its format with a :class:`Converter`; :func:`build_artifact` runs
it through the public stages :func:`prepare` (check the request, build the reference),
:func:`export_unverified`, :func:`verify` and ``manifest.finalize`` (publish). Users call
``convert.api.convert``; command lines are parsed in ``convert/cli.py`` only.
"""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from common.contract import contract_for, min_images
from common.defaults import SHIPPED_CHECKPOINT
from common.digest import tensors_sha256
from common.errors import UserError
from common.outputs import partial
from model import check_memory, create_model, file_sha256
from model.deploy import deploy_form, float_in_int8
from quantize.calibration import calibration_batch

from .manifest import Manifest, check_artifact_output, finalize, versions
from .request import ConvertRequest, RequestError, RequestTypeError, artifact_name, checkpoint_stem
from .int8_search import SearchFailed, search
from .verify import (VerificationSet, calibration_overlap, judge_artifact, reference_logits, verification_set,
                     verification_source)


class ConvertError(UserError):
    """A user mistake or an unsupported request; printed as one line, exit status 2."""


class VerificationFailed(Exception):
    """The artifact does not compute what the PyTorch model computes; exit status 1."""


@dataclass
class Job:
    """Everything an exporter needs: the request, its format options, the models and the example input."""

    request: ConvertRequest
    options: object  # the converter's options dataclass, filled
    model: torch.nn.Module  # the reference (eval mode, unfused)
    deploy_model: torch.nn.Module  # model.deploy.deploy_form for the converter's backend
    meta: dict
    example: torch.Tensor
    checkpoint: Path | None
    _calibration: np.ndarray | None = None
    _images: VerificationSet | None = None
    _reference: np.ndarray | None = None

    @property
    def precision(self) -> str:
        return self.request.precision

    @property
    def calib_method(self) -> str:
        return self.request.calib_method

    @property
    def float_modules(self) -> list[str]:
        """int8: the requested float modules plus what the deploy model keeps float."""
        return [*self.request.float_modules, *float_in_int8(self.deploy_model)]

    @property
    def calib_source(self) -> str | None:
        return self.request.calib or self.meta.get("dataset")

    @property
    def verify_source(self) -> str | None:
        """The real images' source (convert/verify.py: --verify-data, the dataset, int8: --calib)."""
        return verification_source(self.meta, self.request.verify_data,
                                   self.request.calib if self.precision == "int8" else None)

    def calibration(self) -> np.ndarray:
        """Calibration inputs (``request.calib``, default the checkpoint's dataset), loaded once."""
        if self._calibration is None:
            if self.calib_source is None:
                raise ConvertError("int8 needs calibration images: pass --calib cifar10, fashion-mnist, an image folder "
                                   "or a .npy array of preprocessed images")
            self._calibration = calibration_batch(self.calib_source, self.meta, self.request.calib_size)
        return self._calibration

    @property
    def random_weights(self) -> bool:
        """No trained weights: decisions mean nothing, so reduced precisions are judged by numerics."""
        return (self.request.random_weights or bool(self.meta.get("random_weights"))
                or (self.checkpoint is None and not in_memory(self.meta)))  # a model object counts as trained

    @property
    def images(self) -> VerificationSet:
        """The real (then random) images every candidate artifact is judged on, loaded once."""
        if self._images is None:
            r, source = self.request, self.verify_source
            used = calibration_overlap(self.meta, self.calib_source, r.calib_size, source) if self.precision == "int8" else 0
            explicit = source if source != self.meta.get("dataset") else None  # a named source must work
            self._images = verification_set(self.meta, r.verify_images, r.verify_random, explicit, used)
        return self._images

    @property
    def reference(self) -> np.ndarray:
        """fp32 PyTorch logits of :attr:`images`, computed once."""
        if self._reference is None:
            self._reference = reference_logits(self.model, self.images.inputs)
        return self._reference


@dataclass
class Exported:
    """What an exporter reports back: the input/output description and format-specific details."""

    input: dict
    outputs: dict
    details: dict = field(default_factory=dict)
    runnable_here: bool = True
    not_runnable_reason: str = ""


@dataclass
class NoOptions:
    """A format without options of its own."""


@dataclass
class Converter:
    format: str
    suffix: str
    precisions: tuple[str, ...]  # the first is the default
    export: Callable[[Job, Path], Exported]
    options: type = NoOptions  # dataclass of the format's own options (its CLI flags in add_arguments)
    add_arguments: Callable | None = None  # (argparse parser) -> None; dests named as the options' fields
    compressions: tuple[str, ...] = ()  # weight-only compressions the format offers
    calib_methods: tuple[str, ...] = ()  # int8 activation-range methods, the default (measured best) first
    name_tag: Callable[[ConvertRequest, object], str] = lambda request, options: ""
    backend: Callable[[object], str] = lambda options: "portable"  # the deploy form (model.deploy)

    def artifact_path(self, request: ConvertRequest, stem: str, size: int) -> Path:
        """Where ``request`` writes when it names no output: ``<output_dir>/<artifact_name><suffix>``."""
        request = self.complete(request)
        name = artifact_name(stem, size, request.precision, self.name_tag(request, request.options), request.batch)
        return request.output_dir / f"{name}{self.suffix}"

    def complete(self, request: ConvertRequest) -> ConvertRequest:
        """``request`` with the format's defaults filled in (precision, options), checked."""
        precision = request.precision or self.precisions[0]
        if precision not in self.precisions:
            raise RequestError("precision", f"precision {precision} is not available for {self.format}; "
                                            f"choose one of {', '.join(self.precisions)}")
        if request.compress is not None and request.compress not in self.compressions:
            offered = ", ".join(self.compressions) or "none"
            raise RequestError("compress", f"compress {request.compress} is not available for {self.format} "
                                           f"(offered: {offered})")
        method = request.calib_method or (self.calib_methods[0] if self.calib_methods else None)
        if request.calib_method is not None and request.calib_method not in self.calib_methods:
            raise RequestError("calib_method", f"calib_method {request.calib_method} is not available for "
                                               f"{self.format}; choose one of {', '.join(self.calib_methods) or 'none (no int8)'}")
        options = request.options if request.options is not None else self.options()
        if not isinstance(options, self.options):
            raise RequestTypeError("options", f"{self.format} takes {self.options.__name__} options, got "
                                              f"{type(options).__name__}")
        if request.verify_images < 1 and (precision == "int8" or request.compress):
            raise RequestError("verify_images", f"{request.compress or 'int8'} is judged on real images (the accuracy "
                                                f"contract): verify_images must be >= 1")
        return replace(request, precision=precision, calib_method=method, options=options)


def _resolve_checkpoint(request: ConvertRequest) -> Path | None:
    if request.checkpoint is not None:
        return Path(request.checkpoint)
    if request.model is None:
        if not SHIPPED_CHECKPOINT.is_file():
            raise ConvertError(f"default weights {SHIPPED_CHECKPOINT} are missing; pass --model and --checkpoint")
        return SHIPPED_CHECKPOINT
    print(f"warning: no --checkpoint: exporting freshly initialised {request.model} weights (fine for latency "
          f"work, meaningless predictions)", file=sys.stderr)
    return None


def in_memory(meta: dict) -> bool:
    """Whether the weights came as a model object (their digest, not a checkpoint file, names them)."""
    return "weights_sha256" in meta


def _reference_model(request: ConvertRequest) -> tuple[torch.nn.Module, Path | None, dict]:
    """The fp32 reference (eval mode, CPU), its checkpoint path (None: random or in-memory weights) and
    metadata. A model object is copied: the caller's stays as it was (mode, device, dtype)."""
    if isinstance(request.model, torch.nn.Module):
        given = request.model.meta
        if request.input_size not in (None, given["input_size"]):
            raise RequestError("input_size", f"input_size {request.input_size} differs from the model's input size "
                                             f"{given['input_size']} (its preprocessing is for that size); "
                                             f"leave input_size unset")
        model = copy.deepcopy(request.model).float().cpu().eval()
        meta = {**dict(given), "weights_sha256": tensors_sha256(model.state_dict())}
        return model, None, meta
    checkpoint = _resolve_checkpoint(request)
    model = create_model(request.model, checkpoint_path=checkpoint, input_size=request.input_size).eval()
    meta = dict(model.meta)
    if checkpoint is not None:
        meta.update(checkpoint=str(checkpoint), checkpoint_sha256=file_sha256(checkpoint))
    return model, checkpoint, meta


def _resolve_output(converter: Converter, request: ConvertRequest, meta: dict, checkpoint: Path | None) -> Path:
    output = request.output
    if output is None:
        stem = checkpoint_stem(checkpoint, meta["variant"], in_memory=in_memory(meta))
        output = converter.artifact_path(request, stem, meta["input_size"])
    output = Path(output)
    if output.suffix != converter.suffix:
        raise ConvertError(f"--output {output} must end in {converter.suffix}")
    check_artifact_output(output, request.force)
    return output


def _check_float_modules(deploy_model: torch.nn.Module, names: tuple[str, ...]) -> None:
    known = dict(deploy_model.named_modules())
    unknown = [name for name in names if name not in known]
    if unknown:
        units = [n for n, m in deploy_model.named_modules() if n.count(".") <= 3 and n]
        raise ConvertError(f"--float-modules: no module {', '.join(unknown)} in this model; valid names include "
                           f"{', '.join(units[:12])}, ... (see quantize/rank_units.py)")


def prepare(converter: Converter, request: ConvertRequest) -> tuple[Job, Path]:
    """Validate the request and build the model; nothing is written yet."""
    request = converter.complete(request)
    model, checkpoint, meta = _reference_model(request)
    output = _resolve_output(converter, request, meta, checkpoint)
    size = meta["input_size"]
    check_memory(model.config, size, request.batch)
    deploy_model = deploy_form(model, converter.backend(request.options), size)
    _check_float_modules(deploy_model, request.float_modules)
    example = torch.randn(request.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    job = Job(request, request.options, model, deploy_model, meta, example, checkpoint)
    if job.precision == "int8":
        job.calibration()
    _check_judgeable(job)
    return job, output


def _check_judgeable(job: Job) -> None:
    """Refuse before any export when the artifact could not be judged: int8 and weight compression
    are judged on real images. Loads the verification images (bad sources fail here)."""
    kind = job.request.compress or (job.precision if job.precision == "int8" else None)
    if kind is None:
        if job.request.verify_data and job.images.n_real == 0:
            raise ConvertError(f"--verify-data {job.request.verify_data} gave no images")
        return
    if job.verify_source is None:
        weights = job.checkpoint or ("the model" if in_memory(job.meta) else f"random-weight {job.meta['variant']}")
        raise ConvertError(f"{kind} is judged on real images and {weights} names no dataset: pass --verify-data "
                           f"FOLDER (class sub-folders give accuracy too)")
    least = 1 if job.random_weights else min_images(contract_for(kind).min_agreement)
    if job.images.n_real < least:
        took = f" after calibration took {len(job.calibration())}" if job.precision == "int8" else ""
        raise ConvertError(f"{job.verify_source} leaves {job.images.n_real} images to judge the {kind} artifact{took}; "
                           f"the accuracy contract needs {least} at least: pass --verify-data FOLDER or more images")


def verify(job: Job, tmp: Path, manifest: dict) -> dict:
    """Run the artifact and the PyTorch model on the same images; the accuracy contract's verdict."""
    from runtime import load_artifact
    runner = load_artifact(tmp, manifest=manifest)
    figures = judge_artifact(job.request.compress or job.precision, job.reference, runner.judged_outputs(job.images.inputs),
                             job.images, job.random_weights)
    return {**figures, "data": job.images.description, "engine": getattr(runner, "engine", runner.format)}


def _export_and_verify(converter: Converter, job: Job, tmp: Path) -> tuple[dict, Exported]:
    manifest, exported = export_unverified(converter, job, tmp)
    if exported.runnable_here:
        manifest["verification"] = verify(job, tmp, manifest)
    else:
        manifest["verification"] = {"status": "not run", "reason": exported.not_runnable_reason}
    return manifest, exported


def _mixed_precision(converter: Converter, job: Job, tmp: Path, manifest: dict) -> dict:
    """The int8 search (convert/int8_search.py) when all-int8 misses the contract; its manifest."""
    first = manifest["verification"]
    if not job.request.search:
        raise VerificationFailed(f"int8 artifact misses the accuracy contract: {'; '.join(first['missed'])} "
                                 f"(search for float units is off; drop --no-search to let it run)")
    built: dict[tuple, dict] = {}

    def build(candidate: Job, path: Path) -> dict:
        built[candidate.request.float_modules], _ = _export_and_verify(converter, candidate, path)
        return built[candidate.request.float_modules]["verification"]
    try:
        units, _, record = search(job, build, tmp, first)
    except SearchFailed as err:
        raise VerificationFailed(str(err)) from None
    return {**built[(*job.request.float_modules, *units)], "int8_search": {"float_units": units, **record}}


def export_unverified(converter: Converter, job: Job, tmp: Path) -> tuple[dict, Exported]:
    """Write the artifact to ``tmp``; returns its manifest so far (no verification yet) and the export facts."""
    start = time.perf_counter()
    exported = converter.export(job, tmp)
    manifest = {"format": converter.format, "precision": job.precision, "model": job.meta,
                "export_seconds": round(time.perf_counter() - start, 2), "input": exported.input,
                "outputs": exported.outputs, "details": exported.details, "versions": versions()}
    if job.precision == "int8":
        manifest["quantization"] = {"calib_method": job.calib_method, "calibration_source": str(job.calib_source),
                                    "calibration_images": len(job.calibration()),
                                    "float_modules": job.float_modules}
    return manifest, exported


def build_artifact(converter: Converter, request: ConvertRequest) -> Manifest:
    """Export, verify and publish one artifact; returns its manifest."""
    job, output = prepare(converter, request)
    start = time.perf_counter()
    with partial(output) as tmp:
        manifest, exported = _export_and_verify(converter, job, tmp)
        missed = manifest["verification"].get("missed")
        if missed and job.precision == "int8":
            manifest = _mixed_precision(converter, job, tmp, manifest)
        elif missed:
            raise VerificationFailed(f"{converter.format} {job.precision} artifact does not match PyTorch: "
                                     + "; ".join(missed))
        manifest["seconds"] = round(time.perf_counter() - start, 2)
        return finalize(tmp, output, manifest, job.request.force)
