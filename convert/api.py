"""The conversion API: a model in, a verified artifact out.

    from convert.api import convert
    from convert.to_onnx import OnnxOptions
    manifest = convert(model, "onnx", precision="int8", calib="my_photos/")   # a model object of ours
    manifest = convert("final.pt", "executorch", precision="int8")              # or a checkpoint path
    manifest.path, manifest.verified, manifest.verification["top1_agreement"], manifest.labels
"""
from __future__ import annotations

import os
from dataclasses import fields, replace
from importlib import import_module
from pathlib import Path
from typing import Any

from .manifest import Manifest
from .pipeline import Converter, ConvertError, VerificationFailed
from .pipeline import build_artifact
from .request import ConvertRequest, RequestError, RequestTypeError, artifact_name

MODULES = {"onnx": "convert.to_onnx", "executorch": "convert.to_executorch", "coreml": "convert.to_coreml",
           "coreai": "convert.to_coreai"}

__all__ = ["ConvertError", "ConvertRequest", "Manifest", "RequestError", "RequestTypeError", "VerificationFailed",
           "artifact_name", "convert", "converter", "formats"]


def formats() -> list[str]:
    return list(MODULES)


def converter(format: str) -> Converter:
    """The :class:`Converter` of ``format`` (imported on first use: each pulls in its toolchain)."""
    if not isinstance(format, str) or format not in MODULES:
        raise RequestError("format", f"unknown format {format!r}; choose one of {', '.join(MODULES)}")
    return import_module(MODULES[format]).CONVERTER


def convert(model: Any, format: str, request: ConvertRequest | None = None, **options: Any) -> Manifest:
    """Build, verify and publish one artifact.

    Args:
        model: a model of ours (``create_model(...)``, with ``.meta``), a checkpoint path (ours or an
            official one), a variant name (random weights), or None for the shipped default model.
        format: one of :func:`formats`.
        request: a full :class:`ConvertRequest` to start from (``model`` replaces its weights).
        **options: :class:`ConvertRequest` fields: ``precision="int8"``, ``calib=...``,
            ``options=OnnxOptions(...)``, ``output=...``, ``force=True``, ...

    Returns:
        The artifact's :class:`Manifest`: ``path``, ``format``, ``precision``, ``labels``,
        ``input_size``, ``size_bytes``, ``verified``, ``verification`` (the figures), ...

    Raises:
        RequestError / RequestTypeError (``ValueError`` / ``TypeError``, naming the argument),
        ConvertError (other user mistakes) or VerificationFailed (the artifact misses the contract).
    """
    names = {f.name for f in fields(ConvertRequest)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise RequestTypeError(unknown[0], f"convert() got an unexpected argument {unknown[0]!r}; "
                                           f"ConvertRequest fields: {', '.join(sorted(names))}")
    request = replace(request or ConvertRequest(), **options)
    if model is not None:
        if request.model is not None or request.checkpoint is not None:
            raise RequestError("model", "pass the model once: as convert()'s first argument or in the request")
        is_variant = isinstance(model, str) and model in _variants()
        weights = {"model": model} if is_variant or not isinstance(model, (str, os.PathLike)) else {"checkpoint": Path(model)}
        request = replace(request, **weights)
    return build_artifact(converter(format), request)


def _variants() -> list[str]:
    from model import list_models
    return list_models()
