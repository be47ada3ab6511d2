"""The conversion API: ``convert("onnx", ConvertRequest(precision="int8")) -> Manifest``.

    from convert.api import ConvertRequest, convert, formats
    manifest = convert("executorch", ConvertRequest(checkpoint=Path("final.pt"), precision="int8"))
    manifest.path, manifest.verification["status"]
"""
from __future__ import annotations

from importlib import import_module

from .manifest import Manifest
from .pipeline import Converter, ConvertError, VerificationFailed
from .pipeline import convert as _run
from .request import ConvertRequest, artifact_name

MODULES = {"onnx": "convert.to_onnx", "executorch": "convert.to_executorch", "coreml": "convert.to_coreml",
           "coreai": "convert.to_coreai"}

__all__ = ["ConvertError", "ConvertRequest", "Manifest", "VerificationFailed", "artifact_name", "convert",
           "converter", "formats"]


def formats() -> list[str]:
    return list(MODULES)


def converter(format: str) -> Converter:
    """The :class:`Converter` of ``format`` (imported on first use: each pulls in its toolchain)."""
    if format not in MODULES:
        raise ConvertError(f"unknown format {format!r}; choose one of {', '.join(MODULES)}")
    return import_module(MODULES[format]).CONVERTER


def convert(format: str, request: ConvertRequest) -> Manifest:
    """Build, verify and publish one artifact; raises ConvertError (a user mistake) or VerificationFailed."""
    return _run(converter(format), request)
