"""Two checkpoints on the same images: is the difference in accuracy more than chance?

    python train/compare.py weights/shunted_nano_s16_deep_cifar10.pt runs/next/final.pt    (test split)

Both run on the same split of A's dataset (they must share classes and preprocessing). Only the
photos exactly one of them gets right can tell them apart: the exact McNemar test (two-sided
binomial on those photos) gives the chance of a split at least this uneven between two equally
accurate networks, and B's gain over A comes with a two-sided 95% interval from the paired variance.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from common.contract import drop_bounds  # noqa: E402
from model import create_model  # noqa: E402
from train import cli  # noqa: E402
from train.evaluate import split_of  # noqa: E402

Z95_TWO_SIDED = 1.96


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: the binomial(n, 1/2) tails at least as uneven as the split."""
    n, k = only_a + only_b, min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@torch.no_grad()
def right_answers(model: torch.nn.Module, dataset: Dataset, batch_size: int = 500) -> np.ndarray:
    """Per image: does ``model``'s top-1 match its label (bool, in the dataset's order)?"""
    model.eval()
    hits = [model(x).argmax(1) == y for x, y in DataLoader(dataset, batch_size=batch_size)]
    return torch.cat(hits).numpy()


def compare(a_right: np.ndarray, b_right: np.ndarray) -> dict:
    """Accuracies (%), the discordant photos, McNemar's p and B's gain in points with its 95% interval."""
    only_a, only_b = int((a_right & ~b_right).sum()), int((b_right & ~a_right).sum())
    low_drop, high_drop = drop_bounds(a_right, b_right, Z95_TWO_SIDED)
    return {"n": len(a_right), "top1_a": round(100 * a_right.mean(), 2), "top1_b": round(100 * b_right.mean(), 2),
            "only_a": only_a, "only_b": only_b, "p_value": mcnemar_p(only_a, only_b),
            "gain_points": round(100 * (only_b - only_a) / len(a_right), 2),
            "gain_95": (round(-high_drop, 2), round(-low_drop, 2))}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint_a", help="the reference checkpoint (e.g. the shipped weights)")
    parser.add_argument("checkpoint_b", help="the candidate checkpoint")
    parser.add_argument("--data", help="'cifar10[:PATH]', 'fashion-mnist[:DIR]' or an image folder "
                                       "(default: A's dataset)")
    parser.add_argument("--split", default="test", help="train, val or test (default: test)")
    parser.add_argument("--limit", type=int, help="only the first N images of a seeded permutation")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    return args


def run(args: argparse.Namespace) -> dict:
    a, b = (create_model(checkpoint_path=path) for path in (args.checkpoint_a, args.checkpoint_b))
    differ = [key for key in ("labels", "preprocess") if a.meta.get(key) != b.meta.get(key)]
    if differ:
        raise cli.TrainError(f"{args.checkpoint_a} and {args.checkpoint_b} differ in {' and '.join(differ)}: "
                             "compare checkpoints trained on the same classes with the same preprocessing")
    data, dataset = split_of(args.checkpoint_a, a.meta, args.data, args.split, args.limit)
    result = compare(right_answers(a, dataset), right_answers(b, dataset))
    low, high = result["gain_95"]
    print(f"{data} {args.split}, {result['n']} images: A {result['top1_a']:.2f}%, B {result['top1_b']:.2f}%; "
          f"only A right {result['only_a']}, only B right {result['only_b']}; B - A {result['gain_points']:+.2f} "
          f"points (95% interval {low:+.2f} to {high:+.2f}), McNemar p = {result['p_value']:.3g}")
    return result


def main(argv: list[str] | None = None) -> int:
    return cli.run_cli(lambda args: run(parse_args(args)), argv)


if __name__ == "__main__":
    sys.exit(main())
