"""The int8 test corpus: four models of different character, each as (checkpoint, data, notes).

- ``shipped``: the default model (shunted_nano, Fashion-MNIST, 32 px).
- ``finetuned``: the shipped model fine-tuned at 64 px on a generated RGB folder of shapes saved
  as RGB/RGBA/palette PNG and JPEG, with the README's fine-tuning command (a user's folder).
- ``official_t``: shunted_t in the official checkpoint format with randomised, realistic-scale
  weights, at 224 (numerics only: random weights have no decisions worth keeping).
- ``brief``: shunted_micro trained for a few hundred steps without weight decay at a high learning
  rate (small margins, untypical weight statistics).
"""
from __future__ import annotations

from pathlib import Path

from conftest import TRAINED


def shipped(folder: Path) -> dict:
    return {"checkpoint": TRAINED, "data": "fashion-mnist", "random_weights": False}


def _train(argv: list[str]) -> Path:
    from train.train import run
    run(argv)
    return Path(argv[argv.index("--output") + 1]) / "final.pt"


def finetuned(folder: Path) -> dict:
    from data.synthetic import make_shapes_folder
    shapes = make_shapes_folder(folder / "shapes", per_class=100, size=72)
    checkpoint = _train(["--checkpoint", str(TRAINED), "--reset-head", "--data", str(shapes), "--input-size", "64",
                         "--epochs", "6", "--batch-size", "32", "--lr", "1e-3", "--output", str(folder / "finetuned")])
    return {"checkpoint": checkpoint, "data": str(shapes), "random_weights": False}


def official_t(folder: Path) -> dict:
    from benchmarks.research.published_shunted import build_reference, official_checkpoint, randomize_
    reference = build_reference("shunted_t")
    randomize_(reference, seed=0)
    path = folder / "shunted_t_official_random.pth"
    official_checkpoint(reference, path)
    return {"checkpoint": path, "data": "fashion-mnist", "random_weights": True}


def brief(folder: Path) -> dict:
    checkpoint = _train(["--model", "shunted_micro", "--data", "fashion-mnist", "--epochs", "1", "--steps", "300",
                         "--batch-size", "64", "--lr", "4e-3", "--weight-decay", "0", "--label-smoothing", "0",
                         "--output", str(folder / "brief")])
    return {"checkpoint": checkpoint, "data": "fashion-mnist", "random_weights": False}


MODELS = {"shipped": shipped, "finetuned": finetuned, "official_t": official_t, "brief": brief}
