"""Choose and measure a model's "not sure" rule: a floor on the top-1 softmax probability.

    python benchmarks/abstention.py                                # the shipped model, measured
    python benchmarks/abstention.py CKPT --ood fashion-mnist --ood photos/ --json abstain.json
    python benchmarks/abstention.py CKPT --embed CKPT_with_rule.pt # a copy that carries the rule

The in-domain test split is cut in two by image index: the floor is chosen on the even images
so that ``--keep`` of their correct answers stay above it, and judged on the odd ones (share of
correct answers kept, share of wrong answers turned into "not sure"). Out-of-domain sources
(another data set, a folder of photos, ``scene-free``: noise, colour fields and gradients
without any object) show how often the model declines to name what it was never taught.
Shares come with their 95% Wilson bounds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common.cli import Parser, run_cli  # noqa: E402
from common.contract import Z95  # noqa: E402

SCENE_FREE = "scene-free"
SCENE_FREE_COUNT = 999
DEFAULT_KEEP = 0.95
SWEEP = (0.99, 0.95, 0.9, 0.8)  # keep targets measured beside the chosen one


def wilson(successes: int, n: int) -> dict:
    """A share with its two-sided 95% Wilson interval, as fractions."""
    if n == 0:
        return {"share": None, "lower95": None, "upper95": None, "n": 0}
    p, z = successes / n, Z95
    centre, spread = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return {"share": p, "lower95": float((centre - spread) / scale), "upper95": float((centre + spread) / scale),
            "n": n}


def model_logits(model, images: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch
    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(images[i:i + batch])).numpy()
                               for i in range(0, len(images), batch)])


def ood_images(source: str, spec: dict) -> np.ndarray:
    """Preprocessed images of one out-of-domain source: a named data set's test split, a folder
    (every image in it and its sub-folders) or ``scene-free``."""
    from data import DataError, build_dataset, dataset_name, preprocess_batch, preprocess_files
    from data.synthetic import scene_free_images
    if source == SCENE_FREE:
        return preprocess_batch(scene_free_images(SCENE_FREE_COUNT), spec)
    if dataset_name(source):
        dataset = build_dataset(source, "test", spec)
        return np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
    folder = Path(source)
    if not folder.is_dir():
        raise DataError(f"--ood {source!r} is not a folder: pass {SCENE_FREE}, a data set name (fashion-mnist, "
                        f"cifar10) or a folder of images")
    from PIL import Image
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in Image.registered_extensions())
    if not files:
        raise DataError(f"no images in {folder}: pass a folder of photos the model was not trained on")
    return preprocess_files(files, spec)


def source_name(source: str) -> str:
    """How a source is named in the figures: a folder by its own name (no path of this machine)."""
    from data import dataset_name
    return source if source == SCENE_FREE or dataset_name(source) else Path(source).name + "/"


def measure(model, data: str, ood: list[str], keep: float) -> dict:
    """The floor chosen on the even test images, its figures on the odd ones and on ``ood``, and the
    same for the other ``SWEEP`` targets (what a stricter or looser floor would give)."""
    from benchmarks.eval_set import EvalSet
    from common.abstain import SCORE, confidence, threshold_keeping
    from data import DataError
    spec = model.meta["preprocess"]
    eval_set = EvalSet(data, "test", spec)
    if not eval_set.labelled:
        raise DataError(f"choosing the rule needs labelled in-domain images; {data}: {eval_set.unlabelled}")
    logits = model_logits(model, np.concatenate(list(eval_set.batches(512))))
    conf, correct = confidence(logits), logits.argmax(1) == eval_set.labels
    choose, judge = np.arange(len(conf)) % 2 == 0, np.arange(len(conf)) % 2 == 1
    ood_conf = {source_name(source): confidence(model_logits(model, ood_images(source, spec))) for source in ood}

    def figures(threshold: float) -> dict:
        answered = judge & (conf >= threshold)
        return {"correct_kept": wilson(int((answered & correct).sum()), int((judge & correct).sum())),
                "wrong_abstained": wilson(int((judge & ~correct & ~answered).sum()), int((judge & ~correct).sum())),
                "answered": wilson(int(answered.sum()), int(judge.sum())),
                "accuracy_when_answering": float(correct[answered].mean()) if answered.any() else None,
                "out_of_domain": {source: wilson(int((c < threshold).sum()), len(c)) for source, c in ood_conf.items()}}

    sweep = []
    for target in sorted({keep, *SWEEP}, reverse=True):
        threshold = threshold_keeping(conf[choose & correct], target)
        sweep.append({"keep_target": target, "threshold": round(threshold, 4), **figures(round(threshold, 4))})
    chosen = next(row for row in sweep if row["keep_target"] == keep)
    measured = {"in_domain": f"{eval_set.describe()}: floor chosen on the {int(choose.sum())} even images, judged "
                             f"on the {int(judge.sum())} odd ones", "top1": float(correct[judge].mean()),
                **{k: v for k, v in chosen.items() if k not in ("keep_target", "threshold")}}
    return {"score": SCORE, "threshold": chosen["threshold"], "keep_target": keep, "measured": measured,
            "sweep": sweep}


def default_ood(dataset: str | None) -> list[str]:
    """Fashion-MNIST's grey clothing for a model of other data, and scene-free images, always."""
    from data import dataset_name
    return ([] if dataset_name(dataset or "") == "fashion-mnist" else ["fashion-mnist"]) + [SCENE_FREE]


