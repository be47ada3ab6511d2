"""Run any artifact the project writes (.pt/.safetensors, .onnx, .pte, .mlpackage) the same way.

``load_artifact(path)`` picks the runtime from the file and returns a :class:`Runner` whose
``run(x)`` takes a preprocessed float32 batch (N, 3, S, S) and returns logits (N, classes).
Preprocessing and labels come from the artifact's manifest (``<artifact>.json``) or checkpoint.
"""
from .base import ArtifactError, Runner
from .runners import check_artifact, checked_manifest, load_artifact, read_manifest

__all__ = ["ArtifactError", "Runner", "check_artifact", "checked_manifest", "load_artifact", "read_manifest"]
