"""Write data/shipped/cifar10.tar.gz: CIFAR-10's whole test split and a fixed training subset.

    python scripts/make_cifar10_subset.py ../shared/data/cifar10-jpg.tar.gz

The JPEG files are copied byte for byte from the full archive (``train/<class>/*.jpg``,
``test/<class>/*.jpg``): every test image, and per class the first 250 training files of a
permutation of their sorted names by ``numpy.random.default_rng(0)`` (calibration images for int8).
The output is new: an existing file is never replaced.
"""
from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.outputs import check_output, partial, publish  # noqa: E402
from data.cifar10 import CLASSES, SHIPPED  # noqa: E402

TRAIN_PER_CLASS = 250


def main(source: str) -> None:
    check_output(SHIPPED, force=False, flag="the output")
    files: dict[str, bytes] = {}
    with tarfile.open(source, "r:*") as archive:
        for member in archive:
            if member.isfile() and len(member.name.split("/")) == 3:
                files[member.name] = archive.extractfile(member).read()
    keep = [name for name in files if name.startswith("test/")]
    for cls in CLASSES:
        names = sorted(n for n in files if n.startswith(f"train/{cls}/"))
        keep += [names[i] for i in np.random.default_rng(0).permutation(len(names))[:TRAIN_PER_CLASS]]
    with partial(SHIPPED) as tmp:
        with tarfile.open(tmp, "w:gz") as out:
            for name in sorted(keep):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
                out.addfile(info, io.BytesIO(files[name]))
        publish(tmp, SHIPPED, force=False, flag="the output")
    print(f"wrote {SHIPPED.relative_to(ROOT)}: {len(keep)} images, {SHIPPED.stat().st_size:,} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/make_cifar10_subset.py PATH/cifar10-jpg.tar.gz")
    main(sys.argv[1])