def describe(rule: dict) -> str:
    m = rule["measured"]

    def pct(share: dict) -> str:
        return f"{share['share']:.1%} [{share['lower95']:.1%}, {share['upper95']:.1%}] of {share['n']}"
    lines = [f"not sure below top-1 probability {rule['threshold']:.4f} ({m['in_domain']})",
             f"  correct answers kept:       {pct(m['correct_kept'])}",
             f"  wrong answers -> not sure:  {pct(m['wrong_abstained'])}",
             f"  accuracy when answering:    {m['accuracy_when_answering']:.2%} (all answers: {m['top1']:.2%})"]
    lines += [f"  out of domain, {source}: not sure on {pct(share)}" for source, share in m["out_of_domain"].items()]
    sources = list(m["out_of_domain"])
    lines += ["", "keep target | floor | correct kept | wrong -> not sure | " + " | ".join(
        f"{source} -> not sure" for source in sources)]
    lines += [f"{row['keep_target']:.0%} | {row['threshold']:.4f} | {row['correct_kept']['share']:.1%} | "
              f"{row['wrong_abstained']['share']:.1%} | "
              + " | ".join(f"{row['out_of_domain'][source]['share']:.1%}" for source in sources) for row in rule["sweep"]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from common.defaults import SHIPPED_CHECKPOINT
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=SHIPPED_CHECKPOINT,
                        help="weights (default: the shipped model)")
    parser.add_argument("--data", help="in-domain data (default: the checkpoint's dataset)")
    parser.add_argument("--ood", action="append", help=f"out-of-domain source, repeatable: {SCENE_FREE}, a data set "
                        "name or a folder of photos (default: fashion-mnist and scene-free)")
    parser.add_argument("--keep", type=float, default=DEFAULT_KEEP,
                        help=f"share of correct in-domain answers the floor keeps (default {DEFAULT_KEEP})")
    parser.add_argument("--json", type=Path, help="write the rule and its figures here")
    parser.add_argument("--embed", type=Path, help="write a copy of the checkpoint that carries the rule")
    parser.add_argument("--force", action="store_true", help="overwrite --json / --embed")
    args = parser.parse_args(argv)
    if not 0 < args.keep <= 1:
        parser.error(f"--keep must be in (0, 1], got {args.keep}")
    return args


def run(args: argparse.Namespace) -> dict:
    from common.outputs import check_output, write_output
    from data import DataError
    from model import create_model, read_checkpoint, save_with_meta
    for path in (args.json, args.embed):
        if path is not None:
            check_output(path, args.force, "--json" if path == args.json else "--embed")
    model = create_model(checkpoint_path=args.checkpoint).eval()
    data = args.data or model.meta.get("dataset")
    if not data:
        raise DataError(f"{args.checkpoint} does not name its dataset: pass --data")
    rule = measure(model, data, args.ood or default_ood(data), args.keep)
    print(describe(rule))
    if args.json:
        write_output(args.json, json.dumps(rule, indent=2) + "\n", args.force, "--json")
    if args.embed:
        meta = {**read_checkpoint(args.checkpoint).meta, "abstain": rule}
        save_with_meta(args.checkpoint, args.embed, meta, overwrite=args.force)
        print(f"wrote {args.embed}")
    return rule


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def command() -> None:
        run(args)
    return run_cli(command)


if __name__ == "__main__":
    sys.exit(main())
