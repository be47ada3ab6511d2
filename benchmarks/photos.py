"""What the demos say on full-size photos: photos of the model's classes and photos of other things.

    python benchmarks/photos.py                        # the shipped model on data/photos
    python benchmarks/photos.py artifacts/x_int8.onnx --photos mine/ --other not_mine/ --json p.json

``--photos`` holds one sub-folder per class, named as the model's labels (any subset of them);
``--other`` holds photos of things the model has no class for. Every photo takes the demos' own
path (``apps.classifier``: read by OpenCV, the manifest's preprocessing, i.e. shorter side to the
input size and a centre crop, and the model's "not sure" rule). A photo of its classes is named
(the right label), wrong (another label) or not sure; a photo of other things is not sure (right)
or named (wrong). Shares come with their 95% Wilson intervals.
"""
from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.abstention import wilson  # noqa: E402
from common.cli import Parser, positive, run_cli  # noqa: E402
from common.defaults import ROOT, SHIPPED_CHECKPOINT  # noqa: E402
from common.text_table import text_table  # noqa: E402

SHIPPED_PHOTOS = ROOT / "data" / "photos"  # CIFAR-10 classes and other things; sources in its README
OTHER = "other things"  # the truth of a photo in --other


def labelled_photos(photos: Path | None, other: Path | None, labels: list[str]) -> list[tuple[Path, str]]:
    """``(path, truth)`` of every photo: the class sub-folders of ``photos``, then ``other``."""
    from apps import AppError
    from apps.sources import image_files
    found = []
    if photos is not None:
        if not photos.is_dir():
            raise AppError(f"--photos {photos} is not a folder: pass a folder with one sub-folder per class")
        for sub in sorted(p for p in photos.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if sub.name not in labels:
                named = ", ".join(labels[:10]) + (f", ... ({len(labels)} in all)" if len(labels) > 10 else "")
                raise AppError(f"--photos sub-folder {sub.name!r} is not one of the model's classes "
                               f"({named}): rename it or move its photos to --other")
            found += [(path, sub.name) for path in image_files(sub)]
    if other is not None:
        if not other.is_dir():
            raise AppError(f"--other {other} is not a folder: pass a folder of photos of things "
                           "the model has no class for")
        found += [(path, OTHER) for path in image_files(other)]
    if not found:
        raise AppError("no photos found: pass --photos with one sub-folder per class (jpg, png, webp, ...) "
                       "and/or --other")
    return found


def verdict(truth: str, answer: str, abstained: bool) -> str:
    """named / wrong / not sure for a photo of its classes; not sure / named for other things."""
    if abstained:
        return "not sure"
    return "named" if truth in (answer, OTHER) else "wrong"


def judge(classifier, photos: list[tuple[Path, str]]) -> dict:
    """Each photo's answer and the shares of named, wrong and not-sure answers."""
    import cv2
    from apps import AppError
    rows = []
    for path, truth in photos:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise AppError(f"cannot read image {path}: the file is damaged or not an image")
        prediction = classifier(image)
        label, probability = prediction.topk[0]
        rows.append({"photo": path.name, "truth": truth, "top1": label, "probability": round(probability, 4),
                     "top1_right": label == truth, "abstained": prediction.abstained,
                     "verdict": verdict(truth, label, prediction.abstained)})
    known = [r for r in rows if r["truth"] != OTHER]
    other = [r for r in rows if r["truth"] == OTHER]

    def share(subset: list[dict], outcome: str) -> dict:
        return wilson(sum(r["verdict"] == outcome for r in subset), len(subset))
    summary = {"its_classes": {outcome: share(known, outcome) for outcome in ("named", "wrong", "not sure")},
               "other_things": {"not sure": share(other, "not sure")}}
    summary["its_classes"]["top1_right"] = wilson(sum(r["top1_right"] for r in known), len(known))
    return {"photos": rows, "summary": summary}


def describe(result: dict, knows: str) -> str:
    table = text_table(["photo", "truth", "says", "top-1", "p", "verdict"],
                       [[r["photo"], r["truth"], "not sure" if r["abstained"] else r["top1"], r["top1"],
                         f"{r['probability']:.1%}", r["verdict"]] for r in result["photos"]])

    def pct(s: dict) -> str:
        return "no photos" if not s["n"] else \
            f"{round(s['share'] * s['n'])} of {s['n']} ({s['share']:.0%}, 95% {s['lower95']:.0%}-{s['upper95']:.0%})"
    mine, other = result["summary"]["its_classes"], result["summary"]["other_things"]
    return "\n".join([table, "", f"model: {knows}",
                      f"photos of its classes: named {pct(mine['named'])}; wrong {pct(mine['wrong'])}; "
                      f"not sure {pct(mine['not sure'])}; right class first {pct(mine['top1_right'])}",
                      f"photos of other things: not sure {pct(other['not sure'])}"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="?", type=Path, default=SHIPPED_CHECKPOINT,
                        help="checkpoint, .onnx or .pte artifact (default: the shipped model)")
    parser.add_argument("--photos", type=Path, help="one sub-folder of photos per class (default for a "
                        f"CIFAR-10 model: {SHIPPED_PHOTOS.relative_to(ROOT)}/cifar10)")
    parser.add_argument("--other", type=Path, help="photos of things outside its classes (default for a "
                        f"CIFAR-10 model: {SHIPPED_PHOTOS.relative_to(ROOT)}/other)")
    parser.add_argument("--threads", type=positive, help="inference threads (default: the runtime's)")
    parser.add_argument("--json", type=Path, help="write every answer and the shares here")
    parser.add_argument("--force", action="store_true", help="overwrite --json")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    from apps import AppError
    from apps.classifier import open_classifier
    from common.outputs import check_output, write_output
    if args.json:
        check_output(args.json, args.force, "--json")
    classifier = open_classifier(args.weights, args.threads, topk=1)
    photos, other = args.photos, args.other
    if photos is None and other is None:
        if classifier.runner.meta.get("dataset") != "cifar10":
            raise AppError(f"{args.weights} is not a CIFAR-10 model: pass --photos (one sub-folder per class) "
                           "and/or --other with photos of your own")
        photos, other = SHIPPED_PHOTOS / "cifar10", SHIPPED_PHOTOS / "other"
    labels = [classifier.label(i) for i in range(classifier.runner.meta["num_classes"])]  # as the demos name them
    result = judge(classifier, labelled_photos(photos, other, labels))
    print(describe(result, classifier.knows()))
    if args.json:
        write_output(args.json, json.dumps({"model": str(args.weights), "runtime": classifier.runtime,
                                            **result}, indent=2) + "\n", args.force, "--json")


def main(argv: list[str] | None = None) -> int:
    return run_cli(partial(run, parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
