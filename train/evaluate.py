"""Top-1/top-5 accuracy of a checkpoint on a dataset split, written as the accuracy reference JSON.

    python train/evaluate.py weights/shunted_nano_s16_deep_cifar10.pt --split test   (its own dataset)

Preprocessing comes from the checkpoint's metadata (official ImageNet checkpoints carry none and
get the ImageNet evaluation spec: resize 256 bicubic, center crop 224, ImageNet mean/std).
``evaluate(model, dataset, batch_size, device)`` is the function benchmarks reuse.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Idle OpenMP threads sleep instead of spinning (set before torch loads OpenMP): on CPUs shared with
# other jobs, spinning threads made 2-thread training about 20x slower than one thread.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from common.outputs import check_output, write_output  # noqa: E402
from data import DataError, build_dataset  # noqa: E402
from model import create_model, file_sha256  # noqa: E402
from train import cli  # noqa: E402


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def class_counts(model: torch.nn.Module, loader: DataLoader, device: torch.device, num_classes: int) -> torch.Tensor:
    """int64 ``(3, num_classes)``: images, top-1 hits and top-5 hits per true class (float32 forward)."""
    model.eval()
    counts = torch.zeros(3, num_classes, dtype=torch.int64, device=device)
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        top = model(images).topk(min(5, num_classes), dim=1).indices
        hits = top == targets[:, None]
        ones = torch.ones_like(targets)
        counts[0].index_add_(0, targets, ones)
        counts[1].index_add_(0, targets, hits[:, 0].long())
        counts[2].index_add_(0, targets, hits.any(dim=1).long())
    return counts


def summarize(counts: torch.Tensor, labels: list[str]) -> dict:
    """Accuracies (in %) from :func:`class_counts` output."""
    totals = counts.cpu().tolist()
    n = sum(totals[0])
    pct = (lambda hits, total: round(100.0 * hits / total, 3) if total else None)
    return {"n": n, "top1": pct(sum(totals[1]), n), "top5": pct(sum(totals[2]), n),
            "per_class": {label: pct(hits, total) for label, hits, total in zip(labels, totals[1], totals[0])}}


def evaluate(model: torch.nn.Module, dataset: Dataset, batch_size: int = 256,
             device: str | torch.device | None = None, workers: int = 0) -> dict:
    """Top-1/top-5 and per-class accuracy (%) of ``model`` on ``dataset``, with timing."""
    device = torch.device(device) if device is not None else default_device()
    num_classes = model.num_classes
    labels = list(getattr(dataset, "classes", None) or (model.meta or {}).get("labels") or range(num_classes))
    if len(labels) > num_classes:
        raise cli.TrainError(f"the dataset has {len(labels)} classes but the model predicts {num_classes}")
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda")
    start = time.perf_counter()
    counts = class_counts(model.to(device), loader, device, num_classes)
    seconds = time.perf_counter() - start
    result = summarize(counts[:, :len(labels)], [str(label) for label in labels])
    return {**result, "device": str(device), "seconds": round(seconds, 2),
            "images_per_s": round(result["n"] / seconds, 1) if seconds > 0 else None}


def split_of(checkpoint: str, meta: dict, data: str | None, split: str,
             limit: int | None = None) -> tuple[str, Dataset]:
    """The dataset a checkpoint is judged on: ``data`` or the one its metadata names, as its preprocessing.

    Returns:
        The dataset's name and the split; a :class:`DataError` says what to pass when either is missing.
    """
    data = data or meta.get("dataset")
    if not data:
        raise DataError(f"{checkpoint} does not name its dataset: pass --data")
    dataset = build_dataset(data, split, meta["preprocess"], limit=limit)
    if len(dataset) == 0:
        raise DataError(f"split {split!r} of {data} holds no images; pick another split")
    return data, dataset


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="checkpoint file (ours, official Shunted, state dict, .safetensors)")
    parser.add_argument("--data", help="'cifar10[:PATH]', 'fashion-mnist[:DIR]' or an image folder (default: "
                                       "the checkpoint's dataset)")
    parser.add_argument("--split", default="test", help="train, val or test (default: test)")
    parser.add_argument("--model", help="variant name (default: from the checkpoint)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images of a seeded permutation")
    parser.add_argument("--output", help="JSON path (default: <checkpoint without suffix>.accuracy.json)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")
    args = parser.parse_args(argv)
    for name, low in (("batch_size", 1), ("workers", 0), ("limit", 1)):
        if getattr(args, name) is not None and getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    return args


def run(args: argparse.Namespace) -> dict:
    output = Path(args.output) if args.output else Path(args.checkpoint).with_suffix(".accuracy.json")
    check_output(output, args.force)
    model = create_model(args.model, checkpoint_path=args.checkpoint)
    meta = model.meta
    args.data, dataset = split_of(args.checkpoint, meta, args.data, args.split, args.limit)
    if meta["labels"] is not None and list(dataset.classes) != list(meta["labels"]):
        print(f"warning: dataset classes {dataset.classes[:3]}... differ from the checkpoint's labels "
              f"{meta['labels'][:3]}...; class indices are compared as they are", file=sys.stderr)
    result = evaluate(model, dataset, args.batch_size, workers=args.workers)
    report = {"model": meta["variant"], "checkpoint": Path(args.checkpoint).name,
              "checkpoint_sha256": file_sha256(args.checkpoint), "dataset": args.data, "split": args.split,
              "input_size": meta["input_size"], "preprocess": meta["preprocess"], **result,
              "torch": torch.__version__, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_output(output, json.dumps(report, indent=2) + "\n", args.force)
    print(f"{meta['variant']} on {args.data} {args.split}: top-1 {report['top1']:.2f}%  top-5 {report['top5']:.2f}%  "
          f"(n={report['n']}, {report['images_per_s']} img/s on {report['device']}) -> {output}")
    return report


def main(argv: list[str] | None = None) -> int:
    return cli.run_cli(lambda args: run(parse_args(args)), argv)


if __name__ == "__main__":
    sys.exit(main())
