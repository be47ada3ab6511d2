"""One Python session, as in a notebook: fine-tune the CIFAR-10 model on three of its classes, convert
the model object to ONNX, ExecuTorch and Core ML with int8, load each artifact, compare it with the
PyTorch model and time it. Run from the repository root: ``python docs/example_session.py [WORK_DIR]``
(``tests/test_api.py`` runs it).
"""
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.latency import Target, measure  # noqa: E402
from common.defaults import CIFAR10_CHECKPOINT  # noqa: E402
from common.quiet import quiet_third_party  # noqa: E402
from convert.api import convert  # noqa: E402
from data import build_dataset  # noqa: E402
from data.cifar10 import SHIPPED as CIFAR10_ARCHIVE  # noqa: E402
from runtime import load_artifact  # noqa: E402
from train.train import run as train  # noqa: E402

CLASSES, PER_CLASS = ("cat", "dog", "horse"), 110


def image_folder(root: Path) -> Path:
    """``root/photos/<class>/*.jpg``: the first training photos of three classes from the shipped archive."""
    folder = root / "photos"
    with tarfile.open(CIFAR10_ARCHIVE) as archive:
        taken = dict.fromkeys(CLASSES, 0)
        for member in archive:
            _, split, label, name = ("/" + member.name).rsplit("/", 3) if member.isfile() else ("", "", "", "")
            if split == "train" and label in taken and taken[label] < PER_CLASS:
                (folder / label).mkdir(parents=True, exist_ok=True)
                (folder / label / name).write_bytes(archive.extractfile(member).read())
                taken[label] += 1
    return folder


def main(work: Path) -> dict:
    torch.set_num_threads(1)
    quiet_third_party()  # the exporters' own logs and warnings
    photos = image_folder(work)
    # 1. fine-tune: the CIFAR-10 model with a new 3-class head, a few epochs on 88 photos per class
    model = train(["--checkpoint", str(CIFAR10_CHECKPOINT), "--reset-head", "--data", str(photos), "--epochs", "6",
                   "--lr", "1e-3", "--warmup-epochs", "0", "--batch-size", "32", "--output", str(work / "run")])
    # 2. convert the model object; one folder calibrates and verifies (disjoint parts)
    artifacts = {fmt: convert(model, fmt, precision="int8", calib=str(photos), output_dir=work / "artifacts")
                 for fmt in ("onnx", "executorch", "coreml")}
    # 3. load each artifact and compare it with the PyTorch model on the held-out photos
    test = build_dataset(str(photos), "test", model.meta["preprocess"])
    x = torch.stack([test[i][0] for i in range(len(test))]).numpy()
    with torch.no_grad():
        reference = model.eval()(torch.from_numpy(x)).numpy().argmax(1)
    agreement = {}
    for fmt, manifest in artifacts.items():
        runner = load_artifact(manifest.path)
        agreement[fmt] = float((runner.run(x).argmax(1) == reference).mean())
        kept = (manifest.get("int8_search") or {}).get("float_units", [])
        print(f"{fmt}: {manifest.path}, contract {'held' if manifest.verified else 'not held'}"
              f"{f' with {len(kept)} units float' if kept else ''}, agreement with PyTorch on {len(x)} test photos "
              f"{agreement[fmt]:.1%}")
    # 4. latency, each artifact in its own process, interleaved (Core ML runs on macOS only)
    for row in measure([Target(manifest.path) for manifest in artifacts.values()], runs=20, rounds=2, progress=False):
        print(f"{row.label}: " + (f"median {row.median_ms:.2f} ms, {row.fps:.0f} FPS" if row.ok else row.status))
    return agreement


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp))
