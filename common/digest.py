"""sha256 of artifacts: a file, or a package folder (its files' relative paths and hashes, sorted)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_sha256(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(path).as_posix()}:{file_sha256(f)}\n".encode())
    return digest.hexdigest()


def tensors_sha256(state_dict: dict) -> str:
    """sha256 of a model's tensors (names, dtypes, shapes and bytes, in order): the identity of
    weights that live in memory, not in a file."""
    import torch
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous().view(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
