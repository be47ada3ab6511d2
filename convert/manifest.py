"""Sidecar manifests (``<artifact>.json``) and the temporary-name-then-rename artifact lifecycle."""
from __future__ import annotations

import json
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path

from model import file_sha256
from runtime.runners import manifest_path

PACKAGES = ("torch", "executorch", "coremltools", "onnx", "onnxruntime", "onnxscript", "numpy")


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


def artifact_sha256(path: Path) -> str:
    """sha256 of a file, or of a package directory (its files' relative paths and hashes, sorted)."""
    if not path.is_dir():
        return file_sha256(path)
    import hashlib
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(path).as_posix()}:{file_sha256(f)}\n".encode())
    return digest.hexdigest()


def temporary_path(final: Path) -> Path:
    """A hidden sibling of ``final`` with the same suffix (runtimes look at suffixes)."""
    return final.with_name(f".partial-{os.getpid()}-{final.name}")


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Manifest(dict):
    """An artifact's manifest (the JSON of ``<artifact>.json``) plus where the two were written."""

    @property
    def path(self) -> Path:
        return Path(self["path"])

    @property
    def verification(self) -> dict:
        return self["verification"]


def finalize(tmp: Path, final: Path, manifest: dict, force: bool = False) -> Manifest:
    """Hash the verified artifact, write its manifest, move both under their final names; returns it."""
    manifest = {**manifest, "artifact": final.name, "sha256": artifact_sha256(tmp),
                "size_bytes": artifact_size(tmp)}
    sidecar = manifest_path(final)
    sidecar_tmp = temporary_path(sidecar)
    sidecar_tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    remove(final)  # only reached with --force or when absent
    os.replace(tmp, final)
    os.replace(sidecar_tmp, sidecar)
    return Manifest(manifest, path=str(final), manifest_path=str(sidecar))
