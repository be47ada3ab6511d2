"""Sidecar manifests (``<artifact>.json``) and the artifact lifecycle: checked output, temporary
name, verified, published next to its manifest without replacing anything unasked.

``--force`` replaces a file, and a package folder (``.mlpackage``, ``.aimodel``) only when our
manifest beside it says it is the artifact we wrote; never any other folder.
"""
from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

from common.digest import artifact_sha256
from common.outputs import OutputError, check_output, exists, is_file, publish, remove, temporary_path
from runtime.runners import manifest_path

__all__ = ["Manifest", "artifact_sha256", "artifact_size", "check_artifact_output", "finalize", "remove",
           "temporary_path", "versions"]

PACKAGES = ("torch", "executorch", "coremltools", "onnx", "onnxruntime", "onnxscript", "numpy", "coreai-torch",
            "coreai-core", "coreai-opt")
PACKAGE_SUFFIXES = (".mlpackage", ".aimodel")


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["python"] = platform.python_version()
    return found


def artifact_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def ours(path: Path) -> bool:
    """True for a file, or a package folder whose sidecar manifest says we wrote it."""
    if is_file(path):
        return True
    if path.suffix not in PACKAGE_SUFFIXES or not path.is_dir():
        return False
    try:
        manifest = json.loads(manifest_path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("artifact") == path.name and "sha256" in manifest


def check_artifact_output(output: Path, force: bool) -> None:
    """Before any work: the artifact and its manifest may be written (OutputError says why not)."""
    check_output(output, force, replaceable=ours)
    check_output(manifest_path(output), force)


class Manifest(dict):
    """An artifact's manifest (the JSON of ``<artifact>.json``) plus where the two were written.

    Still the dict that is written as JSON; the fields callers need are attributes.
    """

    @property
    def path(self) -> Path:
        """The published artifact."""
        return Path(self["path"])

    @property
    def manifest_path(self) -> Path:
        """The JSON file beside it."""
        return Path(self["manifest_path"])

    @property
    def format(self) -> str:
        """"onnx", "executorch", "coreml" or "coreai"."""
        return self["format"]

    @property
    def precision(self) -> str:
        return self["precision"]

    @property
    def meta(self) -> dict:
        """The model's metadata: variant, labels, input size, preprocessing, dataset, abstention rule."""
        return self["model"]

    @property
    def labels(self) -> list[str]:
        return self["model"]["labels"]

    @property
    def input_size(self) -> int:
        return self["model"]["input_size"]

    @property
    def size_bytes(self) -> int:
        return self["size_bytes"]

    @property
    def verification(self) -> dict:
        """The contract's verdict (``status``: "passed", "failed" or "not run") and its figures."""
        return self["verification"]

    @property
    def verified(self) -> bool:
        """True when the artifact was run and held the contract."""
        return self["verification"].get("status") == "passed"

    @property
    def quantization(self) -> dict | None:
        """Calibration method, source and image count of an int8 artifact (None otherwise)."""
        return self.get("quantization")


def finalize(tmp: Path, final: Path, manifest: dict, force: bool = False) -> Manifest:
    """Hash the verified artifact and publish it with its manifest; returns the manifest.

    Whatever appeared at either name during the run is kept and the run fails (OutputError), unless
    ``force`` and it is still ours to replace.
    """
    manifest = {**manifest, "artifact": final.name, "sha256": artifact_sha256(tmp), "size_bytes": artifact_size(tmp)}
    sidecar = manifest_path(final)
    if force and exists(final) and not ours(final):
        raise OutputError(f"{final} became a folder this run did not write and was kept; nothing was written: "
                          f"move it away or choose another --output")
    sidecar_tmp = temporary_path(sidecar)
    sidecar_tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    publish(tmp, final, force)
    try:
        publish(sidecar_tmp, sidecar, force)
    except OutputError:
        remove(final)  # just published by this run: without its manifest it must not stay
        raise
    return Manifest(manifest, path=str(final), manifest_path=str(sidecar))
