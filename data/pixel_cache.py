"""Decoded pixels of image files, shared on disk by the processes of one run.

A report verifies and judges up to eight artifacts in worker processes, and each of them reads the
same photos of a user's folder: a 12 MP JPEG takes about 150 ms to decode, its 32-224 px crop far
less to read back. While :func:`use` names a folder, :func:`cached` keeps each file's pixels there,
keyed by the file's path, size and modification time and by the caller's key (the crop's geometry),
and serves them from there afterwards, byte for byte. Off unless a run turns it on.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

_folder: Path | None = None


def use(folder: str | Path | None) -> None:
    """Keep pixels in ``folder`` (which must exist) from now on in this process; None turns it off."""
    global _folder
    _folder = Path(folder) if folder is not None else None


def folder() -> Path | None:
    """The folder pixels are kept in, or None when the cache is off."""
    return _folder


@contextmanager
def shared_cache(parent: Path) -> Iterator[Path]:
    """A fresh cache folder inside ``parent``, in use for the ``with`` block and removed after it."""
    path = Path(tempfile.mkdtemp(prefix=".pixels-", dir=parent))
    previous = _folder
    use(path)
    try:
        yield path
    finally:
        use(previous)
        shutil.rmtree(path, ignore_errors=True)


def cached(path: str | Path, key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()`` (the pixels of the file ``path``), or what an earlier call with the same file and
    ``key`` stored. A cache file that cannot be read is computed again."""
    if _folder is None:
        return compute()
    try:
        stat = os.stat(path)
    except OSError:  # no such file: compute() says what is wrong
        return compute()
    name = repr((os.path.abspath(path), stat.st_size, stat.st_mtime_ns, key))
    entry = _folder / (hashlib.sha256(name.encode()).hexdigest() + ".npy")
    try:
        return np.load(entry, allow_pickle=False)
    except (OSError, ValueError):
        pass
    pixels = compute()
    try:
        handle, tmp = tempfile.mkstemp(suffix=".tmp", dir=_folder)
    except OSError:  # the folder is gone (its run ended): pixels as computed
        return pixels
    try:
        with os.fdopen(handle, "wb") as out:
            np.save(out, pixels, allow_pickle=False)
        os.replace(tmp, entry)  # whole or absent for a process reading it at the same time
    except OSError:
        Path(tmp).unlink(missing_ok=True)
    return pixels
